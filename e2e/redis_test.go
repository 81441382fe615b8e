package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/oauth2test"
	"github.com/credgate/credgate/internal/redistest"
)

// redisPolicy injects OAuth2 client-credentials tokens from one local
// authorization server (whose token requests the test counts): /single/*
// and /fresh/* use two credentials of their own.
const redisPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  saas:
    hosts: [other.origin.test]
    allow_private: true
credentials:
  client-secret:
    provider: static
    env: CREDGATE_E2E_OAUTH2_SECRET
  single:
    provider: oauth2
    token_url: TOKEN_URL
    client_id: gateway
    client_secret: {credential: client-secret}
    scopes: [read]
  fresh:
    provider: oauth2
    token_url: TOKEN_URL
    client_id: gateway
    client_secret: {credential: client-secret}
    scopes: [write]
  outage:
    provider: oauth2
    token_url: TOKEN_URL
    client_id: gateway
    client_secret: {credential: client-secret}
    scopes: [admin]
rules:
  - {name: single, from: local, to: saas, paths: [/single/*], inject: {credential: single, as: bearer}}
  - {name: fresh, from: local, to: saas, paths: [/fresh/*], inject: {credential: fresh, as: bearer}}
  - {name: outage, from: local, to: saas, paths: [/outage/*], inject: {credential: outage, as: bearer}}
default: deny
`

// writeRedisKey writes a base64 AES-256 key file and returns its path.
func writeRedisKey(t *testing.T, dir, name string) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(b)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func redisConfig(addr string, keys ...[2]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  redis:\n    addrs: [%q]\n    namespace: e2e\n    encryption_keys:\n", addr)
	for _, k := range keys {
		fmt.Fprintf(&b, "      - {id: %q, file: %q}\n", k[0], k[1])
	}
	return b.String()
}

// burst sends n concurrent GETs to path-i spread round-robin over the
// clients and returns how many did not get 200.
func burst(t *testing.T, clients []*http.Client, base, prefix string, n int) int {
	t.Helper()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st, _, _ := get(t, clients[i%len(clients)], "GET", fmt.Sprintf("%s/%s/%d", base, prefix, i), ""); st != http.StatusOK {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(failed.Load())
}

// TestRedisSharedCache runs two (then three) gateway processes sharing a
// real redis-server: one token request for a fleet's concurrent first
// requests, no plaintext in Redis, key rotation, and a Redis outage in
// the middle of a load run.
func TestRedisSharedCache(t *testing.T) {
	srv := redistest.Start(t)
	ver, _ := exec.Command("redis-server", "--version").Output()
	reportPeer(t, "redis: %s at %s", strings.TrimSpace(string(ver)), srv.Addr())

	as := oauth2test.New(oauth2test.Options{})
	t.Cleanup(as.Close)
	clientSecret := randomToken(t)
	as.AddSecretClient("gateway", clientSecret)
	o := startAuthOrigin(t, map[string]introspector{"single": fromServer(as), "fresh": fromServer(as), "outage": fromServer(as)})

	keyDir := t.TempDir()
	k1 := writeRedisKey(t, keyDir, "k1.key")
	adminTokFile, adminTok := writeAdminToken(t, keyDir)
	pol := strings.ReplaceAll(redisPolicy, "TOKEN_URL", as.TokenURL())
	opts := func(cfg string) envOptions {
		return envOptions{
			Policy:      pol,
			Resolve:     map[string]string{otherHost + ":443": o.addr},
			Env:         []string{"CREDGATE_E2E_OAUTH2_SECRET=" + clientSecret},
			CacheConfig: cfg,
			ExtraConfig: fmt.Sprintf("admin:\n  token_file: %q\n", adminTokFile),
		}
	}
	cfg1 := redisConfig(srv.Addr(), [2]string{"k1", k1})
	a, b := startEnv(t, opts(cfg1)), startEnv(t, opts(cfg1))
	envs := []*env{a, b}
	for _, e := range envs {
		e.secrets = append(e.secrets, clientSecret, adminTok)
	}
	t.Cleanup(func() {
		for _, e := range envs {
			e.secrets = append(e.secrets, o.tokens()...)
		}
	})
	clients := []*http.Client{newGoClient(t, a.proxyURL, gwCACert, false), newGoClient(t, b.proxyURL, gwCACert, false)}
	base := "https://" + otherHost

	t.Run("200 concurrent first requests over two gateways make one token request", func(t *testing.T) {
		if n := burst(t, clients, base, "single", 200); n > 0 {
			t.Fatalf("%d of 200 first requests failed", n)
		}
		if n := as.TokenRequests(); n != 1 {
			t.Errorf("%d token requests for 200 concurrent first requests over two gateways, want exactly 1", n)
		}
		if toks := o.tokens(); len(toks) != 1 {
			t.Errorf("the origin saw %d distinct tokens, want 1", len(toks))
		}
		for _, e := range envs {
			if v := e.metric(t, "credgate_redis_up"); v != 1 {
				t.Errorf("credgate_redis_up = %v, want 1", v)
			}
		}
		got := a.metric(t, `credgate_shared_cache_total{result="miss"}`) + b.metric(t, `credgate_shared_cache_total{result="miss"}`)
		waited := a.metric(t, `credgate_shared_cache_total{result="waited"}`) + b.metric(t, `credgate_shared_cache_total{result="waited"}`) +
			a.metric(t, `credgate_shared_cache_total{result="hit"}`) + b.metric(t, `credgate_shared_cache_total{result="hit"}`)
		if got != 1 || waited < 1 {
			t.Errorf("shared cache: %v misses and %v waited/hit over both gateways, want 1 miss and the other gateway served from Redis", got, waited)
		}
	})

	t.Run("Redis holds no plaintext secret", func(t *testing.T) {
		dump, err := srv.Dump(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		entries := 0
		for k, v := range dump {
			if strings.HasPrefix(k, "e2e:cred:") {
				entries++
			}
			for _, s := range append(o.tokens(), clientSecret, a.token) {
				for _, needle := range []string{s, s[len(s)/2:], base64.StdEncoding.EncodeToString([]byte(s))} {
					if strings.Contains(k, needle) || strings.Contains(v, needle) {
						t.Errorf("Redis key %q or its value holds a secret in plaintext", k)
					}
				}
			}
		}
		if entries != 1 {
			t.Errorf("%d credential entries in Redis (keys %v), want 1", entries, keysOf(dump))
		}
	})

	t.Run("a 401 on one gateway drops the token on the other", func(t *testing.T) {
		old := o.tokens()[0]
		as.Revoke(context.Background(), old)
		before := as.TokenRequests()
		if st, _, _ := get(t, clients[0], "GET", base+"/single/revoked-a", ""); st != http.StatusOK {
			t.Fatalf("GET through gateway A after revocation: %d, want 200 after one retry", st)
		}
		waitFor(t, 2*time.Second, "gateway B told to drop the revoked token", func() error {
			if !strings.Contains(b.stderr.String(), "another replica invalidated a credential") {
				return fmt.Errorf("no invalidation logged by B")
			}
			return nil
		})
		if st, _, _ := get(t, clients[1], "GET", base+"/single/revoked-b", ""); st != http.StatusOK {
			t.Fatalf("GET through gateway B: %d", st)
		}
		if got := o.byPath("/single/revoked-b"); len(got) != 1 || got[0].Token == old || !got[0].Active {
			t.Errorf("gateway B sent %d attempts; want one, with the new token", len(got))
		}
		if d := as.TokenRequests() - before; d != 1 {
			t.Errorf("%d token requests after the revocation, want 1 for the fleet", d)
		}
	})

	t.Run("a gateway with rotated keys reads the old entries", func(t *testing.T) {
		k2 := writeRedisKey(t, keyDir, "k2.key")
		c := startEnv(t, opts(redisConfig(srv.Addr(), [2]string{"k2", k2}, [2]string{"k1", k1})))
		c.secrets = append(c.secrets, clientSecret)
		t.Cleanup(func() { c.secrets = append(c.secrets, o.tokens()...) })
		before := as.TokenRequests()
		cc := newGoClient(t, c.proxyURL, gwCACert, false)
		if st, _, _ := get(t, cc, "GET", base+"/single/rotated", ""); st != http.StatusOK {
			t.Fatalf("GET through the rotated gateway: %d", st)
		}
		if d := as.TokenRequests() - before; d != 0 {
			t.Errorf("%d token requests: the entry sealed with k1 was not read under [k2, k1]", d)
		}
		if v := c.metric(t, `credgate_shared_cache_total{result="hit"}`); v != 1 {
			t.Errorf("rotated gateway: %v shared hits, want 1", v)
		}
		// New entries are sealed with k2: the first request for another
		// credential writes one.
		if st, _, _ := get(t, cc, "GET", base+"/fresh/rotated", ""); st != http.StatusOK {
			t.Fatalf("GET /fresh through the rotated gateway: %d", st)
		}
		dump, _ := srv.Dump(context.Background())
		sealedWith := map[string]int{}
		for k, v := range dump {
			if strings.HasPrefix(k, "e2e:cred:") && len(v) > 5 {
				sealedWith[v[4:4+int(v[3])]]++
			}
		}
		if sealedWith["k1"] != 1 || sealedWith["k2"] != 1 {
			t.Errorf("entries by key id %v, want one k1 (old) and one k2 (new)", sealedWith)
		}
	})

	t.Run("Redis stopped in the middle of a load run: no request fails", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer cancel()
		var sent, failed atomic.Int64
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil && i < 100000; i++ {
					path := "single"
					if i%10 == 0 {
						path = "outage" // cold while Redis is down
					}
					sent.Add(1)
					if st, _, _ := get(t, clients[(w+i)%2], "GET", fmt.Sprintf("%s/%s/load-%d-%d", base, path, w, i), ""); st != http.StatusOK {
						failed.Add(1)
					}
				}
			}()
		}
		waitFor(t, 5*time.Second, "some load before the outage", func() error {
			if sent.Load() < 40 {
				return fmt.Errorf("%d requests sent", sent.Load())
			}
			return nil
		})
		srv.Stop()
		outageAt := sent.Load()
		wg.Wait()
		t.Logf("load run: %d requests, %d after Redis stopped, %d failed", sent.Load(), sent.Load()-outageAt, failed.Load())
		if failed.Load() != 0 {
			t.Errorf("%d of %d requests failed with Redis down, want 0", failed.Load(), sent.Load())
		}
		if sent.Load()-outageAt < 20 {
			t.Errorf("only %d requests after Redis stopped; the outage was not exercised", sent.Load()-outageAt)
		}
		for _, e := range envs {
			waitFor(t, 5*time.Second, "credgate_redis_up 0", func() error {
				if v := e.metric(t, "credgate_redis_up"); v != 0 {
					return fmt.Errorf("credgate_redis_up = %v", v)
				}
				return nil
			})
			e.waitLog(t, "redis unavailable")
			if e.metric(t, `credgate_redis_errors_total{op="ping"}`) == 0 && e.metric(t, `credgate_redis_errors_total{op="get"}`) == 0 {
				t.Error("credgate_redis_errors_total did not count the outage")
			}
			if body := httpGetToken(t, "http://"+e.adminAddr+"/readyz", adminTok); !strings.Contains(body, `"redis":"down"`) {
				t.Errorf("/readyz during the outage: %s", body)
			}
		}
	})

	t.Run("after Redis restarts the gateways share again without a restart", func(t *testing.T) {
		srv.Restart()
		for _, e := range envs {
			waitFor(t, 10*time.Second, "credgate_redis_up 1", func() error {
				if v := e.metric(t, "credgate_redis_up"); v != 1 {
					return fmt.Errorf("credgate_redis_up = %v", v)
				}
				return nil
			})
			e.waitLog(t, "redis available again")
		}
		before := as.TokenRequests()
		if n := burst(t, clients, base, "fresh", 100); n > 0 {
			t.Fatalf("%d of 100 first requests failed", n)
		}
		if d := as.TokenRequests() - before; d != 1 {
			t.Errorf("%d token requests for 100 concurrent first requests after recovery, want 1 (shared again)", d)
		}
	})
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// httpGetToken GETs url with the admin token ("" for none): /readyz
// shows its detail only with it.
func httpGetToken(t *testing.T, url, token string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for range 100 {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}
