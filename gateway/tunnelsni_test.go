package gateway

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// trickleConn writes at most n bytes per Write, so that a ClientHello
// reaches the gateway in pieces.
type trickleConn struct {
	net.Conn
	n int
}

func (c trickleConn) Write(p []byte) (int, error) {
	w := 0
	for len(p) > 0 {
		k := min(c.n, len(p))
		m, err := c.Conn.Write(p[:k])
		w += m
		if err != nil {
			return w, err
		}
		p = p[k:]
	}
	return w, nil
}

// TestTunnelSNIAgrees is the class of "a spliced tunnel whose TLS
// ClientHello names another host than the CONNECT target" (invariant 1
// for action: tunnel): a server behind one address for many names (a
// CDN, a shared load balancer, here the test origin, which serves
// api.origin.test and tunnel.origin.test) routes by the SNI, so such a
// tunnel reaches a host the policy never allowed. The ClientHello is
// read before any byte goes on: an SNI naming tunnel.origin.test (in any
// case) or none passes, in one piece or trickled a byte at a time; one
// naming another host, or a TLS record that is no readable ClientHello,
// closes the tunnel with nothing of it sent, counted and audited on the
// tunnel's closing line as "closed":"sni_mismatch"; bytes that are not
// TLS pass unread. Before, the 4 refused cases all reached the origin
// (the mismatching ones completed their handshake with it).
func TestTunnelSNIAgrees(t *testing.T) {
	tg := startGateway(t)
	connect := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", tunnelHost, tunnelHost)
		head := readConnectHead(t, c)
		if !strings.HasPrefix(string(head), "HTTP/1.1 200") {
			t.Fatalf("CONNECT: %q", head)
		}
		return c
	}
	for _, tt := range []struct {
		name    string
		sni     string
		trickle int // write the ClientHello this many bytes at a time (0: at once)
		ok      bool
	}{
		{name: "same", sni: tunnelHost, ok: true},
		{name: "same-upper-case", sni: "TUNNEL.Origin.Test", ok: true},
		{name: "none", sni: "", ok: true},
		{name: "same-trickled", sni: tunnelHost, trickle: 1, ok: true},
		{name: "other-host", sni: apiHost},
		{name: "other-host-trickled", sni: apiHost, trickle: 1},
		{name: "unrelated", sni: "credgate.test"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(tg.origin.all())
			closedBefore := strings.Count(tg.audit.String(), `"closed":"sni_mismatch"`)
			var c net.Conn = connect(t)
			if tt.trickle > 0 {
				c = trickleConn{Conn: c, n: tt.trickle}
			}
			path := "/tunnel-sni/" + tt.name
			tc := tls.Client(c, &tls.Config{ServerName: tt.sni, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			err := tc.Handshake()
			if err == nil {
				fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, tunnelHost)
				resp, rerr := http.ReadResponse(bufio.NewReader(tc), nil)
				if rerr == nil {
					resp.Body.Close()
				}
				err = rerr
			}
			var got []seen
			for _, s := range tg.origin.all()[before:] {
				if s.Path == path || tt.sni != "" && strings.EqualFold(s.SNI, tt.sni) {
					got = append(got, s)
				}
			}
			if tt.ok {
				// The tunnel's bytes are the client's: the SNI as sent.
				if err != nil || len(got) != 1 || got[0].SNI != tt.sni {
					t.Fatalf("handshake/request: %v; the origin received %+v, want one request with SNI %q", err, got, tt.sni)
				}
				return
			}
			if err == nil || len(got) != 0 {
				t.Fatalf("handshake/request: %v; the origin received %+v, want the tunnel closed and nothing sent", err, got)
			}
			waitFor(t, 5*time.Second, "the tunnel's closing line", func() bool {
				return strings.Count(tg.audit.String(), `"closed":"sni_mismatch"`) > closedBefore
			})
		})
	}
	t.Run("not-a-client-hello", func(t *testing.T) {
		closedBefore := strings.Count(tg.audit.String(), `"closed":"sni_mismatch"`)
		c := connect(t)
		// A handshake record whose body is no ClientHello.
		if _, err := c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00}); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(make([]byte, 64)); err == nil {
			t.Fatalf("read %d bytes, want the tunnel closed", n)
		}
		waitFor(t, 5*time.Second, "the tunnel's closing line", func() bool {
			return strings.Count(tg.audit.String(), `"closed":"sni_mismatch"`) > closedBefore
		})
	})
	t.Run("not-tls", func(t *testing.T) {
		c := connect(t)
		// Plain HTTP to the TLS origin: relayed unread, Go's TLS server
		// answers it.
		fmt.Fprint(c, "GET / HTTP/1.0\r\n\r\n")
		b, _ := io.ReadAll(c)
		if !strings.Contains(string(b), "HTTP request to an HTTPS server") {
			t.Fatalf("got %q, want the origin's answer to plain HTTP", b)
		}
	})
}

// TestTunnelSNIToIPLiteral: a spliced tunnel to an IP literal admits a
// ClientHello without SNI (what clients send for an address) and closes
// one whose SNI names a host: the address may serve many names.
func TestTunnelSNIToIPLiteral(t *testing.T) {
	pki := newTestPKI(t, apiHost)
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(`
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  ip:
    hosts: [127.0.0.1]
    allow_private: true
rules:
  - name: ip
    from: local
    to: ip
    action: tunnel
default: deny
`))
	tg.run(t, fmt.Sprintf("resolve:\n  \"127.0.0.1:443\": %q\n", tg.origin.addr))
	for _, tt := range []struct {
		sni string
		ok  bool
	}{{"", true}, {apiHost, false}} {
		c, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		fmt.Fprint(c, "CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n")
		if head := readConnectHead(t, c); !strings.HasPrefix(string(head), "HTTP/1.1 200") {
			t.Fatalf("CONNECT: %q", head)
		}
		before := strings.Count(tg.audit.String(), `"closed":"sni_mismatch"`)
		err = tls.Client(c, &tls.Config{ServerName: tt.sni, InsecureSkipVerify: true}).Handshake()
		c.Close()
		if (err == nil) != tt.ok {
			t.Errorf("SNI %q: handshake %v, want ok=%v", tt.sni, err, tt.ok)
		}
		if !tt.ok {
			waitFor(t, 5*time.Second, "the tunnel's closing line", func() bool {
				return strings.Count(tg.audit.String(), `"closed":"sni_mismatch"`) > before
			})
		}
	}
}

// readConnectHead reads the answer to a CONNECT from c byte by byte, up
// to the blank line: nothing after it is taken.
func readConnectHead(t *testing.T, c net.Conn) []byte {
	t.Helper()
	var head []byte
	for !strings.HasSuffix(string(head), "\r\n\r\n") {
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("CONNECT: %v after %q", err, head)
		}
		head = append(head, b[0])
	}
	return head
}
