// Package loadgen drives HTTPS load at one target — the origin directly, or
// the origin through an HTTP CONNECT proxy — with the same client code for
// every target, so that differences in the figures come from the target.
//
// The client is deliberately lean: the request is serialised once, written
// raw on a TLS connection, and the response is read with
// net/http.ReadResponse. Through a proxy a connection is a CONNECT followed
// by a TLS handshake with whatever certificate the proxy presents (verified
// against Target.Roots), which is what an application with HTTPS_PROXY set
// does. Handshakes are full ones unless the target keeps sessions
// (Target.Sessions, WithSessions). Every connection speaks HTTP/1.1 (ALPN "http/1.1"), so N connections
// really are N concurrent requests.
package loadgen

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Target is one thing to measure.
type Target struct {
	// Name labels the target in results ("direct", "goproxy", "credgate").
	Name string
	// Proxy is the proxy's host:port; empty means connect directly.
	Proxy string
	// Addr is the address dialled when Proxy is empty (the origin's real
	// address; Host does not resolve).
	Addr string
	// Host is the origin's name: CONNECT target, SNI and Host header.
	Host string
	// Port is the origin's port as the client sees it (443).
	Port int
	// Path is the request path.
	Path string
	// Roots verifies the certificate the client is shown: the origin's CA
	// for a direct target, the proxy's interception CA otherwise.
	Roots *x509.CertPool
	// Header holds extra request headers. A direct target sends the
	// credential itself so the origin does the same work for every target;
	// through a proxy the client sends none and the proxy injects it.
	Header http.Header
	// ProxyTLS, when set, makes the hop to the proxy TLS ("HTTPS proxy",
	// credgate's tls_listen) with this configuration, e.g. a client
	// certificate for the mtls factor; nil: plain TCP to the proxy.
	ProxyTLS *tls.Config
	// ProxyHeader holds headers sent with CONNECT, e.g.
	// Proxy-Authorization with a token for the jwt factor.
	ProxyHeader http.Header
	// Timeout bounds one connection set-up or one request (default 10s).
	Timeout time.Duration
	// Sessions, when set, keeps the client's TLS sessions to the origin
	// name and resumes them on new connections (TLS 1.3 session tickets),
	// as curl, Go's net/http and browsers do; nil: every handshake is a
	// full one. The hop to the proxy resumes only if ProxyTLS has a
	// session cache of its own (WithSessions sets both).
	Sessions tls.ClientSessionCache
	// Body, when set, makes every request a POST of these bytes with
	// their Content-Length (an API call's JSON); nil: a GET.
	Body []byte
}

// WithSessions returns a copy of t whose connections resume TLS sessions
// from one new cache of n sessions: the intercepted (or direct) session
// and, for a TLS proxy hop, that one too.
func (t *Target) WithSessions(n int) *Target {
	c := *t
	c.Sessions = tls.NewLRUClientSessionCache(n)
	if t.ProxyTLS != nil {
		c.ProxyTLS = t.ProxyTLS.Clone()
		c.ProxyTLS.ClientSessionCache = c.Sessions
	}
	return &c
}

func (t *Target) timeout() time.Duration {
	if t.Timeout > 0 {
		return t.Timeout
	}
	return 10 * time.Second
}

func (t *Target) hostPort() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// request returns the serialised request: a GET, or a POST of Body.
func (t *Target) request() []byte {
	if t.Body != nil {
		return append(t.head(http.MethodPost, t.Path, int64(len(t.Body))), t.Body...)
	}
	return t.head(http.MethodGet, t.Path, -1)
}

// authority is the Host header: the name, and the port when it is not
// 443, as clients do (squid routes a bumped request by it).
func (t *Target) authority() string {
	if t.Port != 0 && t.Port != 443 {
		return t.hostPort()
	}
	return t.Host
}

// head returns the serialised request head for method and path, with a
// Content-Length unless contentLength is negative.
func (t *Target) head(method, path string, contentLength int64) []byte {
	b := []byte(method + " " + path + " HTTP/1.1\r\nHost: " + t.authority() + "\r\nUser-Agent: credgate-bench/1\r\nAccept: application/json\r\n")
	if contentLength >= 0 {
		b = append(b, "Content-Length: "+strconv.FormatInt(contentLength, 10)+"\r\n"...)
	}
	keys := make([]string, 0, len(t.Header))
	for k := range t.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range t.Header[k] {
			b = append(b, k+": "+v+"\r\n"...)
		}
	}
	return append(b, "\r\n"...)
}

// StatusError is a response whose status was not 200.
type StatusError struct {
	// Code is the HTTP status code.
	Code int
	// Reason is the X-Credgate-Reason header, if any.
	Reason string
	// Body is the start of the response body.
	Body string
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("status %d", e.Code)
	if e.Reason != "" {
		s += " reason " + e.Reason
	}
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Conn is one client connection to a target, with a TLS session to the
// origin (directly, or through the proxy's tunnel).
type Conn struct {
	t    *Target
	tc   *tls.Conn
	br   *bufio.Reader
	req  []byte
	dead bool
}

// Resumed reports whether the connection's TLS session to the origin name
// was resumed rather than made by a full handshake.
func (c *Conn) Resumed() bool { return c.tc.ConnectionState().DidResume }

// Dial opens a connection: TCP, CONNECT through the proxy if there is one,
// then a TLS handshake (a full one unless t.Sessions holds a session).
func Dial(ctx context.Context, t *Target) (*Conn, error) {
	tc, err := DialTLS(ctx, t, "http/1.1")
	if err != nil {
		return nil, err
	}
	return &Conn{t: t, tc: tc, br: bufio.NewReaderSize(tc, 4096), req: t.request()}, nil
}

// DialTLS opens the TLS session to t.Host that Dial uses (through the
// proxy's tunnel if there is one), offering alpn, for callers that speak
// another protocol on it (a WebSocket).
func DialTLS(ctx context.Context, t *Target, alpn ...string) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout())
	defer cancel()
	addr := t.Addr
	if t.Proxy != "" {
		addr = t.Proxy
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("loadgen: dial %s: %w", addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}
	if t.Proxy != "" && t.ProxyTLS != nil {
		pc := tls.Client(raw, t.ProxyTLS)
		if err := pc.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, fmt.Errorf("loadgen: TLS handshake with the proxy %s: %w", addr, err)
		}
		raw = pc
	}
	if t.Proxy != "" {
		if err := connect(raw, t.hostPort(), t.ProxyHeader); err != nil {
			_ = raw.Close()
			return nil, err
		}
	}
	tc := tls.Client(raw, &tls.Config{
		ServerName: t.Host,
		RootCAs:    t.Roots,
		NextProtos: alpn,
		MinVersion: tls.VersionTLS12,

		ClientSessionCache: t.Sessions,
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("loadgen: TLS handshake with %s via %s: %w", t.Host, addr, err)
	}
	_ = raw.SetDeadline(time.Time{})
	return tc, nil
}

// connect sends CONNECT, with the extra headers h, and reads the proxy's
// answer.
func connect(c net.Conn, hostPort string, h http.Header) error {
	head := "CONNECT " + hostPort + " HTTP/1.1\r\nHost: " + hostPort + "\r\nUser-Agent: credgate-bench/1\r\n"
	for k, vs := range h {
		for _, v := range vs {
			head += k + ": " + v + "\r\n"
		}
	}
	if _, err := io.WriteString(c, head+"\r\n"); err != nil {
		return fmt.Errorf("loadgen: write CONNECT: %w", err)
	}
	// Read byte by byte up to the end of the head: the proxy sends nothing
	// after it until the client speaks, but a buffered reader must not be
	// allowed to swallow TLS bytes if one did.
	br := bufio.NewReaderSize(oneByteReader{c}, 64)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return fmt.Errorf("loadgen: read CONNECT response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		_ = resp.Body.Close()
		return fmt.Errorf("loadgen: CONNECT %s: %w", hostPort, &StatusError{Code: resp.StatusCode, Reason: resp.Header.Get("X-Credgate-Reason"), Body: string(b)})
	}
	return nil
}

type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

// Do sends one request and reads the whole response. A non-200 answer is a
// *StatusError. After an error, or when the server asked to close, the
// connection is no longer usable (see Usable).
func (c *Conn) Do() error {
	_ = c.tc.SetDeadline(time.Now().Add(c.t.timeout()))
	if _, err := c.tc.Write(c.req); err != nil {
		c.dead = true
		return fmt.Errorf("loadgen: write request: %w", err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.dead = true
		return fmt.Errorf("loadgen: read response: %w", err)
	}
	var body []byte
	if resp.StatusCode != http.StatusOK {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 512))
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		c.dead = true
		return fmt.Errorf("loadgen: read body: %w", err)
	}
	_ = resp.Body.Close()
	if resp.Close {
		c.dead = true
	}
	if resp.StatusCode != http.StatusOK {
		return &StatusError{Code: resp.StatusCode, Reason: resp.Header.Get("X-Credgate-Reason"), Body: string(body)}
	}
	return nil
}

// Usable reports whether another request may be sent on c.
func (c *Conn) Usable() bool { return !c.dead }

// Close closes the connection (TLS close_notify, then TCP).
func (c *Conn) Close() error { return c.tc.Close() }

// Result is what one run at one target measured.
type Result struct {
	// Target is the target's name.
	Target string `json:"target"`
	// Requests counts requests answered 200 inside the measured window.
	Requests int `json:"requests"`
	// Errors counts failed connections and requests inside the window.
	Errors int `json:"errors"`
	// FirstError is the first error seen, for diagnosis.
	FirstError string `json:"first_error,omitempty"`
	// Window is the measured duration.
	Window time.Duration `json:"window_ns"`
	// RPS is Requests / Window.
	RPS float64 `json:"rps"`
	// P50, P99 and P999 are latency percentiles of the successful
	// requests.
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	// Max is the slowest successful request.
	Max time.Duration `json:"max_ns"`
	// LagP99 is, for a fixed-rate run, the 99th percentile of how late
	// requests were sent against their schedule (the load generator's own
	// health; large values mean the machine could not keep the rate).
	LagP99 time.Duration `json:"lag_p99_ns,omitempty"`
	// ExtraDials counts connections a fixed-rate run had to open because
	// its warm pool was empty.
	ExtraDials int `json:"extra_dials,omitempty"`
	// RoundRPS holds each round's rps when the result merges several
	// rounds (see Merge).
	RoundRPS []float64 `json:"round_rps,omitempty"`
	// Resumed counts the requests of a new-connection run whose
	// connection resumed its TLS session to the origin name (see
	// Target.Sessions).
	Resumed int `json:"resumed,omitempty"`
	// Conns is the number of connections an HTTP/2 run opened (see
	// H2ClosedLoop); merged rounds keep the largest.
	Conns int `json:"conns,omitempty"`

	lats, lags []time.Duration // sorted; kept for Merge
}

// Merge combines results for the same target from several rounds into one,
// as if they were one run: counts and windows add up, percentiles are
// computed over every request.
func Merge(rs ...Result) Result {
	if len(rs) == 1 {
		return rs[0]
	}
	var m Result
	var lats, lags []time.Duration
	for _, r := range rs {
		m.Target = r.Target
		m.Requests += r.Requests
		m.Errors += r.Errors
		m.Window += r.Window
		m.ExtraDials += r.ExtraDials
		m.Resumed += r.Resumed
		m.Conns = max(m.Conns, r.Conns)
		m.Max = max(m.Max, r.Max)
		if m.FirstError == "" {
			m.FirstError = r.FirstError
		}
		m.RoundRPS = append(m.RoundRPS, r.RPS)
		lats = append(lats, r.lats...)
		lags = append(lags, r.lags...)
	}
	slices.Sort(lats)
	slices.Sort(lags)
	m.lats, m.lags = lats, lags
	if m.Window > 0 {
		m.RPS = float64(m.Requests) / m.Window.Seconds()
	}
	m.P50, m.P99, m.P999 = percentile(lats, 0.50), percentile(lats, 0.99), percentile(lats, 0.999)
	if len(lags) > 0 {
		m.LagP99 = percentile(lags, 0.99)
	}
	return m
}

type errorCount struct {
	n     atomic.Int64
	mu    sync.Mutex
	first error
}

func (e *errorCount) add(err error) {
	if e.n.Add(1) == 1 {
		e.mu.Lock()
		e.first = err
		e.mu.Unlock()
	}
}

func (e *errorCount) firstString() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.first == nil {
		return ""
	}
	return e.first.Error()
}

// ClosedLoop runs conns workers against t for warmup+window. Each worker
// sends a request, waits for the answer and sends the next one; with
// newConnEach, every request gets its own connection (TCP + CONNECT + TLS)
// and its latency includes setting that up. Only requests that start after
// the warm-up and finish inside the window are counted.
func ClosedLoop(ctx context.Context, t *Target, conns int, warmup, window time.Duration, newConnEach bool) Result {
	cs := make([]*Conn, conns)
	step := func(ctx context.Context, w int) (bool, error) {
		if cs[w] == nil {
			c, err := Dial(ctx, t)
			if err != nil {
				backoff(ctx)
				return false, err
			}
			cs[w] = c
		}
		c := cs[w]
		err := c.Do()
		didResume := newConnEach && c.Resumed()
		if newConnEach || !c.Usable() {
			_ = c.Close()
			cs[w] = nil
		}
		return didResume, err
	}
	done := func(w int) {
		if cs[w] != nil {
			_ = cs[w].Close()
		}
	}
	return workers(ctx, t.Name, conns, warmup, window, t.timeout(), step, done)
}

// workers runs n closed-loop workers for warmup+window: worker w calls
// step(ctx, w) again and again, then done(w) once (nil: nothing to do).
// A step that starts after the warm-up and ends inside the window is
// counted: its latency if it succeeded, its error otherwise; resumed
// steps are counted in Result.Resumed. Steps of one worker never run
// concurrently, so step may keep per-worker state indexed by w.
func workers(ctx context.Context, name string, n int, warmup, window, timeout time.Duration, step func(ctx context.Context, w int) (resumed bool, err error), done func(w int)) Result {
	start := time.Now()
	from := start.Add(warmup)
	until := from.Add(window)
	ctx, cancel := context.WithDeadline(ctx, until.Add(timeout))
	defer cancel()
	var errs errorCount
	var resumed atomic.Int64
	lats := make([][]time.Duration, n)
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, 4096)
			defer func() {
				if done != nil {
					done(w)
				}
				lats[w] = mine
			}()
			for ctx.Err() == nil {
				t0 := time.Now()
				if t0.After(until) {
					return
				}
				didResume, err := step(ctx, w)
				t1 := time.Now()
				if !t0.After(from) || t1.After(until) {
					continue
				}
				if err != nil {
					if ctx.Err() == nil {
						errs.add(err)
					}
					continue
				}
				if didResume {
					resumed.Add(1)
				}
				mine = append(mine, t1.Sub(t0))
			}
		}()
	}
	wg.Wait()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	r := summarise(name, all, window, &errs)
	r.Resumed = int(resumed.Load())
	return r
}

// OpenLoop sends requests at a fixed rate for warmup+window, whatever the
// target's speed (an open-loop generator: a slow answer does not delay the
// next request). Requests go out on a pool of pool pre-opened keep-alive
// connections; if every pooled connection is busy a new one is opened and
// counted in ExtraDials. Latency is measured from writing the request to
// reading the end of the response; LagP99 reports how far behind schedule
// the generator itself ran. started, if not nil, is called when the
// schedule starts (after the pool is open).
func OpenLoop(ctx context.Context, t *Target, rate float64, pool int, warmup, window time.Duration, started func()) (Result, error) {
	idle := make(chan *Conn, pool+4096)
	defer func() {
		close(idle)
		for c := range idle {
			_ = c.Close()
		}
	}()
	warm, err := OpenIdle(ctx, t, pool, 16)
	if err != nil {
		return Result{Target: t.Name}, err
	}
	for _, c := range warm {
		idle <- c
	}
	interval := time.Duration(float64(time.Second) / rate)
	total := int((warmup + window) / interval)
	skip := int(warmup / interval)
	lats := make([]time.Duration, total)
	lags := make([]time.Duration, total)
	ok := make([]bool, total)
	var errs errorCount
	var extra atomic.Int64
	var wg sync.WaitGroup
	if started != nil {
		started()
	}
	start := time.Now()
	for i := range total {
		if ctx.Err() != nil {
			break
		}
		sched := start.Add(time.Duration(i) * interval)
		if d := time.Until(sched); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *Conn
			select {
			case c = <-idle:
			default:
				var err error
				if c, err = Dial(ctx, t); err != nil {
					if i >= skip {
						errs.add(err)
					}
					return
				}
				if i >= skip {
					extra.Add(1)
				}
			}
			t0 := time.Now()
			err := c.Do()
			t1 := time.Now()
			if c.Usable() {
				select {
				case idle <- c:
				default:
					// More connections than the pool holds (a target
					// that fell far behind made the senders dial
					// thousands): a send here would block for ever,
					// and the run with it.
					_ = c.Close()
				}
			} else {
				_ = c.Close()
			}
			if i < skip {
				return
			}
			lags[i] = t0.Sub(sched)
			if err != nil {
				errs.add(err)
				return
			}
			lats[i] = t1.Sub(t0)
			ok[i] = true
		}()
	}
	wg.Wait()
	var got, lag []time.Duration
	for i := skip; i < total; i++ {
		lag = append(lag, lags[i])
		if ok[i] {
			got = append(got, lats[i])
		}
	}
	r := summarise(t.Name, got, window, &errs)
	r.ExtraDials = int(extra.Load())
	slices.Sort(lag)
	r.lags = lag
	r.LagP99 = percentile(lag, 0.99)
	return r, nil
}

// OpenIdle opens n connections, parallel at a time, sends one request on
// each and returns them open and idle. On error the connections opened so
// far are closed.
func OpenIdle(ctx context.Context, t *Target, n, parallel int) ([]*Conn, error) {
	conns := make([]*Conn, n)
	var next atomic.Int64
	var errs errorCount
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for errs.n.Load() == 0 {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := Dial(ctx, t)
				if err != nil {
					errs.add(err)
					return
				}
				if err := c.Do(); err != nil {
					_ = c.Close()
					errs.add(err)
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if errs.n.Load() > 0 {
		CloseAll(conns)
		return nil, fmt.Errorf("loadgen: open %d idle connections to %s: %s", n, t.Name, errs.firstString())
	}
	return conns, nil
}

// CloseAll closes every non-nil connection.
func CloseAll(conns []*Conn) {
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
}

// Check sends one request on a new connection and returns its error.
func Check(ctx context.Context, t *Target) error {
	c, err := Dial(ctx, t)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Do()
}

func backoff(ctx context.Context) {
	tm := time.NewTimer(10 * time.Millisecond)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
}

func summarise(name string, lats []time.Duration, window time.Duration, errs *errorCount) Result {
	slices.Sort(lats)
	r := Result{
		Target:     name,
		Requests:   len(lats),
		Errors:     int(errs.n.Load()),
		FirstError: errs.firstString(),
		Window:     window,
		RPS:        float64(len(lats)) / window.Seconds(),
		P50:        percentile(lats, 0.50),
		P99:        percentile(lats, 0.99),
		P999:       percentile(lats, 0.999),
		lats:       lats,
	}
	if len(lats) > 0 {
		r.Max = lats[len(lats)-1]
	}
	return r
}

// percentile returns the nearest-rank percentile p (0..1] of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p*float64(len(sorted))+0.999999999) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

// IsStatus reports whether err is a *StatusError.
func IsStatus(err error) (*StatusError, bool) {
	var se *StatusError
	ok := errors.As(err, &se)
	return se, ok
}
