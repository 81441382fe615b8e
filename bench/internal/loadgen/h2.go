package loadgen

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// H2Client is one HTTP/2 client of a target: the requests of all its
// callers are streams on one connection (more only if the server allows
// fewer concurrent streams than there are callers), opened as Dial opens
// one — TCP, CONNECT through the proxy if there is one, TLS — but
// offering "h2" and "http/1.1" in ALPN, as browsers and Go's net/http do.
// A server that chooses http/1.1 is an error (ErrNotH2), never a silent
// fall-back to HTTP/1.1.
type H2Client struct {
	t     *Target
	tr    *http.Transport
	url   string
	dials atomic.Int64
}

// ErrNotH2 is returned when the server (or the proxy intercepting the
// connection) did not negotiate HTTP/2.
var ErrNotH2 = fmt.Errorf("loadgen: the server did not negotiate h2")

// NewH2Client returns a client of t; Close releases its connections.
func NewH2Client(t *Target) *H2Client {
	c := &H2Client{t: t, url: "https://" + t.authority() + t.Path}
	protos := new(http.Protocols)
	protos.SetHTTP2(true)
	c.tr = &http.Transport{
		Protocols: protos,
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			tc, err := DialTLS(ctx, t, "h2", "http/1.1")
			if err != nil {
				return nil, err
			}
			c.dials.Add(1)
			if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
				_ = tc.Close()
				return nil, fmt.Errorf("%w (ALPN chose %q) via %s", ErrNotH2, p, t.Name)
			}
			return tc, nil
		},
		HTTP2: &http.HTTP2Config{SendPingTimeout: 30 * time.Second},
	}
	return c
}

// Do sends one GET for t.Path as a new stream and reads the whole
// response. A non-200 answer is a *StatusError.
func (c *H2Client) Do(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.t.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return fmt.Errorf("loadgen: h2 request: %w", err)
	}
	req.Header = c.t.Header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set("User-Agent", "credgate-bench/1")
	req.Header.Set("Accept", "application/json")
	resp, err := c.tr.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("loadgen: h2 round trip via %s: %w", c.t.Name, err)
	}
	defer resp.Body.Close()
	var body []byte
	if resp.StatusCode != http.StatusOK {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 512))
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("loadgen: h2 read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return &StatusError{Code: resp.StatusCode, Reason: resp.Header.Get("X-Credgate-Reason"), Body: string(body)}
	}
	if resp.ProtoMajor != 2 {
		return fmt.Errorf("%w: answered over %s", ErrNotH2, resp.Proto)
	}
	return nil
}

// Dials is the number of connections the client has opened.
func (c *H2Client) Dials() int { return int(c.dials.Load()) }

// Close closes the client's connections.
func (c *H2Client) Close() { c.tr.CloseIdleConnections() }

// H2ClosedLoop runs streams closed-loop workers for warmup+window that
// share one H2Client: streams concurrent requests on one HTTP/2
// connection. Result.Conns is the number of connections opened (1 unless
// the server limits concurrent streams below streams, or a connection
// broke). The client is checked with one request first; its error is
// returned when the target does not speak h2.
func H2ClosedLoop(ctx context.Context, t *Target, streams int, warmup, window time.Duration) (Result, error) {
	c := NewH2Client(t)
	defer c.Close()
	if err := c.Do(ctx); err != nil {
		return Result{Target: t.Name}, err
	}
	r := workers(ctx, t.Name, streams, warmup, window, t.timeout(), func(ctx context.Context, _ int) (bool, error) {
		err := c.Do(ctx)
		if err != nil {
			backoff(ctx)
		}
		return false, err
	}, nil)
	r.Conns = c.Dials()
	return r, nil
}
