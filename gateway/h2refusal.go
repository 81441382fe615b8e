//lint:file-ignore SA1019 x/net/http2.Server (deprecated for http.Server.HTTP2) is the one HTTP/2 server whose CountError can be one per connection: net/http's HTTP2Config.CountError is one per server and names no connection (configureHTTP2)

package gateway

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credgate/credgate/policy"
	"golang.org/x/net/http2"
)

// configureHTTP2 makes the intercepting server serve HTTP/2 with
// golang.org/x/net/http2, one Server value per connection, so that what
// the library refuses before a handler runs is audited with the tunnel
// it happened in (h2Conn): net/http's bundled server has one CountError
// per server, which names no connection, so those refusals could be
// counted but not audited.
//
// x/net/http2.Server is deprecated in favour of http.Server.HTTP2, which
// offers no per-connection hook. From Go 1.27 x/net serves it with
// net/http's own server: whether the per-connection CountError and the
// graceful shutdown still hold then is TestEveryHTTP2RefusalAuditedOnce's
// and TestHTTP2ShutdownGraceful's to say.
//
// ConfigureServer registers the graceful shutdown of every connection of
// h2 with srv.Shutdown (GOAWAY, then the streams finish); the copies made
// per connection keep h2's internal state, so they are registered too.
// srv.HTTP2 supplies the limits (its CountError must stay nil: it would
// take precedence over the per-connection one).
func (g *Gateway) configureHTTP2(srv *http.Server) error {
	h2 := &http2.Server{}
	if err := http2.ConfigureServer(srv, h2); err != nil {
		return err
	}
	srv.TLSNextProto[http2.NextProtoTLS] = func(hs *http.Server, c *tls.Conn, h http.Handler) {
		// net/http's handler for a connection handed to TLSNextProto
		// carries the connection's context (ConnContext: the tunnel).
		ctx := g.baseCtx
		if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
			ctx = bc.BaseContext()
		}
		tc, _ := c.NetConn().(*tunnelConn)
		if tc == nil {
			h2.ServeConn(c, &http2.ServeConnOpts{Context: ctx, Handler: h, BaseConfig: hs})
			return
		}
		w := &h2Conn{Conn: c, g: g, ctx: ctx, tc: tc, in: newH2Mirror(h2, hs)}
		s := *h2
		s.CountError = w.countError
		s.ServeConn(w, &http2.ServeConnOpts{Context: ctx, Handler: h, BaseConfig: hs})
		w.end()
	}
	return nil
}

// h2Conn is an intercepted HTTP/2 connection as the HTTP/2 server sees
// it: it audits, once each, the refusals the server makes before a
// handler runs. Every refusal ends in a frame the server writes to the
// client — RST_STREAM or GOAWAY with an error code — or in the server
// closing the connection; Write reads the headers of the frames going
// out (no payload but those two frames' error codes) to see them. The
// library names most of them in CountError (the class, before the frame
// is written): a frame takes the oldest class not yet written; one the
// library named no class for is "stream_CODE" or "conn_CODE"; classes
// left when the connection ends (a lost PING: no frame) are written
// then; and a connection the server closed with neither (a preface that
// is not HTTP/2, too many control frames queued) is "conn_closed".
//
// Two refusals are not frames but answers: the library serves a request
// whose header list is over the limit (431) or carries a
// connection-specific field or a TE other than trailers (400) with a
// handler of its own, and names them in no CountError. Read decodes the
// client's header blocks a second time, with the framer's own code and
// the server's limits (in, h2Mirror), and marks those streams (answered);
// the first HEADERS frame the server writes on a marked stream is the
// library's answer, audited then (a RST_STREAM on it unmarks it: the
// server refused it otherwise, audited as above).
//
// The server writes one frame batch at a time; mu guards the scanner
// anyway, and the small state of what was seen.
type h2Conn struct {
	*tls.Conn
	g   *Gateway
	ctx context.Context
	tc  *tunnelConn

	mu sync.Mutex
	// hdr holds the frame header being read, and for RST_STREAM and
	// GOAWAY the payload up to their error code.
	hdr     [17]byte
	n, want int
	skip    int // payload bytes of the current frame still to pass
	// pending are the classes CountError named whose frame is not yet
	// written.
	pending []string
	// in reads the client's header blocks (only Read touches it);
	// answered are the streams the library will answer itself, with
	// the class of each.
	in       *h2Mirror
	answered map[uint32]string
	// readErr, writeErr and goAway: the client's side ended, a write
	// failed, a GOAWAY went out; cut: the server closed the connection
	// with none of these.
	readErr, writeErr, goAway, cut bool
	// left: the client ended its side (its read failed other than by
	// the server's close or a deadline) with a request begun and
	// unfinished (h2Mirror.unfinished): audited client_aborted at the
	// end when nothing else of the connection is.
	left bool
	// open is h2Mirror.unfinished after the last read, for end: the
	// reader may still be in Read when the server ends the connection.
	open atomic.Bool
	// connRefused: a GOAWAY with an error code went out.
	connRefused bool
	closeOnce   sync.Once
}

func (c *h2Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.in != nil && n > 0 {
		c.in.feed(p[:n], c.answer)
		c.open.Store(c.in.unfinished())
	}
	if err != nil {
		// The client ended its side (not the server's close, nor a
		// deadline) with a request unfinished.
		left := !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) && c.open.Load()
		c.mu.Lock()
		c.readErr = true
		c.left = c.left || left && !c.goAway
		c.mu.Unlock()
	}
	return n, err
}

func (c *h2Conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	if err != nil {
		c.writeErr = true
	}
	// All of p: what the server sent, whether or not it got through (a
	// failed write ends the connection, so the scan need not follow).
	classes := c.scan(p)
	c.mu.Unlock()
	for _, class := range classes {
		c.audit(class)
	}
	return n, err
}

// Close records whether the server cut a connection the client kept
// open without saying why on the wire.
func (c *h2Conn) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.cut = !c.readErr && !c.writeErr && !c.goAway
		c.mu.Unlock()
	})
	return c.Conn.Close()
}

// scan follows the frames in p, written after those already scanned, and
// returns the classes of the refusals among them. c.mu is held.
func (c *h2Conn) scan(p []byte) []string {
	var out []string
	for len(p) > 0 {
		if c.skip > 0 {
			k := min(c.skip, len(p))
			c.skip -= k
			p = p[k:]
			continue
		}
		need := 9
		if c.n >= 9 {
			need += c.want
		}
		k := copy(c.hdr[c.n:need], p)
		c.n += k
		p = p[k:]
		if c.n < need {
			continue
		}
		length := int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
		if c.n == 9 {
			c.want = 0
			if http2.FrameType(c.hdr[3]) == http2.FrameHeaders && len(c.answered) > 0 {
				if class, ok := c.answered[h2StreamID(c.hdr[:9])]; ok {
					delete(c.answered, h2StreamID(c.hdr[:9]))
					c.g.metrics.HTTP2Error(class)
					out = append(out, class)
				}
			}
			switch http2.FrameType(c.hdr[3]) {
			case http2.FrameRSTStream:
				c.want = min(4, length)
			case http2.FrameGoAway:
				c.want = min(8, length)
			}
			if c.want > 0 {
				continue
			}
		}
		if class, ok := c.refusal(http2.FrameType(c.hdr[3]), c.hdr[9:c.n]); ok {
			out = append(out, class)
		}
		c.skip = length - c.want
		c.n, c.want = 0, 0
	}
	return out
}

// refusal reports whether a frame of type ft whose payload begins with
// payload refuses the client, and its class. RST_STREAM NO_ERROR, CANCEL
// and INTERNAL_ERROR are the server ending streams for its own reasons
// (the handler's answer came first, a handler failed), and GOAWAY
// NO_ERROR a graceful close (idle, shutdown): none is a refusal. c.mu is
// held.
func (c *h2Conn) refusal(ft http2.FrameType, payload []byte) (string, bool) {
	var code http2.ErrCode
	scope := "stream_"
	switch {
	case ft == http2.FrameRSTStream && len(payload) == 4:
		code = http2.ErrCode(binary.BigEndian.Uint32(payload))
		delete(c.answered, h2StreamID(c.hdr[:9]))
		if code == http2.ErrCodeNo || code == http2.ErrCodeCancel || code == http2.ErrCodeInternal {
			return "", false
		}
	case ft == http2.FrameGoAway && len(payload) == 8:
		c.goAway = true
		code, scope = http2.ErrCode(binary.BigEndian.Uint32(payload[4:])), "conn_"
		if code == http2.ErrCodeNo {
			return "", false
		}
		c.connRefused = true
	default:
		return "", false
	}
	if len(c.pending) > 0 {
		class := c.pending[0]
		c.pending = c.pending[1:]
		return class, true
	}
	return scope + code.String(), true
}

// countError is the connection's http2.Server.CountError: errType
// counts in credgate_http2_errors_total at once and is audited with the
// frame that follows it (or when the connection ends).
func (c *h2Conn) countError(errType string) {
	c.g.metrics.HTTP2Error(errType)
	c.mu.Lock()
	c.pending = append(c.pending, errType)
	c.mu.Unlock()
}

// maxAnswered bounds h2Conn.answered: a client that sends more such
// requests than this without reading the answers has the rest unaudited.
const maxAnswered = 1024

// answer marks stream id as one the library will answer itself (class
// is why): its answer's HEADERS frame is counted in
// credgate_http2_errors_total and audited (scan).
func (c *h2Conn) answer(id uint32, class string) {
	c.mu.Lock()
	if c.answered == nil {
		c.answered = map[uint32]string{}
	}
	if len(c.answered) < maxAnswered {
		c.answered[id] = class
	}
	c.mu.Unlock()
}

// end audits what the connection's end leaves: classes whose frame was
// never written, or the server's silent cut; else a request the client
// began and left unfinished — client_aborted when the client ended its
// side, header_timeout when the server's GOAWAY (its idle timeout) came
// first, shutting_down when that GOAWAY was the gateway's shutdown.
func (c *h2Conn) end() {
	c.mu.Lock()
	pending, cut := c.pending, c.cut && len(c.pending) == 0
	quiet := !c.cut && !c.connRefused && len(c.pending) == 0 && len(c.answered) == 0
	left := c.left && quiet
	// The server sent its GOAWAY (no error: the idle timeout, or a
	// shutdown) while the client had a header block unfinished.
	stalled := !c.left && c.goAway && quiet && c.open.Load()
	// A marked stream whose answer the server never wrote (the client
	// reset it or left first) was refused all the same; unless the
	// server refused the whole connection, audited as such.
	var answered []string
	if !c.connRefused {
		for _, id := range slices.Sorted(maps.Keys(c.answered)) {
			answered = append(answered, c.answered[id])
		}
	}
	c.pending, c.answered = nil, nil
	c.mu.Unlock()
	for _, class := range answered {
		c.g.metrics.HTTP2Error(class)
		c.audit(class)
	}
	for _, class := range pending {
		c.audit(class)
	}
	if cut {
		c.audit("conn_closed")
	}
	switch {
	case left:
		c.g.auditCutShort(c.ctx, c.tc)
	case stalled && c.g.draining.Load():
		c.g.auditInTunnel(c.ctx, c.tc, &event{Code: codeShuttingDown, Status: http.StatusServiceUnavailable})
	case stalled:
		c.g.auditInTunnel(c.ctx, c.tc, &event{Code: codeHeaderTimeout, Status: http.StatusRequestTimeout})
	}
}

// auditCutShort audits a request the client began in tunnel tc and left
// unfinished when it ended its side (an HTTP/2 connection preface or
// header block cut short): client_aborted, status 499, no method or
// path, nothing answered — as the HTTP/1.1 server's Refusal.Cut.
func (g *Gateway) auditCutShort(ctx context.Context, tc *tunnelConn) {
	g.auditInTunnel(ctx, tc, &event{Code: codeRequestBodyAborted, Status: statusClientClosed})
}

// auditInTunnel audits and counts e, a denial in tunnel tc that no
// request of the gateway's reached (its Code, Status and HTTP2Error
// set): it names the tunnel's destination and workload, no method or
// path.
func (g *Gateway) auditInTunnel(ctx context.Context, tc *tunnelConn, e *event) {
	start := time.Now()
	e.Time, e.Scheme, e.Host, e.Port, e.Decision = start, "https", tc.dest.host, tc.dest.port, policy.Deny.String()
	wl := g.auditIdentity(ctx, tc.ev)
	e.Workload, e.Factors, e.Source, e.Via = wl.DisplayName(), wl.Factors, sourceOf(wl.Factors, tc.ev), viaString(tc.ev)
	if wantPresented(wl, e.Code) {
		e.Presented = presented(tc.ev)
	}
	g.metrics.refusals.WithLabelValues(e.Code).Inc()
	e.Duration = time.Since(start)
	g.metrics.request(e.Decision, "", e.Status, e.Duration)
	g.audit.write(e)
}

// audit writes the line of one refusal of class.
func (c *h2Conn) audit(class string) { c.g.refuseHTTP2(c.ctx, c.tc, class) }

// refuseHTTP2 audits and counts what the HTTP/2 server of tunnel tc
// refused before a handler ran (class: "stream_PROTOCOL_ERROR_bad_path_method",
// "conn_ENHANCE_YOUR_CALM_too_many_early_resets", "conn_COMPRESSION_ERROR",
// "stream_400_connection_specific_field", ...; docs/audit-and-metrics.md
// lists them): one audit line naming the tunnel's workload and
// destination, no method or path (the gateway served none). The server
// answers the client itself: RST_STREAM, GOAWAY or a closed connection
// (status 0), or its own 400 or 431 (h2ClassStatus).
func (g *Gateway) refuseHTTP2(ctx context.Context, tc *tunnelConn, class string) {
	e := event{Code: codeHTTP2Refused, HTTP2Error: class, Status: h2ClassStatus(class)}
	g.auditInTunnel(ctx, tc, &e)
	g.logClientRefusal(ctx, e.Code, "HTTP/2 server refused a stream or connection before the gateway saw a request",
		slog.String("connect", tc.dest.hostPort()), slog.String("source", e.Source), slog.String("http2_error", class))
}

var _ net.Conn = (*h2Conn)(nil)
