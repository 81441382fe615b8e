package gateway

import (
	"container/list"
	"crypto/tls"
	"io"
	"net/http/httptrace"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// h2Conns bounds the HTTP/2 upstream connections the gateway keeps open,
// to all hosts together, over every pool, trust generation and client
// certificate transport: upstream.max_idle_conns of them. net/http keeps
// an HTTP/2 connection in its own HTTP/2 client's pool, outside
// MaxIdleConns, one per host until idle_conn_timeout; a caller reaching
// many names under a wildcard destination held one connection (a file
// descriptor, its buffers, a reader goroutine) per name.
//
// net/http offers no hook on that pool (Transport.NewClientConn, new in
// Go 1.26, gives single connections that the caller must pool itself,
// without the transport's retries), so the connections are learnt as
// requests use them (the GotConn trace, whose connection is the
// *tls.Conn the HTTP/2 client reads and writes) and counted here. When a
// new one makes more than max, the connection idle longest is closed
// through its *tls.Conn: one no request of the gateway holds (from its
// round trip until its response was relayed, counted per connection)
// and whose host no request of the gateway is on its way to (counted
// per host:port from before the round trip, since the HTTP/2 client may
// hand a request any connection to its host). Connections that requests
// hold are never closed; while they are more than max, the count stays
// above max until they are released, and the bound is applied then.
//
// A request to a host whose idle connection is being closed may still be
// handed that connection by the HTTP/2 client in the moment before it
// sees the close: GotConn marks such a request (closedHit), and
// timedTransport sends it once more when it has no body (a body the
// HTTP/2 client began to send cannot be sent again).
//
// Connections closed by the HTTP/2 client itself (idle_conn_timeout, a
// GOAWAY, a broken connection) stay counted, idle, until they are the
// idle longest or idle_conn_timeout has passed since their last use, so
// the count is an upper bound of the connections open.
type h2Conns struct {
	max int
	// idleTimeout is upstream.idle_conn_timeout: an entry idle longer
	// is one the HTTP/2 client has closed already, and is forgotten.
	idleTimeout time.Duration

	mu    sync.Mutex
	conns map[io.Closer]*h2UpConn
	// idle holds the connections no request holds, front = most recent.
	idle list.List
	// hosts counts the requests on their way to each host:port.
	hosts map[alpnKey]int
	// recent are the connections closed for the bound lately: a
	// request handed one is marked (closedHit).
	recent [16]io.Closer
	next   int

	// closed counts connections closed for the bound.
	closed atomic.Uint64
}

// h2UpConn is one HTTP/2 upstream connection in h2Conns.
type h2UpConn struct {
	c    io.Closer
	host alpnKey
	reqs int
	// el is the connection's place in idle while reqs is 0.
	el *list.Element
	// since is when reqs last became 0.
	since time.Time
}

func newH2Conns(max int, idleTimeout time.Duration) *h2Conns {
	return &h2Conns{max: max, idleTimeout: idleTimeout, conns: map[io.Closer]*h2UpConn{}, hosts: map[alpnKey]int{}}
}

// Len is the number of HTTP/2 connections counted.
func (s *h2Conns) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// begin counts a request on its way to host (its host and port).
func (s *h2Conns) begin(host alpnKey) {
	s.mu.Lock()
	s.hosts[host]++
	s.mu.Unlock()
}

// use records that a request to host was handed c (GotConn). It reports
// whether c was closed for the bound already.
func (s *h2Conns) use(c io.Closer, host alpnKey) (e *h2UpConn, closedHit bool) {
	s.mu.Lock()
	e = s.conns[c]
	if e == nil {
		for _, r := range s.recent {
			if r == c {
				s.mu.Unlock()
				return nil, true
			}
		}
		e = &h2UpConn{c: c, host: host}
		s.conns[c] = e
	} else if e.el != nil {
		s.idle.Remove(e.el)
		e.el = nil
	}
	e.reqs++
	victims := s.trimLocked(time.Now())
	s.mu.Unlock()
	closeAll(victims)
	return e, false
}

// end releases a request to host that was handed the connections held
// (each once per time it was handed it).
func (s *h2Conns) end(host alpnKey, held []*h2UpConn) {
	now := time.Now()
	s.mu.Lock()
	if s.hosts[host]--; s.hosts[host] <= 0 {
		delete(s.hosts, host)
	}
	for _, e := range held {
		if e.reqs--; e.reqs == 0 && s.conns[e.c] == e {
			e.since = now
			e.el = s.idle.PushFront(e)
		}
	}
	victims := s.trimLocked(now)
	s.mu.Unlock()
	closeAll(victims)
}

// trimLocked forgets the connections idle past idleTimeout and picks the
// connections to close while more than max are counted: the idle
// longest whose host no request is on its way to.
func (s *h2Conns) trimLocked(now time.Time) []io.Closer {
	for el := s.idle.Back(); el != nil && s.idleTimeout > 0; {
		e := el.Value.(*h2UpConn)
		if now.Sub(e.since) <= s.idleTimeout {
			break
		}
		prev := el.Prev()
		s.idle.Remove(el)
		e.el = nil
		delete(s.conns, e.c)
		el = prev
	}
	var victims []io.Closer
	for el := s.idle.Back(); el != nil && len(s.conns) > s.max; {
		e := el.Value.(*h2UpConn)
		prev := el.Prev()
		if s.hosts[e.host] == 0 {
			s.idle.Remove(el)
			e.el = nil
			delete(s.conns, e.c)
			s.recent[s.next] = e.c
			s.next = (s.next + 1) % len(s.recent)
			victims = append(victims, e.c)
			s.closed.Add(1)
		}
		el = prev
	}
	return victims
}

func closeAll(cs []io.Closer) {
	for _, c := range cs {
		_ = c.Close()
	}
}

// h2Use is one request's part in h2Conns (part of reqState).
type h2Use struct {
	set  *h2Conns
	host alpnKey
	held []*h2UpConn
	// buf holds held's first entries: no allocation for a request
	// handed one or two connections.
	buf [2]*h2UpConn
	// closedHit: the request was handed a connection closed for the
	// bound (h2Conns).
	closedHit bool
}

// begin counts the request on its way to u's host, once.
func (h *h2Use) begin(set *h2Conns, u *url.URL) {
	if set == nil || h.set != nil {
		return
	}
	h.set, h.host, h.held = set, alpnKeyOf(u), h.buf[:0]
	set.begin(h.host)
}

// gotConn records the connection an attempt of the request was handed,
// when it is an HTTP/2 one.
func (h *h2Use) gotConn(info httptrace.GotConnInfo) {
	if h.set == nil {
		return
	}
	// Only the attempt that failed is sent again (retry).
	h.closedHit = false
	tc, ok := info.Conn.(*tls.Conn)
	if !ok || tc.ConnectionState().NegotiatedProtocol != "h2" {
		return
	}
	e, hit := h.set.use(tc, h.host)
	if hit {
		h.closedHit = true
		return
	}
	h.held = append(h.held, e)
}

// retry reports whether a request that failed should be sent once more:
// its last attempt was handed a connection closed for the bound, and it
// has no body.
func (h *h2Use) retry(hasBody bool) bool {
	if !h.closedHit || hasBody {
		return false
	}
	h.closedHit = false
	return true
}

// end releases the request's connections and host.
func (h *h2Use) end() {
	if h.set == nil {
		return
	}
	h.set.end(h.host, h.held)
	h.set, h.held = nil, h.held[:0]
}
