package gateway

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/credgate/credgate/internal/tracing"
)

// TestObservabilitySinksInert is a table over every output an operator
// reads — audit lines, log lines, spans, /metrics — against every field
// of a request a client chooses, each carrying each hostile value (CR
// LF with a forged audit line after it, a terminal escape, NUL, invalid
// UTF-8, U+2028, a bidirectional override, 8 KB), while the upstream
// echoes the injected credential: every audit and log line stays one
// JSON object on one line with no raw control character, line separator
// or invalid UTF-8, every span attribute is valid UTF-8 (an OTLP
// exporter drops a whole batch otherwise), no output holds a form or a
// piece of the credential, and /metrics holds no hostile value.
func TestObservabilitySinksInert(t *testing.T) {
	t.Setenv("CREDGATE_SCRUB_TEST_SECRET", scrubSecret)
	exp := tracetest.NewInMemoryExporter()
	pki := newTestPKI(t, apiHost)
	o := startOrigin(t, pki)
	o.route("/s/echo", scrubOrigin)
	tg := newTestGateway(t, pki, o)
	tg.tracer = tracing.NewWithExporter(tracing.Config{Enabled: true}, keptSpans{exp})
	writeFile(t, tg.dir, "policy.yaml", []byte(scrubPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", o.addr))

	hostile := map[string]string{
		"crlf-forged": "x\r\n{\"time\":\"t\",\"workload\":\"admin\",\"decision\":\"inject\"}\r\n",
		"ansi":        "x\x1b[2J\x1b[31mOK",
		"nul":         "x\x00y",
		"invalid":     "x\xff\xfey",
		"u2028":       "x\u2028y\u2029",
		"bidi":        "x\u202ey",
		"long":        strings.Repeat("L", 8<<10),
	}
	// Each field as it goes on the wire (raw bytes: Go's client refuses
	// to send most of them): the request line's target, a header value,
	// the trace context fields, Proxy-Authorization, Host, and the
	// CONNECT's own Proxy-Authorization.
	fields := map[string]func(v string) (connectAuth, req string){
		"path": func(v string) (string, string) {
			return "", "GET /s/echo/" + v + "?form=raw HTTP/1.1\r\nHost: " + apiHost + "\r\n"
		},
		"query": func(v string) (string, string) {
			return "", "GET /s/echo?form=raw&h=" + v + " HTTP/1.1\r\nHost: " + apiHost + "\r\n"
		},
		"header": func(v string) (string, string) {
			return "", "GET /s/echo?form=raw HTTP/1.1\r\nHost: " + apiHost + "\r\nX-Hostile: " + v + "\r\n"
		},
		"tracestate": func(v string) (string, string) {
			return "", "GET /s/echo?form=raw HTTP/1.1\r\nHost: " + apiHost + "\r\nTracestate: k=" + v + "\r\n"
		},
		"traceparent": func(v string) (string, string) {
			return "", "GET /s/echo?form=raw HTTP/1.1\r\nHost: " + apiHost + "\r\nTraceparent: 00-" + v + "\r\n"
		},
		"baggage": func(v string) (string, string) {
			return "", "GET /s/echo?form=raw HTTP/1.1\r\nHost: " + apiHost + "\r\nBaggage: k=" + v + "\r\n"
		},
		"proxy-auth": func(v string) (string, string) {
			return "", "GET /s/echo?form=raw HTTP/1.1\r\nHost: " + apiHost + "\r\nProxy-Authorization: " + v + " x\r\n"
		},
		"host": func(v string) (string, string) {
			return "", "GET /s/echo?form=raw HTTP/1.1\r\nHost: " + apiHost + v + "\r\n"
		},
		"method": func(v string) (string, string) {
			return "", "G" + v + " /s/echo?form=raw HTTP/1.1\r\nHost: " + apiHost + "\r\n"
		},
		"connect-auth": func(v string) (string, string) {
			return v, "GET /s/echo?form=raw HTTP/1.1\r\nHost: " + apiHost + "\r\n"
		},
	}
	sent := 0
	for fname, build := range fields {
		for vname, v := range hostile {
			connectAuth, req := build(v)
			conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			auth := ""
			if connectAuth != "" {
				auth = "Proxy-Authorization: Bearer " + connectAuth + "\r\n"
			}
			fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n%s\r\n", apiHost, apiHost, auth)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Logf("%s/%s: CONNECT: %v", fname, vname, err)
				conn.Close()
				continue
			}
			tc := tls.Client(conn, &tls.Config{ServerName: apiHost, RootCAs: tg.caPool, NextProtos: []string{"http/1.1"}})
			_, _ = io.WriteString(tc, req+"Traceparent: "+clientTraceparent+"\r\nConnection: close\r\n\r\n")
			if resp, err := http.ReadResponse(bufio.NewReader(tc), nil); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				sent++
			}
			conn.Close()
		}
	}
	if sent < len(fields)*len(hostile)/2 {
		t.Errorf("only %d of %d requests were answered", sent, len(fields)*len(hostile))
	}
	mresp, err := http.Get("http://" + tg.gw.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if err := tg.stop(); err != nil { // flushes the spans and the audit
		t.Fatal(err)
	}

	inert := func(sink, line string) {
		t.Helper()
		for i, r := range line {
			if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' || r == utf8.RuneError && !strings.HasPrefix(line[i:], "\uFFFD") {
				t.Errorf("%s line holds raw %U at %d: %.200q", sink, r, i, line)
				return
			}
		}
		if l := holdsSecret(line); len(l) > 0 {
			t.Errorf("%s line holds the credential as %v: %.300q", sink, l, line)
		}
	}
	lines := func(sink, s string) {
		t.Helper()
		sc := bufio.NewScanner(strings.NewReader(s))
		sc.Buffer(nil, 4<<20)
		n := 0
		for sc.Scan() {
			n++
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("%s line %d is not one JSON object: %v: %.200q", sink, n, err, sc.Text())
				continue
			}
			inert(sink, sc.Text())
			// Decoded, the line's strings hold no piece of the credential
			// either (an escaped '"' hides it from the search above).
			for k, v := range m {
				if s, ok := v.(string); ok {
					if l := holdsSecret(s); len(l) > 0 {
						t.Errorf("%s line %d field %s holds the credential as %v", sink, n, k, l)
					}
				}
			}
		}
		if n == 0 {
			t.Errorf("no %s line", sink)
		}
	}
	lines("audit", tg.audit.String())
	lines("log", tg.logs.String())

	spans := exp.GetSpans()
	if len(spans) == 0 {
		t.Error("no span recorded")
	}
	for _, s := range spans {
		for _, kv := range s.Attributes {
			if v := kv.Value.String(); !utf8.ValidString(v) || strings.ContainsAny(v, "\x00\r\n\x1b") {
				t.Errorf("span %s attribute %s = %.200q", s.Name, kv.Key, v)
			}
		}
		if !utf8.ValidString(s.Status.Description) {
			t.Errorf("span %s status %.200q", s.Name, s.Status.Description)
		}
	}
	dump, _ := json.Marshal(spans)
	if l := holdsSecret(string(dump)); len(l) > 0 {
		t.Errorf("a span holds the credential as %v", l)
	}
	if l := holdsSecret(string(metricsText)); len(l) > 0 {
		t.Errorf("/metrics holds the credential as %v", l)
	}
	for vname, v := range hostile {
		if len(v) > 4 && strings.Contains(string(metricsText), v[:4]) && vname != "long" {
			t.Errorf("/metrics holds hostile value %s", vname)
		}
	}
}
