package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cws "github.com/coder/websocket"
	"golang.org/x/net/websocket"

	"github.com/credgate/credgate/internal/redistest"
)

// Placeholders (docs/agents.md): a client sends a placeholder where the
// secret belongs; the gateway puts the real value there for the
// destination the rule binds it to, and refuses it anywhere else.

const (
	agentPH = "CREDGATE_PH_agent_key"
	otherPH = "CREDGATE_PH_other_key"
)

// agentsPolicy binds agentPH to api.origin.test and otherPH to
// other.origin.test. QUARANTINE is replaced by true or false.
const agentsPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  api: {hosts: [api.origin.test], allow_private: true}
  other: {hosts: [other.origin.test], allow_private: true}
credentials:
  agent-key:
    provider: static
    env: CREDGATE_E2E_AGENT
    placeholder: CREDGATE_PH_agent_key
  other-key:
    provider: static
    env: CREDGATE_E2E_OTHER
    placeholder: CREDGATE_PH_other_key
placeholders:
  quarantine: QUARANTINE
rules:
  - name: agents-required
    from: local
    to: api
    paths: [/required*]
    inject: {credential: agent-key, as: placeholder}
    require_placeholder: true
  - name: agents-api
    from: local
    to: api
    # Every position the tests put the placeholder in.
    inject: {credential: agent-key, as: placeholder, substitute_in: [header, basic, path, query, form, json, websocket]}
  - name: agents-other
    from: local
    to: other
    inject: {credential: other-key, as: placeholder}
default: deny
`

// heldOrigin is the origin of the placeholder tests: it knows the real
// secret and answers 200 "match" when the position the path names holds
// exactly it (and the body is as long as Content-Length says), 422
// "mismatch" otherwise. It never echoes a value. /ws/check is a
// WebSocket that answers each message with "match" or "mismatch".
type heldOrigin struct {
	secret string
	addr   string
}

func startHeldOrigin(t *testing.T, secret string) *heldOrigin {
	t.Helper()
	o := &heldOrigin{secret: secret}
	mux := http.NewServeMux()
	// A Server without Handshake accepts any Origin (Handler would want one).
	mux.Handle("/ws/check", websocket.Server{Handler: func(ws *websocket.Conn) {
		for {
			var msg string
			if err := websocket.Message.Receive(ws, &msg); err != nil {
				return
			}
			var v struct{ D struct{ Token string } }
			ok := msg == "raw "+secret || json.Unmarshal([]byte(msg), &v) == nil && v.D.Token == secret
			_ = websocket.Message.Send(ws, verdict(ok))
		}
	}})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil || r.ContentLength >= 0 && int64(len(body)) != r.ContentLength {
			http.Error(w, "mismatch: body", http.StatusUnprocessableEntity)
			return
		}
		var ok bool
		switch p := r.URL.Path; {
		case p == "/check/header":
			ok = r.Header.Get("X-Api-Key") == secret
		case p == "/check/basic":
			u, pw, _ := r.BasicAuth()
			ok = u == "agent" && pw == secret
		case strings.HasPrefix(p, "/check/path/"):
			// The value stays one segment: its '/' is %2F on the wire.
			ok = p == "/check/path/bot"+secret+"/send" && r.URL.EscapedPath() == "/check/path/bot"+url.PathEscape(secret)+"/send"
		case p == "/check/query":
			ok = r.URL.Query().Get("key") == secret && r.URL.Query().Get("x") == "1"
		case p == "/check/form":
			f, _ := url.ParseQuery(string(body))
			ok = f.Get("token") == secret && f.Get("x") == "1"
		case p == "/check/json":
			var v struct {
				Token string `json:"token"`
				X     int    `json:"x"`
			}
			ok = json.Unmarshal(body, &v) == nil && v.Token == secret && v.X == 1
		default:
			ok = !bytes.Contains(body, []byte("CREDGATE_PH_")) && !strings.Contains(r.URL.String(), "CREDGATE_PH_")
		}
		if !ok {
			w.WriteHeader(http.StatusUnprocessableEntity)
		}
		fmt.Fprint(w, verdict(ok))
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{originLeaf}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	o.addr = srv.Listener.Addr().String()
	return o
}

func verdict(ok bool) string {
	if ok {
		return "match"
	}
	return "mismatch"
}

// agentSecret has characters each position spells differently.
func agentSecret(t *testing.T) string {
	return "cg-agent/" + randomToken(t) + ` "q" &x=1+2`
}

// startAgentsEnv starts a gateway with agentsPolicy in front of a held
// origin for api.origin.test and other.origin.test.
func startAgentsEnv(t *testing.T, secret, other string, quarantine bool, cache, extra string) (*env, *heldOrigin) {
	t.Helper()
	o := startHeldOrigin(t, secret)
	e := startEnv(t, envOptions{
		Policy:      strings.Replace(agentsPolicy, "QUARANTINE", fmt.Sprint(quarantine), 1),
		Resolve:     map[string]string{apiHost + ":443": o.addr, otherHost + ":443": o.addr},
		Env:         []string{"CREDGATE_E2E_AGENT=" + secret, "CREDGATE_E2E_OTHER=" + other},
		CacheConfig: cache,
		ExtraConfig: extra,
	})
	e.secrets = append(e.secrets, secret, other, url.QueryEscape(secret), url.PathEscape(secret))
	return e, o
}

// placeholderCase is one position of a placeholder.
type placeholderCase struct {
	name, method, path, contentType, body string
	header                                http.Header
}

var placeholderCases = []placeholderCase{
	{name: "header", method: "GET", path: "/check/header", header: http.Header{"X-Api-Key": {agentPH}}},
	{name: "basic", method: "GET", path: "/check/basic", header: http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("agent:"+agentPH))}}},
	{name: "path", method: "GET", path: "/check/path/bot" + agentPH + "/send"},
	{name: "query", method: "GET", path: "/check/query?key=" + agentPH + "&x=1"},
	{name: "form", method: "POST", path: "/check/form", contentType: "application/x-www-form-urlencoded", body: "token=" + agentPH + "&x=1"},
	{name: "json", method: "POST", path: "/check/json", contentType: "application/json", body: `{"token":"` + agentPH + `","x":1}`},
}

// bodyClient sends a request with a body, configured only through the
// environment (HTTPS_PROXY and the CA file), and returns the status, the
// X-Credgate-Reason header and the body. out is everything the client
// printed, to be searched for secrets.
type bodyClient struct {
	name string
	do   func(t *testing.T, e *env, method, u string, h http.Header, body string) (status int, reason, respBody, out string)
}

var bodyClients = []bodyClient{
	{"curl", curlBody}, {"python", pythonBody}, {"node", nodeBody}, {"go", goBody},
}

func curlBody(t *testing.T, e *env, method, u string, h http.Header, body string) (int, string, string, string) {
	t.Helper()
	dir := t.TempDir()
	hdr, out, in := filepath.Join(dir, "h"), filepath.Join(dir, "b"), filepath.Join(dir, "in")
	args := []string{"-sS", "--max-time", "20", "--cacert", gwCACert, "-X", method, "-D", hdr, "-o", out, "-w", "%{http_code}"}
	for k, vs := range h {
		for _, v := range vs {
			args = append(args, "-H", k+": "+v)
		}
	}
	if body != "" {
		if err := os.WriteFile(in, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--data-binary", "@"+in)
	}
	cmd := exec.Command("curl", append(args, u)...)
	cmd.Env = clientEnv(e.proxyURL)
	stdout, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, stdout)
	}
	var status int
	fmt.Sscanf(string(stdout), "%d", &status)
	rb, _ := os.ReadFile(out)
	hb, _ := os.ReadFile(hdr)
	reason := ""
	for _, l := range strings.Split(string(hb), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "X-Credgate-Reason") {
			reason = strings.TrimSpace(v)
		}
	}
	return status, reason, string(rb), string(stdout) + string(rb) + string(hb)
}

const pythonBodyScript = `
import json, sys, urllib.request, urllib.error
spec = json.loads(sys.argv[1])
data = spec["body"].encode() if spec["body"] else None
req = urllib.request.Request(spec["url"], data=data, method=spec["method"])
for k, vs in (spec["headers"] or {}).items():
    for v in vs:
        req.add_header(k, v)
try:
    with urllib.request.urlopen(req, timeout=20) as r:
        out = {"status": r.status, "reason": r.headers.get("X-Credgate-Reason", ""), "body": r.read().decode()}
except urllib.error.HTTPError as e:
    out = {"status": e.code, "reason": e.headers.get("X-Credgate-Reason", ""), "body": e.read().decode()}
print(json.dumps(out))
`

// nodeScript makes one request (or opens a WebSocket with the npm ws
// package, spec.wsModule) through HTTPS_PROXY: Node 20 has no proxy
// support of its own, so it sends the CONNECT itself and trusts the
// gateway CA through NODE_EXTRA_CA_CERTS, as an application would.
const nodeScript = `
const http = require('http'), https = require('https'), tls = require('tls');
const spec = JSON.parse(process.argv[1]);
const proxy = new URL(process.env.HTTPS_PROXY);
const target = new URL(spec.url);
const done = (o) => { console.log(JSON.stringify(o)); };
const req = http.request({host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: target.hostname + ':443'});
req.on('error', (e) => done({error: String(e)}));
req.on('connect', (res, socket) => {
  if (res.statusCode !== 200) { done({error: 'CONNECT ' + res.statusCode}); socket.destroy(); return; }
  const sock = tls.connect({socket, servername: target.hostname, ALPNProtocols: ['http/1.1']});
  if (spec.wsModule) {
    const WebSocket = require(spec.wsModule);
    const ws = new WebSocket(spec.url, {createConnection: () => sock});
    ws.on('open', () => ws.send(spec.body));
    ws.on('message', (m) => { done({status: 101, body: m.toString()}); ws.close(); });
    ws.on('unexpected-response', (q, r) => { done({status: r.statusCode, reason: r.headers['x-credgate-reason'] || ''}); ws.terminate(); });
    ws.on('error', (e) => done({error: String(e)}));
    return;
  }
  const r = https.request({host: target.hostname, port: 443, path: target.pathname + target.search, method: spec.method,
      headers: Object.fromEntries(Object.entries(spec.headers || {}).map(([k, v]) => [k, v[0]])),
      createConnection: () => sock}, (res) => {
    let b = '';
    res.on('data', (d) => { b += d; });
    res.on('end', () => { done({status: res.statusCode, reason: res.headers['x-credgate-reason'] || '', body: b}); sock.destroy(); });
  });
  r.on('error', (e) => done({error: String(e)}));
  if (spec.body) r.write(spec.body);
  r.end();
});
req.end();
`

type scriptResult struct {
	Status int
	Reason string
	Body   string
	Error  string
}

func runScript(t *testing.T, e *env, name string, args []string, envExtra ...string) (scriptResult, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = clientEnv(e.proxyURL, envExtra...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, stderr.String())
	}
	var res scriptResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("%s output %q: %v\n%s", name, stdout.String(), err, stderr.String())
	}
	if res.Error != "" {
		t.Fatalf("%s: %s", name, res.Error)
	}
	return res, stdout.String() + stderr.String()
}

func specJSON(t *testing.T, m map[string]any) string {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func pythonBody(t *testing.T, e *env, method, u string, h http.Header, body string) (int, string, string, string) {
	t.Helper()
	spec := specJSON(t, map[string]any{"url": u, "method": method, "headers": h, "body": body})
	res, out := runScript(t, e, "python3", []string{"-c", pythonBodyScript, spec}, "SSL_CERT_FILE="+gwCACert, "PYTHONDONTWRITEBYTECODE=1")
	return res.Status, res.Reason, res.Body, out
}

func nodeBody(t *testing.T, e *env, method, u string, h http.Header, body string) (int, string, string, string) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed")
	}
	spec := specJSON(t, map[string]any{"url": u, "method": method, "headers": h, "body": body})
	res, out := runScript(t, e, "node", []string{"-e", nodeScript, spec}, "NODE_EXTRA_CA_CERTS="+gwCACert)
	return res.Status, res.Reason, res.Body, out
}

func goBody(t *testing.T, e *env, method, u string, h http.Header, body string) (int, string, string, string) {
	t.Helper()
	c := newGoClient(t, e.proxyURL, gwCACert, false)
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("go: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Credgate-Reason"), string(b), string(b)
}

// assertClean fails when a client's output holds a real value.
func assertClean(t *testing.T, e *env, who, out string) {
	t.Helper()
	for _, s := range e.secrets {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("%s's output holds a secret value", who)
		}
	}
}

// TestAgentsPlaceholders: each placeholder position, sent by curl,
// Python urllib, Node and Go through the gateway, reaches the held origin
// as the real value (which checks it and never echoes it); none of the
// clients and none of the gateway's output ever holds it.
func TestAgentsPlaceholders(t *testing.T) {
	secret := agentSecret(t)
	e, _ := startAgentsEnv(t, secret, randomToken(t), false, "", "")
	for _, c := range bodyClients {
		for _, pc := range placeholderCases {
			t.Run(c.name+"/"+pc.name, func(t *testing.T) {
				h := http.Header{}
				for k, v := range pc.header {
					h[k] = v
				}
				if pc.contentType != "" {
					h.Set("Content-Type", pc.contentType)
				}
				status, reason, body, out := c.do(t, e, pc.method, "https://"+apiHost+pc.path, h, pc.body)
				assertClean(t, e, c.name, out)
				if status != http.StatusOK || body != "match" {
					t.Errorf("status %d (%s) body %q, want 200 match", status, reason, body)
				}
			})
		}
		t.Run(c.name+"/require_placeholder", func(t *testing.T) {
			status, reason, _, out := c.do(t, e, "GET", "https://"+apiHost+"/required/x", nil, "")
			assertClean(t, e, c.name, out)
			if status != http.StatusForbidden || reason != "placeholder_missing" {
				t.Errorf("without the placeholder: %d %s, want 403 placeholder_missing", status, reason)
			}
		})
		t.Run(c.name+"/tripwire", func(t *testing.T) {
			status, reason, _, out := c.do(t, e, "GET", "https://"+otherHost+"/check/query?key="+agentPH+"&x=1", nil, "")
			assertClean(t, e, c.name, out)
			if status != http.StatusForbidden || reason != "placeholder_misuse" {
				t.Errorf("agent-key's placeholder to %s: %d %s, want 403 placeholder_misuse", otherHost, status, reason)
			}
		})
	}
	waitFor(t, 5*time.Second, "audit lines of substitutions and tripwires", func() error {
		out := e.stdout.String()
		for _, want := range []string{`"where":"path","binding":"agent-key","count":1`, `"where":"basic","header":"Authorization"`, `"tripwire":"agent-key"`} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("no audit line with %s", want)
			}
		}
		return nil
	})
	if v := e.metric(t, `credgate_placeholder_misuse_total{quarantine="false",where="query"}`); v != float64(len(bodyClients)) {
		t.Errorf("credgate_placeholder_misuse_total = %v, want %d", v, len(bodyClients))
	}
}

// TestAgentsPlaceholdersWebSocket: a placeholder in a WebSocket text
// frame (raw, and JSON as Discord's IDENTIFY) reaches the origin as the
// real value, from Go (coder/websocket) and Node (npm ws, installed by
// scripts/node-ws.sh).
func TestAgentsPlaceholdersWebSocket(t *testing.T) {
	secret := agentSecret(t)
	e, _ := startAgentsEnv(t, secret, randomToken(t), false, "", "")
	msgs := []string{"raw " + agentPH, `{"op":2,"d":{"token":"` + agentPH + `"}}`}
	t.Run("go", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		ws, _, err := cws.Dial(ctx, "wss://"+apiHost+"/ws/check", &cws.DialOptions{HTTPClient: newGoClient(t, e.proxyURL, gwCACert, false)})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer ws.CloseNow()
		for _, m := range msgs {
			if err := ws.Write(ctx, cws.MessageText, []byte(m)); err != nil {
				t.Fatal(err)
			}
			_, got, err := ws.Read(ctx)
			if err != nil || string(got) != "match" {
				t.Errorf("origin's verdict on %q: %q %v", strings.Fields(m)[0], got, err)
			}
		}
	})
	t.Run("node", func(t *testing.T) {
		dir := os.Getenv("CREDGATE_NODE_DIR")
		if dir == "" {
			home, _ := os.UserHomeDir()
			dir = filepath.Join(home, ".cache", "credgate", "node")
		}
		mod := filepath.Join(dir, "node_modules", "ws")
		if _, err := os.Stat(mod); err != nil {
			t.Skipf("the npm ws package is not installed at %s: run bash scripts/node-ws.sh (needs the npm registry)", mod)
		}
		if _, err := exec.LookPath("node"); err != nil {
			t.Skip("node is not installed")
		}
		for _, m := range msgs {
			spec := specJSON(t, map[string]any{"url": "wss://" + apiHost + "/ws/check", "body": m, "wsModule": mod})
			res, out := runScript(t, e, "node", []string{"-e", nodeScript, spec}, "NODE_EXTRA_CA_CERTS="+gwCACert)
			assertClean(t, e, "node", out)
			if res.Status != 101 || res.Body != "match" {
				t.Errorf("node: %+v, want the origin's match", res)
			}
		}
	})
	waitFor(t, 5*time.Second, "audit line of the WebSocket substitutions", func() error {
		if !strings.Contains(e.stdout.String(), `"where":"websocket","binding":"agent-key"`) {
			return fmt.Errorf("no audit line names a websocket substitution")
		}
		return nil
	})
}

// TestAgentsTripwireQuarantine: with placeholders.quarantine, two
// replicas share a real redis-server; a placeholder sent through replica
// A to a host it is not bound to is refused 403 placeholder_misuse, and
// replica B refuses the workload (disabled by the kill switch) within a
// second.
func TestAgentsTripwireQuarantine(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	key := writeRedisKey(t, dir, "k1.key")
	cache := redisConfig(srv.Addr(), [2]string{"k1", key})
	extra := "admin:\n  resync_interval: 1m\n"
	secret, other := agentSecret(t), randomToken(t)
	a, _ := startAgentsEnv(t, secret, other, true, cache, extra)
	b, _ := startAgentsEnv(t, secret, other, true, cache, extra)
	ca, cb := newGoClient(t, a.proxyURL, gwCACert, false), newGoClient(t, b.proxyURL, gwCACert, false)
	if st, _, _ := get(t, cb, "GET", "https://"+apiHost+"/check/query?key="+agentPH+"&x=1", ""); st != 200 {
		t.Fatalf("B before: %d", st)
	}
	p := pollUntilRefused(cb, "https://"+apiHost+"/poll", "disabled", 10*time.Second)
	t0 := time.Now()
	st, h, _ := get(t, ca, "GET", "https://"+otherHost+"/x?key="+agentPH, "")
	if st != http.StatusForbidden || h.Get("X-Credgate-Reason") != "placeholder_misuse" {
		t.Fatalf("A: %d %s, want 403 placeholder_misuse", st, h.Get("X-Credgate-Reason"))
	}
	<-p.done
	if p.err != nil {
		t.Fatalf("polling B: %v", p.err)
	}
	took := p.at.Sub(t0)
	reportPeer(t, "placeholder tripwire: replica B refused the quarantined workload %s after the tripwire request started on replica A (%d polling requests)", took.Round(time.Millisecond), p.n)
	if took >= time.Second {
		t.Errorf("B refused %s after the tripwire, want < 1s", took)
	}
	// A refuses the workload too, from its CONNECT on.
	conn, resp := rawConnect(t, a, apiHost+":443")
	conn.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Credgate-Reason") != "disabled" {
		t.Errorf("A after the tripwire: CONNECT %d %s, want 403 disabled", resp.StatusCode, resp.Header.Get("X-Credgate-Reason"))
	}
	waitFor(t, 5*time.Second, "B's audit line of the refusal", func() error {
		if !strings.Contains(b.stdout.String(), `"switch":"workload:local"`) {
			return fmt.Errorf("no audit line with switch workload:local")
		}
		return nil
	})
	waitFor(t, 5*time.Second, "A's audit line of the tripwire", func() error {
		if !strings.Contains(a.stdout.String(), `"code":"placeholder_misuse"`) || !strings.Contains(a.stdout.String(), `"tripwire":"agent-key"`) {
			return fmt.Errorf("no audit line with code placeholder_misuse and tripwire agent-key")
		}
		return nil
	})
	if v := a.metric(t, `credgate_placeholder_misuse_total{quarantine="true",where="query"}`); v != 1 {
		t.Errorf("A credgate_placeholder_misuse_total = %v", v)
	}
}
