package gateway

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"

	"github.com/coder/websocket"
)

// custodyPlacesValue is the session value the login of
// TestCustodyPlaces issues: characters no position re-spells, so that
// the test finds it wherever it went.
const custodyPlacesValue = "sess_places_0123456789VALUE"

// otherHost is a second destination of TestCustodyPlaces.
const otherHost = "other.origin.test"

const custodyPlacesPolicy = `
workloads:
  local: {cidrs: [127.0.0.1/32]}
destinations:
  api: {hosts: [api.origin.test], allow_private: true}
  other: {hosts: [other.origin.test], allow_private: true}
credentials:
  token: {provider: static, env: CREDGATE_GATEWAY_TEST_TOKEN}
rules:
  - {name: login, from: local, to: api, paths: [/login], inject: {credential: token, as: header, name: X-Service-Key}, custody: {cookies: [sid], headers: [X-Api-Key]}}
  - {name: api, from: local, to: api, inject: {credential: token, as: header, name: X-Service-Key}}
  - {name: other, from: local, to: other, inject: {credential: token, as: header, name: X-Service-Key}}
default: deny
`

// TestCustodyPlaces pins where a custody placeholder is put back, over
// every position TestPlaceholderPlaces puts a placeholder in (three
// headers, Basic, path, query parameter and name, form field, JSON
// member and key, streamed form and JSON bodies, a WebSocket frame),
// HTTP/1.1 and HTTP/2, at its own destination and at another
// (docs/agents.md, "Custody places"): at its own destination the value
// is put back in the Authorization and Cookie header values and in the
// headers the custody block names (X-Api-Key here), nowhere else; at
// another destination an Authorization carrying it does not resolve (403
// custody_unknown). Every other position, at either destination, is a
// tripwire like a misplaced placeholder: 403 placeholder_misuse before
// anything is sent (a WebSocket ended before the frame passes), audited
// with "tripwire":"custody" and its position. The upstream never gets
// the placeholder, and gets the value only where it is put back.
func TestCustodyPlaces(t *testing.T) {
	pki := newTestPKI(t, apiHost, otherHost)
	o := startOrigin(t, pki)
	tg := newTestGateway(t, pki, o)
	writeFile(t, tg.dir, "policy.yaml", []byte(custodyPlacesPolicy))
	tg.run(t, fmt.Sprintf("resolve: {%q: %q, %q: %q}\n", apiHost+":443", o.addr, otherHost+":443", o.addr))
	t.Cleanup(func() {
		if strings.Contains(tg.audit.String(), custodyPlacesValue) || strings.Contains(tg.logs.String(), custodyPlacesValue) {
			t.Errorf("the kept value appears in the audit or log output")
		}
	})
	o.route("/login", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: custodyPlacesValue, Path: "/"})
	})
	rec := &placesReceived{got: map[string][]string{}}

	type refused struct{ path, where string }
	var refusals []refused
	n := 0
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		c := tg.client(t, proto == "HTTP/2")
		resp, _ := do(t, c, "POST", "https://"+apiHost+"/login", nil, nil)
		var ph string
		for _, ck := range resp.Cookies() {
			if ck.Name == "sid" {
				ph = ck.Value
			}
		}
		if !strings.HasPrefix(ph, CustodyPrefix) {
			t.Fatalf("the login's sid cookie is %q, want a custody placeholder", ph)
		}
		for _, host := range []string{apiHost, otherHost} {
			for _, pos := range placesPositions {
				if pos.ws && proto == "HTTP/2" {
					continue // WebSockets are opened over HTTP/1.1
				}
				n++
				path := fmt.Sprintf("/c%d", n)
				// Where the value goes back: Authorization (Bearer) by
				// default, X-Api-Key by the custody block's headers:.
				putBack := pos.name == "header X-Api-Key" || pos.name == "header Authorization Bearer"
				wantValue := putBack && host == apiHost
				wantCode := codePlaceholderMisuse
				switch {
				case wantValue:
					wantCode = ""
				case pos.name == "header Authorization Bearer":
					wantCode = codeCustodyUnknown // a default place, at a destination that issued nothing
				}
				t.Run(fmt.Sprintf("%s/%s/%s", proto, host, pos.name), func(t *testing.T) {
					var fields []string
					if pos.ws {
						fields = custodyPlacesWebSocket(t, c, o, rec, host, path, ph)
					} else {
						var status int
						var code string
						status, code, fields = custodyPlacesRequest(t, c, o, rec, pos, host, path, ph)
						switch {
						case wantCode == "" && status != http.StatusOK:
							t.Fatalf("status %d %s, want 200", status, code)
						case wantCode != "" && (status != http.StatusForbidden || code != wantCode):
							t.Errorf("status %d %s, want 403 %s", status, code, wantCode)
						case wantCode != "" && len(fields) != 0 && !pos.streamed:
							t.Errorf("the refused request reached the origin: %q", fields)
						}
					}
					if wantCode == codePlaceholderMisuse {
						refusals = append(refusals, refused{path, pos.where})
					}
					var value, literal bool
					for _, f := range fields {
						value = value || strings.Contains(f, custodyPlacesValue)
						literal = literal || strings.Contains(f, ph)
					}
					if value != wantValue || literal {
						t.Errorf("the upstream received the value: %v, the placeholder: %v; want the value %v, the placeholder never", value, literal, wantValue)
					}
				})
			}
		}
	}
	poll.Until(t, 10*time.Second, "an audit line for each refusal", func() error {
		lines := strings.Split(tg.audit.String(), "\n")
		for _, r := range refusals {
			if !slices.ContainsFunc(lines, func(l string) bool {
				return strings.Contains(l, `"path":"`+r.path) && strings.Contains(l, `"code":"placeholder_misuse"`) &&
					strings.Contains(l, `"tripwire":"custody","tripwire_where":"`+r.where+`"`)
			}) {
				return fmt.Errorf("no placeholder_misuse audit line for %s in %s", r.path, r.where)
			}
		}
		return nil
	})
}

// custodyPlacesRequest sends the request of pos, with placeholder ph in
// place of placesPH, to host and path, and returns the answer's status
// and reason code and what the origin received of it: the request
// target, the header values (Basic decoded too) and the body.
func custodyPlacesRequest(t *testing.T, c *http.Client, o *testOrigin, rec *placesReceived, pos placesPosition, host, path, ph string) (int, string, []string) {
	t.Helper()
	target, h, ctype, body := pos.build(path)
	target, body = strings.ReplaceAll(target, placesPH, ph), strings.ReplaceAll(body, placesPH, ph)
	for k, vs := range h {
		for i := range vs {
			vs[i] = strings.ReplaceAll(vs[i], placesPH, ph)
			if b, ok := strings.CutPrefix(vs[i], "Basic "); ok {
				dec, _ := base64.StdEncoding.DecodeString(b)
				vs[i] = "Basic " + base64.StdEncoding.EncodeToString([]byte(strings.ReplaceAll(string(dec), placesPH, ph)))
			}
		}
		h[k] = vs
	}
	resp, _, u, before := placesSend(t, c, o, rec, host, target, h, ctype, body)
	var fields []string
	for _, s := range o.all()[before:] {
		if s.Path != u.Path {
			continue
		}
		fields = append(fields, seenFields(s)...)
	}
	fields = append(fields, rec.of(u.Path)...)
	return resp.StatusCode, resp.Header.Get(ReasonHeader), fields
}

// custodyPlacesWebSocket opens a WebSocket to host and path, sends a
// text frame carrying ph, checks that the connection is ended before the
// frame passes, and returns the frames the origin received.
func custodyPlacesWebSocket(t *testing.T, c *http.Client, o *testOrigin, rec *placesReceived, host, path, ph string) []string {
	t.Helper()
	placesRecordFrames(o, rec, path)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://"+host+path, &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"op":2,"d":{"session":"`+ph+`"}}`)); err != nil {
		t.Fatal(err)
	}
	if _, ack, err := ws.Read(ctx); err == nil {
		t.Errorf("the WebSocket stayed open after a frame carrying a custody placeholder (read %q)", ack)
	}
	ws.Close(websocket.StatusNormalClosure, "")
	return rec.of(path)
}
