package githubapp_test

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
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/internal/fakekit"
	"github.com/credgate/credgate/internal/githubtest"
	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/internal/vaulttest"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/githubapp"
)

const (
	appID    = 4242
	clientID = "Iv23liFAKEclient"
	instID   = 777
)

var (
	keyOnce sync.Once
	appKey  *rsa.PrivateKey
	badKey  *rsa.PrivateKey
)

func keys() {
	keyOnce.Do(func() {
		appKey, _ = rsa.GenerateKey(rand.Reader, 2048)
		badKey, _ = rsa.GenerateKey(rand.Reader, 2048)
	})
}

func pemFile(t *testing.T, k *rsa.PrivateKey) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "app.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// fixture is a fake GitHub with one app installed on the acme
// organisation (repositories widgets and gadgets) and on the user octocat.
type fixture struct {
	gh     *githubtest.Server
	caFile string
}

func newFixture(t *testing.T, opts githubtest.Options) *fixture {
	t.Helper()
	keys()
	gh := githubtest.New(opts)
	t.Cleanup(gh.Close)
	gh.AddApp(githubtest.App{ID: appID, ClientID: clientID, PublicKey: &appKey.PublicKey})
	gh.AddInstallation(githubtest.Installation{ID: instID, AppID: appID, Account: "acme", Org: true,
		Repositories: []string{"widgets", "gadgets"},
		Permissions:  map[string]string{"contents": "write", "metadata": "read", "issues": "write"}})
	gh.AddInstallation(githubtest.Installation{ID: 888, AppID: appID, Account: "octocat",
		Repositories: []string{"hello"}, Permissions: map[string]string{"contents": "read", "metadata": "read"}})
	ca := filepath.Join(t.TempDir(), "gh-ca.pem")
	if err := os.WriteFile(ca, gh.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return &fixture{gh: gh, caFile: ca}
}

// load builds a github-app provider from YAML settings; BASE and CA and
// KEY are replaced by the fake's URL, its CA file and the app key's file.
func (f *fixture) load(t *testing.T, settings string) providers.Provider {
	t.Helper()
	p, err := f.tryLoad(t, settings)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return p
}

func (f *fixture) tryLoad(t *testing.T, settings string) (providers.Provider, error) {
	t.Helper()
	settings = strings.NewReplacer("BASE", f.gh.URL, "CA", f.caFile, "KEY", pemFile(t, appKey)).Replace(settings)
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(settings), &n); err != nil {
		t.Fatal(err)
	}
	p, err := providers.Load(context.Background(), githubapp.Name, n.Content[0])
	if err == nil {
		t.Cleanup(func() { _ = p.(providers.CleanerUpper).Cleanup() })
	}
	return p, err
}

const base = "base_url: BASE\nca_cert: CA\n"

func fetch(t *testing.T, p providers.Provider) *providers.Credential {
	t.Helper()
	c, err := p.Fetch(t.Context(), providers.Request{Credential: "github"})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return c
}

// repoStatus asks the fake's REST API for owner/repo with tok.
func (f *fixture) repoStatus(t *testing.T, tok, repo string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", f.gh.URL+"/repos/"+repo, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := f.gh.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestRegistered(t *testing.T) {
	if _, ok := providers.Lookup("github-app"); !ok {
		t.Fatal("github-app is not registered")
	}
}

func TestMintInstallationToken(t *testing.T) {
	f := newFixture(t, githubtest.Options{})
	p := f.load(t, base+"app_id: 4242\nprivate_key: {file: KEY}\ninstallation_id: 777\n")
	before := time.Now()
	c := fetch(t, p)
	tok, ok := c.Field(providers.FieldToken)
	if !ok || !strings.HasPrefix(tok.Reveal(), "ghs_") {
		t.Fatalf("no installation token in the credential")
	}
	if u, _ := c.Field(providers.FieldUsername); u.Reveal() != "x-access-token" {
		t.Errorf("username = %q, want x-access-token", u.Reveal())
	}
	if pw, _ := c.Field(providers.FieldPassword); pw.Reveal() != tok.Reveal() {
		t.Errorf("password is not the token")
	}
	if d := time.Until(c.Expiry); d < 59*time.Minute || d > time.Hour {
		t.Errorf("expiry in %v, want the token's expires_at (1h)", d)
	}
	info, ok := f.gh.Lookup(tok.Reveal())
	if !ok || info.Installation != instID || info.Repositories != nil {
		t.Errorf("the fake knows the token as %+v (%v), want installation %d, all repositories", info, ok, instID)
	}
	if diff := cmp.Diff(map[string]string{"contents": "write", "metadata": "read", "issues": "write"}, info.Permissions); diff != "" {
		t.Errorf("permissions (-want +got):\n%s", diff)
	}
	// The app JWT as GitHub documents it.
	jwts := f.gh.JWTs()
	if len(jwts) != 1 {
		t.Fatalf("%d app JWTs, want 1", len(jwts))
	}
	var hdr, claims map[string]any
	seg := strings.Split(jwts[0], ".")
	decode(t, seg[0], &hdr)
	decode(t, seg[1], &claims)
	if hdr["alg"] != "RS256" {
		t.Errorf("alg %v", hdr["alg"])
	}
	iat, exp := int64(claims["iat"].(float64)), int64(claims["exp"].(float64))
	if claims["iss"] != float64(appID) {
		t.Errorf("iss = %v, want %d", claims["iss"], appID)
	}
	if d := before.Unix() - iat; d < 59 || d > 62 {
		t.Errorf("iat is %ds before now, want 60", d)
	}
	if d := exp - time.Now().Unix(); d > 600 || d < 500 {
		t.Errorf("exp is %ds after now, want at most 600", d)
	}
	for _, tt := range []struct {
		repo string
		want int
	}{{"acme/widgets", 200}, {"acme/gadgets", 200}, {"octocat/hello", 404}} {
		if got := f.repoStatus(t, tok.Reveal(), tt.repo); got != tt.want {
			t.Errorf("GET /repos/%s with the token: %d, want %d", tt.repo, got, tt.want)
		}
	}
}

func decode(t *testing.T, seg string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil || json.Unmarshal(b, v) != nil {
		t.Fatalf("bad JWT segment")
	}
}

func TestScopeNarrowing(t *testing.T) {
	f := newFixture(t, githubtest.Options{})
	p := f.load(t, base+"client_id: "+clientID+"\nprivate_key: {file: KEY}\ninstallation_id: 777\nrepositories: [widgets]\npermissions: {contents: read, metadata: read}\n")
	tok := fetch(t, p).Fields[providers.FieldToken].Reveal()
	info, _ := f.gh.Lookup(tok)
	if diff := cmp.Diff(githubtest.Token{Installation: instID, Repositories: []string{"widgets"},
		Permissions: map[string]string{"contents": "read", "metadata": "read"}}, info, cmpIgnoreExpiry); diff != "" {
		t.Errorf("token scope (-want +got):\n%s", diff)
	}
	if got := f.repoStatus(t, tok, "acme/widgets"); got != 200 {
		t.Errorf("narrowed token on its repository: %d", got)
	}
	if got := f.repoStatus(t, tok, "acme/gadgets"); got != 404 {
		t.Errorf("narrowed token on another repository: %d, want 404", got)
	}
	var claims map[string]any
	decode(t, strings.Split(f.gh.JWTs()[0], ".")[1], &claims)
	if claims["iss"] != clientID {
		t.Errorf("iss = %v, want the client ID", claims["iss"])
	}

	t.Run("a scope the installation lacks", func(t *testing.T) {
		for _, s := range []string{"repositories: [secret-repo]", "permissions: {administration: write}", "permissions: {issues: admin}"} {
			p := f.load(t, base+"app_id: 4242\nprivate_key: {file: KEY}\ninstallation_id: 777\n"+s+"\n")
			_, err := p.Fetch(t.Context(), providers.Request{Credential: "github"})
			if err == nil || !strings.Contains(err.Error(), "installation 777 of app 4242 refused the requested scope") || errors.Is(err, providers.ErrUnavailable) {
				t.Errorf("%s: err = %v", s, err)
			}
		}
	})
}

var cmpIgnoreExpiry = cmp.Comparer(func(a, b time.Time) bool { return true })

func TestInstallationLookup(t *testing.T) {
	f := newFixture(t, githubtest.Options{})
	tests := []struct {
		settings string
		inst     int64
	}{
		{"owner: acme\nrepo: widgets", instID},
		{"owner: acme", instID},
		{"owner: octocat", 888}, // a user: /orgs answers 404, /users finds it
	}
	for _, tt := range tests {
		t.Run(tt.settings, func(t *testing.T) {
			p := f.load(t, base+"app_id: 4242\nprivate_key: {file: KEY}\n"+tt.settings+"\n")
			tok := fetch(t, p).Fields[providers.FieldToken].Reveal()
			if info, _ := f.gh.Lookup(tok); info.Installation != tt.inst {
				t.Errorf("token for installation %d, want %d", info.Installation, tt.inst)
			}
			n := f.gh.Lookups()
			fetch(t, p)
			if f.gh.Lookups() != n {
				t.Errorf("the installation was looked up again; it is kept")
			}
		})
	}
}

func TestErrors(t *testing.T) {
	f := newFixture(t, githubtest.Options{})
	check := func(t *testing.T, err error, want string, unavailable bool) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want one containing %q", err, want)
		}
		if errors.Is(err, providers.ErrUnavailable) != unavailable {
			t.Errorf("errors.Is(err, ErrUnavailable) = %v, want %v", !unavailable, unavailable)
		}
		for _, s := range append(f.gh.Tokens(), f.gh.JWTs()...) {
			if strings.Contains(err.Error(), s) {
				t.Errorf("the error contains a token or JWT: %v", err)
			}
		}
	}
	fetchErr := func(t *testing.T, settings string) error {
		p := f.load(t, base+settings)
		_, err := p.Fetch(t.Context(), providers.Request{Credential: "github"})
		return err
	}
	t.Run("installation not found", func(t *testing.T) {
		check(t, fetchErr(t, "app_id: 4242\nprivate_key: {file: KEY}\ninstallation_id: 999"),
			"installation 999 of app 4242 not found (GitHub answered 404 to POST /app/installations/999/access_tokens): check installation_id", false)
	})
	t.Run("owner without the app", func(t *testing.T) {
		check(t, fetchErr(t, "app_id: 4242\nprivate_key: {file: KEY}\nowner: nobody"),
			"app 4242 is not installed on owner nobody (GitHub answered 404 to GET /orgs/nobody/installation and /users/nobody/installation)", false)
		check(t, fetchErr(t, "app_id: 4242\nprivate_key: {file: KEY}\nowner: acme\nrepo: missing"),
			"app 4242 is not installed on repository acme/missing", false)
	})
	t.Run("wrong key: 401", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "bad.pem")
		_ = os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(badKey)}), 0o600)
		check(t, fetchErr(t, "app_id: 4242\nprivate_key: {file: "+p+"}\ninstallation_id: 777"),
			"GitHub rejected the app JWT (401 to POST /app/installations/777/access_tokens): check that private_key is the key of app 4242, that app_id/client_id is right, and that the gateway's clock is correct", false)
	})
	t.Run("unknown app id: 401", func(t *testing.T) {
		check(t, fetchErr(t, "app_id: 1\nprivate_key: {file: KEY}\ninstallation_id: 777"), "GitHub rejected the app JWT", false)
	})
	t.Run("GitHub's clock 20 minutes behind the gateway's: 401", func(t *testing.T) {
		skewed := newFixture(t, githubtest.Options{Now: func() time.Time { return time.Now().Add(-20 * time.Minute) }})
		p := skewed.load(t, base+"app_id: 4242\nprivate_key: {file: KEY}\ninstallation_id: 777\n")
		_, err := p.Fetch(t.Context(), providers.Request{Credential: "github"})
		check(t, err, "the gateway's clock is correct", false)
	})
	t.Run("5xx", func(t *testing.T) {
		f.gh.Fail(http.StatusBadGateway)
		defer f.gh.Fail(0)
		check(t, fetchErr(t, "app_id: 4242\nprivate_key: {file: KEY}\ninstallation_id: 777"), "GitHub answered 502 Bad Gateway", true)
	})
	t.Run("rate limited", func(t *testing.T) {
		f.gh.Fail(http.StatusTooManyRequests)
		defer f.gh.Fail(0)
		check(t, fetchErr(t, "app_id: 4242\nprivate_key: {file: KEY}\ninstallation_id: 777"), "429", true)
	})
	t.Run("timeout", func(t *testing.T) {
		f.gh.Hold()
		defer f.gh.Release()
		check(t, fetchErr(t, "app_id: 4242\nprivate_key: {file: KEY}\ninstallation_id: 777\ntimeout: 300ms"), "POST "+f.gh.URL+"/app/installations/777/access_tokens", true)
	})
	t.Run("unreachable", func(t *testing.T) {
		p := f.load(t, "base_url: https://127.0.0.1:1\napp_id: 4242\nprivate_key: {file: KEY}\ninstallation_id: 777\n")
		_, err := p.Fetch(t.Context(), providers.Request{Credential: "github"})
		check(t, err, "connection refused", true)
	})
	t.Run("unreadable key", func(t *testing.T) {
		check(t, fetchErr(t, "app_id: 4242\nprivate_key: {file: /nonexistent/app.pem}\ninstallation_id: 777"),
			"github-app: sign the app JWT for app 4242: private_key.file /nonexistent/app.pem: cannot read the key", false)
	})
	t.Run("ctx cancelled", func(t *testing.T) {
		// A GitHub that takes the mint and never answers: the fake's
		// Hold ends a held mint when the server sees the client leave,
		// and a 201 then written could reach the client with its ctx
		// already cancelled (CI saw err = nil twice). Here no answer
		// ever comes, so only the ctx can end the Fetch.
		taken := make(chan struct{}, 1)
		var held []net.Conn
		var mu sync.Mutex
		srv := fakekit.StartTLS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			c, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
			taken <- struct{}{}
		}), nil)
		t.Cleanup(func() {
			mu.Lock()
			for _, c := range held {
				c.Close()
			}
			mu.Unlock()
			srv.Close()
		})
		ca, err := fakekit.WriteCAFile(srv, t.TempDir(), "silent-ca.pem")
		if err != nil {
			t.Fatal(err)
		}
		p := f.load(t, "base_url: "+srv.URL+"\nca_cert: "+ca+"\napp_id: 4242\nprivate_key: {file: KEY}\ninstallation_id: 777\n")
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			_, err := p.Fetch(ctx, providers.Request{Credential: "github"})
			done <- err
		}()
		select {
		case <-taken:
		case <-time.After(5 * time.Second):
			t.Fatal("the mint did not reach the silent GitHub")
		}
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Fetch did not return after its ctx was cancelled")
		}
	})
}

// waitFor polls cond until it holds or 5s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.True(t, 5*time.Second, what, cond)
}

func TestSettingsErrors(t *testing.T) {
	f := newFixture(t, githubtest.Options{})
	tests := []struct{ settings, want string }{
		{"private_key: {file: KEY}\ninstallation_id: 1", "set app_id (the app's numeric ID) or client_id"},
		{"app_id: 1\nclient_id: x\nprivate_key: {file: KEY}\ninstallation_id: 1", "app_id or client_id, not both"},
		{"app_id: 1\ninstallation_id: 1", "set private_key"},
		{"app_id: 1\nprivate_key: {file: KEY, algorithm: ES256}\ninstallation_id: 1", "RS256 only"},
		{"app_id: 1\nprivate_key: {file: KEY}", "set installation_id, or owner"},
		{"app_id: 1\nprivate_key: {file: KEY}\ninstallation_id: 1\nowner: acme", "not both"},
		{"app_id: 1\nprivate_key: {file: KEY}\nrepo: widgets\ninstallation_id: 1", "not both"},
		{"app_id: 1\nprivate_key: {file: KEY}\ninstallation_id: 1\nrepositories: [acme/widgets]", "write names without the owner"},
		{"app_id: 1\nprivate_key: {file: KEY}\nowner: acme\nrepo: ..", `repo ".." is not a repository name`},
		{"app_id: 1\nprivate_key: {file: KEY}\nowner: ../orgs", `owner "../orgs" is not a GitHub account name`},
		{"app_id: 1\nprivate_key: {file: KEY}\ninstallation_id: 1\npermissions: {contents: all}", `contents: "all" is not read, write or admin`},
		{"app_id: 1\nprivate_key: {file: KEY}\ninstallation_id: 1\nbase_url: http://github.example.com/api/v3", "must use https"},
		{"app_id: 1\nprivate_key: {file: KEY}\ninstallation_id: 1\nbase_url: https://u:p@github.example.com", "without credentials"},
		{"app_id: 1\nprivate_key: {file: KEY, credential: k}\ninstallation_id: 1", "github-app: private_key: set one of file, credential and transit, not several"},
		{"app_id: 1\nprivate_key: {file: KEY}\ninstallation_id: 1\nunknown: x", "unknown"},
		{"app_id: abc\nprivate_key: {file: KEY}\ninstallation_id: 1", "line 1: app_id: want a whole number, got a string"},
	}
	for _, tt := range tests {
		_, err := f.tryLoad(t, tt.settings)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want one containing %q", tt.settings, err, tt.want)
		}
	}
	// http is allowed for a loopback GitHub (tests, a local GHES proxy).
	if _, err := f.tryLoad(t, "app_id: 1\nprivate_key: {file: KEY}\ninstallation_id: 1\nbase_url: http://127.0.0.1:8080"); err != nil {
		t.Errorf("loopback http base_url: %v", err)
	}
}

// TestCacheScope: every input that shapes the token changes the scope.
func TestCacheScope(t *testing.T) {
	f := newFixture(t, githubtest.Options{})
	common := "private_key: {file: KEY}\n"
	variants := []string{
		"app_id: 1\ninstallation_id: 1",
		"app_id: 2\ninstallation_id: 1",
		"client_id: c\ninstallation_id: 1",
		"app_id: 1\ninstallation_id: 2",
		"app_id: 1\nowner: acme",
		"app_id: 1\nowner: acme\nrepo: widgets",
		"app_id: 1\ninstallation_id: 1\nrepositories: [a]",
		"app_id: 1\ninstallation_id: 1\nrepositories: [a, b]",
		"app_id: 1\ninstallation_id: 1\npermissions: {contents: read}",
		"app_id: 1\ninstallation_id: 1\npermissions: {contents: write}",
		"app_id: 1\ninstallation_id: 1\nbase_url: https://github.example.com/api/v3",
	}
	seen := map[string]string{}
	for _, v := range variants {
		p, err := f.tryLoad(t, common+v)
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		s := p.(providers.Scoped).CacheScope(providers.Request{Credential: "github"})
		if prev, dup := seen[s]; dup {
			t.Errorf("%q and %q have the same cache scope", prev, v)
		}
		seen[s] = v
	}
	a, _ := f.tryLoad(t, common+"app_id: 1\ninstallation_id: 1\nrepositories: [a, b]\npermissions: {contents: read, issues: write}")
	b, _ := f.tryLoad(t, common+"app_id: 1\ninstallation_id: 1\nrepositories: [b, a]\npermissions: {issues: write, contents: read}")
	if a.(providers.Scoped).CacheScope(providers.Request{}) != b.(providers.Scoped).CacheScope(providers.Request{}) {
		t.Errorf("the same scope written in another order has another cache scope")
	}
}

// TestConcurrentFirstRequests: through the gateway's cache, 50 concurrent
// first requests make one token mint.
func TestConcurrentFirstRequests(t *testing.T) {
	f := newFixture(t, githubtest.Options{})
	p := f.load(t, base+"app_id: 4242\nprivate_key: {file: KEY}\nowner: acme\nrepo: widgets\n")
	c := providers.NewCache(providers.CacheOptions{})
	t.Cleanup(c.Close)
	key := providers.CacheKey{Credential: "github", Provider: githubapp.Name, Version: "v1", Scope: p.(providers.Scoped).CacheScope(providers.Request{})}
	f.gh.Hold()
	var wg sync.WaitGroup
	toks := make(chan string, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cred, _, err := c.Get(t.Context(), key, func(ctx context.Context) (*providers.Credential, error) {
				return p.Fetch(ctx, providers.Request{Credential: "github"})
			})
			if err != nil {
				t.Errorf("Get: %v", err)
				return
			}
			toks <- cred.Fields[providers.FieldToken].Reveal()
		}()
	}
	waitFor(t, "the first mint to be held", func() bool { return f.gh.Held() == 1 })
	f.gh.Release()
	wg.Wait()
	close(toks)
	distinct := map[string]bool{}
	for tok := range toks {
		distinct[tok] = true
	}
	if n := f.gh.Mints(); n != 1 || len(distinct) != 1 {
		t.Errorf("%d mints, %d distinct tokens for 50 concurrent first requests, want 1 and 1", n, len(distinct))
	}
}

// TestKeyFromCredential: the private key comes from another credential
// of the policy (composition by reference), and no form of the provider
// or its errors prints it.
func TestKeyFromCredential(t *testing.T) {
	f := newFixture(t, githubtest.Options{})
	p := f.load(t, base+"app_id: 4242\nprivate_key: {credential: github-key}\ninstallation_id: 777\n")
	if diff := cmp.Diff([]string{"github-key"}, p.(providers.Composer).Inputs()); diff != "" {
		t.Errorf("Inputs (-want +got):\n%s", diff)
	}
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(appKey)}))
	p.(providers.Composer).SetInputs(map[string]providers.Provider{"github-key": staticKey(keyPEM)})
	c := fetch(t, p)
	if _, ok := f.gh.Lookup(c.Fields[providers.FieldToken].Reveal()); !ok {
		t.Errorf("the token minted with the composed key is unknown to the fake")
	}
	for _, out := range []string{fmt.Sprint(p), fmt.Sprintf("%+v", p), fmt.Sprintf("%#v", p), fmt.Sprint(c)} {
		if strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, c.Fields[providers.FieldToken].Reveal()) {
			t.Errorf("a printed form leaks the key or token: %s", out)
		}
	}
}

type staticKey string

func (s staticKey) Fetch(context.Context, providers.Request) (*providers.Credential, error) {
	return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldPrivateKey: providers.NewSecret(string(s))}}, nil
}

// TestVaultTransitKey: the app JWT is signed by a Vault transit RSA key
// (the in-repo Vault emulator) that never leaves Vault; the fake GitHub
// verifies it with the transit key's public key.
func TestVaultTransitKey(t *testing.T) {
	f := newFixture(t, githubtest.Options{})
	emu := vaulttest.NewServer(vaulttest.Options{})
	t.Cleanup(emu.Close)
	t.Setenv("CREDGATE_GITHUBAPP_TEST_VAULT_TOKEN", emu.RootToken)
	if _, err := emu.MountTransit(t.Context(), map[string]string{"github-app": "rsa-2048"}); err != nil {
		t.Fatal(err)
	}
	pub, ok := emu.TransitPublicKey("transit", "github-app").(*rsa.PublicKey)
	if !ok {
		t.Fatal("the transit key is not RSA")
	}
	f.gh.AddApp(githubtest.App{ID: 5151, PublicKey: pub})
	f.gh.AddInstallation(githubtest.Installation{ID: 515, AppID: 5151, Account: "acme", Org: true,
		Repositories: []string{"widgets"}, Permissions: map[string]string{"metadata": "read"}})
	p := f.load(t, base+"app_id: 5151\ninstallation_id: 515\nprivate_key:\n  transit:\n    key: github-app\n    server: {address: "+emu.URL+", auth: {method: token, token_env: CREDGATE_GITHUBAPP_TEST_VAULT_TOKEN}}\n")
	tok := fetch(t, p).Fields[providers.FieldToken].Reveal()
	if info, ok := f.gh.Lookup(tok); !ok || info.Installation != 515 {
		t.Errorf("token %+v (%v), want one for installation 515", info, ok)
	}
}
