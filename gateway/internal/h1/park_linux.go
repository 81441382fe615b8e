package h1

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
)

// parker holds connections idle past idleHandoff without a goroutine
// each: one epoll instance of its own watches their sockets, and one
// goroutine, itself waiting in the runtime's poller on that instance,
// starts a connection's goroutine again when its socket becomes readable
// (the next request, the client closing or resetting it). A timer per
// connection ends the wait at its idle timeout, and Shutdown takes the
// parked connections back to close them. An idle goroutine costs its
// stack (2–8 KiB, which the GC's heap goal counts again) and its g; a
// parked connection costs a map entry and a timer.
//
// The instance and its goroutine exist while a connection is parked: the
// goroutine closes the instance and ends when the last one leaves.
//
// A socket is added to the instance, and removed from it, inside the
// connection's syscall.RawConn.Control, which holds the descriptor open:
// its number cannot name another socket meanwhile. A socket closed while
// parked (Shutdown closes it first) leaves the instance by itself, as a
// closed descriptor does in epoll; its connection is taken back by
// whoever closed it, or by its timer.
type parker struct {
	mu sync.Mutex
	// ep is the epoll instance, nil when no connection is parked; epfd
	// is its descriptor (ep.Fd would make it blocking), -1 then.
	ep   *os.File
	epfd int
	// parked are the parked connections by park id. Each park gets a new
	// id (conn.parkID, under mu), so that a readiness or a timer of an
	// earlier park cannot take a later one.
	parked map[uint64]*conn
	next   uint64
	// failed: epoll could not be set up; connections wait on goroutines.
	failed bool
}

// park hands c's wait for its next request to the parker. It reports
// false when it cannot (no socket, no epoll, the socket closed): the
// caller then waits on a goroutine. Once it reported true the connection
// is no longer the caller's: its readiness, its timer or Shutdown takes
// it back and goes on with c.resume.
func (p *parker) park(c *conn) bool {
	if c.raw == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed || p.ep == nil && !p.start() {
		return false
	}
	p.next++
	id := p.next
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT}
	ev.Fd, ev.Pad = int32(uint32(id)), int32(uint32(id>>32))
	var ctlErr error
	if err := c.raw.Control(func(fd uintptr) {
		ctlErr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	}); err != nil || ctlErr != nil {
		p.stopIfEmpty()
		return false
	}
	p.parked[id] = c
	c.parkID = id
	c.parkTimer = time.AfterFunc(time.Until(c.idleUntil), func() {
		if p.take(c, id) {
			c.resume() // the deadline has passed: it ends the connection
		}
	})
	return true
}

// start makes the epoll instance and its goroutine; p.mu is held.
func (p *parker) start() bool {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err == nil {
		if err = syscall.SetNonblock(fd, true); err != nil {
			_ = syscall.Close(fd)
		}
	}
	if err != nil {
		p.failed = true
		return false
	}
	// Non-blocking, so os.NewFile registers it with the runtime's
	// poller, which reports it readable when a socket in it is.
	ep := os.NewFile(uintptr(fd), "h1-idle-epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		_ = ep.Close()
		p.failed = true
		return false
	}
	p.ep, p.epfd = ep, fd
	if p.parked == nil {
		p.parked = map[uint64]*conn{}
	}
	go p.run(ep, fd, rc)
	return true
}

// run waits for parked sockets to become readable and starts their
// connections' goroutines, until no connection is parked.
func (p *parker) run(ep *os.File, epfd int, rc syscall.RawConn) {
	var events [64]syscall.EpollEvent
	var ready []uint64
	for {
		ready = ready[:0]
		err := rc.Read(func(uintptr) bool {
			// The runtime's poller watches the instance edge-triggered:
			// it is drained before the next wait.
			for {
				n, err := syscall.EpollWait(epfd, events[:], 0)
				if errors.Is(err, syscall.EINTR) {
					continue
				}
				for _, e := range events[:max(n, 0)] {
					ready = append(ready, uint64(uint32(e.Fd))|uint64(uint32(e.Pad))<<32)
				}
				if n < len(events) {
					return len(ready) > 0
				}
			}
		})
		for _, id := range ready {
			p.mu.Lock()
			c := p.parked[id]
			p.mu.Unlock()
			if c != nil && p.take(c, id) {
				go c.resume()
			}
		}
		if err == nil {
			continue
		}
		p.mu.Lock()
		if errors.Is(err, os.ErrDeadlineExceeded) && len(p.parked) > 0 {
			// stopIfEmpty's wake, and a connection parked since.
			_ = ep.SetReadDeadline(time.Time{})
			p.mu.Unlock()
			continue
		}
		// Nothing parked (stopIfEmpty's wake), or the instance failed:
		// what is still parked goes back to waiting on goroutines.
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			p.failed = true
		}
		left := make([]*conn, 0, len(p.parked))
		for _, c := range p.parked {
			left = append(left, c)
		}
		p.ep, p.epfd = nil, -1
		_ = ep.Close()
		p.mu.Unlock()
		for _, c := range left {
			if p.takeConn(c) {
				go c.resume()
			}
		}
		return
	}
}

// take removes c, parked as id, and reports whether it was still parked
// so: of its readiness, its timer and Shutdown exactly one takes it back,
// and goes on with c.resume.
func (p *parker) take(c *conn, id uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.parked[id] != c {
		return false
	}
	delete(p.parked, id)
	c.parkID = 0
	c.parkTimer.Stop()
	if p.ep != nil {
		// A closed socket has left the instance already (Control fails).
		_ = c.raw.Control(func(fd uintptr) {
			_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
		})
	}
	p.stopIfEmpty()
	return true
}

// takeConn takes c back if it is parked, and reports whether it was.
func (p *parker) takeConn(c *conn) bool {
	p.mu.Lock()
	id := c.parkID
	p.mu.Unlock()
	return id != 0 && p.take(c, id)
}

// Parked reports how many idle connections wait on no goroutine of their
// own (parked), for tests.
func (s *Server) Parked() int {
	s.parker.mu.Lock()
	defer s.parker.mu.Unlock()
	return len(s.parker.parked)
}

// stopIfEmpty wakes the goroutine to close the instance when no
// connection is parked; p.mu is held.
func (p *parker) stopIfEmpty() {
	if len(p.parked) == 0 && p.ep != nil {
		_ = p.ep.SetReadDeadline(aLongTimeAgo)
	}
}
