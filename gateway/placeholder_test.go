package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/credgate/credgate/internal/poll"
)

const (
	secondHost = "second.origin.test"
	// phValue is the secret behind the test placeholder: characters that
	// every position spells differently ('/', '"', '&', '=', '+', ' ').
	phValue = `ph/s3cret "v" &x=1+2 end`
	phAPI   = "CREDGATE_PH_api_key"
	phElse  = "CREDGATE_PH_elsewhere"
	phDots  = "CREDGATE_PH_dots"
)

const placeholderTestPolicy = `
workloads:
  local: {cidrs: [127.0.0.1/32]}
  other: {cidrs: [10.0.0.0/8]}
destinations:
  api: {hosts: [api.origin.test], allow_private: true}
  second: {hosts: [second.origin.test], allow_private: true}
  tunnel: {hosts: [tunnel.origin.test], allow_private: true}
credentials:
  ph:
    provider: static
    env: CREDGATE_GATEWAY_TEST_PH
    placeholder: CREDGATE_PH_api_key
  elsewhere:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
    placeholder: CREDGATE_PH_elsewhere
  perwl:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
    placeholder: {generate: per_workload}
  dots:
    provider: static
    env: CREDGATE_GATEWAY_TEST_DOTS
    placeholder: CREDGATE_PH_dots
  traversal:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TRAVERSAL
    placeholder: CREDGATE_PH_traversal
placeholders: {quarantine: %t}
rules:
  - {name: denied, from: local, to: api, paths: [/denied*], action: deny}
  - name: required
    from: local
    to: api
    paths: [/required/*]
    inject: {credential: ph, as: placeholder}
    require_placeholder: true
  - {name: dots, from: local, to: api, paths: [/dots/*], inject: {credential: dots, as: placeholder}}
  - {name: traversal, from: local, to: api, paths: [/trav/*], inject: {credential: traversal, as: placeholder}}
  - name: signed
    from: local
    to: api
    paths: [/signed/*]
    inject: {credential: ph, as: hmac, key_field: token, string_to_sign: "{{.method}}{{.path}}{{.body}}", signature: {header: X-Sig}, substitute_in: [json]}
  - {name: api, from: local, to: api, inject: {credential: ph, as: placeholder, substitute_in: [header, basic, path, query, form, json, websocket]}}
  - {name: second, from: local, to: second, inject: {credential: elsewhere, as: bearer}}
  - {name: other, from: other, to: second, inject: {credential: perwl, as: placeholder}}
  - {name: tunnel, from: local, to: tunnel, action: tunnel}
default: deny
`

// bodySeen is what the origin's /body route received.
type bodySeen struct {
	mu     sync.Mutex
	bodies []string
	frames []string
}

func (b *bodySeen) last() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.bodies) == 0 {
		return ""
	}
	return b.bodies[len(b.bodies)-1]
}

// startPlaceholderGateway runs a gateway with placeholderTestPolicy. The
// origin's /body route records request bodies (and checks that
// Content-Length, when sent, matches), /wsrecv accepts a WebSocket and
// records its text messages.
func startPlaceholderGateway(t testing.TB, quarantine bool) (*testGateway, *bodySeen) {
	t.Helper()
	t.Setenv("CREDGATE_GATEWAY_TEST_PH", phValue)
	t.Setenv("CREDGATE_GATEWAY_TEST_DOTS", "..")
	t.Setenv("CREDGATE_GATEWAY_TEST_TRAVERSAL", "../../denied;x")
	pki := newTestPKI(t, apiHost, tunnelHost, secondHost)
	o := startOrigin(t, pki)
	bs := &bodySeen{}
	o.route("/body", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.ContentLength >= 0 && int64(len(b)) != r.ContentLength {
			http.Error(w, "content-length mismatch", http.StatusBadRequest)
			return
		}
		bs.mu.Lock()
		bs.bodies = append(bs.bodies, string(b))
		bs.mu.Unlock()
		fmt.Fprintf(w, "got %d bytes", len(b))
	})
	o.route("/wsrecv", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			_, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			bs.mu.Lock()
			bs.frames = append(bs.frames, string(msg))
			bs.mu.Unlock()
			if err := c.Write(r.Context(), websocket.MessageText, []byte("ack")); err != nil {
				return
			}
		}
	})
	tg := newTestGateway(t, pki, o)
	writeFile(t, tg.dir, "policy.yaml", []byte(fmt.Sprintf(placeholderTestPolicy, quarantine)))
	tg.run(t, fmt.Sprintf(`resolve:
  "api.origin.test:443": %q
  "second.origin.test:443": %q
  "tunnel.origin.test:443": %q
`, o.addr, o.addr, o.addr))
	t.Cleanup(func() {
		for where, s := range map[string]string{"audit": tg.audit.String(), "log": tg.logs.String()} {
			for _, v := range []string{phValue, url.QueryEscape(phValue), url.PathEscape(phValue)} {
				if strings.Contains(s, v) {
					t.Errorf("the placeholder's secret appears in the %s output", where)
				}
			}
		}
	})
	return tg, bs
}

func do(t *testing.T, c *http.Client, method, u string, h http.Header, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// Each position gets the real value, spelled for its position, and
// nothing else of the request changes.
func TestPlaceholderPositions(t *testing.T) {
	tg, bs := startPlaceholderGateway(t, false)
	c := tg.client(t, false)
	base := "https://" + apiHost
	jsonValue := jsonString(phValue)

	t.Run("header", func(t *testing.T) {
		resp, _ := do(t, c, "GET", base+"/h", http.Header{"X-Api-Key": {"key " + phAPI}}, nil)
		got := tg.origin.all()
		if resp.StatusCode != 200 || got[len(got)-1].Header.Get("X-Api-Key") != "key "+phValue {
			t.Errorf("status %d, origin saw X-Api-Key %q", resp.StatusCode, got[len(got)-1].Header.Get("X-Api-Key"))
		}
	})
	t.Run("basic", func(t *testing.T) {
		auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+phAPI))
		resp, _ := do(t, c, "GET", base+"/b", http.Header{"Authorization": {auth}}, nil)
		got := tg.origin.all()
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+phValue))
		if resp.StatusCode != 200 || got[len(got)-1].Header.Get("Authorization") != want {
			t.Errorf("status %d, origin saw Authorization %q, want %q", resp.StatusCode, got[len(got)-1].Header.Get("Authorization"), want)
		}
	})
	t.Run("path", func(t *testing.T) {
		resp, _ := do(t, c, "GET", base+"/bot"+phAPI+"/send", nil, nil)
		got := tg.origin.all()
		last := got[len(got)-1]
		// The value stays inside its segment: '/' is %2F on the wire.
		if resp.StatusCode != 200 || last.Path != "/bot"+phValue+"/send" || last.URI != "/bot"+url.PathEscape(phValue)+"/send" {
			t.Errorf("status %d, origin saw path %q (wire %q)", resp.StatusCode, last.Path, last.URI)
		}
	})
	t.Run("query", func(t *testing.T) {
		resp, _ := do(t, c, "GET", base+"/q?a=1&key="+phAPI+"&b=2", nil, nil)
		got := tg.origin.all()
		q, _ := url.ParseQuery(got[len(got)-1].Query)
		if resp.StatusCode != 200 || q.Get("key") != phValue || q.Get("a") != "1" || q.Get("b") != "2" {
			t.Errorf("status %d, origin saw query %q", resp.StatusCode, got[len(got)-1].Query)
		}
	})
	t.Run("form", func(t *testing.T) {
		body := "token=" + phAPI + "&channel=C1"
		resp, text := do(t, c, "POST", base+"/body", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(body))
		f, _ := url.ParseQuery(bs.last())
		if resp.StatusCode != 200 || f.Get("token") != phValue || f.Get("channel") != "C1" {
			t.Errorf("status %d %q, origin saw form %q", resp.StatusCode, text, bs.last())
		}
	})
	t.Run("json", func(t *testing.T) {
		body := `{"token":"` + phAPI + `","n":1}`
		resp, text := do(t, c, "POST", base+"/body", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(body))
		var v struct {
			Token string `json:"token"`
			N     int    `json:"n"`
		}
		if resp.StatusCode != 200 || json.Unmarshal([]byte(bs.last()), &v) != nil || v.Token != phValue || v.N != 1 {
			t.Errorf("status %d %q, origin saw %q", resp.StatusCode, text, bs.last())
		}
		if want := `{"token":` + string(jsonValue) + `,"n":1}`; bs.last() != want {
			t.Errorf("body %q, want exactly %q", bs.last(), want)
		}
	})
	t.Run("json streamed", func(t *testing.T) {
		// Longer than the in-memory limit: streamed, sent chunked.
		pad := strings.Repeat("x", 200<<10)
		body := `{"pad":"` + pad + `","token":"` + phAPI + `"}`
		resp, text := do(t, c, "POST", base+"/body", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(body))
		if want := `{"pad":"` + pad + `","token":` + string(jsonValue) + `}`; resp.StatusCode != 200 || bs.last() != want {
			t.Errorf("status %d %q, origin saw %d bytes, want %d", resp.StatusCode, text, len(bs.last()), len(want))
		}
	})
	t.Run("json and path over HTTP/2", func(t *testing.T) {
		c2 := tg.client(t, true)
		body := `{"token":"` + phAPI + `"}`
		resp, text := do(t, c2, "POST", base+"/body", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(body))
		if want := `{"token":` + string(jsonValue) + `}`; resp.ProtoMajor != 2 || resp.StatusCode != 200 || bs.last() != want {
			t.Errorf("%s status %d %q, origin saw %q", resp.Proto, resp.StatusCode, text, bs.last())
		}
		resp, _ = do(t, c2, "GET", base+"/v/"+phAPI, nil, nil)
		got := tg.origin.all()
		if resp.StatusCode != 200 || got[len(got)-1].Path != "/v/"+phValue {
			t.Errorf("status %d, origin saw path %q", resp.StatusCode, got[len(got)-1].Path)
		}
	})
	t.Run("websocket", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, "wss://"+apiHost+"/wsrecv", &websocket.DialOptions{HTTPClient: c})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer ws.CloseNow()
		for _, msg := range []string{`{"op":2,"d":{"token":"` + phAPI + `"}}`, "plain " + phAPI} {
			if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			if _, ack, err := ws.Read(ctx); err != nil || string(ack) != "ack" {
				t.Fatalf("read ack: %q %v", ack, err)
			}
		}
		bs.mu.Lock()
		frames := append([]string(nil), bs.frames...)
		bs.mu.Unlock()
		want := []string{`{"op":2,"d":{"token":` + string(jsonValue) + `}}`, "plain " + phValue}
		if fmt.Sprint(frames) != fmt.Sprint(want) {
			t.Errorf("origin received frames %q, want %q", frames, want)
		}
		ws.Close(websocket.StatusNormalClosure, "")
	})
	t.Run("tunnel untouched", func(t *testing.T) {
		// Not intercepted: the gateway never sees the bytes.
		tc := &http.Client{Transport: &http.Transport{Proxy: c.Transport.(*http.Transport).Proxy,
			TLSClientConfig: &tls.Config{RootCAs: tg.pki.pool}}}
		defer tc.CloseIdleConnections()
		resp, _ := do(t, tc, "GET", "https://"+tunnelHost+"/t?key="+phAPI, nil, nil)
		got := tg.origin.all()
		if resp.StatusCode != 200 || got[len(got)-1].Query != "key="+phAPI {
			t.Errorf("status %d, origin saw query %q through the tunnel", resp.StatusCode, got[len(got)-1].Query)
		}
	})
	poll.Until(t, 5*time.Second, "audit line with the substitutions", func() error {
		if !strings.Contains(tg.audit.String(), `"placeholders":[{"where":"json","binding":"ph","count":1}]`) {
			return fmt.Errorf("no audit line names the json substitution")
		}
		return nil
	})
	if m := metric(t, tg, `credgate_placeholder_substitutions_total{where="path"}`); !strings.HasSuffix(m, " 2") {
		t.Errorf("metric: %q", m)
	}
}

// Tripwires: the placeholder of another destination, or another
// workload's generated one, refuses the request (also one the policy
// denies); require_placeholder refuses a request without one; a value
// that would be a dot segment is refused.
func TestPlaceholderRefusals(t *testing.T) {
	tg, _ := startPlaceholderGateway(t, false)
	c := tg.client(t, false)
	otherPH := tg.gw.store.Current().Placeholders()
	var otherWL string
	for _, u := range otherPH {
		if u.Credential == "perwl" && u.Workload == "other" {
			otherWL = u.Placeholder
		}
	}
	if otherWL == "" {
		t.Fatal("no generated placeholder for workload other")
	}
	tests := []struct {
		name, url string
		h         http.Header
		body      string
		status    int
		code      string
	}{
		{"other destination in header", "https://" + apiHost + "/x", http.Header{"X-Key": {phElse}}, "", 403, codePlaceholderMisuse},
		{"other destination in json", "https://" + apiHost + "/body", http.Header{"Content-Type": {"application/json"}}, `{"k":"` + phElse + `"}`, 403, codePlaceholderMisuse},
		{"bound placeholder to the wrong host", "https://" + secondHost + "/x?k=" + phAPI, nil, "", 403, codePlaceholderMisuse},
		{"another workload's placeholder", "https://" + apiHost + "/x/" + otherWL, nil, "", 403, codePlaceholderMisuse},
		{"denied request", "https://" + apiHost + "/denied?k=" + phElse, nil, "", 403, codePlaceholderMisuse},
		{"required and missing", "https://" + apiHost + "/required/x", nil, "", 403, codePlaceholderMissing},
		{"required and present", "https://" + apiHost + "/required/" + phAPI, nil, "", 200, ""},
		{"dot segment", "https://" + apiHost + "/dots/" + phDots + "/x", nil, "", 502, codePlaceholderUnsafe},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(tg.origin.all())
			var body io.Reader
			method := "GET"
			if tc.body != "" {
				method, body = "POST", strings.NewReader(tc.body)
			}
			resp, text := do(t, c, method, tc.url, tc.h, body)
			if resp.StatusCode != tc.status || resp.Header.Get(ReasonHeader) != tc.code {
				t.Fatalf("status %d %s %q, want %d %s", resp.StatusCode, resp.Header.Get(ReasonHeader), text, tc.status, tc.code)
			}
			if tc.status != 200 && len(tg.origin.all()) != before {
				t.Errorf("the refused request reached the origin")
			}
		})
	}
	// A tripwire in a body longer than the in-memory limit stops it in
	// the stream: the origin never gets a complete request.
	big := `{"pad":"` + strings.Repeat("y", 300<<10) + `","k":"` + phElse + `"}`
	req, _ := http.NewRequest("POST", "https://"+apiHost+"/body", io.NopCloser(strings.NewReader(big)))
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = -1
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("a streamed body with a tripwire was answered 200")
		}
	}
	poll.Until(t, 5*time.Second, "audit names the tripwire", func() error {
		a := tg.audit.String()
		for _, want := range []string{`"tripwire":"elsewhere"`, `"tripwire":"perwl@other"`, `"code":"placeholder_missing"`} {
			if !strings.Contains(a, want) {
				return fmt.Errorf("audit lacks %s", want)
			}
		}
		return nil
	})
	if m := metric(t, tg, `credgate_placeholder_misuse_total{quarantine="false",where="header"}`); !strings.HasSuffix(m, " 1") {
		t.Errorf("metric: %q", m)
	}
	// The buffered JSON body and the streamed one.
	if m := metric(t, tg, `credgate_placeholder_misuse_total{quarantine="false",where="json"}`); !strings.HasSuffix(m, " 2") {
		t.Errorf("metric: %q", m)
	}
	// A tripwire in a WebSocket frame ends the connection.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://"+apiHost+"/wsrecv", &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.CloseNow()
	_ = ws.Write(ctx, websocket.MessageText, []byte(`{"token":"`+phElse+`"}`))
	if _, _, err := ws.Read(ctx); err == nil {
		t.Error("the WebSocket stayed open after a tripwire")
	}
}

// With placeholders.quarantine the workload is disabled by the kill
// switch: its next request, even a clean one, is refused.
func TestPlaceholderQuarantine(t *testing.T) {
	tg, _ := startPlaceholderGateway(t, true)
	c := tg.client(t, false)
	resp, _ := do(t, c, "GET", "https://"+apiHost+"/x?k="+phElse, nil, nil)
	if resp.StatusCode != 403 || resp.Header.Get(ReasonHeader) != codePlaceholderMisuse {
		t.Fatalf("status %d %s", resp.StatusCode, resp.Header.Get(ReasonHeader))
	}
	resp, text := do(t, c, "GET", "https://"+apiHost+"/clean?k="+phAPI, nil, nil)
	if resp.StatusCode != 403 || resp.Header.Get(ReasonHeader) != codeDisabled || !strings.Contains(text, "placeholder_misuse") {
		t.Fatalf("after the tripwire: status %d %s %q, want 403 disabled", resp.StatusCode, resp.Header.Get(ReasonHeader), text)
	}
	if m := metric(t, tg, `credgate_switches_disabled{kind="workload"}`); !strings.HasSuffix(m, " 1") {
		t.Errorf("metric: %q", m)
	}
}

// TestPlaceholderMisplacedQuarantine: the rule's own placeholder outside
// its places (here a JSON body, outside the default places of rule
// required) takes the tripwire's path: with placeholders.quarantine the
// workload is disabled, counted with quarantine="true".
func TestPlaceholderMisplacedQuarantine(t *testing.T) {
	tg, _ := startPlaceholderGateway(t, true)
	c := tg.client(t, false)
	resp, text := do(t, c, "POST", "https://"+apiHost+"/required/x?k="+phAPI, http.Header{"Content-Type": {"application/json"}},
		strings.NewReader(`{"text":"`+phAPI+`"}`))
	if resp.StatusCode != 403 || resp.Header.Get(ReasonHeader) != codePlaceholderMisuse || !strings.Contains(text, "substitute_in") {
		t.Fatalf("status %d %s %q, want 403 %s naming substitute_in", resp.StatusCode, resp.Header.Get(ReasonHeader), text, codePlaceholderMisuse)
	}
	resp, text = do(t, c, "GET", "https://"+apiHost+"/required/"+phAPI, nil, nil)
	if resp.StatusCode != 403 || resp.Header.Get(ReasonHeader) != codeDisabled {
		t.Fatalf("after the misplaced placeholder: status %d %s %q, want 403 disabled", resp.StatusCode, resp.Header.Get(ReasonHeader), text)
	}
	if m := metric(t, tg, `credgate_placeholder_misuse_total{quarantine="true",where="json"}`); !strings.HasSuffix(m, " 1") {
		t.Errorf("metric: %q", m)
	}
}

// jsonString is s as a JSON string, without HTML escaping (as the
// gateway writes a value into a JSON body).
func jsonString(s string) []byte {
	var b strings.Builder
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	_ = e.Encode(s)
	return []byte(strings.TrimSuffix(b.String(), "\n"))
}

// Invariants 11 and 13 (docs/security.md): the policy matched the
// canonical path with the placeholder in it; the value replacing it is
// escaped to stay inside that one segment, so a value with "/", "..",
// ";" cannot move the request to another path (here: under /denied,
// which a deny rule covers), and a value that would be a whole "." or
// ".." segment is refused (TestPlaceholderRefusals "dot segment").
func TestPlaceholderPathStaysInItsSegment(t *testing.T) {
	tg, _ := startPlaceholderGateway(t, false)
	c := tg.client(t, false)
	resp, _ := do(t, c, "GET", "https://"+apiHost+"/trav/"+"CREDGATE_PH_traversal"+"/x", nil, nil)
	got := tg.origin.all()
	if resp.StatusCode != 200 || len(got) == 0 {
		t.Fatalf("status %d, origin saw %d requests", resp.StatusCode, len(got))
	}
	last := got[len(got)-1]
	if want := "/trav/..%2F..%2Fdenied%3Bx/x"; last.URI != want {
		t.Errorf("upstream request target %q, want %q (the value escaped within its segment)", last.URI, want)
	}
}

// TestPlaceholderThenSignature: a placeholder in the body of a request
// whose rule signs it (hmac over the method, path and body) is replaced
// before the injector signs: the origin, recomputing the HMAC over the
// body it received, accepts it. Signing first would sign the placeholder
// and send the secret, and no upstream would accept the signature.
func TestPlaceholderThenSignature(t *testing.T) {
	tg, _ := startPlaceholderGateway(t, false)
	var got struct {
		mu   sync.Mutex
		body string
		ok   bool
	}
	tg.origin.route("/signed/order", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		m := hmac.New(sha256.New, []byte(phValue))
		m.Write([]byte(r.Method + r.URL.EscapedPath()))
		m.Write(b)
		ok := hmac.Equal([]byte(hex.EncodeToString(m.Sum(nil))), []byte(r.Header.Get("X-Sig")))
		got.mu.Lock()
		got.body, got.ok = string(b), ok
		got.mu.Unlock()
		if !ok {
			http.Error(w, "bad signature", http.StatusUnauthorized)
		}
	})
	body := `{"key":"` + phAPI + `","n":1}`
	resp, err := tg.client(t, false).Post("https://"+apiHost+"/signed/order", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	got.mu.Lock()
	defer got.mu.Unlock()
	if resp.StatusCode != http.StatusOK || !got.ok {
		t.Fatalf("status %s, signature valid %v: the signature does not cover the body sent", resp.Status, got.ok)
	}
	if strings.Contains(got.body, phAPI) || !strings.Contains(got.body, `ph/s3cret \"v\"`) {
		t.Errorf("the origin received %q: want the placeholder replaced (JSON-escaped)", got.body)
	}
}
