//go:build linux

package runrelay

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRelaySameUser: with SameUser (Linux), a client that presents no
// proxy credentials is admitted when its socket is this user's — over
// an IPv4 socket and over an IPv6 one connected to ::ffff:127.0.0.1, as
// Java connects — and one presenting a wrong secret is still refused.
func TestRelaySameUser(t *testing.T) {
	gw := startFakeGateway(t, nil)
	r := startRelay(t, Config{Gateway: &url.URL{Scheme: "http", Host: gw.ln.Addr().String()}, Token: token, SameUser: true})
	dial4 := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp4", r.Addr())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, c := range []struct {
		name  string
		dial  func(*testing.T) net.Conn
		auth  string
		admit bool
	}{
		{"IPv4, no credentials", dial4, "", true},
		{"IPv6 socket, v4-mapped", func(t *testing.T) net.Conn { return dialMapped(t, r.Addr()) }, "", true},
		{"wrong secret", dial4, basic(User, "wrong"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := c.dial(t)
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			req := "CONNECT api.example.test:443 HTTP/1.1\r\nHost: api.example.test:443\r\n"
			if c.auth != "" {
				req += "Proxy-Authorization: " + c.auth + "\r\n"
			}
			io.WriteString(conn, req+"\r\n")
			if !c.admit {
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil || resp.StatusCode != http.StatusProxyAuthRequired {
					t.Fatalf("%v %v, want 407", resp, err)
				}
				return
			}
			g := gw.next(t)
			got, err := http.ReadRequest(bufio.NewReader(g))
			if err != nil {
				t.Fatal(err)
			}
			if v := got.Header.Values("Proxy-Authorization"); len(v) != 1 || v[0] != "Bearer "+token {
				t.Errorf("the gateway got Proxy-Authorization %q, want the run token", v)
			}
			g.Close()
		})
	}
}

// dialMapped connects an AF_INET6 socket to addr (127.0.0.1:PORT) as
// ::ffff:127.0.0.1, as Java's dual-stack sockets do (net.Dial will not).
func dialMapped(t *testing.T, addr string) net.Conn {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Skipf("no IPv6 sockets: %v", err)
	}
	f := os.NewFile(uintptr(fd), "mapped")
	defer f.Close()
	sa := &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: netip.AddrFrom16(ap.Addr().As16()).As16()}
	if err := syscall.Connect(fd, sa); err != nil {
		t.Skipf("connect to ::ffff:%s: %v", addr, err)
	}
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestProcNetEntry: lines of /proc/net/tcp and tcp6 as a little-endian
// Linux prints them; only the socket whose local and remote addresses
// are the ones asked for gives its uid.
func TestProcNetEntry(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the sample lines are a little-endian machine's")
	}
	want := [2]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort("127.0.0.1:3128")}
	for _, c := range []struct {
		name, line string
		uid        int
		ok         bool
	}{
		{"header", "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode", 0, false},
		{"ipv4", "   3: 0100007F:9C40 0100007F:0C38 01 00000000:00000000 00:00000000 00000000  1000        0 123 1 0 20 4 30 10 -1", 1000, true},
		{"ipv4, other way round", "   4: 0100007F:0C38 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1001        0 124 1 0 20 4 30 10 -1", 0, false},
		{"ipv6 v4-mapped", "   0: 0000000000000000FFFF00000100007F:9C40 0000000000000000FFFF00000100007F:0C38 01 00000000:00000000 00:00000000 00000000  1002        0 125 1", 1002, true},
		{"another port", "   5: 0100007F:9C41 0100007F:0C38 01 00000000:00000000 00:00000000 00000000  1000        0 126", 0, false},
		{"bad uid", "   6: 0100007F:9C40 0100007F:0C38 01 00000000:00000000 00:00000000 00000000  x        0 127", 0, false},
		{"short", "   7: 0100007F:9C40 0100007F:0C38", 0, false},
		{"bad hex", "   8: 0100007G:9C40 0100007F:0C38 01 00000000:00000000 00:00000000 00000000  1000 0 1", 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			uid, ok := procNetEntry(c.line, want)
			if uid != c.uid || ok != c.ok {
				t.Errorf("procNetEntry = %d, %v, want %d, %v", uid, ok, c.uid, c.ok)
			}
		})
	}
	// This process's own connection, found in the live table.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-accepted
	defer s.Close()
	uid, err := peerUID(s)
	if err != nil || uid != os.Getuid() {
		t.Fatalf("peerUID = %d, %v, want %d", uid, err, os.Getuid())
	}
	if _, err := peerUID(fakeConn{}); err == nil {
		t.Errorf("peerUID of a non-TCP connection: %v, want an error", err)
	}
}

// fakeConn is a connection that is not TCP.
type fakeConn struct{ net.Conn }

func (fakeConn) LocalAddr() net.Addr  { return &net.UnixAddr{Name: "a", Net: "unix"} }
func (fakeConn) RemoteAddr() net.Addr { return &net.UnixAddr{Name: "b", Net: "unix"} }

// TestRelaySameUserOtherUser: a client of another user that presents no
// proxy credentials is refused 407 by a SameUser relay, and the gateway
// sees nothing of it (needs root, to run the client as nobody).
func TestRelaySameUserOtherUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) is not installed")
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	gw := startFakeGateway(t, nil)
	r := startRelay(t, Config{Gateway: &url.URL{Scheme: "http", Host: gw.ln.Addr().String()}, Token: token, SameUser: true})
	out, _ := exec.CommandContext(t.Context(), setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--",
		curl, "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "connect=%{http_connect}", "--proxy", "http://"+r.Addr(), "https://api.example.test/").CombinedOutput()
	if !strings.Contains(string(out), "connect=407") {
		t.Errorf("another user's client: %s, want the relay's 407", out)
	}
	select {
	case g := <-gw.conns:
		g.Close()
		t.Fatal("the gateway got a connection")
	default:
	}
}
