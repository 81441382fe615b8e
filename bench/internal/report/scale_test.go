package report

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/bench/internal/loadgen"
)

func TestScaleVerdicts(t *testing.T) {
	gib := loadgen.Transfer{Bytes: 1 << 30, Elapsed: 2 * time.Second} // 512 MiB/s
	res := &Results{
		Titles: map[string]string{"h2_streams": "H2", "bigbody": "Big", "idle10k": "Idle"},
		H2Streams: &H2Streams{Streams: 100, Run: &Run{Results: []loadgen.Result{
			{Target: Direct, RPS: 9000, Conns: 1},
			{Target: Goproxy, RPS: 2000, Conns: 1},
			{Target: Credgate, RPS: 2100, Conns: 1},
			{Target: Goproxy + H1Suffix, RPS: 3000},
		}}},
		BigBody: &BigBody{Bytes: 1 << 30, Rows: []BigBodyRow{
			{Target: Direct, Direction: Upload, Transfers: []loadgen.Transfer{gib}},
			{Target: Direct, Direction: Download, Transfers: []loadgen.Transfer{gib}},
			{Target: Credgate, Direction: Upload, Transfers: []loadgen.Transfer{{Bytes: 1 << 30, Elapsed: 4 * time.Second}}, RSSStart: 40 << 20, RSSPeak: 44 << 20, RSSEnd: 41 << 20},
			{Target: Credgate, Direction: Download, Transfers: []loadgen.Transfer{{Bytes: 1 << 30, Elapsed: 2 * time.Second}}, RSSStart: 40 << 20, RSSPeak: 60 << 20, RSSEnd: 41 << 20},
		}},
		Idle: &Idle{Clients: 10000, Active: 2000, Base: 100, PerClientRPS: 0.75, WantPerClientRPS: 50, Rows: []IdleRow{{
			Target: Credgate, Opened: 10000, RSSBefore: 40 << 20, RSSIdle: 350 << 20,
			BaseRun:   loadgen.Result{Target: Credgate, Requests: 750, P99: time.Millisecond},
			ActiveRun: loadgen.Result{Target: Credgate, Requests: 15000, P99: 4 * time.Millisecond},
		}}},
	}
	want := []Verdict{
		{Name: "one HTTP/2 client, 100 concurrent streams", Want: "≥ 1.00× goproxy (the same h2 client)", Got: "1.05×", Pass: true},
		{Name: "1 GiB upload throughput", Want: "≥ 0.90× direct", Got: "0.50× (256 MiB/s vs 512 MiB/s)"},
		{Name: "1 GiB download throughput", Want: "≥ 0.90× direct", Got: "1.00× (512 MiB/s vs 512 MiB/s)", Pass: true},
		{Name: "gateway RSS during the 1 GiB transfers", Want: "flat: peak − start ≤ 16.0 MiB", Got: "+20.0 MiB (download)"},
		{Name: "gateway RSS with 10,000 idle keep-alive clients", Want: "≤ 400.0 MiB", Got: "350.0 MiB", Pass: true},
		{Name: "p99, 2,000 active clients at 0.75 rps each", Want: "≤ 3× the p99 of 100 clients", Got: "4.00× (4.000 ms vs 1.000 ms)"},
	}
	if diff := cmp.Diff(want, res.Verdicts20()[4:]); diff != "" {
		t.Errorf("Verdicts20 (-want +got):\n%s", diff)
	}
	var b strings.Builder
	res.Write(&b)
	for _, s := range []string{
		"| credgate | h2, 100 streams | 1 | 2100 |",
		"| goproxy-h1 | HTTP/1.1 | 100 | 3000 |",
		"credgate/goproxy: **1.05×**",
		"| credgate | upload | 256 MiB/s | 256 MiB/s in 4.00 s | 0.50× |",
		"+20.0 MiB",
		"| credgate | 10,000 | 0.0 s | – | 40.0 MiB | 350.0 MiB | 31.7 KiB |",
		"| credgate | 2,000 | 0.75 rps | 1500 rps |",
		"4.00× MISS",
	} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, b.String())
		}
	}
}

// Without goproxy's h2 row, credgate's h2 client is compared with goproxy
// over HTTP/1.1, and the verdict says so; scenarios that did not run are
// not measured.
func TestScaleVerdictsFallback(t *testing.T) {
	h := &H2Streams{Streams: 100, Run: &Run{Results: []loadgen.Result{
		{Target: Credgate, RPS: 2000, Conns: 1},
		{Target: Goproxy + H1Suffix, RPS: 2500},
	}}}
	v := h.verdict()
	if v.Absent || v.Pass || !strings.Contains(v.Want, "HTTP/1.1 with 100 connections") || v.Got != "0.80×" {
		t.Errorf("fallback verdict: %+v", v)
	}
	for _, v := range (&Results{}).Verdicts20()[4:] {
		if !v.Absent {
			t.Errorf("%s: not absent: %+v", v.Name, v)
		}
	}
	short := &Idle{Clients: 10000, Rows: []IdleRow{{Target: Credgate, Opened: 10000, RSSIdle: 300 << 20, FDs: 9800, FDsBefore: 40}}}
	if v := short.verdicts()[0]; v.Got != "300.0 MiB (only 9,760 held)" || !v.Pass {
		t.Errorf("RSS verdict with clients closed while opening: %+v", v)
	}
	if got := Count(1234567); got != "1,234,567" {
		t.Errorf("count = %q", got)
	}
}
