package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

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
	rule, workload, credential string
	cancel                     context.CancelCauseFunc
	// body is the client's request body, whose pending read the switch
	// ends too (nil without one).
	body *idleBody
	// cut is the refusal of the switch that cancelled the request (set
	// under the set's lock, read after the round trip ended).
	mu  sync.Mutex
	cut *refusal
}

// flightSet holds the requests being forwarded.
type flightSet struct {
	mu sync.Mutex
	m  map[*inFlight]struct{}
}

func (s *flightSet) add(f *inFlight) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[*inFlight]struct{}{}
	}
	s.m[f] = struct{}{}
}

func (s *flightSet) remove(f *inFlight) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, f)
}

// cancelMatching cancels the requests snap covers and returns how many.
func (s *flightSet) cancelMatching(g *Gateway, snap *killswitch.Snapshot) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for f := range s.m {
		if f.switchOff(g, snap) {
			n++
		}
	}
	return n
}

// switchOff cancels f when snap covers it, recording the refusal; it
// reports whether it did.
func (f *inFlight) switchOff(g *Gateway, snap *killswitch.Snapshot) bool {
	e := snap.Match(f.rule, f.workload, f.credential)
	if e == nil {
		return false
	}
	r := g.switchEntryRefusal(e, f.rule)
	r.Code, r.Status = codeDisabledInFlight, http.StatusBadGateway
	r.Reason = fmt.Sprintf("%s; it was disabled while this request was in flight: the request had been sent to the upstream, which may have acted on it, and its answer is not relayed", r.Reason)
	f.mu.Lock()
	if f.cut == nil {
		f.cut = &r
	}
	f.mu.Unlock()
	f.cancel(errSwitchedOff)
	f.body.switchOff()
	return true
}

// refusal returns the refusal of the switch that cancelled the request,
// nil when none did.
func (f *inFlight) refusal() *refusal {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cut
}

// startFlight registers the request that decision d allowed workload wl
// to send, with its body (nil without one), in f, and returns the context to send it with: the kill switch
// cancels it from now on. Call the returned func when the request is
// done.
func (g *Gateway) startFlight(ctx context.Context, f *inFlight, body *idleBody, wl identity.Workload, d policy.Decision) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	f.rule, f.workload, f.cancel, f.body = d.Rule, wl.DisplayName(), cancel, body
	if d.Inject != nil {
		f.credential = d.Inject.Credential
	}
	g.flights.add(f)
	// A switch applied after the decision and before the registration
	// would not see f: check the state in force now.
	if g.switches != nil {
		if snap := g.switches.Snapshot(); snap.Len() > 0 {
			f.switchOff(g, snap)
		}
	}
	return ctx, func() {
		g.flights.remove(f)
		cancel(nil)
	}
}

// switchedOff returns the kill switch's refusal when r's context was
// cancelled by it.
func switchedOff(r *http.Request, st *reqState) (*refusal, bool) {
	if st == nil || !errors.Is(context.Cause(r.Context()), errSwitchedOff) {
		return nil, false
	}
	f := st.flight.refusal()
	return f, f != nil
}
