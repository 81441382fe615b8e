package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/internal/redistest"
)

const rateLimitTestPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    rate_limit: {rps: 0.01, burst: 4}
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
  tunnel:
    hosts: [tunnel.origin.test]
    allow_private: true
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
rules:
  - name: free
    from: local
    to: api
    paths: [/free/*]
    inject: {credential: token, as: bearer}
  - name: api
    from: local
    to: api
    inject: {credential: token, as: bearer}
    rate_limit: {rps: 0.01, burst: 2}
  - name: tunnel
    from: local
    to: tunnel
    action: tunnel
    rate_limit: {rps: 0.01, burst: 1}
default: deny
`

// TestRateLimits drives the per-process limiter (no cache.redis): a rule's
// limit, a tunnel rule's limit at CONNECT, a workload's limit across its
// rules; 429 with Retry-After, the JSON refusal, audit and metrics.
func TestRateLimits(t *testing.T) {
	pki := newTestPKI(t, apiHost, tunnelHost)
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(rateLimitTestPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n  \"tunnel.origin.test:443\": %q\n", tg.origin.addr, tg.origin.addr))
	c := tg.client(t, false)

	type answer struct {
		Status     int
		Reason     string
		RetryAfter string
		Code, Rule string
	}
	get := func(path string) answer {
		t.Helper()
		resp, err := c.Get("https://" + apiHost + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		a := answer{Status: resp.StatusCode, Reason: resp.Header.Get(ReasonHeader), RetryAfter: resp.Header.Get("Retry-After")}
		if resp.StatusCode != http.StatusOK {
			var body struct{ Code, Rule, Error, Reason string }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("refusal body: %v", err)
			}
			a.Code, a.Rule = body.Code, body.Rule
			if body.Error != "too_many_requests" || !strings.Contains(body.Reason, "0.01 requests/s") {
				t.Errorf("refusal body %+v", body)
			}
		}
		return a
	}
	connect := func() answer {
		t.Helper()
		conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", tunnelHost, tunnelHost)
		resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		a := answer{Status: resp.StatusCode, Reason: resp.Header.Get(ReasonHeader), RetryAfter: resp.Header.Get("Retry-After")}
		if resp.StatusCode != http.StatusOK {
			var body struct{ Code, Rule string }
			b, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(b, &body); err != nil {
				t.Fatalf("refusal body %q: %v", b, err)
			}
			a.Code, a.Rule = body.Code, body.Rule
		}
		return a
	}
	ok := answer{Status: 200}
	limited := func(rule string) answer {
		// 0.01 requests/s: the next one is admitted in 100 s.
		return answer{Status: 429, Reason: "rate_limited", RetryAfter: "100", Code: "rate_limited", Rule: rule}
	}
	got := []answer{
		get("/a"), get("/b"), get("/c"), // rule api: burst 2
		connect(), connect(), // rule tunnel: burst 1
		get("/free/a"), get("/free/b"), // workload: burst 4 over all rules
	}
	want := []answer{ok, ok, limited("api"), ok, limited("tunnel"), ok, limited("free")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
	if n := len(tg.origin.all()); n != 3 {
		t.Errorf("the origin saw %d requests, want the 3 admitted injected ones", n)
	}

	body := metricsText(t, tg)
	for _, w := range []string{
		`credgate_rate_limited_total{limit="rule",rule="api",workload="local"} 1`,
		`credgate_rate_limited_total{limit="rule",rule="tunnel",workload="local"} 1`,
		`credgate_rate_limited_total{limit="workload",rule="free",workload="local"} 1`,
		`credgate_rate_limit_backend{backend="local"} 1`,
		`credgate_rate_limit_backend{backend="redis"} 0`,
		`credgate_refusals_total{code="rate_limited"} 3`,
	} {
		if !strings.Contains(body, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	waitFor(t, 5*time.Second, "three rate_limited audit lines", func() bool {
		return strings.Count(tg.audit.String(), `"decision":"deny","code":"rate_limited"`) == 3
	})
	for _, line := range strings.Split(tg.audit.String(), "\n") {
		if strings.Contains(line, "rate_limited") && !strings.Contains(line, `"status":429`) {
			t.Errorf("audit line without status 429: %s", line)
		}
	}
}

// laterRefusalPolicy has rule limits of one request (per 100 s) on rules
// whose requests are refused after the limits admitted them: a
// destination that resolves to a loopback address without allow_private,
// and a credential whose environment variable is not set.
const laterRefusalPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
  public:
    hosts: [public.origin.test]
credentials:
  unset:
    provider: static
    env: CREDGATE_GATEWAY_TEST_UNSET_RATELIMIT
rules:
  - name: public
    from: local
    to: public
    action: tunnel
    rate_limit: {rps: 0.01, burst: 1}
  - name: unset
    from: local
    to: api
    paths: [/unset/*]
    inject: {credential: unset, as: bearer}
    rate_limit: {rps: 0.01, burst: 1}
default: deny
`

// TestRateLimitCountsLaterRefusals: the limits count what they admit
// (docs/policy.md "What counts"), so a request the policy and the limits
// admitted and a later stage refused — its destination's address is a
// loopback one (private_address), its credential is not configured —
// used its room, and the next one is refused rate_limited; a request the
// policy refuses (path_not_allowed) charges nothing.
func TestRateLimitCountsLaterRefusals(t *testing.T) {
	pki := newTestPKI(t, apiHost, "public.origin.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(laterRefusalPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n  \"public.origin.test:443\": %q\n", tg.origin.addr, tg.origin.addr))
	c := tg.client(t, false)
	type answer struct {
		Status int
		Reason string
	}
	get := func(url string) answer {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			// A refused CONNECT: the transport's error names the status.
			for _, a := range []answer{{403, codePrivateAddress}, {429, codeRateLimited}} {
				if strings.Contains(err.Error(), http.StatusText(a.Status)) {
					return answer{a.Status, "connect " + http.StatusText(a.Status)}
				}
			}
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return answer{resp.StatusCode, resp.Header.Get(ReasonHeader)}
	}
	got := []answer{
		get("https://" + apiHost + "/nope"), get("https://" + apiHost + "/nope"), // policy refusals: no limit charged
		get("https://public.origin.test/a"), get("https://public.origin.test/b"),
		get("https://" + apiHost + "/unset/a"), get("https://" + apiHost + "/unset/b"),
	}
	want := []answer{
		{403, "path_not_allowed"}, {403, "path_not_allowed"},
		{403, "connect " + http.StatusText(http.StatusForbidden)}, {429, "connect " + http.StatusText(http.StatusTooManyRequests)},
		{502, codeCredentialNotConfigured}, {429, codeRateLimited},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
	waitFor(t, 5*time.Second, "the audit lines", func() bool {
		a := tg.audit.String()
		return strings.Contains(a, `"host":"public.origin.test",`) && strings.Contains(a, `"code":"private_address"`) &&
			strings.Count(a, `"code":"rate_limited"`) == 2
	})
	if n := len(tg.origin.all()); n != 0 {
		t.Errorf("the origin saw %d requests, want none", n)
	}
}

func metricsText(t *testing.T, tg *testGateway) string {
	t.Helper()
	resp, err := http.Get("http://" + tg.gw.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// aclCommands is the least a credgate ACL user needs (docs/scaling.md):
// connection set-up, the shared cache's, the rate limiter's and the kill
// switch's commands, and those the scripts call.
var aclCommands = []string{"-@all", "+@connection", "+get", "+set", "+del", "+exists", "+scan", "+pexpire", "+time",
	"+evalsha", "+eval", "+publish", "+subscribe", "+hget", "+hgetall", "+hset", "+incr"}

// TestRateLimitsSharedACL runs a gateway with cache.redis as an ACL user
// restricted to the documented commands, keys and channel: the shared
// cache and the shared rate limits work, without one Redis error.
func TestRateLimitsSharedACL(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	args := append([]any{"ACL", "SETUSER", "credgate", "on", ">acl-pw", "resetkeys", "~rl-test:*", "resetchannels", "&rl-test:*"}, toAny(aclCommands)...)
	if err := srv.Client().Do(ctx, args...).Err(); err != nil {
		t.Fatal(err)
	}
	pki := newTestPKI(t, apiHost, tunnelHost)
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(rateLimitTestPolicy))
	writeFile(t, tg.dir, "redis-pw", []byte("acl-pw\n"))
	key := testRedisKeyEnv(t)
	tg.run(t, fmt.Sprintf(`resolve:
  "api.origin.test:443": %q
cache:
  redis:
    addrs: [%q]
    username: credgate
    password_file: redis-pw
    namespace: rl-test
    encryption_keys: [{id: %s, env: %s}]
`, tg.origin.addr, srv.Addr(), key.ID, key.Env))
	c := tg.client(t, false)
	var got []int
	for _, p := range []string{"/a", "/b", "/c"} {
		resp, err := c.Get("https://" + apiHost + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got = append(got, resp.StatusCode)
	}
	if !cmp.Equal(got, []int{200, 200, 429}) {
		t.Errorf("statuses %v, want the rule's burst of 2 then 429", got)
	}
	body := metricsText(t, tg)
	for _, w := range []string{
		`credgate_rate_limit_backend{backend="redis"} 1`,
		`credgate_redis_up 1`,
		`credgate_shared_cache_total{result="miss"} 1`,
	} {
		if !strings.Contains(body, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	if strings.Contains(body, "credgate_redis_errors_total{") {
		t.Errorf("Redis errors with the documented ACL:\n%s", grepLines(body, "credgate_redis_errors_total"))
	}
	for _, l := range strings.Split(grepLines(body, "credgate_switch_sync_errors_total{"), "\n") {
		if l != "" && !strings.HasSuffix(l, " 0") {
			t.Errorf("kill switch errors with the documented ACL: %s", l)
		}
	}
	keys, err := srv.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := keys["rl-test:rl:{local}:r:api"]; !ok {
		names := slices.Sorted(maps.Keys(keys))
		t.Errorf("no rate limit key for rule api in Redis; keys: %q", names)
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestRateLimitReload: a policy with a bad rate_limit is rejected and the
// limits in force stay; a good one changes the limit from the next request
// and keeps what the limit has counted (the key is the rule's name).
func TestRateLimitReload(t *testing.T) {
	pki := newTestPKI(t, apiHost)
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	pol := func(limit string) []byte {
		return []byte(`workloads:
  local: {cidrs: [127.0.0.1/32]}
destinations:
  api: {hosts: [api.origin.test], allow_private: true}
credentials:
  token: {provider: static, env: CREDGATE_GATEWAY_TEST_TOKEN}
rules:
  - name: api
    from: local
    to: api
    inject: {credential: token, as: bearer}
    rate_limit: ` + limit + `
default: deny
`)
	}
	writeFile(t, tg.dir, "policy.yaml", pol("{rps: 0.01, burst: 2}"))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", tg.origin.addr))
	c := tg.client(t, false)
	status := func() int {
		t.Helper()
		resp, err := c.Get("https://" + apiHost + "/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var got []int
	got = append(got, status(), status())
	writeFile(t, tg.dir, "policy.yaml", pol("{rps: 0, burst: 2}"))
	if err := tg.gw.ReloadPolicy(context.Background()); err == nil || !strings.Contains(err.Error(), "rps") {
		t.Errorf("reload with rps 0: %v, want a rate_limit error", err)
	}
	got = append(got, status()) // the old limit, still exhausted
	writeFile(t, tg.dir, "policy.yaml", pol("{rps: 0.01, burst: 3}"))
	if err := tg.gw.ReloadPolicy(context.Background()); err != nil {
		t.Fatalf("reload with burst 3: %v", err)
	}
	// Two of the three are used: one more, then refused.
	got = append(got, status(), status())
	if want := []int{200, 200, 429, 200, 429}; !cmp.Equal(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
}
