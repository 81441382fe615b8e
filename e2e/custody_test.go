package e2e

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http/httpproxy"

	"github.com/credgate/credgate/internal/redistest"
)

// custodyPolicy: the gateway logs in to other.origin.test with a
// credential the client never holds (rule login, custody of the session
// token in the JSON answer and of the sid cookie), and later calls from
// the same workload carry the placeholders. Workload "second" (source
// 127.0.0.2) may call the API too, but not with the first one's session.
const custodyPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
  second:
    cidrs: [127.0.0.2/32]
    require: [source]
destinations:
  login-api:
    hosts: [other.origin.test]
    allow_private: true
credentials:
  api-token:
    provider: static
    env: CREDGATE_E2E_TOKEN
rules:
  - name: login
    from: local
    to: login-api
    methods: [POST]
    paths: [/login]
    inject: {credential: api-token, as: bearer}
    custody:
      json: [$.session.token]
      cookies: [sid]
      headers: [X-Session]
      ttl: 10m
  - name: api
    from: [local, second]
    to: login-api
    inject: {credential: api-token, as: bearer}
default: deny
`

// sessionOrigin is a login API: POST /login (with the gateway's bearer
// token) opens a session, answered as a JSON token and a cookie; GET /me
// accepts only a session's real token (X-Session) and cookie, and echoes
// the token and the bearer credential back, as careless APIs do.
type sessionOrigin struct {
	addr  string
	token string // the bearer credential the gateway injects

	mu       sync.Mutex
	sessions map[string]string // token -> cookie
	issued   []string          // every real value handed out
}

func startSessionOrigin(t *testing.T, token string) *sessionOrigin {
	t.Helper()
	o := &sessionOrigin{token: token, sessions: map[string]string{}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(o.serve))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{originLeaf}, NextProtos: []string{"h2", "http/1.1"}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	o.addr = srv.Listener.Addr().String()
	return o
}

func (o *sessionOrigin) values() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.issued...)
}

func (o *sessionOrigin) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+o.token {
		http.Error(w, "no credential", http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case "/login":
		tok, cookie := randomHex(), randomHex()
		tok, cookie = "sess-"+tok, "sid-"+cookie
		o.mu.Lock()
		o.sessions[tok] = cookie
		o.issued = append(o.issued, tok, cookie)
		o.mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: cookie, Path: "/", HttpOnly: true, Secure: true, MaxAge: 600})
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"user": "bob", "session": {"token": %q, "expires_in": 600}, "note": "keep it secret"}`, tok)
	case "/me":
		tok := r.Header.Get("X-Session")
		c, err := r.Cookie("sid")
		o.mu.Lock()
		want, ok := o.sessions[tok]
		o.mu.Unlock()
		if !ok || err != nil || c.Value != want {
			http.Error(w, "no session", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"user": "bob", "your_session": %q, "your_cookie": %q, "your_authorization": %q}`, tok, c.Value, r.Header.Get("Authorization"))
	default:
		http.NotFound(w, r)
	}
}

func randomHex() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var custodyPlaceholder = regexp.MustCompile(`CREDGATE_CUSTODY_[0-9a-f]{32}`)

// TestCustodyLoginSession: through curl, Python urllib and Go, a login
// answer's session token and cookie reach the client only as
// placeholders; the client's next call with them succeeds with the real
// session upstream, and what the upstream echoes is scrubbed; a second
// workload's use of the same placeholders is refused. No real value
// appears in anything a client or the gateway's output shows.
func TestCustodyLoginSession(t *testing.T) {
	token := randomToken(t)
	so := startSessionOrigin(t, token)
	e := &env{t: t, dir: t.TempDir(), origin: startOrigin(t), token: token}
	e.configPath = e.dir + "/credgate.yaml"
	e.policyPath = e.dir + "/policy.yaml"
	opts := envOptions{Policy: custodyPolicy, Resolve: map[string]string{otherHost + ":443": so.addr}}
	e.writePolicy(opts.Policy, opts)
	e.writeConfig(opts)
	e.start()

	var seen strings.Builder // everything every client saw
	for _, c := range clients {
		t.Run(c.Name(), func(t *testing.T) {
			login := c.Do(t, e, clientRequest{Method: http.MethodPost, URL: "https://" + otherHost + "/login"})
			fmt.Fprintf(&seen, "%v %s %s\n", login.Header, login.Body, login.Err)
			if login.Status != http.StatusOK {
				t.Fatalf("login: status %d %s: %s", login.Status, login.Err, login.Body)
			}
			var answer struct {
				User    string
				Session struct{ Token string }
			}
			if err := json.Unmarshal([]byte(login.Body), &answer); err != nil || answer.User != "bob" {
				t.Fatalf("login answer %q: %v", login.Body, err)
			}
			if !custodyPlaceholder.MatchString(answer.Session.Token) {
				t.Fatalf("the client got session token %q, want a placeholder", answer.Session.Token)
			}
			cookiePH := ""
			for _, sc := range login.Header.Values("Set-Cookie") {
				if c, err := http.ParseSetCookie(sc); err == nil && c.Name == "sid" {
					cookiePH = c.Value
					if c.MaxAge != 600 || !c.HttpOnly {
						t.Errorf("Set-Cookie %q lost its attributes", sc)
					}
				}
			}
			if !custodyPlaceholder.MatchString(cookiePH) {
				t.Fatalf("the client got cookie sid=%q, want a placeholder", cookiePH)
			}
			me := c.Do(t, e, clientRequest{URL: "https://" + otherHost + "/me", Header: http.Header{
				"X-Session": {answer.Session.Token}, "Cookie": {"sid=" + cookiePH}}})
			fmt.Fprintf(&seen, "%v %s %s\n", me.Header, me.Body, me.Err)
			if me.Status != http.StatusOK || !strings.Contains(me.Body, `"user": "bob"`) {
				t.Fatalf("the call with the placeholders: status %d %s: %s", me.Status, me.Err, me.Body)
			}
			if strings.Count(me.Body, "[REDACTED]") != 3 {
				t.Errorf("the echoed session, cookie and credential are not all scrubbed: %s", me.Body)
			}

			// The second workload (source 127.0.0.2) holds the placeholders
			// but never resolves them: Go and curl from that address.
			for name, do := range map[string]func() (int, string){
				"go":   func() (int, string) { return secondGo(t, e, answer.Session.Token, cookiePH) },
				"curl": func() (int, string) { return secondCurl(t, e, answer.Session.Token, cookiePH) },
			} {
				status, body := do()
				fmt.Fprintf(&seen, "%s\n", body)
				if status != http.StatusForbidden || !strings.Contains(body, "custody_unknown") {
					t.Errorf("second workload (%s) with the first one's placeholders: status %d %q, want 403 custody_unknown", name, status, body)
				}
			}
		})
	}
	for _, v := range append(so.values(), token) {
		if strings.Contains(seen.String(), v) {
			t.Errorf("a client saw a real value (session, cookie or credential)")
		}
	}
	if len(so.values()) != 2*len(clients) {
		t.Errorf("the origin opened %d sessions' values, want %d", len(so.values()), 2*len(clients))
	}
	e.secrets = append(e.secrets, so.values()...)
	waitFor(t, 5*time.Second, "audit lines with custodied and scrubbed counts", func() error {
		var custodied, scrubbed bool
		for line := range strings.SplitSeq(e.stdout.String(), "\n") {
			custodied = custodied || strings.Contains(line, `"rule":"login"`) && strings.Contains(line, `"custodied":2`)
			scrubbed = scrubbed || strings.Contains(line, `"rule":"api"`) && strings.Contains(line, `"scrubbed":3`)
		}
		if !custodied || !scrubbed {
			return fmt.Errorf("custodied %v, scrubbed %v", custodied, scrubbed)
		}
		return nil
	})
	if v := e.metric(t, `credgate_custody_captured_total{rule="login"}`); v != float64(2*len(clients)) {
		t.Errorf("credgate_custody_captured_total{rule=login} = %v, want %d", v, 2*len(clients))
	}
	e.stopAndCheck()
}

// TestCustodyAcrossReplicas: two gateway processes share a real
// redis-server; a session captured through one resolves through the
// other, and Redis holds the kept values sealed, never in plaintext.
func TestCustodyAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	token := randomToken(t)
	so := startSessionOrigin(t, token)
	cfg := redisConfig(srv.Addr(), [2]string{"k1", writeRedisKey(t, t.TempDir(), "k1.key")})
	replica := func() *env {
		e := &env{t: t, dir: t.TempDir(), origin: startOrigin(t), token: token}
		e.configPath = e.dir + "/credgate.yaml"
		e.policyPath = e.dir + "/policy.yaml"
		opts := envOptions{Policy: custodyPolicy, Resolve: map[string]string{otherHost + ":443": so.addr}, CacheConfig: cfg}
		e.writePolicy(opts.Policy, opts)
		e.writeConfig(opts)
		e.start()
		return e
	}
	a, b := replica(), replica()

	login := goClient{}.Do(t, a, clientRequest{Method: http.MethodPost, URL: "https://" + otherHost + "/login"})
	var answer struct{ Session struct{ Token string } }
	if err := json.Unmarshal([]byte(login.Body), &answer); err != nil || !custodyPlaceholder.MatchString(answer.Session.Token) {
		t.Fatalf("login through replica a: status %d %s: %s", login.Status, login.Err, login.Body)
	}
	var cookiePH string
	for _, sc := range login.Header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(sc); err == nil && c.Name == "sid" {
			cookiePH = c.Value
		}
	}
	me := goClient{}.Do(t, b, clientRequest{URL: "https://" + otherHost + "/me", Header: http.Header{
		"X-Session": {answer.Session.Token}, "Cookie": {"sid=" + cookiePH}}})
	if me.Status != http.StatusOK || !strings.Contains(me.Body, `"user": "bob"`) {
		t.Fatalf("the placeholders through replica b: status %d %s: %s", me.Status, me.Err, me.Body)
	}
	for _, v := range append(so.values(), token) {
		if strings.Contains(login.Body+me.Body+fmt.Sprint(login.Header, me.Header), v) {
			t.Errorf("a client saw a real value")
		}
	}
	dump, err := srv.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range dump {
		for _, s := range so.values() {
			if strings.Contains(k, s) || strings.Contains(v, s) {
				t.Errorf("Redis key %q or its value holds a custodied value in plaintext", k)
			}
		}
	}
	for _, e := range []*env{a, b} {
		e.secrets = append(e.secrets, so.values()...)
		e.stopAndCheck()
	}
}

// secondGo calls /me from source 127.0.0.2 with Go's client.
func secondGo(t *testing.T, e *env, session, cookie string) (int, string) {
	t.Helper()
	pool, err := loadPool(gwCACert)
	if err != nil {
		t.Fatal(err)
	}
	proxyFunc := (&httpproxy.Config{HTTPSProxy: e.proxyURL}).ProxyFunc()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	tr := &http.Transport{
		Proxy:           func(r *http.Request) (*url.URL, error) { return proxyFunc(r.URL) },
		DialContext:     d.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "https://"+otherHost+"/me", nil)
	req.Header.Set("X-Session", session)
	req.Header.Set("Cookie", "sid="+cookie)
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("second workload: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// secondCurl calls /me from source 127.0.0.2 with curl.
func secondCurl(t *testing.T, e *env, session, cookie string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", "-sS", "--max-time", "20", "--interface", "127.0.0.2", "--cacert", gwCACert,
		"-H", "X-Session: "+session, "-b", "sid="+cookie, "-w", "\n%{http_code}", "https://"+otherHost+"/me")
	cmd.Env = clientEnv(e.proxyURL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl from 127.0.0.2: %v: %s", err, out)
	}
	s := strings.TrimSpace(string(out))
	i := strings.LastIndexByte(s, '\n')
	var status int
	fmt.Sscanf(s[i+1:], "%d", &status)
	return status, s[:max(i, 0)]
}
