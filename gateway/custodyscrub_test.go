package gateway

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/secret"
)

// custodyValue is the session value the test origin issues: characters
// every encoding spells differently, all of them legal in a cookie, a
// header and a JSON string.
const custodyValue = `S3ss/Ab+Cd=Ef&<Ij>%Kl?Mn`

const custodyScrubPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
credentials:
  login:
    provider: static
    env: CREDGATE_CUSTODY_TEST_SECRET
rules:
  - name: login
    from: local
    to: api
    paths: [/login/*]
    inject: {credential: login, as: bearer}
    custody: {json: [$.token], cookies: [sid]}
  - name: login-unscrubbed
    from: local
    to: api
    paths: [/loginraw/*]
    inject: {credential: login, as: bearer}
    scrub: {enabled: false}
    custody: {json: [$.token], cookies: [sid]}
  - name: api
    from: local
    to: api
    inject: {credential: login, as: bearer}
default: deny
`

// custodyForm is one spelling of custodyValue an origin echoes, and the
// part of it that depends on the value alone (what must not reach the
// client; the whole echo unless the value sits inside a longer base64
// string).
type custodyForm struct{ echo, core string }

// custodyForms are the spellings of custodyValue the scrubber knows
// (transform's forms), each echoed by the origin.
func custodyForms() map[string]custodyForm {
	v := custodyValue
	js, _ := json.Marshal(v)
	jsHTML := string(js[1 : len(js)-1])
	jsPlain := strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(jsHTML)
	lowerHex := regexp.MustCompile(`%[0-9A-F]{2}`).ReplaceAllStringFunc(url.QueryEscape(v), strings.ToLower)
	// inside returns the value base64-encoded after k other bytes and
	// before some more, and its characters that depend on it alone.
	inside := func(enc *base64.Encoding, k int) custodyForm {
		full := enc.EncodeToString([]byte(strings.Repeat("u", k) + v + "!tail"))
		lo, hi := (8*k+5)/6, (8*(k+len(v)))/6
		return custodyForm{full, full[lo:hi]}
	}
	same := func(s string) custodyForm { return custodyForm{s, s} }
	return map[string]custodyForm{
		"raw":           same(v),
		"base64":        same(base64.StdEncoding.EncodeToString([]byte(v))),
		"base64-raw":    same(base64.RawStdEncoding.EncodeToString([]byte(v))),
		"base64url":     same(base64.URLEncoding.EncodeToString([]byte(v))),
		"base64url-raw": same(base64.RawURLEncoding.EncodeToString([]byte(v))),
		"base64-at0":    inside(base64.StdEncoding, 0),
		"base64-at1":    inside(base64.StdEncoding, 1),
		"base64-at2":    inside(base64.StdEncoding, 2),
		"base64url-at1": inside(base64.URLEncoding, 1),
		"query":         same(url.QueryEscape(v)),
		"query-lower":   same(lowerHex),
		"path":          same(url.PathEscape(v)),
		"json":          same(jsHTML),
		"json-slash":    same(strings.ReplaceAll(jsHTML, "/", `\/`)),
		"json-nohtml":   same(strings.ReplaceAll(jsPlain, "/", `\/`)),
	}
}

// custodyLeaks returns the names of the forms of custodyValue found in s.
func custodyLeaks(s string) []string {
	var out []string
	for name, f := range custodyForms() {
		if strings.Contains(s, f.core) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// custodyOrigin issues custodyValue — in the JSON field token
// (src=json) or the cookie sid (src=cookie), or deletes the cookie sid
// of that value (src=deleted) — under /login/ and
// /loginraw/; under /api/ it requires it in the request's cookie sid —
// and echoes it in the form named by form at the place named by place:
// a header, a Location URL, another cookie, another JSON field, an HTML
// body, late in a streamed body, a 103 before the final response, or a
// trailer. Bodies are written in parts flushed apart (the echo split
// between them), gzip-encoded when enc=gzip.
func custodyOrigin(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := custodyForms()[q.Get("form")].echo
	later := strings.HasPrefix(r.URL.Path, "/api/")
	var fields []string
	switch {
	case later:
		if c, err := r.Cookie("sid"); err != nil || c.Value != custodyValue {
			http.Error(w, "no session", http.StatusUnauthorized)
			return
		}
	case q.Get("src") == "json":
		fields = append(fields, `"token":"`+custodyValue+`"`)
	case q.Get("src") == "cookie":
		w.Header().Add("Set-Cookie", "sid="+custodyValue+"; Path=/; HttpOnly")
	case q.Get("src") == "deleted":
		w.Header().Add("Set-Cookie", "sid="+custodyValue+"; Path=/; Max-Age=0")
	}
	ctype, html := "application/json", false
	switch q.Get("place") {
	case "header":
		w.Header().Set("X-Session", f)
	case "location":
		w.Header().Set("Location", "https://"+apiHost+"/next?sid="+f)
	case "cookie2":
		w.Header().Add("Set-Cookie", "other="+f+"; Path=/")
	case "json":
		fields = append(fields, `"debug":{"echo":"`+f+`"}`)
	case "html":
		ctype, html = "text/html; charset=utf-8", true
	case "stream":
		if q.Get("src") == "json" {
			fields = append(fields, `"pad":"`+strings.Repeat("x", 40<<10)+`"`, `"echo":"`+f+`"`)
		} else {
			ctype = "text/plain"
		}
	case "informational":
		if !sendInformational(w, r, http.StatusEarlyHints, http.Header{"X-Echo": {f}, "Link": {"<https://cdn.test/" + f + ">; rel=preload"}}) {
			return
		}
	case "trailer":
		w.Header().Set("Trailer", "X-Echo-Trailer")
	}
	var parts []string
	switch {
	case html && q.Get("src") == "json":
		// JSON labelled HTML (content negotiation): searched all the same.
		fields = append(fields, `"html":"<a href=/x?s=`+f+`>`+f+`</a>"`)
		parts = []string{"{" + strings.Join(fields, ",") + "}"}
	case html:
		parts = []string{`<html><a href="/x?s=` + f + `">` + f + `</a></html>`}
	case ctype == "text/plain":
		parts = []string{"first\n", strings.Repeat("x", 40<<10), "\n" + f + "\nend\n"}
	default:
		parts = []string{"{" + strings.Join(fields, ",") + "}"}
	}
	// Split the echo between two writes.
	for i, p := range parts {
		if j := strings.Index(p, f); j >= 0 && f != "" {
			parts = append(parts[:i], append([]string{p[:j+len(f)/2], p[j+len(f)/2:]}, parts[i+1:]...)...)
			break
		}
	}
	w.Header().Set("Content-Type", ctype)
	var out io.Writer = w
	var zw *gzip.Writer
	if q.Get("enc") == "gzip" {
		w.Header().Set("Content-Encoding", "gzip")
		zw = gzip.NewWriter(w)
		out = zw
	}
	for _, p := range parts {
		_, _ = io.WriteString(out, p)
		if zw != nil {
			_ = zw.Flush()
		}
		w.(http.Flusher).Flush()
	}
	if zw != nil {
		_ = zw.Close()
	}
	if q.Get("place") == "trailer" {
		w.Header().Set("X-Echo-Trailer", f)
	}
}

func startCustodyScrubGateway(t *testing.T) *testGateway {
	t.Helper()
	t.Setenv("CREDGATE_CUSTODY_TEST_SECRET", "login-credential-0123456789")
	pki := newTestPKI(t, apiHost)
	o := startOrigin(t, pki)
	for _, p := range []string{"/login/echo", "/loginraw/echo", "/api/echo"} {
		o.route(p, custodyOrigin)
	}
	tg := newTestGateway(t, pki, o)
	writeFile(t, tg.dir, "policy.yaml", []byte(custodyScrubPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", o.addr))
	t.Cleanup(func() {
		if l := custodyLeaks(tg.audit.String() + tg.logs.String()); len(l) > 0 {
			t.Errorf("the audit or log output holds the custodied value as %v", l)
		}
	})
	return tg
}

// custodyExchange sends one request and returns its status and
// everything the client saw: the fields of each 1xx, the final headers,
// the body and the trailers.
func custodyExchange(t *testing.T, c *http.Client, path string, header http.Header) (int, string) {
	t.Helper()
	var all bytes.Buffer
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		fmt.Fprintf(&all, "%d\n", code)
		_ = http.Header(h).Write(&all)
		return nil
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, "https://"+apiHost+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s: read body: %v", path, err)
	}
	_ = resp.Header.Write(&all)
	all.Write(body)
	_ = resp.Trailer.Write(&all)
	return resp.StatusCode, all.String()
}

var (
	custodyPH        = regexp.MustCompile(CustodyPrefix + `[0-9a-f]{32}`)
	custodyJSONPH    = regexp.MustCompile(`"token":"` + CustodyPrefix + `[0-9a-f]{32}"`)
	custodyCookiePH  = regexp.MustCompile(`Set-Cookie: sid=(` + CustodyPrefix + `[0-9a-f]{32}); Path=/; HttpOnly\r\n`)
	custodyBodyPlace = map[string]bool{"json": true, "html": true, "stream": true}
)

// TestCustodyScrubsTheRestOfTheResponse: a value custody takes from a
// response (a JSON field, a cookie) is a secret the gateway holds, so
// the client never sees it anywhere else either. The origin issues the
// value and also echoes it — in each form the scrubber knows (raw,
// base64/base64url padded or not and inside a longer base64 string at
// each alignment, URL-encoded upper and lower case, JSON-escaped) — in
// another header, a Location URL, a second cookie, another JSON field,
// an HTML body, late in a streamed body, a 103 before the final
// response, and a trailer, plain and gzip (and beside a Set-Cookie that
// deletes the custodied cookie of that value); over HTTP/1.1 and HTTP/2;
// under a rule that scrubs and one with scrub: {enabled: false} (custody
// scrubs its own values regardless). Later requests that carry the
// placeholder get the same from their responses. In every case the
// client gets the placeholder intact and the value nowhere; neither do
// the audit and log output.
func TestCustodyScrubsTheRestOfTheResponse(t *testing.T) {
	tg := startCustodyScrubGateway(t)
	places := []string{"header", "location", "cookie2", "json", "html", "stream", "informational", "trailer"}
	total, leaked := 0, 0
	for _, h2 := range []bool{false, true} {
		c := tg.client(t, h2)
		// A session for the later requests.
		status, got := custodyExchange(t, c, "/login/echo?src=cookie", nil)
		m := custodyCookiePH.FindStringSubmatch(got)
		if status != http.StatusOK || m == nil {
			t.Fatalf("h2=%v login: status %d, no sid placeholder:\n%s", h2, status, got)
		}
		session := http.Header{"Cookie": {"sid=" + m[1]}}
		for _, src := range []string{"/login/echo?src=json", "/login/echo?src=cookie", "/loginraw/echo?src=json", "/loginraw/echo?src=cookie", "/login/echo?src=deleted", "/api/echo?src=later"} {
			for _, place := range places {
				for form := range custodyForms() {
					for _, enc := range []string{"", "gzip"} {
						if enc != "" && !custodyBodyPlace[place] {
							continue
						}
						path := fmt.Sprintf("%s&place=%s&form=%s&enc=%s", src, place, form, enc)
						var hdr http.Header
						if strings.HasPrefix(src, "/api/") {
							hdr = session
						}
						total++
						status, got := custodyExchange(t, c, path, hdr)
						if status != http.StatusOK {
							t.Errorf("h2=%v %s: status %d:\n%.2000s", h2, path, status, got)
							continue
						}
						if l := custodyLeaks(got); len(l) > 0 {
							leaked++
							t.Errorf("h2=%v %s: the client saw the custodied value as %v", h2, path, l)
							continue
						}
						switch {
						case strings.Contains(src, "src=json") && !custodyJSONPH.MatchString(got),
							strings.Contains(src, "src=cookie") && !custodyCookiePH.MatchString(got):
							t.Errorf("h2=%v %s: the placeholder did not reach the client intact:\n%.2000s", h2, path, got)
						}
						if place != "informational" || strings.HasPrefix(src, "/api/") {
							if !strings.Contains(got, secret.Redacted) {
								t.Errorf("h2=%v %s: no redaction marker where the echo was:\n%.2000s", h2, path, got)
							}
						}
					}
				}
			}
		}
	}
	if leaked > 0 {
		t.Errorf("%d of %d responses handed the client the custodied value", leaked, total)
	}
	// The placeholders the client got still resolve (were not scrubbed).
	c := tg.client(t, false)
	_, got := custodyExchange(t, c, "/login/echo?src=json&place=json&form=raw", nil)
	ph := custodyJSONPH.FindString(got)
	if ph == "" {
		t.Fatalf("no token placeholder in %s", got)
	}
	ph = custodyPH.FindString(ph)
	if status, got := custodyExchange(t, c, "/api/echo?place=header&form=base64", http.Header{"Cookie": {"sid=" + ph}}); status != http.StatusOK {
		t.Errorf("the JSON field's placeholder does not resolve: status %d:\n%.2000s", status, got)
	}
}

// TestCustodyScrubsUpgrade: a 101 of a custody rule sets the custodied
// cookie and repeats the value in a header and in its frames: the client
// gets the cookie's placeholder, and the value in neither the header nor
// the frames; the upgrade request reaches the upstream without
// Sec-WebSocket-Extensions (compressed frames could not be scrubbed). A
// 101 whose custodied cookie does not parse is refused (502
// custody_failed), as a final response would be.
func TestCustodyScrubsUpgrade(t *testing.T) {
	tg := startCustodyScrubGateway(t)
	for _, path := range []string{"/login/ws", "/loginraw/ws", "/login/wsbad"} {
		cookie := "sid=" + custodyValue + "; Path=/"
		if strings.HasSuffix(path, "bad") {
			cookie = `sid="a\054` + custodyValue + `"; Path=/`
		}
		tg.origin.route(path, func(w http.ResponseWriter, r *http.Request) {
			c, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			fmt.Fprintf(rw, "%sSet-Cookie: %s\r\nX-Session: %s\r\n\r\n", wsSwitch(r), cookie, custodyForms()["base64"].echo)
			rw.Write(wsFrame(true, 1, []byte(`{"hello":"`+custodyValue+`"}`)))
			rw.Write(wsFrame(true, 2, []byte(custodyForms()["query"].echo)))
			rw.Flush()
			_, _ = rw.ReadString('\n')
		})
	}
	for _, path := range []string{"/login/ws", "/loginraw/ws", "/login/wsbad"} {
		conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
		br := bufio.NewReader(conn)
		if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
		tc := tls.Client(conn, &tls.Config{ServerName: apiHost, RootCAs: tg.caPool, NextProtos: []string{"http/1.1"}})
		fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n", path, apiHost)
		tbr := bufio.NewReader(tc)
		resp, err := http.ReadResponse(tbr, nil)
		if strings.HasSuffix(path, "bad") {
			var all bytes.Buffer
			if err == nil {
				_ = resp.Write(&all)
			}
			if err != nil || resp.StatusCode != http.StatusBadGateway || !strings.Contains(all.String(), codeCustodyFailed) || len(custodyLeaks(all.String())) > 0 {
				t.Errorf("%s: %v, %v; want 502 %s without the value:\n%s", path, resp, err, codeCustodyFailed, all.String())
			}
			tc.Close()
			continue
		}
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("%s: upgrade: %v %v", path, resp, err)
		}
		var seen bytes.Buffer
		_ = resp.Header.Write(&seen)
		for range 2 {
			_, p, err := readWSFrame(tbr)
			if err != nil {
				t.Fatalf("%s: frame: %v", path, err)
			}
			seen.Write(p)
		}
		fmt.Fprint(tc, "bye\n")
		tc.Close()
		if l := custodyLeaks(seen.String()); len(l) > 0 {
			t.Errorf("%s: the client saw the custodied value as %v:\n%s", path, l, seen.String())
		}
		if !regexp.MustCompile(`Set-Cookie: sid=` + CustodyPrefix + `[0-9a-f]{32}; Path=/\r\n`).MatchString(seen.String()) {
			t.Errorf("%s: no sid placeholder in the 101:\n%s", path, seen.String())
		}
	}
	for _, s := range tg.origin.all() {
		if strings.HasSuffix(s.Path, "/ws") && s.Header.Get("Sec-Websocket-Extensions") != "" {
			t.Errorf("%s: the upgrade request reached the upstream with Sec-WebSocket-Extensions %q", s.Path, s.Header.Get("Sec-Websocket-Extensions"))
		}
	}
}
