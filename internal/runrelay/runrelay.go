// Package runrelay is credgate run's local relay: a proxy on loopback
// that the command uses as its HTTPS_PROXY, and that forwards each of
// its connections to the gateway with the run token added. The command
// never holds the token (it cannot read it from its environment and
// leak it), and the relay can speak TLS to the gateway's tls_listen,
// which few clients can (an https:// proxy URL).
//
// It reads one request head per connection — CONNECT host:port, or an
// absolute-form request (GET http://host/path) — checks the per-run
// secret the command presents as its proxy password (or, with
// Descendants on Linux, that a client sending no credentials is the
// command's own process), rewrites only the head's Proxy-Authorization (the command's removed, the relay's own
// added), and from then on is a byte pipe in both directions: what runs
// inside a tunnel (TLS, HTTP/2, WebSockets) is the gateway's to see,
// half-closes and aborts pass through, and buffers are bounded.
package runrelay

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credgate/credgate/internal/filewatch"
	"github.com/credgate/credgate/internal/msghead"
)

// Limits of the relay. Each connection holds at most a head buffer and
// two copy buffers.
const (
	// MaxHead is the largest request head the relay reads (the gateway's
	// own limit, limits.max_header_bytes, is checked by the gateway).
	MaxHead = 64 << 10
	// MaxConns is the most connections the relay holds at once; the
	// one over it is answered 503.
	MaxConns = 1024
	// headTimeout bounds the wait for a request head.
	headTimeout = 30 * time.Second
	// dialTimeout bounds the connection (and TLS handshake) to the
	// gateway.
	dialTimeout = 10 * time.Second
	// copyBuffer is the size of each direction's copy buffer.
	copyBuffer = 32 << 10
	// DefaultReloadInterval is Config.ReloadInterval's default, the
	// gateway's tls.reload_interval's.
	DefaultReloadInterval = 30 * time.Second
)

// User is the user name of the relay's proxy URL; the relay checks only
// the password (the secret).
const User = "credgate"

// Config is what a relay forwards to.
type Config struct {
	// Gateway is the gateway's proxy URL: http://host:port (plain TCP,
	// for a gateway on this machine) or https://host:port (TLS to its
	// tls_listen).
	Gateway *url.URL
	// Roots verify an https gateway's certificate; nil is the system
	// roots.
	Roots *x509.CertPool
	// Token is the run token the relay presents to the gateway as
	// Proxy-Authorization: Bearer on every connection; "" presents none
	// (the gateway identifies the relay's connections by their other
	// factors). It is never logged nor written anywhere else.
	Token string
	// ClientCert and ClientKey are PEM files of the client certificate
	// the relay presents to an https gateway (its tls_listen with
	// tls.client_ca or identity.mtls: the mtls factor); "" presents
	// none. They are read at Start (an error then is Start's) and again
	// every ReloadInterval when they change (internal/filewatch, as the
	// gateway reloads its own): each new connection presents the pair in
	// force, and a pair that does not load is logged and the last good
	// one kept.
	ClientCert, ClientKey string
	// ReloadInterval is how often ClientCert and ClientKey are checked;
	// 0 is DefaultReloadInterval.
	ReloadInterval time.Duration
	// Descendants admits a client that presents no proxy credentials at
	// all when its socket is this user's and held by the command's own
	// processes: the process named by SetCommand or one of its
	// descendants (Linux: the kernel's socket table and /proc; elsewhere
	// it admits none this way), for clients that cannot send the secret
	// (Java). Until SetCommand, none is admitted this way. The user
	// alone is not the boundary: the other containers of a Kubernetes
	// pod share the loopback and often the uid, and other processes of
	// this user (another credgate run) have their own runs. A client
	// presenting credentials must present the secret either way.
	Descendants bool
	// Log receives the relay's own failures (the gateway unreachable, a
	// certificate refused), each distinct message once; nil discards
	// them. No secret value is in them.
	Log io.Writer
}

// Relay is a running relay. Close it when the command has exited.
type Relay struct {
	ln       net.Listener
	gateway  *url.URL
	tls      *tls.Config // nil for an http gateway
	authLine []byte      // "Proxy-Authorization: Bearer …\r\n", or nil
	secret   []byte
	log      io.Writer
	// descendants is Config.Descendants where it is supported; command
	// is the process SetCommand named (nil: none yet).
	descendants bool
	command     atomic.Pointer[process]
	// clientCert is the client certificate in force (nil: none).
	clientCert atomic.Pointer[tls.Certificate]
	hasCert    bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	slots  chan struct{}

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	logged map[string]bool
	closed bool
}

// Start listens on 127.0.0.1 (an ephemeral port) and serves until Close
// or ctx ends.
func Start(ctx context.Context, cfg Config) (*Relay, error) {
	g := cfg.Gateway
	if g == nil || (g.Scheme != "http" && g.Scheme != "https") || g.Host == "" {
		return nil, errors.New("relay: the gateway must be an http:// or https:// proxy URL")
	}
	if (cfg.ClientCert == "") != (cfg.ClientKey == "") {
		return nil, errors.New("relay: a client certificate needs both its certificate and its key file")
	}
	if cfg.ClientCert != "" && g.Scheme != "https" {
		return nil, fmt.Errorf("relay: a client certificate is presented to an https:// gateway (its tls_listen) only; %s is plain TCP", g.Redacted())
	}
	if strings.ContainsAny(cfg.Token, "\r\n") {
		return nil, errors.New("relay: the run token holds a line break")
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, fmt.Errorf("relay: secret: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("relay: listen on 127.0.0.1: %w", err)
	}
	r := &Relay{
		ln:          ln,
		gateway:     &url.URL{Scheme: g.Scheme, Host: g.Host},
		secret:      []byte(hex.EncodeToString(secret[:])),
		log:         cfg.Log,
		descendants: cfg.Descendants && DescendantsSupported,
		slots:       make(chan struct{}, MaxConns),
		conns:       map[net.Conn]struct{}{},
		logged:      map[string]bool{},
	}
	if r.log == nil {
		r.log = io.Discard
	}
	if g.Scheme == "https" {
		r.tls = &tls.Config{
			RootCAs:    cfg.Roots,
			ServerName: g.Hostname(),
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"http/1.1"},
		}
	}
	var certs *filewatch.Reloader
	if cfg.ClientCert != "" {
		r.hasCert = true
		certs = &filewatch.Reloader{
			Paths: []string{cfg.ClientCert, cfg.ClientKey}, What: "relay client certificate",
			Interval: cmp.Or(cfg.ReloadInterval, DefaultReloadInterval),
			Log:      slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{ReplaceAttr: withoutTime})),
			Apply: func(files [][]byte) error {
				c, err := tls.X509KeyPair(files[0], files[1])
				if err != nil {
					return err
				}
				r.clientCert.Store(&c)
				return nil
			},
		}
		if _, err := certs.Load(); err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("relay: %w", err)
		}
	}
	if cfg.Token != "" {
		r.authLine = []byte("Proxy-Authorization: Bearer " + cfg.Token + "\r\n")
	}
	r.ctx, r.cancel = context.WithCancel(ctx)
	if certs != nil {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			certs.Run(r.ctx)
		}()
	}
	r.wg.Add(1)
	go r.accept()
	go func() {
		<-r.ctx.Done()
		_ = r.Close()
	}()
	return r, nil
}

// Addr is the relay's address, 127.0.0.1:PORT.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// SetCommand names the process credgate run started (Config.Descendants):
// from then on a client presenting no proxy credentials is admitted when
// its socket is held by pid or one of pid's descendants. Call it before
// the command is waited for: the process is named by its id and start
// time, so that once it has exited no process given its id later is
// taken for it.
func (r *Relay) SetCommand(pid int) {
	p := commandProcess(pid)
	r.command.Store(&p)
}

// URL is the proxy URL the command gets: http://credgate:SECRET@127.0.0.1:PORT.
func (r *Relay) URL() *url.URL {
	return &url.URL{Scheme: "http", User: url.UserPassword(User, string(r.secret)), Host: r.Addr()}
}

// Close stops the relay: the listener and every connection are closed,
// and Close returns once each connection's goroutines have ended.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.wg.Wait()
		return nil
	}
	r.closed = true
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.cancel()
	err := r.ln.Close()
	r.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// track adds c to the connections Close closes; false when the relay is
// closing (c is then closed).
func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		_ = c.Close()
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		select {
		case r.slots <- struct{}{}:
		default:
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			answer(c, http.StatusServiceUnavailable, fmt.Sprintf("credgate run relay: over %d connections at once", MaxConns))
			_ = c.Close()
			continue
		}
		if !r.track(c) {
			<-r.slots
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer func() { <-r.slots }()
			defer r.untrack(c)
			defer c.Close()
			r.serve(c)
		}()
	}
}

// serve relays one client connection.
func (r *Relay) serve(c net.Conn) {
	// Until the head is read and forwarded, a client that sends nothing
	// or reads no answer of the relay's is cut.
	_ = c.SetDeadline(time.Now().Add(headTimeout))
	br := bufio.NewReaderSize(c, MaxHead)
	block, ok := headBlock(br)
	if !ok {
		answer(c, http.StatusBadRequest, fmt.Sprintf("credgate run relay: no request head of the plain HTTP/1.1 form (CRLF line ends, no folded lines) within %d bytes", MaxHead))
		return
	}
	head := bytes.Clone(block)
	_, _ = br.Discard(len(head))
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		answer(c, http.StatusBadRequest, "credgate run relay: the request head does not parse")
		return
	}
	if !r.authorized(req.Header.Values("Proxy-Authorization")) && !r.commandPeer(c, req) {
		answerAuth(c)
		return
	}
	connect := req.Method == http.MethodConnect
	if !connect && (!req.URL.IsAbs() || req.URL.Host == "") {
		answer(c, http.StatusBadRequest, "credgate run relay: send proxy requests here (CONNECT host:port, or an absolute URL such as GET http://host/path)")
		return
	}
	// A request that is not a tunnel (CONNECT) or an upgrade is the last
	// of its connection: the relay reads no request after it, so a later
	// one would reach the gateway without the relay's rewrite.
	keep := connect || req.Header.Get("Upgrade") != ""
	out := r.rewrite(head, keep)

	gw, raw, askedCert, err := r.dial()
	if err != nil {
		msg := fmt.Sprintf("credgate run relay: the gateway at %s: %v", r.gateway, err)
		r.logOnce(msg)
		answer(c, http.StatusBadGateway, msg)
		return
	}
	_ = c.SetDeadline(time.Time{})
	if !r.track(gw) {
		return
	}
	defer r.untrack(gw)
	defer gw.Close()
	if _, err := gw.Write(out); err != nil {
		return
	}
	pipe(c, br, gw, raw, func(status int) { r.refused(status, askedCert) })
}

// commandPeer reports whether c, whose request presents no proxy
// credentials, may be admitted as the command's own process
// (Config.Descendants).
func (r *Relay) commandPeer(c net.Conn, req *http.Request) bool {
	if !r.descendants || len(req.Header.Values("Proxy-Authorization")) != 0 {
		return false
	}
	p := r.command.Load()
	return p != nil && commandPeer(c, *p) == nil
}

// refused is called with the status of the gateway's answer when it
// refused a request (403, 407): without a client certificate the
// likeliest cause the relay can name is a workload that requires the
// mtls factor.
func (r *Relay) refused(status int, askedCert bool) {
	if r.hasCert || !askedCert {
		return
	}
	r.logOnce(fmt.Sprintf("relay: the gateway at %s refused a request (%d) and had asked for a client certificate, which credgate run presents none of: if the workload requires the mtls factor, pass --gateway-cert FILE and --gateway-key FILE (env CREDGATE_GATEWAY_CERT, CREDGATE_GATEWAY_KEY)", r.gateway, status))
}

// withoutTime drops the time of the relay's reload log lines (stderr of
// an interactive command).
func withoutTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// headBlock returns the request head at the start of br, of msghead's
// plain form, within MaxHead bytes (br's size).
func headBlock(br *bufio.Reader) ([]byte, bool) {
	return msghead.Block(br, MaxHead, func([]byte) bool { return true })
}

// authorized reports whether the client's Proxy-Authorization fields are
// one Basic credential whose password is the relay's secret.
func (r *Relay) authorized(vals []string) bool {
	if len(vals) != 1 {
		return false
	}
	scheme, cred, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return false
	}
	_, pass, ok := bytes.Cut(b, []byte(":"))
	return ok && subtle.ConstantTimeCompare(pass, r.secret) == 1
}

// rewrite returns head with every Proxy-Authorization field removed and
// the relay's own (when it has a token) added after the request line,
// with Connection: close first among the fields unless keep. Every other
// byte is the client's. head is of msghead's plain form: CRLF lines,
// each field line a name, a colon and a value.
func (r *Relay) rewrite(head []byte, keep bool) []byte {
	lines := bytes.SplitAfter(head, []byte("\r\n"))
	out := make([]byte, 0, len(head)+len(r.authLine)+32)
	out = append(out, lines[0]...)
	out = append(out, r.authLine...)
	if !keep {
		out = append(out, "Connection: close\r\n"...)
	}
	for _, l := range lines[1:] {
		name, _, _ := bytes.Cut(l, []byte(":"))
		if bytes.EqualFold(bytes.TrimSpace(name), []byte("Proxy-Authorization")) {
			continue
		}
		out = append(out, l...)
	}
	return out
}

// dial connects to the gateway, with TLS for an https gateway. raw is the
// TCP connection under gw; askedCert reports whether the gateway asked
// for a client certificate (the relay presents the pair in force, or
// none).
func (r *Relay) dial() (gw net.Conn, raw *net.TCPConn, askedCert bool, err error) {
	ctx, cancel := context.WithTimeout(r.ctx, dialTimeout)
	defer cancel()
	host := r.gateway.Host
	if r.gateway.Port() == "" {
		port := "80"
		if r.tls != nil {
			port = "443"
		}
		host = net.JoinHostPort(r.gateway.Hostname(), port)
	}
	d := net.Dialer{KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, nil, false, fmt.Errorf("unreachable: %w", err)
	}
	raw, _ = c.(*net.TCPConn)
	if r.tls == nil {
		return c, raw, false, nil
	}
	cfg := r.tls.Clone()
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		askedCert = true
		if cert := r.clientCert.Load(); cert != nil {
			return cert, nil
		}
		return &tls.Certificate{}, nil
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		var ue x509.UnknownAuthorityError
		if errors.As(err, &ue) {
			return nil, nil, false, fmt.Errorf("its certificate is not signed by a CA credgate run trusts (the system roots and the gateway CA, or --gateway-ca): %w", err)
		}
		if askedCert && !r.hasCert {
			return nil, nil, false, fmt.Errorf("TLS handshake: it requires a client certificate and credgate run presents none (pass --gateway-cert FILE and --gateway-key FILE, env CREDGATE_GATEWAY_CERT, CREDGATE_GATEWAY_KEY): %w", err)
		}
		return nil, nil, false, fmt.Errorf("TLS handshake (is it tls_listen?): %w", err)
	}
	return tc, raw, askedCert, nil
}

// pipe copies client (whose unread bytes br holds) to gw and back until
// both directions end. The end of one direction's stream is passed on as
// a half-close; an error (a reset, an abort) closes both connections,
// the gateway's with a reset when it was the client's. onRefused is
// called with the status of the gateway's first answer when it is 403
// or 407.
func pipe(client net.Conn, br *bufio.Reader, gw net.Conn, gwRaw *net.TCPConn, onRefused func(int)) {
	done := make(chan struct{}, 2)
	abort := func() {
		if gwRaw != nil {
			_ = gwRaw.SetLinger(0)
		}
		_ = gw.Close()
		_ = client.Close()
	}
	go func() {
		defer func() { done <- struct{}{} }()
		// br first (the bytes after the head), then the connection:
		// bufio.Reader.WriteTo does both with its own bounded buffer.
		if _, err := br.WriteTo(gw); err != nil {
			abort()
			return
		}
		closeWrite(gw)
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, copyBuffer)
		// The status line of the gateway's answer, read into buf
		// before the copy: "HTTP/1.1 403".
		n, err := io.ReadAtLeast(gw, buf, len("HTTP/1.1 403"))
		if n > 0 {
			if st := answerStatus(buf[:n]); st == http.StatusForbidden || st == http.StatusProxyAuthRequired {
				onRefused(st)
			}
			if _, werr := client.Write(buf[:n]); werr != nil {
				_ = gw.Close()
				_ = client.Close()
				return
			}
		}
		if err == nil {
			_, err = io.CopyBuffer(client, onlyReader{gw}, buf)
		} else if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = nil
		}
		if err != nil {
			_ = gw.Close()
			_ = client.Close()
			return
		}
		closeWrite(client)
	}()
	<-done
	<-done
}

// answerStatus is the status code of an HTTP/1.x status line at the
// start of b, 0 when it is not one.
func answerStatus(b []byte) int {
	if len(b) < 12 || !bytes.HasPrefix(b, []byte("HTTP/1.")) || b[8] != ' ' {
		return 0
	}
	st := 0
	for _, d := range b[9:12] {
		if d < '0' || d > '9' {
			return 0
		}
		st = st*10 + int(d-'0')
	}
	return st
}

// onlyReader hides a connection's WriterTo/ReaderFrom, so io.CopyBuffer
// uses the bounded buffer it is given.
type onlyReader struct{ io.Reader }

// closeWrite half-closes c (a TLS close_notify for a TLS connection), or
// closes it when it cannot be half-closed.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	_ = c.Close()
}

// logOnce writes msg to the log the first time it comes (at most 64
// distinct messages).
func (r *Relay) logOnce(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.logged[msg] || len(r.logged) >= 64 {
		return
	}
	r.logged[msg] = true
	fmt.Fprintf(r.log, "credgate run: %s\n", strings.TrimPrefix(msg, "credgate run "))
}

// answer writes the relay's own answer and ends the connection.
func answer(c net.Conn, status int, msg string) {
	body := msg + "\n"
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
}

// answerAuth refuses a client without the relay's secret.
func answerAuth(c net.Conn) {
	body := "credgate run relay: proxy credentials missing or wrong: use the proxy URL credgate run set (HTTPS_PROXY)\n"
	fmt.Fprintf(c, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"credgate run\"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		len(body), body)
}
