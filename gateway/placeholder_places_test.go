package gateway

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/credgate/credgate/internal/poll"
)

// placesValue is the secret behind placesPH: characters no position
// re-spells, so that the test finds it in whatever the upstream got.
const (
	placesValue = "sk_live_places_0123456789SECRET"
	placesPH    = "CREDGATE_PH_places"
)

// placesRules are the rules of placesPolicy: each injects the same
// credential under another substitute_in (nil: the rule sets none).
var placesRules = []struct {
	name   string
	places []string
}{
	{"r-all", []string{"header", "basic", "path", "query", "form", "json", "websocket"}},
	{"r-authz", []string{"header:Authorization"}},
	{"r-fields", []string{"header:x-api-key", "query:api_key", "form:token", "json:/auth/key"}},
	{"r-path", []string{"path"}},
	{"r-basic", []string{"basic"}},
	{"r-ws", []string{"websocket"}},
	{"r-default", nil},
}

func placesPolicy(quarantine bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `
workloads:
  local: {cidrs: [127.0.0.1/32]}
destinations:
  api: {hosts: [api.origin.test], allow_private: true}
credentials:
  ph:
    provider: static
    env: CREDGATE_GATEWAY_TEST_PLACES
    placeholder: %s
placeholders: {quarantine: %t}
rules:
`, placesPH, quarantine)
	for _, r := range placesRules {
		in := ""
		if r.places != nil {
			q := make([]string, len(r.places))
			for i, p := range r.places {
				q[i] = fmt.Sprintf("%q", p)
			}
			in = ", substitute_in: [" + strings.Join(q, ", ") + "]"
		}
		fmt.Fprintf(&b, "  - {name: %s, from: local, to: api, paths: [/%s/*], inject: {credential: ph, as: placeholder%s}}\n", r.name, r.name, in)
	}
	b.WriteString("default: deny\n")
	return b.String()
}

// placesPosition is one place an agent may put the placeholder, and the
// substitute_in entries that allow it there ("header", "form:token"...;
// the default places are header, basic, path and query).
type placesPosition struct {
	name string
	// where is the position the audit line and the metric name.
	where string
	// allowedBy are the substitute_in entries that allow it.
	allowedBy []string
	// ws sends the placeholder in a WebSocket text frame, not a request.
	ws bool
	// streamed is a body longer than the in-memory limit: a refusal cuts
	// it off in the stream, after its head and first bytes were sent.
	streamed bool
	// ambiguous puts the placeholder where the gateway and some servers
	// read different fields: under a rule naming the field (r-fields)
	// the refusal says so.
	ambiguous bool
	// build makes the request for path (the case's own path under its
	// rule's prefix; a path position adds the placeholder to it).
	build func(path string) (p string, h http.Header, ctype, body string)
}

var placesPositions = []placesPosition{
	{name: "header X-Api-Key", where: "header", allowedBy: []string{"header", "header:x-api-key"},
		build: func(p string) (string, http.Header, string, string) {
			return p, http.Header{"X-Api-Key": {placesPH}}, "", ""
		}},
	{name: "header Authorization Bearer", where: "header", allowedBy: []string{"header", "header:Authorization"},
		build: func(p string) (string, http.Header, string, string) {
			return p, http.Header{"Authorization": {"Bearer " + placesPH}}, "", ""
		}},
	{name: "header Referer", where: "header", allowedBy: []string{"header"},
		build: func(p string) (string, http.Header, string, string) {
			return p, http.Header{"Referer": {"https://attacker.example/?k=" + placesPH}}, "", ""
		}},
	{name: "basic", where: "basic", allowedBy: []string{"basic"},
		build: func(p string) (string, http.Header, string, string) {
			return p, http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+placesPH))}}, "", ""
		}},
	{name: "path", where: "path", allowedBy: []string{"path"},
		build: func(p string) (string, http.Header, string, string) {
			return p + "/bot" + placesPH + "/send", nil, "", ""
		}},
	{name: "query api_key", where: "query", allowedBy: []string{"query", "query:api_key"},
		build: func(p string) (string, http.Header, string, string) {
			return p + "?a=1&api_key=" + placesPH, nil, "", ""
		}},
	{name: "query callback url", where: "query", allowedBy: []string{"query"},
		build: func(p string) (string, http.Header, string, string) {
			return p + "?api_key=x&url=https%3A%2F%2Fattacker.example%2F%3Fk%3D" + placesPH, nil, "", ""
		}},
	{name: "query name", where: "query", allowedBy: []string{"query"},
		build: func(p string) (string, http.Header, string, string) {
			return p + "?" + placesPH + "=api_key", nil, "", ""
		}},
	{name: "form token after ;", where: "form", allowedBy: []string{"form"}, ambiguous: true,
		build: func(p string) (string, http.Header, string, string) {
			// A server that does not split on ';' reads text. (In the
			// query the pair holding ';' is dropped: sentQuery.)
			return p, nil, "application/x-www-form-urlencoded", "text=hi;token=" + placesPH
		}},
	{name: "form token in JSON", where: "form", allowedBy: []string{"form"}, ambiguous: true,
		build: func(p string) (string, http.Header, string, string) {
			// A server that parses JSON whatever the type reads text.
			return p, nil, "application/x-www-form-urlencoded", `{"text":"a&token=` + placesPH + `"}`
		}},
	{name: "form token", where: "form", allowedBy: []string{"form", "form:token"},
		build: func(p string) (string, http.Header, string, string) {
			return p, nil, "application/x-www-form-urlencoded", "channel=C1&token=" + placesPH
		}},
	{name: "form text", where: "form", allowedBy: []string{"form"},
		build: func(p string) (string, http.Header, string, string) {
			return p, nil, "application/x-www-form-urlencoded", "token=x&text=see+" + placesPH
		}},
	{name: "form token streamed", where: "form", allowedBy: []string{"form"}, streamed: true,
		build: func(p string) (string, http.Header, string, string) {
			return p, nil, "application/x-www-form-urlencoded", "pad=" + strings.Repeat("p", 80<<10) + "&token=" + placesPH
		}},
	{name: "json /auth/key", where: "json", allowedBy: []string{"json", "json:/auth/key"},
		build: func(p string) (string, http.Header, string, string) {
			return p, nil, "application/json", `{"n":1,"auth":{"key":"` + placesPH + `"}}`
		}},
	{name: "json webhook url", where: "json", allowedBy: []string{"json"},
		build: func(p string) (string, http.Header, string, string) {
			return p, nil, "application/json", `{"auth":{"key":"x"},"url":"https://attacker.example/?k=` + placesPH + `"}`
		}},
	{name: "json key name", where: "json", allowedBy: []string{"json"},
		build: func(p string) (string, http.Header, string, string) {
			return p, nil, "application/json", `{"auth":{"` + placesPH + `":"key"}}`
		}},
	{name: "json /auth/key streamed", where: "json", allowedBy: []string{"json"}, streamed: true,
		build: func(p string) (string, http.Header, string, string) {
			return p, nil, "application/json", `{"pad":"` + strings.Repeat("p", 80<<10) + `","auth":{"key":"` + placesPH + `"}}`
		}},
	{name: "websocket frame", where: "websocket", allowedBy: []string{"websocket"}, ws: true},
}

// allows is the test's own reading of substitute_in: a rule allows a
// position when one of its places (or the default ones) allows it.
func (p placesPosition) allowedIn(places []string) bool {
	if places == nil {
		places = []string{"header", "basic", "path", "query"}
	}
	for _, pl := range places {
		if slices.ContainsFunc(p.allowedBy, func(a string) bool { return strings.EqualFold(a, pl) }) {
			return true
		}
	}
	return false
}

// placesReceived records what the origin's routes of the test received
// (bodies and WebSocket text frames), by path.
type placesReceived struct {
	mu  sync.Mutex
	got map[string][]string
}

func (r *placesReceived) add(path, s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[path] = append(r.got[path], s)
}

func (r *placesReceived) of(path string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got[path]...)
}

// TestPlaceholderPlaces: the rule's substitute_in says where its
// placeholder may be replaced. For every position an agent can put it
// (each header, Basic, path, query parameter, form field, JSON member,
// streamed bodies, a WebSocket frame) under every rule, over HTTP/1.1
// and HTTP/2: where the rule allows it, the upstream gets the value
// there; anywhere else the request is refused 403 placeholder_misuse
// before anything is sent (a WebSocket is ended before the frame
// passes), the upstream never sees the value, and the refusal is audited
// (tripwire, tripwire_where, tripwire_misplaced) and counted
// (credgate_placeholder_misuse_total by where).
func TestPlaceholderPlaces(t *testing.T) {
	t.Setenv("CREDGATE_GATEWAY_TEST_PLACES", placesValue)
	pki := newTestPKI(t, apiHost)
	o := startOrigin(t, pki)
	rec := &placesReceived{got: map[string][]string{}}
	tg := newTestGateway(t, pki, o)
	writeFile(t, tg.dir, "policy.yaml", []byte(placesPolicy(false)))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", o.addr))
	t.Cleanup(func() {
		if strings.Contains(tg.audit.String(), placesValue) || strings.Contains(tg.logs.String(), placesValue) {
			t.Errorf("the secret appears in the audit or log output")
		}
	})

	misuse := map[string]int{} // refusals by where
	type refused struct{ path, where string }
	var refusals []refused
	n := 0
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		c := tg.client(t, proto == "HTTP/2")
		for _, rule := range placesRules {
			for _, pos := range placesPositions {
				if pos.ws && proto == "HTTP/2" {
					continue // WebSockets are opened over HTTP/1.1
				}
				n++
				allowed := pos.allowedIn(rule.places)
				path := fmt.Sprintf("/%s/c%d", rule.name, n)
				t.Run(fmt.Sprintf("%s/%s/%s", proto, rule.name, pos.name), func(t *testing.T) {
					var sent bool
					if pos.ws {
						sent = placesWebSocket(t, c, o, rec, path, allowed)
					} else {
						sent = placesRequest(t, c, o, rec, pos, path, allowed)
					}
					if !allowed {
						misuse[pos.where]++
						refusals = append(refusals, refused{path, pos.where})
					}
					if sent != allowed {
						t.Errorf("substitute_in %q: the upstream received the value: %v, want %v", rule.places, sent, allowed)
					}
				})
			}
		}
	}
	poll.Until(t, 10*time.Second, "an audit line for each refusal", func() error {
		a := tg.audit.String()
		for _, r := range refusals {
			if !slices.ContainsFunc(strings.Split(a, "\n"), func(l string) bool {
				return strings.Contains(l, `"path":"`+r.path) && strings.Contains(l, `"code":"placeholder_misuse"`) &&
					strings.Contains(l, `"tripwire":"ph","tripwire_where":"`+r.where+`"`) && strings.Contains(l, `"tripwire_misplaced":true`)
			}) {
				return fmt.Errorf("no placeholder_misuse audit line for %s in %s", r.path, r.where)
			}
		}
		return nil
	})
	for where, want := range misuse {
		if m := metric(t, tg, fmt.Sprintf(`credgate_placeholder_misuse_total{quarantine="false",where=%q}`, where)); !strings.HasSuffix(m, fmt.Sprintf(" %d", want)) {
			t.Errorf("metric %q, want %d", m, want)
		}
	}
}

// placesSend has o record the bodies sent to target's path in rec, and
// sends the request — a GET with header h, or a POST of body as ctype
// when there is one — to host and target. It returns the answer, its
// text, the request's URL and how many requests the origin had seen
// before it.
func placesSend(t *testing.T, c *http.Client, o *testOrigin, rec *placesReceived, host, target string, h http.Header, ctype, body string) (*http.Response, string, *url.URL, int) {
	t.Helper()
	u, err := url.Parse("https://" + host + target)
	if err != nil {
		t.Fatal(err)
	}
	o.route(u.Path, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.add(u.Path, string(b))
	})
	before := len(o.all())
	var rd io.Reader
	method := "GET"
	if body != "" {
		method, rd = "POST", strings.NewReader(body)
		h = http.Header{"Content-Type": {ctype}}
	}
	resp, text := do(t, c, method, u.String(), h, rd)
	return resp, text, u, before
}

// seenFields is what the origin received of s outside its body: the
// request target and every header value, a Basic value decoded too.
func seenFields(s seen) []string {
	fields := []string{s.URI}
	for _, vs := range s.Header {
		for _, v := range vs {
			fields = append(fields, v)
			if dec, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(v, "Basic ")); err == nil {
				fields = append(fields, string(dec))
			}
		}
	}
	return fields
}

// placesRequest sends the request of pos to path and reports whether the
// upstream received the value (and checks the answer: 200, or 403
// placeholder_misuse with nothing sent).
func placesRequest(t *testing.T, c *http.Client, o *testOrigin, rec *placesReceived, pos placesPosition, path string, allowed bool) bool {
	t.Helper()
	target, h, ctype, body := pos.build(path)
	resp, text, u, before := placesSend(t, c, o, rec, apiHost, target, h, ctype, body)
	// This case's requests only: the head of an earlier case's streamed
	// body, cut off, may reach the origin after that case ended.
	var got []seen
	for _, s := range o.all()[before:] {
		if strings.HasPrefix(s.Path, path+"/") || s.Path == path {
			got = append(got, s)
		}
	}
	if allowed {
		if resp.StatusCode != 200 || len(got) != 1 {
			t.Fatalf("status %d %s %q, origin saw %d requests; want it forwarded", resp.StatusCode, resp.Header.Get(ReasonHeader), text, len(got))
		}
	} else {
		if resp.StatusCode != 403 || resp.Header.Get(ReasonHeader) != codePlaceholderMisuse {
			t.Errorf("status %d %s %q, want 403 %s", resp.StatusCode, resp.Header.Get(ReasonHeader), text, codePlaceholderMisuse)
		}
		if says := strings.Contains(text, "servers read as different fields"); says != (pos.ambiguous && strings.HasPrefix(path, "/r-fields/")) {
			t.Errorf("refusal %q: naming the parser differential %v, want %v", text, says, !says)
		}
		if len(got) != 0 && !pos.streamed {
			t.Errorf("the refused request reached the origin: %s", got[0].URI)
		}
	}
	sent := false
	for _, s := range got {
		fields := seenFields(s)
		for _, f := range fields {
			sent = sent || strings.Contains(f, placesValue)
			if strings.Contains(f, placesPH) {
				t.Errorf("the upstream received the placeholder: %q", f)
			}
		}
	}
	for _, b := range rec.of(u.Path) {
		sent = sent || strings.Contains(b, placesValue)
	}
	return sent
}

// placesRecordFrames routes path on o to a WebSocket that records each
// frame it receives in rec and answers it "ack".
func placesRecordFrames(o *testOrigin, rec *placesReceived, path string) {
	o.route(path, func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		for {
			_, msg, err := ws.Read(r.Context())
			if err != nil {
				return
			}
			rec.add(path, string(msg))
			if err := ws.Write(r.Context(), websocket.MessageText, []byte("ack")); err != nil {
				return
			}
		}
	})
}

// placesWebSocket opens a WebSocket at path, sends a text frame with the
// placeholder and reports whether the upstream received the value; a
// frame the rule does not allow ends the connection before it passes.
func placesWebSocket(t *testing.T, c *http.Client, o *testOrigin, rec *placesReceived, path string, allowed bool) bool {
	t.Helper()
	placesRecordFrames(o, rec, path)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://"+apiHost+path, &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"op":2,"d":{"token":"`+placesPH+`"}}`)); err != nil {
		t.Fatal(err)
	}
	_, ack, err := ws.Read(ctx)
	switch {
	case allowed && (err != nil || string(ack) != "ack"):
		t.Errorf("read ack: %q %v", ack, err)
	case !allowed && err == nil:
		t.Errorf("the WebSocket stayed open after a frame outside substitute_in (read %q)", ack)
	}
	ws.Close(websocket.StatusNormalClosure, "")
	sent := false
	for _, f := range rec.of(path) {
		sent = sent || strings.Contains(f, placesValue)
		if strings.Contains(f, placesPH) {
			t.Errorf("the upstream received the placeholder: %q", f)
		}
	}
	return sent
}
