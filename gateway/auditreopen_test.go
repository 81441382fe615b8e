package gateway

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/audit"
)

// TestAuditFileReopenedMetricAndSIGHUP: with audit.output a file, a file
// renamed under the gateway (an external logrotate) is reopened at the
// next write, ReopenAuditFile (SIGHUP) reopens it at once, and
// credgate_audit_reopens_total counts both by reason; the renamed and the
// new files verify as one chain.
func TestAuditFileReopenedMetricAndSIGHUP(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	a, err := newAuditor(t.Context(), Audit{Output: path}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics(func() float64 { return 0 })
	m.auditWriter(a.w, a.file, a.otlp)
	g := &Gateway{audit: a}
	contains := func(file, s string) func() bool {
		return func() bool { b, _ := os.ReadFile(file); return strings.Contains(string(b), s) }
	}
	a.write(&event{Path: "/one"})
	waitFor(t, 5*time.Second, "the first line in the file", contains(path, `"/one"`))
	if err := os.Rename(path, path+".1"); err != nil { // logrotate, nocreate
		t.Fatal(err)
	}
	a.write(&event{Path: "/two"})
	waitFor(t, 5*time.Second, "the second line in a new file at the path", contains(path, `"/two"`))
	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	if err := g.ReopenAuditFile(); err != nil {
		t.Fatal(err)
	}
	a.write(&event{Path: "/three"})
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"removed": 1, "replaced": 0, "truncated": 0, "signal": 1}
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "credgate_audit_reopens_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			got[s.GetLabel()[0].GetValue()] = s.GetCounter().GetValue()
		}
	}
	for reason, n := range want {
		if got[reason] != n {
			t.Errorf("credgate_audit_reopens_total{reason=%q} = %v, want %v (all: %v)", reason, got[reason], n, got)
		}
	}
	rep, err := audit.Verify([]string{path + ".1", path + ".2", path}, audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Chains) != 1 || rep.Chains[0].Files != 3 || rep.Chains[0].LastSeq != 3 {
		var b strings.Builder
		rep.WriteText(&b)
		t.Errorf("the three files do not verify as one chain of 3 lines:\n%s", b.String())
	}
}

// TestReopenAuditFileWithoutFile: ReopenAuditFile does nothing when
// audit.output is not a file (stdout, stderr).
func TestReopenAuditFileWithoutFile(t *testing.T) {
	var buf lockedBuffer
	a, err := newAuditor(t.Context(), Audit{}, &buf, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := (&Gateway{audit: a}).ReopenAuditFile(); err != nil {
		t.Errorf("ReopenAuditFile without a file: %v", err)
	}
}
