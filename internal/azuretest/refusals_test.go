package azuretest_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/credgate/credgate/internal/azuretest"
	"github.com/credgate/credgate/internal/fakekit"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.now = c.now.Add(d) }

// TestEntraRefusesForgedAssertions: Entra's fake grants a token for a
// certificate assertion signed as "Certificate credentials" documents
// it (x5t#S256 of a registered certificate, RS256, iss = sub = the
// client ID, aud the tenant's token endpoint, jti, nbf/exp current), and
// refuses forged signatures, wrong claims, an unregistered certificate,
// another tenant's audience and a replayed jti; a wrong client secret
// and a secret sent with an assertion are refused too.
func TestEntraRefusesForgedAssertions(t *testing.T) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	e := azuretest.NewEntra(azuretest.EntraOptions{Now: clk.Now})
	t.Cleanup(e.Close)
	key, other := fakekit.RSAKey(t), fakekit.RSAKey(t)
	cert := func(k any) *x509.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "app"},
			NotBefore: clk.Now().Add(-time.Hour), NotAfter: clk.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k, key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	registered, unregistered := cert(&key.PublicKey), cert(&other.PublicKey)
	thumb := func(c *x509.Certificate) string {
		sum := sha256.Sum256(c.Raw)
		return base64.RawURLEncoding.EncodeToString(sum[:])
	}
	const tenant, client = "contoso", "11111111-2222-3333-4444-555555555555"
	e.AddApp(azuretest.App{Tenant: tenant, ClientID: client, Secret: "s3cret", Certificates: []*x509.Certificate{registered}})
	e.AddApp(azuretest.App{Tenant: "fabrikam", ClientID: client, Certificates: []*x509.Certificate{registered}})
	grant := func(form url.Values, tn string) int {
		t.Helper()
		form.Set("grant_type", "client_credentials")
		form.Set("client_id", client)
		form.Set("scope", "https://storage.azure.com/.default")
		resp, err := e.Client().Post(e.TokenURL(tn), "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert := func(tok string) int {
		return grant(url.Values{"client_assertion_type": {azuretest.AssertionTypeJWT}, "client_assertion": {tok}}, tenant)
	}
	now := clk.Now()
	valid := map[string]any{"aud": e.TokenURL(tenant), "iss": client, "sub": client, "jti": "jti-1",
		"nbf": now.Unix(), "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
	hdr := map[string]any{"x5t#S256": thumb(registered)}
	forged, err := fakekit.RefusedTokens(valid, key, hdr, []fakekit.ClaimChange{
		{Name: "aud another tenant's endpoint", Claim: "aud", Value: e.TokenURL("fabrikam")},
		{Name: "aud the v1 endpoint", Claim: "aud", Value: e.URL + "/" + tenant + "/oauth2/token"},
		{Name: "no aud", Claim: "aud", Value: nil},
		{Name: "iss another client", Claim: "iss", Value: "99999999-2222-3333-4444-555555555555"},
		{Name: "sub another client", Claim: "sub", Value: "99999999-2222-3333-4444-555555555555"},
		{Name: "no jti", Claim: "jti", Value: nil},
		{Name: "expired beyond the 5 min skew", Claim: "exp", Value: now.Add(-6 * time.Minute).Unix()},
		{Name: "no exp", Claim: "exp", Value: nil},
		{Name: "nbf in the future", Claim: "nbf", Value: now.Add(6 * time.Minute).Unix()},
		{Name: "iat in the future", Claim: "iat", Value: now.Add(6 * time.Minute).Unix()},
		{Name: "lifetime over an hour", Claim: "exp", Value: now.Add(61 * time.Minute).Unix()},
	})
	if err != nil {
		t.Fatal(err)
	}
	forged = append(forged,
		fakekit.Forgery{Name: "x5t#S256 of an unregistered certificate", Token: fakekit.SignRS256(t, other, valid, map[string]any{"x5t#S256": thumb(unregistered)})},
		fakekit.Forgery{Name: "no x5t#S256", Token: fakekit.SignRS256(t, key, valid, nil)},
		fakekit.Forgery{Name: "not a JWT", Token: "not.a.jwt"},
	)
	// The forgeries go first: none may be refused only as a replay of the
	// valid assertion's jti.
	fakekit.ExpectRefused(t, forged, assert, http.StatusBadRequest, http.StatusUnauthorized)
	tok := fakekit.SignRS256(t, key, valid, hdr)
	if code := assert(tok); code != http.StatusOK {
		t.Fatalf("a valid certificate assertion: %d; refused %q", code, e.Refused())
	}
	if code := assert(tok); code != http.StatusUnauthorized {
		t.Errorf("the same assertion again (jti replay): %d, want 401", code)
	}
	if code := grant(url.Values{"client_assertion_type": {azuretest.AssertionTypeJWT}, "client_assertion": {tok}}, "fabrikam"); code == http.StatusOK {
		t.Error("an assertion for contoso accepted by fabrikam")
	}
	if code := grant(url.Values{"client_secret": {"s3cret"}}, tenant); code != http.StatusOK {
		t.Fatalf("the right client secret: %d", code)
	}
	for name, form := range map[string]url.Values{
		"wrong secret":         {"client_secret": {"s3cre7"}},
		"secret and assertion": {"client_secret": {"s3cret"}, "client_assertion_type": {azuretest.AssertionTypeJWT}, "client_assertion": {tok}},
		"no credential":        {},
	} {
		if code := grant(form, tenant); code == http.StatusOK {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestStorageRefusesWhatAzureRefuses: a Shared Key request is accepted
// only as signed, and refused with its signature one bit off; when the
// method, path, query or a signed header differs from what was signed;
// for another account; with x-ms-date over 15 minutes off or missing;
// without x-ms-version; with a second Authorization. A bearer token is
// refused when unknown, for another resource, expired, or with an
// x-ms-version before 2017-11-09.
func TestStorageRefusesWhatAzureRefuses(t *testing.T) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	e := azuretest.NewEntra(azuretest.EntraOptions{Now: clk.Now})
	t.Cleanup(e.Close)
	key := make([]byte, 64)
	_, _ = rand.Read(key)
	s := azuretest.NewStorage(azuretest.StorageOptions{Account: "acme", Key: base64.StdEncoding.EncodeToString(key), Now: clk.Now,
		CheckBearer: func(tok string) error { return e.CheckToken(tok, "https://storage.azure.com") }})
	t.Cleanup(s.Close)
	base := func() *http.Request {
		r, err := http.NewRequest("GET", s.URL+"/reports?restype=container&comp=list", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Host = "acme.blob.core.windows.net"
		r.Header.Set("x-ms-date", clk.Now().UTC().Format(http.TimeFormat))
		r.Header.Set("x-ms-version", "2025-05-05")
		r.Header.Set("x-ms-client-request-id", "req-1")
		return r
	}
	sign := func(r *http.Request, account string) string {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(azuretest.StringToSign(r, account)))
		return "SharedKey " + account + ":" + base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	do := func(r *http.Request) int {
		t.Helper()
		resp, err := s.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// signed signs base() after change (nil: none), then applies after
	// to the signed request before sending it.
	signed := func(change, after func(*http.Request)) int {
		r := base()
		if change != nil {
			change(r)
		}
		r.Header.Set("Authorization", sign(r, "acme"))
		if after != nil {
			after(r)
		}
		return do(r)
	}
	// List Blobs of a missing container: 404 once authenticated.
	if code := signed(nil, nil); code != http.StatusNotFound {
		t.Fatalf("a signed request: %d, want 404 ContainerNotFound; refused %q", code, s.Refused())
	}
	flip := func(r *http.Request) {
		a := []byte(r.Header.Get("Authorization"))
		i := strings.LastIndexByte(string(a), ':') + 1
		a[i] ^= 1
		r.Header.Set("Authorization", string(a))
	}
	for _, c := range []struct {
		name          string
		change, after func(*http.Request)
	}{
		{"signature one bit off", nil, flip},
		{"another method", nil, func(r *http.Request) { r.Method = "DELETE" }},
		{"another path", nil, func(r *http.Request) { r.URL.Path = "/secrets" }},
		{"another query", nil, func(r *http.Request) { r.URL.RawQuery += "&prefix=x" }},
		{"a signed x-ms- header changed", nil, func(r *http.Request) { r.Header.Set("x-ms-client-request-id", "req-2") }},
		{"an x-ms- header added", nil, func(r *http.Request) { r.Header.Set("x-ms-meta-owner", "eve") }},
		{"a second Authorization", nil, func(r *http.Request) { r.Header.Add("Authorization", "SharedKey acme:client") }},
		{"x-ms-date 16 minutes old", func(r *http.Request) {
			r.Header.Set("x-ms-date", clk.Now().Add(-16*time.Minute).UTC().Format(http.TimeFormat))
		}, nil},
		{"x-ms-date 16 minutes ahead", func(r *http.Request) {
			r.Header.Set("x-ms-date", clk.Now().Add(16*time.Minute).UTC().Format(http.TimeFormat))
		}, nil},
		{"no x-ms-date", func(r *http.Request) { r.Header.Del("x-ms-date") }, nil},
		{"no x-ms-version", func(r *http.Request) { r.Header.Del("x-ms-version") }, nil},
		{"another account", nil, func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "acme:", "other:", 1))
		}},
	} {
		if code := signed(c.change, c.after); code != http.StatusForbidden && code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 403 (or 400)", c.name, code)
		}
	}
	other := base()
	other.Header.Set("Authorization", sign(other, "other"))
	if code := do(other); code != http.StatusForbidden {
		t.Errorf("signed for another account: %d, want 403", code)
	}

	const tenant, client = "contoso", "app-1"
	e.AddApp(azuretest.App{Tenant: tenant, ClientID: client, Secret: "s"})
	token := func(resource string) string {
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {client}, "client_secret": {"s"}, "scope": {resource + "/.default"}}
		resp, err := e.Client().Post(e.TokenURL(tenant), "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.AccessToken == "" {
			t.Fatalf("token: %v", err)
		}
		return out.AccessToken
	}
	bearer := func(tok, version string) int {
		r := base()
		r.Header.Del("x-ms-date")
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("x-ms-version", version)
		return do(r)
	}
	storageTok := token("https://storage.azure.com")
	if code := bearer(storageTok, "2025-05-05"); code != http.StatusNotFound {
		t.Fatalf("a storage bearer token: %d, want 404; refused %q", code, s.Refused())
	}
	for _, c := range []struct{ name, tok, version string }{
		{"x-ms-version before 2017-11-09", storageTok, "2017-07-29"},
		{"no x-ms-version", storageTok, ""},
		{"a token for another resource", token("https://management.azure.com"), "2025-05-05"},
		{"an unknown token", "eyFake.unknown", "2025-05-05"},
	} {
		if code := bearer(c.tok, c.version); code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", c.name, code)
		}
	}
	clk.Add(azuretest.TokenLifetime)
	if code := bearer(storageTok, "2025-05-05"); code != http.StatusForbidden {
		t.Errorf("an expired token: %d, want 403", code)
	}
}

// TestEntraRefusesForgedFederatedTokens: a federated identity credential
// ("Workload identity federation") admits a token of its issuer whose
// sub and aud match, signed by the key its kid names in the issuer's
// JWKS, and current; forged signatures, another issuer, subject or
// audience, an expired token and an unknown or missing kid are refused.
func TestEntraRefusesForgedFederatedTokens(t *testing.T) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	e := azuretest.NewEntra(azuretest.EntraOptions{Now: clk.Now})
	t.Cleanup(e.Close)
	key := fakekit.RSAKey(t)
	const issuer, subject = "https://oidc.example/cluster", "system:serviceaccount:egress:credgate"
	e.AddApp(azuretest.App{Tenant: "contoso", ClientID: "app-1", Federated: []azuretest.FederatedCredential{{
		Issuer: issuer, Subject: subject,
		JWKS: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "fk", Algorithm: "RS256", Use: "sig"}}},
	}}})
	assert := func(tok string) int {
		t.Helper()
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"app-1"}, "scope": {"https://storage.azure.com/.default"},
			"client_assertion_type": {azuretest.AssertionTypeJWT}, "client_assertion": {tok}}
		resp, err := e.Client().Post(e.TokenURL("contoso"), "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	now := clk.Now()
	valid := map[string]any{"iss": issuer, "sub": subject, "aud": azuretest.FederatedAudience,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	kid := map[string]any{"kid": "fk"}
	if code := assert(fakekit.SignRS256(t, key, valid, kid)); code != http.StatusOK {
		t.Fatalf("a valid federated token: %d; refused %q", code, e.Refused())
	}
	forged, err := fakekit.RefusedTokens(valid, key, kid, []fakekit.ClaimChange{
		{Name: "another issuer", Claim: "iss", Value: "https://evil.example"},
		{Name: "another subject", Claim: "sub", Value: "system:serviceaccount:egress:other"},
		{Name: "another audience", Claim: "aud", Value: "api://other"},
		{Name: "expired beyond the skew", Claim: "exp", Value: now.Add(-6 * time.Minute).Unix()},
		{Name: "no exp", Claim: "exp", Value: nil},
	})
	if err != nil {
		t.Fatal(err)
	}
	forged = append(forged,
		fakekit.Forgery{Name: "kid of no key in the JWKS", Token: fakekit.SignRS256(t, key, valid, map[string]any{"kid": "other"})},
		fakekit.Forgery{Name: "no kid", Token: fakekit.SignRS256(t, key, valid, nil)},
	)
	fakekit.ExpectRefused(t, forged, assert, http.StatusBadRequest, http.StatusUnauthorized)
}
