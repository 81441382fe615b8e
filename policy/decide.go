package policy

import (
	"fmt"
	"github.com/credgate/credgate/internal/canonical"
	"net/http"
	"strconv"
	"strings"
)

// candidate is a rule that may apply to a host, with the rule's
// destinations that list that host.
type candidate struct {
	r     *rule
	dests []*destination
}

// index finds the candidate rules for a host without scanning all rules.
//
// exact maps a host (or IP literal) to its candidates; wild maps the
// suffix of a "*." pattern ("stripe.com" for "*.stripe.com") to its
// candidates. Both lists are pre-merged in rule order: an exact entry
// already contains the candidates of every wildcard covering that host,
// and a wildcard entry those of every shorter wildcard covering it. So a
// lookup is one exact probe, or a walk over the host's suffixes that stops
// at the first (longest) wildcard present.
type index struct {
	exact map[string][]candidate
	wild  map[string][]candidate
}

func buildIndex(rules []*rule) index {
	exact := map[string][]candidate{}
	wild := map[string][]candidate{}
	ips := map[string]bool{}
	add := func(m map[string][]candidate, key string, r *rule, d *destination) {
		l := m[key]
		if n := len(l); n > 0 && l[n-1].r == r {
			if !containsDest(l[n-1].dests, d) {
				l[n-1].dests = append(l[n-1].dests, d)
			}
			return
		}
		m[key] = append(l, candidate{r: r, dests: []*destination{d}})
	}
	for _, r := range rules {
		for _, d := range r.to {
			for _, h := range d.hosts {
				switch {
				case h.wildcard:
					add(wild, h.name, r, d)
				default:
					add(exact, h.name, r, d)
					if h.ip {
						ips[h.name] = true
					}
				}
			}
		}
	}
	// Merge the wildcards covering each key into its list. Work from the
	// raw wildcard lists so that merging order does not matter.
	rawWild := make(map[string][]candidate, len(wild))
	for k, v := range wild {
		rawWild[k] = v
	}
	covering := func(name string) [][]candidate {
		var out [][]candidate
		for s := name; ; {
			i := strings.IndexByte(s, '.')
			if i < 0 {
				return out
			}
			s = s[i+1:]
			if l, ok := rawWild[s]; ok {
				out = append(out, l)
			}
		}
	}
	for k, v := range exact {
		if ips[k] {
			continue
		}
		if c := covering(k); len(c) > 0 {
			exact[k] = mergeCandidates(append(c, v))
		}
	}
	for k, v := range rawWild {
		if c := covering(k); len(c) > 0 {
			wild[k] = mergeCandidates(append(c, v))
		}
	}
	return index{exact: exact, wild: wild}
}

func containsDest(ds []*destination, d *destination) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}

// mergeCandidates merges lists sorted by rule index into one, joining the
// destinations of a rule that appears in several.
func mergeCandidates(lists [][]candidate) []candidate {
	var out []candidate
	pos := make([]int, len(lists))
	for {
		best := -1
		for i, l := range lists {
			if pos[i] < len(l) && (best < 0 || l[pos[i]].r.index < lists[best][pos[best]].r.index) {
				best = i
			}
		}
		if best < 0 {
			return out
		}
		c := lists[best][pos[best]]
		pos[best]++
		if n := len(out); n > 0 && out[n-1].r == c.r {
			for _, d := range c.dests {
				if !containsDest(out[n-1].dests, d) {
					out[n-1].dests = append(out[n-1].dests, d)
				}
			}
			continue
		}
		out = append(out, candidate{r: c.r, dests: append([]*destination(nil), c.dests...)})
	}
}

func (ix *index) lookup(host string, isIP bool) []candidate {
	if l, ok := ix.exact[host]; ok {
		return l
	}
	if isIP {
		return nil
	}
	for s := host; ; {
		i := strings.IndexByte(s, '.')
		if i < 0 {
			return nil
		}
		s = s[i+1:]
		if l, ok := ix.wild[s]; ok {
			return l
		}
	}
}

// destFor returns the first of c's destinations that admits port, where
// defPort is the port a destination without `ports` admits.
func (c *candidate) destFor(port, defPort int) *destination {
	for _, d := range c.dests {
		if d.ports == nil {
			if port == defPort {
				return d
			}
			continue
		}
		for _, p := range d.ports {
			if p == port {
				return d
			}
		}
	}
	return nil
}

// Decide answers q. It never blocks and does not allocate on the paths
// that allow a request, apart from the reason sentence and the
// evaluation of `when:` conditions (bounded by a cost limit).
//
// For a CONNECT (q.Connect) the candidates are the rules whose `from`
// matches the caller and whose `to` covers the host and port, in file
// order, up to the first one that does not look at the request (no methods,
// paths or condition): rules after it can never decide a request inside the tunnel.
// No candidate: Deny "no_rule". Only deny rules among the candidates: Deny
// "denied_by_rule" naming the first (every request inside the tunnel would
// be refused, so no leaf certificate is signed for it), or
// "condition_not_met" when a tunnel rule's false condition was skipped.
// Any candidate injects, or denies by method, path or condition:
// Intercept, naming the first such rule. Otherwise the first candidate
// decides: Tunnel, or Deny "denied_by_rule".
//
// For a request the first candidate whose methods and paths also match
// decides: Inject (a plain http request additionally needs the rule's
// plaintext: true, else Deny "plaintext_not_allowed"), Forward for a
// tunnel rule, Deny "denied_by_rule" for a deny rule. None: Deny
// "condition_not_met" when a rule matched all but its condition,
// "method_not_allowed" or "path_not_allowed" when a rule for this caller
// and host exists but does not admit the method or path, else "no_rule".
//
// A rule's `when:` condition makes it look at the request (except on a
// tunnel rule, which cannot read the request and is evaluated at CONNECT);
// a false condition skips the rule. A condition that fails to evaluate
// answers Deny "condition_error" at once: skipping the rule could let a
// later rule allow what it guarded.
//
// A destination without `ports` admits 443 for CONNECT and https, 80 for
// http. q.Port 0 means that default.
//
// In observe mode (`mode: observe` on the policy, the caller's workload,
// or a destination listing the host and port) a refusal coded no_rule,
// denied_by_rule, method_not_allowed, path_not_allowed or
// condition_not_met becomes Tunnel (CONNECT) or Forward with WouldDeny
// set: no credential, and public addresses only, except that a
// method_not_allowed or path_not_allowed request keeps the allow_private
// of the destination of an inject or tunnel rule without a condition that
// lets this caller through to this scheme, host and port with another
// method or path (the address is one the policy lets this caller reach;
// only the method or path is not). A deny rule, or a rule whose condition
// may refuse this caller, lends no allow_private. A CONNECT that a rule
// must intercept is intercepted as in enforce mode.
func (p *Policy) Decide(q Query) Decision {
	host, isIP := normaliseQueryHost(q.Host)
	defPort := 443
	if !q.Connect && q.Scheme == "http" {
		defPort = 80
	}
	port := q.Port
	if port == 0 {
		port = defPort
	}
	who := q.Workload.Name
	cands := p.index.lookup(host, isIP)
	var d Decision
	var miss *destination
	if q.Connect {
		d = p.decideConnect(&q, cands, who, host, port, defPort)
	} else {
		d, miss = p.decideRequest(q, cands, who, host, port, defPort)
	}
	if d.Action == Deny && p.observe.on() && observable[d.Code] && p.observe.covers(who, host, isIP, port, defPort) {
		return p.wouldDeny(d, q.Connect, who, miss)
	}
	return d
}

func (p *Policy) decideConnect(q *Query, cands []candidate, who, host string, port, defPort int) Decision {
	var first, forcing, condMiss *candidate
	var firstDest, forcingDest *destination
	// admits: some candidate is an inject or tunnel rule, so some request
	// inside the tunnel may be let through. Without one every request is
	// refused, and the CONNECT is refused as a whole: intercepting it
	// would sign a leaf certificate (and hold a tunnel) for nothing.
	admits := false
	var vars *conditionVarsFor
	for i := range cands {
		c := &cands[i]
		if !c.r.matchesFrom(who) {
			continue
		}
		d := c.destFor(port, defPort)
		if d == nil {
			continue
		}
		if c.r.cond != nil && !c.r.conditional() {
			// A tunnel rule's condition, decided now: it cannot read the
			// request.
			if vars == nil {
				// A copy escapes with vars (CEL's activation), not q: a
				// rule without a condition costs the caller's Query no
				// allocation.
				qc := *q
				vars = newConditionVars(&qc)
			}
			ok, err := c.r.cond.eval(vars)
			if err != nil {
				return conditionError(c.r, d, who, hostPort(host, port), err)
			}
			if !ok {
				if condMiss == nil {
					condMiss = c
				}
				continue
			}
		}
		if first == nil {
			first, firstDest = c, d
		}
		admits = admits || c.r.act != ruleDeny
		if forcing == nil && (c.r.act == ruleInject || c.r.act == ruleDeny && c.r.conditional()) {
			forcing, forcingDest = c, d
		}
		if !c.r.conditional() {
			break
		}
	}
	switch {
	case first == nil && condMiss != nil:
		return Decision{Action: Deny, Code: "condition_not_met",
			Reason: fmt.Sprintf("rule %q would let %s reach %s, but its condition is not met", condMiss.r.name, caller(who), hostPort(host, port))}
	case first == nil:
		return Decision{Action: Deny, Code: "no_rule",
			Reason: fmt.Sprintf("no rule allows %s to reach %s", caller(who), hostPort(host, port))}
	case !admits && condMiss != nil:
		// Deny rules only, and a tunnel rule whose condition is not met.
		return Decision{Action: Deny, Code: "condition_not_met",
			Reason: fmt.Sprintf("rule %q would let %s reach %s, but its condition is not met", condMiss.r.name, caller(who), hostPort(host, port))}
	case !admits && first.r.conditional():
		return Decision{Action: Deny, Rule: first.r.name, Destination: firstDest.name, Code: "denied_by_rule",
			Reason: fmt.Sprintf("rule %q denies %s some requests to %s and no rule lets any other through", first.r.name, caller(who), hostPort(host, port))}
	case forcing != nil:
		return Decision{Action: Intercept, Rule: forcing.r.name, Destination: forcingDest.name, AllowPrivate: forcingDest.allowPrivate,
			Reason: fmt.Sprintf("rule %q must see the requests %s sends to %s, so the connection is intercepted", forcing.r.name, caller(who), hostPort(host, port))}
	case first.r.act == ruleTunnel:
		return Decision{Action: Tunnel, Rule: first.r.name, Destination: firstDest.name, AllowPrivate: firstDest.allowPrivate,
			Reason:    fmt.Sprintf("rule %q lets %s tunnel to %s without interception", first.r.name, caller(who), hostPort(host, port)),
			RuleLimit: first.r.limit, WorkloadLimit: p.WorkloadRateLimit(who)}
	default:
		return Decision{Action: Deny, Rule: first.r.name, Destination: firstDest.name, Code: "denied_by_rule",
			Reason: fmt.Sprintf("rule %q denies %s access to %s", first.r.name, caller(who), hostPort(host, port))}
	}
}

// decideRequest decides a request inside a tunnel or a plain http one.
// For a method_not_allowed or path_not_allowed refusal it also returns the
// destination of the first rule that would let the caller through to this
// scheme, host and port with another method or path (reachable), nil for
// none: observe mode's address check follows that destination's
// allow_private.
func (p *Policy) decideRequest(q Query, cands []candidate, who, host string, port, defPort int) (Decision, *destination) {
	// One canonical method: what the rule matches is what the conditions
	// see and the upstream receives, so a method that is not an
	// upper-case token is refused, never upper-cased here.
	method := q.Method
	if err := canonical.Method(method); err != nil {
		return Decision{Action: Deny, Code: CodeBadMethod,
			Reason: fmt.Sprintf("method %q is not an upper-case token; send the method in upper case (GET, POST, ...)", method)}, nil
	}
	if method == http.MethodConnect {
		return Decision{Action: Deny, Code: CodeBadMethod,
			Reason: "CONNECT opens a tunnel to the gateway; it is not a request the gateway forwards inside one"}, nil
	}
	forms := pathForms{path: q.Path}
	var methodMiss, pathMiss, condMiss *candidate
	var reach *destination
	var vars *conditionVarsFor
	for i := range cands {
		c := &cands[i]
		if !c.r.matchesFrom(who) {
			continue
		}
		d := c.destFor(port, defPort)
		if d == nil {
			continue
		}
		pathOK := c.r.matchesPath(&forms, d)
		if !c.r.matchesMethod(method) || method == http.MethodTrace && c.r.act == ruleInject && !c.r.namesMethod(method) {
			if pathOK {
				methodMiss = namedMiss(methodMiss, c)
			} else {
				pathMiss = namedMiss(pathMiss, c)
			}
			if reach == nil && c.r.reachable(q.Scheme) {
				reach = d
			}
			continue
		}
		if !pathOK {
			pathMiss = namedMiss(pathMiss, c)
			if reach == nil && c.r.reachable(q.Scheme) {
				reach = d
			}
			continue
		}
		r := c.r
		if r.cond != nil {
			if vars == nil {
				qc := q // as in decideConnect: q itself stays on the stack
				vars = newConditionVars(&qc)
			}
			ok, err := r.cond.eval(vars)
			if err != nil {
				return conditionError(r, d, who, requestLine(method, q.Scheme, host, port, defPort, q.Path), err), nil
			}
			if !ok {
				if condMiss == nil {
					condMiss = c
				}
				continue
			}
		}
		dec := Decision{Rule: r.name, Destination: d.name, AllowPrivate: d.allowPrivate, EncodedSlashes: d.encodedSlashes, EncodedDelimiters: d.encodedDelimiters}
		if p.HasCustody() {
			dec.CustodyHeaders = p.custodyHeaders[d.name]
			dec.CustodyVersion = p.CustodyVersion(d.name, who)
		}
		switch r.act {
		case ruleInject:
			if q.Scheme == "http" && !r.plaintext {
				dec.Code = "plaintext_not_allowed"
				dec.Reason = fmt.Sprintf("rule %q would inject credential %q, but %s is plain http and the rule does not set plaintext: true", r.name, r.plan.Credential, requestLine(method, q.Scheme, host, port, defPort, q.Path))
				return dec, nil
			}
			dec.Action = Inject
			dec.Inject = r.plan
			dec.Scrub, dec.Custody, dec.Ranges = r.scrub, r.custody, r.ranges
			dec.RuleLimit, dec.WorkloadLimit = r.limit, p.WorkloadRateLimit(who)
			if !q.NoAllowReason {
				dec.Reason = fmt.Sprintf("rule %q injects credential %q as %s into %s from %s", r.name, r.plan.Credential, r.plan.As, requestLine(method, q.Scheme, host, port, defPort, q.Path), caller(who))
			}
		case ruleTunnel:
			dec.Action = Forward
			dec.RuleLimit, dec.WorkloadLimit = r.limit, p.WorkloadRateLimit(who)
			if !q.NoAllowReason {
				dec.Reason = fmt.Sprintf("rule %q forwards %s from %s without a credential", r.name, requestLine(method, q.Scheme, host, port, defPort, q.Path), caller(who))
			}
		default:
			dec.Code = "denied_by_rule"
			dec.Reason = fmt.Sprintf("rule %q denies %s from %s", r.name, requestLine(method, q.Scheme, host, port, defPort, q.Path), caller(who))
		}
		return dec, nil
	}
	switch {
	case condMiss != nil:
		return Decision{Action: Deny, Code: "condition_not_met",
			Reason: fmt.Sprintf("rule %q would apply to %s from %s, but its condition is not met", condMiss.r.name, requestLine(method, q.Scheme, host, port, defPort, q.Path), caller(who))}, nil
	case methodMiss != nil && methodMiss.r.act == ruleDeny:
		return Decision{Action: Deny, Code: "method_not_allowed",
			Reason: fmt.Sprintf("no rule lets %s reach %s with method %s (rule %q denies other requests there)", caller(who), hostPort(host, port), method, methodMiss.r.name)}, reach
	case methodMiss != nil:
		return Decision{Action: Deny, Code: "method_not_allowed",
			Reason: fmt.Sprintf("rule %q lets %s reach %s, but not with method %s", methodMiss.r.name, caller(who), hostPort(host, port), method)}, reach
	case pathMiss != nil && pathMiss.r.act == ruleDeny:
		return Decision{Action: Deny, Code: "path_not_allowed",
			Reason: fmt.Sprintf("no rule lets %s send %s %s to %s (rule %q denies other requests there)", caller(who), method, q.Path, hostPort(host, port), pathMiss.r.name)}, reach
	case pathMiss != nil:
		return Decision{Action: Deny, Code: "path_not_allowed",
			Reason: fmt.Sprintf("rule %q lets %s reach %s, but not %s %s", pathMiss.r.name, caller(who), hostPort(host, port), method, q.Path)}, reach
	}
	return Decision{Action: Deny, Code: "no_rule",
		Reason: fmt.Sprintf("no rule allows %s to reach %s", caller(who), hostPort(host, port))}, nil
}

// namedMiss is the rule a method_not_allowed or path_not_allowed reason
// names, given the one named so far (nil for none) and the next rule c
// that missed the same way: the first that admits requests (inject or
// tunnel), else the first deny rule, which lets nobody reach the host and
// is named as such.
func namedMiss(named, c *candidate) *candidate {
	if named == nil || named.r.act == ruleDeny && c.r.act != ruleDeny {
		return c
	}
	return named
}

// conditionError refuses when a rule's condition cannot be evaluated:
// skipping the rule instead could let a later rule allow what a deny rule
// was meant to stop.
func conditionError(r *rule, d *destination, who, what string, err error) Decision {
	return Decision{Action: Deny, Rule: r.name, Destination: d.name, Code: "condition_error",
		Reason: fmt.Sprintf("rule %q: the condition could not be evaluated for %s from %s (%v), so it is refused", r.name, what, caller(who), err)}
}

func caller(name string) string {
	if name == "" {
		return "anonymous callers"
	}
	return "workload " + strconv.Quote(name)
}

func hostPort(host string, port int) string {
	if strings.IndexByte(host, ':') >= 0 {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(port)
}

func requestLine(method, scheme, host string, port, defPort int, path string) string {
	if scheme == "" {
		scheme = "https"
	}
	h := host
	if strings.IndexByte(h, ':') >= 0 {
		h = "[" + h + "]"
	}
	if port != defPort {
		h += ":" + strconv.Itoa(port)
	}
	return method + " " + scheme + "://" + h + path
}
