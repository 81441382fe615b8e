//go:build linux

package main

// The soak's fault mode (issue 21, `make soak-faults`, soak -faults):
// the same mix, with the gateway's dependencies behind a real Toxiproxy
// server (scripts/toxiproxy.sh) and faults injected one after another
// while the load runs:
//
//   - Redis (the shared cache; a redis-server the soak starts) down and
//     back, slow (latency), and resetting connections;
//   - Vault (the in-repo emulator, in this process) down and back, sealed
//     and unsealed, and slow: a second rule injects a KV secret from it
//     on /vault/* with a short cache lifetime, so an outage reaches the
//     requests;
//   - an OAuth2 token endpoint (internal/oauth2test, in this process)
//     answering 503 and answering slower than the provider's timeout: a
//     third rule injects a client-credentials token from it on /oauth2/*,
//     whose tokens live 6 s; the origin accepts there only a token the
//     endpoint's introspection (RFC 7662) calls active;
//   - with -sentinel, Redis as a master, a replica and three Sentinels
//     (quorum 2), failed over by SENTINEL FAILOVER, by killing the master,
//     and by killing the master after one Sentinel was killed (the two
//     left must agree; sentinel.go), in place of the Toxiproxy faults of
//     the single Redis;
//   - STS throttling (s3.go): a real MinIO as an S3 origin verifying
//     SigV4, a fourth rule injecting an awssts credential with sigv4 on
//     it, and a shim in front of MinIO's STS answering STS's throttling
//     error (400 Throttling, "Rate exceeded") and 503 during the fault;
//     skipped, saying why, when MinIO is not built;
//   - the policy file rewritten every 10 s, alternately broken and valid
//     (the last good policy must stay in force);
//   - SIGHUP storms (20 in a burst);
//   - the interception CA rotated (the clients trust the old and the new);
//   - upstream resets mid-body on /v1/reset (the client must see an
//     error, never a complete answer);
//   - the origin itself behind Toxiproxy for a share of the requests
//     (originfaults.go): slower, throttled, cut mid-body, reset and
//     half-open.
//
// The origin answers 401 to a request without the injected credential:
// a 401 is a request forwarded without its credential, which must never
// happen. A Vault request refused 503 while Vault is down, sealed or slow
// (or within the recovery bound after) is the gateway failing closed, as
// it must; the table shows how many, and how long each recovery took.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"

	"github.com/credgate/credgate/internal/atomicfile"
	"github.com/credgate/credgate/internal/cabundle"
	"github.com/credgate/credgate/internal/oauth2test"
	"github.com/credgate/credgate/internal/testpki"
	"github.com/credgate/credgate/internal/vaulttest"
)

// faultWindow is how long each fault lasts; the same time follows it
// without a fault (the recovery window).
const faultWindow = 15 * time.Second

// recoveryBound is how long after a fault ends the gateway may take to
// serve again: the vault credential's cache lifetime (vaultTTL) plus the
// cache's error_backoff plus a margin for a retry in flight.
const recoveryBound = 10 * time.Second

// vaultTTL is the cache lifetime of the Vault KV secret in fault mode:
// short, so that a Vault outage reaches requests within a window.
const vaultTTL = 3 * time.Second

// oauth2TTL is the lifetime of the OAuth2 tokens in fault mode: short, so
// that a token endpoint outage reaches requests within a fault.
const oauth2TTL = 6 * time.Second

// Environment variables of fault mode: the OAuth2 client secret (to the
// gateway, through a static credential) and the origin's secret at the
// introspection endpoint.
const (
	oauth2SecretEnv     = "CREDGATE_BENCH_OAUTH2_SECRET"
	introspectSecretEnv = "CREDGATE_BENCH_INTROSPECT_SECRET"
)

// faultEnv is what fault mode runs beside the gateway.
type faultEnv struct {
	tox        *toxiproxy.Client
	toxProc    *proc
	redisProc  *proc
	redis      *toxiproxy.Proxy
	vaultProxy *toxiproxy.Proxy
	vault      *vaulttest.Server
	// oauth2 is the token endpoint; oauth2Proxy is Toxiproxy in front of it.
	oauth2      *oauth2test.Server
	oauth2Proxy *toxiproxy.Proxy
	// redisAddr, vaultAddr and oauth2Addr are the Toxiproxy listeners the
	// gateway uses.
	redisAddr, vaultAddr, oauth2Addr string
	token                            string
	// oauth2Secret is the gateway's client secret at the token endpoint,
	// introspectSecret the origin's at the introspection endpoint.
	oauth2Secret, introspectSecret string
	// sentinel, with -sentinel, replaces the single redis-server (and
	// its Toxiproxy) by a master, a replica and three Sentinels.
	sentinel *sentinelSet
	// s3 is the S3 leg (MinIO and the STS shim), nil when skipped;
	// s3Skipped says why.
	s3        *s3Env
	s3Skipped string
	// originProxy is Toxiproxy in front of the origin, listening on
	// originProxyAddr; the clients reach it as originHost:originPort
	// (originfaults.go).
	originProxy     *toxiproxy.Proxy
	originProxyAddr string
	originPort      int

	mu      sync.Mutex
	current fault        // the fault in force, zero for none
	events  []faultEvent // in order
	ends    map[string]ended
	recover map[string]time.Duration // fault@end -> time from its end to the first success of its source's rule
	// stopped is when run returned (the end of the mix).
	stopped time.Time
	// notes are what faults measured (a failover's duration), in order.
	notes []string
	// toxRecs are the origin faults injected, in order, toxNow the one
	// in force (nil for none) and toxEnded when the last one ended.
	toxRecs  []*toxRecord
	toxNow   *toxRecord
	toxEnded time.Time
	// toxAfter counts requests through the origin proxy started within
	// the recovery bound after an origin fault ended that failed; the
	// first is described in toxAfterFirst.
	toxAfter      int64
	toxAfterFirst string
}

// note records what a fault measured, for the report.
func (fe *faultEnv) note(format string, args ...any) {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	fe.notes = append(fe.notes, fmt.Sprintf(format, args...))
}

// ended is a fault that made a rule fail closed, waiting for the rule's
// first success after it.
type ended struct {
	source string
	at     time.Time
}

// faultEvent is one fault: when it started and ended, relative to the
// mix's start.
type faultEvent struct {
	name       string
	start, end time.Duration
}

// startFaultEnv starts Toxiproxy, redis-server behind it (or, with
// sentinel, a master, a replica and three Sentinels, not behind it), the Vault
// emulator behind it, with the token stored in Vault's KV, and the OAuth2
// token endpoint behind it.
func startFaultEnv(ctx context.Context, work string, pins pinning, env []string, token string, sentinel bool) (*faultEnv, error) {
	bin := os.Getenv("CREDGATE_TOOLS_BIN")
	if bin == "" {
		home, _ := os.UserHomeDir()
		bin = filepath.Join(home, ".cache", "credgate", "bin")
	}
	toxBin := filepath.Join(bin, "toxiproxy-server")
	if _, err := os.Stat(toxBin); err != nil {
		return nil, fmt.Errorf("fault mode needs Toxiproxy: %s is missing; run bash scripts/toxiproxy.sh (make soak-faults does)", toxBin)
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, errors.New("fault mode needs redis-server (Debian package redis-server)")
	}
	fe := &faultEnv{token: token, ends: map[string]ended{}, recover: map[string]time.Duration{},
		oauth2Secret: randomHex(16), introspectSecret: randomHex(16)}
	apiAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	host, port, _ := strings.Cut(apiAddr, ":")
	dir := filepath.Join(work, "toxiproxy")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("toxiproxy directory: %w", err)
	}
	if fe.toxProc, err = startProc("toxiproxy", pins.origin, dir, filepath.Join(dir, "toxiproxy.log"), env, toxBin, "-host", host, "-port", port); err != nil {
		return nil, err
	}
	if err := fe.toxProc.waitTCP(ctx, apiAddr, 10*time.Second); err != nil {
		fe.close()
		return nil, err
	}
	fe.tox = toxiproxy.NewClient(apiAddr)

	if sentinel {
		if fe.sentinel, err = startSentinelSet(ctx, work, pins, env); err != nil {
			fe.close()
			return nil, err
		}
	} else {
		redisAddr, rp, _, err := startRedis(ctx, work, pins, env)
		if err != nil {
			fe.close()
			return nil, err
		}
		fe.redisProc = rp
		if fe.redisAddr, err = freePort(); err != nil {
			fe.close()
			return nil, err
		}
		if fe.redis, err = fe.tox.CreateProxy("redis", fe.redisAddr, redisAddr); err != nil {
			fe.close()
			return nil, fmt.Errorf("toxiproxy: create the redis proxy: %w", err)
		}
	}

	fe.vault = vaulttest.NewServer(vaulttest.Options{})
	body, _ := json.Marshal(map[string]any{"data": map[string]string{"token": token}})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fe.vault.URL+"/v1/secret/data/bench", bytes.NewReader(body))
	req.Header.Set("X-Vault-Token", fe.vault.RootToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fe.close()
		return nil, fmt.Errorf("vault emulator: write the KV secret: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		fe.close()
		return nil, fmt.Errorf("vault emulator: write the KV secret: %s", resp.Status)
	}
	if fe.vaultAddr, err = freePort(); err != nil {
		fe.close()
		return nil, err
	}
	if fe.vaultProxy, err = fe.tox.CreateProxy("vault", fe.vaultAddr, strings.TrimPrefix(fe.vault.URL, "http://")); err != nil {
		fe.close()
		return nil, fmt.Errorf("toxiproxy: create the vault proxy: %w", err)
	}

	fe.oauth2 = oauth2test.New(oauth2test.Options{TokenTTL: oauth2TTL})
	fe.oauth2.AddSecretClient("credgate-soak", fe.oauth2Secret)
	fe.oauth2.AddSecretClient("origin", fe.introspectSecret)
	if fe.oauth2Addr, err = freePort(); err != nil {
		fe.close()
		return nil, err
	}
	if fe.oauth2Proxy, err = fe.tox.CreateProxy("oauth2", fe.oauth2Addr, strings.TrimPrefix(fe.oauth2.URL, "http://")); err != nil {
		fe.close()
		return nil, fmt.Errorf("toxiproxy: create the oauth2 proxy: %w", err)
	}
	return fe, nil
}

// originArgs are the origin's extra arguments in fault mode: tokens under
// /oauth2/ are checked at the token endpoint's introspection (directly,
// not through Toxiproxy: the faults are the gateway's).
func (fe *faultEnv) originArgs() []string {
	return []string{"-introspect-url", fe.oauth2.IntrospectURL(), "-introspect-prefix", "/oauth2/", "-introspect-client", "origin"}
}

// childEnv is what fault mode adds to the environment of the origin and
// the gateway.
func (fe *faultEnv) childEnv() []string {
	env := []string{vaultEnv + "=" + fe.vault.RootToken, oauth2SecretEnv + "=" + fe.oauth2Secret, introspectSecretEnv + "=" + fe.introspectSecret}
	if fe.s3 != nil {
		env = append(env, fe.s3.gatewayEnv()...)
	}
	return env
}

// secrets are fault mode's secret values, which must not appear in the
// gateway's log or audit: call it after the run, since it lists every
// OAuth2 access token and STS credential issued.
func (fe *faultEnv) secrets() []string {
	out := []string{fe.vault.RootToken, fe.oauth2Secret, fe.introspectSecret}
	out = append(out, fe.oauth2.IssuedTokens()...)
	if fe.s3 != nil {
		out = append(out, fe.s3.secrets()...)
	}
	return out
}

// startS3 starts the S3 leg (s3.go) with a MinIO certificate from the
// origin CA, or notes why it is skipped.
func (fe *faultEnv) startS3(ctx context.Context, work string, originCA *testpki.Authority, env []string) error {
	s3, why, err := startS3(ctx, work, originCA, env)
	if err != nil {
		return fmt.Errorf("the S3 leg: %w", err)
	}
	fe.s3, fe.s3Skipped = s3, why
	return nil
}

func (fe *faultEnv) close() {
	if fe.s3 != nil {
		fe.s3.close()
	}
	if fe.oauth2 != nil {
		fe.oauth2.Close()
	}
	if fe.vault != nil {
		fe.vault.Close()
	}
	if fe.redisProc != nil {
		fe.redisProc.stop(2 * time.Second)
	}
	if fe.sentinel != nil {
		fe.sentinel.close()
	}
	if fe.toxProc != nil {
		fe.toxProc.stop(2 * time.Second)
	}
}

// vaultEnv is the environment variable carrying the emulator's root
// token to the gateway.
const vaultEnv = "CREDGATE_BENCH_VAULT_TOKEN"

// variant is the credgate variant of fault mode: the shared cache in
// Redis and a second rule whose credential comes from Vault, both through
// Toxiproxy; the CA re-read every second.
func (fe *faultEnv) variant() credgateVariant {
	v := credgateVariant{name: "credgate", redis: fe.redisAddr, editPolicy: fe.policy,
		cacheExtra: "  error_backoff: 1s\n", caReload: "1s",
		upstreamExtra: fmt.Sprintf("  response_header_timeout: %s\n  tls_handshake_timeout: %s\n  idle_conn_timeout: %s\n", upstreamTimeout, upstreamTimeout, upstreamIdle),
		resolve:       map[string]string{}}
	if fe.s3 != nil {
		v.resolve = fe.s3.resolve()
	}
	if fe.originProxy != nil {
		v.resolve[originHost+":"+strconv.Itoa(fe.originPort)] = fe.originProxyAddr
	}
	if fe.sentinel != nil {
		// redis is set too: it says the variant has cache.redis.
		v.redis, v.redisMaster, v.sentinels = fe.sentinel.addrs[0], sentinelMaster, fe.sentinel.addrs
	}
	return v
}

// policy adds the Vault and OAuth2 credentials and their rules (before
// the catch-all rule: first match wins) to the bench policy.
func (fe *faultEnv) policy(p string) string {
	if fe.s3 != nil {
		p = fe.s3.policy(p)
	}
	if fe.originProxy != nil {
		// The origin destination covers the origin proxy's port too.
		p = strings.Replace(p, "    ports: [443]\n", fmt.Sprintf("    ports: [443, %d]\n", fe.originPort), 1)
	}
	p = strings.Replace(p, "rules:\n", "rules:\n  - name: vault-inject\n    from: bench\n    to: origin\n    paths: [/vault/*]\n    inject: {credential: vault-token, as: bearer}\n"+
		"  - name: oauth2-inject\n    from: bench\n    to: origin\n    paths: [/oauth2/*]\n    inject: {credential: oauth2-token, as: bearer}\n", 1)
	return strings.Replace(p, "credentials:\n", fmt.Sprintf(`credentials:
  oauth2-client-secret:
    provider: static
    env: %s
  oauth2-token:
    provider: oauth2
    token_url: http://%s/token
    client_id: credgate-soak
    client_secret: {credential: oauth2-client-secret}
    timeout: 2s
    retries: 0
  vault-token:
    provider: vault
    server:
      address: http://%s
      timeout: 2s
      retries: 0
      auth: {method: token, token_env: %s}
    path: secret/data/bench
    field: token
    ttl: %s
`, oauth2SecretEnv, fe.oauth2Addr, fe.vaultAddr, vaultEnv, vaultTTL), 1)
}

// fault is one entry of the schedule: start puts it in force, stop ends
// it. A storm's stop does nothing (it is over when start returns).
type fault struct {
	name        string
	start, stop func() error
	// source names the request kind (soakKinds: "vault", "oauth2", "s3",
	// "tox") whose rule may fail closed under this fault, or whose first
	// success after it is its recovery; "" for none.
	source string
	// origin, for a fault between the gateway and the origin, says what
	// the requests through the origin proxy may see (originfaults.go).
	origin *originFault
}

// schedule lists the faults in the order they are injected; the soak
// cycles through it. gw is the gateway's directory and pid. With
// -sentinel, the Redis faults are the Sentinel's failovers instead of
// Toxiproxy's (the gateway reaches the servers the Sentinel names, not
// through Toxiproxy).
func (fe *faultEnv) schedule(ctx context.Context, gwDir string, gwPID int, ca *caRotation) []fault {
	toxic := func(p *toxiproxy.Proxy, name, typ string, attrs toxiproxy.Attributes) func() error {
		return func() error {
			_, err := p.AddToxic(name, typ, "downstream", 1, attrs)
			return err
		}
	}
	remove := func(p *toxiproxy.Proxy, name string) func() error { return func() error { return p.RemoveToxic(name) } }
	none := func() error { return nil }
	faults := []fault{
		{name: "redis down", start: fe.redisDisable, stop: fe.redisEnable},
		{name: "vault down", source: "vault", start: fe.vaultProxy.Disable, stop: fe.vaultProxy.Enable},
		{name: "oauth2 token endpoint 503", source: "oauth2", start: func() error { fe.oauth2.FailWith(http.StatusServiceUnavailable); return nil }, stop: func() error { fe.oauth2.FailWith(0); return nil }},
		{name: "STS throttling (400 Throttling, 503)", source: "s3", start: func() error { fe.s3.shim.throttle(true); return nil }, stop: func() error { fe.s3.shim.throttle(false); return nil }},
		{name: "policy broken, then valid", start: func() error { return rewritePolicy(gwDir, true) }, stop: func() error { return rewritePolicy(gwDir, false) }},
		{name: "redis slow (300 ms)", start: toxic(fe.redis, "latency", "latency", toxiproxy.Attributes{"latency": 300}), stop: remove(fe.redis, "latency")},
		{name: "vault sealed", source: "vault", start: func() error { fe.vault.Seal(); return nil }, stop: func() error { fe.vault.Unseal(); return nil }},
		{name: "SIGHUP storm (20)", start: func() error { return sighupStorm(gwPID, 20) }, stop: none},
		{name: "redis resets", start: toxic(fe.redis, "reset", "reset_peer", toxiproxy.Attributes{"timeout": 100}), stop: remove(fe.redis, "reset")},
		{name: "vault slow (3 s)", source: "vault", start: toxic(fe.vaultProxy, "latency", "latency", toxiproxy.Attributes{"latency": 3000}), stop: remove(fe.vaultProxy, "latency")},
		{name: "oauth2 token endpoint slow (3 s)", source: "oauth2", start: toxic(fe.oauth2Proxy, "latency", "latency", toxiproxy.Attributes{"latency": 3000}), stop: remove(fe.oauth2Proxy, "latency")},
		{name: "CA rotated", start: ca.rotate, stop: none},
		{name: "vault bandwidth 1 KB/s", source: "vault", start: toxic(fe.vaultProxy, "bw", "bandwidth", toxiproxy.Attributes{"rate": 1}), stop: remove(fe.vaultProxy, "bw")},
	}
	if fe.s3 == nil {
		faults = slices.DeleteFunc(faults, func(f fault) bool { return f.source == "s3" })
	}
	if fe.originProxy != nil {
		faults = append(faults, fe.originFaults()...)
	}
	if fe.sentinel == nil {
		return faults
	}
	var out []fault
	for _, f := range faults {
		switch f.name {
		case "redis down":
			f = fault{name: "redis failover (SENTINEL FAILOVER)", start: func() error {
				d, err := fe.sentinel.failover(ctx)
				if err == nil {
					fe.note("SENTINEL FAILOVER: the Sentinel named the new master after %.1f s", d.Seconds())
				}
				return err
			}, stop: none}
		case "redis resets":
			f = fault{name: "redis master killed (Sentinel fails over)", start: func() error {
				_, d, err := fe.sentinel.killMaster(ctx)
				if err == nil {
					fe.note("master killed: the Sentinel named the new master after %.1f s", d.Seconds())
				}
				return err
			}, stop: func() error { return fe.sentinel.restart(ctx) }}
		case "redis slow (300 ms)":
			f = fault{name: "redis: one Sentinel killed, then the master (the two left fail over)", start: func() error {
				addr, subscribed, err := fe.sentinel.killSentinel(ctx)
				if err != nil {
					return err
				}
				_, d, err := fe.sentinel.killMaster(ctx)
				if err == nil {
					which := "no client was subscribed to any Sentinel"
					if subscribed {
						which = "the one a client (the gateway) was subscribed to"
					}
					fe.note("Sentinel %s killed (%s), then the master: the two Sentinels left named the new master after %.1f s", addr, which, d.Seconds())
				}
				return err
			}, stop: func() error { return fe.sentinel.restart(ctx) }}
		}
		out = append(out, f)
	}
	return out
}

// redisDisable and redisEnable take the single Redis down and back
// through Toxiproxy.
func (fe *faultEnv) redisDisable() error { return fe.redis.Disable() }
func (fe *faultEnv) redisEnable() error  { return fe.redis.Enable() }

// filterFaults keeps the faults whose name contains one of the
// comma-separated words of only (all of them when only is empty or
// matches none).
func filterFaults(faults []fault, only string) []fault {
	if strings.TrimSpace(only) == "" {
		return faults
	}
	var kept []fault
	for _, f := range faults {
		for w := range strings.SplitSeq(only, ",") {
			if w = strings.TrimSpace(w); w != "" && strings.Contains(f.name, w) {
				kept = append(kept, f)
				break
			}
		}
	}
	if len(kept) == 0 {
		return faults
	}
	return kept
}

// run injects the schedule's faults one after another until ctx ends:
// each for faultWindow, then faultWindow without a fault. It records the
// events; start is the mix's start.
func (fe *faultEnv) run(ctx context.Context, faults []fault, start time.Time) {
	defer func() {
		fe.mu.Lock()
		fe.stopped = time.Now()
		fe.mu.Unlock()
	}()
	for i := 0; ; i++ {
		f := faults[i%len(faults)]
		select {
		case <-ctx.Done():
			return
		case <-time.After(faultWindow):
		}
		ev := faultEvent{name: f.name, start: time.Since(start).Round(time.Second)}
		fe.mu.Lock()
		fe.current = f
		if f.origin != nil {
			fe.toxNow = &toxRecord{name: f.name, fault: f.origin, from: ev.start, classes: map[string]int64{}}
			fe.toxRecs = append(fe.toxRecs, fe.toxNow)
		}
		fe.mu.Unlock()
		if err := f.start(); err != nil {
			fmt.Fprintf(os.Stderr, "soak: fault %s: start: %v\n", f.name, err)
		}
		fmt.Fprintf(os.Stderr, "soak: %s  fault: %s\n", ev.start, f.name)
		select {
		case <-ctx.Done():
		case <-time.After(faultWindow):
		}
		if err := f.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "soak: fault %s: stop: %v\n", f.name, err)
		}
		ev.end = time.Since(start).Round(time.Second)
		fe.mu.Lock()
		fe.current = fault{}
		if f.origin != nil {
			fe.toxNow, fe.toxEnded = nil, time.Now()
		}
		fe.events = append(fe.events, ev)
		if f.source != "" {
			fe.ends[f.name] = ended{source: f.source, at: time.Now()}
		}
		fe.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
	}
}

// expected reports whether an error of kind (a soakKinds entry) with
// class (errorKind) is the gateway doing what it must under the faults:
// the rule of a credential source failing closed (503) during a fault of
// that source or within the recovery bound after one, or a reset reaching
// the client as an error.
func (fe *faultEnv) expected(kind, class string) bool {
	if kind == "reset" {
		return class != "complete"
	}
	if class != "status 503" {
		return false
	}
	fe.mu.Lock()
	defer fe.mu.Unlock()
	if fe.current.source != "" && fe.current.source == kind {
		return true
	}
	for _, e := range fe.ends {
		if e.source == kind && time.Since(e.at) < recoveryBound {
			return true
		}
	}
	return false
}

// sourceOK records a successful request of kind (a credential source's
// rule): the first one after a fault of that source ended is that fault's
// recovery time.
func (fe *faultEnv) sourceOK(kind string) {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	if fe.current.source == kind {
		return
	}
	for name, e := range fe.ends {
		if e.source != kind {
			continue
		}
		key := name + "@" + e.at.Format(time.RFC3339Nano)
		if _, done := fe.recover[key]; !done {
			fe.recover[key] = time.Since(e.at)
		}
		delete(fe.ends, name)
	}
}

// report prints the faults injected and the recovery of the Vault and
// OAuth2 rules after each fault of their source, and returns whether every recovery was within
// the bound.
func (fe *faultEnv) report(w io.Writer) bool {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	fmt.Fprintln(w, "\n| fault | from | to |\n|---|--:|--:|")
	for _, ev := range fe.events {
		fmt.Fprintf(w, "| %s | %s | %s |\n", ev.name, ev.start, ev.end)
	}
	keys := make([]string, 0, len(fe.recover))
	for k := range fe.recover {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	ok := true
	var parts []string
	for _, k := range keys {
		d := fe.recover[k]
		name, _, _ := strings.Cut(k, "@")
		parts = append(parts, fmt.Sprintf("%s %.1f s", name, d.Seconds()))
		if d > recoveryBound {
			ok = false
		}
	}
	for name, e := range fe.ends {
		// A fault that ended less than the bound before the run did had
		// no time to show its recovery: reported, not failed.
		if !fe.stopped.IsZero() && fe.stopped.Sub(e.at) < recoveryBound {
			parts = append(parts, name+": the run ended before its recovery")
			continue
		}
		parts = append(parts, name+": never recovered")
		ok = false
	}
	for _, n := range fe.notes {
		fmt.Fprintf(w, "\n- %s", n)
	}
	if len(fe.notes) > 0 {
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\nFirst success of the failing rule (Vault, OAuth2, S3) or of the requests through the origin proxy after each of its faults ended: %s (bound %s).\n", strings.Join(parts, ", "), recoveryBound)
	return ok
}

// redisRecovered checks, for each Redis fault of events, the first sample
// taken at least recoveryBound after it ended: the gateway must read
// credgate_redis_up 1 there. It returns how many faults it could check (a
// sample existed) and the ones that failed, with when.
func redisRecovered(events []faultEvent, samples []sample) (checked int, late []string) {
	for _, ev := range events {
		if !strings.HasPrefix(ev.name, "redis") {
			continue
		}
		for _, s := range samples {
			if s.at < ev.end+recoveryBound || s.redisUp < 0 {
				continue
			}
			checked++
			if s.redisUp != 1 {
				late = append(late, fmt.Sprintf("%s ended at %s, redis_up %d at %s", ev.name, ev.end, s.redisUp, s.at))
			}
			break
		}
	}
	return checked, late
}

// rewritePolicy replaces the gateway's policy file atomically with a
// broken one (broken) or the valid one it saved first.
func rewritePolicy(dir string, broken bool) error {
	path := filepath.Join(dir, "policy.yaml")
	good := filepath.Join(dir, "policy.good.yaml")
	if _, err := os.Stat(good); err != nil {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(good, b, 0o644); err != nil {
			return err
		}
	}
	content := []byte("rules: [this is: not a policy\n")
	if !broken {
		b, err := os.ReadFile(good)
		if err != nil {
			return err
		}
		// A content the gateway has not seen, so that it reloads (and
		// says so) rather than recognising the policy in force.
		content = append(b, fmt.Sprintf("# rewritten by the soak at %s\n", time.Now().UTC().Format(time.RFC3339Nano))...)
	}
	return atomicfile.Write(path, content, 0o644)
}

// sighupStorm sends n SIGHUPs to pid, 10 ms apart.
func sighupStorm(pid, n int) error {
	for range n {
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// caRotation replaces the interception CA by a second one made at the
// start, whose certificate the clients trust from the start too.
type caRotation struct {
	dir, cert, key, nextCert, nextKey string
}

// prepareCARotation makes the next CA with `credgate ca init` and adds it
// to roots.
func prepareCARotation(ctx context.Context, bin, dir, cert, key string, roots *x509.CertPool) (*caRotation, error) {
	next := filepath.Join(dir, "next-ca")
	if err := os.MkdirAll(next, 0o700); err != nil {
		return nil, err
	}
	c, k, _, err := credgateCA(ctx, bin, next)
	if err != nil {
		return nil, fmt.Errorf("next CA: %w", err)
	}
	pem, err := os.ReadFile(filepath.Join(next, c))
	if err != nil {
		return nil, err
	}
	if _, err := cabundle.AddRoots(roots, pem); err != nil {
		return nil, fmt.Errorf("next CA %s: %w", c, err)
	}
	return &caRotation{dir: dir, cert: cert, key: key, nextCert: filepath.Join(next, c), nextKey: filepath.Join(next, k)}, nil
}

// rotate moves the next CA's files over the CA the config names (key
// first, then the certificate, each atomically).
func (r *caRotation) rotate() error {
	for _, p := range [][2]string{{r.nextKey, r.key}, {r.nextCert, r.cert}} {
		b, err := os.ReadFile(p[0])
		if err != nil {
			return err
		}
		dst := filepath.Join(r.dir, p[1])
		if err := atomicfile.Write(dst, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// faultVerdicts prints the faults and the fault mode's verdicts: no
// request forwarded without its credential, no secret in the gateway's
// log or audit, every Vault fault recovered within the bound. It reports
// whether all passed.
func faultVerdicts(w io.Writer, fe *faultEnv, samples []sample, secrets []string, files ...string) bool {
	ok := fe.report(w)
	var unauthorized, complete int64
	expected := map[string]int64{}
	for _, s := range samples {
		for k, n := range s.errs {
			if strings.HasSuffix(k, " status 401") {
				unauthorized += n
			}
			if k == "reset complete" {
				complete += n
			}
		}
		for k, n := range s.expected {
			expected[k] += n
		}
	}
	kinds := make([]string, 0, len(expected))
	for k, n := range expected {
		kinds = append(kinds, fmt.Sprintf("%s: %d", k, n))
	}
	slices.Sort(kinds)
	fmt.Fprintf(w, "\nExpected under the faults (not counted as errors): %s.\n\n", strings.Join(kinds, ", "))
	verdict := func(pass bool, what string, args ...any) {
		word := "PASS"
		if !pass {
			word, ok = "FAIL", false
		}
		fmt.Fprintf(w, "- %s: %s\n", word, fmt.Sprintf(what, args...))
	}
	verdict(unauthorized == 0, "requests forwarded without their credential (answered 401 by the origin): %d", unauthorized)
	verdict(complete == 0, "upstream resets mid-body that reached the client as a complete answer: %d", complete)
	fe.toxReport(w, samples, verdict)
	if fe.s3 != nil {
		var refused int64
		for _, s := range samples {
			refused += s.errs["s3 status 403"]
		}
		relayed, throttled, unavail := fe.s3.shim.counts()
		fmt.Fprintf(w, "- STS (MinIO behind the shim): %d AssumeRole calls relayed; during the throttling %d answered 400 Throttling, %d answered 503\n", relayed, throttled, unavail)
		verdict(refused == 0, "S3 requests MinIO refused 403 (forwarded without a valid SigV4 signature): %d", refused)
		early, first := fe.s3.earlyRefusals()
		verdict(early == 0, "S3 requests refused 503 while the cached STS credential was still valid (more than 1 s before its Expiration): %d%s", early, map[bool]string{true: "", false: " (first " + first + ")"}[early == 0])
	} else if fe.s3Skipped != "" {
		fmt.Fprintf(w, "- S3 leg and STS throttling skipped: %s\n", fe.s3Skipped)
	}
	var leaks int64
	scanStart := time.Now()
	scan := newSecretScanner(secrets)
	for _, f := range files {
		n, err := scan.countFile(f)
		if err != nil {
			verdict(false, "look for secrets: %v", err)
		}
		leaks += n
	}
	verdict(leaks == 0, "secret values (the injected token, the Vault token, the OAuth2 client and introspection secrets, every OAuth2 access token issued, MinIO's root password, the gateway's AWS secret key, every secret key and session token STS issued: %d values) and their encoded forms (base64, URL, JSON escapes) in the gateway's log and audit file: %d (scanned in %.1f s)", len(secrets), leaks, time.Since(scanStart).Seconds())
	// Each Redis fault (down, slow, resetting, failed over) must end with
	// the gateway on Redis again: credgate_redis_up 1 in the first sample
	// taken a recovery bound after the fault ended.
	if checked, late := redisRecovered(fe.events, samples); checked > 0 || len(late) > 0 {
		verdict(len(late) == 0, "Redis faults after which the gateway was back on Redis (credgate_redis_up 1) within %s: %d of %d%s",
			recoveryBound, checked-len(late), checked, map[bool]string{true: "", false: " (not: " + strings.Join(late, ", ") + ")"}[len(late) == 0])
	}
	// Each policy fault writes a broken policy, then a new valid one: the
	// gateway must have rejected the first and loaded the second (the
	// log says both), while the requests above went on.
	policyFaults := 0
	for _, ev := range fe.events {
		if strings.HasPrefix(ev.name, "policy") {
			policyFaults++
		}
	}
	if policyFaults > 0 && len(files) > 0 {
		b, _ := os.ReadFile(files[0])
		rejected := bytes.Count(b, []byte(`"msg":"policy reload rejected; keeping the last good policy"`))
		reloaded := bytes.Count(b, []byte(`"msg":"policy reloaded"`))
		verdict(rejected >= policyFaults && reloaded >= policyFaults, "policy faults seen by the gateway: %d broken policies rejected, %d valid ones loaded, for %d faults", rejected, reloaded, policyFaults)
	}
	return ok
}
