package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/testpki"
)

// identityOrigin is a TLS origin (HTTP/1.1 and HTTP/2, session tickets
// on) that asks for a client certificate and records, per request, the
// certificate's common name ("" for none), the Authorization header, the
// connection it came on and whether that connection resumed a session.
type identityOrigin struct {
	addr string
	// closeEach answers every request with Connection: close (a GOAWAY
	// on HTTP/2), so the gateway dials, and resumes, a new connection
	// for the next.
	closeEach bool

	mu   sync.Mutex
	reqs []identitySeen
}

type identitySeen struct {
	cert, auth, conn string
	resumed          bool
}

func startIdentityOrigin(t *testing.T, pki *testPKI, closeEach bool) *identityOrigin {
	t.Helper()
	o := &identityOrigin{closeEach: closeEach}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.addr = ln.Addr().String()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := identitySeen{auth: r.Header.Get("Authorization"), conn: r.RemoteAddr, resumed: r.TLS.DidResume}
			if len(r.TLS.PeerCertificates) > 0 {
				s.cert = r.TLS.PeerCertificates[0].Subject.CommonName
			}
			o.mu.Lock()
			o.reqs = append(o.reqs, s)
			o.mu.Unlock()
			if o.closeEach {
				w.Header().Set("Connection", "close")
			}
			io.WriteString(w, "ok")
		}),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{pki.leaf},
			ClientAuth:   tls.RequestClientCert,
			NextProtos:   []string{"h2", "http/1.1"},
		},
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return o
}

func (o *identityOrigin) seen() []identitySeen {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]identitySeen(nil), o.reqs...)
}

// clientFrom returns an HTTP client of the gateway whose connections come
// from the source address src (a workload by its cidrs).
func (tg *testGateway) clientFrom(t *testing.T, src string, h2 bool) *http.Client {
	t.Helper()
	pu, _ := url.Parse("http://" + tg.gw.ProxyAddr().String())
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	tr := &http.Transport{
		Proxy:             http.ProxyURL(pu),
		DialContext:       d.DialContext,
		TLSClientConfig:   &tls.Config{RootCAs: tg.caPool},
		ForceAttemptHTTP2: h2,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// TestUpstreamConnectionsKeepTheirIdentity is the class test of upstream
// connection reuse across identities: workloads a and b present client
// certificates of their own to one origin (tlsclient), workload c a bearer
// token over a connection without one, interleaved, over HTTP/1.1 and
// HTTP/2 clients, under every upstream.http2 setting, with the origin
// keeping connections open (pooled connections, HTTP/2 multiplexing) and
// closing each (every request a new connection, resuming a TLS session
// where the gateway has one). The origin records, per request, the client
// certificate of the connection and whether it resumed: each request must
// arrive with its own workload's certificate (c's with none), and no
// connection may carry requests of two workloads. A session resumed
// carries the certificate of the handshake that made it, so a session
// cache shared between certificates (or with the connections that present
// none) shows here as a request with another workload's certificate.
func TestUpstreamConnectionsKeepTheirIdentity(t *testing.T) {
	const host = "mtls.origin.test"
	type workload struct{ name, src, cert string }
	workloads := []workload{{"a", "127.0.0.1", "client-a"}, {"b", "127.0.0.2", "client-b"}, {"c", "127.0.0.3", ""}}
	failed, total := 0, 0
	for _, mode := range []string{HTTP2Match, HTTP2Always, HTTP2Never} {
		for _, closeEach := range []bool{false, true} {
			name := fmt.Sprintf("http2-%s/close-%v", mode, closeEach)
			t.Run(name, func(t *testing.T) {
				pki := newTestPKI(t, host)
				o := startIdentityOrigin(t, pki, closeEach)
				tg := newTestGateway(t, pki, nil)
				tg.upstreamExtra = ", http2: " + mode
				var creds, rules strings.Builder
				for _, w := range workloads {
					if w.cert == "" {
						fmt.Fprintf(&rules, "  - {name: %s, from: %s, to: origin, inject: {credential: token, as: bearer}}\n", w.name, w.name)
						continue
					}
					leaf, err := pki.ca.ClientLeaf(w.cert)
					if err != nil {
						t.Fatal(err)
					}
					certPEM, keyPEM, err := testpki.PEM(leaf)
					if err != nil {
						t.Fatal(err)
					}
					cf := writeFile(t, tg.dir, w.name+".pem", certPEM)
					kf := writeFile(t, tg.dir, w.name+"-key.pem", keyPEM)
					fmt.Fprintf(&creds, "  cert-%s:\n    provider: static\n    fields:\n      certificate: {file: %q}\n      private_key: {file: %q}\n", w.name, cf, kf)
					fmt.Fprintf(&rules, "  - {name: %s, from: %s, to: origin, inject: {credential: cert-%s, as: tlsclient}}\n", w.name, w.name, w.name)
				}
				writeFile(t, tg.dir, "policy.yaml", []byte(fmt.Sprintf(`workloads:
  a: {cidrs: [127.0.0.1/32]}
  b: {cidrs: [127.0.0.2/32]}
  c: {cidrs: [127.0.0.3/32]}
destinations:
  origin:
    hosts: [%s]
    allow_private: true
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
%srules:
%sdefault: deny
`, host, creds.String(), rules.String())))
				tg.run(t, fmt.Sprintf("resolve:\n  %q: %q\n", host+":443", o.addr))

				type client struct {
					w  workload
					h2 bool
					c  *http.Client
				}
				var clients []client
				for _, w := range workloads {
					for _, h2 := range []bool{false, true} {
						clients = append(clients, client{w, h2, tg.clientFrom(t, w.src, h2)})
					}
				}
				// Rounds of one request per client, in turn, then the
				// same concurrently.
				var want []string // the workload of each request, in order
				send := func(c client) error {
					resp, err := c.c.Get("https://" + host + "/who")
					if err != nil {
						return fmt.Errorf("workload %s (h2 %v): %w", c.w.name, c.h2, err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						return fmt.Errorf("workload %s (h2 %v): %s %s", c.w.name, c.h2, resp.Status, body)
					}
					return nil
				}
				for range 4 {
					for _, c := range clients {
						if err := send(c); err != nil {
							t.Fatal(err)
						}
						want = append(want, c.w.name)
					}
				}
				var wg sync.WaitGroup
				errs := make(chan error, 4*len(clients))
				for range 4 {
					for _, c := range clients {
						wg.Add(1)
						go func() {
							defer wg.Done()
							errs <- send(c)
						}()
					}
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}

				byCert := map[string]string{"client-a": "a", "client-b": "b"}
				got := o.seen()
				if len(got) != len(want)+4*len(clients) {
					t.Fatalf("the origin saw %d requests, want %d", len(got), len(want)+4*len(clients))
				}
				connOf := map[string]string{} // connection -> workload
				resumed := 0
				bad := 0
				for i, s := range got {
					who := byCert[s.cert]
					switch {
					case s.cert == "" && s.auth == "Bearer "+tg.token:
						who = "c"
					case s.cert != "" && s.auth != "":
						bad++
						t.Errorf("request %d came with certificate %q and an Authorization header", i, s.cert)
					case who == "":
						bad++
						t.Errorf("request %d came with certificate %q and Authorization %v: no workload's", i, s.cert, s.auth != "")
						continue
					}
					if i < len(want) && who != want[i] {
						bad++
						t.Errorf("request %d of workload %s arrived as workload %s's (certificate %q, resumed %v)", i, want[i], who, s.cert, s.resumed)
					}
					if prev, ok := connOf[s.conn]; ok && prev != who {
						bad++
						t.Errorf("connection %s carried requests of workloads %s and %s", s.conn, prev, who)
					}
					connOf[s.conn] = who
					if s.resumed {
						resumed++
					}
				}
				if closeEach && resumed == 0 {
					t.Errorf("no upstream connection resumed a session: the case does not test resumption")
				}
				total++
				if bad > 0 {
					failed++
				}
				t.Logf("%d requests on %d connections, %d resumed", len(got), len(connOf), resumed)
			})
		}
	}
	t.Logf("%d of %d cases mixed identities", failed, total)
}
