package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestHTTP2QueryBytesDifferential: every byte in the query of an HTTP/2
// :path, through an HTTP/1.1 and an HTTP/2 upstream, is either refused
// (400 bad_path from the gateway, or the stream reset by Go's HTTP/2
// server) with nothing sent, or reaches the origin with the request
// target exactly as the client sent it. Go's HTTP/2 server takes a space
// in :path, and the gateway wrote it into the upstream's HTTP/1.1 request
// line ("GET /v1/x?a b HTTP/1.1"): the origin read "b HTTP/1.1" as the
// version and refused it, twice (the transport retried), each time with
// the credential. Before, the space failed through the HTTP/1.1 upstream.
func TestHTTP2QueryBytesDifferential(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{} // X-Case: the RequestURI the origin read
	origin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("X-Case")] = r.RequestURI
		mu.Unlock()
	})
	h1Only := func(srv *httptest.Server) {
		srv.EnableHTTP2 = false
		srv.TLS.NextProtos = []string{"http/1.1"}
	}
	targets := []string{"/v1/x?a b", "/v1/x?a=1 HTTP/1.1", "/v1/x? ", "/v1/x?a%20b", "/v1/x?a=1#b"}
	for c := range 256 {
		targets = append(targets, fmt.Sprintf("/v1/x?a=%cb", byte(c)))
	}
	for _, up := range []struct {
		name      string
		configure func(*httptest.Server)
	}{{"h1 upstream", h1Only}, {"h2 upstream", nil}} {
		t.Run(up.name, func(t *testing.T) {
			tg := startEdgeGateway(t, origin, up.configure)
			var h *h2Raw
			stream := uint32(1)
			for i, target := range targets {
				if h == nil || stream > 199 {
					if h != nil {
						h.c.Close()
					}
					h, stream = h2RawTunnel(t, tg, apiHost), 1
				}
				id := fmt.Sprint(up.name, i)
				h.headers(stream, reqFields(target, [2]string{"x-case", id}), true)
				a := h.read(stream)[stream]
				stream += 2
				mu.Lock()
				got, reached := seen[id]
				mu.Unlock()
				switch {
				case a.Reset || a.Status == "400" && a.Field(ReasonHeader) == codeBadPath:
					if reached {
						t.Errorf("%q: refused, but the origin read %q", target, got)
					}
				case a.Status == "200":
					// What sentQuery keeps of the query (it drops pairs
					// holding ';', which servers split differently).
					path, query, _ := strings.Cut(target, "?")
					want := path
					if q := sentQuery(query); q != "" {
						want += "?" + q
					}
					if got != want {
						t.Errorf("%q: the origin read the target %q", target, got)
					}
				default:
					t.Errorf("%q: %s %s %q; want the target forwarded as sent or refused 400 %s", target, a.Status, a.Field(ReasonHeader), a.Body, codeBadPath)
				}
			}
			h.c.Close()
		})
	}
}
