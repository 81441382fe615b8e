package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/credgate/credgate/internal/poll"
	"golang.org/x/net/websocket"

	"github.com/credgate/credgate/internal/syncbuf"
)

// waitFor polls cond every 20ms until it returns nil or timeout passes, then
// fails the test with the last error. It is the only way these tests wait.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	poll.Until(t, timeout, what, cond)
}

// ---------------------------------------------------------------------------
// Origin: a local HTTPS (and plain HTTP) server that records every request.

// originRequest is what the origin saw.
type originRequest struct {
	TLS        bool
	ServerName string // TLS SNI
	Proto      string
	Method     string
	Host       string
	Path       string
	RawQuery   string
	Header     http.Header
}

// origin is the "SaaS" behind the gateway. Routes:
//
//	/redirect?to=URL   302 to URL
//	/slow?ms=N         200 after N milliseconds (or when the client leaves)
//	/ws                a WebSocket that echoes every message
//	anything else      200 "ok PATH"
type origin struct {
	TLSAddr   *net.TCPAddr
	PlainAddr *net.TCPAddr

	mu   sync.Mutex
	reqs []originRequest
}

func startOrigin(t *testing.T) *origin {
	t.Helper()
	o := &origin{}
	h := http.HandlerFunc(o.serve)

	tlsSrv := httptest.NewUnstartedServer(h)
	tlsSrv.EnableHTTP2 = true
	tlsSrv.TLS = &tls.Config{Certificates: []tls.Certificate{originLeaf}, NextProtos: []string{"h2", "http/1.1"}} // as real servers offer (httptest alone offers h2 only)
	// Refused and garbage handshakes are part of the tests; keep them
	// out of the output.
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	o.TLSAddr = tlsSrv.Listener.Addr().(*net.TCPAddr)

	plainSrv := httptest.NewServer(h)
	t.Cleanup(plainSrv.Close)
	o.PlainAddr = plainSrv.Listener.Addr().(*net.TCPAddr)
	return o
}

func (o *origin) serve(w http.ResponseWriter, r *http.Request) {
	rec := originRequest{
		Proto: r.Proto, Method: r.Method, Host: r.Host,
		Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(),
	}
	if r.TLS != nil {
		rec.TLS = true
		rec.ServerName = r.TLS.ServerName
	}
	o.mu.Lock()
	o.reqs = append(o.reqs, rec)
	o.mu.Unlock()

	if r.URL.Path == "/ws" {
		// A WebSocket echo server (golang.org/x/net/websocket).
		websocket.Handler(func(ws *websocket.Conn) { _, _ = io.Copy(ws, ws) }).ServeHTTP(w, r)
		return
	}
	// Drain the body so that uploads complete.
	_, _ = io.Copy(io.Discard, r.Body)
	switch r.URL.Path {
	case "/hints":
		// 103 Early Hints before the answer.
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
	case "/redirect":
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
		return
	case "/slow":
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		timer := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-Origin", "credgate-e2e")
	fmt.Fprintf(w, "ok %s\n", r.URL.Path)
}

// requests returns a copy of what the origin saw.
func (o *origin) requests() []originRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]originRequest(nil), o.reqs...)
}

// byPath returns the requests whose path is p.
func (o *origin) byPath(p string) []originRequest {
	var out []originRequest
	for _, r := range o.requests() {
		if r.Path == p {
			out = append(out, r)
		}
	}
	return out
}

// one returns the single request the origin saw for path p, failing the test
// if there were none or several.
func (o *origin) one(t *testing.T, p string) originRequest {
	t.Helper()
	got := o.byPath(p)
	if len(got) != 1 {
		t.Fatalf("origin saw %d requests for %s, want 1 (all: %s)", len(got), p, o.summary())
	}
	return got[0]
}

func (o *origin) summary() string {
	var b strings.Builder
	for _, r := range o.requests() {
		fmt.Fprintf(&b, "[%s %s%s tls=%v sni=%q] ", r.Method, r.Host, r.Path, r.TLS, r.ServerName)
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// Gateway: the credgate binary as a child process.

// basePolicy allows the local workload (source 127.0.0.1) to reach the
// origin names as documented at their constants. Template fields:
// .OriginPort (the origin's TLS port, for the 127.0.0.1 literal) and
// .AllowLoopbackIP.
const basePolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
  tunnel:
    hosts: [tunnel.origin.test]
    allow_private: true
  private-name:
    hosts: [private.origin.test]
  loopback-ip:
    hosts: ["127.0.0.1"]
    ports: [{{.OriginPort}}]
    allow_private: {{.AllowLoopbackIP}}
  metadata:
    hosts: ["169.254.169.254"]
    ports: [80, 443]
  plain:
    hosts: [plain.origin.test]
    ports: [80]
    allow_private: true
credentials:
  api-token:
    provider: static
    env: CREDGATE_E2E_TOKEN
rules:
  - name: api-admin-blocked
    from: local
    to: api
    paths: [/admin*]
    action: deny
  - name: api-inject
    from: local
    to: api
    methods: [GET, POST, PUT]
    inject:
      credential: api-token
      as: bearer
  - name: tunnel-pass
    from: local
    to: tunnel
    action: tunnel
  - name: private-name
    from: local
    to: private-name
    inject:
      credential: api-token
      as: bearer
  - name: loopback-ip
    from: local
    to: loopback-ip
    inject:
      credential: api-token
      as: bearer
  - name: metadata
    from: local
    to: metadata
    action: tunnel
  - name: plain-inject
    from: local
    to: plain
    plaintext: true
    inject:
      credential: api-token
      as: bearer
default: deny
`

// envOptions change what startEnv starts.
type envOptions struct {
	// Policy is a text/template of the policy; basePolicy when empty.
	Policy string
	// AllowLoopbackIP sets allow_private on the 127.0.0.1 destination.
	AllowLoopbackIP bool
	// ShutdownTimeout is the gateway's shutdown_timeout; 10s when zero.
	ShutdownTimeout time.Duration
	// Resolve adds or replaces entries of the gateway's resolve map.
	Resolve map[string]string
	// Env adds KEY=VALUE entries to the gateway's environment.
	Env []string
	// ExtraConfig is appended to the gateway config (top-level keys such
	// as tls_listen, tls and identity).
	ExtraConfig string
	// CacheConfig is appended inside the config's cache: block (keys
	// indented by two spaces, e.g. "  redis:\n    addrs: [...]\n").
	CacheConfig string
	// AuditConfig is appended inside the config's audit: block (keys
	// indented by two spaces, e.g. "  on_stall: fail_closed\n").
	AuditConfig string
	// UpstreamConfig is appended inside the config's upstream: block
	// (keys indented by two spaces, e.g. "  http2: never\n").
	UpstreamConfig string
	// AuditOutput is audit.output: a file path; "" is stdout (the
	// lines e.audit reads).
	AuditOutput string
}

// env is one gateway process in front of one origin.
type env struct {
	t      *testing.T
	dir    string
	origin *origin
	// token is the credential the static provider serves; it must never
	// appear in the gateway's output.
	token      string
	configPath string
	policyPath string
	proxyAddr  string // host:port of the plain proxy listener
	// tlsProxyAddr is the TLS proxy listener's host:port, "" when none.
	tlsProxyAddr string
	adminAddr    string
	// proxyURL is what clients put in HTTPS_PROXY.
	proxyURL string

	// extraEnv is added to the gateway's environment.
	extraEnv []string
	// secrets are further values (beside token) that must never appear
	// in the gateway's output.
	secrets []string

	// auditKey is the audit checkpoint key file, "" when none.
	auditKey string

	cmd    *exec.Cmd
	stdout *syncBuffer // audit lines
	stderr *syncBuffer // logs
	exited chan struct{}
	// waitErr is the result of cmd.Wait, valid after exited is closed.
	waitErr error
}

// syncBuffer captures output goroutines write while the test reads.
type syncBuffer = syncbuf.Buffer

func randomToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "cg-e2e-secret-" + hex.EncodeToString(b)
}

// startEnv starts an origin and a gateway in front of it, and waits until
// the gateway is ready. Cleanup stops the gateway and checks that the
// credential never appeared in its output.
func startEnv(t *testing.T, opts envOptions) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), origin: startOrigin(t), token: randomToken(t)}
	e.configPath = filepath.Join(e.dir, "credgate.yaml")
	e.policyPath = filepath.Join(e.dir, "policy.yaml")
	e.writePolicy(opts.Policy, opts)
	e.writeConfig(opts)
	e.extraEnv = opts.Env
	e.start()
	return e
}

func (e *env) policyText(tmpl string, opts envOptions) string {
	e.t.Helper()
	if tmpl == "" {
		tmpl = basePolicy
	}
	pt, err := template.New("policy").Parse(tmpl)
	if err != nil {
		e.t.Fatalf("policy template: %v", err)
	}
	var b bytes.Buffer
	err = pt.Execute(&b, map[string]any{
		"OriginPort":      e.origin.TLSAddr.Port,
		"AllowLoopbackIP": opts.AllowLoopbackIP,
	})
	if err != nil {
		e.t.Fatalf("policy template: %v", err)
	}
	return b.String()
}

// writePolicy replaces the policy file atomically (write + rename, like a
// Kubernetes ConfigMap update), so a watcher never reads half a file.
func (e *env) writePolicy(tmpl string, opts envOptions) {
	e.t.Helper()
	writeAtomic(e.t, e.policyPath, e.policyText(tmpl, opts))
}

func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func (e *env) writeConfig(opts envOptions) {
	e.t.Helper()
	shutdown := opts.ShutdownTimeout
	if shutdown == 0 {
		shutdown = 10 * time.Second
	}
	auditOutput := "stdout"
	if opts.AuditOutput != "" {
		auditOutput = strconv.Quote(opts.AuditOutput)
	}
	tlsPort := strconv.Itoa(e.origin.TLSAddr.Port)
	pins := map[string]string{
		"api.origin.test:443":        "127.0.0.1:" + tlsPort,
		"other.origin.test:443":      "127.0.0.1:" + tlsPort,
		"tunnel.origin.test:443":     "127.0.0.1:" + tlsPort,
		"private.origin.test:443":    "127.0.0.1:" + tlsPort,
		"unrelated.example.test:443": "127.0.0.1:" + tlsPort,
		"plain.origin.test:80":       "127.0.0.1:" + strconv.Itoa(e.origin.PlainAddr.Port),
	}
	for k, v := range opts.Resolve {
		pins[k] = v
	}
	var resolve strings.Builder
	for _, k := range slices.Sorted(maps.Keys(pins)) {
		fmt.Fprintf(&resolve, "  %q: %q\n", k, pins[k])
	}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
policy: policy.yaml
ca:
  cert: %q
  key: %q
  leaf_ttl: 1h
upstream:
  ca_bundle: %q
  dial_timeout: 5s
  tls_handshake_timeout: 5s
  response_header_timeout: 20s
%[12]sresolve:
%[7]slimits:
  max_header_bytes: 65536
  read_header_timeout: 5s
cache:
  fetch_timeout: 5s
%[9]saudit:
  output: %[11]s
%[10]slog:
  level: debug
shutdown_timeout: %[6]s
%[8]s`, gwCACert, gwCAKey, originCACert, tlsPort, e.origin.PlainAddr.Port, shutdown, resolve.String(), opts.ExtraConfig, opts.CacheConfig, opts.AuditConfig, auditOutput, opts.UpstreamConfig)
	if err := os.WriteFile(e.configPath, []byte(cfg), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// gatewayEnv is the environment of the gateway process: no proxy settings
// (the gateway must never route upstream traffic through one) plus the
// static credential.
func gatewayEnv(token string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "CREDGATE_E2E_TOKEN":
			continue
		}
		out = append(out, kv)
	}
	return append(out, "CREDGATE_E2E_TOKEN="+token)
}

var servingLine = regexp.MustCompile(`"msg":"credgate serving".*`)

// start runs `credgate serve` and waits for its "credgate serving" log line
// (which names the bound addresses) and for /readyz.
func (e *env) start() {
	e.t.Helper()
	e.launch()
	waitFor(e.t, 10*time.Second, "/readyz", func() error {
		resp, err := http.Get("http://" + e.adminAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	})
}

// launch runs `credgate serve` and waits for its "credgate serving" log
// line, which names the bound addresses (not for /readyz).
func (e *env) launch() {
	t := e.t
	t.Helper()
	e.stdout, e.stderr = &syncBuffer{}, &syncBuffer{}
	e.cmd = exec.Command(binPath, "serve", "-c", e.configPath)
	e.cmd.Dir = e.dir
	e.cmd.Env = append(gatewayEnv(e.token), e.extraEnv...)
	e.cmd.Stdout, e.cmd.Stderr = e.stdout, e.stderr
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("start credgate: %v", err)
	}
	e.exited = make(chan struct{})
	go func() {
		e.waitErr = e.cmd.Wait()
		close(e.exited)
	}()
	t.Cleanup(e.stopAndCheck)

	waitFor(t, 20*time.Second, "credgate serving log line", func() error {
		select {
		case <-e.exited:
			t.Fatalf("credgate exited before serving: %v\nstderr:\n%s", e.waitErr, e.stderr.String())
		default:
		}
		line := servingLine.FindString(e.stderr.String())
		if line == "" {
			return errors.New("no serving line yet")
		}
		var v struct {
			Proxy, Admin string
			TLSProxy     string `json:"tls_proxy"`
		}
		if i := strings.LastIndex(line, "}"); i >= 0 {
			line = "{" + line[:i+1]
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil || v.Proxy == "" || v.Admin == "" {
			return fmt.Errorf("cannot read addresses from %q: %v", line, err)
		}
		e.proxyAddr, e.adminAddr, e.tlsProxyAddr = v.Proxy, v.Admin, v.TLSProxy
		return nil
	})
	e.proxyURL = "http://" + e.proxyAddr
}

// signal sends sig to the gateway.
func (e *env) signal(sig os.Signal) {
	e.t.Helper()
	if err := e.cmd.Process.Signal(sig); err != nil {
		e.t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits up to timeout for the gateway to exit; exited is false when it
// is still running, err is its exit error otherwise.
func (e *env) wait(timeout time.Duration) (exited bool, err error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-e.exited:
		return true, e.waitErr
	case <-timer.C:
		return false, nil
	}
}

// stopAndCheck stops the gateway (SIGTERM, then SIGKILL) and checks that the
// credential never reached its stdout or stderr.
func (e *env) stopAndCheck() {
	t := e.t
	select {
	case <-e.exited:
	default:
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		if exited, _ := e.wait(15 * time.Second); !exited {
			t.Errorf("credgate did not exit within 15s of SIGTERM; killing it")
			_ = e.cmd.Process.Kill()
			<-e.exited
		}
	}
	e.assertNoSecret(t, "stdout (audit)", e.stdout.String())
	e.assertNoSecret(t, "stderr (logs)", e.stderr.String())
	if strings.Contains(e.stderr.String(), "panic:") || strings.Contains(e.stderr.String(), "goroutine ") && strings.Contains(e.stderr.String(), "[running]") {
		t.Errorf("credgate panicked:\n%s", e.stderr.String())
	}
	if t.Failed() {
		t.Logf("credgate stderr:\n%s", tail(e.stderr.String(), 60))
		t.Logf("credgate stdout:\n%s", tail(e.stdout.String(), 30))
	}
}

// assertNoSecret fails if the credential, or an obvious encoding of it,
// appears in s.
func (e *env) assertNoSecret(t *testing.T, where, s string) {
	t.Helper()
	for _, needle := range append([]string{e.token, e.token[len(e.token)-16:]}, e.secrets...) {
		if strings.Contains(s, needle) {
			t.Errorf("the injected credential appears in the gateway's %s", where)
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines omitted)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// auditEvent is one audit line (the keys the tests look at).
type auditEvent struct {
	Workload   string `json:"workload"`
	Method     string `json:"method"`
	Scheme     string `json:"scheme"`
	Host       string `json:"host"`
	Port       int    `json:"port"`
	Path       string `json:"path"`
	Rule       string `json:"rule"`
	Decision   string `json:"decision"`
	Code       string `json:"code"`
	Credential string `json:"credential"`
	Status     int    `json:"status"`
	Closed     string `json:"closed"`
	// GRPCStatus is the grpc-status a gRPC call's client got (nil: none).
	GRPCStatus *int `json:"grpc_status"`
}

// audit returns the audit events written so far.
func (e *env) audit() []auditEvent {
	var out []auditEvent
	sc := bufio.NewScanner(strings.NewReader(e.stdout.String()))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		var ev auditEvent
		if json.Unmarshal(sc.Bytes(), &ev) == nil {
			out = append(out, ev)
		}
	}
	return out
}

// metric returns the value of the Prometheus sample whose name and labels
// are given exactly as in the exposition text (e.g.
// `credgate_policy_reloads_total{result="error"}`), 0 when absent.
func (e *env) metric(t *testing.T, sample string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.adminAddr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	e.assertNoSecret(t, "/metrics", string(body))
	name, labels, _ := strings.Cut(sample, "{")
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		if labels == "" && fields[0] != name {
			continue
		}
		if labels != "" && !sameLabels(fields[0], name, "{"+labels) {
			continue
		}
		v, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			t.Fatalf("metric %s: %v", line, err)
		}
		return v
	}
	return 0
}

// sameLabels reports whether the exposition series got has the name and
// contains every label pair of want ("{a=\"x\",b=\"y\"}"), in any order.
func sameLabels(got, name, want string) bool {
	rest, ok := strings.CutPrefix(got, name+"{")
	if !ok {
		return false
	}
	have := strings.Split(strings.TrimSuffix(rest, "}"), ",")
	for _, pair := range strings.Split(strings.Trim(want, "{}"), ",") {
		found := false
		for _, h := range have {
			if h == pair {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// waitLog waits until the gateway's log holds s. Its stderr reaches the
// test through a pipe, so a line can trail the event it reports (a metric
// already changed, an answer already received).
func (e *env) waitLog(t *testing.T, s string) {
	t.Helper()
	waitFor(t, 5*time.Second, "the log line "+strconv.Quote(s), func() error {
		if strings.Contains(e.stderr.String(), s) {
			return nil
		}
		return errors.New("not logged yet")
	})
}
