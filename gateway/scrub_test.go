package gateway

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	dto "github.com/prometheus/client_model/go"

	"github.com/credgate/credgate/secret"
)

// scrubSecret has characters every encoding spells differently, so each
// form is a string of its own.
const scrubSecret = `sk_live/Ab+Cd=Ef&"Gh"<Ij>%Kl Mn?`

const scrubPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
credentials:
  echoed:
    provider: static
    env: CREDGATE_SCRUB_TEST_SECRET
rules:
  - name: raw
    from: local
    to: api
    paths: [/raw/*]
    inject: {credential: echoed, as: bearer}
    scrub: {enabled: false}
  - name: refuse
    from: local
    to: api
    paths: [/refuse/*]
    inject: {credential: echoed, as: bearer}
    scrub: {encoded: refuse}
  - name: identity
    from: local
    to: api
    paths: [/identity/*]
    inject: {credential: echoed, as: bearer}
    scrub: {encoded: identity}
  - name: api
    from: local
    to: api
    inject: {credential: echoed, as: bearer}
default: deny
`

// scrubForms are the spellings of scrubSecret an origin echoes.
func scrubForms() map[string]string {
	js, _ := json.Marshal(scrubSecret)
	return map[string]string{
		"raw":       scrubSecret,
		"base64":    base64.StdEncoding.EncodeToString([]byte(scrubSecret)),
		"base64url": base64.RawURLEncoding.EncodeToString([]byte(scrubSecret)),
		"query":     url.QueryEscape(scrubSecret),
		"path":      url.PathEscape(scrubSecret),
		"json":      string(js[1 : len(js)-1]),
		// A Basic header's payload, echoed: the secret's characters sit
		// inside a longer base64 string.
		"basic": base64.StdEncoding.EncodeToString([]byte("user:" + scrubSecret)),
	}
}

// leaks returns the forms of scrubSecret found in s (the basic form's
// part that depends on the secret alone is what must be gone).
func leaks(s string) []string {
	var out []string
	for name, f := range scrubForms() {
		if name == "basic" {
			f = f[8 : len(f)-4]
		}
		if strings.Contains(s, f) {
			out = append(out, name)
		}
	}
	return out
}

// scrubOrigin answers /…/echo?form=NAME&split=K&enc=gzip|br|zstd with
// the form in a header, in the body split across two writes (flushed
// apart) at byte K of the form, and in a trailer.
func scrubOrigin(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := scrubForms()[q.Get("form")]
	k, _ := strconv.Atoi(q.Get("split"))
	k = min(k, len(f))
	w.Header().Set("X-Echo", f)
	w.Header().Set("Trailer", "X-Echo-Trailer")
	body := []string{`{"you_sent":"` + f[:k], f[k:] + `","again":"` + f + `"}`}
	var out io.Writer = w
	var closer io.Closer
	switch q.Get("enc") {
	case "gzip":
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		out, closer = zw, zw
	case "br":
		w.Header().Set("Content-Encoding", "br")
		bw := brotli.NewWriter(w)
		out, closer = bw, bw
	case "br24":
		// A 16 MiB window: over the 4 MiB the gateway decodes.
		w.Header().Set("Content-Encoding", "br")
		bw := brotli.NewWriterOptions(w, brotli.WriterOptions{Quality: 5, LGWin: 24})
		out, closer = bw, bw
	case "zstd":
		w.Header().Set("Content-Encoding", "zstd")
	}
	for _, part := range body {
		_, _ = io.WriteString(out, part)
		if fl, ok := out.(interface{ Flush() error }); ok {
			_ = fl.Flush()
		}
		w.(http.Flusher).Flush()
	}
	if closer != nil {
		_ = closer.Close()
	}
	w.Header().Set("X-Echo-Trailer", f)
}

func startScrubGateway(t testing.TB) *testGateway {
	t.Helper()
	t.Setenv("CREDGATE_SCRUB_TEST_SECRET", scrubSecret)
	pki := newTestPKI(t, apiHost)
	o := startOrigin(t, pki)
	for _, p := range []string{"/s/echo", "/raw/echo", "/refuse/echo", "/identity/echo"} {
		o.route(p, scrubOrigin)
	}
	tg := newTestGateway(t, pki, o)
	writeFile(t, tg.dir, "policy.yaml", []byte(scrubPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", o.addr))
	t.Cleanup(func() {
		if l := leaks(tg.audit.String() + tg.logs.String()); len(l) > 0 {
			t.Errorf("the audit or log output holds the secret as %v", l)
		}
	})
	return tg
}

// getScrubbed fetches path and returns everything the client saw:
// status, headers, body and trailers.
func getScrubbed(t *testing.T, c *http.Client, path string) (int, string) {
	t.Helper()
	resp, err := c.Get("https://" + apiHost + path)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s: read body: %v", path, err)
	}
	var all bytes.Buffer
	_ = resp.Header.Write(&all)
	all.Write(body)
	_ = resp.Trailer.Write(&all)
	return resp.StatusCode, all.String()
}

// TestScrubEveryFormEverySplit: an origin echoes the injected secret in
// each of its forms — in a header, in the body split across two writes at
// every byte offset, and in a trailer; plain, gzip and br — and the
// client (HTTP/1.1 and HTTP/2) sees none of them, and the redaction marker
// in their place.
func TestScrubEveryFormEverySplit(t *testing.T) {
	tg := startScrubGateway(t)
	for _, h2 := range []bool{false, true} {
		c := tg.client(t, h2)
		for name, f := range scrubForms() {
			for _, enc := range []string{"", "gzip", "br"} {
				for k := 0; k <= len(f); k++ {
					if enc != "" && k%7 != 0 {
						continue // the encoder re-chunks anyway; a sample
					}
					path := fmt.Sprintf("/s/echo?form=%s&split=%d&enc=%s", name, k, enc)
					status, got := getScrubbed(t, c, path)
					if status != http.StatusOK {
						t.Fatalf("h2=%v %s: status %d: %s", h2, path, status, got)
					}
					if l := leaks(got); len(l) > 0 {
						t.Fatalf("h2=%v %s: the client saw the secret as %v:\n%s", h2, path, l, got)
					}
					if c := strings.Count(got, secret.Redacted); c < 4 {
						t.Fatalf("h2=%v %s: %d redaction markers, want 4 (header, body twice, trailer):\n%s", h2, path, c, got)
					}
				}
			}
		}
	}
	waitFor(t, 5*time.Second, "an audit line counting 4 scrubbed occurrences", func() bool {
		return strings.Contains(tg.audit.String(), `"scrubbed":4`)
	})
	var m dto.Metric
	if err := tg.gw.metrics.response.scrubbed.WithLabelValues("api").Write(&m); err != nil || m.GetCounter().GetValue() < 4 {
		n := m.GetCounter().GetValue()
		t.Errorf("credgate_response_scrubbed_total{rule=api} = %v, want the occurrences counted", n)
	}
	if n := tg.gw.scrubbers.len(); n != 1 {
		t.Errorf("%d cached scrubbers for one credential, want 1 (built once, not per request)", n)
	}
}

// TestScrubRandomChunking splits the echoed body at random points into
// many writes (a fixed seed: reproducible), for every form.
func TestScrubRandomChunking(t *testing.T) {
	tg := startScrubGateway(t)
	forms := scrubForms()
	tg.origin.route("/chunks", func(w http.ResponseWriter, r *http.Request) {
		seed, _ := strconv.ParseUint(r.URL.Query().Get("seed"), 10, 64)
		rng := rand.New(rand.NewPCG(seed, 1))
		var body strings.Builder
		for _, name := range []string{"raw", "base64", "base64url", "query", "path", "json", "basic"} {
			body.WriteString(strings.Repeat("x", rng.IntN(40)))
			body.WriteString(forms[name])
		}
		b := body.String()
		for len(b) > 0 {
			n := min(len(b), 1+rng.IntN(12))
			_, _ = io.WriteString(w, b[:n])
			w.(http.Flusher).Flush()
			b = b[n:]
		}
	})
	for _, h2 := range []bool{false, true} {
		c := tg.client(t, h2)
		for seed := range 40 {
			status, got := getScrubbed(t, c, fmt.Sprintf("/chunks?seed=%d", seed))
			if status != http.StatusOK || len(leaks(got)) > 0 || strings.Count(got, secret.Redacted) != 7 {
				t.Fatalf("h2=%v seed %d: status %d, leaks %v, %d markers (want 7):\n%s", h2, seed, status, leaks(got), strings.Count(got, secret.Redacted), got)
			}
		}
	}
}

// TestScrubSettings: the opt-out passes the echo through (the documented
// risk), encoded: refuse, an encoding the gateway cannot decode and a
// brotli body whose window is over transform.MaxBrotliWindowBits fail
// closed with 502, encoded: identity asks upstream for identity.
func TestScrubSettings(t *testing.T) {
	tg := startScrubGateway(t)
	c := tg.client(t, false)
	if status, got := getScrubbed(t, c, "/raw/echo?form=raw&split=3"); status != 200 || !strings.Contains(got, scrubSecret) {
		t.Errorf("scrub: {enabled: false}: status %d, want the echo unscrubbed:\n%s", status, got)
	}
	for _, path := range []string{"/refuse/echo?form=raw&enc=gzip", "/s/echo?form=raw&enc=zstd", "/s/echo?form=raw&enc=br24"} {
		status, got := getScrubbed(t, c, path)
		if status != http.StatusBadGateway || !strings.Contains(got, codeResponseNotScrubbable) || len(leaks(got)) > 0 {
			t.Errorf("%s: status %d, want 502 %s without the secret:\n%s", path, status, codeResponseNotScrubbable, got)
		}
	}
	if status, got := getScrubbed(t, c, "/identity/echo?form=json&split=5"); status != 200 || len(leaks(got)) > 0 {
		t.Errorf("encoded: identity: status %d, leaks %v", status, leaks(got))
	}
	var sawIdentity, sawDecode bool
	for _, s := range tg.origin.all() {
		switch {
		case strings.HasPrefix(s.Path, "/identity/") || strings.HasPrefix(s.Path, "/refuse/"):
			sawIdentity = s.Header.Get("Accept-Encoding") == "identity"
		case s.Path == "/s/echo":
			sawDecode = s.Header.Get("Accept-Encoding") == "gzip, deflate, br"
		}
	}
	if !sawIdentity || !sawDecode {
		t.Errorf("upstream Accept-Encoding: identity rules asked for identity %v, decode rules for gzip, deflate, br %v", sawIdentity, sawDecode)
	}
	head, err := http.NewRequest(http.MethodHead, "https://"+apiHost+"/s/echo?form=raw&enc=gzip", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Without Go's own gzip handling, which would hide the field.
	plainTr := c.Transport.(*http.Transport).Clone()
	plainTr.DisableCompression = true
	t.Cleanup(plainTr.CloseIdleConnections)
	if resp, err := (&http.Client{Transport: plainTr}).Do(head); err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("HEAD of a gzip answer: %v %v; want 200 without Content-Encoding, as the GET reaches the client", resp, err)
	} else {
		resp.Body.Close()
	}
	waitFor(t, 5*time.Second, "the refusal's audit line", func() bool {
		return strings.Contains(tg.audit.String(), `"code":"`+codeResponseNotScrubbable+`"`)
	})
}

// TestScrubbedStreamNotHeldBack: a server-sent event reaches the client
// while the origin pauses (an LLM streaming tokens, an MCP endpoint
// event): scrubbing holds back only what could begin the secret.
func TestScrubbedStreamNotHeldBack(t *testing.T) {
	tg := startScrubGateway(t)
	ack := make(chan struct{})
	tg.origin.route("/s/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: endpoint\ndata: /messages?session=1\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-ack:
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "data: %s\n\n", scrubSecret)
	})
	for _, h2 := range []bool{false, true} {
		resp, err := tg.client(t, h2).Get("https://" + apiHost + "/s/events")
		if err != nil {
			t.Fatal(err)
		}
		first := make(chan string, 1)
		br := bufio.NewReader(resp.Body)
		go func() {
			var ev strings.Builder
			for {
				line, err := br.ReadString('\n')
				ev.WriteString(line)
				if err != nil || line == "\n" {
					first <- ev.String()
					return
				}
			}
		}()
		select {
		case ev := <-first:
			if ev != "event: endpoint\ndata: /messages?session=1\n\n" {
				t.Fatalf("h2=%v: first event %q", h2, ev)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("h2=%v: the first event did not arrive while the origin paused: the scrubber held it back", h2)
		}
		ack <- struct{}{}
		rest, err := io.ReadAll(br)
		resp.Body.Close()
		if err != nil || len(leaks(string(rest))) > 0 || !strings.Contains(string(rest), secret.Redacted) {
			t.Fatalf("h2=%v: rest %q, %v; want the secret scrubbed", h2, rest, err)
		}
	}
}

// TestScrubInformational: an origin that echoes the injected secret in
// the fields of 1xx responses (102, 103 Early Hints, an unknown 199)
// before its final one: the client sees every 1xx with the secret
// redacted in each of its forms, over HTTP/1.1 and HTTP/2, for a request
// the gateway's own HTTP/1.1 client sends (no body) and one the fallback
// Transport sends (a body of unknown length), and the audit line counts
// the redactions (invariant 13).
func TestScrubInformational(t *testing.T) {
	tg := startScrubGateway(t)
	tg.origin.route("/s/hints", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		f := scrubForms()[r.URL.Query().Get("form")]
		for _, code := range []int{http.StatusProcessing, http.StatusEarlyHints, 199} {
			if !sendInformational(w, r, code, http.Header{"X-Echo": {f}, "Link": {"<https://cdn.test/" + f + ">; rel=preload"}}) {
				return
			}
		}
		fmt.Fprint(w, "final")
	})
	for name := range scrubForms() {
		for _, h2 := range []bool{false, true} {
			for _, body := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/h2=%v/body=%v", name, h2, body), func(t *testing.T) {
					var seen strings.Builder
					codes := 0
					trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
						codes++
						_ = http.Header(h).Write(&seen)
						return nil
					}}
					ctx := httptrace.WithClientTrace(t.Context(), trace)
					method, rd := http.MethodGet, io.Reader(nil)
					if body {
						method, rd = http.MethodPost, io.MultiReader(strings.NewReader("x")) // no length: chunked
					}
					req, _ := http.NewRequestWithContext(ctx, method, "https://"+apiHost+"/s/hints?form="+name, rd)
					resp, err := tg.client(t, h2).Do(req)
					if err != nil {
						t.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || codes != 3 {
						t.Fatalf("status %d after %d 1xx responses, want 200 after 3", resp.StatusCode, codes)
					}
					if l := leaks(seen.String()); len(l) > 0 {
						t.Fatalf("the 1xx fields hold the secret as %v:\n%s", l, seen.String())
					}
					if !strings.Contains(seen.String(), "[REDACTED]") {
						t.Errorf("no redaction marker in the 1xx fields:\n%s", seen.String())
					}
				})
			}
		}
	}
	// Each request's line counts its six redactions (two fields of three
	// 1xx responses).
	want := 4 * len(scrubForms())
	waitFor(t, 5*time.Second, fmt.Sprintf("%d audit lines counting 6 scrubbed occurrences", want), func() bool {
		return strings.Count(tg.audit.String(), `"scrubbed":6`) == want
	})
}

// TestScrubSecretInFieldName: an upstream that echoes the injected
// credential as a field name — of the final response, of a 103 and of a
// trailer, in the case it chose — reaches no client with it, in any
// case, over HTTP/1.1 and HTTP/2 (clients and upstreams, upstream.http2:
// match); the response's other fields pass. Go's clients canonicalise a
// name, so before the fields reached the client with the secret's case
// changed (transform TestScrubFieldNames is the class).
func TestScrubSecretInFieldName(t *testing.T) {
	tg := startEdgeGateway(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !sendInformational(w, r, http.StatusEarlyHints, http.Header{"X-Hint-" + tok: {"1"}, "Link": {"</style.css>; rel=preload"}}) {
			return
		}
		w.Header()[tok] = []string{"alone"}
		w.Header()["X-"+strings.ToUpper(tok)] = []string{"upper"}
		w.Header()[http.CanonicalHeaderKey(tok+"-suffix")] = []string{"canonical"}
		w.Header().Set("X-Fine", "kept")
		fmt.Fprint(w, "body")
		w.(http.Flusher).Flush() // chunked: trailers follow
		w.Header()[http.TrailerPrefix+"X-T-"+tok] = []string{"1"}
		w.Header()[http.TrailerPrefix+"X-Fine-Trailer"] = []string{"kept"}
	}), nil)
	lower := strings.ToLower(tg.token)
	for _, h2 := range []bool{false, true} {
		var names []string
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			for k := range h {
				names = append(names, fmt.Sprint(code, " ", k))
			}
			return nil
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, "https://"+apiHost+"/v1/names", nil)
		resp, err := tg.client(t, h2).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for k := range resp.Header {
			names = append(names, k)
		}
		for k := range resp.Trailer {
			names = append(names, "trailer "+k)
		}
		if resp.StatusCode != http.StatusOK || string(body) != "body" || resp.Header.Get("X-Fine") != "kept" || resp.Trailer.Get("X-Fine-Trailer") != "kept" {
			t.Fatalf("h2=%v: %s %q, X-Fine %q, trailer %q: want 200 with the other fields", h2, resp.Status, body, resp.Header.Get("X-Fine"), resp.Trailer.Get("X-Fine-Trailer"))
		}
		if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "103 ") }) {
			t.Errorf("h2=%v: no 103 reached the client: %q", h2, names)
		}
		for _, n := range names {
			if strings.Contains(strings.ToLower(n), lower) {
				t.Errorf("h2=%v: the client saw the credential in the field name %q", h2, strings.ReplaceAll(strings.ToLower(n), lower, "<credential>"))
			}
		}
	}
}

// TestRedirectEchoScrubbedNotFollowed: an upstream that answers with a
// redirect carrying the injected secret — in Location's query, in
// Set-Cookie, Refresh and Link, in each form — to another host: the
// gateway follows none of them (the origin sees one request, however
// the status — 301, 302, 303, 307, 308 — would have a follower resend the
// method, body and credential), and the client gets the redirect with
// every form of the secret redacted, over HTTP/1.1 and HTTP/2, GET and
// POST. None failed when written: a probe of invariants 2 and 13 kept as
// a test.
func TestRedirectEchoScrubbedNotFollowed(t *testing.T) {
	tg := startScrubGateway(t)
	tg.origin.route("/s/redirect", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		q := r.URL.Query()
		f := scrubForms()[q.Get("form")]
		status, _ := strconv.Atoi(q.Get("status"))
		h := w.Header()
		h.Set("Location", "https://elsewhere.test/callback?token="+f)
		h.Add("Set-Cookie", "session="+f+"; Path=/; Secure")
		h.Set("Refresh", "0; url=https://elsewhere.test/?t="+f)
		h.Set("Link", "<https://elsewhere.test/"+f+">; rel=next")
		w.WriteHeader(status)
	})
	for _, h2 := range []bool{false, true} {
		c := tg.client(t, h2) // follows no redirect
		for name := range scrubForms() {
			for _, status := range []int{301, 302, 303, 307, 308} {
				for _, method := range []string{http.MethodGet, http.MethodPost} {
					path := fmt.Sprintf("/s/redirect?form=%s&status=%d", name, status)
					before := len(tg.origin.all())
					req, _ := http.NewRequest(method, "https://"+apiHost+path, strings.NewReader("body"))
					resp, err := c.Do(req)
					if err != nil {
						t.Fatalf("h2=%v %s %s: %v", h2, method, path, err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					var all bytes.Buffer
					_ = resp.Header.Write(&all)
					if resp.StatusCode != status || len(leaks(all.String())) > 0 || strings.Count(all.String(), secret.Redacted) != 4 {
						t.Errorf("h2=%v %s %s: status %d, leaks %v, %d markers (want %d, 0, 4):\n%s", h2, method, path, resp.StatusCode, leaks(all.String()), strings.Count(all.String(), secret.Redacted), status, all.String())
					}
					if n := len(tg.origin.all()) - before; n != 1 {
						t.Errorf("h2=%v %s %s: the origin saw %d requests, want 1 (no redirect followed)", h2, method, path, n)
					}
				}
			}
		}
	}
}
