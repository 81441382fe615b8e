package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestUpstreamResponseHeaderLimit is the class of "an upstream's response
// header block costs the gateway what upstream.max_response_header_bytes
// allows, no more": through each of the three upstream clients (the
// h1client for an HTTP/1.1 client's GET, net/http's HTTP/1.1 transport for
// a body of unknown length, the HTTP/2 transport for an HTTP/2 client), a
// block under the limit is relayed whole; one over it (one large field,
// many small ones, or a 103 Early Hints over it before the final response)
// is answered 502 upstream_error naming the setting, and audited so.
// Before the setting, every upstream client took 1 MiB, which parsing
// made 7 MiB live and 14 MiB allocated per response.
func TestUpstreamResponseHeaderLimit(t *testing.T) {
	pki := newTestPKI(t, apiHost)
	origin := startOrigin(t, pki)
	// The origin takes the whole request body before it answers: an
	// answer racing the body's write makes net/http's transport report
	// the write's "use of closed network connection", not the limit.
	drain := func(r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }
	large := func(n int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			drain(r)
			w.Header().Set("X-Large", strings.Repeat("a", n))
			_, _ = io.WriteString(w, "final")
		}
	}
	origin.route("/under", large(60<<10))
	origin.route("/over", large(70<<10))
	origin.route("/over-1m", large(1100<<10))
	origin.route("/many", func(w http.ResponseWriter, r *http.Request) {
		drain(r)
		for i := range 3000 {
			w.Header().Set(fmt.Sprintf("X-F%d", i), "0123456789abcdef")
		}
		_, _ = io.WriteString(w, "final")
	})
	origin.route("/hints", func(w http.ResponseWriter, r *http.Request) {
		drain(r)
		if !sendInformational(w, r, http.StatusEarlyHints, http.Header{"Link": {"</" + strings.Repeat("a", 70<<10) + ">; rel=preload"}}) {
			return
		}
		_, _ = io.WriteString(w, "final")
	})
	type want struct {
		path   string
		status int
	}
	for _, setting := range []struct {
		name  string
		extra string
		limit int
		cases []want
	}{
		{"default", "", DefaultMaxResponseHeaderBytes, []want{
			{"/under", http.StatusOK}, {"/over", http.StatusBadGateway},
			{"/many", http.StatusBadGateway}, {"/hints", http.StatusBadGateway},
		}},
		{"1MiB", ", max_response_header_bytes: 1048576", 1 << 20, []want{
			{"/over", http.StatusOK}, {"/many", http.StatusOK},
			{"/hints", http.StatusOK}, {"/over-1m", http.StatusBadGateway},
		}},
	} {
		t.Run(setting.name, func(t *testing.T) {
			tg := newTestGateway(t, pki, origin)
			tg.upstreamExtra = setting.extra
			writeFile(t, tg.dir, "policy.yaml", []byte(bodyPolicy))
			tg.run(t, fmt.Sprintf("resolve: {\"api.origin.test:443\": %q}\n", origin.addr))
			for _, h2 := range []bool{false, true} {
				for _, chunked := range []bool{false, true} {
					for _, c := range setting.cases {
						name := fmt.Sprintf("%s/h2=%v/chunked=%v", c.path, h2, chunked)
						t.Run(name, func(t *testing.T) {
							path := fmt.Sprintf("%s?h2=%v&chunked=%v", c.path, h2, chunked)
							method, body := http.MethodGet, io.Reader(nil)
							if chunked {
								method, body = http.MethodPost, io.MultiReader(strings.NewReader("x")) // no length
							}
							req, _ := http.NewRequestWithContext(t.Context(), method, "https://"+apiHost+path, body)
							resp, err := tg.client(t, h2).Do(req)
							if err != nil {
								t.Fatal(err)
							}
							got, _ := io.ReadAll(resp.Body)
							resp.Body.Close()
							if resp.StatusCode != c.status {
								t.Fatalf("status %d (%s), want %d", resp.StatusCode, got, c.status)
							}
							if c.status == http.StatusOK {
								if string(got) != "final" || (c.path == "/over" || c.path == "/under") && len(resp.Header.Get("X-Large")) < 60<<10 {
									t.Errorf("body %q, X-Large %d bytes: not relayed whole", got, len(resp.Header.Get("X-Large")))
								}
								wantAudited(t, tg, c.path, http.StatusOK, "")
							} else {
								if !strings.Contains(string(got), fmt.Sprintf("upstream.max_response_header_bytes (%d bytes)", setting.limit)) {
									t.Errorf("refusal %q does not name upstream.max_response_header_bytes", got)
								}
								wantAudited(t, tg, c.path, c.status, codeUpstreamError)
							}
							tg.audit.Reset()
						})
					}
				}
			}
		})
	}
}
