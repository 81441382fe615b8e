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
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// startEdgeGateway runs a gateway (testPolicy) in front of an origin
// serving h on 127.0.0.1 with TLS for apiHost and tunnelHost; configure,
// when set, adjusts the origin's server before it starts (its protocols);
// resolve are more entries of the gateway's resolve map ("host:port": addr).
func startEdgeGateway(t *testing.T, h http.Handler, configure func(*httptest.Server), resolve ...string) *testGateway {
	t.Helper()
	return startEdgeGatewayPolicy(t, h, configure, testPolicy, resolve...)
}

// startEdgeGatewayPolicy is startEdgeGateway with another policy.
func startEdgeGatewayPolicy(t *testing.T, h http.Handler, configure func(*httptest.Server), policy string, resolve ...string) *testGateway {
	t.Helper()
	pki := newTestPKI(t, apiHost, tunnelHost)
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.leaf}, NextProtos: []string{"h2", "http/1.1"}}
	if configure != nil {
		configure(srv)
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	tg := newTestGateway(t, pki, &testOrigin{addr: addr})
	writeFile(t, tg.dir, "policy.yaml", []byte(policy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n  \"tunnel.origin.test:443\": %q\n", addr, addr)+resolveLines(resolve))
	return tg
}

// resolveLines formats resolve map entries for the gateway config.
func resolveLines(entries []string) string {
	var b strings.Builder
	for _, e := range entries {
		b.WriteString("  " + e + "\n")
	}
	return b.String()
}

// TestInformationalResponsesRelayed: 102 and 103 Early Hints (with its
// Link field) reach HTTP/1.1 and HTTP/2 clients before the final
// response, whatever protocol the upstream speaks and whichever upstream
// client sends the request: the h1client itself (a GET from an HTTP/1.1
// client), its Fallback transport (a chunked POST), net/http's HTTP/2
// transport (an HTTP/2 client). Each 1xx is relayed once.
func TestInformationalResponsesRelayed(t *testing.T) {
	tg := startEdgeGateway(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusProcessing)
		if !sendInformational(w, r, http.StatusEarlyHints, http.Header{"Link": {"</style.css>; rel=preload; as=style"}}) {
			return
		}
		fmt.Fprint(w, "final")
	}), nil)
	type info struct {
		Code int
		Link string
	}
	for _, tc := range []struct {
		name    string
		h2      bool
		chunked bool
	}{{"http1.1", false, false}, {"http1.1 chunked POST", false, true}, {"http2", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			var got []info
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				got = append(got, info{code, h.Get("Link")})
				return nil
			}}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, "https://"+apiHost+"/hints", nil)
			if tc.chunked {
				req.Method, req.Body, req.ContentLength = http.MethodPost, io.NopCloser(strings.NewReader("chunked body")), -1
			}
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

// TestHTTP2OnlyOrigin: under upstream.http2: match (the default), an
// HTTP/1.1 client reaches an origin that speaks HTTP/2 alone (the request
// is bridged to HTTP/2; it was a 502 with EOF), and still speaks HTTP/1.1
// to an origin that offers it, and to one without ALPN.
func TestHTTP2OnlyOrigin(t *testing.T) {
	for _, tc := range []struct {
		name   string
		protos []string // what the origin's TLS offers; nil: no ALPN
		h2Only bool     // the origin serves nothing but HTTP/2
		strict bool     // it refuses a handshake without h2 (no_application_protocol)
		h2     bool     // the client speaks HTTP/2 to the gateway
		want   string   // the protocol the origin sees
	}{
		{"h2-only/client-http1.1", []string{"h2"}, true, false, false, "HTTP/2.0"},
		{"h2-only-strict/client-http1.1", []string{"h2"}, true, true, false, "HTTP/2.0"},
		{"h2-only/client-http2", []string{"h2"}, true, false, true, "HTTP/2.0"},
		{"both/client-http1.1", []string{"h2", "http/1.1"}, false, false, false, "HTTP/1.1"},
		{"http1.1-only/client-http1.1", []string{"http/1.1"}, false, false, false, "HTTP/1.1"},
		{"no-alpn/client-http1.1", nil, false, false, false, "HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := startEdgeGateway(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n, _ := io.Copy(io.Discard, r.Body)
				fmt.Fprintf(w, "%s %d", r.Proto, n)
			}), func(srv *httptest.Server) {
				srv.EnableHTTP2 = tc.h2Only || slices.Contains(tc.protos, "h2")
				srv.TLS.NextProtos = tc.protos
				if tc.protos == nil {
					srv.TLS.NextProtos = []string{} // httptest fills in a nil list
				}
				if tc.strict {
					// Go's server would let a handshake without h2 go on
					// (its http/1.1 fallback); a strict one sends the alert.
					base := srv.TLS.Clone()
					srv.TLS.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
						cfg := base.Clone()
						if !slices.Contains(hello.SupportedProtos, "h2") {
							cfg.NextProtos = []string{"x-strict-h2-only"}
						}
						return cfg, nil
					}
				}
				if tc.h2Only {
					srv.Config.Protocols = new(http.Protocols)
					srv.Config.Protocols.SetHTTP2(true)
				}
			})
			c := tg.client(t, tc.h2)
			// The first, with a body, finds out; the second reuses what
			// the first learned.
			for i, upload := range []string{"hello", ""} {
				resp, err := c.Post("https://"+apiHost+"/proto", "text/plain", strings.NewReader(upload))
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := fmt.Sprintf("%s %d", tc.want, len(upload)); resp.StatusCode != http.StatusOK || string(body) != want {
					t.Fatalf("request %d: %s %q, want 200 with the origin seeing %s; log:\n%s", i, resp.Status, body, tc.want, tg.logs.String())
				}
			}
		})
	}
}

// readWatch is a request body that records whether it was read.
type readWatch struct {
	r    io.Reader
	read atomic.Bool
}

func (b *readWatch) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.r.Read(p)
}

// TestExpectContinueEndToEnd: a client's Expect: 100-continue reaches the
// origin through HTTP/2 and the plain listener, so the origin decides
// whether the body is sent: refused before reading it, the client never
// sends it; accepted, it arrives whole. (The HTTP/1.1 loop inside a
// tunnel answers 100 itself today.)
func TestExpectContinueEndToEnd(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		saw := r.Header.Get("Expect")
		if r.ProtoMajor == 2 && h2ExpectsContinue(r.Body) {
			saw = "100-continue" // Go's HTTP/2 server keeps it there only
		}
		w.Header().Set("X-Saw-Expect", saw)
		if r.URL.Query().Get("refuse") == "1" {
			w.Header().Set("Connection", "close")
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "len=%d", n)
	})
	plain := httptest.NewServer(h)
	t.Cleanup(plain.Close)
	const plainHost = "plain.origin.test"
	port := portOf(plain.Listener.Addr())
	policy := strings.Replace(testPolicy, "\ncredentials:\n", fmt.Sprintf(`
  plain:
    hosts: [%s]
    ports: [%s]
    allow_private: true
credentials:
`, plainHost, port), 1)
	policy = strings.Replace(policy, "\nrules:\n", `
rules:
  - name: plain
    from: local
    to: plain
    inject: {credential: token, as: bearer}
    plaintext: true
`, 1)
	tg := startEdgeGatewayPolicy(t, h, nil, policy, fmt.Sprintf("%q: %q", plainHost+":"+port, plain.Listener.Addr().String()))
	for _, tc := range []struct {
		name   string
		h2     bool
		url    string
		refuse bool
	}{
		{"http2/refused", true, "https://" + apiHost + "/up?refuse=1", true},
		{"http2/accepted", true, "https://" + apiHost + "/up", false},
		{"plain/refused", false, plain.URL + "/up?refuse=1", true},
		{"plain/accepted", false, plain.URL + "/up", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tg.client(t, tc.h2)
			tr := c.Transport.(*http.Transport)
			tr.ExpectContinueTimeout = 10 * time.Second // the origin decides, not a timeout
			if strings.HasPrefix(tc.url, "http:") {
				// The plain origin is reached by the gateway through the
				// name the policy allows.
				u := "http://" + plainHost + ":" + port + strings.TrimPrefix(tc.url, plain.URL)
				tc.url = u
			}
			body := &readWatch{r: strings.NewReader(strings.Repeat("x", 1000))}
			req, _ := http.NewRequest(http.MethodPut, tc.url, body)
			req.ContentLength = 1000
			req.Header.Set("Expect", "100-continue")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.Header.Get("X-Saw-Expect") != "100-continue" {
				t.Errorf("the origin saw Expect %q, want 100-continue", resp.Header.Get("X-Saw-Expect"))
			}
			switch {
			case tc.refuse && (resp.StatusCode != http.StatusRequestEntityTooLarge || body.read.Load()):
				t.Errorf("got %s, body sent: %v; want 413 without the body sent", resp.Status, body.read.Load())
			case !tc.refuse && (resp.StatusCode != http.StatusOK || string(got) != "len=1000"):
				t.Errorf("got %s %q, want 200 len=1000", resp.Status, got)
			}
		})
	}
}
