package gateway

import (
	"log/slog"
	"sync"
)

// Evidence verified once can be withdrawn before it expires: an issuer
// removes the key that signed a token (a leaked key rotated out), a CA
// is removed from a trust bundle (identity.mtls.bundles, the Workload
// API's bundles) or from tls.client_ca. New connections and requests are
// judged against the sources in force; what is already open on the old
// evidence (a spliced tunnel, a WebSocket, a streamed request or answer)
// is verified again when a source changes (invariant 12): identity calls
// evidenceChanged (identity.WithOnChange) when a key set loses a key or a
// bundle changes, and the TLS listener's reloader when tls.client_ca
// loses a CA. One scan of the long-lived connections and one of the
// requests in flight per change; nothing is done per request.

// recheck runs the re-verifications of evidenceChanged one at a time: a
// change arriving while one runs makes it run once more after.
type recheck struct {
	mu      sync.Mutex
	running bool
	again   bool
	closed  bool // Close was called: nothing more starts
	// wg counts the running re-verification (Close waits for it).
	wg sync.WaitGroup
}

// stop waits for the re-verification running, if any, and keeps any
// other from starting.
func (c *recheck) stop() {
	c.mu.Lock()
	c.closed, c.again = true, false
	c.mu.Unlock()
	c.wg.Wait()
}

// evidenceChanged re-verifies, in the background, every open long-lived
// connection and every request in flight, closing or cutting those whose
// evidence no longer verifies. It returns at once.
func (g *Gateway) evidenceChanged() {
	c := &g.recheck
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.running {
		c.again = true
		return
	}
	c.running = true
	c.wg.Add(1)
	go g.recheckLoop()
}

func (g *Gateway) recheckLoop() {
	c := &g.recheck
	defer c.wg.Done()
	for {
		conns, reqs := g.revokeLong(), g.revokeFlights()
		if conns+reqs > 0 {
			g.log.Warn("identity evidence withdrawn (a signing key or CA removed): closed the long-lived connections and cut the requests in flight it had identified",
				slog.Int("connections", conns), slog.Int("requests", reqs))
		}
		c.mu.Lock()
		if !c.again {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.again = false
		c.mu.Unlock()
	}
}
