package cli

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/credgate/credgate/gateway"
	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/internal/syncbuf"
	"github.com/credgate/credgate/internal/testpki"
)

// The differential test of explain against serve: for each policy of a
// generated set and each request of a table, the decision `credgate
// explain` prints must be the one the running gateway makes for the same
// request from the same workload, as its audit line and its answer say.

// explainPolicy is the policy of the differential test; %s is the mode
// line ("" or "mode: observe") and %d the origin's port (the IP literal
// destination).
const explainPolicy = `%s
workloads:
  plain:
    cidrs: [127.0.0.2/32]
  team:
    cidrs: [127.0.0.3/32]
    namespace: jobs
    require: [source, jwt]
  tokened:
    namespace: web
    require: [jwt]
destinations:
  api:
    hosts: [api.test]
    allow_private: true
  wild:
    hosts: ["*.wild.test"]
    allow_private: true
  alt:
    hosts: [alt.test]
    ports: [8443]
    allow_private: true
  lit:
    hosts: [127.0.0.1]
    ports: [%d]
    allow_private: true
  priv:
    hosts: [priv.test]
  plainhttp:
    hosts: [plain.test]
    ports: [80]
    allow_private: true
  tun:
    hosts: [tun.test]
    allow_private: true
credentials:
  tok:
    provider: static
    env: CREDGATE_EXPLAIN_TEST_TOKEN
  ph:
    provider: static
    env: CREDGATE_EXPLAIN_TEST_TOKEN
    placeholder: CREDGATE_PH_explaintest
rules:
  - name: api-admin
    from: "*"
    to: api
    paths: [/admin*]
    action: deny
  - name: api-read
    from: plain
    to: api
    methods: [GET]
    paths: [/v1/*]
    inject: {credential: tok, as: bearer}
  - name: api-odata
    from: plain
    to: api
    methods: [GET, POST]
    paths: [/odata/*]
    inject: {credential: tok, as: bearer}
  - name: api-small
    from: plain
    to: api
    methods: [GET, POST]
    paths: [/small/*]
    rate_limit: {rps: 1000, burst: 2}
    inject: {credential: tok, as: bearer}
  - name: api-ph
    from: plain
    to: api
    paths: [/ph/*]
    inject: {credential: ph, as: placeholder, substitute_in: ["header:Authorization"]}
  - name: api-team
    from: team
    to: api
    methods: [POST]
    paths: [/v1/jobs*]
    when: 'request.headers["x-ticket"].startsWith("CHG-")'
    inject: {credential: tok, as: header, name: X-Api-Key, value: "{{.token}}"}
  - name: wild
    from: tokened
    to: wild
    inject: {credential: tok, as: bearer}
  - name: alt
    from: "*"
    to: alt
    inject: {credential: tok, as: bearer}
  - name: lit
    from: plain
    to: lit
    inject: {credential: tok, as: bearer}
  - name: priv
    from: plain
    to: priv
    inject: {credential: tok, as: bearer}
  - name: plainhttp
    from: plain
    to: plainhttp
    plaintext: true
    inject: {credential: tok, as: bearer}
  - name: tun
    from: "*"
    to: tun
    action: tunnel
default: deny
`

// explainSecret is the value of the test's credentials.
const explainSecret = "explain-test-secret-0123456789"

// probeReq is one request of the differential test, as a client sends it.
type probeReq struct {
	source string // the client's address (127.0.0.N)
	token  string // "", "jobs", "web" or "forged": the Proxy-Authorization token
	method string
	url    string
	header http.Header
	body   string // sent with its Content-Length; "" for none
}

func (p probeReq) String() string {
	s := fmt.Sprintf("%s token=%q %s %s", p.source, p.token, p.method, p.url)
	for k, v := range p.header {
		s += fmt.Sprintf(" %s: %s", k, strings.Join(v, ","))
	}
	return s
}

// outcome is what the test compares: the decision, rule, reason code,
// credential and HTTP status, and the reason a refusal gives.
type outcome struct {
	Decision, Rule, Code, Credential string
	Status                           int
	Reason                           string
	// Injected names the header fields that carried the credential to
	// the origin (live), or that explain says the injector sets.
	Injected string
}

// explainEnv is the origin, the keys and the directory of the
// differential test.
type explainEnv struct {
	dir        string
	origin     *httptest.Server // TLS
	plain      *httptest.Server // plain HTTP
	originPort int
	signer     jose.Signer
	forger     jose.Signer
	roots      *x509.CertPool // the origin CA and the gateway's interception CA
	mu         sync.Mutex
	seen       map[string]http.Header // what the origins received, by X-Probe-Id
}

func newExplainEnv(t *testing.T) *explainEnv {
	t.Helper()
	e := &explainEnv{dir: t.TempDir(), seen: map[string]http.Header{}}
	ca, err := testpki.NewAuthority("explain origin CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf("api.test", "x.wild.test", "x_y.wild.test", "alt.test", "tun.test", "priv.test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	record := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.seen[r.Header.Get("X-Probe-Id")] = r.Header.Clone()
		e.mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	})
	e.origin = httptest.NewUnstartedServer(record)
	e.origin.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}}
	e.origin.StartTLS()
	t.Cleanup(e.origin.Close)
	e.plain = httptest.NewServer(record)
	t.Cleanup(e.plain.Close)
	e.originPort = e.origin.Listener.Addr().(*net.TCPAddr).Port
	if err := os.WriteFile(filepath.Join(e.dir, "origin-ca.pem"), ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, err := mitm.WriteCA(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	_ = keyPath
	e.roots = ca.Pool()
	e.roots.AppendCertsFromPEM(mustReadFile(t, certPath))
	// An interception CA limited to some names (credgate ca init
	// --permit), for the scenario that uses it.
	if err := os.Mkdir(filepath.Join(e.dir, "permit"), 0o700); err != nil {
		t.Fatal(err)
	}
	permitCert, _, err := mitm.WriteCAWith(filepath.Join(e.dir, "permit"), mitm.CAOptions{Permit: []string{"api.test", "wild.test", "127.0.0.1/32"}})
	if err != nil {
		t.Fatal(err)
	}
	e.roots.AppendCertsFromPEM(mustReadFile(t, permitCert))
	var pub *ecdsa.PublicKey
	e.signer, pub = explainSigner(t)
	e.forger, _ = explainSigner(t)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err := os.WriteFile(filepath.Join(e.dir, "jwks.json"), jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDGATE_EXPLAIN_TEST_TOKEN", explainSecret)
	return e
}

func mustReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func explainSigner(t *testing.T) (jose.Signer, *ecdsa.PublicKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	return s, &k.PublicKey
}

// token is a Kubernetes service account token of namespace ns.
func (e *explainEnv) token(t *testing.T, which string) string {
	t.Helper()
	s, ns := e.signer, which
	if which == "forged" {
		s, ns = e.forger, "web"
	}
	claims := map[string]any{
		"iss": "https://k8s.test", "aud": []string{"credgate"}, "sub": "system:serviceaccount:" + ns + ":api",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(), "nbf": time.Now().Add(-time.Minute).Unix(),
		"kubernetes.io": map[string]any{"namespace": ns, "serviceaccount": map[string]any{"name": "api", "uid": "u"}},
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// config writes the policy (mode) and the gateway config, with the kill
// switch state file holding switches and, with permit, the interception
// CA limited to some names, and returns the config's path.
func (e *explainEnv) config(t *testing.T, name, mode string, switches string, permit bool) string {
	t.Helper()
	dir := filepath.Join(e.dir, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	pol := fmt.Sprintf(explainPolicy, mode, e.originPort)
	if mode == "#observe api" {
		// Observe mode on one destination only.
		pol = strings.Replace(pol, "    hosts: [api.test]\n", "    hosts: [api.test]\n    mode: observe\n", 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(pol), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "switches.json")
	if switches != "" {
		if err := os.WriteFile(state, []byte(switches), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o, p := e.origin.Listener.Addr().String(), e.plain.Listener.Addr().String()
	caDir := e.dir
	if permit {
		caDir = filepath.Join(e.dir, "permit")
	}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
policy: policy.yaml
ca: {cert: %q, key: %q}
upstream: {ca_bundle: %q}
shutdown_timeout: 5s
admin: {state_file: %q}
resolve:
  "api.test:443": %q
  "x.wild.test:443": %q
  "alt.test:8443": %q
  "tun.test:443": %q
  "priv.test:443": %q
  "plain.test:80": %q
  "api.test:80": %q
  "alt.test:443": %q
  "nowhere.test:443": %q
  "x_y.wild.test:443": %q
identity:
  jwt:
    issuers:
      - issuer: https://k8s.test
        profile: kubernetes
        audiences: [credgate]
        jwks_file: %q
`, filepath.Join(caDir, "ca.pem"), filepath.Join(caDir, "ca-key.pem"), filepath.Join(e.dir, "origin-ca.pem"), state,
		o, o, o, o, o, p, p, o, o, o, filepath.Join(e.dir, "jwks.json"))
	path := filepath.Join(dir, "credgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// liveGateway runs the gateway of cfgPath in-process until the test ends.
func liveGateway(t *testing.T, cfgPath string) (*gateway.Gateway, *syncbuf.Buffer) {
	t.Helper()
	cfg, err := gateway.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	audit := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	gw, err := gateway.New(ctx, cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler), Audit: audit})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	<-gw.Ready()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return gw, audit
}

// splitURL returns the authority and the request target (path and query,
// as written) of an absolute URL.
func splitURL(u string) (scheme, authority, target string) {
	scheme, rest, _ := strings.Cut(u, "://")
	rest, _, _ = strings.Cut(rest, "#")
	i := strings.IndexAny(rest, "/?")
	if i < 0 {
		return scheme, rest, "/"
	}
	target = rest[i:]
	if target[0] == '?' {
		target = "/" + target
	}
	return scheme, rest[:i], target
}

// requestLines are the request lines of the audit output.
func requestLines(t *testing.T, buf *syncbuf.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(buf.String(), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			continue // a line cut short: not yet whole
		}
		if m["type"] != nil && m["type"] != "request" {
			continue
		}
		out = append(out, m)
	}
	return out
}

// live sends p through the gateway from p.source, with raw writes so the
// request line is exactly what p says, and returns what the gateway did:
// its audit line and its answer.
func (e *explainEnv) live(t *testing.T, gw *gateway.Gateway, audit *syncbuf.Buffer, p probeReq) outcome {
	t.Helper()
	before := len(requestLines(t, audit))
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(p.source)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", gw.ProxyAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	scheme, authority, target := splitURL(p.url)
	auth := ""
	if p.token != "" {
		auth = "Proxy-Authorization: Bearer " + e.token(t, p.token) + "\r\n"
	}
	var rw io.ReadWriter = conn
	br := bufio.NewReader(conn)
	var resp *http.Response
	tunnelled := false
	if scheme == "https" {
		hostPort := authority
		if _, _, err := net.SplitHostPort(authority); err != nil {
			hostPort = net.JoinHostPort(strings.Trim(authority, "[]"), "443")
		}
		fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", hostPort, hostPort, auth)
		resp, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: CONNECT: %v", p, err)
		}
		if resp.StatusCode == http.StatusOK {
			host, _, _ := net.SplitHostPort(hostPort)
			tc := tls.Client(conn, &tls.Config{RootCAs: e.roots, ServerName: strings.Trim(host, "[]"), NextProtos: []string{"http/1.1"}})
			if err := tc.Handshake(); err != nil {
				t.Fatalf("%s: TLS: %v", p, err)
			}
			rw, br, resp = tc, bufio.NewReader(tc), nil
			// A spliced tunnel reaches the origin itself, whose
			// certificate is not the interception CA's.
			tunnelled = tc.ConnectionState().PeerCertificates[0].Issuer.CommonName == "explain origin CA"
		}
		auth = ""
	} else {
		target = p.url
	}
	if resp == nil {
		var h strings.Builder
		for k, vv := range p.header {
			for _, v := range vv {
				fmt.Fprintf(&h, "%s: %s\r\n", k, v)
			}
		}
		if p.body != "" {
			fmt.Fprintf(&h, "Content-Length: %d\r\n", len(p.body))
		}
		fmt.Fprintf(rw, "%s %s HTTP/1.1\r\nHost: %s\r\n%s%sConnection: close\r\n\r\n%s", p.method, target, authority, auth, h.String(), p.body)
		resp, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	conn.Close()
	var line map[string]any
	poll.Until(t, 10*time.Second, "the audit line of "+p.String(), func() error {
		lines := requestLines(t, audit)
		for _, l := range lines[before:] {
			// The request's line, or a refused CONNECT's, or a
			// spliced tunnel's line when it ends.
			if l["method"] != "CONNECT" || l["decision"] == "deny" || (tunnelled && l["closed"] != nil) {
				line = l
				return nil
			}
		}
		return fmt.Errorf("%d new lines", len(lines)-before)
	})
	str := func(k string) string { s, _ := line[k].(string); return s }
	o := outcome{Decision: str("decision"), Rule: str("rule"), Code: str("code"), Credential: str("credential"), Status: resp.StatusCode}
	if tunnelled {
		o.Status = http.StatusOK // the CONNECT's answer
	}
	if o.Decision == "inject" {
		e.mu.Lock()
		h := e.seen[p.header.Get("X-Probe-Id")]
		e.mu.Unlock()
		var names []string
		for k, vv := range h {
			if strings.Contains(strings.Join(vv, ","), explainSecret) {
				names = append(names, k)
			}
		}
		slices.Sort(names)
		o.Injected = strings.Join(names, ",")
	}
	if resp.StatusCode >= 400 {
		var f struct{ Reason string }
		_ = json.Unmarshal(body, &f)
		o.Reason = f.Reason
	}
	return o
}

// explained runs explain's decision for p, as `credgate explain -c
// cfgPath --source ... [--token-file ...] [-H ...] METHOD URL` does.
func (e *explainEnv) explained(t *testing.T, l *loaded, p probeReq) outcome {
	t.Helper()
	var pres presentation
	if p.token != "" {
		pres.token = e.token(t, p.token)
	}
	var body []byte
	if p.body != "" {
		body = []byte(p.body)
	}
	ex, err := explain(context.Background(), l, pres, p.source, false, p.method, p.url, p.header, body)
	if err != nil {
		t.Fatalf("%s: explain: %v", p, err)
	}
	d := ex.Decision
	o := outcome{Decision: d.Outcome(), Rule: d.Rule, Code: d.Code, Status: ex.Status}
	if d.Inject != nil {
		o.Credential = d.Inject.Credential
		names := injectors.HeadersOf(d.Inject.Injector)
		for _, pl := range d.Inject.SubstituteIn {
			if n, ok := strings.CutPrefix(pl.String(), "header:"); ok {
				names = append(names, http.CanonicalHeaderKey(n))
			}
		}
		slices.Sort(names)
		o.Injected = strings.Join(names, ",")
	}
	if !ex.Allowed {
		o.Decision = "deny"
		o.Reason = d.Reason
	}
	return o
}

// explainRequests is the request table: every source and token against
// every URL, with the methods and headers that select rules.
func explainRequests(originPort int) []probeReq {
	type who struct{ source, token string }
	callers := []who{{"127.0.0.2", ""}, {"127.0.0.3", "jobs"}, {"127.0.0.3", ""}, {"127.0.0.4", "web"}, {"127.0.0.4", "forged"}, {"127.0.0.5", ""}}
	lit := fmt.Sprint(originPort)
	type req struct {
		method, url string
		header      http.Header
	}
	reqs := []req{
		{"GET", "https://api.test/v1/items", nil},
		{"POST", "https://api.test/v1/items", nil},
		{"GET", "https://API.test./v1/items", nil},
		{"GET", "https://api.test/v2/items", nil},
		{"GET", "https://api.test/admin/users", nil},
		{"POST", "https://api.test/v1/jobs/1", http.Header{"X-Ticket": {"CHG-7"}}},
		{"POST", "https://api.test/v1/jobs/1", http.Header{"X-Ticket": {"INC-7"}}},
		{"POST", "https://api.test/v1/jobs/1", http.Header{"X_ticket": {"CHG-7"}}},
		{"POST", "https://api.test/v1/jobs/1", http.Header{"Connection": {"X-Ticket"}, "X-Ticket": {"CHG-7"}}},
		{"GET", "https://api.test/v1/items?_method=DELETE", nil},
		{"GET", "https://api.test/v1/items", http.Header{"X-Http-Method-Override": {"DELETE"}}},
		{"GET", "https://api.test/v1/a%2Fb", nil},
		{"GET", "https://api.test/v1/../admin", nil},
		{"GET", "https://api.test/v1//items", nil},
		{"GET", "https://api.test/ph/x", http.Header{"Authorization": {"Bearer CREDGATE_PH_explaintest"}}},
		{"GET", "https://api.test/v2/x", http.Header{"Authorization": {"Bearer CREDGATE_PH_explaintest"}}},
		{"GET", "https://x.wild.test/anything", nil},
		{"GET", "https://x_y.wild.test/anything", nil},
		{"GET", "https://alt.test:8443/v1", nil},
		{"GET", "https://alt.test/v1", nil},
		{"GET", "https://127.0.0.1:" + lit + "/v1", nil},
		{"GET", "https://[::ffff:127.0.0.1]:" + lit + "/v1", nil},
		{"GET", "https://priv.test/v1", nil},
		{"GET", "http://plain.test/v1?x=1", nil},
		{"GET", "http://plain.test/v1/../x", nil},
		{"GET", "http://api.test/v1/items", nil},
		{"GET", "https://tun.test/", nil},
		{"GET", "https://nowhere.test/", nil},
	}
	var out []probeReq
	for _, c := range callers {
		for _, r := range reqs {
			out = append(out, probeReq{source: c.source, token: c.token, method: r.method, url: r.url, header: r.header})
		}
	}
	return out
}

// TestExplainMatchesServe is the differential test of explain and serve
// (docs/cli.md#explain): for a policy in enforce mode, in observe mode
// (everywhere, and on one destination) and with kill switches in force
// (rules, a workload, a credential), or an interception CA limited to
// some names, and for every request of
// explainRequests from every caller, explain's decision, rule, code,
// credential, status and refusal reason are what the running gateway
// answered and audited.
func TestExplainMatchesServe(t *testing.T) {
	e := newExplainEnv(t)
	since := time.Now().UTC().Format(time.RFC3339)
	scenarios := []struct {
		name, mode, switches string
		permit               bool
	}{
		{"enforce", "", "", false},
		{"observe", "mode: observe", "", false},
		{"observe-destination", "#observe api", "", false},
		{"killswitch", "", `{"version":1,"switches":[{"kind":"rule","name":"api-read","since":"` + since + `"},{"kind":"workload","name":"tokened","since":"` + since + `"},{"kind":"rule","name":"tun","since":"` + since + `"}]}`, false},
		{"killswitch-credential", "", `{"version":1,"switches":[{"kind":"credential","name":"tok","since":"` + since + `"}]}`, false},
		{"ca-permit", "", "", true},
	}
	var failed, total, injected atomic.Int64
	t.Cleanup(func() {
		t.Logf("%d of %d requests explained differently from what the gateway did (%d injected a credential, in the header fields explain named)", failed.Load(), total.Load(), injected.Load())
	})
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			cfgPath := e.config(t, sc.name, sc.mode, sc.switches, sc.permit)
			gw, audit := liveGateway(t, cfgPath)
			l, err := load(context.Background(), cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			defer l.policy.Close()
			for i, p := range explainRequests(e.originPort) {
				total.Add(1)
				p.header = p.header.Clone()
				if p.header == nil {
					p.header = http.Header{}
				}
				p.header.Set("X-Probe-Id", fmt.Sprintf("%s-%d", sc.name, i))
				got, want := e.explained(t, l, p), e.live(t, gw, audit, p)
				if want.Injected != "" {
					injected.Add(1)
				}
				if got != want {
					failed.Add(1)
					t.Errorf("%s:\n explain %+v\n serve   %+v", p, got, want)
				}
			}
		})
	}
}

// explainBatches are the batch requests of the differential test: OData
// $batch bodies to api.test (JSON and multipart, plain and gzip'd) whose
// sub-requests rule api-odata admits, or refuses for each class —
// method, a deny rule, another rule, a reference, a method override, a
// hostile path — a body that does not parse, one over 1 MiB, none, and
// batches of 2 and 3 under a rule whose rate limit has a burst of 2.
func explainBatches() []probeReq {
	js := func(subs ...string) string {
		return `{"requests":[` + strings.Join(subs, ",") + `]}`
	}
	sub := func(method, url string) string {
		return fmt.Sprintf(`{"id":"1","method":%q,"url":%q}`, method, url)
	}
	mp := func(lines ...string) string {
		var b strings.Builder
		for _, l := range lines {
			b.WriteString("--b0\r\nContent-Type: application/http\r\n\r\n" + l + " HTTP/1.1\r\n\r\n")
		}
		return b.String() + "--b0--\r\n"
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	_, _ = w.Write([]byte(js(sub("GET", "/odata/People"), sub("DELETE", "/odata/People(1)"))))
	_ = w.Close()
	jsonCT := http.Header{"Content-Type": {"application/json"}}
	multiCT := http.Header{"Content-Type": {"multipart/mixed; boundary=b0"}}
	type batchReq struct {
		header http.Header
		body   string
		url    string // "" for https://api.test/odata/$batch
	}
	reqs := []batchReq{
		{jsonCT, js(sub("GET", "/odata/People"), sub("GET", "People"), sub("POST", "/odata/People")), ""},
		{jsonCT, js(sub("GET", "/odata/People"), sub("DELETE", "/odata/People(1)")), ""},
		{jsonCT, js(sub("GET", "/admin/users")), ""},
		{jsonCT, js(sub("GET", "/v1/items")), ""},
		{jsonCT, js(sub("GET", "$1/Orders")), ""},
		{jsonCT, js(sub("GET", "/odata/People?_method=DELETE")), ""},
		{jsonCT, js(sub("GET", "/odata/a%2Fb"), sub("GET", "/odata/../admin")), ""},
		{jsonCT, js(sub("GET", "https://evil.test/odata/People")), ""},
		{jsonCT, js(sub("GET", "/odata/$batch")), ""},
		{jsonCT, `{"requests":[`, ""},
		{jsonCT, js(sub("GET", "/odata/People")) + strings.Repeat(" ", 1<<20), ""},
		{jsonCT, "", ""},
		{multiCT, mp("GET /odata/People", "GET People"), ""},
		{multiCT, mp("GET /odata/People", "DELETE /odata/People(1)"), ""},
		{http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}}, gz.String(), ""},
		{http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"zstd"}}, js(sub("GET", "/odata/People")), ""},
		// Rule api-small's burst of 2: a batch of 2 fits, one of 3 never
		// does (429 without Retry-After, which explain knows).
		{jsonCT, js(sub("GET", "/small/a"), sub("GET", "/small/b")), "https://api.test/small/$batch"},
		{jsonCT, js(sub("GET", "/small/a"), sub("GET", "/small/b"), sub("GET", "/small/c")), "https://api.test/small/$batch"},
	}
	var out []probeReq
	for _, source := range []string{"127.0.0.2", "127.0.0.5"} {
		for _, r := range reqs {
			u := r.url
			if u == "" {
				u = "https://api.test/odata/$batch"
			}
			out = append(out, probeReq{source: source, method: "POST", url: u, header: r.header, body: r.body})
		}
	}
	return out
}

// TestExplainBatchMatchesServe is the differential test of explain and
// serve on batch bodies (docs/cli.md#explain): for every request of
// explainBatches, in enforce and observe mode, the decision, rule, code,
// credential, status and reason explain gives with --data-binary are
// what the running gateway answered and audited; explain lists a
// verdict for every sub-request, the first refused one being the one the
// gateway names. Before, explain read no body: every batch its rule
// admitted was explained as allowed.
func TestExplainBatchMatchesServe(t *testing.T) {
	e := newExplainEnv(t)
	for _, sc := range []struct{ name, mode string }{{"batch-enforce", ""}, {"batch-observe", "mode: observe"}} {
		t.Run(sc.name, func(t *testing.T) {
			cfgPath := e.config(t, sc.name, sc.mode, "", false)
			gw, audit := liveGateway(t, cfgPath)
			l, err := load(context.Background(), cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			defer l.policy.Close()
			refused, never := 0, 0
			for i, p := range explainBatches() {
				p.header = p.header.Clone()
				p.header.Set("X-Probe-Id", fmt.Sprintf("%s-%d", sc.name, i))
				got, want := e.explained(t, l, p), e.live(t, gw, audit, p)
				if got != want {
					t.Errorf("%s body %.80q:\n explain %+v\n serve   %+v", p, p.body, got, want)
				}
				switch want.Code {
				case "batch_request_not_allowed":
					refused++
				case "rate_limited":
					never++
				}
			}
			if refused < 6 || never != 1 {
				t.Errorf("%d batches refused for a sub-request, %d for a rate limit: want at least 6 and 1, else the table checks little", refused, never)
			}
		})
	}
	// The sub-request verdicts explain prints: each one, the refused
	// one with its reason.
	cfgPath := e.config(t, "batch-print", "", "", false)
	var out bytes.Buffer
	bodyFile := filepath.Join(e.dir, "batch.json")
	if err := os.WriteFile(bodyFile, []byte(`{"requests":[{"id":"1","method":"GET","url":"/odata/People"},{"id":"2","method":"DELETE","url":"/odata/People(1)"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := newExplainCmd()
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"-c", cfgPath, "--source", "127.0.0.2", "-H", "Content-Type: application/json", "--data-binary", "@" + bodyFile, "POST", "https://api.test/odata/$batch"})
	err := cmd.Execute()
	var ec *exitCode
	if !errors.As(err, &ec) || ec.code != exitDenied {
		t.Fatalf("explain of a refused batch: %v, want exit %d\n%s", err, exitDenied, out.String())
	}
	for _, want := range []string{
		"batch:", "OData $batch, 2 sub-requests",
		"sub-request 0:", "GET /odata/People: admitted by rule api-odata",
		"sub-request 1:", "DELETE /odata/People(1): refused: is not admitted",
		"batch_request_not_allowed",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("explain's output lacks %q:\n%s", want, out.String())
		}
	}
}
