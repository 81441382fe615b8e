package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/freeport"
)

// TestGRPCMediaType: which Content-Types make a request a gRPC call whose
// refusal is answered the gRPC way, and the media type the answer carries.
func TestGRPCMediaType(t *testing.T) {
	for ct, want := range map[string]string{
		"application/grpc":                     "application/grpc",
		"application/grpc+proto":               "application/grpc+proto",
		"Application/GRPC+JSON":                "application/grpc+json",
		"application/grpc; charset=utf-8":      "application/grpc",
		"application/grpc-web":                 "application/grpc-web",
		"application/grpc-web+proto":           "application/grpc-web+proto",
		"application/grpc-web-text":            "application/grpc-web-text",
		"application/grpc-web-text+proto":      "application/grpc-web-text+proto",
		"application/grpcx":                    "",
		"application/grpc-webx":                "",
		"application/json":                     "",
		"":                                     "",
		"application/grpc; =bad":               "",
		"text/plain; note=application/grpc":    "",
		"application/grpc-web-textual+nothing": "",
	} {
		r := httptest.NewRequest(http.MethodPost, "https://api.origin.test/pkg.Svc/M", nil)
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		got, ok := grpcMediaType(r)
		if got != want || ok != (want != "") {
			t.Errorf("grpcMediaType(%q) = %q, %v; want %q", ct, got, ok, want)
		}
	}
}

// TestGRPCCodeForEveryRefusalStatus: every HTTP status the gateway
// refuses with (each newRefusal(http.StatusX...) in its source, and
// batch's and the HTTP/1.1 server's) maps to a gRPC status other than
// UNKNOWN, so a new refusal status cannot reach gRPC clients unmapped.
func TestGRPCCodeForEveryRefusalStatus(t *testing.T) {
	statuses := map[string]int{
		"StatusBadRequest": 400, "StatusForbidden": 403, "StatusRequestTimeout": 408,
		"StatusRequestEntityTooLarge": 413, "StatusMisdirectedRequest": 421, "StatusTooManyRequests": 429,
		"StatusBadGateway": 502, "StatusServiceUnavailable": 503, "StatusGatewayTimeout": 504,
		"StatusExpectationFailed": 417, "StatusRequestHeaderFieldsTooLarge": 431,
		"StatusInternalServerError": 500, "StatusUnauthorized": 401, "StatusProxyAuthRequired": 407,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`newRefusal\(http\.(Status[A-Za-z]+)`)
	seen := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range used.FindAllStringSubmatch(string(src), -1) {
			seen++
			if _, ok := statuses[m[1]]; !ok {
				t.Errorf("%s: newRefusal(http.%s): add the status to this test and to grpcCode", f, m[1])
			}
		}
	}
	if seen < 50 {
		t.Fatalf("found %d newRefusal calls with a status; the pattern no longer matches the source", seen)
	}
	for name, st := range statuses {
		if c := grpcCode(st); c == grpcUnknown {
			t.Errorf("%s (%d) maps to UNKNOWN", name, st)
		}
	}
	// The statuses beside http.StatusX: 499, and the HTTP/1.1 server's
	// 505 (malformed_request, never a gRPC answer: the request did not
	// parse) is left UNKNOWN.
	if c := grpcCode(statusClientClosed); c != grpcCanceled {
		t.Errorf("499 maps to %d, want CANCELLED", c)
	}
}

// TestGRPCPercentEncode: grpc-message is percent-encoded as the gRPC
// protocol asks.
func TestGRPCPercentEncode(t *testing.T) {
	for in, want := range map[string]string{
		"plain words: \"quoted\" (ok)": "plain words: \"quoted\" (ok)",
		"100%":                         "100%25",
		"line\nbreak\ttab":             "line%0Abreak%09tab",
		"précis":                       "pr%C3%A9cis",
		"\x7f~":                        "%7F~",
	} {
		if got := grpcPercentEncode(in); got != want {
			t.Errorf("grpcPercentEncode(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestGRPCRefusalsAgreeWithJSON is the class "a gRPC call's refusal says
// what the same request's JSON refusal says, in gRPC's words": for
// refusals of the policy (deny rule, method, path, rate limit), of the
// request (Host, path spelling), of the upstream (unreachable) and of the
// response (a body the scrubber cannot read), each request is sent once
// as JSON and once as gRPC (HTTP/2, application/grpc+proto) or gRPC-Web
// (HTTP/1.1, application/grpc-web-text) through a real gateway. The gRPC
// one is answered 200 in the request's media type, grpc-status
// grpcCode(the JSON status), grpc-message "credgate CODE: REASON" with
// the JSON body's code and reason, no body, the same X-Credgate-Reason
// and Cache-Control; both leave an audit line with the same code and
// status.
func TestGRPCRefusalsAgreeWithJSON(t *testing.T) {
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(refusalPolicy))
	deadAddr := freeport.Addr(t)
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n  \"tunnel.origin.test:443\": %q\n  \"dead.origin.test:443\": %q\n",
		tg.origin.addr, tg.origin.addr, deadAddr))
	tg.origin.route("/v1/zstd", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "zstd")
		_, _ = w.Write([]byte("not really zstd"))
	})
	type req struct {
		name, method, url, host, code string
	}
	cases := []req{
		{"deny rule", http.MethodGet, "https://api.origin.test/v1/admin/x", "", "denied_by_rule"},
		{"method", http.MethodPost, "https://api.origin.test/v1/x", "", "method_not_allowed"},
		{"path", http.MethodGet, "https://api.origin.test/other/x", "", "path_not_allowed"},
		{"rate limit", http.MethodGet, "https://api.origin.test/limited/x", "", codeRateLimited},
		{"host", http.MethodGet, "https://api.origin.test/v1/x", tunnelHost, codeHostMismatch},
		{"path spelling", http.MethodGet, "https://api.origin.test/v1//x", "", codeBadPath},
		{"upstream", http.MethodGet, "https://dead.origin.test/v1/x", "", codeUpstreamUnreach},
		{"response", http.MethodGet, "https://api.origin.test/v1/zstd", "", "response_not_scrubbable"},
	}
	// The rate limit's one request passes first.
	if resp, err := tg.client(t, false).Get("https://api.origin.test/limited/first"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	waitFor(t, 10*time.Second, "the first request's audit line", func() bool { return len(auditLines(tg)) == 1 })
	do := func(t *testing.T, h2 bool, c req, ct string) (*http.Response, string) {
		t.Helper()
		r, err := http.NewRequest(c.method, c.url, strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		if c.host != "" {
			r.Host = c.host
		}
		r.Header.Set("Content-Type", ct)
		r.Header.Set("Te", "trailers")
		resp, err := tg.client(t, h2).Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	// auditAfter waits for the audit line of the request sent after
	// the n'th line was written.
	auditAfter := func(t *testing.T, n int) map[string]any {
		t.Helper()
		var line map[string]any
		waitFor(t, 10*time.Second, "the audit line", func() bool {
			if all := auditLines(tg); len(all) > n {
				line = all[n]
				return true
			}
			return false
		})
		return line
	}
	for _, h2 := range []bool{false, true} {
		ct := "application/grpc-web-text"
		if h2 {
			ct = "application/grpc+proto"
		}
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/h2=%v", c.name, h2), func(t *testing.T) {
				n := len(auditLines(tg))
				jr, jbody := do(t, h2, c, "application/json")
				ja := auditAfter(t, n)
				var want refusal
				if err := json.Unmarshal([]byte(jbody), &want); err != nil || want.Code != c.code || jr.Header.Get(ReasonHeader) != c.code {
					t.Fatalf("JSON: %s %q %s, want code %s", jr.Status, jr.Header.Get(ReasonHeader), jbody, c.code)
				}
				n = len(auditLines(tg))
				gr, gbody := do(t, h2, c, ct)
				ga := auditAfter(t, n)
				msg, err := url.PathUnescape(gr.Header.Get("Grpc-Message"))
				if err != nil {
					t.Errorf("grpc-message %q: %v", gr.Header.Get("Grpc-Message"), err)
				}
				checks := []struct{ what, got, want string }{
					{"status", strconv.Itoa(gr.StatusCode), "200"},
					{"content-type", gr.Header.Get("Content-Type"), ct},
					{"grpc-status", gr.Header.Get("Grpc-Status"), strconv.Itoa(int(grpcCode(jr.StatusCode)))},
					{"grpc-message", msg, "credgate " + want.Code + ": " + want.Reason},
					{"reason header", gr.Header.Get(ReasonHeader), c.code},
					{"cache-control", gr.Header.Get("Cache-Control"), "no-store"},
					{"retry-after", gr.Header.Get("Retry-After"), jr.Header.Get("Retry-After")},
					{"body", gbody, ""},
					{"audit code", fmt.Sprint(ga["code"]), fmt.Sprint(ja["code"])},
					{"audit status", fmt.Sprint(ga["status"]), fmt.Sprint(ja["status"])},
					{"audit decision", fmt.Sprint(ga["decision"]), fmt.Sprint(ja["decision"])},
					{"audit grpc_status", fmt.Sprint(ga["grpc_status"]), strconv.Itoa(int(grpcCode(jr.StatusCode)))},
					{"JSON audit grpc_status", fmt.Sprint(ja["grpc_status"]), "<nil>"},
				}
				for _, ch := range checks {
					if ch.got != ch.want {
						t.Errorf("%s: %q, want %q", ch.what, ch.got, ch.want)
					}
				}
				if fmt.Sprint(ja["status"]) != strconv.Itoa(jr.StatusCode) {
					t.Errorf("the JSON refusal's audit status %v, want %d", ja["status"], jr.StatusCode)
				}
			})
		}
	}
}

// TestKillSwitchEndsGRPCCall: a gRPC call over HTTP/2 whose response has
// begun, cut by the kill switch, ends with trailers naming the refusal
// (grpc-status UNAVAILABLE, grpc-message "credgate disabled_in_flight:
// ...", X-Credgate-Reason), which gRPC clients report as a status, and
// is audited disabled_in_flight with the status sent (200). Before, the
// stream was reset and grpc-go reported INTERNAL "stream terminated by
// RST_STREAM". Over HTTP/1.1 (no gRPC there) the response is cut as any.
func TestKillSwitchEndsGRPCCall(t *testing.T) {
	const token = "admin-token-0123456789abcdef"
	t.Setenv("CREDGATE_GATEWAY_TEST_ADMIN", token)
	tg := startSwitchGateway(t, "admin:\n  token_env: CREDGATE_GATEWAY_TEST_ADMIN\n")
	tg.origin.route("/grpc.Echo/Hold", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		_, _ = w.Write(grpcFrame("first"))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // until the gateway cancels
	})
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, "https://"+apiHost+"/grpc.Echo/Hold", strings.NewReader(string(grpcFrame("hi"))))
			req.Header.Set("Content-Type", "application/grpc")
			req.Header.Set("Te", "trailers")
			resp, err := tg.client(t, h2).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			first := make([]byte, len(grpcFrame("first")))
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				t.Fatalf("the first message: %v", err)
			}
			n := len(auditLines(tg))
			sw := `{"kind":"rule","name":"api","reason":"test"}`
			if st, _, body := adminCall(t, tg, "/admin/v1/disable", token, sw); st != 200 {
				t.Fatalf("disable: %d %v", st, body)
			}
			defer func() {
				if st, _, body := adminCall(t, tg, "/admin/v1/enable", token, sw); st != 200 {
					t.Errorf("enable: %d %v", st, body)
				}
			}()
			rest, err := io.ReadAll(resp.Body)
			if !h2 {
				if err == nil {
					t.Errorf("HTTP/1.1: the cut response ended cleanly (%q)", rest)
				}
			} else {
				msg, _ := url.PathUnescape(resp.Trailer.Get("Grpc-Message"))
				if err != nil || len(rest) != 0 || resp.Trailer.Get("Grpc-Status") != "14" ||
					!strings.HasPrefix(msg, "credgate disabled_in_flight: ") || resp.Trailer.Get(ReasonHeader) != codeDisabledInFlight {
					t.Errorf("HTTP/2: then %q (%v), trailers %v; want the end with grpc-status 14 and the refusal", rest, err, resp.Trailer)
				}
			}
			var line map[string]any
			waitFor(t, 10*time.Second, "the cut call's audit line", func() bool {
				for _, l := range auditLines(tg)[n:] {
					if l["path"] == "/grpc.Echo/Hold" {
						line = l
						return true
					}
				}
				return false
			})
			if line["code"] != codeDisabledInFlight || fmt.Sprint(line["status"]) != "200" {
				t.Errorf("audit line: code %v status %v, want %s 200", line["code"], line["status"], codeDisabledInFlight)
			}
			if g, ok := line["grpc_status"]; h2 && fmt.Sprint(g) != "14" || !h2 && ok {
				t.Errorf("audit line: grpc_status %v, want 14 over HTTP/2 (the trailers), none over HTTP/1.1 (cut)", g)
			}
		})
	}
}
