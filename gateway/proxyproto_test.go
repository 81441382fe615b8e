package gateway

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// ppPolicy names a workload for each loopback address the PROXY protocol
// tests use: the load balancer (127.0.0.1, trusted), the client behind
// it whose address the header names (127.0.0.2), and a client that
// connects directly (127.0.0.3, untrusted).
const ppPolicy = `
workloads:
  lb: {cidrs: [127.0.0.1/32]}
  behind-lb: {cidrs: [127.0.0.2/32]}
  direct: {cidrs: [127.0.0.3/32]}
destinations:
  api: {hosts: [api.origin.test], allow_private: true}
credentials:
  token: {provider: static, env: CREDGATE_GATEWAY_TEST_TOKEN}
rules:
  - {name: behind-lb, from: behind-lb, to: api, inject: {credential: token, as: bearer}}
  - {name: direct, from: direct, to: api, inject: {credential: token, as: bearer}}
  - {name: lb, from: lb, to: api, inject: {credential: token, as: bearer}}
default: deny
`

// Loopback addresses of the PROXY protocol tests.
const (
	ppLB     = "127.0.0.1" // the trusted load balancer
	ppBehind = "127.0.0.2" // the client behind it
	ppDirect = "127.0.0.3" // a client that is no load balancer
)

// startPPGateway runs a gateway whose two proxy listeners read PROXY
// headers from 127.0.0.1, with a short read_header_timeout.
func startPPGateway(t testing.TB, required bool) *testGateway {
	t.Helper()
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(ppPolicy))
	tg.run(t, fmt.Sprintf(`tls_listen: 127.0.0.1:0
tls: {cert: listener.pem, key: listener-key.pem}
limits: {read_header_timeout: 1s}
proxy_protocol:
  listen: {trusted: [%s/32], required: %t}
  tls_listen: {trusted: [%s/32], required: %t}
resolve:
  "api.origin.test:443": %q
`, ppLB, required, ppLB, required, tg.origin.addr))
	return tg
}

// ppHeader is a header kind of the table: its bytes for a client at src.
type ppHeader struct {
	name  string
	bytes func(src string) []byte
}

func v2Header(cmd proxyproto.ProtocolVersionAndCommand, fam proxyproto.AddressFamilyAndProtocol, src string) []byte {
	h := &proxyproto.Header{Version: 2, Command: cmd, TransportProtocol: fam,
		SourceAddr: &net.TCPAddr{IP: net.ParseIP(src), Port: 40000}, DestinationAddr: &net.TCPAddr{IP: net.ParseIP(ppLB), Port: 3128}}
	if fam.IsDatagram() && !fam.IsUnix() {
		h.SourceAddr, h.DestinationAddr = &net.UDPAddr{IP: net.ParseIP(src), Port: 40000}, &net.UDPAddr{IP: net.ParseIP(ppLB), Port: 3128}
	}
	if fam.IsUnix() {
		h.SourceAddr, h.DestinationAddr = &net.UnixAddr{Net: "unix", Name: "/run/a"}, &net.UnixAddr{Net: "unix", Name: "/run/b"}
	}
	b, err := h.Format()
	if err != nil {
		panic(err)
	}
	return b
}

var ppHeaders = map[string]ppHeader{
	"none": {"none", func(string) []byte { return nil }},
	"v1":   {"v1", func(src string) []byte { return []byte("PROXY TCP4 " + src + " " + ppLB + " 40000 3128\r\n") }},
	"v2":   {"v2", func(src string) []byte { return v2Header(proxyproto.PROXY, proxyproto.TCPv4, src) }},
	"v2-tlv": {"v2-tlv", func(src string) []byte {
		// An AWS VPC endpoint TLV (0xEA) and an SSL TLV naming a
		// certificate subject: ignored, never identity.
		h := v2Header(proxyproto.PROXY, proxyproto.TCPv4, src)
		tlvs := []byte{0xEA, 0x00, 0x05, 0x01, 'v', 'p', 'c', 'e', 0x20, 0x00, 0x05, 0x01, 0, 0, 0, 0}
		h[14], h[15] = 0, byte(12+len(tlvs))
		return append(h, tlvs...)
	}},
	"v2-local":   {"v2-local", func(string) []byte { return v2Header(proxyproto.LOCAL, proxyproto.UNSPEC, "") }},
	"v1-unknown": {"v1-unknown", func(string) []byte { return []byte("PROXY UNKNOWN\r\n") }},
	"v2-unix":    {"v2-unix", func(string) []byte { return v2Header(proxyproto.PROXY, proxyproto.UnixStream, "") }},
	"garbage":    {"garbage", func(string) []byte { return []byte("PROXY TCP4 not-an-address\r\n") }},
	"v2-garbage": {"v2-garbage", func(string) []byte { return append(append([]byte{}, proxyproto.SIGV2...), 0x99, 0x11, 0, 0) }},
	"oversized":  {"oversized", func(string) []byte { return []byte("PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n") }},
}

// ppWant is a case's outcome: refused with code, or served with the
// workload, source and via its audit line names.
type ppWant struct {
	code                  string
	workload, source, via string
}

// TestProxyProtocolClasses drives each class of connection — a trusted
// load balancer or another peer, a header of each kind or none, sent
// whole, a byte at a time, or cut short and stalled, on a listener that
// requires it or not — through each way a client uses the gateway (a
// CONNECT tunnel, an absolute-form request, a CONNECT over tls_listen),
// and checks the outcome: served, with the header's source as the
// workload's source factor and audit source and the load balancer as via,
// or refused before a byte is read as HTTP, with its reason code. A peer
// outside trusted gets the identity of its own address whatever header
// it forges (the differential: each refused forged header's line names
// the workload and source its connection without a header gets).
func TestProxyProtocolClasses(t *testing.T) {
	type tcase struct {
		peer     string // ppLB (trusted) or ppDirect
		header   string
		delivery string // whole, bytewise, stall
		required bool
		want     ppWant
	}
	behind := ppWant{workload: "behind-lb", source: ppBehind, via: ppLB}
	lb := ppWant{workload: "lb", source: ppLB}
	direct := ppWant{workload: "direct", source: ppDirect}
	invalid := ppWant{code: codeProxyProtocolInvalid, workload: "lb", source: ppLB}
	untrusted := ppWant{code: codeProxyProtocolUntrusted, workload: "direct", source: ppDirect}
	var cases []tcase
	for _, required := range []bool{false, true} {
		noHeader := lb
		if required {
			noHeader = ppWant{code: codeProxyProtocolMissing, workload: "lb", source: ppLB}
		}
		cases = append(cases,
			tcase{ppLB, "none", "whole", required, noHeader},
			tcase{ppLB, "v1", "whole", required, behind},
			tcase{ppLB, "v2", "whole", required, behind},
			tcase{ppLB, "v2-tlv", "whole", required, behind},
			tcase{ppLB, "v1", "bytewise", required, behind},
			tcase{ppLB, "v2", "bytewise", required, behind},
			tcase{ppLB, "v2-local", "whole", required, lb},
			tcase{ppLB, "v1-unknown", "whole", required, lb},
			tcase{ppLB, "v2-unix", "whole", required, invalid},
			tcase{ppLB, "garbage", "whole", required, invalid},
			tcase{ppLB, "v2-garbage", "whole", required, invalid},
			tcase{ppLB, "oversized", "whole", required, invalid},
			tcase{ppLB, "v2", "stall", required, invalid},
			tcase{ppLB, "v1", "stall", required, invalid},
			// A peer outside trusted: required does not apply to it, and
			// whatever header it sends is refused, never read.
			tcase{ppDirect, "none", "whole", required, direct},
			tcase{ppDirect, "v1", "whole", required, untrusted},
			tcase{ppDirect, "v2", "whole", required, untrusted},
			tcase{ppDirect, "v1", "bytewise", required, untrusted},
			tcase{ppDirect, "v2", "bytewise", required, untrusted},
			tcase{ppDirect, "v2-local", "whole", required, untrusted},
			tcase{ppDirect, "v1-unknown", "whole", required, untrusted},
			tcase{ppDirect, "garbage", "whole", required, untrusted},
			tcase{ppDirect, "oversized", "whole", required, untrusted},
			tcase{ppDirect, "v2", "stall", required, untrusted},
		)
	}
	gws := map[bool]*testGateway{false: startPPGateway(t, false), true: startPPGateway(t, true)}
	n := 0
	for _, c := range cases {
		for _, mode := range []string{"connect", "absolute", "tls_listen"} {
			n++
			id := fmt.Sprintf("case-%d", n)
			name := fmt.Sprintf("%s/%s/%s/required=%t/%s", map[string]string{ppLB: "trusted", ppDirect: "untrusted"}[c.peer], c.header, c.delivery, c.required, mode)
			t.Run(name, func(t *testing.T) {
				tg := gws[c.required]
				from := len(auditLines(tg))
				hdr := ppHeaders[c.header].bytes(ppBehind)
				status, err := ppExchange(tg, mode, c.peer, hdr, c.delivery, id)
				if c.want.code != "" {
					if status != 0 {
						t.Fatalf("answered %d, want the connection refused (%s) without an answer", status, c.want.code)
					}
				} else if err != nil {
					t.Fatalf("exchange: %v", err)
				} else if mode != "absolute" && status != http.StatusOK {
					t.Fatalf("status %d, want 200", status)
				}
				line := ppAuditLine(t, tg, from, id, c.want.code)
				for k, want := range map[string]string{"workload": c.want.workload, "source": c.want.source, "via": c.want.via} {
					if got, _ := line[k].(string); got != want {
						t.Errorf("audit %s = %q, want %q (line %v)", k, got, want, line)
					}
				}
				if c.want.code == "" && mode != "absolute" && c.want.workload == "behind-lb" {
					// (Both gateways' static provider reads the one
					// environment variable, which the second set.)
					all := tg.origin.all()
					if got := all[len(all)-1]; got.Path != "/"+id || !strings.HasPrefix(got.Header.Get("Authorization"), "Bearer gw-test-secret-") {
						t.Errorf("origin saw %s with Authorization %t, want /%s with the credential", got.Path, got.Header.Get("Authorization") != "", id)
					}
				}
			})
		}
	}
}

// ppAuditLine waits for the case's audit line after the from'th: the
// refusal with code, or the request line of path /id.
func ppAuditLine(t *testing.T, tg *testGateway, from int, id, code string) map[string]any {
	t.Helper()
	var line map[string]any
	waitFor(t, 10*time.Second, "the case's audit line", func() bool {
		all := auditLines(tg)
		for j := from; j < len(all); j++ {
			if code != "" && all[j]["code"] == code || code == "" && all[j]["path"] == "/"+id {
				line = all[j]
				return true
			}
		}
		return false
	})
	return line
}

// ppExchange connects from the loopback address peer to the listener of
// mode, sends hdr (whole, a byte at a time, or its first half and then
// nothing until the gateway closes), and asks for https://api.origin.test/id
// the mode's way. It returns the status of the answer, 0 when the
// connection was closed without one.
func ppExchange(tg *testGateway, mode, peer string, hdr []byte, delivery, id string) (int, error) {
	listener := "listen"
	if mode == "tls_listen" {
		listener = "tls_listen"
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(peer)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", tg.listenerAddr(listener))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	switch delivery {
	case "whole":
		if _, err := c.Write(hdr); err != nil {
			return 0, err
		}
	case "bytewise":
		for i := range hdr {
			if _, err := c.Write(hdr[i : i+1]); err != nil {
				return 0, err
			}
		}
	case "stall":
		if _, err := c.Write(hdr[:len(hdr)/2]); err != nil {
			return 0, err
		}
		n, err := io.Copy(io.Discard, c)
		if n > 0 {
			return -1, fmt.Errorf("answered %d bytes to a stalled header", n)
		}
		return 0, err
	}
	var rw io.ReadWriter = c
	if mode == "tls_listen" {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(tg.pki.caPEM)
		tc := tls.Client(c, &tls.Config{ServerName: "credgate.test", RootCAs: pool})
		if err := tc.Handshake(); err != nil {
			return 0, err
		}
		rw = tc
	}
	br := bufio.NewReader(rw)
	if mode == "absolute" {
		fmt.Fprintf(rw, "GET http://%s/%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", apiHost, id, apiHost)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	fmt.Fprintf(rw, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	inner := tls.Client(&rwConn{Conn: c, rw: struct {
		io.Reader
		io.Writer
	}{br, rw}}, &tls.Config{ServerName: apiHost, RootCAs: tg.caPool})
	if err := inner.Handshake(); err != nil {
		return 0, fmt.Errorf("tunnel TLS: %w", err)
	}
	fmt.Fprintf(inner, "GET /%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", id, apiHost)
	resp, err = http.ReadResponse(bufio.NewReader(inner), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// rwConn is a connection whose reads and writes go through rw (a buffered
// reader over it, or a TLS layer).
type rwConn struct {
	net.Conn
	rw io.ReadWriter
}

func (c *rwConn) Read(p []byte) (int, error)  { return c.rw.Read(p) }
func (c *rwConn) Write(p []byte) (int, error) { return c.rw.Write(p) }

// TestForgedProxyHeaderNeverChangesIdentity is the differential: from a
// peer outside proxy_protocol.trusted, a connection with a PROXY header
// naming any address (the trusted client's, the load balancer's, its
// own, IPv6) is audited with the same workload and source as the same
// peer's connection without one, and is never served.
func TestForgedProxyHeaderNeverChangesIdentity(t *testing.T) {
	tg := startPPGateway(t, false)
	from := len(auditLines(tg))
	if _, err := ppExchange(tg, "connect", ppDirect, nil, "whole", "baseline"); err != nil {
		t.Fatal(err)
	}
	base := ppAuditLine(t, tg, from, "baseline", "")
	forged := [][]byte{
		[]byte("PROXY TCP4 " + ppBehind + " " + ppLB + " 1 2\r\n"),
		[]byte("PROXY TCP4 " + ppLB + " " + ppLB + " 1 2\r\n"),
		[]byte("PROXY TCP4 " + ppDirect + " " + ppLB + " 1 2\r\n"),
		[]byte("PROXY TCP6 ::1 ::1 1 2\r\n"),
		[]byte("PROXY UNKNOWN\r\n"),
		v2Header(proxyproto.PROXY, proxyproto.TCPv4, ppBehind),
		v2Header(proxyproto.LOCAL, proxyproto.UNSPEC, ""),
	}
	for i, h := range forged {
		for _, mode := range []string{"connect", "absolute", "tls_listen"} {
			from := len(auditLines(tg))
			status, _ := ppExchange(tg, mode, ppDirect, h, "whole", fmt.Sprintf("forged-%d", i))
			if status != 0 {
				t.Errorf("forged header %q on %s: answered %d, want refused", h, mode, status)
			}
			got := ppAuditLine(t, tg, from, "", codeProxyProtocolUntrusted)
			for _, k := range []string{"workload", "source"} {
				if got[k] != base[k] {
					t.Errorf("forged header %q on %s: %s %v, without the header %v", h, mode, k, got[k], base[k])
				}
			}
			if _, ok := got["via"]; ok {
				t.Errorf("forged header %q on %s: via %v audited", h, mode, got["via"])
			}
		}
	}
}

// TestProxyProtocolPerSourceLimit: behind a load balancer,
// max_connections_per_source counts the client the header names, not
// the load balancer: two clients each get their cap, and the third
// connection of one is refused while the other's still gets in.
func TestProxyProtocolPerSourceLimit(t *testing.T) {
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(ppPolicy))
	tg.run(t, fmt.Sprintf(`limits: {max_connections_per_source: 2}
proxy_protocol:
  listen: {trusted: [%s/32]}
`, ppLB))
	open := func(src string) (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", tg.listenerAddr("listen"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		fmt.Fprintf(c, "PROXY TCP4 %s %s 40000 3128\r\nGET http://unknown.test/ HTTP/1.1\r\nHost: unknown.test\r\n\r\n", src, ppLB)
		br := bufio.NewReader(c)
		return c, br
	}
	status := func(br *bufio.Reader) string {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		return fmt.Sprint(resp.StatusCode, " ", resp.Header.Get(ReasonHeader))
	}
	for _, src := range []string{"10.0.0.1", "10.0.0.2"} {
		for i := range 2 {
			_, br := open(src)
			if got := status(br); strings.HasPrefix(got, "503") {
				t.Fatalf("%s connection %d: %s, want admitted", src, i+1, got)
			}
		}
	}
	_, br := open("10.0.0.1")
	if got := status(br); !strings.HasPrefix(got, "503") {
		t.Errorf("third connection of 10.0.0.1: %s, want 503 connection_limit", got)
	}
}

// TestProxyProtocolConfig: the settings a load can refuse, each with its
// key and the fix.
func TestProxyProtocolConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    ProxyProtocolListeners
		tls  bool
		want string
	}{
		{"ok", ProxyProtocolListeners{Listen: ProxyProtocol{Trusted: []string{"10.0.0.0/24", "fd00::/64"}, Required: true}}, false, ""},
		{"bare address", ProxyProtocolListeners{Listen: ProxyProtocol{Trusted: []string{"10.0.0.1"}}}, false, "proxy_protocol.listen.trusted[0]: \"10.0.0.1\" has no prefix length; write 10.0.0.1/32"},
		{"every peer", ProxyProtocolListeners{Listen: ProxyProtocol{Trusted: []string{"0.0.0.0/0"}}}, false, "trusts every peer"},
		{"every v6 peer", ProxyProtocolListeners{TLSListen: ProxyProtocol{Trusted: []string{"::/0"}}}, true, "proxy_protocol.tls_listen.trusted[0]: \"::/0\" trusts every peer"},
		{"host bits", ProxyProtocolListeners{Listen: ProxyProtocol{Trusted: []string{"10.0.0.1/24"}}}, false, "did you mean 10.0.0.0/24"},
		{"not a cidr", ProxyProtocolListeners{Listen: ProxyProtocol{Trusted: []string{"lb.example"}}}, false, "is not a CIDR"},
		{"mapped", ProxyProtocolListeners{Listen: ProxyProtocol{Trusted: []string{"::ffff:10.0.0.0/120"}}}, false, "IPv4-mapped"},
		{"required alone", ProxyProtocolListeners{Listen: ProxyProtocol{Required: true}}, false, "proxy_protocol.listen: required is set but trusted is empty"},
		{"tls without tls_listen", ProxyProtocolListeners{TLSListen: ProxyProtocol{Trusted: []string{"10.0.0.0/8"}}}, false, "proxy_protocol.tls_listen: is set but tls_listen is not"},
	} {
		err := errors.Join(tc.p.check(tc.tls)...)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestUntrustedHeaderLooksNoFurther: the look at an untrusted peer's first
// bytes stops at the first byte that cannot begin a signature, and
// consumes nothing.
func TestUntrustedHeaderLooksNoFurther(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"GET / HTTP/1.1\r\n", proxyproto.ErrNoProxyProtocol},
		{"POST / HTTP/1.1\r\n", proxyproto.ErrNoProxyProtocol},
		{"PROXY TCP4", errUntrustedHeader},
		{"PROX", proxyproto.ErrNoProxyProtocol}, // then the end of the stream
		{string(proxyproto.SIGV2), errUntrustedHeader},
		{"\r\nGET / HTTP/1.1\r\n", proxyproto.ErrNoProxyProtocol},
		{"\x16\x03\x01", proxyproto.ErrNoProxyProtocol},
	} {
		br := bufio.NewReaderSize(bytes.NewReader([]byte(tc.in)), proxyHeaderBuffer)
		if err := untrustedHeader(br); !errors.Is(err, tc.want) {
			t.Errorf("%q: %v, want %v", tc.in, err, tc.want)
		}
		if rest, _ := io.ReadAll(br); string(rest) != tc.in {
			t.Errorf("%q: consumed, %q left", tc.in, rest)
		}
	}
}

// FuzzProxyHeader: for any bytes, readProxyHeader never panics; from an
// untrusted peer it consumes nothing and reports a header exactly when
// the bytes begin with a signature; from a trusted one a source is
// returned only from a header that parsed, and it is a TCP client address
// (never unspecified, multicast or mapped), and a header refused or absent
// leaves no source.
func FuzzProxyHeader(f *testing.F) {
	for _, h := range ppHeaders {
		f.Add(append(h.bytes(ppBehind), "GET / HTTP/1.1\r\n\r\n"...))
	}
	f.Add([]byte("PROXY TCP6 ::ffff:10.0.0.1 ::1 1 2\r\n"))
	f.Add([]byte("PROXY TCP4 0.0.0.0 127.0.0.1 1 2\r\n"))
	f.Add(v2Header(proxyproto.PROXY, proxyproto.UDPv4, ppBehind))
	f.Add(v2Header(proxyproto.PROXY, proxyproto.TCPv6, "::1"))
	f.Add([]byte("\x16\x03\x01\x00\x05hello"))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), proxyHeaderBuffer)
		_, _, err := readProxyHeader(br, false)
		rest, _ := io.ReadAll(br)
		if !bytes.Equal(rest, data) {
			t.Fatalf("untrusted: consumed %d bytes", len(data)-len(rest))
		}
		sig := bytes.HasPrefix(data, proxyproto.SIGV1) || bytes.HasPrefix(data, proxyproto.SIGV2)
		if got := errors.Is(err, errUntrustedHeader); got != sig {
			t.Fatalf("untrusted: header %t, signature %t (%v)", got, sig, err)
		}
		br = bufio.NewReaderSize(bytes.NewReader(data), proxyHeaderBuffer)
		src, local, err := readProxyHeader(br, true)
		switch {
		case err != nil || local:
			if src.IsValid() {
				t.Fatalf("trusted: source %s with err %v, local %t", src, err, local)
			}
			if errors.Is(err, proxyproto.ErrNoProxyProtocol) {
				if rest, _ := io.ReadAll(br); !bytes.Equal(rest, data) {
					t.Fatalf("trusted, no header: consumed %d bytes", len(data)-len(rest))
				}
			}
		default:
			if !sig {
				t.Fatalf("trusted: source %s from bytes without a signature", src)
			}
			if a := src.Addr(); !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.Is4In6() {
				t.Fatalf("trusted: source %s", src)
			}
		}
	})
}

// TestProxyProtocolViaOnEveryLine: every audit line of a connection whose
// source a trusted PROXY header named carries that source and the load
// balancer as via, whatever wrote it: a refused CONNECT, a refused
// absolute-form request, a request that does not parse (on the listener
// and inside a tunnel), a tunnelled request, and an HTTP/2 request the
// tunnel's HTTP/2 server refuses (auditInTunnel; it had no via before).
func TestProxyProtocolViaOnEveryLine(t *testing.T) {
	tg := startPPGateway(t, false)
	hdr := "PROXY TCP4 " + ppBehind + " " + ppLB + " 40000 3128\r\n"
	send := func(s string) {
		c, err := net.Dial("tcp", tg.listenerAddr("listen"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		fmt.Fprint(c, hdr+s)
		_, _ = io.Copy(io.Discard, c)
	}
	from := len(auditLines(tg))
	send("CONNECT nowhere.test:443 HTTP/1.1\r\nHost: nowhere.test:443\r\n\r\n")
	send("GET http://nowhere.test/x HTTP/1.1\r\nHost: nowhere.test\r\nConnection: close\r\n\r\n")
	send("GET http://nowhere.test/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
	// A tunnel whose second request does not parse.
	c, err := net.Dial("tcp", tg.listenerAddr("listen"))
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(c, "%sCONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", hdr, apiHost, apiHost)
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	inner := tls.Client(&rwConn{Conn: c, rw: struct {
		io.Reader
		io.Writer
	}{br, c}}, &tls.Config{ServerName: apiHost, RootCAs: tg.caPool, NextProtos: []string{"http/1.1"}})
	fmt.Fprintf(inner, "GET /via-ok HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
	ibr := bufio.NewReader(inner)
	if resp, err := http.ReadResponse(ibr, nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("tunnelled request: %v %v", resp, err)
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	fmt.Fprintf(inner, "GET /a b c HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
	_, _ = io.Copy(io.Discard, ibr)
	c.Close()
	// An HTTP/2 tunnel whose request the HTTP/2 server refuses.
	c, err = net.Dial("tcp", tg.listenerAddr("listen"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(c, "%sCONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", hdr, apiHost, apiHost)
	var head []byte
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) { // byte by byte: nothing of the TLS stream
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("CONNECT: %v after %q", err, head)
		}
		head = append(head, b[0])
	}
	tc := tls.Client(c, &tls.Config{ServerName: apiHost, RootCAs: tg.caPool, NextProtos: []string{"h2"}})
	if err := tc.Handshake(); err != nil || tc.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatalf("h2 tunnel: %v %q", err, tc.ConnectionState().NegotiatedProtocol)
	}
	_, _ = io.WriteString(tc, http2.ClientPreface)
	h := &h2Raw{t: t, c: tc, fr: http2.NewFramer(tc, tc)}
	h.enc, h.dec = hpack.NewEncoder(&h.hbuf), hpack.NewDecoder(4096, nil)
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	h.headers(1, [][2]string{{":method", "GET"}, {":scheme", "ftp"}, {":authority", apiHost}, {":path", "/h2"}}, true)
	var lines []map[string]any
	waitFor(t, 10*time.Second, "the audit lines", func() bool {
		lines = auditLines(tg)[from:]
		return len(lines) >= 6
	})
	var got []string
	for _, l := range lines {
		got = append(got, fmt.Sprint(l["method"], " ", l["path"], " ", l["code"]))
		if l["source"] != ppBehind || l["via"] != ppLB {
			t.Errorf("line %v %v: source %v via %v, want %s via %s", l["path"], l["code"], l["source"], l["via"], ppBehind, ppLB)
		}
	}
	want := []string{"CONNECT  no_rule", "GET /x no_rule", "  malformed_request", "GET /via-ok ", "  malformed_request", "  " + codeHTTP2Refused}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines %q, want %q", got, want)
	}
}
