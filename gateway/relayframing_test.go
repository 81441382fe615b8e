package gateway

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestRelayAddsNoContentType: a response the upstream sent without a
// Content-Type reaches the client without one, and a 304 carrying the
// representation's Content-Length is read cleanly by the client, over
// HTTP/1.1 and HTTP/2 to the client and either protocol to the upstream
// (relayFraming). Before, Go's HTTP/2 server sniffed the body and added
// "text/html; charset=utf-8", and Go's HTTP/2 client failed the 304 with
// "unexpected EOF", or the gateway, whose HTTP/2 transport does the same,
// aborted it: 3 of the 8 cases (all HTTP/2 to the client) failed.
func TestRelayAddsNoContentType(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/untyped":
			w.Header()["Content-Type"] = nil // the origin's own server must not sniff either
			_, _ = io.WriteString(w, "<html>hi</html>")
		case "/not-modified":
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Content-Length", "1234")
			w.WriteHeader(http.StatusNotModified)
		}
	})
	origins := map[string]func(*httptest.Server){
		"h2 origin": nil,
		"http1.1 origin": func(s *httptest.Server) {
			s.EnableHTTP2 = false
			s.TLS.NextProtos = []string{"http/1.1"}
			s.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		},
	}
	for oname, configure := range origins {
		tg := startEdgeGateway(t, h, configure)
		for _, h2 := range []bool{false, true} {
			proto := map[bool]string{false: "http1.1", true: "h2"}[h2]
			t.Run(oname+"/"+proto+"/untyped", func(t *testing.T) {
				resp, err := tg.client(t, h2).Get("https://" + apiHost + "/untyped")
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(body) != "<html>hi</html>" {
					t.Fatalf("body %q, %v", body, err)
				}
				if ct, ok := resp.Header["Content-Type"]; ok {
					t.Errorf("the client got Content-Type %q; the upstream sent none", ct)
				}
			})
			t.Run(oname+"/"+proto+"/304 with Content-Length", func(t *testing.T) {
				resp, err := tg.client(t, h2).Get("https://" + apiHost + "/not-modified")
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || len(body) != 0 || resp.StatusCode != http.StatusNotModified || resp.Header.Get("ETag") != `"v1"` {
					t.Errorf("status %d, ETag %q, body %q, read error %v; want 304 with the ETag, no body, no error", resp.StatusCode, resp.Header.Get("ETag"), body, err)
				}
			})
		}
	}
}
