package policy

// WouldDeny is the outcome (Decision.Outcome) of a request the policy
// refuses but observe mode lets through without a credential; the audit
// line and the requests metric carry it as their decision.
const WouldDeny = "would_deny"

// observable are the refusal codes observe mode turns into WouldDeny:
// the refusals of the rules themselves. Every other refusal (identity,
// a bad method or path, a condition that cannot be evaluated, an inject
// rule on plain http, private addresses, kill switches, rate limits)
// still refuses.
var observable = map[string]bool{
	"no_rule":            true,
	"denied_by_rule":     true,
	"method_not_allowed": true,
	"path_not_allowed":   true,
	"condition_not_met":  true,
}

// observeMode is where a policy sets `mode: observe`.
type observeMode struct {
	// all: the top-level mode is observe.
	all bool
	// workloads are the workloads whose mode is observe.
	workloads map[string]bool
	// dests indexes the destinations whose mode is observe by host, one
	// pseudo-rule per destination, so that a refused request finds them
	// as Decide finds rules.
	dests index
	// anyDest is true when dests is not empty.
	anyDest bool
}

// on reports whether any part of the policy is in observe mode.
func (m *observeMode) on() bool { return m.all || len(m.workloads) > 0 || m.anyDest }

// covers reports whether observe mode applies to a request from who to
// host:port.
func (m *observeMode) covers(who, host string, isIP bool, port, defPort int) bool {
	if m.all || who != "" && m.workloads[who] {
		return true
	}
	if !m.anyDest {
		return false
	}
	cands := m.dests.lookup(host, isIP)
	for i := range cands {
		if cands[i].destFor(port, defPort) != nil {
			return true
		}
	}
	return false
}

// buildObserveIndex indexes the destinations in observe mode by host.
func buildObserveIndex(dests []*destination) index {
	rules := make([]*rule, len(dests))
	for i, d := range dests {
		rules[i] = &rule{index: i, name: d.name, to: []*destination{d}}
	}
	return buildIndex(rules)
}

// wouldDeny turns the refusal d into observe mode's answer: the request
// (Forward) or connection (Tunnel) goes through without a credential,
// under the caller's workload rate limit, and is audited as WouldDeny with
// d's code. It reaches public addresses only, unless miss is set: the
// destination of a rule that would let this caller through to this
// scheme, host and port with another method or path (rule.reachable: an
// inject or tunnel rule without a condition; never a deny rule), whose
// allow_private then applies (the address is one the policy already lets
// this caller reach).
func (p *Policy) wouldDeny(d Decision, connect bool, who string, miss *destination) Decision {
	act := Forward
	if connect {
		act = Tunnel
	}
	out := Decision{
		Action:        act,
		WouldDeny:     true,
		Rule:          d.Rule,
		Destination:   d.Destination,
		Code:          d.Code,
		Reason:        d.Reason + "; observe mode lets it through without a credential",
		WorkloadLimit: p.WorkloadRateLimit(who),
	}
	if miss != nil {
		out.Destination, out.AllowPrivate = miss.name, miss.allowPrivate
	}
	return out
}

// parseMode reads a `mode:` setting (enforce, the default, or observe)
// and reports whether it is observe.
func (ps *parser) parseMode(f field, what string) bool {
	v, ok := ps.str(f.val, what+" mode")
	if !ok {
		return false
	}
	switch v {
	case "enforce":
		return false
	case "observe":
		return true
	}
	ps.errorf(deref(f.val), "%s: mode %q must be enforce (the default: refused requests are refused) or observe (refused requests go through without a credential and are audited as would_deny)", what, v)
	return false
}
