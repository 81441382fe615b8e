//go:build linux

package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func newTestFaultEnv() *faultEnv {
	return &faultEnv{ends: map[string]ended{}, recover: map[string]time.Duration{}}
}

// A 503 of a source's rule is expected during a fault of that source and
// within the recovery bound after it, not during another source's fault;
// a 401 never is.
func TestFaultExpected(t *testing.T) {
	fe := newTestFaultEnv()
	fe.current = fault{name: "oauth2 token endpoint 503", source: "oauth2"}
	for _, tt := range []struct {
		kind, class string
		want        bool
	}{
		{"oauth2", "status 503", true},
		{"oauth2", "status 401", false},
		{"vault", "status 503", false},
		{"h1", "status 503", false},
		{"reset", "eof", true},
		{"reset", "complete", false},
	} {
		if got := fe.expected(tt.kind, tt.class); got != tt.want {
			t.Errorf("during an oauth2 fault: expected(%q, %q) = %v, want %v", tt.kind, tt.class, got, tt.want)
		}
	}
	fe.current = fault{}
	fe.ends["vault down"] = ended{source: "vault", at: time.Now()}
	if !fe.expected("vault", "status 503") || fe.expected("oauth2", "status 503") {
		t.Error("just after a vault fault: want a vault 503 expected and an oauth2 503 not")
	}
	fe.ends["vault down"] = ended{source: "vault", at: time.Now().Add(-recoveryBound - time.Second)}
	if fe.expected("vault", "status 503") {
		t.Error("a vault 503 beyond the recovery bound is expected")
	}
}

// The first success of a source's rule after its fault ended is that
// fault's recovery; a fault never recovered fails the report, unless the
// run ended within the bound after it.
func TestFaultRecoveryReport(t *testing.T) {
	fe := newTestFaultEnv()
	fe.ends["vault down"] = ended{source: "vault", at: time.Now().Add(-2 * time.Second)}
	fe.ends["oauth2 token endpoint 503"] = ended{source: "oauth2", at: time.Now().Add(-time.Second)}
	fe.sourceOK("vault")
	if len(fe.recover) != 1 || len(fe.ends) != 1 {
		t.Fatalf("after a vault success: recover %v, ends %v; want the vault fault recovered, the oauth2 one not", fe.recover, fe.ends)
	}
	fe.stopped = time.Now()
	var out bytes.Buffer
	if !fe.report(&out) || !strings.Contains(out.String(), "the run ended before its recovery") {
		t.Errorf("a fault that ended just before the run: report failed or did not say so:\n%s", out.String())
	}
	fe.stopped = time.Now().Add(recoveryBound)
	out.Reset()
	if fe.report(&out) || !strings.Contains(out.String(), "oauth2 token endpoint 503: never recovered") {
		t.Errorf("a fault never recovered: report passed or did not say so:\n%s", out.String())
	}
	fe = newTestFaultEnv()
	fe.recover["vault sealed@x"] = recoveryBound + time.Second
	if fe.report(&out) {
		t.Error("a recovery beyond the bound passed")
	}
}

func TestFilterFaults(t *testing.T) {
	all := []fault{{name: "redis down"}, {name: "vault down"}, {name: "oauth2 token endpoint 503"}, {name: "redis failover (Sentinel)"}}
	names := func(fs []fault) string {
		var n []string
		for _, f := range fs {
			n = append(n, f.name)
		}
		return strings.Join(n, "; ")
	}
	for _, tt := range []struct{ only, want string }{
		{"", names(all)},
		{"oauth2", "oauth2 token endpoint 503"},
		{"oauth2, failover", "oauth2 token endpoint 503; redis failover (Sentinel)"},
		{"nothing", names(all)},
	} {
		if got := names(filterFaults(all, tt.only)); got != tt.want {
			t.Errorf("filterFaults(%q) = %s, want %s", tt.only, got, tt.want)
		}
	}
}

// After each Redis fault, the first sample a recovery bound later must
// read credgate_redis_up 1; a fault without such a sample is not checked.
func TestRedisRecovered(t *testing.T) {
	samples := []sample{
		{at: 10 * time.Second, redisUp: 1},
		{at: 20 * time.Second, redisUp: 1},
		{at: 30 * time.Second, redisUp: 0},
		{at: 40 * time.Second, redisUp: 1},
	}
	events := []faultEvent{
		{name: "redis down", start: 5 * time.Second, end: 8 * time.Second},
		{name: "vault down", start: 10 * time.Second, end: 15 * time.Second},
		{name: "redis failover (SENTINEL FAILOVER)", start: 15 * time.Second, end: 17 * time.Second},
		{name: "redis resets", start: 35 * time.Second, end: 38 * time.Second},
	}
	checked, late := redisRecovered(events, samples)
	if checked != 2 || len(late) != 1 || !strings.Contains(late[0], "SENTINEL FAILOVER") {
		t.Errorf("redisRecovered = %d, %q; want 2 checked, the failover late", checked, late)
	}
	if checked, late := redisRecovered(events[:1], []sample{{at: 30 * time.Second, redisUp: -1}}); checked != 0 || late != nil {
		t.Errorf("without cache.redis: %d, %q; want nothing checked", checked, late)
	}
}

// readMetrics takes goroutines, fds, credgate_redis_up and the sum of
// credgate_redis_errors_total over its labels.
func TestReadMetrics(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "# HELP x\ngo_goroutines 42\nprocess_open_fds 17\ncredgate_redis_up 1\n"+
			"credgate_redis_errors_total{component=\"cache\"} 3\ncredgate_redis_errors_total{component=\"killswitch\"} 2\ncredgate_redis_errors_totally 9\n")
	}))
	defer srv.Close()
	m, err := readMetrics(srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if m != (metricsRead{goroutines: 42, fds: 17, redisUp: 1, redisErrors: 5}) {
		t.Errorf("readMetrics = %+v", m)
	}
}
