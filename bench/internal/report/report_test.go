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

func TestFloorRows(t *testing.T) {
	ms := time.Millisecond
	res := &Results{
		KeepAlive: &Run{
			Results:       []loadgen.Result{{Target: Direct, RPS: 26000}, {Target: Floor, RPS: 12000}, {Target: Goproxy, RPS: 8000}, {Target: Credgate, RPS: 8160}},
			CPUPerRequest: map[string]time.Duration{Floor: 70 * time.Microsecond, Goproxy: 116 * time.Microsecond, Credgate: 117 * time.Microsecond},
		},
		NewConn: &Run{Results: []loadgen.Result{{Target: Floor, RPS: 1000}, {Target: Goproxy, RPS: 800}}},
		// No goproxy: no row.
		NewConnResume: &Run{Results: []loadgen.Result{{Target: Floor, RPS: 1000}, {Target: Credgate, RPS: 900}}},
		BigBody: &BigBody{Bytes: 1 << 30, Rows: []BigBodyRow{
			{Target: Direct, Direction: Upload, Transfers: []loadgen.Transfer{{Bytes: 1 << 30, Elapsed: time.Second}}},
			{Target: Floor, Direction: Upload, Transfers: []loadgen.Transfer{{Bytes: 1 << 30, Elapsed: 2 * time.Second}}, RSSStart: 1, ProxyCPU: 1800 * ms},
			{Target: Goproxy, Direction: Upload, Transfers: []loadgen.Transfer{{Bytes: 1 << 30, Elapsed: 2 * time.Second}}, RSSStart: 1, ProxyCPU: 1900 * ms},
			{Target: Credgate, Direction: Upload, Transfers: []loadgen.Transfer{{Bytes: 1 << 30, Elapsed: 2500 * ms}}, RSSStart: 1, ProxyCPU: 2 * time.Second},
			// No floor download: no row.
			{Target: Direct, Direction: Download, Transfers: []loadgen.Transfer{{Bytes: 1 << 30, Elapsed: time.Second}}},
		}},
		FixedRate: &Run{Results: []loadgen.Result{
			{Target: Direct, Requests: 10, P50: 1 * ms},
			{Target: Floor, Requests: 10, P50: 1*ms + 150*time.Microsecond},
			{Target: Goproxy, Requests: 10, P50: 1*ms + 300*time.Microsecond},
			{Target: Credgate, Requests: 10, P50: 1*ms + 294*time.Microsecond},
		}},
	}
	want := []FloorRow{
		{Scenario: "keep-alive rps", Want: "≥ 1.15× goproxy", Floor: "1.50× goproxy", Credgate: "1.02× goproxy", VsFloor: "0.68× its rps", CPU: "0.070 ms · 0.116 ms · 0.117 ms", Reachable: true},
		{Scenario: "new-connection rps, full handshake", Want: "≥ 1.50× goproxy", Floor: "1.25× goproxy", Credgate: "–", VsFloor: "–", CPU: "– · – · –"},
		{Scenario: "added p50 at fixed rate", Want: "≤ 0.8× goproxy's added p50", Floor: "0.50× goproxy's (0.150 ms vs 0.300 ms)", Credgate: "0.98× goproxy's (0.294 ms)", VsFloor: "1.96× its added p50", CPU: "– · – · –", Reachable: true},
		{Scenario: "1 GiB upload throughput", Want: "≥ 0.90× direct", Floor: "0.50× direct", Credgate: "0.40× direct", VsFloor: "0.80× its throughput", CPU: "1.80 s · 1.90 s · 2.00 s per GiB"},
	}
	if diff := cmp.Diff(want, res.FloorRows()); diff != "" {
		t.Errorf("FloorRows (-want +got):\n%s", diff)
	}
	var b strings.Builder
	res.Write(&b)
	for _, s := range []string{
		"## The floor: the least any intercepting proxy does here (issue 20)",
		"| keep-alive rps | ≥ 1.15× goproxy | 1.50× goproxy | 1.02× goproxy | 0.68× its rps | 0.070 ms · 0.116 ms · 0.117 ms | within the floor's reach |",
		"| new-connection rps, full handshake | ≥ 1.50× goproxy | 1.25× goproxy | – | – | – · – · – | beyond the floor: no proxy reaches it in this run |",
		// The verdicts are unchanged: credgate against goproxy.
		"| keep-alive rps | ≥ 1.15× goproxy | 1.02× | MISS |",
	} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, b.String())
		}
	}

	b.Reset()
	res = &Results{KeepAlive: &Run{Results: []loadgen.Result{{Target: Goproxy, RPS: 8000}, {Target: Credgate, RPS: 8160}}}}
	res.Write(&b)
	if rows := res.FloorRows(); len(rows) != 0 || strings.Contains(b.String(), "The floor") {
		t.Errorf("floor rows without a floor: %+v", rows)
	}
}
