package google_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/internal/googletest"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/google"
)

const (
	email      = "svc@fake-project.iam.gserviceaccount.com"
	keyID      = "k-0123"
	cloudScope = "https://www.googleapis.com/auth/cloud-platform"
	poolAud    = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/ci/providers/workloads"
)

var (
	keyOnce sync.Once
	saKey   *rsa.PrivateKey
)

type fixture struct {
	g       *googletest.Server
	caFile  string
	keyFile string // the JSON key
	pemFile string // the private key alone
	account googletest.Account
}

func newFixture(t *testing.T, opts googletest.Options) *fixture {
	t.Helper()
	keyOnce.Do(func() { saKey, _ = rsa.GenerateKey(rand.Reader, 2048) })
	g := googletest.New(opts)
	t.Cleanup(g.Close)
	a := googletest.Account{Email: email, KeyID: keyID, Key: saKey}
	g.AddAccount(a)
	dir := t.TempDir()
	f := &fixture{g: g, account: a, caFile: filepath.Join(dir, "ca.pem"), keyFile: filepath.Join(dir, "sa.json"), pemFile: filepath.Join(dir, "sa.pem")}
	js, err := a.JSONKey(g.TokenURL)
	if err != nil {
		t.Fatal(err)
	}
	for p, b := range map[string][]byte{f.caFile: g.CertPEM(), f.keyFile: js,
		f.pemFile: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)})} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fixture) tryLoad(t *testing.T, settings string) (providers.Provider, error) {
	t.Helper()
	settings = strings.NewReplacer("JSONKEY", f.keyFile, "PEMKEY", f.pemFile, "CA", f.caFile, "TOKENURL", f.g.TokenURL).Replace(settings)
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(settings), &n); err != nil {
		t.Fatal(err)
	}
	p, err := providers.Load(context.Background(), google.Name, n.Content[0])
	if err == nil {
		t.Cleanup(func() { _ = p.(providers.CleanerUpper).Cleanup() })
	}
	return p, err
}

func (f *fixture) load(t *testing.T, settings string) providers.Provider {
	t.Helper()
	p, err := f.tryLoad(t, settings)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return p
}

// callAPI calls the fake API at host with tok; it returns the status.
func (f *fixture) callAPI(t *testing.T, host, tok string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", f.g.URL+"/v1/projects/fake-project/topics", nil)
	req.Host = host
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := f.g.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func token(t *testing.T, p providers.Provider) (string, time.Time) {
	t.Helper()
	c, err := p.Fetch(t.Context(), providers.Request{Credential: "gcp"})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return c.Fields[providers.FieldToken].Reveal(), c.Expiry
}

func TestAccessToken(t *testing.T) {
	f := newFixture(t, googletest.Options{})
	p := f.load(t, "key: {file: JSONKEY}\nscopes: ["+cloudScope+"]\nca_cert: CA\n")
	tok, exp := token(t, p)
	gotEmail, sub, scopes, ok := f.g.TokenInfo(tok)
	if !ok || gotEmail != email || sub != "" {
		t.Fatalf("the fake knows the token as %q/%q (%v)", gotEmail, sub, ok)
	}
	if diff := cmp.Diff([]string{cloudScope}, scopes); diff != "" {
		t.Errorf("scopes (-want +got):\n%s", diff)
	}
	if d := time.Until(exp); d < 57*time.Minute || d > time.Hour {
		t.Errorf("expiry in %v, want expires_in less a minute", d)
	}
	if st := f.callAPI(t, "pubsub.googleapis.com", tok); st != 200 {
		t.Errorf("API with the access token: %d", st)
	}
	if p.(providers.Reissuer).ReissueOnUnauthorized() != true {
		t.Errorf("access tokens can be revoked; want ReissueOnUnauthorized")
	}

	t.Run("domain-wide delegation and a private key from jwtsign", func(t *testing.T) {
		p := f.load(t, "private_key: {file: PEMKEY}\nclient_email: "+email+"\nkey_id: "+keyID+"\nsubject: admin@example.com\nscopes: [https://www.googleapis.com/auth/admin.directory.user.readonly]\ntoken_url: TOKENURL\nca_cert: CA\n")
		tok, _ := token(t, p)
		_, sub, scopes, ok := f.g.TokenInfo(tok)
		if !ok || sub != "admin@example.com" || len(scopes) != 1 {
			t.Errorf("token for sub %q scopes %v (%v)", sub, scopes, ok)
		}
	})
}

func TestSelfSignedJWT(t *testing.T) {
	f := newFixture(t, googletest.Options{})
	p := f.load(t, "key: {file: JSONKEY}\nmode: self_signed_jwt\naudience: https://pubsub.googleapis.com/\n")
	tok, exp := token(t, p)
	if n := f.g.Grants(); n != 0 {
		t.Errorf("%d token requests; a self-signed JWT needs none", n)
	}
	if d := time.Until(exp); d < 58*time.Minute || d > time.Hour {
		t.Errorf("expiry in %v", d)
	}
	var hdr, claims map[string]any
	seg := strings.Split(tok, ".")
	decode(t, seg[0], &hdr)
	decode(t, seg[1], &claims)
	if hdr["alg"] != "RS256" || hdr["kid"] != keyID {
		t.Errorf("header %v", hdr)
	}
	if claims["iss"] != email || claims["sub"] != email || claims["aud"] != "https://pubsub.googleapis.com/" {
		t.Errorf("claims %v", claims)
	}
	if st := f.callAPI(t, "pubsub.googleapis.com", tok); st != 200 {
		t.Errorf("pubsub with its self-signed JWT: %d", st)
	}
	if st := f.callAPI(t, "storage.googleapis.com", tok); st != 401 {
		t.Errorf("storage with a JWT for pubsub: %d, want 401", st)
	}
	if p.(providers.Reissuer).ReissueOnUnauthorized() {
		t.Errorf("a self-signed JWT is not revocable; fetching again would not help")
	}
	t.Run("scope claim instead of aud", func(t *testing.T) {
		p := f.load(t, "key: {file: JSONKEY}\nmode: self_signed_jwt\nscopes: ["+cloudScope+"]\n")
		tok, _ := token(t, p)
		if st := f.callAPI(t, "storage.googleapis.com", tok); st != 200 {
			t.Errorf("a scoped self-signed JWT: %d", st)
		}
	})
}

func decode(t *testing.T, seg string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil || json.Unmarshal(b, v) != nil {
		t.Fatalf("bad JWT segment")
	}
}

func TestErrors(t *testing.T) {
	f := newFixture(t, googletest.Options{})
	check := func(t *testing.T, p providers.Provider, want string, unavailable bool) {
		t.Helper()
		_, err := p.Fetch(t.Context(), providers.Request{Credential: "gcp"})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want one containing %q", err, want)
		}
		if errors.Is(err, providers.ErrUnavailable) != unavailable {
			t.Errorf("ErrUnavailable = %v, want %v", !unavailable, unavailable)
		}
		if strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(err.Error(), "ya29.") || strings.Contains(err.Error(), "eyJ") {
			t.Errorf("the error leaks a secret: %v", err)
		}
	}
	t.Run("clock skew", func(t *testing.T) {
		skewed := newFixture(t, googletest.Options{Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }})
		p := skewed.load(t, "key: {file: JSONKEY}\nscopes: [s]\nca_cert: CA\n")
		check(t, p, "Google refused the assertion (invalid_grant): check that the key is a current key of "+email+", that the account is enabled, that subject (if set) is allowed by domain-wide delegation, and that the gateway's clock is correct", false)
	})
	t.Run("unknown key", func(t *testing.T) {
		p := f.load(t, "private_key: {file: PEMKEY}\nclient_email: other@x.iam.gserviceaccount.com\nscopes: [s]\ntoken_url: TOKENURL\nca_cert: CA\n")
		check(t, p, "Google does not know the key (invalid_client, 401)", false)
	})
	t.Run("5xx", func(t *testing.T) {
		f.g.Fail(http.StatusServiceUnavailable)
		defer f.g.Fail(0)
		check(t, f.load(t, "key: {file: JSONKEY}\nscopes: [s]\nca_cert: CA\n"), "Google answered 503 Service Unavailable", true)
	})
	t.Run("unreachable", func(t *testing.T) {
		check(t, f.load(t, "key: {file: JSONKEY}\nscopes: [s]\ntoken_url: https://127.0.0.1:1/token\n"), "connection refused", true)
	})
	t.Run("unreadable key", func(t *testing.T) {
		check(t, f.load(t, "key: {file: /nonexistent/sa.json}\nscopes: [s]\n"), "google: key.file /nonexistent/sa.json: cannot read the key", false)
	})
	t.Run("not a JSON key", func(t *testing.T) {
		check(t, f.load(t, "key: {file: PEMKEY}\nscopes: [s]\n"), "is not a JSON service-account key", false)
	})
	t.Run("ctx cancelled", func(t *testing.T) {
		p := f.load(t, "key: {file: JSONKEY}\nscopes: [s]\nca_cert: CA\n")
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := p.Fetch(ctx, providers.Request{Credential: "gcp"})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
}

func TestSettingsErrors(t *testing.T) {
	f := newFixture(t, googletest.Options{})
	tests := []struct{ settings, want string }{
		{"scopes: [s]", "set key (the service account's JSON key"},
		{"key: {file: JSONKEY}\nprivate_key: {file: PEMKEY}\nclient_email: e\nscopes: [s]", "set key"},
		{"key: {file: JSONKEY}", "mode access_token needs scopes"},
		{"key: {file: JSONKEY}\nmode: self_signed_jwt", "needs audience"},
		{"key: {file: JSONKEY}\nmode: self_signed_jwt\naudience: https://example.com/", "not of the form https://SERVICE.googleapis.com/"},
		{"key: {file: JSONKEY}\nmode: self_signed_jwt\naudience: https://pubsub.googleapis.com/\nsubject: u", "subject (domain-wide delegation) needs mode access_token"},
		{"key: {file: JSONKEY}\nmode: bogus\nscopes: [s]", `mode "bogus" is not access_token, self_signed_jwt or id_token`},
		{"key: {file: JSONKEY}\nmode: id_token", "mode id_token needs target_audience"},
		{"key: {file: JSONKEY}\nmode: id_token\ntarget_audience: https://a.run.app\nscopes: [s]", "not scopes or audience"},
		{"key: {file: JSONKEY}\nscopes: [s]\ntarget_audience: https://a.run.app", "target_audience is for mode id_token"},
		{"workload_identity: {audience: " + poolAud + ", subject_token: {factor: jwt}}\nscopes: [s]\nkey: {file: JSONKEY}", "workload_identity is keyless"},
		{"workload_identity: {audience: //iam.googleapis.com/projects/p/pools/x, subject_token: {factor: jwt}}\nscopes: [s]", "is not a workload identity pool provider"},
		{"workload_identity: {audience: " + poolAud + "}\nscopes: [s]", "set one of factor"},
		{"workload_identity: {audience: " + poolAud + ", subject_token: {factor: jwt, file: /t}}\nscopes: [s]", "set one of factor"},
		{"workload_identity: {audience: " + poolAud + ", subject_token: {factor: mtls}}\nscopes: [s]", "not jwt or kubernetes"},
		{"workload_identity: {audience: " + poolAud + ", subject_token: {factor: jwt}}\nmode: id_token\ntarget_audience: https://a.run.app", "needs service_account"},
		{"workload_identity: {audience: " + poolAud + ", subject_token: {factor: jwt}}\nmode: self_signed_jwt\naudience: https://pubsub.googleapis.com/", "needs a service-account key"},
		{"workload_identity: {audience: " + poolAud + ", subject_token: {factor: jwt}, service_account: not-an-email}\nscopes: [s]", "is not a service account's email"},
		{"workload_identity: {audience: " + poolAud + ", subject_token: {factor: jwt}, service_account: " + email + ", lifetime: 13h}\nscopes: [s]", "maximum of 12h"},
		{"workload_identity: {audience: " + poolAud + ", subject_token: {factor: jwt}, sts_url: 'http://sts.example.com/v1/token'}\nscopes: [s]", "workload_identity.sts_url"},
		{"workload_identity: {audience: " + poolAud + ", subject_token: {factor: jwt}}\nscopes: [s]\nsubject: u@example.com", "needs a service-account key"},
		{"private_key: {file: PEMKEY}\nscopes: [s]", "private_key needs client_email"},
		{"key: {file: JSONKEY}\nclient_email: e\nscopes: [s]", "come from the JSON key"},
		{"key: {file: JSONKEY}\nscopes: [s]\ntoken_url: http://oauth2.example.com/token", "must use https"},
		{"key: {file: JSONKEY}\nscopes: [s]\nbogus: 1", "bogus"},
	}
	for _, tt := range tests {
		_, err := f.tryLoad(t, tt.settings)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.settings, err, tt.want)
		}
	}
}

func TestCacheScope(t *testing.T) {
	f := newFixture(t, googletest.Options{})
	variants := []string{
		"key: {file: JSONKEY}\nscopes: [a]",
		"key: {file: JSONKEY}\nscopes: [a, b]",
		"key: {file: JSONKEY}\nscopes: [a]\nsubject: u@example.com",
		"key: {credential: sa}\nscopes: [a]",
		"key: {file: JSONKEY}\nmode: self_signed_jwt\naudience: https://pubsub.googleapis.com/",
		"key: {file: JSONKEY}\nmode: self_signed_jwt\naudience: https://storage.googleapis.com/",
		"key: {file: JSONKEY}\nscopes: [a]\ntoken_url: https://oauth2.example.com/token",
		"key: {file: JSONKEY}\nmode: id_token\ntarget_audience: https://a.run.app",
		"key: {file: JSONKEY}\nmode: id_token\ntarget_audience: https://b.run.app",
		"workload_identity: {audience: " + poolAud + ", subject_token: {file: /t}}\nscopes: [a]",
		"workload_identity: {audience: " + poolAud + "2, subject_token: {file: /t}}\nscopes: [a]",
		"workload_identity: {audience: " + poolAud + ", subject_token: {file: /t2}}\nscopes: [a]",
		"workload_identity: {audience: " + poolAud + ", subject_token: {file: /t}, service_account: " + email + "}\nscopes: [a]",
		"workload_identity: {audience: " + poolAud + ", subject_token: {file: /t}, service_account: " + email + ", lifetime: 2h}\nscopes: [a]",
		"workload_identity: {audience: " + poolAud + ", subject_token: {file: /t}, service_account: " + email + "}\nmode: id_token\ntarget_audience: https://a.run.app",
	}
	seen := map[string]string{}
	for _, v := range variants {
		p := f.load(t, v)
		s := p.(providers.Scoped).CacheScope(providers.Request{})
		if prev, dup := seen[s]; dup {
			t.Errorf("%q and %q share a cache scope", prev, v)
		}
		seen[s] = v
	}
}

// TestConcurrentFirstRequests: through the gateway's cache, 50 concurrent
// first requests make one token request.
func TestConcurrentFirstRequests(t *testing.T) {
	f := newFixture(t, googletest.Options{})
	p := f.load(t, "key: {file: JSONKEY}\nscopes: ["+cloudScope+"]\nca_cert: CA\n")
	c := providers.NewCache(providers.CacheOptions{})
	t.Cleanup(c.Close)
	key := providers.CacheKey{Credential: "gcp", Provider: google.Name, Version: "v1", Scope: p.(providers.Scoped).CacheScope(providers.Request{})}
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := c.Get(t.Context(), key, func(ctx context.Context) (*providers.Credential, error) {
				return p.Fetch(ctx, providers.Request{Credential: "gcp"})
			}); err != nil {
				t.Errorf("Get: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := f.g.Grants(); n != 1 {
		t.Errorf("%d token requests for 50 concurrent first requests, want 1", n)
	}
}

// TestKeyFromCredential: the JSON key comes from another credential, and
// no printed form shows it.
func TestKeyFromCredential(t *testing.T) {
	f := newFixture(t, googletest.Options{})
	p := f.load(t, "key: {credential: sa-json}\nscopes: ["+cloudScope+"]\nca_cert: CA\n")
	js, _ := os.ReadFile(f.keyFile)
	p.(providers.Composer).SetInputs(map[string]providers.Provider{"sa-json": staticJSON(js)})
	tok, _ := token(t, p)
	if _, _, _, ok := f.g.TokenInfo(tok); !ok {
		t.Errorf("token unknown to the fake")
	}
	for _, out := range []string{fmt.Sprint(p), fmt.Sprintf("%#v", p)} {
		if strings.Contains(out, "PRIVATE") || strings.Contains(out, tok) {
			t.Errorf("printed form leaks: %s", out)
		}
	}
}

type staticJSON []byte

func (s staticJSON) Fetch(context.Context, providers.Request) (*providers.Credential, error) {
	return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(string(s))}}, nil
}
