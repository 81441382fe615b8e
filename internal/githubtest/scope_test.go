package githubtest_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/fakekit"
	"github.com/credgate/credgate/internal/githubtest"
)

// TestFakeScopesInstallationTokens: what GitHub refuses after the app
// JWT verified. An app may mint only for its own installations; an
// installation token opens only its installation's repositories (and
// the ones it was narrowed to), in any of GitHub's spellings (Bearer,
// token, Basic x-access-token), and stops working at its expires_at.
func TestFakeScopesInstallationTokens(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := githubtest.New(githubtest.Options{Now: clock, TokenTTL: time.Hour})
	t.Cleanup(s.Close)
	key, otherKey := fakekit.RSAKey(t), fakekit.RSAKey(t)
	s.AddApp(githubtest.App{ID: 4242, PublicKey: &key.PublicKey})
	s.AddApp(githubtest.App{ID: 777, PublicKey: &otherKey.PublicKey})
	perms := map[string]string{"metadata": "read", "contents": "read"}
	s.AddInstallation(githubtest.Installation{ID: 9, AppID: 4242, Account: "acme", Org: true, Repositories: []string{"api", "web"}, Permissions: perms})
	s.AddInstallation(githubtest.Installation{ID: 10, AppID: 4242, Account: "globex", Org: true, Repositories: []string{"core"}, Permissions: perms})
	s.AddInstallation(githubtest.Installation{ID: 11, AppID: 777, Account: "initech", Org: true, Repositories: []string{"tps"}, Permissions: perms})
	jwt := func(iss string) string {
		n := clock()
		return fakekit.SignRS256(t, key, map[string]any{"iss": iss, "iat": n.Add(-time.Minute).Unix(), "exp": n.Add(9 * time.Minute).Unix()}, nil)
	}
	do := func(method, path, body string, set func(*http.Request)) (int, []byte) {
		t.Helper()
		r, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		set(r)
		resp, err := s.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&b)
		return resp.StatusCode, b
	}
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	mint := func(inst, body string) (int, string) {
		code, b := do("POST", "/app/installations/"+inst+"/access_tokens", body, bearer(jwt("4242")))
		var out struct{ Token string }
		_ = json.Unmarshal(b, &out)
		return code, out.Token
	}
	// App 777's JWT (signed with its own key) for app 4242's installation.
	otherJWT := fakekit.SignRS256(t, otherKey, map[string]any{"iss": "777", "iat": now.Add(-time.Minute).Unix(), "exp": now.Add(9 * time.Minute).Unix()}, nil)
	if code, _ := do("POST", "/app/installations/9/access_tokens", "", bearer(otherJWT)); code != http.StatusNotFound {
		t.Errorf("another app's installation: %d, want 404", code)
	}
	if code, _ := mint("404", ""); code != http.StatusNotFound {
		t.Errorf("no such installation: %d, want 404", code)
	}
	if code, _ := mint("9", `{"repositories":["core"]}`); code != http.StatusUnprocessableEntity {
		t.Errorf("narrowed to another installation's repository: %d, want 422", code)
	}
	if code, _ := mint("9", `{"permissions":{"contents":"write"}}`); code != http.StatusUnprocessableEntity {
		t.Errorf("more permission than granted: %d, want 422", code)
	}
	code, tok := mint("9", "")
	_, narrow := mint("9", `{"repositories":["api"]}`)
	if code != http.StatusCreated || tok == "" || narrow == "" {
		t.Fatalf("mint: %d %q", code, tok)
	}
	spellings := map[string]func(string) func(*http.Request){
		"Bearer": bearer,
		"token": func(v string) func(*http.Request) {
			return func(r *http.Request) { r.Header.Set("Authorization", "token "+v) }
		},
		"Basic": func(v string) func(*http.Request) {
			return func(r *http.Request) { r.SetBasicAuth("x-access-token", v) }
		},
	}
	for name, spell := range spellings {
		for _, c := range []struct {
			what, tok, repo string
			want            int
		}{
			{"own repository", tok, "acme/api", 200},
			{"another installation's repository", tok, "globex/core", 404},
			{"another app's installation's repository", tok, "initech/tps", 404},
			{"a repository outside the narrowed token", narrow, "acme/web", 404},
			{"an unknown token", "ghs_unknown", "acme/api", 401},
			{"the app JWT instead of a token", jwt("4242"), "acme/api", 401},
		} {
			if code, _ := do("GET", "/repos/"+c.repo, "", spell(c.tok)); code != c.want {
				t.Errorf("%s, %s: %d, want %d", name, c.what, code, c.want)
			}
		}
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	if code, _ := do("GET", "/repos/acme/api", "", bearer(tok)); code != http.StatusUnauthorized {
		t.Errorf("a token at its expires_at: %d, want 401", code)
	}
}
