package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/credgate/credgate/internal/redistest"
)

// runPolicy: workload agent is whoever presents a run token naming it
// (issuer urn:credgate:run); only agent may reach the origin and the git
// origin, with the credential injected. Callers without a token are
// local, which may reach /java only: Java sends no proxy credentials, and
// where the relay cannot admit it as one of the command's processes (not
// Linux) it reaches the gateway without the token (docs/agents.md).
const runPolicy = `
workloads:
  agent:
    claims: {iss: "urn:credgate:run", sub: agent}
    require: [jwt]
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
  git:
    hosts: [git.origin.test]
    allow_private: true
  plain:
    hosts: [plain.origin.test]
    ports: [80]
    allow_private: true
credentials:
  api-token:
    provider: static
    env: CREDGATE_E2E_TOKEN
rules:
  - name: agent-api
    from: agent
    to: api
    inject: {credential: api-token, as: bearer}
  - name: agent-git
    from: agent
    to: git
    inject: {credential: api-token, as: bearer}
  - name: agent-plain
    from: agent
    to: plain
    plaintext: true
    inject: {credential: api-token, as: bearer}
  - name: java-api
    from: local
    to: api
    paths: [/java]
    inject: {credential: api-token, as: bearer}
default: deny
`

// startGitOrigin serves git's smart HTTP protocol (git http-backend over
// CGI) over TLS as git.origin.test, for a bare repository acme/widgets.git,
// to requests that carry Authorization: Bearer *token only.
func startGitOrigin(t *testing.T, gitBin string, token *atomic.Pointer[string]) string {
	t.Helper()
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed")
	env := append(clientEnv(""), "HOME="+dir, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.test", "GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.test")
	for _, args := range [][]string{
		{"init", "-q", "-b", "main", seed},
		{"-C", seed, "commit", "-q", "--allow-empty", "-m", "first"},
		{"clone", "-q", "--bare", seed, filepath.Join(dir, "repos", "acme", "widgets.git")},
	} {
		cmd := exec.Command(gitBin, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	backend := &cgi.Handler{Path: gitBin, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + filepath.Join(dir, "repos"), "GIT_HTTP_EXPORT_ALL=1"}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if want := token.Load(); want == nil || r.Header.Get("Authorization") != "Bearer "+*want {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "the injected credential did not arrive", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	})
	leaf, err := originCA.Leaf("git.origin.test")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// runTokenRecorder stands between credgate run and the gateway's admin
// API and keeps the run tokens the gateway issues, so that a test can
// look for them where they must not be.
type runTokenRecorder struct {
	url    string
	mu     sync.Mutex
	tokens []string
}

// recordRunTokens starts a runTokenRecorder in front of adminAddr.
func recordRunTokens(t *testing.T, adminAddr string) *runTokenRecorder {
	t.Helper()
	r := &runTokenRecorder{}
	target := &url.URL{Scheme: "http", Host: adminAddr}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path != "/admin/v1/run-tokens" || resp.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		var tr struct {
			Token string `json:"token"`
		}
		if err := json.Unmarshal(body, &tr); err != nil || tr.Token == "" {
			return fmt.Errorf("run token answer without a token: %v", err)
		}
		r.mu.Lock()
		r.tokens = append(r.tokens, tr.Token)
		r.mu.Unlock()
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

// last is the token issued last.
func (r *runTokenRecorder) last(t *testing.T) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.tokens) == 0 {
		t.Fatal("no run token was issued")
	}
	return r.tokens[len(r.tokens)-1]
}

// runEnvOf is the environment credgate run starts in: no proxy or CA
// settings of the test process, the admin token file, and a HOME of its
// own (git).
func runEnvOf(t *testing.T) []string {
	home := t.TempDir()
	return append(clientEnv(""), "HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0")
}

// TestCredgateRun runs curl, python3, node, git, a Go program and Java
// under `credgate run --workload agent`: each reaches the origin through
// the gateway with nothing set up by the test (curl and Python also with
// the caller's environment naming another proxy and NO_proxy=*), the
// credential arrives,
// and the workload is the one the run token names. The token is refused
// once the command has exited, and a token signed by another key is
// refused.
func TestCredgateRun(t *testing.T) {
	t.Parallel()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	adminTok := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(adminTok, []byte(randomToken(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	var token atomic.Pointer[string]
	gitAddr := startGitOrigin(t, gitBin, &token)
	e := startEnv(t, envOptions{
		Policy:  runPolicy,
		Resolve: map[string]string{"git.origin.test:443": gitAddr},
		ExtraConfig: fmt.Sprintf("admin:\n  token_file: %q\nrun_tokens:\n  workloads: [agent]\n  ttl: 5m\n", adminTok) +
			"identity:\n  jwt:\n    clock_skew: 5s\n",
	})
	// The static credential startEnv made is what the git origin wants.
	token.Store(&e.token)
	// credgate run asks for its tokens through this recorder: the test
	// knows each token the command must not see.
	issued := recordRunTokens(t, e.adminAddr)

	credgateRunEnv := func(t *testing.T, extraEnv []string, args ...string) (string, error) {
		t.Helper()
		full := append([]string{"run", "--gateway", e.proxyURL, "--admin", issued.url, "--token-file", adminTok, "--workload", "agent", "--"}, args...)
		cmd := exec.Command(binPath, full...)
		cmd.Env = append(runEnvOf(t), extraEnv...)
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	credgateRun := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		return credgateRunEnv(t, nil, args...)
	}
	arrived := func(t *testing.T, path string) {
		t.Helper()
		got := e.origin.one(t, path)
		if got.Header.Get("Authorization") != "Bearer "+e.token {
			t.Errorf("%s: the origin did not receive the injected credential", path)
		}
		if got.Header.Get("Proxy-Authorization") != "" {
			t.Errorf("%s: Proxy-Authorization reached the origin", path)
		}
		waitFor(t, 5*time.Second, "the audit line of "+path, func() error {
			for _, ev := range e.audit() {
				if ev.Path == path {
					if ev.Workload != "agent" || ev.Rule != "agent-api" {
						return fmt.Errorf("audit of %s: workload %q rule %q, want agent by agent-api", path, ev.Workload, ev.Rule)
					}
					return nil
				}
			}
			return fmt.Errorf("no audit line for %s", path)
		})
	}

	t.Run("curl", func(t *testing.T) {
		out, err := credgateRun(t, "curl", "-sS", "-f", "https://api.origin.test/run/curl")
		if err != nil || !strings.Contains(out, "ok /run/curl") {
			t.Fatalf("credgate run curl: %v\n%s", err, out)
		}
		arrived(t, "/run/curl")
	})
	t.Run("python3 urllib", func(t *testing.T) {
		out, err := credgateRun(t, "python3", "-c", `import urllib.request; print(urllib.request.urlopen("https://api.origin.test/run/python").read().decode())`)
		if err != nil || !strings.Contains(out, "ok /run/python") {
			t.Fatalf("credgate run python3: %v\n%s", err, out)
		}
		arrived(t, "/run/python")
	})
	t.Run("node https.get", func(t *testing.T) {
		if _, err := exec.LookPath("node"); err != nil {
			t.Skip("node is not installed (Debian nodejs; .ci/run installs it)")
		}
		script := `require('https').get('https://api.origin.test/run/node', (res) => {
  let body = ''; res.on('data', (d) => body += d);
  res.on('end', () => { console.log(res.statusCode, body); process.exit(res.statusCode === 200 ? 0 : 1); });
}).on('error', (e) => { console.error(e.message); process.exit(2); });`
		out, err := credgateRun(t, "node", "-e", script)
		if err != nil || !strings.Contains(out, "ok /run/node") {
			t.Fatalf("credgate run node: %v\n%s", err, out)
		}
		arrived(t, "/run/node")
	})
	t.Run("go net/http", func(t *testing.T) {
		prog := `package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
)

func main() {
	resp, err := http.Get("https://api.origin.test/run/go")
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(b))
}
`
		bin := buildGoProgram(t, prog, "goclient")
		out, err := credgateRun(t, bin)
		if err != nil || !strings.Contains(out, "200 ok /run/go") {
			t.Fatalf("credgate run go program: %v\n%s", err, out)
		}
		arrived(t, "/run/go")
	})
	t.Run("go: HTTP/2 and a WebSocket inside relayed tunnels", func(t *testing.T) {
		// The relay is a byte pipe after CONNECT: HTTP/2 (negotiated
		// with the gateway's interception) and a WebSocket (upgraded
		// inside a tunnel, echoing) pass through it.
		prog := `package main

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
)

func fail(f string, a ...any) { fmt.Printf(f+"\n", a...); os.Exit(2) }

func main() {
	resp, err := http.Get("https://api.origin.test/run/go-h2")
	if err != nil {
		fail("h2: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Proto, resp.StatusCode, strings.TrimSpace(string(b)))

	// A WebSocket by hand: CONNECT through the proxy the environment
	// names, TLS, the upgrade, one masked text frame, its echo.
	req, _ := http.NewRequest("GET", "https://api.origin.test/ws", nil)
	pu, err := http.ProxyFromEnvironment(req)
	if err != nil || pu == nil {
		fail("no proxy: %v", err)
	}
	c, err := net.Dial("tcp", pu.Host)
	if err != nil {
		fail("dial proxy: %v", err)
	}
	pass, _ := pu.User.Password()
	auth := base64.StdEncoding.EncodeToString([]byte(pu.User.Username() + ":" + pass))
	fmt.Fprintf(c, "CONNECT api.origin.test:443 HTTP/1.1\r\nHost: api.origin.test:443\r\nProxy-Authorization: Basic %s\r\n\r\n", auth)
	br := bufio.NewReader(c)
	cr, err := http.ReadResponse(br, nil)
	if err != nil || cr.StatusCode != 200 {
		fail("CONNECT: %v %v", cr, err)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "api.origin.test", NextProtos: []string{"http/1.1"}})
	fmt.Fprintf(tc, "GET /ws HTTP/1.1\r\nHost: api.origin.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nOrigin: https://api.origin.test\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	tbr := bufio.NewReader(tc)
	ur, err := http.ReadResponse(tbr, nil)
	if err != nil || ur.StatusCode != 101 {
		fail("upgrade: %v %v", ur, err)
	}
	msg := []byte("hello through the relay")
	mask := []byte{1, 2, 3, 4}
	frame := []byte{0x81, 0x80 | byte(len(msg))}
	frame = append(frame, mask...)
	for i, m := range msg {
		frame = append(frame, m^mask[i%4])
	}
	if _, err := tc.Write(frame); err != nil {
		fail("ws write: %v", err)
	}
	head := make([]byte, 2)
	if _, err := io.ReadFull(tbr, head); err != nil {
		fail("ws read: %v", err)
	}
	echo := make([]byte, head[1]&0x7f)
	if _, err := io.ReadFull(tbr, echo); err != nil {
		fail("ws read: %v", err)
	}
	fmt.Printf("ws echo: %s\n", echo)
}
`
		bin := buildGoProgram(t, prog, "goh2ws")
		out, err := credgateRun(t, bin)
		if err != nil || !strings.Contains(out, "HTTP/2.0 200 ok /run/go-h2") || !strings.Contains(out, "ws echo: hello through the relay") {
			t.Fatalf("credgate run go h2/ws program: %v\n%s", err, out)
		}
		arrived(t, "/run/go-h2")
		if ws := e.origin.byPath("/ws"); len(ws) == 0 || ws[len(ws)-1].Header.Get("Authorization") != "Bearer "+e.token {
			t.Errorf("the WebSocket upgrade reached the origin without the injected credential")
		}
	})
	t.Run("plain http:// requests, one per relayed connection", func(t *testing.T) {
		// Absolute-URI requests (GET http://host/path) through the relay:
		// each is the last of its connection (the relay adds Connection:
		// close), so curl's second request opens another and gets the
		// token too; Python's urllib and Node's http.get (the preload)
		// the same way.
		for _, c := range []struct {
			name  string
			args  []string
			paths []string
		}{
			{"curl, two requests", []string{"curl", "-sS", "-f", "http://plain.origin.test/run/plain-curl-1", "http://plain.origin.test/run/plain-curl-2"}, []string{"/run/plain-curl-1", "/run/plain-curl-2"}},
			{"python3 urllib", []string{"python3", "-c", `import urllib.request; print(urllib.request.urlopen("http://plain.origin.test/run/plain-python").read().decode())`}, []string{"/run/plain-python"}},
			{"node http.get (the preload)", []string{"node", "-e", `require('http').get('http://plain.origin.test/run/plain-node', (r) => { let b = ''; r.on('data', (d) => b += d); r.on('end', () => { console.log(b); process.exit(r.statusCode === 200 ? 0 : 1); }); }).on('error', (e) => { console.error(e.message); process.exit(2); });`}, []string{"/run/plain-node"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				out, err := credgateRun(t, c.args...)
				if err != nil {
					t.Fatalf("credgate run %s: %v\n%s", c.args[0], err, out)
				}
				for _, p := range c.paths {
					if !strings.Contains(out, "ok "+p) {
						t.Errorf("no answer for %s:\n%s", p, out)
					}
					if got := e.origin.one(t, p); got.Header.Get("Authorization") != "Bearer "+e.token {
						t.Errorf("%s: the origin did not receive the injected credential", p)
					}
					waitFor(t, 5*time.Second, "the audit line of "+p, func() error {
						for _, ev := range e.audit() {
							if ev.Path == p {
								if ev.Workload != "agent" || ev.Rule != "agent-plain" {
									return fmt.Errorf("audit of %s: workload %q rule %q", p, ev.Workload, ev.Rule)
								}
								return nil
							}
						}
						return fmt.Errorf("no audit line for %s", p)
					})
				}
			})
		}
	})
	t.Run("git ls-remote", func(t *testing.T) {
		out, err := credgateRun(t, "git", "ls-remote", "https://git.origin.test/acme/widgets.git")
		if err != nil || !strings.Contains(out, "refs/heads/main") {
			t.Fatalf("credgate run git ls-remote: %v\n%s", err, out)
		}
		waitFor(t, 5*time.Second, "the audit line of git", func() error {
			for _, ev := range e.audit() {
				if ev.Host == "git.origin.test" && ev.Status == 200 {
					if ev.Workload != "agent" || ev.Rule != "agent-git" {
						return fmt.Errorf("git audit: workload %q rule %q", ev.Workload, ev.Rule)
					}
					return nil
				}
			}
			return fmt.Errorf("no audit line for git")
		})
	})
	t.Run("java trust store and proxy", func(t *testing.T) {
		// Java sends no proxy credentials: on Linux the relay admits it
		// as the user's own client and adds the token (workload agent);
		// elsewhere it has the gateway itself and no token (local).
		out, err := credgateRun(t, "java", javaGet(t, "https://api.origin.test/java"))
		if err != nil || !strings.Contains(out, "200 ok /java") {
			t.Fatalf("credgate run java: %v\n%s", err, out)
		}
		if got := e.origin.one(t, "/java"); got.Header.Get("Authorization") != "Bearer "+e.token {
			t.Errorf("java: the origin did not receive the injected credential")
		}
		want, rule := "local", "java-api"
		if runtime.GOOS == "linux" {
			want, rule = "agent", "agent-api"
		}
		waitFor(t, 5*time.Second, "the audit line of /java", func() error {
			for _, ev := range e.audit() {
				if ev.Path == "/java" {
					if ev.Workload != want || ev.Rule != rule {
						return fmt.Errorf("audit of /java: workload %q rule %q, want %s by %s", ev.Workload, ev.Rule, want, rule)
					}
					return nil
				}
			}
			return errors.New("no audit line for /java")
		})
	})
	t.Run("the caller's proxy variables", func(t *testing.T) {
		// Another proxy and a bypass of every host under spellings
		// Python's urllib reads (it lower-cases every *_proxy name); a
		// shell between credgate run and Python reorders them. Before,
		// Python went direct (NO_proxy=*).
		decoy := "http://127.0.0.1:9"
		hostile := []string{"NO_proxy=*", "No_Proxy=*", "Https_proxy=" + decoy, "HTTPS_proxy=" + decoy, "ALL_PROXY=" + decoy, "all_proxy=" + decoy}
		out, err := credgateRunEnv(t, hostile, "sh", "-c", `exec python3 -c 'import urllib.request; print(urllib.request.urlopen("https://api.origin.test/run/inherited-python").read().decode())'`)
		if err != nil || !strings.Contains(out, "ok /run/inherited-python") {
			t.Fatalf("credgate run python3 with the caller's proxy variables: %v\n%s", err, out)
		}
		arrived(t, "/run/inherited-python")
		out, err = credgateRunEnv(t, hostile, "curl", "-sS", "-f", "https://api.origin.test/run/inherited-curl")
		if err != nil || !strings.Contains(out, "ok /run/inherited-curl") {
			t.Fatalf("credgate run curl with the caller's proxy variables: %v\n%s", err, out)
		}
		arrived(t, "/run/inherited-curl")
	})
	t.Run("node fetch", func(t *testing.T) {
		// fetch() (undici) follows HTTPS_PROXY only where Node reads
		// NODE_USE_ENV_PROXY (22.21+, 24+), which credgate run sets; on
		// older Node it goes direct, reaching neither the relay nor the
		// gateway (docs/agents.md).
		ver, err := exec.Command("node", "-p", "process.versions.node").Output()
		if err != nil {
			t.Skip("node is not installed")
		}
		var major, minor int
		fmt.Sscanf(strings.TrimSpace(string(ver)), "%d.%d", &major, &minor)
		envProxy := major >= 24 || (major == 22 && minor >= 21)
		script := `fetch('https://api.origin.test/run/node-fetch').then(async (r) => { console.log(r.status, await r.text()); process.exit(r.status === 200 ? 0 : 1); }, (e) => { console.error('fetch failed:', e.cause ? e.cause.code || e.cause.message : e.message); process.exit(3); });`
		out, err := credgateRun(t, "node", "-e", script)
		if envProxy {
			if err != nil || !strings.Contains(out, "ok /run/node-fetch") {
				t.Fatalf("node %s fetch: %v\n%s", ver, err, out)
			}
			arrived(t, "/run/node-fetch")
			return
		}
		if err == nil || !strings.Contains(out, "fetch failed") {
			t.Fatalf("node %s fetch: %v\n%s, want it to fail going direct", ver, err, out)
		}
		if n := len(e.origin.byPath("/run/node-fetch")); n != 0 {
			t.Fatalf("node %s fetch reached the origin %d times", ver, n)
		}
	})
	t.Run("the command holds no token; revocation after exit", func(t *testing.T) {
		proxyFile, envFile := filepath.Join(t.TempDir(), "proxy"), filepath.Join(t.TempDir(), "environ")
		out, err := credgateRun(t, "sh", "-c", `printf %s "$HTTPS_PROXY" > "$0"; cat /proc/self/environ /proc/$$/environ > "$1"; env >> "$1"; exit 7`, proxyFile, envFile)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 7 {
			t.Fatalf("credgate run sh -c 'exit 7': %v, want exit status 7\n%s", err, out)
		}
		tok := issued.last(t)
		proxy, err := os.ReadFile(proxyFile)
		if err != nil {
			t.Fatal(err)
		}
		environ, err := os.ReadFile(envFile)
		if err != nil {
			t.Fatal(err)
		}
		// The token, or its signature, anywhere in what the command
		// could read of its environment.
		sig := tok[strings.LastIndex(tok, ".")+1:]
		for name, b := range map[string][]byte{"HTTPS_PROXY": proxy, "/proc/self/environ and env": environ} {
			if bytes.Contains(b, []byte(sig)) {
				t.Errorf("%s holds the run token", name)
			}
		}
		if !strings.HasPrefix(string(proxy), "http://credgate:") || !strings.Contains(string(proxy), "@127.0.0.1:") {
			t.Fatalf("HTTPS_PROXY is not the relay: %q", proxy)
		}
		// The relay is gone with the command.
		c := newGoClient(t, string(proxy), gwCACert, false)
		if resp, err := c.Get("https://api.origin.test/run/after-exit"); err == nil {
			resp.Body.Close()
			t.Fatalf("the relay answered %d after the command exited", resp.StatusCode)
		}
		// The token itself, straight to the gateway: revoked.
		c = newGoClient(t, strings.Replace(e.proxyURL, "http://", "http://token:"+tok+"@", 1), gwCACert, false)
		resp, err := c.Get("https://api.origin.test/run/revoked")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("a revoked token got %d, want the CONNECT refused", resp.StatusCode)
		}
		if !strings.Contains(err.Error(), "Forbidden") {
			t.Errorf("revoked token: %v, want 403 Forbidden", err)
		}
		if n := len(e.origin.byPath("/run/revoked")) + len(e.origin.byPath("/run/after-exit")); n != 0 {
			t.Errorf("the origin saw %d requests after exit", n)
		}
		e.waitLog(t, "token was revoked")
		e.secrets = append(e.secrets, tok)
	})
	t.Run("the relay refuses a wrong or missing secret", func(t *testing.T) {
		for _, c := range []struct{ name, proxy string }{
			{"wrong secret", `http://credgate:0000@${HTTPS_PROXY#*@}`},
			{"the secret as the user name", `http://${HTTPS_PROXY#http://credgate:}`},
		} {
			t.Run(c.name, func(t *testing.T) {
				path := "/run/relay-" + strings.ReplaceAll(c.name, " ", "-")
				out, err := credgateRun(t, "sh", "-c", `exec curl -sS -o /dev/null -w 'connect=%{http_connect}' --proxy "`+c.proxy+`" https://api.origin.test`+path)
				if err == nil || !strings.Contains(out, "connect=407") {
					t.Fatalf("curl with %s: %v\n%s, want the relay's 407", c.name, err, out)
				}
				if n := len(e.origin.byPath(path)); n != 0 {
					t.Errorf("the origin saw %d requests", n)
				}
			})
		}
	})
	t.Run("no credentials: the command's own processes (Linux)", func(t *testing.T) {
		// What Java does: no Proxy-Authorization at all. The relay admits
		// a client whose socket the command or one of its descendants
		// holds (the kernel's socket table and /proc); another user's is
		// refused (runrelay's TestRelayDescendantsOtherUser), and so is
		// any process outside the command (the next subtest).
		if runtime.GOOS != "linux" {
			t.Skip("Linux only")
		}
		for _, c := range []struct{ name, script string }{
			{"the command", `exec curl -sS -f --proxy "http://${HTTPS_PROXY#*@}" https://api.origin.test/run/relay-no-credentials-command`},
			{"a grandchild", `curl -sS -f --proxy "http://${HTTPS_PROXY#*@}" https://api.origin.test/run/relay-no-credentials-grandchild; exit $?`},
		} {
			t.Run(c.name, func(t *testing.T) {
				path := "/run/relay-no-credentials-" + strings.Fields(c.name)[1]
				out, err := credgateRun(t, "sh", "-c", c.script)
				if err != nil || !strings.Contains(out, "ok "+path) {
					t.Fatalf("curl without credentials: %v\n%s", err, out)
				}
				arrived(t, path)
			})
		}
	})
	t.Run("no credentials: a process outside the command is refused (Linux)", func(t *testing.T) {
		// A process of the same user that is not the command's (here
		// curl started by the test while the command runs: what another
		// container of a Kubernetes pod sharing the loopback, or another
		// credgate run, is) is refused 407 without the secret: before,
		// the relay admitted every client of its user.
		if runtime.GOOS != "linux" {
			t.Skip("Linux only")
		}
		dir := t.TempDir()
		addrFile, done := filepath.Join(dir, "addr"), filepath.Join(dir, "done")
		cmd := exec.Command(binPath, "run", "--gateway", e.proxyURL, "--admin", "http://"+e.adminAddr, "--token-file", adminTok, "--workload", "agent", "--",
			"sh", "-c", `echo "${HTTPS_PROXY#*@}" > "$0.tmp" && mv "$0.tmp" "$0"; while [ ! -e "$1" ]; do sleep 0.05; done`, addrFile, done)
		cmd.Env = runEnvOf(t)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			_ = os.WriteFile(done, nil, 0o600)
			if err := cmd.Wait(); err != nil {
				t.Errorf("credgate run: %v", err)
			}
		}()
		var addr string
		waitFor(t, 10*time.Second, "the command to write its relay's address", func() error {
			b, err := os.ReadFile(addrFile)
			addr = strings.TrimSpace(string(b))
			return err
		})
		out, err := exec.CommandContext(t.Context(), "curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "connect=%{http_connect}",
			"--proxy", "http://"+addr, "https://api.origin.test/run/relay-outside").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "connect=407") {
			t.Fatalf("curl outside the command: %v\n%s, want the relay's 407", err, out)
		}
		if n := len(e.origin.byPath("/run/relay-outside")); n != 0 {
			t.Errorf("the origin saw %d requests", n)
		}
	})
	t.Run("SIGTERM is passed on and the child's code returned", func(t *testing.T) {
		ready := filepath.Join(t.TempDir(), "ready")
		cmd := exec.Command(binPath, "run", "--gateway", e.proxyURL, "--admin", "http://"+e.adminAddr, "--token-file", adminTok, "--workload", "agent", "--",
			"sh", "-c", `trap 'exit 42' TERM; touch "$0"; while :; do sleep 0.05; done`, ready)
		cmd.Env = runEnvOf(t)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the child to set its trap", func() error {
			_, err := os.Stat(ready)
			return err
		})
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 42 {
			t.Fatalf("credgate run after SIGTERM: %v, want exit status 42 (the child's trap)", err)
		}
	})
	t.Run("forged token", func(t *testing.T) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		forged, err := jwt.Signed(sig).Claims(jwt.Claims{Issuer: "urn:credgate:run", Subject: "agent", Audience: jwt.Audience{"credgate"},
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute)), ID: "forged"}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		u := strings.Replace(e.proxyURL, "http://", "http://token:"+forged+"@", 1)
		c := newGoClient(t, u, gwCACert, false)
		resp, err := c.Get("https://api.origin.test/run/forged")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("a forged token got %d, want the CONNECT refused", resp.StatusCode)
		}
		if !strings.Contains(err.Error(), "Forbidden") {
			t.Errorf("forged token: %v, want 403 Forbidden", err)
		}
		if n := len(e.origin.byPath("/run/forged")); n != 0 {
			t.Errorf("the origin saw %d requests with a forged token", n)
		}
	})
	t.Run("print-env", func(t *testing.T) {
		cmd := exec.Command(binPath, "run", "--print-env", "--gateway", e.proxyURL, "--admin", "http://"+e.adminAddr, "--token-file", adminTok, "--workload", "agent")
		cmd.Env = runEnvOf(t)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("credgate run --print-env: %v", err)
		}
		// The printed lines, sourced by sh, let curl through.
		sh := exec.Command("sh", "-c", string(out)+"\ncurl -sS -f https://api.origin.test/run/print-env && rm -r \"$(dirname \"$SSL_CERT_FILE\")\"")
		sh.Env = runEnvOf(t)
		got, err := sh.CombinedOutput()
		if err != nil || !strings.Contains(string(got), "ok /run/print-env") {
			t.Fatalf("sh with the printed variables: %v\n%s\n%s", err, got, out)
		}
		arrived(t, "/run/print-env")
	})
	t.Run("a workload run_tokens does not list", func(t *testing.T) {
		cmd := exec.Command(binPath, "run", "--gateway", e.proxyURL, "--admin", "http://"+e.adminAddr, "--token-file", adminTok, "--workload", "root", "--", "true")
		cmd.Env = runEnvOf(t)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "403 workload_not_allowed") {
			t.Fatalf("token for an unlisted workload: %v\n%s", err, out)
		}
	})
}

// javaGet writes a one-file Java program (run as java Get.java: the
// source launcher, which needs a JDK) that GETs url with
// HttpsURLConnection and prints the status and body; it skips the test
// without a JDK.
func javaGet(t *testing.T, url string) string {
	t.Helper()
	return javaProgram(t, `var c = (javax.net.ssl.HttpsURLConnection) new java.net.URL("`+url+`").openConnection();
    System.out.println(c.getResponseCode() + " " + new String(c.getInputStream().readAllBytes()));`)
}

// javaHTTPClient is javaGet with java.net.http.HttpClient, which takes
// the proxy properties only through ProxySelector.getDefault().
func javaHTTPClient(t *testing.T, url string) string {
	t.Helper()
	return javaProgram(t, `var c = java.net.http.HttpClient.newBuilder().proxy(java.net.ProxySelector.getDefault()).build();
    var r = c.send(java.net.http.HttpRequest.newBuilder(java.net.URI.create("`+url+`")).build(), java.net.http.HttpResponse.BodyHandlers.ofString());
    System.out.println(r.statusCode() + " " + r.body());`)
}

// javaProgram writes class Get with body as its main method.
func javaProgram(t *testing.T, body string) string {
	t.Helper()
	if _, err := exec.LookPath("javac"); err != nil {
		t.Skip("no JDK installed (java and javac; Debian default-jdk-headless)")
	}
	src := filepath.Join(t.TempDir(), "Get.java")
	prog := `public class Get {
  public static void main(String[] a) throws Exception {
    ` + body + `
  }
}
`
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	return src
}

// TestCredgateRunRelayTLS: with --gateway https://… credgate run's relay
// speaks TLS to the gateway's tls_listen, so the run token never crosses
// the network in clear text; clients that take no https:// proxy URL
// (curl's default, Python's urllib, Node's preload) reach it through the
// relay, and so does Java (HttpsURLConnection, HttpClient), which sends no
// proxy credentials, on Linux. A gateway whose certificate no trusted CA signed is refused by
// the relay, which says so; the token is revoked at exit either way.
// --relay=false and --print-env cannot use an https:// gateway.
func TestCredgateRunRelayTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	adminTok := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(adminTok, []byte(randomToken(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, envOptions{
		Policy: runPolicy,
		ExtraConfig: tlsListenConfig(t, dir) +
			fmt.Sprintf("admin:\n  token_file: %q\nrun_tokens:\n  workloads: [agent]\n  ttl: 5m\n", adminTok),
	})
	if e.tlsProxyAddr == "" {
		t.Fatal("the gateway has no tls_listen address")
	}
	gateway := "https://" + e.tlsProxyAddr
	revocations := func() int {
		n := 0
		for _, ev := range e.audit() {
			if ev.Path == "/admin/v1/run-tokens/revoke" && ev.Status == 200 {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		name  string
		flags []string
		args  []string
		path  string
		want  string // in the output; for a failure, credgate run's message
		ok    bool
		// java writes the Java program: admitted by the relay as the
		// user's own client (Linux).
		java func(*testing.T, string) string
	}{
		{name: "curl", flags: []string{"--gateway-ca", originCACert}, path: "/tls/curl", ok: true,
			args: []string{"curl", "-sS", "-f", "https://api.origin.test/tls/curl"}},
		{name: "python3 urllib", flags: []string{"--gateway-ca", originCACert}, path: "/tls/python", ok: true,
			args: []string{"python3", "-c", `import urllib.request; print(urllib.request.urlopen("https://api.origin.test/tls/python").read().decode())`}},
		{name: "node https.get", flags: []string{"--gateway-ca", originCACert}, path: "/tls/node", ok: true,
			args: []string{"node", "-e", `require('https').get('https://api.origin.test/tls/node', (res) => { let b = ''; res.on('data', (d) => b += d); res.on('end', () => { console.log(res.statusCode, b); process.exit(res.statusCode === 200 ? 0 : 1); }); }).on('error', (e) => { console.error(e.message); process.exit(2); });`}},
		{name: "java HttpsURLConnection", flags: []string{"--gateway-ca", originCACert}, path: "/tls/java", ok: true, java: javaGet,
			args: []string{"java"}},
		{name: "java HttpClient", flags: []string{"--gateway-ca", originCACert}, path: "/tls/java-httpclient", ok: true, java: javaHTTPClient,
			args: []string{"java"}},
		{name: "a gateway certificate of a CA not trusted", path: "/tls/wrong-ca",
			args: []string{"curl", "-sS", "-f", "https://api.origin.test/tls/wrong-ca"}, want: "not signed by a CA credgate run trusts"},
		{name: "--relay=false", flags: []string{"--relay=false"}, path: "/tls/no-relay",
			args: []string{"curl", "-sS", "-f", "https://api.origin.test/tls/no-relay"}, want: "only credgate run's relay speaks to"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := exec.LookPath(c.args[0]); err != nil {
				t.Skipf("%s is not installed", c.args[0])
			}
			if c.java != nil {
				if runtime.GOOS != "linux" {
					t.Skip("the relay admits Java (which sends no proxy credentials) on Linux only")
				}
				c.args = append(c.args, c.java(t, "https://api.origin.test"+c.path))
			}
			before := revocations()
			full := append([]string{"run", "--gateway", gateway, "--admin", "http://" + e.adminAddr, "--token-file", adminTok, "--workload", "agent"}, c.flags...)
			cmd := exec.Command(binPath, append(append(full, "--"), c.args...)...)
			cmd.Env = runEnvOf(t)
			out, err := cmd.CombinedOutput()
			if !c.ok {
				if err == nil || !strings.Contains(string(out), c.want) {
					t.Fatalf("credgate run: %v\n%s, want a failure saying %q", err, out, c.want)
				}
				if n := len(e.origin.byPath(c.path)); n != 0 {
					t.Errorf("the origin saw %d requests", n)
				}
				if c.flags == nil {
					waitFor(t, 5*time.Second, "the revocation", func() error {
						if revocations() == before {
							return errors.New("the token was not revoked")
						}
						return nil
					})
				}
				return
			}
			if err != nil || !strings.Contains(string(out), "ok "+c.path) {
				t.Fatalf("credgate run %s: %v\n%s", c.args[0], err, out)
			}
			if strings.Contains(string(out), "clear text") {
				t.Errorf("warned of clear text over TLS: %s", out)
			}
			if got := e.origin.one(t, c.path); got.Header.Get("Authorization") != "Bearer "+e.token {
				t.Errorf("the origin did not receive the injected credential")
			}
			waitFor(t, 5*time.Second, "the audit line and the revocation", func() error {
				for _, ev := range e.audit() {
					if ev.Path == c.path {
						if ev.Workload != "agent" || ev.Rule != "agent-api" {
							return fmt.Errorf("audit of %s: workload %q rule %q", c.path, ev.Workload, ev.Rule)
						}
						if revocations() == before {
							return errors.New("the token was not revoked")
						}
						return nil
					}
				}
				return fmt.Errorf("no audit line for %s", c.path)
			})
		})
	}
	t.Run("--print-env", func(t *testing.T) {
		cmd := exec.Command(binPath, "run", "--print-env", "--gateway", gateway, "--ca", gwCACert)
		cmd.Env = runEnvOf(t)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "only credgate run's relay speaks to") {
			t.Fatalf("--print-env with an https gateway: %v\n%s", err, out)
		}
	})
}

// TestCredgateRunFleet: two gateway replicas sharing Redis and
// run_tokens.key_file accept each other's run tokens, and a token revoked
// through one (credgate run exiting) is refused by the other.
func TestCredgateRunFleet(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	dir := t.TempDir()
	k1 := writeRedisKey(t, dir, "k1.key")
	adminTokFile, adminTok := writeAdminToken(t, dir)
	// The key the replicas share (as openssl genpkey -algorithm ed25519 writes it).
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	runKey := filepath.Join(dir, "run.key")
	if err := os.WriteFile(runKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := envOptions{
		Policy:      runPolicy,
		CacheConfig: redisConfig(srv.Addr(), [2]string{"k1", k1}),
		ExtraConfig: fmt.Sprintf("admin:\n  token_file: %q\nrun_tokens:\n  workloads: [agent]\n  key_file: %q\n", adminTokFile, runKey),
	}
	a, b := startEnv(t, opts), startEnv(t, opts)
	for _, e := range []*env{a, b} {
		e.secrets = append(e.secrets, adminTok)
	}
	// A token from replica a, not revoked (--print-env), used through b.
	cmd := exec.Command(binPath, "run", "--print-env", "--format", "github", "--gateway", b.proxyURL, "--admin", "http://"+a.adminAddr,
		"--token-file", adminTokFile, "--workload", "agent", "--ca", gwCACert)
	cmd.Env = runEnvOf(t)
	printed, err := cmd.Output()
	if err != nil {
		t.Fatalf("credgate run --print-env: %v", err)
	}
	var proxy string
	for _, line := range strings.Split(string(printed), "\n") {
		if v, ok := strings.CutPrefix(line, "HTTPS_PROXY="); ok {
			proxy = v
		}
		if v, ok := strings.CutPrefix(line, "SSL_CERT_FILE="); ok {
			t.Cleanup(func() { _ = os.RemoveAll(filepath.Dir(v)) })
		}
	}
	tok := strings.TrimPrefix(strings.Split(proxy, "@")[0], "http://token:")
	if proxy == "" || tok == "" {
		t.Fatalf("no token in the printed HTTPS_PROXY:\n%s", printed)
	}
	a.secrets, b.secrets = append(a.secrets, tok), append(b.secrets, tok)
	c := newGoClient(t, proxy, gwCACert, false) // keep-alive: the tunnel stays open
	if st, _, _ := get(t, c, "GET", "https://api.origin.test/fleet/before", ""); st != http.StatusOK {
		t.Fatalf("replica b with a token of replica a: %d, want 200", st)
	}
	// Revoked through a: b refuses it at the next connection.
	req, _ := http.NewRequest(http.MethodPost, "http://"+a.adminAddr+"/admin/v1/run-tokens/revoke", strings.NewReader(fmt.Sprintf(`{"token":%q}`, tok)))
	req.Header.Set("Authorization", "Bearer "+adminTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"scope":"fleet"`) {
		t.Fatalf("revoke through a: %d %s", resp.StatusCode, body)
	}
	// On the tunnel opened before the revocation: the request is refused.
	resp, err = c.Get("https://api.origin.test/fleet/kept-alive")
	if err != nil {
		t.Fatalf("the kept-alive tunnel: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Credgate-Reason") != "identity_invalid" {
		t.Errorf("a request on the kept-alive tunnel after the revocation: %d %s, want 403 identity_invalid", resp.StatusCode, resp.Header.Get("X-Credgate-Reason"))
	}
	// A new connection: the CONNECT is refused.
	_, err = newGoClient(t, proxy, gwCACert, false).Get("https://api.origin.test/fleet/after")
	if err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Fatalf("replica b after the revocation through a: %v, want the CONNECT refused (403)", err)
	}
	if n := len(b.origin.byPath("/fleet/kept-alive")); n != 0 {
		t.Errorf("the origin saw %d requests on the kept-alive tunnel after the revocation", n)
	}
	if n := len(b.origin.byPath("/fleet/after")); n != 0 {
		t.Errorf("the origin saw %d requests with the revoked token", n)
	}
}

// buildGoProgram builds the one-file Go program prog, outside this
// module, and returns the path of its binary, named name.
func buildGoProgram(t *testing.T, prog, name string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, name)
	build := exec.Command("go", "build", "-o", bin, src)
	build.Dir = dir
	build.Env = append(os.Environ(), "GOFLAGS=", "GO111MODULE=on")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
