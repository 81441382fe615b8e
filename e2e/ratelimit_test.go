package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/redistest"
)

// rateLimitE2EPolicy limits one rule to limitRPS (per workload; there is
// one workload) with a burst of 10.
const rateLimitE2EPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
credentials:
  api-token:
    provider: static
    env: CREDGATE_E2E_TOKEN
rules:
  - name: limited
    from: local
    to: api
    inject: {credential: api-token, as: bearer}
    rate_limit: {rps: 50, burst: 10}
default: deny
`

const limitRPS = 50

// sent is one request of a load run: when it was sent, through which
// gateway, and the status it got (0: no response).
type sent struct {
	at     time.Time
	gw     int
	status int
}

// openLoop sends perGW requests per second to each client, on schedule
// whatever the answers (at most 32 in flight per gateway; a tick that
// finds them all busy is skipped and counted), until ctx is done.
func openLoop(ctx context.Context, t *testing.T, clients []*http.Client, perGW float64) (out []sent, skipped int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for gi, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem := make(chan struct{}, 32)
			tick := time.NewTicker(time.Duration(float64(time.Second) / perGW))
			defer tick.Stop()
			var inner sync.WaitGroup
			defer inner.Wait()
			for i := 0; i < 100000; i++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				select {
				case sem <- struct{}{}:
				default:
					mu.Lock()
					skipped++
					mu.Unlock()
					continue
				}
				inner.Add(1)
				go func() {
					defer inner.Done()
					defer func() { <-sem }()
					s := sent{at: time.Now(), gw: gi}
					req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://api.origin.test/load/%d/%d", gi, i), nil)
					if resp, err := c.Do(req); err == nil {
						s.status = resp.StatusCode
						resp.Body.Close()
					} else {
						t.Logf("request through gateway %d: %v", gi, err)
					}
					mu.Lock()
					out = append(out, s)
					mu.Unlock()
				}()
			}
		}()
	}
	wg.Wait()
	return out, skipped
}

// admitted counts, by gateway, the requests sent in [from, to) that got
// 200, and the statuses other than 200 and 429.
func admitted(runs []sent, from, to time.Time, gateways int) (per []int, odd map[int]int) {
	per = make([]int, gateways)
	odd = map[int]int{}
	for _, s := range runs {
		if s.status != http.StatusOK && s.status != http.StatusTooManyRequests {
			odd[s.status]++
		}
		if s.at.Before(from) || !s.at.Before(to) {
			continue
		}
		if s.status == http.StatusOK {
			per[s.gw]++
		}
	}
	return per, odd
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// TestRedisRateLimit runs two gateway processes sharing a real
// redis-server and one rate limit of 50 requests/s: together they admit
// 50/s (±10%); with Redis stopped in the middle of the load no request
// fails and each limits on its own; restarted, they share again without a
// restart of the gateways.
func TestRedisRateLimit(t *testing.T) {
	srv := redistest.Start(t)
	key := writeRedisKey(t, t.TempDir(), "k.key")
	opts := envOptions{Policy: rateLimitE2EPolicy, CacheConfig: redisConfig(srv.Addr(), [2]string{"k", key})}
	envs := []*env{startEnv(t, opts), startEnv(t, opts)}
	clients := []*http.Client{newGoClient(t, envs[0].proxyURL, gwCACert, false), newGoClient(t, envs[1].proxyURL, gwCACert, false)}
	const perGW = 100 // offered: 2 × 100/s against a limit of 50/s
	const warmup = time.Second

	backend := func(want string) {
		t.Helper()
		for i, e := range envs {
			waitFor(t, 10*time.Second, fmt.Sprintf("gateway %d limiting with %s", i, want), func() error {
				if v := e.metric(t, `credgate_rate_limit_backend{backend="`+want+`"}`); v != 1 {
					return fmt.Errorf("credgate_rate_limit_backend{backend=%q} = %v", want, v)
				}
				return nil
			})
		}
	}
	// shared drives both gateways for warmup+window and checks the
	// fleet's admitted rate against the limit.
	shared := func(what string, window time.Duration) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), warmup+window)
		defer cancel()
		start := time.Now()
		runs, skipped := openLoop(ctx, t, clients, perGW)
		per, odd := admitted(runs, start.Add(warmup), start.Add(warmup+window), len(clients))
		rate := float64(sum(per)) / window.Seconds()
		reportPeer(t, "%s: limit %d requests/s shared by 2 gateways; offered %d/s; admitted %d in %s (%d + %d) = %.1f/s, %+.1f%% of the limit; %d ticks skipped",
			what, limitRPS, 2*perGW, sum(per), window, per[0], per[1], rate, 100*(rate-limitRPS)/limitRPS, skipped)
		if rate < 0.9*limitRPS || rate > 1.1*limitRPS {
			t.Errorf("%s: the two gateways admitted %.1f requests/s, want %d ±10%%", what, rate, limitRPS)
		}
		if per[0] == 0 || per[1] == 0 {
			t.Errorf("%s: admitted per gateway %v: the load did not reach both", what, per)
		}
		if len(odd) > 0 {
			t.Errorf("%s: statuses other than 200 and 429: %v", what, odd)
		}
	}

	t.Run("shared by two gateways within 10% of the limit", func(t *testing.T) {
		backend("redis")
		// A limiter key lives only as long as its bucket is not full
		// again, so look for it while the load runs.
		sawKey := watchKey(srv, "e2e:rl:{local}:r:limited")
		shared("shared", 5*time.Second)
		for _, e := range envs {
			if v := e.metric(t, `credgate_rate_limited_total{limit="rule",rule="limited",workload="local"}`); v == 0 {
				t.Error("credgate_rate_limited_total did not count the refusals")
			}
		}
		ev := envs[0].audit()
		limited := 0
		for _, a := range ev {
			if a.Code == "rate_limited" && a.Decision == "deny" && a.Status == 429 && a.Rule == "limited" {
				limited++
			}
		}
		if limited == 0 {
			t.Error("no audit line with decision deny, code rate_limited, status 429")
		}
		if seen, keys := sawKey(); !seen {
			t.Errorf("no limiter key e2e:rl:{local}:r:limited in Redis while the load ran; keys %v", keys)
		}
	})

	t.Run("Redis stopped in the middle of the load: no 5xx, each gateway limits locally", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		stopped := make(chan time.Time, 1)
		go func() {
			timer := time.NewTimer(time.Second)
			defer timer.Stop()
			<-timer.C
			srv.Stop()
			stopped <- time.Now()
		}()
		runs, skipped := openLoop(ctx, t, clients, perGW)
		at := <-stopped
		// From one second after the stop (the local buckets' burst is
		// spent) to the end, each gateway admits the limit on its own.
		from, to := at.Add(time.Second), start.Add(5*time.Second)
		per, odd := admitted(runs, from, to, len(clients))
		window := to.Sub(from).Seconds()
		reportPeer(t, "Redis stopped: per-gateway admitted %.1f/s and %.1f/s (limit %d/s each while local, fleet %.1f/s); %d requests, %d ticks skipped; statuses other than 200/429: %v",
			float64(per[0])/window, float64(per[1])/window, limitRPS, float64(sum(per))/window, len(runs), skipped, odd)
		if len(odd) > 0 {
			t.Errorf("statuses other than 200 and 429 with Redis down: %v", odd)
		}
		for i, n := range per {
			if r := float64(n) / window; r < 0.85*limitRPS || r > 1.15*limitRPS {
				t.Errorf("gateway %d admitted %.1f/s with Redis down, want its own limit of %d/s (±15%%)", i, r, limitRPS)
			}
		}
		backend("local")
		for _, e := range envs {
			e.waitLog(t, "rate limits are enforced per replica")
			if v := e.metric(t, `credgate_redis_errors_total{op="rate_limit"}`); v == 0 {
				t.Error(`credgate_redis_errors_total{op="rate_limit"} did not count the outage`)
			}
		}
	})

	t.Run("Redis restarted: shared again without a gateway restart", func(t *testing.T) {
		srv.Restart()
		backend("redis")
		for _, e := range envs {
			e.waitLog(t, "rate limits are shared by the fleet again")
		}
		shared("after the restart", 4*time.Second)
	})
}

// watchKey polls srv for key until the returned function is called; that
// function stops the polling and reports whether key was ever present
// (and the keys of the last poll).
func watchKey(srv *redistest.Server, key string) func() (bool, []string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var seen bool
	var last []string
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if keys, err := srv.Dump(ctx); err == nil {
				last = keysOf(keys)
				if _, ok := keys[key]; ok {
					seen = true
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() (bool, []string) {
		cancel()
		<-done
		return seen, last
	}
}
