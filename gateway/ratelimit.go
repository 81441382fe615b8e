package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/policy"
	"github.com/credgate/credgate/ratelimit"
)

// newLimiter builds the rate limiter: shared through the cache's Redis
// client when cache.redis is set, per process otherwise.
func newLimiter(ctx context.Context, cfg *Config, shared *sharedCache, logger *slog.Logger, m *metrics) (*ratelimit.Limiter, error) {
	opts := ratelimit.Options{Logger: logger.With(slog.String("component", "ratelimit")), Observer: m}
	if shared != nil {
		opts.Client = shared.rdb
		opts.Namespace = cfg.Cache.Redis.Namespace
		opts.Timeout = cfg.Cache.Redis.Timeout.D()
	}
	l, err := ratelimit.New(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("rate limiter: %w", err)
	}
	return l, nil
}

// Limit keys within a workload's group (ratelimit.Check.Key): the
// workload's own limit, and a rule's limit for that workload.
const (
	workloadLimitKey   = "w"
	ruleLimitKeyPrefix = "r:"
)

// rateLimit charges a request (or a tunnelled CONNECT) to the rate limits
// its decision carries: the workload's, counted across all its rules, and
// the rule's, counted per (rule, workload). Both are decided in one
// atomic step, so a refused request charges neither. n is how many
// requests it counts as: 1, or the sub-requests of a batch (chargeBatch),
// each charged as it would be sent alone, all or none. It returns false
// and the 429 refusal when a limit refuses. Redis trouble never refuses:
// the limiter then decides locally.
func (g *Gateway) rateLimit(ctx context.Context, wl identity.Workload, d policy.Decision, n int) (refusal, bool) {
	var buf [2]ratelimit.Check
	checks := limitChecks(d, buf[:0])
	if len(checks) == 0 {
		return refusal{}, true
	}
	res := g.limiter.AllowN(ctx, wl.DisplayName(), n, checks...)
	if res.Allowed {
		return refusal{}, true
	}
	f, limit := limitRefusal(wl, d, n, checks, res)
	g.metrics.rateLimited.WithLabelValues(limit, d.Rule, wl.DisplayName()).Inc()
	return f, false
}

// limitChecks appends to checks the limits decision d carries: the
// workload's, then the rule's.
func limitChecks(d policy.Decision, checks []ratelimit.Check) []ratelimit.Check {
	if l := d.WorkloadLimit; l != nil {
		checks = append(checks, ratelimit.Check{Key: workloadLimitKey, Limit: ratelimit.Limit{Rate: l.RPS, Burst: l.Burst}})
	}
	if l := d.RuleLimit; l != nil {
		checks = append(checks, ratelimit.Check{Key: ruleLimitKeyPrefix + d.Rule, Limit: ratelimit.Limit{Rate: l.RPS, Burst: l.Burst}})
	}
	return checks
}

// neverFits is the refusal of a batch of n sub-requests more than a limit
// of d holds, which no wait admits (ratelimit.Result.Never): serve's
// answer, known without the limiter's state (Judge.Explain).
func neverFits(wl identity.Workload, d policy.Decision, n int) (refusal, bool) {
	var buf [2]ratelimit.Check
	checks := limitChecks(d, buf[:0])
	for i, c := range checks {
		if !c.Limit.Fits(n) {
			f, _ := limitRefusal(wl, d, n, checks, ratelimit.Result{Refused: i, Never: true})
			return f, true
		}
	}
	return refusal{}, false
}

// limitRefusal is the 429 refusal of n requests that res refused, and
// which limit ("workload" or "rule") refused them.
func limitRefusal(wl identity.Workload, d policy.Decision, n int, checks []ratelimit.Check, res ratelimit.Result) (refusal, string) {
	group := wl.DisplayName() // anonymous callers share one group
	retry := max(1, int((res.RetryAfter+time.Second-1)/time.Second))
	limit, what := "rule", "this request is over that rate"
	if n > 1 {
		what = fmt.Sprintf("this batch of %d sub-requests, each counted as a request, is over that rate (all are charged or none)", n)
	}
	if res.Never {
		what = fmt.Sprintf("this batch has %d sub-requests, each counted as a request, more than the limit's burst: no wait admits it; send batches of at most %d sub-requests", n, checks[res.Refused].Limit.Burst)
	}
	var f refusal
	if checks[res.Refused].Key == workloadLimitKey {
		limit = "workload"
		f = newRefusal(http.StatusTooManyRequests, codeRateLimited,
			fmt.Sprintf("workload %q is over its rate limit (%s)", group, d.WorkloadLimit), d.Rule)
		if n > 1 {
			f.Reason = fmt.Sprintf("workload %q has a rate limit of %s; %s", group, d.WorkloadLimit, what)
		}
	} else {
		who := "workload " + strconv.Quote(group)
		if wl.Name == "" {
			who = "anonymous callers"
		}
		f = newRefusal(http.StatusTooManyRequests, codeRateLimited,
			fmt.Sprintf("rule %q allows %s %s; %s", d.Rule, who, d.RuleLimit, what), d.Rule)
	}
	if !res.Never {
		f.Reason += fmt.Sprintf("; retry after %ds", retry)
		f.RetryAfter = retry
	}
	return f, limit
}
