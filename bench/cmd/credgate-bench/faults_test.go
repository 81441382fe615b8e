package main

import (
	"bytes"
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
