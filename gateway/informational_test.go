package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
)

// TestInformationalFlood: an upstream that answers with informational
// responses (103 Early Hints, 102 Processing, 100 Continue) without end,
// or with a few of huge fields (8 of 200 KiB), is cut once it sent more than max1xx of
// them or max1xxBytes of their fields (502 upstream_error, audited), for
// HTTP/1.1 and HTTP/2 clients through each upstream client; a few are
// relayed as before. Before, every one was relayed until
// upstream.response_header_timeout (60s by default).
func TestInformationalFlood(t *testing.T) {
	pki := newTestPKI(t, apiHost)
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	// What bounded a flood before, shortened for the test.
	tg.upstreamExtra = ", response_header_timeout: 10s"
	big := strings.Repeat("a", 200<<10)
	flood := func(code, n int, value string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			// The header map is set once and never changed after a 1xx:
			// net/http's HTTP/2 server encodes a 1xx frame from the
			// handler's own map, and when the gateway resets the stream
			// WriteHeader returns while that encoding still runs on
			// another goroutine. So the final response carries the Link
			// field too.
			w.Header().Set("Link", value)
			for i := 0; n < 0 || i < n; i++ {
				if r.Context().Err() != nil {
					return
				}
				w.WriteHeader(code)
			}
			_, _ = io.WriteString(w, "final")
		}
	}
	tg.origin.route("/flood/103", flood(http.StatusEarlyHints, -1, "</a.css>; rel=preload"))
	tg.origin.route("/flood/102", flood(http.StatusProcessing, -1, "x"))
	tg.origin.route("/flood/large", flood(http.StatusEarlyHints, 8, big))
	tg.origin.route("/flood/few", flood(http.StatusEarlyHints, 3, "</a.css>; rel=preload"))
	writeFile(t, tg.dir, "policy.yaml", []byte(bodyPolicy))
	tg.run(t, fmt.Sprintf("resolve: {\"api.origin.test:443\": %q}\n", tg.origin.addr))
	for _, h2 := range []bool{false, true} {
		for _, tt := range []struct {
			path   string
			status int
			code   string
		}{
			{"/flood/103", http.StatusBadGateway, codeUpstreamError},
			{"/flood/102", http.StatusBadGateway, codeUpstreamError},
			{"/flood/large", http.StatusBadGateway, codeUpstreamError},
			{"/flood/few", http.StatusOK, ""},
		} {
			// A body of unknown length too: net/http's Transport sends
			// it, the h1client the others.
			for _, chunked := range []bool{false, true} {
				name := fmt.Sprintf("%s/h2=%v/chunked=%v", tt.path, h2, chunked)
				t.Run(name, func(t *testing.T) {
					var got atomic.Int64
					ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{Got1xxResponse: func(int, textproto.MIMEHeader) error {
						got.Add(1)
						return nil
					}})
					path := fmt.Sprintf("%s?h2=%v&chunked=%v", tt.path, h2, chunked)
					var body io.Reader
					method := http.MethodGet
					if chunked {
						method, body = http.MethodPost, io.MultiReader(strings.NewReader("x")) // no length
					}
					req, _ := http.NewRequestWithContext(ctx, method, "https://"+apiHost+path, body)
					resp, err := tg.client(t, h2).Do(req)
					if err != nil {
						t.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != tt.status {
						t.Errorf("status %d after %d informational responses, want %d", resp.StatusCode, got.Load(), tt.status)
					}
					if n := got.Load(); n > max1xx {
						t.Errorf("the client got %d informational responses, want at most %d", n, max1xx)
					}
					wantAudited(t, tg, tt.path, tt.status, tt.code)
					tg.audit.Reset()
				})
			}
		}
	}
}

// sendInformational sends a 1xx response carrying fields, then takes
// them out of w's header map so the final response does not carry them.
// It reports whether the handler may go on; when it returns false the
// request is gone and the handler must return without touching w's
// header map again. net/http's HTTP/2 server encodes a 1xx from the
// handler's own map on another goroutine, and when the peer resets the
// stream (the gateway refusing the 1xx) WriteHeader returns while that
// encoding may still run: a change to the map then is a data race. The
// stream's context is cancelled before WriteHeader is released, so the
// check below sees every reset.
func sendInformational(w http.ResponseWriter, r *http.Request, code int, fields http.Header) bool {
	for k, v := range fields {
		w.Header()[k] = v
	}
	w.WriteHeader(code)
	if r.Context().Err() != nil {
		return false
	}
	for k := range fields {
		delete(w.Header(), k)
	}
	return true
}
