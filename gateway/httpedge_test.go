package gateway

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// startEdgeGateway runs a gateway (testPolicy) in front of an origin
// serving h on 127.0.0.1 with TLS for apiHost and tunnelHost; configure,
// when set, adjusts the origin's server before it starts (its protocols).
func startEdgeGateway(t *testing.T, h http.Handler, configure func(*httptest.Server)) *testGateway {
	t.Helper()
	pki := newTestPKI(t, apiHost, tunnelHost)
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.leaf}}
	if configure != nil {
		configure(srv)
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	tg := newTestGateway(t, pki, &testOrigin{addr: addr})
	writeFile(t, tg.dir, "policy.yaml", []byte(testPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n  \"tunnel.origin.test:443\": %q\n", addr, addr))
	return tg
}

// TestInformationalResponsesRelayed: 102 and 103 Early Hints (with its
// Link field) reach HTTP/1.1 and HTTP/2 clients before the final
// response, whatever protocol the upstream speaks.
func TestInformationalResponsesRelayed(t *testing.T) {
	tg := startEdgeGateway(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusProcessing)
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		fmt.Fprint(w, "final")
	}), nil)
	type info struct {
		Code int
		Link string
	}
	for _, tc := range []struct {
		name string
		h2   bool
	}{{"http1.1", false}, {"http2", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var got []info
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				got = append(got, info{code, h.Get("Link")})
				return nil
			}}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, "https://"+apiHost+"/hints", nil)
			resp, err := tg.client(t, tc.h2).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != "final" || resp.ProtoMajor != map[bool]int{false: 1, true: 2}[tc.h2] {
				t.Fatalf("final response %s over %s %q, want 200 over the client's protocol", resp.Status, resp.Proto, body)
			}
			want := []info{{102, ""}, {103, "</style.css>; rel=preload; as=style"}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("1xx responses the client saw (-want +got):\n%s", diff)
			}
			if resp.Header.Get("Link") != "" {
				t.Errorf("the 103's Link field leaked into the final response: %q", resp.Header.Get("Link"))
			}
		})
	}
}

// TestResponseHeadersNotHeldBack: the headers of a response whose body
// comes slowly reach the client as soon as the upstream sends them, with
// or without a Content-Length, on HTTP/1.1 and HTTP/2, while the rest of
// the body is still held by the origin; the body then arrives whole.
func TestResponseHeadersNotHeldBack(t *testing.T) {
	release := make(chan struct{})
	tg := startEdgeGateway(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("cl") == "1" {
			w.Header().Set("Content-Length", "10")
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		if r.URL.Query().Get("first") == "1" {
			fmt.Fprint(w, "01234")
		}
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		if r.URL.Query().Get("first") == "1" {
			fmt.Fprint(w, "56789")
		} else {
			fmt.Fprint(w, "0123456789")
		}
	}), nil)
	for _, tc := range []struct {
		name  string
		h2    bool
		query string
	}{
		{"http1.1/content-length/first-bytes", false, "cl=1&first=1"},
		{"http1.1/content-length/headers-alone", false, "cl=1"},
		{"http1.1/chunked", false, "first=1"},
		{"http2/content-length/first-bytes", true, "cl=1&first=1"},
		{"http2/content-length/headers-alone", true, "cl=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				resp *http.Response
				err  error
			}
			done := make(chan result, 1)
			c := tg.client(t, tc.h2)
			go func() {
				resp, err := c.Get("https://" + apiHost + "/slow?" + tc.query)
				done <- result{resp, err}
			}()
			var res result
			select {
			case res = <-done:
			case <-time.After(5 * time.Second):
				release <- struct{}{}
				t.Fatal("no response headers within 5s while the origin held the rest of the body")
			}
			if res.err != nil {
				t.Fatal(res.err)
			}
			release <- struct{}{}
			body, err := io.ReadAll(res.resp.Body)
			res.resp.Body.Close()
			if err != nil || string(body) != "0123456789" {
				t.Fatalf("body %q, %v; want the whole body", body, err)
			}
		})
	}
}

// pipelinedConn sends a CONNECT request in the same write as the first
// bytes of what follows (a TLS ClientHello), before the gateway's 200,
// as a client that does not wait for it would, and reads the 200 before
// handing the rest of the stream to its user.
type pipelinedConn struct {
	net.Conn
	connect string
	br      *bufio.Reader
	sent    bool
}

func (c *pipelinedConn) Write(p []byte) (int, error) {
	if !c.sent {
		c.sent = true
		if _, err := c.Conn.Write(append([]byte(c.connect), p...)); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *pipelinedConn) Read(p []byte) (int, error) {
	if c.br == nil {
		c.br = bufio.NewReader(c.Conn)
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			return 0, fmt.Errorf("reading the CONNECT response: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("CONNECT answered %s", resp.Status)
		}
	}
	return c.br.Read(p)
}

// TestBytesPipelinedAfterConnect: what a client sends right behind its
// CONNECT, before the 200, reaches the intercepting TLS server or the
// spliced destination (it was lost: the handshake hung).
func TestBytesPipelinedAfterConnect(t *testing.T) {
	tg := startEdgeGateway(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ok %s", r.Host)
	}), nil)
	for _, tc := range []struct {
		name, host string
		roots      func() *tls.Config
	}{
		{"intercepted", apiHost, func() *tls.Config { return &tls.Config{RootCAs: tg.caPool, ServerName: apiHost} }},
		{"tunnel", tunnelHost, func() *tls.Config { return &tls.Config{RootCAs: tg.pki.pool, ServerName: tunnelHost} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
			pc := &pipelinedConn{Conn: raw, connect: fmt.Sprintf("CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", tc.host, tc.host)}
			cfg := tc.roots()
			cfg.NextProtos = []string{"http/1.1"}
			tc2 := tls.Client(pc, cfg)
			if err := tc2.Handshake(); err != nil {
				t.Fatalf("TLS handshake after a pipelined CONNECT: %v", err)
			}
			fmt.Fprintf(tc2, "GET /x HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", tc.host)
			resp, err := http.ReadResponse(bufio.NewReader(tc2), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "ok "+tc.host) {
				t.Fatalf("got %s %q, want 200 from the origin", resp.Status, body)
			}
		})
	}
}
