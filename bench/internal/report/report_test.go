package report

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/bench/internal/loadgen"
)

func TestVerdicts(t *testing.T) {
	res := &Results{
		KeepAlive: &Run{Results: []loadgen.Result{{Target: Direct, RPS: 1000}, {Target: Goproxy, RPS: 400}, {Target: Credgate, RPS: 380}, {Target: Credgate2FA, RPS: 361}}},
		NewConn: &Run{Results: []loadgen.Result{{Target: Goproxy, RPS: 100}, {Target: Credgate, RPS: 80}},
			ClientCPUPerRequest: map[string]time.Duration{Goproxy: 900 * time.Microsecond, Credgate: 820 * time.Microsecond}},
		FixedRate: &Run{Results: []loadgen.Result{
			{Target: Direct, Requests: 10, P50: 100 * time.Microsecond},
			{Target: Credgate, Requests: 10, P50: 400 * time.Microsecond},
		}},
		Memory: []Memory{{Target: Credgate, Idle: 10 << 20, Loaded: 40 << 20, Conns: 1000}},
	}
	want := []Verdict{
		{Name: "keep-alive rps", Want: "≥ 0.90× goproxy", Got: "0.95×", Pass: true},
		{Name: "new-connection rps", Want: "≥ 0.90× goproxy", Got: "0.80×"},
		{Name: "keep-alive rps, two factors (issue 3)", Want: "≥ 0.90× credgate static rule", Got: "0.95×", Pass: true},
		{Name: "added p50 at fixed rate", Want: "≤ 0.350 ms over direct", Got: "0.300 ms", Pass: true},
		{Name: "RSS with idle connections", Want: "≤ 64.0 MiB", Got: "40.0 MiB (1000 conns)", Pass: true},
	}
	if diff := cmp.Diff(want, res.Verdicts()); diff != "" {
		t.Errorf("Verdicts (-want +got):\n%s", diff)
	}
	if got := res.Memory[0].PerConn(); got != 30<<20/1000 {
		t.Errorf("PerConn = %d", got)
	}

	var b strings.Builder
	res.Write(&b)
	for _, s := range []string{"credgate/goproxy **0.95×** (target ≥ 0.90×: PASS)", "credgate/goproxy **0.80×** (target ≥ 0.90×: MISS)", "credgate adds p50 0.300 ms", "credgate-2fa/credgate keep-alive rps **0.95×** (target ≥ 0.90×: PASS)", "| full handshake every time | 0.80× | ≥ 1.50× | MISS | – | – | – | 0.900 ms | 0.820 ms |"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, b.String())
		}
	}
}

func TestVerdictsAbsent(t *testing.T) {
	res := &Results{KeepAlive: &Run{Results: []loadgen.Result{{Target: Direct, RPS: 1000}}}}
	for _, v := range res.Verdicts() {
		if !v.Absent {
			t.Errorf("%s: not absent: %+v", v.Name, v)
		}
	}
}

func TestRedisVerdicts(t *testing.T) {
	res := &Results{
		KeepAlive: &Run{
			Results:             []loadgen.Result{{Target: Credgate, RPS: 1000}, {Target: CredgateRedis, RPS: 970}, {Target: CredgateRedisRL, RPS: 800}},
			CPUPerRequest:       map[string]time.Duration{Credgate: 80 * time.Microsecond, CredgateRedis: 84 * time.Microsecond, CredgateRedisRL: 95 * time.Microsecond},
			HelperCPUPerRequest: map[string]time.Duration{CredgateRedisRL: 20 * time.Microsecond},
		},
		FixedRate: &Run{Results: []loadgen.Result{
			{Target: CredgateRedis, Requests: 10, P50: 400 * time.Microsecond},
			{Target: CredgateRedisRL, Requests: 10, P50: 500 * time.Microsecond},
		}},
	}
	want := []Verdict{{Name: "keep-alive rps with cache.redis (L1 hits)", Want: "≥ 0.95× in memory", Got: "0.97×", Pass: true}}
	if diff := cmp.Diff(want, res.RedisVerdicts()); diff != "" {
		t.Errorf("RedisVerdicts (-want +got):\n%s", diff)
	}
	var b strings.Builder
	res.Write(&b)
	for _, s := range []string{
		"credgate-redis/credgate **0.97×** (target ≥ 0.95×: PASS)",
		"credgate-redis-rl/credgate-redis **0.82×**",
		"credgate-redis-rl adds p50 0.100 ms",
		"credgate-redis-rl 0.095 ms + redis-server 0.020 ms",
		"credgate-redis uses 1.05× the CPU of credgate per request",
		"| keep-alive rps with cache.redis (L1 hits) | ≥ 0.95× in memory | 0.97× | PASS |",
	} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, b.String())
		}
	}
	b.Reset()
	(&Results{KeepAlive: &Run{Results: []loadgen.Result{{Target: Credgate, RPS: 1000}}}}).Write(&b)
	if strings.Contains(b.String(), "issue 7") {
		t.Error("the issue 7 section is printed without its targets")
	}
}
