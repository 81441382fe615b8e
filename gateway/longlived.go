package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/mono"
	"github.com/credgate/credgate/killswitch"
	"github.com/credgate/credgate/policy"
)

// Long-lived connections are the ones whose bytes the gateway relays
// without deciding each request again: spliced tunnels (action: tunnel)
// and upgraded connections (WebSocket). Invariant 12: they obey what
// opened them. Each is registered in one longSet with the rule, workload
// and credential that allowed it and the expiry of the identity that
// opened it, and is closed when
//
//   - the kill switch disables its rule, workload or credential;
//   - that identity expires (the earliest expiry of its verified
//     factors: a token's exp, a certificate's NotAfter, a TokenReview
//     answer's lifetime) and the same evidence, verified again then, no
//     longer names the same workload;
//   - a source of evidence withdraws some (an issuer's key set loses a
//     key, a trust bundle of identity.mtls.bundles or the Workload API
//     changes, tls.client_ca loses a CA: revoke.go) and the evidence,
//     verified again then, no longer names the same workload
//     (identity_revoked);
//   - a policy reload no longer admits it as it was admitted: decided
//     again with the workload and destination (and, for a WebSocket, the
//     method, path and headers) that opened it, the new policy refuses it
//     or admits it under another rule, credential or action
//     (policy_changed, revoke.go);
//   - no byte went either way for limits.long_lived.idle_timeout;
//   - it has been open for limits.long_lived.max_lifetime;
//   - the gateway shuts down (after shutdown_timeout).
//
// One timer per connection, re-armed at most once per idle period, does
// the time-based checks.

// Kinds of long-lived connections (the kind label of the metrics).
const (
	kindTunnel    = "tunnel"
	kindWebSocket = "websocket"
)

// longKinds lists the kinds, for the metrics' label values.
var longKinds = []string{kindTunnel, kindWebSocket}

// Why a long-lived connection ended: the reason label of
// credgate_long_lived_closed_total and the audit line's "closed".
const (
	// closedEnded: the client or the destination closed it.
	closedEnded           = "ended"
	closedKillSwitch      = "kill_switch"
	closedIdentityExpired = "identity_expired"
	// closedIdentityRevoked: the evidence that opened it stopped
	// verifying before it expired (its signing key or CA was removed).
	closedIdentityRevoked = "identity_revoked"
	// closedPolicyChanged: a policy reload no longer admits it as it was
	// admitted (revoke.go).
	closedPolicyChanged = "policy_changed"
	closedIdle          = "idle"
	closedMaxLifetime   = "max_lifetime"
	closedShutdown      = "shutdown"
	// closedSNIMismatch: a spliced tunnel's TLS ClientHello named another
	// host than the CONNECT target, or could not be read (tunnelSNI).
	closedSNIMismatch = "sni_mismatch"
)

// closeReasons lists the reasons, for the metrics' label values.
var closeReasons = []string{closedEnded, closedKillSwitch, closedIdentityExpired, closedIdentityRevoked, closedPolicyChanged, closedIdle, closedMaxLifetime, closedShutdown, closedSNIMismatch}

// longConn is one long-lived connection and what allowed it.
type longConn struct {
	kind string
	rule string
	// caller is who the connection was allowed for, as the kill switch
	// matches it (switchCaller).
	caller killswitch.Caller
	// credentials are the credentials the decision used: the one it
	// injected, then those it is made from (policy.InjectPlan.Uses).
	credentials []string
	// opened is when the relay began (with its monotonic clock reading:
	// idle_timeout and max_lifetime are measured from it on the monotonic
	// clock, so a step of the wall clock, NTP or an operator setting it,
	// neither closes every connection at once nor keeps them open past
	// their limits); expires is when the identity that opened it expires,
	// a wall-clock instant like the token's exp it comes from (zero: none
	// of its factors expires).
	opened, expires time.Time
	// idle and maxLife are limits.long_lived (zero: not applied).
	idle, maxLife time.Duration
	// reverify, when set, verifies the evidence that opened the
	// connection again when its identity expires, and returns the new
	// expiry and whether it is still the same workload (a TokenReview's
	// answer runs out before the token does; an expired token or
	// certificate does not verify again).
	reverify func() (time.Time, bool)
	// judged is the decision that admitted it, for deciding it again
	// after a reload (its pol under mu).
	judged judgement

	// down, when set, wraps what the upstream sends the client (a
	// WebSocket's frames, scrubbed: wsscrub.go).
	down func(io.Reader) io.Reader

	// last is when a byte last went either way, in nanoseconds since
	// opened on the monotonic clock (lc.since).
	last atomic.Int64
	// in and out count the bytes from the client and to it.
	in, out atomic.Int64

	// frames, when set, wraps what the client sends on an upgraded
	// connection before it is relayed (placeholder substitution in
	// WebSocket frames, placeholder_ws.go).
	frames func(io.Reader) io.Reader

	mu       sync.Mutex
	closers  []io.Closer
	reason   string // set once, by the first close
	timer    *time.Timer
	finished bool
}

// due reports the reason the connection must close at now, or "" and how
// long until the next check. now is the wall clock, compared with the
// identity's expiry (a token's exp is a wall-clock instant); elapsed is
// the time since opened on the monotonic clock, which the idle and
// lifetime limits are measured in (a wall-clock step moves now, not
// elapsed).
func (lc *longConn) due(now time.Time, elapsed time.Duration) (reason string, wait time.Duration) {
	wait = -1
	earliest := func(d time.Duration) {
		if wait < 0 || d < wait {
			wait = d
		}
	}
	if !lc.expires.IsZero() {
		if !now.Before(lc.expires) {
			return closedIdentityExpired, 0
		}
		earliest(lc.expires.Sub(now))
	}
	if lc.maxLife > 0 {
		if elapsed >= lc.maxLife {
			return closedMaxLifetime, 0
		}
		earliest(lc.maxLife - elapsed)
	}
	if lc.idle > 0 {
		end := time.Duration(lc.last.Load()) + lc.idle
		if elapsed >= end {
			return closedIdle, 0
		}
		earliest(end - elapsed)
	}
	return "", wait
}

// since returns the time since the connection opened on the monotonic
// clock, now being a reading of time.Now. Before start it is 0.
func (lc *longConn) since(now time.Time) time.Duration {
	return mono.From(lc.opened).At(now)
}

// dueNow is due at the current time.
func (lc *longConn) dueNow() (string, time.Duration) {
	now := time.Now()
	return lc.due(now, lc.since(now))
}

// check closes the connection when a time limit is reached, else re-arms
// the timer for the next one. At the identity's expiry the evidence is
// verified again first, when it can be.
func (lc *longConn) check() {
	lc.mu.Lock()
	reason, wait := lc.dueNow()
	lc.mu.Unlock()
	if reason == closedIdentityExpired && lc.reverify != nil {
		if exp, ok := lc.reverify(); ok && (exp.IsZero() || exp.After(time.Now())) {
			lc.mu.Lock()
			lc.expires = exp
			reason, wait = lc.dueNow()
			lc.mu.Unlock()
		}
	}
	if reason != "" {
		lc.close(reason)
		return
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if !lc.finished && wait >= 0 {
		lc.timer.Reset(wait)
	}
}

// start records the relay's beginning and arms the timer.
func (lc *longConn) start(closers ...io.Closer) {
	now := time.Now()
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.opened = now
	lc.last.Store(0)
	lc.closers = closers
	if lc.reason != "" {
		// Closed (by the kill switch) between registration and start.
		closeNow(closers)
		return
	}
	if _, wait := lc.due(now, 0); wait >= 0 {
		lc.timer = time.AfterFunc(wait, lc.check)
	}
}

// close ends the connection for reason (the first reason given sticks)
// by closing both sides; the relay then returns and closes them properly.
// It never blocks on a peer: a TLS connection's transport is closed
// without the close_notify that tls.Conn.Close may wait to write (the
// kill switch closes under its lock).
func (lc *longConn) close(reason string) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.reason == "" {
		lc.reason = reason
	}
	closeNow(lc.closers)
}

func closeNow(cs []io.Closer) {
	for _, c := range cs {
		if tc, ok := c.(*tls.Conn); ok {
			_ = tc.NetConn().Close()
			continue
		}
		_ = c.Close()
	}
}

// endReason returns why the connection ended ("" while it is open).
func (lc *longConn) endReason() string {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.reason
}

// finish stops the timer and returns why the connection ended.
func (lc *longConn) finish() string {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.finished = true
	if lc.timer != nil {
		lc.timer.Stop()
	}
	if lc.reason == "" {
		lc.reason = closedEnded
	}
	return lc.reason
}

// copy relays src to dst with buf, recording activity and counting bytes
// in n. It returns nil at the end of src.
func (lc *longConn) copy(dst io.Writer, src io.Reader, buf []byte, n *atomic.Int64) error {
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			lc.last.Store(int64(lc.since(time.Now())))
			nw, werr := dst.Write(buf[:nr])
			n.Add(int64(nw))
			if werr != nil {
				return werr
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// relay copies both ways between client and upstream until both
// directions ended or lc was closed, then closes both. A tunnel (upstream
// a net.Conn) is half-closed towards the side whose peer stopped writing,
// as TCP allows; an upgraded connection is closed whole when either side
// ends, as httputil.ReverseProxy does.
func (g *Gateway) relay(lc *longConn, client net.Conn, upstream io.ReadWriteCloser) {
	uc, tunnel := upstream.(net.Conn)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := g.buffers.Get()
		defer g.buffers.Put(buf)
		var from io.Reader = client
		if lc.frames != nil {
			from = lc.frames(client)
		}
		_ = lc.copy(upstream, from, buf, &lc.in)
		if !tunnel || closeWrite(uc) != nil {
			_ = upstream.Close()
		}
	}()
	buf := g.buffers.Get()
	var down io.Reader = upstream
	if lc.down != nil {
		down = lc.down(upstream)
	}
	_ = lc.copy(client, down, buf, &lc.out)
	g.buffers.Put(buf)
	if !tunnel || closeWrite(client) != nil {
		_ = client.Close()
	}
	wg.Wait()
	_ = client.Close()
	_ = upstream.Close()
}

// longSet tracks the open long-lived connections: the kill switch closes
// those it covers, and shutdown waits for them and then closes what is
// left. One set for every kind.
type longSet struct {
	mu    sync.Mutex
	conns map[*longConn]struct{}
	empty chan struct{} // closed and replaced when the set drains
}

func (s *longSet) add(lc *longConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = map[*longConn]struct{}{}
	}
	s.conns[lc] = struct{}{}
}

func (s *longSet) remove(lc *longConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, lc)
	if len(s.conns) == 0 && s.empty != nil {
		close(s.empty)
		s.empty = nil
	}
}

// wait returns when no long-lived connection is open or ctx is done.
func (s *longSet) wait(ctx context.Context) {
	s.mu.Lock()
	if len(s.conns) == 0 {
		s.mu.Unlock()
		return
	}
	if s.empty == nil {
		s.empty = make(chan struct{})
	}
	ch := s.empty
	s.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// closeMatching closes the connections match selects, for reason, and
// returns how many it closed. Their relays then end.
func (s *longSet) closeMatching(match func(*longConn) bool, reason string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for lc := range s.conns {
		if match(lc) {
			lc.close(reason)
			n++
		}
	}
	return n
}

// closeAll closes every open connection for reason and returns how many
// there were.
func (s *longSet) closeAll(reason string) int {
	return s.closeMatching(func(*longConn) bool { return true }, reason)
}

// reverifyTimeout bounds verifying a long-lived connection's evidence
// again (a TokenReview call).
const reverifyTimeout = 10 * time.Second

// newLong describes a long-lived connection of kind that decision d
// allowed workload wl, identified from evidence ev, to open, with the
// limits in force; jd is that decision (judged).
func (g *Gateway) newLong(kind string, ev identity.Evidence, wl identity.Workload, d policy.Decision, jd judgement) *longConn {
	lim := g.cfg.Limits.LongLived
	lc := &longConn{kind: kind, rule: d.Rule, caller: switchCaller(wl), expires: wl.Expires(),
		idle: lim.IdleTimeout.D(), maxLife: lim.MaxLifetime.D(), judged: jd}
	if d.Inject != nil {
		lc.credentials = d.Inject.Uses()
	}
	lc.reverify = func() (time.Time, bool) { return g.reverify(ev, wl.Name) }
	return lc
}

// reverify verifies evidence ev again, with the policy in force, and
// returns the identity's new expiry and whether it still names workload
// name and has not expired (a token within its issuer's clock_skew after
// exp still verifies, but is not kept: the evidence expired).
func (g *Gateway) reverify(ev identity.Evidence, name string) (time.Time, bool) {
	ctx, cancel := context.WithTimeout(g.baseCtx, reverifyTimeout)
	defer cancel()
	w2, err := g.resolve(ctx, ev, g.store.Current().Workloads())
	if err != nil || w2.Name != name {
		return time.Time{}, false
	}
	exp := w2.Expires()
	if !exp.IsZero() && !exp.After(time.Now()) {
		return time.Time{}, false
	}
	return exp, true
}

// recheckLong judges every open long-lived connection again, one scan of
// the set: with recheckEvidence, the evidence of those whose identity has
// not expired (an expired one is its timer's) is verified again and those
// whose evidence no longer verifies close (identity_revoked); with
// recheckPolicy, those not yet decided under pol are decided again and
// those pol no longer admits as they were admitted close
// (policy_changed).
func (g *Gateway) recheckLong(what recheckWhat, pol *policy.Policy) recheckCount {
	now := time.Now()
	s := &g.long
	s.mu.Lock()
	var todo []*longConn
	for lc := range s.conns {
		lc.mu.Lock()
		open := lc.reason == ""
		lc.mu.Unlock()
		if open {
			todo = append(todo, lc)
		}
	}
	s.mu.Unlock()
	var n recheckCount
	for _, lc := range todo {
		lc.mu.Lock()
		live := lc.expires.IsZero() || now.Before(lc.expires)
		lc.mu.Unlock()
		// The evidence verifies when it still names the workload and
		// has not expired meanwhile (the timer sees to that).
		if what&recheckEvidence != 0 && live && lc.reverify != nil {
			if _, ok := lc.reverify(); !ok {
				lc.close(closedIdentityRevoked)
				n.revoked++
				continue
			}
		}
		if what&recheckPolicy != 0 {
			decided, closed := lc.rejudge(pol)
			if decided {
				n.judged++
			}
			if closed {
				n.changed++
			}
		}
	}
	return n
}

// rejudge decides lc again under pol unless pol already decided it, and
// closes it (policy_changed) when pol no longer admits it as it was
// admitted. It reports whether it decided and whether it closed.
func (lc *longConn) rejudge(pol *policy.Policy) (decided, closed bool) {
	lc.mu.Lock()
	done := lc.judged.pol == pol || lc.reason != ""
	lc.mu.Unlock()
	if done {
		return false, false
	}
	// q and was do not change: no lock while the policy decides.
	if lc.judged.keeps(pol) {
		lc.mu.Lock()
		lc.judged.pol = pol
		lc.mu.Unlock()
		return true, false
	}
	lc.close(closedPolicyChanged)
	return true, true
}

// openLong registers lc (before its relay starts: a kill switch applied
// from now on closes it) and counts it.
func (g *Gateway) openLong(lc *longConn) {
	g.long.add(lc)
	g.metrics.longLived.WithLabelValues(lc.kind).Inc()
	// A switch applied after the decision and before the registration
	// would not see lc: check the state in force now.
	if g.switches != nil && g.switches.Snapshot().Match(lc.rule, lc.caller, lc.credentials...) != nil {
		lc.close(closedKillSwitch)
	}
	// Likewise a reload after the decision: the scan it started may
	// have missed lc.
	lc.rejudge(g.store.Current())
}

// closeLong unregisters lc after its relay ended, counts why it ended and
// returns the reason.
func (g *Gateway) closeLong(lc *longConn) string {
	reason := lc.finish()
	g.long.remove(lc)
	g.metrics.longLived.WithLabelValues(lc.kind).Dec()
	g.metrics.longClosed.WithLabelValues(lc.kind, reason).Inc()
	return reason
}
