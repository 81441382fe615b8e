package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
