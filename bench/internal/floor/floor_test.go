package floor

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/bench/internal/loadgen"
	"github.com/credgate/credgate/bench/internal/origin"
	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/internal/testpki"
)

const host = "api.origin.test"

// naiveInject is inject's specification: the line after the first CRLF,
// the chunk unchanged without one.
func naiveInject(chunk, line []byte) []byte {
	i := bytes.Index(chunk, []byte("\r\n"))
	if i < 0 {
		return bytes.Clone(chunk)
	}
	return append(append(append([]byte{}, chunk[:i+2]...), line...), chunk[i+2:]...)
}

func injectCopy(chunk, line []byte) []byte {
	buf := make([]byte, len(line)+len(chunk))
	copy(buf[len(line):], chunk)
	return bytes.Clone(inject(buf, len(line), len(chunk), line))
}

func TestInject(t *testing.T) {
	line := []byte("Authorization: Bearer tok\r\n")
	for _, tc := range []struct{ chunk, want string }{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET / HTTP/1.1\r\nAuthorization: Bearer tok\r\nHost: a\r\n\r\n"},
		{"GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nAuthorization: Bearer tok\r\n\r\n"},
		{"\r\nrest", "\r\nAuthorization: Bearer tok\r\nrest"},
		{"a\r\n", "a\r\nAuthorization: Bearer tok\r\n"},
		{"no line end", "no line end"},
		{"a\rb\nc", "a\rb\nc"},
		{"", ""},
	} {
		if diff := cmp.Diff(tc.want, string(injectCopy([]byte(tc.chunk), line))); diff != "" {
			t.Errorf("inject(%q) (-want +got):\n%s", tc.chunk, diff)
		}
	}
}

// FuzzInject checks inject, which moves bytes within one buffer, against
// the naive concatenation.
func FuzzInject(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), []byte("Authorization: Bearer x\r\n"))
	f.Add([]byte("\r\n"), []byte("L\r\n"))
	f.Add([]byte("x\r\r\n\n"), []byte(""))
	f.Add([]byte("no crlf"), []byte("a long line that is longer than the chunk\r\n"))
	f.Fuzz(func(t *testing.T, chunk, line []byte) {
		if got, want := injectCopy(chunk, line), naiveInject(chunk, line); !bytes.Equal(got, want) {
			t.Errorf("inject(%q, %q) = %q, want %q", chunk, line, got, want)
		}
	})
}

// startFloor runs a floor whose resolve map sends host:443 to addr.
func startFloor(t *testing.T, addr string, originCA *testpki.Authority, header string) (proxyAddr string, ca *testpki.Authority, p *Proxy) {
	t.Helper()
	ca, err := testpki.NewAuthority("floor test CA")
	if err != nil {
		t.Fatal(err)
	}
	p, err = New(Config{CA: ca, UpstreamRoots: originCA.Pool(), Resolve: map[string]string{host + ":443": addr}, Header: header})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), ca, p
}

// idle returns how many idle upstream connections p keeps for host:443.
func idle(p *Proxy) int {
	t := p.targets[host+":443"]
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.idle)
}

// rawOrigin is a TLS server that hands each read it makes to the test and
// answers it with the bytes the test gives it, on any connection.
type rawOrigin struct {
	addr    string
	ca      *testpki.Authority
	got     chan []byte
	replies chan []byte
	conns   atomic.Int32
}

func startRawOrigin(t *testing.T) *rawOrigin {
	t.Helper()
	ca, err := testpki.NewAuthority("floor test origin CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf(host)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	o := &rawOrigin{addr: ln.Addr().String(), ca: ca, got: make(chan []byte, 16), replies: make(chan []byte, 16)}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.conns.Add(1)
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					o.got <- bytes.Clone(buf[:n])
					if _, err := c.Write(<-o.replies); err != nil {
						return
					}
				}
			}()
		}
	}()
	return o
}

// TestRelayBytes sends requests through the floor to an origin that
// records every byte: each read arrives with the header line after its
// first CRLF and is otherwise unchanged (a read of a body announced by
// Content-Length is unchanged), each answer arrives unchanged
// (also one larger than a relay buffer), and a second client connection
// reuses the first one's upstream connection.
func TestRelayBytes(t *testing.T) {
	o := startRawOrigin(t)
	proxyAddr, ca, p := startFloor(t, o.addr, o.ca, "Authorization: Bearer tok")
	big := bytes.Repeat([]byte("0123456789\r\n\x00\xff"), 1000)
	cases := []struct{ req, want, reply string }{
		{"GET /v1 HTTP/1.1\r\nHost: api.origin.test\r\n\r\n", "GET /v1 HTTP/1.1\r\nAuthorization: Bearer tok\r\nHost: api.origin.test\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
		// A body announced by Content-Length passes unchanged, CRLFs and
		// all, in the head's read and in the reads after it.
		{"POST /v1 HTTP/1.1\r\nContent-Length: 12\r\n\r\nab\r\n", "POST /v1 HTTP/1.1\r\nAuthorization: Bearer tok\r\nContent-Length: 12\r\n\r\nab\r\n", "1"},
		{"cd\r\nef\r\n", "cd\r\nef\r\n", "2"},
		{"\x00\xff\r\n\r\nbinary\r\n", "\x00\xff\r\nAuthorization: Bearer tok\r\n\r\nbinary\r\n", "\r\n\r\n\x00"},
		{"no line end", "no line end", string(big)},
	}
	lg := &loadgen.Target{Name: "floor", Proxy: proxyAddr, Host: host, Port: 443, Roots: ca.Pool(), Timeout: 10 * time.Second}
	for i := range 2 {
		tc, err := loadgen.DialTLS(context.Background(), lg, "http/1.1")
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		for _, c := range cases {
			o.replies <- []byte(c.reply)
			if _, err := tc.Write([]byte(c.req)); err != nil {
				t.Fatalf("write %q: %v", c.req, err)
			}
			if diff := cmp.Diff(c.want, string(<-o.got)); diff != "" {
				t.Errorf("origin got (-want +got):\n%s", diff)
			}
			got := make([]byte, len(c.reply))
			if _, err := io.ReadFull(tc, got); err != nil {
				t.Fatalf("read answer to %q: %v", c.req, err)
			}
			if !bytes.Equal(got, []byte(c.reply)) {
				t.Errorf("client got %q, want %q", got, c.reply)
			}
		}
		_ = tc.Close()
		// The floor gives the upstream connection back once it has read
		// the client's close.
		poll.True(t, 10*time.Second, "the upstream connection back in the idle pool", func() bool { return idle(p) == 1 })
	}
	if n := o.conns.Load(); n != 1 {
		t.Errorf("origin saw %d connections, want 1 (the second client reuses the first upstream connection)", n)
	}
}

// TestWithOrigin runs the bench's own origin, which refuses a request
// without the token, and client behind the floor: keep-alive requests,
// new connections that resume their TLS session to the floor, and a
// CONNECT outside the resolve map.
func TestWithOrigin(t *testing.T) {
	originCA, err := testpki.NewAuthority("floor test origin CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := originCA.Leaf(host)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := origin.Start(ln, origin.Config{Certificate: leaf, Token: "tok"})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
	})
	proxyAddr, ca, _ := startFloor(t, ln.Addr().String(), originCA, "Authorization: Bearer tok")
	lg := &loadgen.Target{Name: "floor", Proxy: proxyAddr, Host: host, Port: 443, Path: "/v1/charges", Roots: ca.Pool()}
	ctx := context.Background()
	if err := loadgen.Check(ctx, lg); err != nil {
		t.Fatalf("Check: %v", err)
	}
	c, err := loadgen.Dial(ctx, lg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := c.Do(); err != nil {
			t.Fatalf("keep-alive request %d: %v", i, err)
		}
	}
	_ = c.Close()

	resuming := lg.WithSessions(4)
	for i := range 3 {
		c, err := loadgen.Dial(ctx, resuming)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Do(); err != nil {
			t.Fatalf("new connection %d: %v", i, err)
		}
		if i > 0 && !c.Resumed() {
			t.Errorf("new connection %d did not resume its TLS session", i)
		}
		_ = c.Close()
	}

	// An upload's body passes unchanged (the origin counts it against
	// Content-Length; a header line put after one of its CRLFs would be
	// counted), and so does a download's.
	const big = 4 << 20
	lines := strings.NewReader(strings.Repeat("a body line\r\n", big/13+1))
	if _, err := loadgen.Upload(ctx, lg, origin.UploadPath, io.LimitReader(lines, big), big); err != nil {
		t.Errorf("upload of %d bytes through the floor: %v", big, err)
	}
	if _, err := loadgen.Download(ctx, lg, origin.DownloadPath+"?bytes=4194304", big); err != nil {
		t.Errorf("download of %d bytes through the floor: %v", big, err)
	}

	// The origin refuses a request without the token: the floor is what
	// puts it there.
	wrong := *lg
	wrong.Proxy = ""
	wrong.Addr = ln.Addr().String()
	wrong.Roots = originCA.Pool()
	var se *loadgen.StatusError
	if err := loadgen.Check(ctx, &wrong); !errors.As(err, &se) || se.Code != 401 {
		t.Errorf("direct request without the token: %v, want status 401", err)
	}

	other := *lg
	other.Host = "other.test"
	if err := loadgen.Check(ctx, &other); !errors.As(err, &se) || se.Code != 403 {
		t.Errorf("CONNECT outside the resolve map: %v, want status 403", err)
	}
}

func TestBodyAfter(t *testing.T) {
	for _, tc := range []struct {
		head string
		want int64
	}{
		{"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 0},
		{"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n", 10},
		{"POST / HTTP/1.1\r\ncontent-length:10\r\nHost: h\r\n\r\n0123", 6},
		{"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n0123", 0},
		{"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 0},
		{"POST / HTTP/1.1\r\nX-Content-Length: 9\r\n\r\n", 0},
		{"POST / HTTP/1.1\r\nContent-Length: 9\r\n", 0}, // no end of head
	} {
		if got := bodyAfter([]byte(tc.head)); got != tc.want {
			t.Errorf("bodyAfter(%q) = %d, want %d", tc.head, got, tc.want)
		}
	}
}
