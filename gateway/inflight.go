package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/killswitch"
	"github.com/credgate/credgate/policy"
)

// A request is decided once, when it begins, but it can run for as long
// as its upstream streams the response (server-sent events, a model's
// streamed answer, a long download) or its client streams the body (a
// gRPC client or bidirectional stream over HTTP/2). Every request being
// forwarded is registered in one flightSet with the rule, workload and
// credential that allowed it; a kill switch that covers one of them
// cancels its upstream request: a client still waiting for the answer
// gets 502 disabled_in_flight, one reading it sees it cut off (the audit
// line says "code":"disabled_in_flight"). Upgraded connections
// are long-lived connections (longlived.go), closed by the switch there.
//
// The identity that sent a request is held to the same (invariant 12):
// a streamed answer must not run for hours on a 5-minute token.
//
//   - When the identity expires (identity.Workload.Expires: a token's
//     exp, a certificate's NotAfter, a TokenReview answer's lifetime) and
//     the request is still in flight limits.in_flight_identity_grace
//     later, its evidence is verified again; when it no longer names the
//     same workload the request is cut: 502 identity_expired_in_flight.
//     The grace spares the ordinary request whose token expires during
//     its few milliseconds in flight (or that was admitted within the
//     issuer's clock_skew after exp). One timer for the whole gateway,
//     armed at the earliest such deadline among the requests in flight,
//     does it: registering a request re-arms it only when the request's
//     deadline is earlier than the one armed; when it fires, the set is
//     scanned once, the expired requests are verified again and cut, and
//     the timer is armed at the next earliest deadline.
//   - When a source of evidence withdraws some (an issuer's key removed,
//     a trust bundle or tls.client_ca changed: revoke.go), every request
//     in flight whose identity has not expired yet is verified again and
//     those that no longer verify are cut: 502 identity_revoked_in_flight.
//
// So is the policy that admitted it: after a reload, every request in
// flight is decided again with its workload, destination, method, path
// (and headers, when a condition reads them); one the new policy refuses,
// or admits under another rule, credential or action, is cut: 502
// policy_changed_in_flight (revoke.go).

// Codes of a request whose identity was lost while it was in flight.
const (
	codeIdentityExpiredInFlight = "identity_expired_in_flight"
	codeIdentityRevokedInFlight = "identity_revoked_in_flight"
)

// codePolicyChangedInFlight is the code of a request cut in flight
// because a policy reload no longer admits it as it was admitted.
const codePolicyChangedInFlight = "policy_changed_in_flight"

// errPolicyChanged is the cause of an in-flight request's cancellation
// by a policy reload.
var errPolicyChanged = errors.New("policy reload: the new policy no longer admits the request as it was admitted")

// errIdentityLost is the cause of an in-flight request's cancellation
// because its identity expired or was revoked.
var errIdentityLost = errors.New("the identity that sent the request expired or was revoked while it was in flight")

// codeDisabledInFlight is the code of a request the kill switch cut in
// flight: unlike a request refused with codeDisabled, it had been sent to
// the upstream, which may have acted on it.
const codeDisabledInFlight = "disabled_in_flight"

// errSwitchedOff is the cause of an in-flight request's cancellation by
// the kill switch.
var errSwitchedOff = errors.New("kill switch: the request's rule, workload or credential was disabled")

// inFlight is one request being forwarded and what allowed it. It lives
// in the request's reqState: registering costs no allocation of its own.
type inFlight struct {
	rule string
	// caller is who the request was allowed for, as the kill switch
	// matches it (switchCaller).
	caller killswitch.Caller
	// credentials are the credentials the decision used: the one it
	// injected, then those it is made from (policy.InjectPlan.Uses).
	credentials []string
	// ev is the evidence the workload was identified from and name the
	// workload's name, for verifying it again; deadline is when the
	// identity expires plus limits.in_flight_identity_grace (zero: it
	// does not expire). seq tells this registration from a later one of
	// the same reqState. All four are read under the set's lock only.
	ev       identity.Evidence
	name     string
	deadline time.Time
	seq      uint64
	// judged is the decision that admitted the request, for deciding it
	// again after a reload (read and written under the set's lock).
	judged judgement
	// ctx is the flight's context, made from parent by startFlight (or
	// the tunnel's, shared by its requests one after the other: watch);
	// ctxCancel cancels it. Cancel it with cancelCause only, which also
	// calls abort: the h1client's round trip's (h1client.Cancellation,
	// through reqState), set and taken under mu; cancelled is set (under
	// mu) once cancelCause ran, ended once endFlight did, after which
	// cancelCause does nothing.
	ctx, parent context.Context
	ctxCancel   context.CancelCauseFunc
	abort       func()
	cancelled   bool
	ended       bool
	// watch, when set, is the tunnel's flightWatch, which covers the
	// cancellation of parent and lent ctx.
	watch *flightWatch
	// body is the client's request body, whose pending read the switch
	// ends too (nil without one).
	body *idleBody
	// cut is the refusal of the switch that cancelled the request (set
	// under the set's lock, read after the round trip ended). mu guards
	// abort and cancelled too.
	mu  sync.Mutex
	cut *refusal
	// prev and next link f into its set's list while listed is true
	// (under the set's lock).
	prev, next *inFlight
	listed     bool
}

// flightSet holds the requests being forwarded: a list linked through
// the inFlight values themselves (in the requests' reqState), so a
// request joins and leaves it without hashing or allocating. Scans walk
// it under mu as they walked a map; their order never mattered.
type flightSet struct {
	mu   sync.Mutex
	head *inFlight
	seq  uint64
	// timer fires at armed, the earliest deadline among the requests in
	// flight when it was armed (zero: not armed); made by the first
	// request with a deadline, with fire.
	timer *time.Timer
	armed time.Time
	// fire is what the timer runs (Gateway.expireFlights), set once by
	// New.
	fire func()
}

// add registers f, arming the timer when f's deadline is the earliest.
func (s *flightSet) add(f *inFlight) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	f.seq = s.seq
	if !f.listed {
		f.prev, f.next, f.listed = nil, s.head, true
		if s.head != nil {
			s.head.prev = f
		}
		s.head = f
	}
	s.arm(f.deadline)
}

// arm makes the timer fire at deadline when it is earlier than the one
// armed (zero: nothing to arm). Under s.mu.
func (s *flightSet) arm(deadline time.Time) {
	if deadline.IsZero() || s.fire == nil || (!s.armed.IsZero() && !deadline.Before(s.armed)) {
		return
	}
	s.armed = deadline
	d := time.Until(deadline)
	if s.timer == nil {
		s.timer = time.AfterFunc(d, s.fire)
		return
	}
	s.timer.Reset(d)
}

// stop stops the timer (the gateway is closing).
func (s *flightSet) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
	}
	s.armed = time.Time{}
}

// flightCheck is what verifying one request's identity again needs,
// copied out of the set so that no lock is held while it runs (a
// TokenReview call).
type flightCheck struct {
	f    *inFlight
	seq  uint64
	ev   identity.Evidence
	name string
	// deadline and judged are the request's, when it was picked.
	deadline time.Time
	judged   judgement
}

// pick returns the requests in flight that keep selects.
func (s *flightSet) pick(keep func(*inFlight) bool) []flightCheck {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []flightCheck
	for f := s.head; f != nil; f = f.next {
		if f.refusal() == nil && keep(f) {
			out = append(out, flightCheck{f: f, seq: f.seq, ev: f.ev, name: f.name, deadline: f.deadline, judged: f.judged})
		}
	}
	return out
}

// still runs fn on c's request under the set's lock when it is still the
// registration c was taken from, and reports whether it was.
func (s *flightSet) still(c flightCheck, fn func(*inFlight)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !c.f.listed || c.f.seq != c.seq {
		return false
	}
	fn(c.f)
	return true
}

// expireFlights is the flight timer's work: the requests whose deadline
// passed are verified again and cut when their identity no longer
// verifies; the timer is then armed at the next earliest deadline.
func (g *Gateway) expireFlights() {
	s := &g.flights
	now := time.Now()
	s.mu.Lock()
	s.armed = time.Time{}
	s.mu.Unlock()
	due := s.pick(func(f *inFlight) bool { return !f.deadline.IsZero() && !now.Before(f.deadline) })
	grace := g.cfg.Limits.InFlightIdentityGrace.D()
	n := 0
	for _, c := range due {
		exp, ok := g.reverify(c.ev, c.name)
		if ok {
			s.still(c, func(f *inFlight) {
				f.deadline = time.Time{}
				if !exp.IsZero() {
					f.deadline = exp.Add(grace)
				}
			})
			continue
		}
		if s.still(c, func(f *inFlight) { f.identityLost(g, codeIdentityExpiredInFlight) }) {
			n++
		}
	}
	if n > 0 {
		g.log.Info("cut requests in flight whose identity expired (limits.in_flight_identity_grace after it)", slog.Int("requests", n))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var next time.Time
	for f := s.head; f != nil; f = f.next {
		if !f.deadline.IsZero() && (next.IsZero() || f.deadline.Before(next)) && f.refusal() == nil {
			next = f.deadline
		}
	}
	s.arm(next)
}

// recheckFlights judges every request in flight again, one scan of the
// set: with recheckEvidence, the identity of those whose identity has not
// expired (an expired one is the timer's, after the grace) is verified
// again and those that no longer verify are cut (identity_revoked_in_flight);
// with recheckPolicy, those not yet decided under pol are decided again
// and those pol no longer admits as they were admitted are cut
// (policy_changed_in_flight).
func (g *Gateway) recheckFlights(what recheckWhat, pol *policy.Policy) recheckCount {
	s := &g.flights
	now := time.Now()
	grace := g.cfg.Limits.InFlightIdentityGrace.D()
	todo := s.pick(func(f *inFlight) bool {
		live := f.deadline.IsZero() || now.Before(f.deadline.Add(-grace))
		return what&recheckEvidence != 0 && live || what&recheckPolicy != 0 && f.judged.pol != pol
	})
	var n recheckCount
	for _, c := range todo {
		if what&recheckEvidence != 0 && (c.deadline.IsZero() || now.Before(c.deadline.Add(-grace))) {
			if _, ok := g.reverify(c.ev, c.name); !ok {
				if s.still(c, func(f *inFlight) { f.identityLost(g, codeIdentityRevokedInFlight) }) {
					n.revoked++
				}
				continue
			}
		}
		if what&recheckPolicy == 0 || c.judged.pol == pol {
			continue
		}
		n.judged++
		keep := c.judged.keeps(pol)
		if s.still(c, func(f *inFlight) {
			if keep {
				f.judged.pol = pol
				return
			}
			f.policyChanged(g)
		}) && !keep {
			n.changed++
		}
	}
	return n
}

// policyChanged cuts f, which a policy reload no longer admits as it
// was admitted. Under the set's lock.
func (f *inFlight) policyChanged(g *Gateway) {
	r := newRefusal(http.StatusBadGateway, codePolicyChangedInFlight, fmt.Sprintf("the policy was reloaded while this request of workload %q was in flight and no longer allows it as it was allowed (rule %q): the request had been sent to the upstream, which may have acted on it, and its answer is not relayed; `credgate explain` says what the policy in force decides", f.caller.Workload, f.rule), f.rule)
	f.cutWith(r, errPolicyChanged)
}

// identityLost cuts f, whose identity expired or was revoked (code).
// Under the set's lock.
func (f *inFlight) identityLost(g *Gateway, code string) {
	why := "expired"
	if code == codeIdentityRevokedInFlight {
		why = "was revoked (its token's signing key or its certificate's CA was removed)"
	}
	r := newRefusal(http.StatusBadGateway, code, fmt.Sprintf("the identity of workload %q %s while this request was in flight: the request had been sent to the upstream, which may have acted on it, and its answer is not relayed; send it again with current credentials", f.caller.Workload, why), f.rule)
	f.cutWith(r, errIdentityLost)
}

// remove takes f out of the set; removing it again (or one never
// added) does nothing.
func (s *flightSet) remove(f *inFlight) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !f.listed {
		return
	}
	if f.prev != nil {
		f.prev.next = f.next
	} else {
		s.head = f.next
	}
	if f.next != nil {
		f.next.prev = f.prev
	}
	f.prev, f.next, f.listed = nil, nil, false
}

// len is the number of requests in the set (tests).
func (s *flightSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for f := s.head; f != nil; f = f.next {
		n++
	}
	return n
}

// cancelMatching cancels the requests snap covers and returns how many.
func (s *flightSet) cancelMatching(g *Gateway, snap *killswitch.Snapshot) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for f := s.head; f != nil; f = f.next {
		if f.switchOff(g, snap) {
			n++
		}
	}
	return n
}

// switchOff cancels f when snap covers it, recording the refusal; it
// reports whether it did.
func (f *inFlight) switchOff(g *Gateway, snap *killswitch.Snapshot) bool {
	e := snap.Match(f.rule, f.caller, f.credentials...)
	if e == nil {
		return false
	}
	r := g.switchEntryRefusal(e, f.rule)
	r.Code, r.Status = codeDisabledInFlight, http.StatusBadGateway
	r.Reason = fmt.Sprintf("%s; it was disabled while this request was in flight: the request had been sent to the upstream, which may have acted on it, and its answer is not relayed", r.Reason)
	f.cutWith(r, errSwitchedOff)
	return true
}

// cutWith cancels f's upstream request with cause and ends its body's
// pending read, recording r (the first cut's stands). Under the set's
// lock.
func (f *inFlight) cutWith(r refusal, cause error) {
	f.mu.Lock()
	if f.cut == nil {
		f.cut = &r
	}
	f.mu.Unlock()
	f.cancelCause(cause)
	f.body.switchOff()
}

// canceller cancels a request with a cause: *inFlight (cancelCause), or
// a context's own cancel func (cancelFunc, tests).
type canceller interface{ cancelCause(cause error) }

// cancelFunc is a context.CancelCauseFunc as a canceller.
type cancelFunc context.CancelCauseFunc

func (c cancelFunc) cancelCause(cause error) { c(cause) }

// cancelCause cancels f's context with cause, then calls the round
// trip's abort registered with OnCancel, as context.AfterFunc on the
// context would have.
func (f *inFlight) cancelCause(cause error) {
	f.mu.Lock()
	if f.ended {
		// The tunnel's next request may hold the context now.
		f.mu.Unlock()
		return
	}
	f.ctxCancel(cause) // under mu: endFlight waits for it
	f.cancelled = true
	abort := f.abort
	f.abort = nil
	f.mu.Unlock()
	if abort != nil {
		abort()
	}
}

// flightWatch serves the flights of an intercepted connection's HTTP/1.1
// requests, which come one after the other on one context (the h1
// server's, one per connection): one context.AfterFunc on that context,
// made at the first request, in place of one per request on the flight's
// parent (when it is cancelled, the flight in flight has its round
// trip's abort called), and one flight context made from it, lent to
// each request in turn, in place of one per request. A cut cancels the
// flight context of the request it cuts, and the next request gets a
// new one; a flight that ended can no longer cancel it (inFlight.ended),
// so nothing of one request reaches the next.
type flightWatch struct {
	mu     sync.Mutex
	ctx    context.Context // the context watched; nil until the first request
	flight *inFlight       // the flight covered, nil between requests
	// fctx is the flight context made from ctx, fcancel its cancel.
	fctx    context.Context
	fcancel context.CancelCauseFunc
}

// enter has w cover f, whose parent is ctx, lending it the flight
// context, and reports whether it does: not when ctx is another context
// than the one watched (the first one seen), or another flight is
// covered.
func (w *flightWatch) enter(ctx context.Context, f *inFlight) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ctx == nil {
		w.ctx = ctx
		context.AfterFunc(ctx, w.fire) // runs at the connection's end at the latest
	}
	if w.ctx != ctx || w.flight != nil {
		return false
	}
	if w.fctx == nil || w.fctx.Err() != nil {
		w.fctx, w.fcancel = context.WithCancelCause(ctx)
	}
	w.flight = f
	f.ctx, f.ctxCancel, f.watch = w.fctx, w.fcancel, w
	return true
}

// leave ends w's cover of f.
func (w *flightWatch) leave(f *inFlight) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.flight == f {
		w.flight = nil
	}
}

// fire cancels the flight covered with the watched context's cause, then
// calls its round trip's abort (cancelCause). The flight context is the
// watched one's child and is cancelled with it, but by the watched
// context's cancel, which starts fire (context.AfterFunc) before, after
// or while it reaches that child (its children are a map): left to that,
// the abort could fail the round trip while its context still reported
// no error, and the client's leaving would be answered and audited as
// the upstream's failure (a 504 upstream_timeout, since the abort is a
// deadline in the past). Whoever sees the aborted round trip fail finds
// its context cancelled (TestAbortAfterContextCancelled).
func (w *flightWatch) fire() {
	w.mu.Lock()
	f := w.flight
	w.mu.Unlock()
	if f != nil {
		f.cancelCause(context.Cause(w.ctx))
	}
}

// Context implements h1client.Cancellation: the outbound request's
// context, whose own cancellation is the flight's (cancelCause).
func (st *reqState) Context() context.Context { return &st.ctx }

// Parent implements h1client.Cancellation: what the flight's context
// was made from, or nil when the tunnel's flightWatch covers it.
func (st *reqState) Parent() context.Context {
	if st.flight.watch != nil {
		return nil
	}
	return st.flight.parent
}

// OnCancel implements h1client.Cancellation. A context already
// cancelled, by its own cancellation or its parent's, has abort called
// at once.
func (st *reqState) OnCancel(abort func()) {
	f := &st.flight
	f.mu.Lock()
	if !f.cancelled && f.ctx.Err() == nil {
		f.abort = abort
		f.mu.Unlock()
		return
	}
	f.mu.Unlock()
	abort()
}

// StopOnCancel implements h1client.Cancellation.
func (st *reqState) StopOnCancel() bool {
	f := &st.flight
	f.mu.Lock()
	defer f.mu.Unlock()
	stopped := f.abort != nil
	f.abort = nil
	return stopped
}

// refusal returns the refusal of what cut the request in flight (the
// kill switch, the expiry or revocation of its identity), nil when
// nothing did.
func (f *inFlight) refusal() *refusal {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cut
}

// startFlight registers the request that decision d allowed workload wl,
// identified from ev, to send, with its body (nil without one), in f,
// and returns the context to send it with: the kill switch, the expiry
// and the revocation of the identity and a policy reload that no longer
// admits it (jd: the decision, judged) cancel it from now on. Call
// endFlight(f) when the request is done.
func (g *Gateway) startFlight(ctx context.Context, f *inFlight, tw *flightWatch, body *idleBody, ev identity.Evidence, wl identity.Workload, d policy.Decision, jd judgement) context.Context {
	f.parent, f.abort, f.cancelled, f.ended, f.watch = ctx, nil, false, false, nil
	if tw == nil || !tw.enter(ctx, f) {
		f.ctx, f.ctxCancel = context.WithCancelCause(ctx)
	}
	ctx = f.ctx
	f.rule, f.caller, f.body, f.judged = d.Rule, switchCaller(wl), body, jd
	f.ev, f.name = ev, wl.Name
	if exp := wl.Expires(); !exp.IsZero() {
		f.deadline = exp.Add(g.cfg.Limits.InFlightIdentityGrace.D())
	}
	f.credentials = nil
	if d.Inject != nil {
		f.credentials = d.Inject.Uses()
	}
	g.flights.add(f)
	// A switch applied after the decision and before the registration
	// would not see f: check the state in force now.
	if g.switches != nil {
		if snap := g.switches.Snapshot(); snap.Len() > 0 {
			f.switchOff(g, snap)
		}
	}
	// Likewise a reload after the decision: the scan it started may
	// have missed f (jd is this goroutine's copy; the scan writes f's).
	if pol := g.store.Current(); pol != jd.pol && !jd.keeps(pol) {
		g.flights.mu.Lock()
		f.policyChanged(g)
		g.flights.mu.Unlock()
	}
	return ctx
}

// cutWaiting returns the refusal of a request that was cut (st.flight)
// while it waited for its credential, and whether it was: one the kill
// switch covers is refused as any request it covers is, 403 disabled
// (nothing reached the upstream), one whose identity was lost or that a
// reload no longer admits with the code of its cut.
func (g *Gateway) cutWaiting(st *reqState, wl identity.Workload, d policy.Decision) (refusal, bool) {
	cut := st.flight.refusal()
	if cut == nil {
		return refusal{}, false
	}
	if cut.Code == codeDisabledInFlight {
		if f, off := g.switchRefusal(wl, d, false); off {
			return f, true
		}
	}
	return *cut, true
}

// endFlight ends what startFlight(f) began: f leaves the requests in
// flight, and its context is cancelled (a method, not a closure made per
// request).
func (g *Gateway) endFlight(f *inFlight) {
	g.flights.remove(f)
	if f.watch == nil {
		f.cancelCause(nil)
	}
	f.mu.Lock()
	f.ended = true
	f.abort = nil
	f.mu.Unlock()
	if f.watch != nil {
		// The tunnel's flight context lives on for its next request.
		f.watch.leave(f)
	}
}

// cutInFlight returns the refusal of what cut r in flight (the kill
// switch, the expiry or revocation of its identity, a policy reload, a
// gRPC call's deadline: grpcend.go) when
// r's context was
// cancelled by it.
func cutInFlight(r *http.Request, st *reqState) (*refusal, bool) {
	if st == nil {
		return nil, false
	}
	if cause := context.Cause(r.Context()); !errors.Is(cause, errSwitchedOff) && !errors.Is(cause, errIdentityLost) && !errors.Is(cause, errPolicyChanged) && !errors.Is(cause, errGRPCDeadline) {
		return nil, false
	}
	f := st.flight.refusal()
	return f, f != nil
}
