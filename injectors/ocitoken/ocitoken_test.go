package ocitoken

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/injectors/injectortest"
	"github.com/credgate/credgate/internal/fakekit"
	"github.com/credgate/credgate/providers"
)

const (
	testUser     = "ci-robot"
	testPassword = "s3cr3t-registry-password"
	testService  = "registry.test"
)

// realm is a token service as the docker token protocol specifies it:
// GET ?service=S&scope=... with HTTP Basic, answered with a token per
// request. It records every exchange's scopes.
type realm struct {
	srv    *httptest.Server
	caFile string

	mu        sync.Mutex
	exchanges [][]string      // scopes of each accepted exchange
	status    int             // answer instead of a token when not 0
	expiresIn json.RawMessage // expires_in as sent; left out when nil
	hold      chan struct{}   // when set, exchanges wait for it to close
	held      chan struct{}   // receives once per exchange that waits
}

func startRealm(t *testing.T) *realm {
	t.Helper()
	rl := &realm{expiresIn: json.RawMessage("300")}
	rl.srv = fakekit.StartTLS(http.HandlerFunc(rl.serve), nil)
	t.Cleanup(rl.srv.Close)
	ca, err := fakekit.WriteCAFile(rl.srv, t.TempDir(), "realm-ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	rl.caFile = ca
	return rl
}

func (rl *realm) serve(w http.ResponseWriter, r *http.Request) {
	rl.mu.Lock()
	status, hold, held, exp := rl.status, rl.hold, rl.held, rl.expiresIn
	rl.mu.Unlock()
	if hold != nil {
		held <- struct{}{}
		<-hold
	}
	if status != 0 {
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"errors":[{"code":"DENIED","message":"echo %s"}]}`, r.Header.Get("Authorization"))
		return
	}
	u, p, ok := r.BasicAuth()
	if r.Method != http.MethodGet || !ok || u != testUser || p != testPassword || r.URL.Query().Get("service") != testService {
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	rl.mu.Lock()
	rl.exchanges = append(rl.exchanges, r.URL.Query()["scope"])
	n := len(rl.exchanges)
	rl.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	answer := map[string]any{"token": fmt.Sprintf("tok.%d", n), "issued_at": time.Now().UTC().Format(time.RFC3339)}
	if exp != nil {
		answer["expires_in"] = exp
	}
	_ = json.NewEncoder(w).Encode(answer)
}

func (rl *realm) seen() [][]string {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return append([][]string(nil), rl.exchanges...)
}

func (rl *realm) load(t *testing.T, extra string) *Injector {
	t.Helper()
	inj, err := injectortest.Load(t, "oci-token", fmt.Sprintf("realm: %s/token\nservice: %s\nca_cert: %s\n%s", rl.srv.URL, testService, rl.caFile, extra))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return inj.(*Injector)
}

func registryCred() *providers.Credential {
	return &providers.Credential{Fields: map[string]providers.Secret{
		providers.FieldUsername: providers.NewSecret(testUser),
		providers.FieldPassword: providers.NewSecret(testPassword),
	}}
}

// inject applies inj as the gateway does and returns the Authorization
// the registry would receive.
func inject(t *testing.T, inj injectors.Injector, cred *providers.Credential, method, target string) (string, error) {
	t.Helper()
	r := httptest.NewRequest(method, "https://registry.test"+target, nil)
	r.Header.Set("Authorization", "Basic Y2xpZW50OmNob3Nlbg==") // the client's own: replaced
	err := injectors.ApplyFor(inj, r, cred, identity.Workload{Name: "ci"})
	return r.Header.Get("Authorization"), err
}

// TestScope derives the scope the registry checks from each route of the
// distribution API, and refuses what is not one.
func TestScope(t *testing.T) {
	for _, tc := range []struct {
		method, target string
		want           []string
		err            bool
	}{
		{"GET", "/v2/", nil, false},
		{"GET", "/v2", nil, false},
		{"GET", "/v2/_catalog?n=10", []string{"registry:catalog:*"}, false},
		{"GET", "/v2/library/alpine/manifests/3.20", []string{"repository:library/alpine:pull"}, false},
		{"HEAD", "/v2/app/manifests/sha256:" + strings.Repeat("a", 64), []string{"repository:app:pull"}, false},
		{"GET", "/v2/a/b/c/blobs/sha256:" + strings.Repeat("b", 64), []string{"repository:a/b/c:pull"}, false},
		{"GET", "/v2/team/app/tags/list", []string{"repository:team/app:pull"}, false},
		{"GET", "/v2/team/app/referrers/sha256:" + strings.Repeat("c", 64), []string{"repository:team/app:pull"}, false},
		{"POST", "/v2/team/app/blobs/uploads/", []string{"repository:team/app:pull,push"}, false},
		{"POST", "/v2/team/app/blobs/uploads", []string{"repository:team/app:pull,push"}, false},
		{"PATCH", "/v2/team/app/blobs/uploads/5b3c-77a1", []string{"repository:team/app:pull,push"}, false},
		{"PUT", "/v2/team/app/blobs/uploads/5b3c-77a1?digest=sha256:00", []string{"repository:team/app:pull,push"}, false},
		{"PUT", "/v2/team/app/manifests/v1", []string{"repository:team/app:pull,push"}, false},
		{"DELETE", "/v2/team/app/manifests/sha256:" + strings.Repeat("d", 64), []string{"repository:team/app:delete"}, false},
		// A repository named like a route keyword is still one name.
		{"GET", "/v2/x/manifests/manifests/latest", []string{"repository:x/manifests:pull"}, false},
		// A cross-repository mount reads the other repository too.
		{"POST", "/v2/team/app/blobs/uploads/?mount=sha256:00&from=base/img", []string{"repository:team/app:pull,push", "repository:base/img:pull"}, false},
		{"POST", "/v2/team/app/blobs/uploads/?mount=sha256:00&from=team/app", []string{"repository:team/app:pull,push"}, false},
		{"POST", "/v2/team/app/blobs/uploads/?mount=sha256:00&from=Bad..Name", nil, true},
		{"GET", "/v2/UPPER/manifests/v1", nil, true},
		{"GET", "/v2/a//b/manifests/v1", nil, true},
		{"GET", "/v2/manifests/v1", nil, true},
		{"GET", "/v2/app/blobs/notadigest", nil, true},
		{"GET", "/v2/app/other/x", nil, true},
		{"GET", "/v3/app/manifests/v1", nil, true},
		// Realms served on the registry's own host (Harbor, GAR, Quay):
		// a client asking one through the rule gets no Basic credential.
		{"GET", "/service/token?service=harbor-registry", nil, true},
		{"GET", "/v2/token?scope=repository:x:pull", nil, true},
		{"GET", "/v2/auth", nil, true},
		{"GET", "/", nil, true},
		{"OPTIONS", "/v2/app/manifests/v1", nil, true},
		{"GET", "/v2/a%2Fb/manifests/v1", nil, true},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			u, err := url.Parse(tc.target)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Scope(tc.method, u)
			if tc.err {
				if err == nil || injectors.FaultOf(err) != injectors.FaultRequest {
					t.Fatalf("Scope = %q, %v; want a request fault", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("scope (-want +got):\n%s", diff)
			}
		})
	}
}

// TestExchangeAndCache: the registry gets a Bearer token for exactly the
// request's scope, never the password; one exchange per credential and
// scope until the token nears expiry.
func TestExchangeAndCache(t *testing.T) {
	rl := startRealm(t)
	inj := rl.load(t, "")
	now := time.Now()
	inj.tokens.now = func() time.Time { return now }
	cred := registryCred()

	steps := []struct {
		method, target, want string
	}{
		{"GET", "/v2/", "Bearer tok.1"},
		{"GET", "/v2/team/app/manifests/v1", "Bearer tok.2"},
		{"GET", "/v2/team/app/blobs/sha256:" + strings.Repeat("a", 64), "Bearer tok.2"}, // same scope: cached
		{"HEAD", "/v2/team/app/manifests/v1", "Bearer tok.2"},
		{"PUT", "/v2/team/app/manifests/v2", "Bearer tok.3"}, // push: its own scope
		{"GET", "/v2/team/other/manifests/v1", "Bearer tok.4"},
		{"GET", "/v2/", "Bearer tok.1"},
	}
	for _, s := range steps {
		got, err := inject(t, inj, cred, s.method, s.target)
		if err != nil || got != s.want {
			t.Fatalf("%s %s: Authorization %q, %v; want %q", s.method, s.target, got, err, s.want)
		}
	}
	want := [][]string{nil, {"repository:team/app:pull"}, {"repository:team/app:pull,push"}, {"repository:team/other:pull"}}
	if diff := cmp.Diff(want, rl.seen()); diff != "" {
		t.Errorf("exchanges' scopes (-want +got):\n%s", diff)
	}

	// 300 s tokens are refreshed 30 s before they expire.
	now = now.Add(269 * time.Second)
	if got, _ := inject(t, inj, cred, "GET", "/v2/team/app/manifests/v1"); got != "Bearer tok.2" {
		t.Errorf("at 269 s: %q, want the cached tok.2", got)
	}
	now = now.Add(2 * time.Second)
	if got, _ := inject(t, inj, cred, "GET", "/v2/team/app/manifests/v1"); got != "Bearer tok.5" {
		t.Errorf("at 271 s: %q, want a new token", got)
	}

	// Another credential (a rotated password) never gets the old one's tokens.
	rotated := &providers.Credential{Fields: map[string]providers.Secret{
		providers.FieldUsername: providers.NewSecret(testUser),
		providers.FieldPassword: providers.NewSecret("rotated-password"),
	}}
	if got, err := inject(t, inj, rotated, "GET", "/v2/team/app/manifests/v1"); err == nil || got == "Bearer tok.5" {
		t.Errorf("a credential the realm refuses got %q, %v", got, err)
	}
}

// TestShortTokens: a token without expires_in lives the spec's 60 s and
// is sent for 45 of them.
func TestShortTokens(t *testing.T) {
	rl := startRealm(t)
	rl.expiresIn = nil
	inj := rl.load(t, "")
	now := time.Now()
	inj.tokens.now = func() time.Time { return now }
	for i, step := range []struct {
		after time.Duration
		want  string
	}{{0, "Bearer tok.1"}, {44 * time.Second, "Bearer tok.1"}, {2 * time.Second, "Bearer tok.2"}} {
		now = now.Add(step.after)
		if got, err := inject(t, inj, registryCred(), "GET", "/v2/app/manifests/v1"); err != nil || got != step.want {
			t.Fatalf("step %d: %q, %v; want %q", i, got, err, step.want)
		}
	}
}

// TestStatedLifetime: the realm's expires_in is read as every provider
// reads a stated lifetime (providers.LifetimeSeconds): 0, negative or not
// a whole number is the token service's fault, named, nothing injected
// and nothing cached; a string of digits or a huge count is a lifetime,
// kept at most maxTokenLife.
func TestStatedLifetime(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		keep time.Duration // 0: refused
	}{
		{"0", 0}, {"-1", 0}, {"-3600", 0}, {`"soon"`, 0}, {"3600.5", 0}, {"true", 0}, {"{}", 0},
		{`"300"`, 300*time.Second - 30*time.Second},
		{"99999999999999999999", maxTokenLife - 30*time.Second},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			rl := startRealm(t)
			rl.expiresIn = json.RawMessage(tc.raw)
			inj := rl.load(t, "")
			now := time.Now()
			inj.tokens.now = func() time.Time { return now }
			got, err := inject(t, inj, registryCred(), "GET", "/v2/app/manifests/v1")
			if tc.keep == 0 {
				if err == nil || got != "" || !strings.Contains(err.Error(), "expires_in") || injectors.FaultOf(err) != injectors.FaultInjector {
					t.Fatalf("expires_in %s: got %q, %v; want an error naming expires_in, the token service's fault, nothing injected", tc.raw, got, err)
				}
				if strings.Contains(err.Error(), "tok.") || strings.Contains(err.Error(), testPassword) {
					t.Errorf("the error holds a token or the password: %v", err)
				}
				if _, err := inject(t, inj, registryCred(), "GET", "/v2/app/manifests/v1"); err == nil || len(rl.seen()) != 2 {
					t.Errorf("a refused answer was cached: %d exchanges, %v", len(rl.seen()), err)
				}
				return
			}
			if err != nil || got != "Bearer tok.1" {
				t.Fatalf("expires_in %s: %q, %v", tc.raw, got, err)
			}
			now = now.Add(tc.keep - time.Second)
			if got, _ := inject(t, inj, registryCred(), "GET", "/v2/app/manifests/v1"); got != "Bearer tok.1" {
				t.Errorf("expires_in %s: %q before the refresh time, want the cached tok.1", tc.raw, got)
			}
			now = now.Add(2 * time.Second)
			if got, _ := inject(t, inj, registryCred(), "GET", "/v2/app/manifests/v1"); got != "Bearer tok.2" {
				t.Errorf("expires_in %s: %q after the refresh time, want a new tok.2", tc.raw, got)
			}
		})
	}
}

// TestConcurrentFirstRequests: requests of one scope arriving while its
// exchange runs wait for it: one exchange.
func TestConcurrentFirstRequests(t *testing.T) {
	rl := startRealm(t)
	rl.hold, rl.held = make(chan struct{}), make(chan struct{}, 16)
	inj := rl.load(t, "")
	const n = 8
	var wg sync.WaitGroup
	got := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { got[i], errs[i] = inject(t, inj, registryCred(), "GET", "/v2/app/manifests/v1") })
	}
	<-rl.held // the first exchange reached the realm
	close(rl.hold)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || got[i] != "Bearer tok.1" {
			t.Errorf("request %d: %q, %v", i, got[i], errs[i])
		}
	}
	if len(rl.seen()) != 1 {
		t.Errorf("%d exchanges, want 1", len(rl.seen()))
	}
}

// TestFailures: what the realm answers decides whose fault an error is;
// no error holds the password or a token, and nothing is injected.
func TestFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		cred   *providers.Credential
		target string
		fault  injectors.Fault
	}{
		{"wrong password", 0, &providers.Credential{Fields: map[string]providers.Secret{
			providers.FieldUsername: providers.NewSecret(testUser), providers.FieldPassword: providers.NewSecret("wrong")}}, "/v2/app/manifests/v1", injectors.FaultValue},
		{"no password field", 0, &providers.Credential{Fields: map[string]providers.Secret{
			providers.FieldUsername: providers.NewSecret(testUser)}}, "/v2/app/manifests/v1", injectors.FaultValue},
		{"realm 401", http.StatusUnauthorized, registryCred(), "/v2/app/manifests/v1", injectors.FaultValue},
		{"realm 500", http.StatusInternalServerError, registryCred(), "/v2/app/manifests/v1", injectors.FaultInjector},
		{"realm 403", http.StatusForbidden, registryCred(), "/v2/app/manifests/v1", injectors.FaultInjector},
		{"realm redirects", http.StatusTemporaryRedirect, registryCred(), "/v2/app/manifests/v1", injectors.FaultInjector},
		{"realm answers no token", http.StatusOK, registryCred(), "/v2/app/manifests/v1", injectors.FaultInjector},
		{"not a registry path", 0, registryCred(), "/admin", injectors.FaultRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rl := startRealm(t)
			rl.status = tc.status
			inj := rl.load(t, "")
			got, err := inject(t, inj, tc.cred, "GET", tc.target)
			if err == nil {
				t.Fatalf("Authorization %q, no error", got)
			}
			if f := injectors.FaultOf(err); f != tc.fault {
				t.Errorf("fault %s, want %s (%v)", f, tc.fault, err)
			}
			if got != "" { // ApplyFor removed the client's; nothing was set
				t.Errorf("the request carries Authorization %q", got)
			}
			for _, secret := range []string{testPassword, "tok.", "echo"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q holds %q", err, secret)
				}
			}
		})
	}
}

// TestSettings refuses settings that cannot work, saying what to set.
func TestSettings(t *testing.T) {
	for _, tc := range []struct{ settings, want string }{
		{"service: r", "set realm"},
		{"realm: https://auth.example/token", "set service"},
		{"realm: http://auth.example/token\nservice: r", "use https"},
		{"realm: https://auth.example/token?x=1\nservice: r", "no query"},
		{"realm: https://u:p@auth.example/token\nservice: r", "must not carry credentials"},
		{"realm: https://auth.example/token\nservice: r\nusername: a:b", "username must not"},
		{"realm: https://auth.example/token\nservice: r\nca_cert: /nonexistent/ca.pem", "ca_cert"},
		{"realm: https://auth.example/token\nservice: r\nscope: x", "scope"},
	} {
		_, err := injectortest.Load(t, "oci-token", tc.settings)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want an error saying %q", tc.settings, err, tc.want)
		}
	}
	if _, err := injectortest.Load(t, "oci-token", "realm: http://127.0.0.1:5001/token\nservice: r\nusername: oauth2accesstoken\npassword_field: token"); err != nil {
		t.Errorf("loopback realm with a fixed user name: %v", err)
	}
}

// TestFixedUsername: username replaces username_field (Google's
// oauth2accesstoken with an access token as the password).
func TestFixedUsername(t *testing.T) {
	rl := startRealm(t)
	inj := rl.load(t, "username: "+testUser+"\npassword_field: token")
	cred := &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(testPassword)}}
	if got, err := inject(t, inj, cred, "GET", "/v2/app/manifests/v1"); err != nil || got != "Bearer tok.1" {
		t.Fatalf("%q, %v", got, err)
	}
}
