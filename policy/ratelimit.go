package policy

import (
	"math"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/internal/yamlstrict"
)

// Bounds of a `rate_limit:` setting. They keep the limiter's arithmetic
// (microseconds since the epoch plus the burst's span) exact in a float64,
// which is what Redis's Lua has.
const (
	// MinRPS is the slowest rate: one request per 1000 s.
	MinRPS = 0.001
	// MaxRPS is the fastest rate: one request per microsecond.
	MaxRPS = 1e6
	// MaxBurst is the largest burst.
	MaxBurst = 1_000_000
)

// RateLimit is a `rate_limit:` setting of a rule or a workload: a sustained
// rate in requests per second and the number of requests that may arrive
// at once. The gateway enforces it (package ratelimit); the policy only
// parses and carries it.
type RateLimit struct {
	// RPS is the sustained rate, from MinRPS to MaxRPS.
	RPS float64
	// Burst is how many requests may arrive at once, from 1 to MaxBurst
	// (default: one second's worth, at least 1).
	Burst int
}

// String says the limit in the words of refusals and `credgate explain`.
func (l RateLimit) String() string {
	return strconv.FormatFloat(l.RPS, 'g', -1, 64) + " requests/s, burst " + strconv.Itoa(l.Burst)
}

// WorkloadRateLimit returns the `rate_limit:` of the named workload, nil
// when it has none.
func (p *Policy) WorkloadRateLimit(name string) *RateLimit {
	if len(p.wlLimits) == 0 {
		return nil
	}
	return p.wlLimits[name]
}

// parseRateLimit reads `rate_limit: {rps: 50, burst: 100}`.
func (ps *parser) parseRateLimit(f field, what string) *RateLimit {
	what += " rate_limit"
	body := deref(f.val)
	if body.Kind != yaml.MappingNode {
		ps.errorf(body, "%s must be a mapping like {rps: 50, burst: 100}", what)
		return nil
	}
	fs := ps.fields(f.val, what, "rps", "burst")
	rf, ok := fs["rps"]
	if !ok {
		ps.errorf(body, "%s has no rps; add rps: <requests per second>", what)
		return nil
	}
	l := &RateLimit{}
	rn := deref(rf.val)
	if !yamlstrict.PlainInt(rn) {
		ps.errorf(rn, "%s: rps: %s", what, yamlstrict.NotPlainInt)
		return nil
	}
	if rn.Kind != yaml.ScalarNode || (rn.Tag != "!!int" && rn.Tag != "!!float") || rn.Decode(&l.RPS) != nil ||
		math.IsNaN(l.RPS) || l.RPS < MinRPS || l.RPS > MaxRPS {
		ps.errorf(rn, "%s: rps %q must be a number of requests per second from %g to %g", what, rn.Value, MinRPS, MaxRPS)
		return nil
	}
	l.Burst = max(1, int(math.Ceil(l.RPS)))
	if bf, ok := fs["burst"]; ok {
		bn := deref(bf.val)
		var b int64
		if !yamlstrict.PlainInt(bn) {
			ps.errorf(bn, "%s: burst: %s", what, yamlstrict.NotPlainInt)
			return nil
		}
		if bn.Kind != yaml.ScalarNode || bn.Tag != "!!int" || bn.Decode(&b) != nil || b < 1 || b > MaxBurst {
			ps.errorf(bn, "%s: burst %q must be a whole number of requests from 1 to %d", what, bn.Value, MaxBurst)
			return nil
		}
		l.Burst = int(b)
	}
	return l
}

// rateLimitOn reports a rate_limit on a rule whose action cannot use it.
func (ps *parser) rateLimitOn(r *rule, f field, what string) {
	if r.act == ruleDeny {
		ps.errorf(f.key, "%s: a deny rule refuses every request it matches, so rate_limit has nothing to limit; remove it", what)
		return
	}
	r.limit = ps.parseRateLimit(f, what)
}
