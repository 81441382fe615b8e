package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-github/v84/github"

	"github.com/credgate/credgate/internal/githubtest"
)

const githubAppPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  github-api:
    hosts: [api.github.com]
    allow_private: true
  github-git:
    hosts: [github.com]
    allow_private: true
credentials:
  # One credential per scope: this one reads and writes acme/widgets only.
  widgets-rw:
    provider: github-app
    app_id: 4242
    private_key: {file: KEY_FILE}
    owner: acme
    repo: widgets
    repositories: [widgets]
    permissions: {metadata: read, contents: write}
    base_url: BASE_URL
    ca_cert: CA_FILE
  # An installation that does not exist, to see the error on the request.
  wrong-installation:
    provider: github-app
    app_id: 4242
    private_key: {file: KEY_FILE}
    installation_id: 12345
    base_url: BASE_URL
    ca_cert: CA_FILE
  gadgets-read:
    provider: github-app
    app_id: 4242
    private_key: {file: KEY_FILE}
    installation_id: 99
    repositories: [gadgets]
    permissions: {metadata: read}
    base_url: BASE_URL
    ca_cert: CA_FILE
rules:
  - name: github-wrong-installation
    from: local
    to: github-api
    paths: [/repos/acme/wrong*]
    inject: {credential: wrong-installation, as: bearer}
  - name: github-gadgets
    from: local
    to: github-api
    paths: [/repos/acme/gadgets/*]
    inject: {credential: gadgets-read, as: bearer}
  - name: github-rest
    from: local
    to: github-api
    methods: [GET]
    paths: [/repos/acme/*]
    inject: {credential: widgets-rw, as: bearer}
  - name: github-git
    from: local
    to: github-git
    methods: [GET, POST]
    paths: [/acme/widgets.git/*, /acme/gadgets.git/*]
    inject: {credential: widgets-rw, as: basic}
default: deny
`

// TestGitHubApp drives go-github and git through the gateway to a fake
// GitHub (internal/githubtest) that verifies the app JWT with the app's
// public key, issues installation tokens scoped as asked, serves the REST
// API under the token's scope, and serves git's smart HTTP protocol
// (git http-backend) accepting only x-access-token:<installation token>.
// Neither client holds a token.
func TestGitHubApp(t *testing.T) {
	t.Parallel()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed")
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	keyFile := filepath.Join(dir, "app.pem")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	// A bare repository acme/widgets.git with one commit.
	gitRoot := filepath.Join(dir, "git")
	home := filepath.Join(dir, "home")
	_ = os.MkdirAll(home, 0o755)
	gitEnv := []string{"HOME=" + home, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.test", "GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.test"}
	git := func(t *testing.T, env []string, wd string, args ...string) string {
		t.Helper()
		cmd := exec.Command(gitBin, args...)
		cmd.Dir = wd
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	plainEnv := append(clientEnv(""), gitEnv...)
	seed := filepath.Join(dir, "seed")
	git(t, plainEnv, dir, "init", "-q", "-b", "main", seed)
	if err := os.WriteFile(filepath.Join(seed, "README"), []byte("widgets\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, plainEnv, seed, "add", "README")
	git(t, plainEnv, seed, "commit", "-q", "-m", "first")
	git(t, plainEnv, dir, "clone", "-q", "--bare", seed, filepath.Join(gitRoot, "acme", "widgets.git"))

	leaf, err := originCA.Leaf("api.github.com", "github.com", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	gh := githubtest.New(githubtest.Options{Certificate: &leaf, GitRoot: gitRoot})
	t.Cleanup(gh.Close)
	gh.AddApp(githubtest.App{ID: 4242, PublicKey: &key.PublicKey})
	gh.AddInstallation(githubtest.Installation{ID: 99, AppID: 4242, Account: "acme", Org: true,
		Repositories: []string{"widgets", "gadgets"},
		Permissions:  map[string]string{"metadata": "read", "contents": "write", "issues": "write"}})
	reportPeer(t, "github: fake GitHub (internal/githubtest) at %s, git http-backend %s", gh.URL, git(t, plainEnv, dir, "--version"))

	pol := strings.NewReplacer("KEY_FILE", keyFile, "BASE_URL", gh.URL, "CA_FILE", originCACert).Replace(githubAppPolicy)
	e := startEnv(t, envOptions{
		Policy:  pol,
		Resolve: map[string]string{"api.github.com:443": gh.Addr, "github.com:443": gh.Addr},
	})
	// The key's body and every token the fake issued must stay out of the
	// gateway's output.
	e.secrets = append(e.secrets, strings.Split(string(keyPEM), "\n")[3])
	t.Cleanup(func() { e.secrets = append(e.secrets, gh.Tokens()...); e.secrets = append(e.secrets, gh.JWTs()...) })

	t.Run("go-github through the gateway, no token", func(t *testing.T) {
		client := github.NewClient(newGoClient(t, e.proxyURL, gwCACert, false))
		ctx := context.Background()
		repo, _, err := client.Repositories.Get(ctx, "acme", "widgets")
		if err != nil {
			t.Fatalf("Repositories.Get acme/widgets: %v", err)
		}
		if repo.GetFullName() != "acme/widgets" {
			t.Errorf("full name %q", repo.GetFullName())
		}
		// The token is narrowed to widgets: gadgets, in the installation,
		// is not visible to it.
		_, resp, err := client.Repositories.Get(ctx, "acme", "gadgets")
		var ghErr *github.ErrorResponse
		if !errors.As(err, &ghErr) || resp.StatusCode != http.StatusNotFound {
			t.Errorf("Repositories.Get acme/gadgets: %v, want 404 (the token is narrowed to widgets)", err)
		}
		if n := gh.Mints(); n != 1 {
			t.Errorf("%d tokens minted for three requests, want 1 (cached)", n)
		}
		for _, tok := range gh.Tokens() {
			info, _ := gh.Lookup(tok)
			if fmt.Sprint(info.Repositories) != "[widgets]" || info.Permissions["contents"] != "write" || len(info.Permissions) != 2 {
				t.Errorf("token scope %+v, want exactly repositories [widgets], metadata read, contents write", info)
			}
		}
	})

	t.Run("GitHub errors are clear errors on the request and in the log", func(t *testing.T) {
		c := newGoClient(t, e.proxyURL, gwCACert, false)
		if st, _, _ := get(t, c, "GET", "https://api.github.com/repos/acme/wrong", ""); st != http.StatusBadGateway {
			t.Errorf("unknown installation: %d, want 502", st)
		}
		waitFor(t, 5*time.Second, "the installation-not-found error in the log", func() error {
			if !strings.Contains(e.stderr.String(), "installation 12345 of app 4242 not found") {
				return errors.New("not logged yet")
			}
			return nil
		})
		gh.Fail(http.StatusServiceUnavailable)
		defer gh.Fail(0)
		if st, _, _ := get(t, c, "GET", "https://api.github.com/repos/acme/gadgets/issues", ""); st != http.StatusServiceUnavailable {
			t.Errorf("GitHub answering 503 to the mint: %d, want 503", st)
		}
	})

	t.Run("git clone and push over HTTPS through the gateway", func(t *testing.T) {
		env := append(clientEnv(e.proxyURL, "GIT_SSL_CAINFO="+gwCACert), gitEnv...)
		work := filepath.Join(t.TempDir(), "widgets")
		git(t, env, dir, "clone", "-q", "https://github.com/acme/widgets.git", work)
		if b, err := os.ReadFile(filepath.Join(work, "README")); err != nil || string(b) != "widgets\n" {
			t.Fatalf("cloned README: %q, %v", b, err)
		}
		if err := os.WriteFile(filepath.Join(work, "CHANGES"), []byte("pushed through credgate\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		git(t, env, work, "add", "CHANGES")
		git(t, env, work, "commit", "-q", "-m", "second")
		want := git(t, env, work, "rev-parse", "HEAD")
		git(t, env, work, "push", "-q", "origin", "main")
		got := git(t, plainEnv, dir, "--git-dir", filepath.Join(gitRoot, "acme", "widgets.git"), "rev-parse", "main")
		if got != want {
			t.Errorf("the server's main is %s after the push, want %s", got, want)
		}
		// The git remote URL holds no credential; the clone's config none.
		if cfg, _ := os.ReadFile(filepath.Join(work, ".git", "config")); strings.Contains(string(cfg), "ghs_") {
			t.Errorf("the clone's config holds a token")
		}
	})

	t.Run("a repository the token is not scoped to is refused by GitHub", func(t *testing.T) {
		// A rule lets gadgets through, but the credential's token is
		// narrowed to widgets: GitHub (the fake) answers 403.
		env := append(clientEnv(e.proxyURL, "GIT_SSL_CAINFO="+gwCACert), gitEnv...)
		cmd := exec.Command(gitBin, "ls-remote", "https://github.com/acme/gadgets.git")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("git ls-remote acme/gadgets succeeded with a token narrowed to widgets:\n%s", out)
		}
		if gh.GitDenied() == 0 {
			t.Errorf("the fake GitHub did not see the request; want it refused there for the token's scope")
		}
	})
}
