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
		NewConn:   &Run{Results: []loadgen.Result{{Target: Goproxy, RPS: 100}, {Target: Credgate, RPS: 80}}},
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
	for _, s := range []string{"credgate/goproxy **0.95×** (target ≥ 0.90×: PASS)", "credgate/goproxy **0.80×** (target ≥ 0.90×: MISS)", "credgate adds p50 0.300 ms", "credgate-2fa/credgate keep-alive rps **0.95×** (target ≥ 0.90×: PASS)"} {
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
