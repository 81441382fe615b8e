package audit

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestReadRecords: request lines, in order, with their positions; the
// lines that are not JSON (cut short) are skipped and counted, the first
// named.
func TestReadRecords(t *testing.T) {
	dir := t.TempDir()
	lines := `{"time":"2026-12-02T06:00:00.000Z","workload":"billing","factors":[],"source":"10.1.2.3","method":"GET","scheme":"https","host":"api.stripe.com","port":443,"path":"/v1/charges","rule":"charges","decision":"inject","code":"","credential":"stripe","status":200,"seq":1,"replica":"r","prev":"00"}
{"type":"checkpoint","time":"2026-12-02T06:00:01.000Z","seq":2}
{"time":"2026-12-02T06:00:02.000Z","workload":"admin","method":"POST","scheme":"http","host":"admin","path":"/admin/v1/disable","decision":"admin"}
{"time":"2026-12-02T06:00:02.500Z","workload":"billing","sour

{"time":"2026-12-02T06:00:03.000Z","workload":"anonymous","source":"10.9.9.9","method":"CONNECT","scheme":"https","host":"x.test","port":443,"path":"","rule":"","decision":"would_deny","code":"no_rule","status":200}
{"time":"2026-12-02T06:00:04.000Z","workload":"cut`
	f := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(f, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []Record
	var cut Cut
	if err := ReadRecords([]string{f}, &cut, func(r Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []Record{
		{Pos: Pos{File: f, Line: 1}, Time: time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC), Workload: "billing", Source: "10.1.2.3", Method: "GET", Scheme: "https",
			Host: "api.stripe.com", Port: 443, Path: "/v1/charges", Rule: "charges", Decision: "inject", Credential: "stripe", Status: 200},
		{Pos: Pos{File: f, Line: 6}, Time: time.Date(2026, 12, 2, 6, 0, 3, 0, time.UTC), Workload: "anonymous", Source: "10.9.9.9", Method: "CONNECT", Scheme: "https",
			Host: "x.test", Port: 443, Decision: "would_deny", Code: "no_rule", Status: 200},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("ReadRecords (-want +got):\n%s", diff)
	}
	// The line cut in the middle (a crash, then the gateway started
	// again) and the last, without its newline; not the blank line.
	if wantCut := (Cut{Lines: 2, First: Pos{File: f, Line: 4}}); cut != wantCut {
		t.Errorf("cut %+v, want %+v", cut, wantCut)
	}
	if got, want := cut.String(), "2 lines skipped: not JSON (cut short?) — "+f+":4 of the first"; got != want {
		t.Errorf("cut.String() = %q, want %q", got, want)
	}
	if (Cut{}).String() != "" {
		t.Error("no line cut: the summary is not empty")
	}
	if err := ReadRecords([]string{filepath.Join(dir, "missing")}, nil, func(Record) error { return nil }); err == nil {
		t.Error("ReadRecords of a missing file: no error")
	}
}
