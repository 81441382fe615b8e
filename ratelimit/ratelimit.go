// Package ratelimit admits or refuses requests against rate limits
// (requests per second with a burst), fleet-wide through Redis when the
// replicas share one, and per process otherwise.
//
// The algorithm is GCRA, the generic cell rate algorithm: each limit keeps
// one number, the theoretical arrival time (TAT) of the next request. A
// request is admitted when TAT + 1/rate is no further than burst/rate
// ahead of now; it then advances TAT by 1/rate. A refused request changes
// nothing and learns how long it would have to wait. That is a token
// bucket of burst tokens refilled at rate, kept in one number.
//
// In Redis, one call of a Lua script (EVALSHA, falling back to EVAL after a
// Redis restart) decides all the limits of a request atomically: either
// every limit admits it and each is charged, or none is. The script reads
// the clock with the Redis TIME command, so the replicas' clocks do not
// matter. Each limit is one string key holding its TAT in microseconds,
// expiring when the bucket is full again. The keys of one call share a
// Redis Cluster hash tag (the call's group), so the script works on a
// Cluster too.
//
// When a Redis call fails or times out, the request is decided by an
// in-process GCRA with the same semantics, and so is every request after
// it until a background probe finds Redis answering again. Each replica
// then enforces every limit on its own: a fleet of N replicas may admit up
// to N times the configured rate meanwhile. A request never fails because
// Redis is down.
package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/credgate/credgate/internal/fleet"
	"github.com/redis/go-redis/v9"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultNamespace     = "credgate"
	DefaultTimeout       = 500 * time.Millisecond
	DefaultProbeInterval = time.Second
)

// Limit is a rate limit: Rate requests per second sustained, and up to
// Burst requests at once.
type Limit struct {
	// Rate is in requests per second, from MinRate to MaxRate (values
	// outside are clamped): the limiter counts in whole microseconds.
	Rate float64
	// Burst is from 1 to MaxBurst (values outside are clamped).
	Burst int
}

// Bounds of a Limit. They keep TAT arithmetic exact in the float64
// numbers of Redis's Lua (below 2^53 microseconds).
const (
	MinRate  = 0.001
	MaxRate  = 1e6
	MaxBurst = 1_000_000
)

// Fits reports whether n requests at once can ever be admitted by l:
// n is at most its burst (clamped as Burst says). AllowN refuses more
// with Never.
func (l Limit) Fits(n int) bool {
	return n <= min(max(1, l.Burst), MaxBurst)
}

// interval is the emission interval 1/Rate and tolerance the burst's span
// Burst/Rate, in whole microseconds.
func (l Limit) interval() (interval, tolerance int64) {
	rate := l.Rate
	if math.IsNaN(rate) || rate < MinRate {
		rate = MinRate
	}
	rate = min(rate, MaxRate)
	interval = max(1, int64(math.Round(1e6/rate)))
	return interval, interval * int64(min(max(1, l.Burst), MaxBurst))
}

// Check is one limit a request must pass. Key names the limit within its
// group (e.g. "w" for a workload's limit, "r:NAME" for a rule's).
type Check struct {
	Key   string
	Limit Limit
}

// Result is the answer to Allow.
type Result struct {
	// Allowed is true when every check admitted the request (and each was
	// charged for it).
	Allowed bool
	// RetryAfter is, for a refused request, how long until it would be
	// admitted (the longest wait among the refusing checks).
	RetryAfter time.Duration
	// Refused is the index in the checks of the limit that refused (the
	// one with the longest wait), -1 when allowed.
	Refused int
	// Shared is true when Redis decided, false when the in-process
	// limiter did.
	Shared bool
	// Never is true when AllowN was asked for more requests at once than
	// the burst of check Refused: no wait admits them (RetryAfter is 0),
	// and nothing was asked of a backend.
	Never bool
}

// Observer receives the limiter's events; the gateway turns them into
// metrics. Implementations are safe for concurrent use and fast.
type Observer interface {
	// LimiterShared is called when limiting switches between Redis
	// (true) and the in-process fallback (false), and once by New.
	LimiterShared(shared bool)
	// RedisError is called for every failed Redis call, with the
	// operation "rate_limit".
	RedisError(op string)
}

// Options configure a Limiter.
type Options struct {
	// Client is the Redis client (standalone, Sentinel or Cluster); nil
	// limits per process only. The Limiter does not close it.
	Client redis.UniversalClient
	// Namespace prefixes every key ("NS:rl:{GROUP}:KEY", GROUP with '%'
	// and '}' escaped as %25 and %7D).
	Namespace string
	// Timeout bounds each Redis call; a slower call counts as a failure
	// and the request is decided locally. The client's own read and
	// write timeouts apply too.
	Timeout time.Duration
	// ProbeInterval is how often Redis is tried while limiting is local.
	ProbeInterval time.Duration
	// Logger receives switches between shared and local limiting.
	Logger *slog.Logger
	// Observer, if set, receives events for metrics.
	Observer Observer
	// Now is the clock of the in-process limiter (tests).
	Now func() time.Time
}

// Limiter decides requests against limits. It is safe for concurrent use;
// Close stops its probe.
type Limiter struct {
	opts   Options
	rdb    redis.UniversalClient
	script *redis.Script
	prefix string // "NS:rl:{"
	local  *local

	redis  fleet.Health
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// gcraScript decides every KEYS[i] with ARGV[2i-1] (the emission interval,
// times the requests decided at once: AllowN) and ARGV[2i] (the burst
// tolerance), both in microseconds, against the
// Redis server's clock: all are charged, or none. It returns {1, 0, 0}
// when admitted, else {0, wait in microseconds, index of the limit with
// the longest wait}. TATs are written with %.0f: Lua's default number
// format keeps only 14 digits and a TAT has 16. replicate_commands lets
// Redis 3.2 to 4 write after TIME (later versions always replicate a
// script's effects, and keep the call as a no-op).
//
// A TAT is capped at now + tolerance before it is used: with an
// unchanged limit it never exceeds that, but a policy reload that raises
// a limit's rate or lowers its burst leaves a TAT the old limit wrote,
// up to the old burst/rate ahead (hours for a slow limit), which would
// keep refusing requests the new limit allows. Capped, the bucket is at
// worst empty under the new limit: the next request waits one interval.
const gcraScript = `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
local wait, worst = 0, 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2*i-1])
  local tolerance = tonumber(ARGV[2*i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  if tat > now + tolerance then tat = now + tolerance end
  local nt = tat + interval
  local over = nt - now - tolerance
  if over > 0 and over > wait then
    wait, worst = over, i
  end
  tats[i] = nt
end
if worst > 0 then
  return {0, wait, worst}
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', math.floor((tats[i] - now) / 1000) + 1)
end
return {1, 0, 0}
`

// New returns a Limiter. With a Client it starts shared when Redis
// answers the script, else local, and probes Redis every ProbeInterval
// while local. It never fails because Redis is unreachable.
func New(ctx context.Context, opts Options) (*Limiter, error) {
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = DefaultProbeInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Limiter{
		opts:   opts,
		rdb:    opts.Client,
		script: redis.NewScript(gcraScript),
		prefix: opts.Namespace + ":rl:{",
		local:  newLocal(opts.Now),
	}
	l.ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	l.redis = fleet.Health{Log: opts.Logger,
		Down:      "redis unavailable; rate limits are enforced per replica (the fleet may admit up to N times the rate) until it answers",
		Recovered: "redis available again; rate limits are shared by the fleet again",
		OnChange:  l.observe}
	if opts.Observer != nil {
		l.redis.OnError = func(string) { opts.Observer.RedisError("rate_limit") }
	}
	if l.rdb == nil {
		l.observe(false)
		return l, nil
	}
	if err := l.probe(ctx); err != nil {
		l.opts.Logger.Warn("redis unavailable at start; rate limits are enforced per replica until it answers", slog.Any("error", err))
		l.observe(false)
	} else {
		l.redis.Set(true)
		l.observe(true)
	}
	l.wg.Add(1)
	go l.probeLoop()
	return l, nil
}

// Shared reports whether limits are enforced through Redis now.
func (l *Limiter) Shared() bool { return l.redis.Up() }

// Close stops the probe. It does not close the client.
func (l *Limiter) Close() error {
	l.cancel()
	l.wg.Wait()
	return nil
}

// Allow decides one request against checks, atomically: the request is
// admitted only when every check admits it, and only then is each
// charged. group names whose limits these are (the workload); in Redis it
// is the keys' Cluster hash tag, so all checks of one call must belong to
// the same group. No check admits everything.
func (l *Limiter) Allow(ctx context.Context, group string, checks ...Check) Result {
	return l.AllowN(ctx, group, 1, checks...)
}

// AllowN decides n requests at once (a batch whose sub-requests the
// service runs as n requests) against checks, as Allow decides one:
// admitted only when every check has room for all n, and only then is
// each charged n. n requests admitted at once leave a limit exactly as n
// requests admitted one after the other at the same instant (GCRA with
// weight n: the TAT advances by n emission intervals). n below 1 is 1;
// more than a check's burst is refused with Never set, since no wait
// would admit it.
func (l *Limiter) AllowN(ctx context.Context, group string, n int, checks ...Check) Result {
	if len(checks) == 0 {
		return Result{Allowed: true, Refused: -1}
	}
	n = max(1, n)
	for i, c := range checks {
		if !c.Limit.Fits(n) {
			return Result{Refused: i, Never: true}
		}
	}
	if l.rdb != nil && l.redis.Up() {
		res, err := l.allowShared(ctx, group, n, checks)
		if err == nil {
			return res
		}
		l.fail(err)
	}
	return l.local.allow(group, n, checks)
}

func (l *Limiter) allowShared(ctx context.Context, group string, n int, checks []Check) (Result, error) {
	keys := make([]string, len(checks))
	args := make([]any, 0, 2*len(checks))
	for i, c := range checks {
		keys[i] = l.key(group, c.Key)
		iv, tol := c.Limit.interval()
		// The script advances a TAT by its interval argument: n
		// requests' worth (n ≤ burst, so at most the tolerance).
		args = append(args, iv*int64(n), tol)
	}
	cctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()
	v, err := l.script.Run(cctx, l.rdb, keys, args...).Int64Slice()
	if err != nil {
		return Result{}, fmt.Errorf("ratelimit: redis: %w", err)
	}
	if len(v) != 3 || v[2] < 0 || v[2] > int64(len(checks)) {
		return Result{}, fmt.Errorf("ratelimit: redis: unexpected script result %v", v)
	}
	if v[0] == 1 {
		return Result{Allowed: true, Refused: -1, Shared: true}, nil
	}
	return Result{RetryAfter: time.Duration(v[1]) * time.Microsecond, Refused: int(v[2]) - 1, Shared: true}, nil
}

// key is the Redis key of one limit: "NS:rl:{GROUP}:KEY". The group is the
// hash tag: a Cluster keeps all keys of one group in one slot. The group
// is written with '%' and '}' escaped (groupEscaper), so the first '}'
// ends it: policy names may hold '}' and ':', and written as they are,
// group "x}:r:y" with key "w" and group "x" with key "r:y}:w" were one
// key, one workload spending another's limit.
func (l *Limiter) key(group, key string) string {
	return l.prefix + groupEscaper.Replace(group) + "}:" + key
}

// groupEscaper writes a group without '}' (and '%', its escape), so that
// the group ends a Redis key's hash tag and every group has keys of its
// own. Groups without either byte (every usual name) are unchanged.
var groupEscaper = strings.NewReplacer("%", "%25", "}", "%7D")

// fail switches to local limiting after a failed Redis call.
func (l *Limiter) fail(err error) { l.redis.Fail("rate_limit", err) }

// probeKey is charged by the probe: a limit that never refuses.
var probeCheck = Check{Key: "probe", Limit: Limit{Rate: 1e6, Burst: 1e6}}

// probe runs the script once, as a request would.
func (l *Limiter) probe(ctx context.Context) error {
	_, err := l.allowShared(ctx, "probe", 1, []Check{probeCheck})
	return err
}

// probeLoop tries Redis every ProbeInterval while limiting is local.
func (l *Limiter) probeLoop() {
	defer l.wg.Done()
	t := time.NewTicker(l.opts.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		if l.redis.Up() {
			continue
		}
		if err := l.probe(l.ctx); err != nil {
			if l.ctx.Err() == nil && l.opts.Observer != nil {
				l.opts.Observer.RedisError("rate_limit")
			}
			continue
		}
		l.redis.Succeed()
	}
}

func (l *Limiter) observe(shared bool) {
	if l.opts.Observer != nil {
		l.opts.Observer.LimiterShared(shared)
	}
}

// local is the in-process GCRA: the same arithmetic as gcraScript, on this
// process's monotonic clock.
type local struct {
	now   func() time.Time
	start time.Time

	mu   sync.Mutex
	tats map[string]int64 // microseconds since start
	// sweepAt is the map size at which expired entries are dropped next.
	sweepAt int
}

const minSweep = 1024

func newLocal(now func() time.Time) *local {
	return &local{now: now, start: now(), tats: map[string]int64{}, sweepAt: minSweep}
}

func (lc *local) allow(group string, n int, checks []Check) Result {
	now := lc.now().Sub(lc.start).Microseconds()
	var buf [4]string
	keys := buf[:0]
	for _, c := range checks {
		keys = append(keys, group+"\x00"+c.Key)
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	var wait int64
	worst := -1
	var next [4]int64
	tats := next[:0]
	for i, c := range checks {
		interval, tolerance := c.Limit.interval()
		tat, ok := lc.tats[keys[i]]
		if !ok || tat < now {
			tat = now
		}
		tat = min(tat, now+tolerance) // as gcraScript: a TAT an older limit wrote owes at most this one's burst
		nt := tat + interval*int64(n)
		if over := nt - now - tolerance; over > 0 && over > wait {
			wait, worst = over, i
		}
		tats = append(tats, nt)
	}
	if worst >= 0 {
		return Result{RetryAfter: time.Duration(wait) * time.Microsecond, Refused: worst}
	}
	if len(lc.tats) >= lc.sweepAt {
		lc.sweep(now)
	}
	for i, k := range keys {
		lc.tats[k] = tats[i]
	}
	return Result{Allowed: true, Refused: -1}
}

// sweep drops the limits whose bucket is full again (TAT in the past):
// they mean the same as absent ones. It keeps the map proportional to
// the limits in use, whatever policy reloads renamed.
func (lc *local) sweep(now int64) {
	for k, tat := range lc.tats {
		if tat <= now {
			delete(lc.tats, k)
		}
	}
	lc.sweepAt = max(minSweep, 2*len(lc.tats))
}

// String describes a limit for messages: "50 requests/s, burst 100".
func (l Limit) String() string {
	return strconv.FormatFloat(l.Rate, 'g', -1, 64) + " requests/s, burst " + strconv.Itoa(max(1, l.Burst))
}
