package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/redistest"
)

// TestRedisSentinel runs two gateways whose cache.redis names a Redis
// Sentinel (master_name and the sentinel's address, not the master's):
// they find the master through it and share the credential cache and a
// rate limit there.
func TestRedisSentinel(t *testing.T) {
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master, "credgate-e2e")
	reportPeer(t, "redis sentinel at %s monitoring the master at %s", sentinel, master.Addr())
	key := writeRedisKey(t, t.TempDir(), "k.key")
	cfg := fmt.Sprintf("  redis:\n    addrs: [%q]\n    master_name: credgate-e2e\n    namespace: e2e\n    encryption_keys:\n      - {id: k, file: %q}\n", sentinel, key)
	opts := envOptions{Policy: rateLimitE2EPolicy, CacheConfig: cfg}
	a, b := startEnv(t, opts), startEnv(t, opts)
	// b is served a's token from Redis: neither may log it.
	a.secrets, b.secrets = append(a.secrets, b.token), append(b.secrets, a.token)
	ca, cb := newGoClient(t, a.proxyURL, gwCACert, false), newGoClient(t, b.proxyURL, gwCACert, false)

	if st, _, _ := get(t, ca, "GET", "https://api.origin.test/first", ""); st != http.StatusOK {
		t.Fatalf("first request through gateway A: %d", st)
	}
	if st, _, _ := get(t, cb, "GET", "https://api.origin.test/second", ""); st != http.StatusOK {
		t.Fatalf("first request through gateway B: %d", st)
	}
	if v := a.metric(t, `credgate_shared_cache_total{result="miss"}`); v != 1 {
		t.Errorf("gateway A: %v shared-cache misses, want 1", v)
	}
	if v := b.metric(t, `credgate_shared_cache_total{result="hit"}`); v != 1 {
		t.Errorf("gateway B: %v shared-cache hits, want 1: it did not read A's entry through the Sentinel's master", v)
	}
	for i, e := range []*env{a, b} {
		if v := e.metric(t, `credgate_rate_limit_backend{backend="redis"}`); v != 1 {
			t.Errorf("gateway %d: rate limits not shared through the Sentinel's master", i)
		}
	}

	// The rule allows 50/s with a burst of 10 for the fleet: 40 quick
	// requests from 8 workers over both gateways get at most 10 plus what
	// refilled meanwhile, where two per-replica limits would admit 20.
	start := time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	ok := 0
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := ca
			if w%2 == 1 {
				c = cb
			}
			for i := range 5 {
				st, _, _ := get(t, c, "GET", fmt.Sprintf("https://api.origin.test/burst/%d/%d", w, i), "")
				mu.Lock()
				switch st {
				case http.StatusOK:
					ok++
				case http.StatusTooManyRequests:
				default:
					t.Errorf("worker %d request %d: status %d", w, i, st)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	limit := 10 + int(50*elapsed.Seconds()) + 1
	reportPeer(t, "through the Sentinel: %d of 40 quick requests over two gateways admitted in %s (shared: burst 10 + 50/s, at most %d; per replica it would be 20 or more)", ok, elapsed.Round(time.Millisecond), limit)
	if ok > limit {
		t.Errorf("%d of 40 admitted in %s, want at most %d: the limit was not shared", ok, elapsed, limit)
	}
	dump, err := master.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range dump {
		keys = append(keys, k)
	}
	joined := strings.Join(keys, " ")
	if !strings.Contains(joined, "e2e:cred:") || !strings.Contains(joined, "e2e:rl:{local}:r:limited") {
		t.Errorf("the master holds %v, want a credential entry and the rule's limit", keys)
	}
}
