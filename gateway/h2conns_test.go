package gateway

import (
	"fmt"
	"testing"
	"time"
)

// TestH2ConnsRule: which HTTP/2 upstream connection h2Conns closes when
// more than its bound are counted: the idle longest, never one a request
// holds nor one to a host a request is on its way to; a request handed a
// connection just closed is marked for a resend, and entries idle past
// idle_conn_timeout are forgotten.
func TestH2ConnsRule(t *testing.T) {
	type conn struct {
		c    *fakeConn
		e    *h2UpConn
		host alpnKey
	}
	open := func(s *h2Conns, host alpnKey, release bool) conn {
		c := &fakeConn{}
		s.begin(host)
		e, _ := s.use(c, host)
		if release {
			s.end(host, []*h2UpConn{e})
		}
		return conn{c, e, host}
	}
	closed := func(cs ...conn) string {
		out := ""
		for i, c := range cs {
			if c.c.closed.Load() {
				out += fmt.Sprint(i)
			}
		}
		return out
	}

	t.Run("the idle longest closes", func(t *testing.T) {
		s := newH2Conns(2, time.Hour)
		a, b := open(s, alpnKey{"a", "443"}, true), open(s, alpnKey{"b", "443"}, true)
		c := open(s, alpnKey{"c", "443"}, true)
		if got := closed(a, b, c); got != "0" || s.Len() != 2 {
			t.Fatalf("closed %q, %d counted; want a closed, 2 counted", got, s.Len())
		}
		// b used again: a new one closes c, now idle longest.
		s.begin(alpnKey{"b", "443"})
		s.use(b.c, alpnKey{"b", "443"})
		s.end(alpnKey{"b", "443"}, []*h2UpConn{b.e})
		d := open(s, alpnKey{"d", "443"}, true)
		if got := closed(a, b, c, d); got != "02" {
			t.Fatalf("closed %q, want a and c", got)
		}
	})
	t.Run("a held connection is never closed", func(t *testing.T) {
		s := newH2Conns(1, time.Hour)
		a := open(s, alpnKey{"a", "443"}, false)
		b := open(s, alpnKey{"b", "443"}, false)
		if got := closed(a, b); got != "" || s.Len() != 2 {
			t.Fatalf("closed %q with %d counted; want none closed while both are held", got, s.Len())
		}
		s.end(alpnKey{"a", "443"}, []*h2UpConn{a.e})
		if got := closed(a, b); got != "0" || s.Len() != 1 {
			t.Fatalf("closed %q with %d counted; want a closed once released", got, s.Len())
		}
	})
	t.Run("a host a request is on its way to keeps its connection", func(t *testing.T) {
		s := newH2Conns(1, time.Hour)
		a := open(s, alpnKey{"a", "443"}, true)
		s.begin(alpnKey{"a", "443"}) // not yet handed a connection
		b := open(s, alpnKey{"b", "443"}, true)
		if got := closed(a, b); got != "1" {
			t.Fatalf("closed %q, want b (idle, no request on its way) and not a", got)
		}
		s.end(alpnKey{"a", "443"}, nil)
	})
	t.Run("a request handed a connection just closed is sent again without a body", func(t *testing.T) {
		s := newH2Conns(1, time.Hour)
		a := open(s, alpnKey{"a", "443"}, true)
		open(s, alpnKey{"b", "443"}, true)
		if !a.c.closed.Load() {
			t.Fatal("a not closed")
		}
		u := h2Use{set: s, host: alpnKey{"a", "443"}}
		s.begin(alpnKey{"a", "443"})
		if _, hit := s.use(a.c, alpnKey{"a", "443"}); !hit {
			t.Fatal("a request handed the closed connection is not marked")
		}
		u.closedHit = true
		if u.retry(true) {
			t.Error("a request with a body would be sent again")
		}
		if !u.retry(false) || u.retry(false) {
			t.Error("a request without a body is not sent again exactly once")
		}
		u.end()
	})
	t.Run("entries idle past idle_conn_timeout are forgotten", func(t *testing.T) {
		s := newH2Conns(8, time.Nanosecond)
		a := open(s, alpnKey{"a", "443"}, true)
		waitFor(t, time.Second, "a nanosecond", func() bool { return time.Since(a.e.since) > time.Nanosecond })
		open(s, alpnKey{"b", "443"}, false)
		if s.Len() != 1 || a.c.closed.Load() {
			t.Fatalf("%d counted, a closed %v; want a forgotten (the HTTP/2 client closed it), not closed", s.Len(), a.c.closed.Load())
		}
	})
}
