// Package floor is the least work a header-injecting MITM proxy can do on
// the benchmark's requests on this machine, in Go. Its figures bound every
// intercepting proxy measured in the same run (credgate, goproxy, squid,
// mitmproxy) from above: a proxy that serves more than the floor does less
// than the floor, and the floor does only what any of them must.
//
// It is a bound, NOT a proxy anyone should run. It parses no HTTP: it
// assumes that every read from the client that does not continue a body is
// one whole request head (true of the load generator, which writes each head
// in one TLS record), and inserts the header line after the first CRLF of
// each such read. The one thing it reads of the head is Content-Length, so
// that an upload's body (bigbody) passes unchanged. A head split across
// reads, a chunked body, pipelining, HTTP/2 or a response that outlives its
// client connection would all be mangled. It checks no
// identity, policy or SNI, logs nothing, sets no deadlines and does not
// scrub responses.
//
// What it does do, because every intercepting proxy must:
//   - read the CONNECT head and answer 200 (403 for a target outside the
//     resolve map);
//   - terminate the client's TLS with a leaf certificate for the host,
//     signed by the interception CA (ECDSA P-256, issued at start for every
//     name in the resolve map: a cache that is always warm), with session
//     tickets on, as credgate does;
//   - talk TLS to the origin, verified against the origin's CA, offering
//     http/1.1, with a client session cache for resumption;
//   - copy bytes both ways, one goroutine per direction, with buffers that
//     are reused.
//
// Upstream connections are pooled per target at the granularity of a
// client connection: a client connection takes an idle upstream connection
// (or dials one) after its CONNECT and gives it back when it ends, so
// keep-alive clients pay no pool operation per request and a new client
// connection usually pays no upstream handshake (a proxy that pools per
// request, as credgate and goproxy do, saves the same). The goroutine that
// copies responses belongs to the upstream connection and writes to
// whichever client holds it.
package floor

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/credgate/credgate/internal/testpki"
)

// bufSize is the size of each relay buffer: a whole TLS record's payload
// (16 KiB), so that a 1 GiB transfer (bigbody) is relayed a record per
// read and write, as credgate and goproxy do. With 4 KiB the floor moved
// 0.30-0.34x direct's throughput, below goproxy's 0.38-0.44x in the same
// run: not a floor.
const bufSize = 16 << 10

// Config says how the floor runs.
type Config struct {
	// CA issues the leaf certificates presented to clients.
	CA *testpki.Authority
	// UpstreamRoots verifies the origin's certificate.
	UpstreamRoots *x509.CertPool
	// Resolve maps a CONNECT target "host:port" to the address dialled;
	// any other target is refused.
	Resolve map[string]string
	// Header is the header line inserted into every request, without its
	// CRLF, e.g. "Authorization: Bearer …".
	Header string
	// MaxIdle bounds the idle upstream connections kept per target
	// (default 64, credgate's and the goproxy baseline's).
	MaxIdle int
}

// Proxy is the floor. Its maps are built by New and only read afterwards.
type Proxy struct {
	server  *tls.Config
	leaves  map[string]*tls.Certificate // by TLS server name
	targets map[string]*target          // by CONNECT target
	line    []byte                      // the header line and its CRLF
	bufs    sync.Pool                   // *[]byte of len(line)+bufSize
}

// target is one CONNECT target: where it is dialled and its idle upstream
// connections.
type target struct {
	addr    string
	client  *tls.Config
	maxIdle int
	dialer  net.Dialer

	mu   sync.Mutex
	idle []*upstream
}

// upstream is one TLS connection to the origin.
type upstream struct {
	tc *tls.Conn
	// to is the client connection that holds this one; responses go
	// there. nil while idle.
	to   atomic.Pointer[tls.Conn]
	dead atomic.Bool
}

// New issues a leaf for every host in cfg.Resolve and builds the proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.CA == nil {
		return nil, errors.New("floor: no CA")
	}
	maxIdle := cfg.MaxIdle
	if maxIdle <= 0 {
		maxIdle = 64
	}
	p := &Proxy{
		leaves:  map[string]*tls.Certificate{},
		targets: map[string]*target{},
		line:    []byte(cfg.Header + "\r\n"),
	}
	sessions := tls.NewLRUClientSessionCache(64)
	for hostPort, addr := range cfg.Resolve {
		host, _, err := net.SplitHostPort(hostPort)
		if err != nil {
			return nil, fmt.Errorf("floor: resolve %q: %w", hostPort, err)
		}
		if _, ok := p.leaves[host]; !ok {
			leaf, err := cfg.CA.Leaf(host)
			if err != nil {
				return nil, fmt.Errorf("floor: leaf for %s: %w", host, err)
			}
			p.leaves[host] = &leaf
		}
		p.targets[hostPort] = &target{
			addr: addr,
			client: &tls.Config{
				ServerName:         host,
				RootCAs:            cfg.UpstreamRoots,
				MinVersion:         tls.VersionTLS12,
				NextProtos:         []string{"http/1.1"},
				ClientSessionCache: sessions,
			},
			maxIdle: maxIdle,
			// No TCP keep-alive probes: the least set-up per connection.
			dialer: net.Dialer{KeepAlive: -1},
		}
	}
	p.server = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: p.leaf,
	}
	size := len(p.line) + bufSize
	p.bufs.New = func() any { b := make([]byte, size); return &b }
	return p, nil
}

func (p *Proxy) leaf(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c, ok := p.leaves[hello.ServerName]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("floor: no leaf for server name %q", hello.ServerName)
}

// Serve accepts connections on ln until ctx ends, then closes ln and the
// idle upstream connections (connections in use end with their clients).
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	defer p.closeIdle()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors: back off as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				t := time.NewTimer(delay)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil
				case <-t.C:
				}
				continue
			}
			return fmt.Errorf("floor: accept: %w", err)
		}
		delay = 0
		go p.handle(c)
	}
}

func (p *Proxy) closeIdle() {
	for _, t := range p.targets {
		t.mu.Lock()
		idle := t.idle
		t.idle = nil
		t.mu.Unlock()
		for _, u := range idle {
			u.close()
		}
	}
}

// Response heads of the CONNECT.
var (
	connected  = []byte("HTTP/1.1 200 Connection established\r\n\r\n")
	badRequest = []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	forbidden  = []byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	badGateway = []byte("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
)

// handle serves one client connection: CONNECT, TLS, then the copy from
// the client to the upstream with the header inserted.
func (p *Proxy) handle(raw net.Conn) {
	defer raw.Close()
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	buf := *bp
	hostPort, ok := readConnect(raw, buf)
	if !ok {
		_, _ = raw.Write(badRequest)
		return
	}
	t, ok := p.targets[string(hostPort)]
	if !ok {
		_, _ = raw.Write(forbidden)
		return
	}
	u, err := t.get()
	if err != nil {
		_, _ = raw.Write(badGateway)
		return
	}
	if _, err := raw.Write(connected); err != nil {
		t.put(u)
		return
	}
	cc := tls.Server(raw, p.server)
	if err := cc.Handshake(); err != nil {
		t.put(u)
		return
	}
	u.to.Store(cc)
	off := len(p.line)
	var bodyLeft int64 // bytes of the current request's body still to relay as they are
	for {
		n, err := cc.Read(buf[off:])
		if n > 0 {
			out := buf[off : off+n]
			if bodyLeft > 0 {
				// Body bytes: relayed unchanged (a read holding the body's
				// end and the next request's head is not handled).
				bodyLeft -= int64(n)
			} else {
				out = inject(buf, off, n, p.line)
				bodyLeft = bodyAfter(out)
			}
			if _, werr := u.tc.Write(out); werr != nil {
				u.to.Store(nil)
				u.close()
				return
			}
		}
		if err != nil {
			break
		}
	}
	u.to.Store(nil)
	t.put(u)
}

// readConnect reads the CONNECT head into buf and returns its target. The
// client must send nothing after the head before the answer (the load
// generator does not); anything else is refused.
func readConnect(c net.Conn, buf []byte) (hostPort []byte, ok bool) {
	n := 0
	for {
		m, err := c.Read(buf[n:])
		n += m
		if end := bytes.Index(buf[:n], crlfcrlf); end >= 0 {
			if end+4 != n {
				return nil, false
			}
			break
		}
		if err != nil || n == len(buf) {
			return nil, false
		}
	}
	rest, ok := bytes.CutPrefix(buf[:n], []byte("CONNECT "))
	if !ok {
		return nil, false
	}
	hostPort, _, ok = bytes.Cut(rest, []byte(" "))
	return hostPort, ok
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

// bodyAfter returns how many bytes of the body announced by the
// Content-Length in head (one read holding a whole request head and maybe
// the start of its body) are still to come after it; 0 without one. The
// only HTTP the floor reads, so that an upload's body is relayed, not
// mangled by a header line.
func bodyAfter(head []byte) int64 {
	end := bytes.Index(head, crlfcrlf)
	if end < 0 {
		return 0
	}
	const name = "\r\ncontent-length:"
	h := head[:end+2]
	for i := 0; i+len(name) <= len(h); i++ {
		if !bytes.EqualFold(h[i:i+len(name)], []byte(name)) {
			continue
		}
		v, _, _ := bytes.Cut(h[i+len(name):], crlf)
		cl, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
		if err != nil || cl <= 0 {
			return 0
		}
		return max(cl-int64(len(head)-(end+4)), 0)
	}
	return 0
}

// inject returns the n bytes read into buf[off:] with line inserted after
// their first CRLF, in place: buf[:off] is room for line (off ==
// len(line)). The bytes up to the CRLF move to the front and line goes
// between them and the rest, so only the request line is copied. A chunk
// without a CRLF is returned unchanged.
func inject(buf []byte, off, n int, line []byte) []byte {
	chunk := buf[off : off+n]
	i := bytes.Index(chunk, crlf)
	if i < 0 {
		return chunk
	}
	copy(buf, chunk[:i+2])
	copy(buf[i+2:], line)
	return buf[:off+n]
}

// get takes an idle upstream connection or dials one.
func (t *target) get() (*upstream, error) {
	t.mu.Lock()
	for len(t.idle) > 0 {
		u := t.idle[len(t.idle)-1]
		t.idle = t.idle[:len(t.idle)-1]
		if !u.dead.Load() {
			t.mu.Unlock()
			return u, nil
		}
	}
	t.mu.Unlock()
	raw, err := t.dialer.Dial("tcp", t.addr)
	if err != nil {
		return nil, fmt.Errorf("floor: dial %s: %w", t.addr, err)
	}
	tc := tls.Client(raw, t.client)
	if err := tc.Handshake(); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("floor: TLS handshake with %s: %w", t.addr, err)
	}
	u := &upstream{tc: tc}
	go u.copyResponses()
	return u, nil
}

// put gives an upstream connection back to the idle pool, or closes it
// when the pool is full.
func (t *target) put(u *upstream) {
	if u.dead.Load() {
		return
	}
	t.mu.Lock()
	if len(t.idle) < t.maxIdle {
		t.idle = append(t.idle, u)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	u.close()
}

// copyResponses copies what the origin sends to the client holding the
// connection until the origin closes it; the client is then closed too,
// so it does not wait for an answer that cannot come.
func (u *upstream) copyResponses() {
	buf := make([]byte, bufSize)
	for {
		n, err := u.tc.Read(buf)
		if n > 0 {
			if c := u.to.Load(); c != nil {
				_, _ = c.Write(buf[:n])
			}
		}
		if err != nil {
			u.close()
			if c := u.to.Load(); c != nil {
				_ = c.NetConn().Close()
			}
			return
		}
	}
}

// close closes the connection without a close_notify (the least work; the
// origin sees the end of the stream).
func (u *upstream) close() {
	u.dead.Store(true)
	_ = u.tc.NetConn().Close()
}
