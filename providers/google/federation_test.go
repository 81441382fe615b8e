package google_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/googletest"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/google"
	"github.com/credgate/credgate/providers/providertest"
)

const (
	wlIssuer = "https://workloads.example.test"
	runAud   = "https://hello-abc-uc.a.run.app"
)

// workloadIssuer is the workloads' OIDC issuer: an ES256 key the pool
// trusts through its JWKS.
type workloadIssuer struct {
	key *ecdsa.PrivateKey
}

func newWorkloadIssuer(t *testing.T) *workloadIssuer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &workloadIssuer{key: k}
}

func (w *workloadIssuer) jwks() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: w.key.Public(), KeyID: "wl-1", Algorithm: "ES256", Use: "sig"}}}
}

// mint signs a workload token for sub with the audiences.
func (w *workloadIssuer) mint(t *testing.T, sub string, aud ...string) string {
	t.Helper()
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: w.key}, (&jose.SignerOptions{}).WithHeader("kid", "wl-1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	raw, err := jwt.Signed(sg).Claims(jwt.Claims{Issuer: wlIssuer, Subject: sub, Audience: aud,
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(10 * time.Minute))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// federation adds a pool trusting a workload issuer to the fixture's
// fake, and lets the fixture's account be impersonated by the pool.
func (f *fixture) federation(t *testing.T) (*workloadIssuer, googletest.Pool) {
	t.Helper()
	wi := newWorkloadIssuer(t)
	pool := googletest.Pool{Provider: poolAud, Issuer: wlIssuer, JWKS: wi.jwks()}
	f.g.AddPool(pool)
	a := f.account
	a.WorkloadUsers = []string{pool.PrincipalSet()}
	f.g.AddAccount(a)
	return wi, pool
}

// wif is workload_identity settings against the fixture's fake.
func (f *fixture) wif(extra string) string {
	return "workload_identity: {audience: " + poolAud + ", sts_url: " + f.g.STSURL + ", iam_credentials_url: " + f.g.URL + extra + "}\nca_cert: CA\n"
}

// workload is a caller with a verified jwt factor carrying tok.
func workload(name, tok string) identity.Workload {
	return identity.Workload{Name: name, Factors: []identity.Factor{{Kind: identity.KindJWT, Subject: name, Token: identity.NewToken(tok)}}}
}

// verifyIDToken checks an ID token as Cloud Run does: the signature with
// the key set Google serves (fetched from the fake's JWKS URL), the
// issuer and the audience. It returns the email claim.
func verifyIDToken(t *testing.T, f *fixture, raw, aud string) string {
	t.Helper()
	resp, err := f.g.Client().Get(f.g.JWKSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jwks jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&jwks); err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("the ID token does not parse: %v", err)
	}
	var c jwt.Claims
	var extra struct {
		Email string `json:"email"`
	}
	if err := tok.Claims(jwks, &c, &extra); err != nil {
		t.Fatalf("the ID token's signature does not verify with Google's keys: %v", err)
	}
	if err := c.Validate(jwt.Expected{Issuer: f.g.IDTokenIssuer(), AnyAudience: jwt.Audience{aud}, Time: time.Now()}); err != nil {
		t.Fatalf("the ID token's claims: %v", err)
	}
	return extra.Email
}

func TestIDTokenFromKey(t *testing.T) {
	f := newFixture(t, googletest.Options{})
	p := f.load(t, "key: {file: JSONKEY}\nmode: id_token\ntarget_audience: "+runAud+"\nca_cert: CA\n")
	tok, exp := token(t, p)
	if got := verifyIDToken(t, f, tok, runAud); got != email {
		t.Errorf("the ID token's email = %q, want %q", got, email)
	}
	if d := time.Until(exp); d < 58*time.Minute || d > time.Hour {
		t.Errorf("Expiry in %v, want the ID token's exp (1h) less a minute", d)
	}
	if !p.(providers.Reissuer).ReissueOnUnauthorized() {
		t.Errorf("an ID token is not reissued after a 401")
	}
	// Another audience is another credential.
	p2 := f.load(t, "key: {file: JSONKEY}\nmode: id_token\ntarget_audience: https://other.a.run.app\nca_cert: CA\n")
	if p.(providers.Scoped).CacheScope(providers.Request{}) == p2.(providers.Scoped).CacheScope(providers.Request{}) {
		t.Errorf("two target audiences share a cache scope")
	}
}

func TestWorkloadIdentityFederatedToken(t *testing.T) {
	f := newFixture(t, googletest.Options{})
	wi, pool := f.federation(t)
	p := f.load(t, f.wif(", subject_token: {factor: jwt}")+"scopes: ["+cloudScope+"]\n")
	wlTok := wi.mint(t, "billing-api", "https:"+poolAud)
	c, err := p.Fetch(t.Context(), providers.Request{Credential: "gcp", Workload: workload("billing", wlTok)})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	tok := c.Fields[providers.FieldToken].Reveal()
	if f.callAPI(t, "storage.googleapis.com", tok) != http.StatusOK {
		t.Fatalf("the API refused the federated token")
	}
	if calls := f.g.APICalls(); len(calls) != 1 || calls[0] != pool.Principal("billing-api") {
		t.Errorf("the API served %v, want the workload's principal", calls)
	}
	if n := f.g.Impersonations(); n != 0 {
		t.Errorf("%d impersonations without service_account", n)
	}
}

func TestWorkloadIdentityImpersonation(t *testing.T) {
	f := newFixture(t, googletest.Options{})
	wi, _ := f.federation(t)
	wlTok := wi.mint(t, "billing-api", "credgate", "https:"+poolAud)
	req := providers.Request{Credential: "gcp", Workload: workload("billing", wlTok)}

	t.Run("access token", func(t *testing.T) {
		p := f.load(t, f.wif(", subject_token: {factor: jwt}, service_account: "+email+", lifetime: 30m")+"scopes: ["+cloudScope+"]\n")
		c, err := p.Fetch(t.Context(), req)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if d := time.Until(c.Expiry); d < 28*time.Minute || d > 30*time.Minute {
			t.Errorf("Expiry in %v, want the 30m lifetime less a minute", d)
		}
		tok := c.Fields[providers.FieldToken].Reveal()
		if f.callAPI(t, "storage.googleapis.com", tok) != http.StatusOK {
			t.Fatalf("the API refused the impersonated token")
		}
		if calls := f.g.APICalls(); calls[len(calls)-1] != email {
			t.Errorf("the API served %v, want the service account", calls)
		}
	})
	t.Run("ID token", func(t *testing.T) {
		p := f.load(t, f.wif(", subject_token: {factor: jwt}, service_account: "+email)+"mode: id_token\ntarget_audience: "+runAud+"\n")
		c, err := p.Fetch(t.Context(), req)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if got := verifyIDToken(t, f, c.Fields[providers.FieldToken].Reveal(), runAud); got != email {
			t.Errorf("the ID token's email = %q, want %q", got, email)
		}
	})
	t.Run("subject token from a file the gateway holds", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(file, []byte(wi.mint(t, "gateway", "https:"+poolAud)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		p := f.load(t, f.wif(", subject_token: {file: "+file+"}, service_account: "+email)+"scopes: ["+cloudScope+"]\n")
		if _, err := p.Fetch(t.Context(), providers.Request{Credential: "gcp"}); err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		// Not per caller: one credential for everyone.
		sc := p.(providers.Scoped)
		if sc.CacheScope(req) != sc.CacheScope(providers.Request{Credential: "gcp", Workload: workload("other", "x")}) {
			t.Errorf("a gateway-held subject token gave per-workload scopes")
		}
	})
}

// TestWorkloadIdentityCacheScope: with the workload's token as subject,
// the scope holds the workload and its token (by digest).
func TestWorkloadIdentityCacheScope(t *testing.T) {
	f := newFixture(t, googletest.Options{})
	p := f.load(t, f.wif(", subject_token: {factor: jwt}")+"scopes: ["+cloudScope+"]\n").(providers.Scoped)
	scope := func(name, tok string) string {
		return p.CacheScope(providers.Request{Credential: "gcp", Workload: workload(name, tok)})
	}
	if first, again := scope("a", "t1"), scope("a", "t1"); first != again {
		t.Errorf("the same workload and token got two scopes")
	}
	for _, pair := range [][2][2]string{{{"a", "t1"}, {"b", "t1"}}, {{"a", "t1"}, {"a", "t2"}}, {{"a", ""}, {"b", ""}}} {
		if scope(pair[0][0], pair[0][1]) == scope(pair[1][0], pair[1][1]) {
			t.Errorf("%v and %v share a scope", pair[0], pair[1])
		}
	}
	if s := scope("a", "secret-subject-token"); strings.Contains(s, "secret-subject-token") {
		t.Errorf("the cache scope holds the subject token")
	}
	providertest.CheckScopes(t, providertest.ScopeCheck{
		Fixed: []string{"key", "private_key", "client_email", "key_id", "workload_identity", "mode", "target_audience", "scopes",
			"audience", "subject", "token_url", "ca_cert", "timeout"},
		New: func(t *testing.T, _ map[string]string) providers.Provider {
			return f.load(t, f.wif(", subject_token: {factor: jwt}")+"scopes: ["+cloudScope+"]\n")
		},
	})
}

func TestWorkloadIdentityErrors(t *testing.T) {
	f := newFixture(t, googletest.Options{})
	wi, _ := f.federation(t)
	good := wi.mint(t, "billing-api", "https:"+poolAud)
	other := newWorkloadIssuer(t)
	tests := []struct {
		name, settings, token string
		want                  string
		unavailable           bool
	}{
		{"wrong audience", ", subject_token: {factor: jwt}", wi.mint(t, "billing-api", "credgate"), "STS refused the subject token (invalid_grant)", false},
		{"untrusted signer", ", subject_token: {factor: jwt}", other.mint(t, "billing-api", "https:"+poolAud), "STS refused the subject token", false},
		{"no token", ", subject_token: {factor: kubernetes}", good, "presented no verified kubernetes token", false},
		{"unknown pool", ", subject_token: {factor: jwt}", good, "does not know the pool provider", false},
		{"not allowed to impersonate", ", subject_token: {factor: jwt}, service_account: other@fake-project.iam.gserviceaccount.com", good, "may not impersonate other@fake-project.iam.gserviceaccount.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			settings := f.wif(tt.settings) + "scopes: [" + cloudScope + "]\n"
			if tt.name == "unknown pool" {
				settings = strings.Replace(settings, poolAud, strings.Replace(poolAud, "/ci/", "/nope/", 1), 1)
			}
			if strings.Contains(tt.name, "impersonate") {
				f.g.AddAccount(googletest.Account{Email: "other@fake-project.iam.gserviceaccount.com", KeyID: "o", Key: saKey})
			}
			p := f.load(t, settings)
			_, err := p.Fetch(t.Context(), providers.Request{Credential: "gcp", Workload: workload("billing", tt.token)})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if errors.Is(err, providers.ErrUnavailable) != tt.unavailable {
				t.Errorf("ErrUnavailable = %v, want %v: %v", !tt.unavailable, tt.unavailable, err)
			}
			if strings.Contains(fmt.Sprintf("%+v", err), tt.token) {
				t.Errorf("the error holds the subject token")
			}
		})
	}
	t.Run("STS down", func(t *testing.T) {
		f.g.Fail(http.StatusServiceUnavailable)
		defer f.g.Fail(0)
		p := f.load(t, f.wif(", subject_token: {factor: jwt}")+"scopes: ["+cloudScope+"]\n")
		_, err := p.Fetch(t.Context(), providers.Request{Credential: "gcp", Workload: workload("billing", good)})
		if !errors.Is(err, providers.ErrUnavailable) {
			t.Errorf("err = %v, want ErrUnavailable", err)
		}
	})
}

// TestConformanceWorkloadIdentity runs the conformance checks for
// workload identity federation with impersonation (subject token from a
// file, as a gateway-held token).
func TestConformanceWorkloadIdentity(t *testing.T) {
	f := newFixture(t, googletest.Options{})
	wi, _ := f.federation(t)
	subject := wi.mint(t, "gateway", "https:"+poolAud)
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(subject), 0o600); err != nil {
		t.Fatal(err)
	}
	expand := strings.NewReplacer("CA", f.caFile).Replace
	settings := expand(f.wif(", subject_token: {file: "+file+"}, service_account: "+email) + "scopes: [" + cloudScope + "]\n")
	providertest.CheckConformance(t, providertest.Conformance{
		Name:     google.Name,
		Settings: settings,
		Bad: []providertest.BadSettings{
			{Settings: "workload_identity: {audience: nope, subject_token: {file: " + file + "}}\nscopes: [s]", Want: "not a workload identity pool provider"},
		},
		Issued: f.g.Impersonations,
		Stalled: func(url string) string {
			return "workload_identity: {audience: " + poolAud + ", sts_url: " + url + "/v1/token, subject_token: {file: " + file + "}, service_account: " + email + "}\nscopes: [" + cloudScope + "]\n"
		},
		Unauthorized: func(on bool) {
			if on {
				f.g.Fail(http.StatusUnauthorized)
			} else {
				f.g.Fail(0)
			}
		},
		Secrets: []string{subject},
		// The served token is the impersonated one: its expireTime.
		Lifetime:      f.g.SetImpersonationLifetime,
		LifetimeField: "expireTime",
	})
}

// TestWorkloadIdentitySubjectFromCredential: the subject token comes from
// another credential of the policy (composition), under its field.
func TestWorkloadIdentitySubjectFromCredential(t *testing.T) {
	f := newFixture(t, googletest.Options{})
	wi, _ := f.federation(t)
	p := f.load(t, f.wif(", subject_token: {credential: spiffe-jwt, field: svid}, service_account: "+email)+"scopes: ["+cloudScope+"]\n")
	if got := p.(providers.Composer).Inputs(); len(got) != 1 || got[0] != "spiffe-jwt" {
		t.Fatalf("Inputs = %v, want [spiffe-jwt]", got)
	}
	p.(providers.Composer).SetInputs(map[string]providers.Provider{"spiffe-jwt": fieldSource{"svid": wi.mint(t, "gateway", "https:"+poolAud)}})
	tok, _ := token(t, p)
	if f.callAPI(t, "storage.googleapis.com", tok) != http.StatusOK {
		t.Errorf("the API refused the impersonated token")
	}
	p.(providers.Composer).SetInputs(map[string]providers.Provider{"spiffe-jwt": fieldSource{"other": "x"}})
	if _, err := p.Fetch(t.Context(), providers.Request{Credential: "gcp"}); err == nil || !strings.Contains(err.Error(), "has no field svid") {
		t.Errorf("err = %v, want the missing field named", err)
	}
}

// fieldSource is an input credential with fixed fields.
type fieldSource map[string]string

func (s fieldSource) Fetch(context.Context, providers.Request) (*providers.Credential, error) {
	c := &providers.Credential{Fields: map[string]providers.Secret{}}
	for k, v := range s {
		c.Fields[k] = providers.NewSecret(v)
	}
	return c, nil
}
