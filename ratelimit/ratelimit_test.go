package ratelimit

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/internal/redistest"
)

// fakeClock is a settable clock for the in-process limiter.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// recorder is an Observer that keeps what it was told.
type recorder struct {
	mu     sync.Mutex
	shared []bool
	errors int
}

func (r *recorder) LimiterShared(s bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.shared = append(r.shared, s)
}

func (r *recorder) RedisError(op string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if op == "rate_limit" {
		r.errors++
	}
}

func (r *recorder) state() ([]bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.shared...), r.errors
}

func newLimiter(t *testing.T, opts Options) *Limiter {
	t.Helper()
	l, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func newClient(t *testing.T, addr string) redis.UniversalClient {
	t.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, MaxRetries: -1,
		DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitFor polls cond every 10ms until it returns nil or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	poll.Until(t, timeout, what, cond)
}

// TestLocalGCRA pins the semantics on a fake clock: a burst, refill at
// the rate, exact waits, all-or-nothing charging of several limits.
func TestLocalGCRA(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := newLimiter(t, Options{Now: clk.Now})
	tenBurst5 := Check{Key: "a", Limit: Limit{Rate: 10, Burst: 5}}

	var got []string
	group := "g"
	step := func(what string, checks ...Check) {
		r := l.Allow(context.Background(), group, checks...)
		got = append(got, fmt.Sprintf("%s: allowed=%v wait=%s refused=%d shared=%v", what, r.Allowed, r.RetryAfter, r.Refused, r.Shared))
	}
	for i := range 5 {
		step("burst "+strconv.Itoa(i+1), tenBurst5)
	}
	step("over the burst", tenBurst5)
	clk.Advance(60 * time.Millisecond)
	step("60ms later", tenBurst5)
	clk.Advance(40 * time.Millisecond)
	step("100ms later", tenBurst5)
	step("at once again", tenBurst5)
	clk.Advance(time.Second)
	for i := range 6 {
		step("after a full second "+strconv.Itoa(i+1), tenBurst5)
	}
	// Two limits: b is fresh, a is exhausted: refused, and b not charged.
	b := Check{Key: "b", Limit: Limit{Rate: 1, Burst: 1}}
	step("a exhausted, b fresh", tenBurst5, b)
	step("b alone", b)
	step("b again", b)
	group = "h"
	step("other group", tenBurst5)
	want := []string{
		"burst 1: allowed=true wait=0s refused=-1 shared=false",
		"burst 2: allowed=true wait=0s refused=-1 shared=false",
		"burst 3: allowed=true wait=0s refused=-1 shared=false",
		"burst 4: allowed=true wait=0s refused=-1 shared=false",
		"burst 5: allowed=true wait=0s refused=-1 shared=false",
		"over the burst: allowed=false wait=100ms refused=0 shared=false",
		"60ms later: allowed=false wait=40ms refused=0 shared=false",
		"100ms later: allowed=true wait=0s refused=-1 shared=false",
		"at once again: allowed=false wait=100ms refused=0 shared=false",
		"after a full second 1: allowed=true wait=0s refused=-1 shared=false",
		"after a full second 2: allowed=true wait=0s refused=-1 shared=false",
		"after a full second 3: allowed=true wait=0s refused=-1 shared=false",
		"after a full second 4: allowed=true wait=0s refused=-1 shared=false",
		"after a full second 5: allowed=true wait=0s refused=-1 shared=false",
		"after a full second 6: allowed=false wait=100ms refused=0 shared=false",
		"a exhausted, b fresh: allowed=false wait=100ms refused=0 shared=false",
		"b alone: allowed=true wait=0s refused=-1 shared=false",
		"b again: allowed=false wait=1s refused=0 shared=false",
		"other group: allowed=true wait=0s refused=-1 shared=false",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decisions (-want +got):\n%s", diff)
	}
}

func TestLocalSweep(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	lc := newLocal(clk.Now)
	c := Limit{Rate: 1000, Burst: 1}
	for i := range 3 * minSweep {
		lc.allow("g"+strconv.Itoa(i), 1, []Check{{Key: "k", Limit: c}})
		clk.Advance(time.Millisecond)
	}
	lc.mu.Lock()
	n := len(lc.tats)
	lc.mu.Unlock()
	if n > minSweep+1 {
		t.Errorf("%d limits kept after 3×%d one-off limits that expired, want at most %d", n, minSweep, minSweep+1)
	}
}

func TestLimitBounds(t *testing.T) {
	tests := []struct {
		l                   Limit
		interval, tolerance int64
	}{
		{Limit{Rate: 10, Burst: 5}, 100_000, 500_000},
		{Limit{Rate: 3, Burst: 1}, 333_333, 333_333},
		{Limit{Rate: 2e6, Burst: 0}, 1, 1},
		{Limit{Rate: 0, Burst: 2e6}, 1e9, 1e15},
	}
	for _, tt := range tests {
		iv, tol := tt.l.interval()
		if iv != tt.interval || tol != tt.tolerance {
			t.Errorf("%+v: interval %d tolerance %d, want %d %d", tt.l, iv, tol, tt.interval, tt.tolerance)
		}
	}
}

// TestRedisScript runs the Lua script against a real redis-server: burst,
// refill on the server's clock, Retry-After, atomic charging, keys.
func TestRedisScript(t *testing.T) {
	srv := redistest.Start(t)
	rec := &recorder{}
	l := newLimiter(t, Options{Client: newClient(t, srv.Addr()), Namespace: "t1", Observer: rec})
	if !l.Shared() {
		t.Fatal("limiter not shared with Redis up")
	}
	ctx := context.Background()
	a := Check{Key: "w", Limit: Limit{Rate: 10, Burst: 5}}

	start := time.Now()
	for i := range 5 {
		if r := l.Allow(ctx, "billing", a); !r.Allowed || !r.Shared {
			t.Fatalf("request %d of the burst: %+v, want allowed by Redis", i+1, r)
		}
	}
	r := l.Allow(ctx, "billing", a)
	elapsed := time.Since(start)
	if r.Allowed || r.Refused != 0 || !r.Shared {
		t.Fatalf("6th request: %+v, want refused by check 0 in Redis", r)
	}
	// The bucket refills one request per 100ms of Redis time, of which
	// `elapsed` has passed.
	if r.RetryAfter <= 0 || r.RetryAfter > 100*time.Millisecond || r.RetryAfter < 100*time.Millisecond-elapsed-10*time.Millisecond {
		t.Errorf("RetryAfter %s after %s, want about 100ms minus the elapsed time", r.RetryAfter, elapsed)
	}
	t.Logf("burst of 5 in %s, then refused with Retry-After %s", elapsed, r.RetryAfter)

	// Refill: once RetryAfter has passed one request is admitted, and
	// the next is refused again.
	wait := time.NewTimer(r.RetryAfter)
	<-wait.C
	waitFor(t, 200*time.Millisecond, "the refill", func() error {
		if r := l.Allow(ctx, "billing", a); !r.Allowed {
			return fmt.Errorf("still refused, retry after %s", r.RetryAfter)
		}
		return nil
	})
	if r := l.Allow(ctx, "billing", a); r.Allowed {
		t.Error("a second request right after the refill was admitted")
	}

	// Atomic: the rule limit is fresh, the workload limit exhausted; the
	// refused request does not charge the rule limit.
	rule := Check{Key: "r:charges", Limit: Limit{Rate: 1, Burst: 1}}
	r = l.Allow(ctx, "billing", a, rule)
	if r.Allowed || r.Refused != 0 {
		t.Fatalf("with the workload limit exhausted: %+v, want refused by check 0", r)
	}
	if r := l.Allow(ctx, "billing", rule); !r.Allowed {
		t.Fatalf("the rule limit was charged by a refused request: %+v", r)
	}
	r = l.Allow(ctx, "billing", rule, Check{Key: "r:other", Limit: Limit{Rate: 100, Burst: 100}})
	if r.Allowed || r.Refused != 0 || r.RetryAfter < 900*time.Millisecond {
		t.Errorf("rule limit exhausted: %+v, want refused by check 0 with about 1s to wait", r)
	}

	keys, err := srv.Client().Keys(ctx, "t1:rl:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	keys = slices.DeleteFunc(keys, func(k string) bool { return strings.HasPrefix(k, "t1:rl:{probe}") })
	slices.Sort(keys)
	if diff := cmp.Diff([]string{"t1:rl:{billing}:r:charges", "t1:rl:{billing}:w"}, keys); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
	ttl, err := srv.Client().PTTL(ctx, "t1:rl:{billing}:w").Result()
	if err != nil || ttl <= 0 || ttl > 600*time.Millisecond {
		t.Errorf("PTTL of the workload limit: %s %v, want (0, 600ms]: it expires when the bucket is full", ttl, err)
	}
	if shared, errs := rec.state(); !cmp.Equal(shared, []bool{true}) || errs != 0 {
		t.Errorf("observer: shared %v, %d errors; want [true], 0", shared, errs)
	}
}

// TestRedisSharedByInstances: two limiters (two replicas) on one Redis
// share the limit.
func TestRedisSharedByInstances(t *testing.T) {
	srv := redistest.Start(t)
	a := newLimiter(t, Options{Client: newClient(t, srv.Addr()), Namespace: "t2"})
	b := newLimiter(t, Options{Client: newClient(t, srv.Addr()), Namespace: "t2"})
	c := Check{Key: "w", Limit: Limit{Rate: 0.01, Burst: 10}}
	admitted := 0
	for i := range 40 {
		l := a
		if i%2 == 1 {
			l = b
		}
		if l.Allow(context.Background(), "web", c).Allowed {
			admitted++
		}
	}
	if admitted != 10 {
		t.Errorf("%d of 40 requests over two limiters admitted, want the shared burst of 10", admitted)
	}
}

// TestRedisCluster runs the script on a Redis Cluster, which refuses a
// script whose keys are in different hash slots: the group's hash tag
// keeps a request's keys in one slot.
func TestRedisCluster(t *testing.T) {
	srv := redistest.StartCluster(t)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.Addr()}, MaxRetries: -1})
	t.Cleanup(func() { _ = cc.Close() })
	rec := &recorder{}
	l := newLimiter(t, Options{Client: cc, Namespace: "t3", Observer: rec})
	checks := []Check{{Key: "w", Limit: Limit{Rate: 1, Burst: 2}}, {Key: "r:some-rule", Limit: Limit{Rate: 1, Burst: 3}}}
	// A group with braces of its own still keeps its keys in one slot.
	for _, group := range []string{"billing", "team{a}b", "x}y{"} {
		var got []bool
		for range 3 {
			r := l.Allow(context.Background(), group, checks...)
			if !r.Shared {
				t.Fatalf("group %q: decided locally on a Cluster: %+v", group, r)
			}
			got = append(got, r.Allowed)
		}
		if !cmp.Equal(got, []bool{true, true, false}) {
			t.Errorf("group %q: admitted %v, want [true true false]", group, got)
		}
	}
	if _, errs := rec.state(); errs != 0 {
		t.Errorf("%d Redis errors on the Cluster", errs)
	}
}

// TestRedisDown: Redis stopped → decided locally, no error to the
// caller, one switch; restarted → shared again by the probe.
func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	rec := &recorder{}
	l := newLimiter(t, Options{Client: newClient(t, srv.Addr()), Namespace: "t4", Observer: rec, ProbeInterval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond})
	c := Check{Key: "w", Limit: Limit{Rate: 0.01, Burst: 3}}
	ctx := context.Background()
	if r := l.Allow(ctx, "w", c); !r.Allowed || !r.Shared {
		t.Fatalf("first request: %+v", r)
	}
	srv.Stop()
	// Locally the bucket starts full: the fallback admits its own burst.
	var got []bool
	for range 4 {
		r := l.Allow(ctx, "w", c)
		if r.Shared {
			t.Fatalf("decided by Redis while it is stopped: %+v", r)
		}
		got = append(got, r.Allowed)
	}
	if !cmp.Equal(got, []bool{true, true, true, false}) {
		t.Errorf("local fallback admitted %v, want its own burst of 3 then a refusal", got)
	}
	if l.Shared() {
		t.Error("Shared() with Redis stopped")
	}
	srv.Restart()
	waitFor(t, 5*time.Second, "shared limiting after the restart", func() error {
		if !l.Shared() {
			return fmt.Errorf("still local")
		}
		return nil
	})
	// A restarted Redis has lost the script (NOSCRIPT) and the state: the
	// script is loaded again and the burst starts afresh.
	if r := l.Allow(ctx, "w", c); !r.Allowed || !r.Shared {
		t.Errorf("first request after the restart: %+v, want admitted by Redis", r)
	}
	shared, errs := rec.state()
	if !cmp.Equal(shared, []bool{true, false, true}) {
		t.Errorf("switches %v, want [true false true]", shared)
	}
	if errs < 1 {
		t.Error("no Redis error counted for the outage")
	}
}

// TestRedisUnreachableAtStart: a limiter whose Redis never answered
// starts local and does not block requests.
func TestRedisUnreachableAtStart(t *testing.T) {
	rec := &recorder{}
	l := newLimiter(t, Options{Client: newClient(t, "127.0.0.1:1"), Observer: rec, ProbeInterval: 20 * time.Millisecond})
	if l.Shared() {
		t.Fatal("shared without Redis")
	}
	if r := l.Allow(context.Background(), "w", Check{Key: "w", Limit: Limit{Rate: 1, Burst: 1}}); !r.Allowed || r.Shared {
		t.Errorf("request: %+v, want admitted locally", r)
	}
	waitFor(t, 2*time.Second, "probe errors counted", func() error {
		if _, errs := rec.state(); errs < 1 {
			return fmt.Errorf("no probe error counted yet")
		}
		return nil
	})
}

// BenchmarkLocal is the in-process limiter's cost per request with a
// workload and a rule limit, in parallel.
func BenchmarkLocal(b *testing.B) {
	l, err := New(context.Background(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	checks := []Check{{Key: "w", Limit: Limit{Rate: 1e6, Burst: 1e6}}, {Key: "r:rule", Limit: Limit{Rate: 1e6, Burst: 1e6}}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow(context.Background(), "bench", checks...)
		}
	})
}

// BenchmarkRedis is the shared limiter's cost per request (one EVALSHA
// round trip to a local redis-server), in parallel.
func BenchmarkRedis(b *testing.B) {
	srv := redistest.Start(b)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer c.Close()
	l, err := New(context.Background(), Options{Client: c})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	checks := []Check{{Key: "w", Limit: Limit{Rate: 1e6, Burst: 1e6}}, {Key: "r:rule", Limit: Limit{Rate: 1e6, Burst: 1e6}}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !l.Allow(context.Background(), "bench", checks...).Shared {
				b.Error("not decided by Redis")
				return
			}
		}
	})
}

// TestLimitChange is the class of a limit whose rps or burst a policy
// reload changes while its key holds state (docs/policy.md: "a changed
// rps or burst applies from the next request"): raised, lowered, rate
// and burst each, on both backends (the in-process GCRA and the Redis
// script must agree). The state a limit keeps is the time it owes; it
// never owes more than the new limit's burst span, so raising a limit's
// rate, or lowering its burst, makes a request wait at most one new
// interval instead of what the old limit owed (up to its burst/rps:
// hours for a slow one). An unchanged limit, and a raised burst, keep
// their state.
func TestLimitChange(t *testing.T) {
	srv := redistest.Start(t)
	backends := []struct {
		name string
		opts Options
	}{
		{"local", Options{}},
		{"redis", Options{Client: newClient(t, srv.Addr()), Namespace: "change"}},
	}
	cases := []struct {
		name     string
		old, new Limit
		// admitted is how many requests the new limit admits at once
		// after the old one was exhausted.
		admitted int
	}{
		{"rate raised", Limit{Rate: 0.01, Burst: 2}, Limit{Rate: 2, Burst: 2}, 0},
		{"rate raised from the slowest", Limit{Rate: MinRate, Burst: 1}, Limit{Rate: 1000, Burst: 1000}, 0},
		// The time owed is kept: 3 requests at 100/s owe 30ms, which a
		// burst of 3 at 0.5/s (6s) nearly covers (docs/policy.md).
		{"rate lowered", Limit{Rate: 100, Burst: 3}, Limit{Rate: 0.5, Burst: 3}, 2},
		{"burst raised", Limit{Rate: 1, Burst: 2}, Limit{Rate: 1, Burst: 5}, 3},
		{"burst lowered", Limit{Rate: 1, Burst: 5}, Limit{Rate: 1, Burst: 2}, 0},
		{"unchanged", Limit{Rate: 1, Burst: 3}, Limit{Rate: 1, Burst: 3}, 0},
	}
	for _, b := range backends {
		l := newLimiter(t, b.opts)
		for _, c := range cases {
			t.Run(b.name+"/"+c.name, func(t *testing.T) {
				ctx := context.Background()
				group := strings.ReplaceAll(c.name, " ", "-")
				for i := range c.old.Burst {
					if r := l.Allow(ctx, group, Check{Key: "w", Limit: c.old}); !r.Allowed {
						t.Fatalf("old limit, request %d of its burst: %+v", i+1, r)
					}
				}
				if r := l.Allow(ctx, group, Check{Key: "w", Limit: c.old}); r.Allowed {
					t.Fatalf("old limit past its burst: %+v, want refused", r)
				}
				start := time.Now()
				n := 0
				var r Result
				for n <= c.admitted+2000 {
					if r = l.Allow(ctx, group, Check{Key: "w", Limit: c.new}); !r.Allowed {
						break
					}
					n++
				}
				interval := time.Duration(float64(time.Second) / c.new.Rate)
				// Requests the new rate refilled while the loop ran.
				slack := int(time.Since(start)/interval) + 1
				if n < c.admitted || n > c.admitted+slack {
					t.Errorf("new limit %s admitted %d at once, want %d (+%d refilled meanwhile)", c.new, n, c.admitted, slack)
				}
				if r.Allowed || r.RetryAfter > interval {
					t.Errorf("new limit %s, first refusal: %+v, want a wait of at most one interval (%s)", c.new, r, interval)
				}
			})
		}
	}
}

// TestLimitsOfDifferentGroupsApart: two limits that differ in their group
// or key never share a bucket, in Redis and in the in-process fallback,
// whatever the names hold. Policy names may contain '}' and ':' (only
// spaces, commas and control characters are refused), and the Redis key
// joins the group and the key with "}:", so before the group was escaped
// workload "x}:r:y"'s own limit and workload "x"'s limit of rule "y}:w"
// were one key: one workload's requests spent the other's limit.
func TestLimitsOfDifferentGroupsApart(t *testing.T) {
	srv := redistest.Start(t)
	type limit struct{ group, key string }
	pairs := [][2]limit{
		{{"x}:r:y", "w"}, {"x", "r:y}:w"}},
		{{"a}:w", "w"}, {"a", "w}:w"}},
		{{"a}", "r:b"}, {"a", "}:r:b"}},
		{{"a%7D:w", "w"}, {"a}:w", "w"}},
		{{"a}b", "w"}, {"a%7Db", "w"}},
		{{"billing", "r:x"}, {"billing", "r:x}"}},
		{{"probe", "probe"}, {"probe}:probe", "w"}},
	}
	one := Limit{Rate: 0.001, Burst: 1}
	failed := 0
	for i, p := range pairs {
		for _, kind := range []string{"redis", "local"} {
			t.Run(fmt.Sprintf("%s/%d", kind, i), func(t *testing.T) {
				// A limiter (a namespace) per case: the pairs share names.
				opts := Options{}
				if kind == "redis" {
					opts = Options{Client: newClient(t, srv.Addr()), Namespace: fmt.Sprintf("t9-%d", i)}
				}
				l := newLimiter(t, opts)
				ctx := context.Background()
				a, b := p[0], p[1]
				if r := l.Allow(ctx, a.group, Check{Key: a.key, Limit: one}); !r.Allowed {
					t.Fatalf("group %q key %q: the first request was refused: %+v", a.group, a.key, r)
				}
				if r := l.Allow(ctx, b.group, Check{Key: b.key, Limit: one}); !r.Allowed {
					failed++
					t.Errorf("group %q key %q was refused after group %q key %q spent its own burst of 1: the two share a bucket", b.group, b.key, a.group, a.key)
				}
			})
		}
	}
	t.Logf("%d of %d cases shared a bucket", failed, 2*len(pairs))
}

// TestAllowNMatchesSingles is the differential test of AllowN, in process
// and in Redis: n requests decided at once leave every limit exactly as n
// requests sent one by one at the same instant when all n fit (the room
// left after is the same), and charge nothing when they do not (all or
// nothing, where the singles would have charged the ones that fit); n
// over a limit's burst is refused with Never, asking no backend; a
// refused n is admitted once its RetryAfter has passed.
func TestAllowNMatchesSingles(t *testing.T) {
	ctx := context.Background()
	backends := []struct {
		name string
		new  func(t *testing.T, clk *fakeClock) *Limiter
	}{
		{"local", func(t *testing.T, clk *fakeClock) *Limiter { return newLimiter(t, Options{Now: clk.Now}) }},
		{"redis", func(t *testing.T, _ *fakeClock) *Limiter {
			srv := redistest.Start(t)
			l := newLimiter(t, Options{Client: newClient(t, srv.Addr()), Namespace: "n"})
			if !l.Shared() {
				t.Fatal("limiter not shared with Redis up")
			}
			return l
		}},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
			l := be.new(t, clk)
			// One request per 1000 s: Redis's clock cannot refill a
			// bucket during the test.
			limit := func(burst int) []Check {
				return []Check{{Key: "w", Limit: Limit{Rate: 0.001, Burst: burst + 2}}, {Key: "r:x", Limit: Limit{Rate: 0.001, Burst: burst}}}
			}
			// room is how many more single requests group admits now.
			room := func(group string, checks []Check) int {
				for k := 0; k <= MaxBurst; k++ {
					if r := l.Allow(ctx, group, checks...); !r.Allowed {
						return k
					}
					if k > 20 {
						t.Fatalf("group %s admits more than 20 requests", group)
					}
				}
				return -1
			}
			for burst := 1; burst <= 4; burst++ {
				checks := limit(burst)
				for pre := 0; pre <= burst; pre++ {
					for n := 1; n <= burst+1; n++ {
						name := fmt.Sprintf("burst%d-pre%d-n%d", burst, pre, n)
						batch, singles := be.name+"-b-"+name, be.name+"-s-"+name
						for range pre {
							l.Allow(ctx, batch, checks...)
							l.Allow(ctx, singles, checks...)
						}
						r := l.AllowN(ctx, batch, n, checks...)
						admitted := 0
						for range n {
							if l.Allow(ctx, singles, checks...).Allowed {
								admitted++
							}
						}
						switch {
						case n > burst:
							if r.Allowed || !r.Never || r.Refused != 1 || r.RetryAfter != 0 {
								t.Errorf("%s: %+v, want refused by check 1 with Never", name, r)
							}
							if got, want := room(batch, checks), burst-pre; got != want {
								t.Errorf("%s: a batch over the burst left room %d, want %d (uncharged)", name, got, want)
							}
						case admitted == n:
							if !r.Allowed {
								t.Errorf("%s: refused (%+v), but %d singles were admitted", name, r, n)
							}
							if got, want := room(batch, checks), room(singles, checks); got != want {
								t.Errorf("%s: room after the batch %d, after the singles %d", name, got, want)
							}
						default:
							if r.Allowed || r.Never || r.RetryAfter <= 0 {
								t.Errorf("%s: %+v, want refused with a wait (only %d of %d singles fit)", name, r, admitted, n)
							}
							if got, want := room(batch, checks), burst-pre; got != want {
								t.Errorf("%s: a refused batch left room %d, want %d (uncharged)", name, got, want)
							}
						}
					}
				}
			}
			if be.name != "local" {
				return
			}
			// The wait of a refused batch admits it, and no less does.
			checks := limit(4)
			for range 3 {
				l.Allow(ctx, "wait", checks...)
			}
			r := l.AllowN(ctx, "wait", 3, checks...)
			if r.Allowed || r.RetryAfter != 2000*time.Second {
				t.Fatalf("3 with room 1 of 4: %+v, want refused with 2000s to wait", r)
			}
			clk.Advance(r.RetryAfter - time.Second)
			if r := l.AllowN(ctx, "wait", 3, checks...); r.Allowed {
				t.Errorf("admitted a second before its RetryAfter: %+v", r)
			}
			clk.Advance(time.Second)
			if r := l.AllowN(ctx, "wait", 3, checks...); !r.Allowed {
				t.Errorf("refused once its RetryAfter passed: %+v", r)
			}
		})
	}
}
