package runrelay

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/freeport"
	"github.com/credgate/credgate/internal/testpki"
)

const token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2ln"

// fakeGateway accepts connections (TLS when cert is set), hands each
// to the test on conns, and stands for the gateway's proxy listener.
type fakeGateway struct {
	ln    net.Listener
	conns chan net.Conn
}

func startFakeGateway(t *testing.T, cert *tls.Certificate) *fakeGateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cert != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*cert}})
	}
	g := &fakeGateway{ln: ln, conns: make(chan net.Conn, 16)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(g.conns)
				return
			}
			t.Cleanup(func() { c.Close() })
			g.conns <- c
		}
	}()
	return g
}

// next is the next connection the gateway accepted.
func (g *fakeGateway) next(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-g.conns:
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway got no connection")
		return nil
	}
}

func startRelay(t *testing.T, cfg Config) *Relay {
	t.Helper()
	r, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func dialRelay(t *testing.T, r *Relay) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// TestRelayRefusesWithoutSecret: only a connection presenting the
// relay's secret as its proxy password is forwarded; every other is
// answered 407 and the gateway sees nothing of it.
func TestRelayRefusesWithoutSecret(t *testing.T) {
	gw := startFakeGateway(t, nil)
	r := startRelay(t, Config{Gateway: &url.URL{Scheme: "http", Host: gw.ln.Addr().String()}, Token: token})
	secret := r.URL().User
	pass, _ := secret.Password()
	for _, c := range []struct {
		name  string
		auth  []string
		admit bool
	}{
		{"none", nil, false},
		{"wrong password", []string{basic(User, pass[:len(pass)-1]+"x")}, false},
		{"the secret as the user name", []string{basic(pass, "")}, false},
		{"empty password", []string{basic(User, "")}, false},
		{"bearer", []string{"Bearer " + pass}, false},
		{"not base64", []string{"Basic %%%"}, false},
		{"twice, one right", []string{basic(User, "x"), basic(User, pass)}, false},
		{"right", []string{basic(User, pass)}, true},
		{"right, any user", []string{basic("someone", pass)}, true},
		{"right, lower-case scheme", []string{"basic " + base64.StdEncoding.EncodeToString([]byte(User+":"+pass))}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, br := dialRelay(t, r)
			req := "CONNECT api.example.test:443 HTTP/1.1\r\nHost: api.example.test:443\r\n"
			for _, a := range c.auth {
				req += "Proxy-Authorization: " + a + "\r\n"
			}
			if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
				t.Fatal(err)
			}
			if !c.admit {
				resp, err := http.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != http.StatusProxyAuthRequired {
					t.Fatalf("%v %v, want 407", resp, err)
				}
				select {
				case g := <-gw.conns:
					g.Close()
					t.Fatal("the gateway got a connection")
				default:
				}
				return
			}
			g := gw.next(t)
			got, err := http.ReadRequest(bufio.NewReader(g))
			if err != nil {
				t.Fatal(err)
			}
			if v := got.Header.Values("Proxy-Authorization"); len(v) != 1 || v[0] != "Bearer "+token {
				t.Errorf("the gateway got Proxy-Authorization %q, want the run token only", v)
			}
			g.Close()
		})
	}
}

// TestRelayRewrite: what the gateway receives is the client's head with
// the client's Proxy-Authorization fields replaced by the relay's, and,
// for a request that is neither a tunnel nor an upgrade, Connection:
// close; then the client's bytes as they came.
func TestRelayRewrite(t *testing.T) {
	r := &Relay{authLine: []byte("Proxy-Authorization: Bearer " + token + "\r\n")}
	for _, c := range []struct {
		name, in, want string
		keep           bool
	}{
		{"connect", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nProxy-Authorization: Basic eA==\r\nUser-Agent: x\r\n\r\n",
			"CONNECT h:443 HTTP/1.1\r\nProxy-Authorization: Bearer " + token + "\r\nHost: h:443\r\nUser-Agent: x\r\n\r\n", true},
		{"absolute, any case", "GET http://h/a%2Fb?q HTTP/1.1\r\nHost: h\r\nproxy-AUTHORIZATION: Basic eA==\r\nConnection: keep-alive\r\n\r\n",
			"GET http://h/a%2Fb?q HTTP/1.1\r\nProxy-Authorization: Bearer " + token + "\r\nConnection: close\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", false},
		{"no token", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nProxy-Authorization: Basic eA==\r\n\r\n",
			"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			rr := r
			if c.name == "no token" {
				rr = &Relay{}
			}
			if got := string(rr.rewrite([]byte(c.in), c.keep)); got != c.want {
				t.Errorf("rewrite:\n got %q\nwant %q", got, c.want)
			}
		})
	}
}

// FuzzRewrite: for any head msghead takes, the gateway reads the same
// request the client sent — method, target, every field — but for
// Proxy-Authorization (the relay's token only) and the Connection: close
// the relay puts first.
func FuzzRewrite(f *testing.F) {
	for _, s := range []string{
		"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nProxy-Authorization: Basic eA==\r\n\r\n",
		"GET http://h/p HTTP/1.1\r\nHost: h\r\nProxy-Authorization: a\r\nproxy-authorization: b\r\nX: y\r\n\r\n",
		"POST http://h/p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
	} {
		f.Add(s)
	}
	r := &Relay{authLine: []byte("Proxy-Authorization: Bearer " + token + "\r\n")}
	f.Fuzz(func(t *testing.T, in string) {
		br := bufio.NewReaderSize(strings.NewReader(in), MaxHead)
		block, ok := headBlock(br)
		if !ok {
			return
		}
		want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(block)))
		if err != nil {
			return
		}
		for _, keep := range []bool{true, false} {
			got, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(r.rewrite(block, keep))))
			if err != nil {
				t.Fatalf("the rewritten head does not parse: %v", err)
			}
			if got.Method != want.Method || got.RequestURI != want.RequestURI || got.Host != want.Host || got.Proto != want.Proto {
				t.Fatalf("request line changed: %s %s %s -> %s %s %s", want.Method, want.RequestURI, want.Host, got.Method, got.RequestURI, got.Host)
			}
			if v := got.Header.Values("Proxy-Authorization"); len(v) != 1 || v[0] != "Bearer "+token {
				t.Fatalf("Proxy-Authorization %q", v)
			}
			conn := got.Header.Values("Connection")
			if !keep {
				if len(conn) == 0 || conn[0] != "close" {
					t.Fatalf("Connection %q, want close first", conn)
				}
				conn = conn[1:]
			}
			want.Header.Del("Proxy-Authorization")
			got.Header.Del("Proxy-Authorization")
			got.Header.Del("Connection")
			if len(conn) > 0 {
				got.Header["Connection"] = conn
			}
			if !equalHeader(want.Header, got.Header) {
				t.Fatalf("fields changed:\n%v\n%v", want.Header, got.Header)
			}
		}
	})
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w := b[k]
		if len(v) != len(w) {
			return false
		}
		for i := range v {
			if v[i] != w[i] {
				return false
			}
		}
	}
	return true
}

// TestRelayPipe: after the head the relay is a byte pipe: bytes the
// client sent with the head and after, both ways, and a half-close each
// way, reach the other side as they were.
func TestRelayPipe(t *testing.T) {
	gw := startFakeGateway(t, nil)
	r := startRelay(t, Config{Gateway: &url.URL{Scheme: "http", Host: gw.ln.Addr().String()}, Token: token})
	pass, _ := r.URL().User.Password()
	conn, br := dialRelay(t, r)
	// The head and the first bytes of the tunnel in one write.
	if _, err := io.WriteString(conn, "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nProxy-Authorization: "+basic(User, pass)+"\r\n\r\nearly"); err != nil {
		t.Fatal(err)
	}
	g := gw.next(t)
	gbr := bufio.NewReader(g)
	if _, err := http.ReadRequest(gbr); err != nil {
		t.Fatal(err)
	}
	io.WriteString(g, "HTTP/1.1 200 Connection established\r\n\r\nfrom-gateway")
	if _, err := io.WriteString(conn, "-late"); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(gbr)
	if err != nil || string(got) != "early-late" {
		t.Fatalf("the gateway read %q %v until the client's half-close", got, err)
	}
	// The other way, after the client's half-close.
	io.WriteString(g, "-after")
	g.(*net.TCPConn).CloseWrite()
	resp, err := io.ReadAll(br)
	if err != nil || !strings.HasSuffix(string(resp), "\r\n\r\nfrom-gateway-after") {
		t.Fatalf("the client read %q %v", resp, err)
	}
}

// TestRelayClientAbort: a client that resets its connection has the
// relay reset the gateway's.
func TestRelayClientAbort(t *testing.T) {
	gw := startFakeGateway(t, nil)
	r := startRelay(t, Config{Gateway: &url.URL{Scheme: "http", Host: gw.ln.Addr().String()}})
	pass, _ := r.URL().User.Password()
	conn, _ := dialRelay(t, r)
	io.WriteString(conn, "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nProxy-Authorization: "+basic(User, pass)+"\r\n\r\n")
	g := gw.next(t)
	gbr := bufio.NewReader(g)
	if _, err := http.ReadRequest(gbr); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).SetLinger(0)
	conn.Close()
	_, err := io.ReadAll(gbr)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the gateway's read ended with %v, want a reset", err)
	}
}

// TestRelayGatewayErrors: the relay's own failures are 502 answers that
// say what failed: nothing listening, a TLS gateway whose certificate no
// trusted CA signed, a gateway that does not speak TLS. With the right
// roots the TLS gateway gets the request.
func TestRelayGatewayErrors(t *testing.T) {
	ca, err := testpki.NewAuthority("relay test gateway CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := testpki.NewAuthority("relay test other CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tlsGW := startFakeGateway(t, &leaf)
	plainGW := startFakeGateway(t, nil)
	deadAddr := freeport.Addr(t) // claimed and never listened on: unreachable
	for _, c := range []struct {
		name  string
		cfg   Config
		gw    *fakeGateway
		want  string // in the 502's body; "" for forwarded
		extra func(net.Conn)
	}{
		{name: "unreachable", cfg: Config{Gateway: &url.URL{Scheme: "http", Host: deadAddr}}, want: "unreachable"},
		{name: "TLS, another CA", cfg: Config{Gateway: &url.URL{Scheme: "https", Host: tlsGW.ln.Addr().String()}, Roots: other.Pool()}, gw: tlsGW, want: "not signed by a CA credgate run trusts"},
		{name: "TLS to a plain listener", cfg: Config{Gateway: &url.URL{Scheme: "https", Host: plainGW.ln.Addr().String()}, Roots: ca.Pool()}, gw: plainGW, want: "TLS handshake"},
		{name: "TLS, its CA", cfg: Config{Gateway: &url.URL{Scheme: "https", Host: tlsGW.ln.Addr().String()}, Roots: ca.Pool(), Token: token}, gw: tlsGW},
	} {
		t.Run(c.name, func(t *testing.T) {
			var log bytes.Buffer
			c.cfg.Log = &log
			r := startRelay(t, c.cfg)
			pass, _ := r.URL().User.Password()
			conn, br := dialRelay(t, r)
			io.WriteString(conn, "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nProxy-Authorization: "+basic(User, pass)+"\r\n\r\n")
			if c.want == "" {
				g := c.gw.next(t)
				got, err := http.ReadRequest(bufio.NewReader(g))
				if err != nil || got.Header.Get("Proxy-Authorization") != "Bearer "+token {
					t.Fatalf("the TLS gateway read %v %v", got, err)
				}
				return
			}
			if c.gw != nil {
				// The gateway side of the failed handshake: a plain
				// listener answers a ClientHello as a bad request.
				go func() {
					g := c.gw.next(t)
					if c.gw == plainGW {
						g.Read(make([]byte, 512))
						io.WriteString(g, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
					}
					io.Copy(io.Discard, g)
					g.Close()
				}()
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), c.want) {
				t.Errorf("%d %s, want 502 %q", resp.StatusCode, body, c.want)
			}
			r.Close()
			if !strings.Contains(log.String(), c.want) || strings.Contains(log.String(), pass) {
				t.Errorf("log %q", log.String())
			}
		})
	}
}

// TestRelayOriginForm: a request that is not a proxy request is refused
// with a 400 that says what to send.
func TestRelayOriginForm(t *testing.T) {
	r := startRelay(t, Config{Gateway: &url.URL{Scheme: "http", Host: "127.0.0.1:9"}})
	pass, _ := r.URL().User.Password()
	for _, head := range []string{
		"GET /x HTTP/1.1\r\nHost: h\r\nProxy-Authorization: " + basic(User, pass) + "\r\n\r\n",
		"GET /x HTTP/1.1\nHost: h\n\n",
	} {
		conn, br := dialRelay(t, r)
		io.WriteString(conn, head)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%q: %v %v, want 400", head, resp, err)
		}
	}
}

// TestRelayClose: Close ends open tunnels and the listener.
func TestRelayClose(t *testing.T) {
	gw := startFakeGateway(t, nil)
	r := startRelay(t, Config{Gateway: &url.URL{Scheme: "http", Host: gw.ln.Addr().String()}})
	pass, _ := r.URL().User.Password()
	conn, br := dialRelay(t, r)
	io.WriteString(conn, "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nProxy-Authorization: "+basic(User, pass)+"\r\n\r\n")
	gw.next(t)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(br); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Errorf("the client's tunnel after Close: %v", err)
	}
	if c, err := net.Dial("tcp", r.Addr()); err == nil {
		c.Close()
		t.Error("the relay still accepts after Close")
	}
}
