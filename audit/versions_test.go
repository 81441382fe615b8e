package audit

import (
	"strings"
	"testing"
)

// TestVerifyNewerLines is the class "an audit file holds lines another
// version of credgate wrote" (a rolling upgrade writes both into one
// pipeline; a rollback appends older lines after newer ones): an event
// line with fields this version does not know verifies (lines are hashed
// as written, whatever they hold); a line of the writer's own that this
// version does not write as it is (a new type, a checkpoint with a new
// field) is a problem that names both causes, edited or written by a
// newer credgate, and the fix (verify with that version), never skipped;
// a truncated last line is a warning, as a crash's.
func TestVerifyNewerLines(t *testing.T) {
	const replica = "r1"
	tests := []struct {
		name string
		// add returns the lines to append after the 3 lines of the run
		// (the first with seq 4 and prev the hash of line 3).
		add func(prev [32]byte) []string
		// ok: the report is OK; else want is in a problem's message.
		ok   bool
		want string
		// warn is in a warning's message.
		warn string
	}{
		{"current", func([32]byte) []string { return nil }, true, "", ""},
		{"event line with an unknown field", func(prev [32]byte) []string {
			return []string{chained(`{"time":"2026-12-01T05:00:01.000Z","decision":"allow","posture_v2":{"x":1}}`, 4, replica, prev)}
		}, true, "", ""},
		{"event line with an unknown enum value", func(prev [32]byte) []string {
			return []string{chained(`{"time":"2026-12-01T05:00:01.000Z","decision":"would_quarantine"}`, 4, replica, prev)}
		}, true, "", ""},
		{"line of a type this version does not write", func(prev [32]byte) []string {
			return []string{chained(`{"type":"epoch","time":"2026-12-01T05:00:01.000Z"}`, 4, replica, prev)}
		}, false, "written by a newer credgate (then verify with that version", ""},
		{"checkpoint with a field this version does not write", func(prev [32]byte) []string {
			return []string{chained(`{"type":"checkpoint","time":"2026-12-01T05:00:01.000Z","head_seq":3,"key_id":"0011223344556677","sig":"AA","alg":"ed25519"}`, 4, replica, prev)}
		}, false, "written by a newer credgate (then verify with that version", ""},
		{"unmarked line (no chain fields)", func([32]byte) []string {
			return []string{`{"time":"2026-12-01T05:00:01.000Z","decision":"allow"}`}
		}, false, "not written by a chaining writer", ""},
		{"truncated last line", func(prev [32]byte) []string {
			l := chained(`{"time":"2026-12-01T05:00:01.000Z","decision":"allow"}`, 4, replica, prev)
			return []string{l[:len(l)/2]}
		}, true, "", "cut short by a crash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := writeRun(t, t.TempDir(), replica, nil, 3)
			l := readLog(t, files)
			prev := hashOf(l.line(t, replica, 3))
			last := len(l.lines) - 1
			for _, s := range tt.add(prev) {
				l.lines[last] = append(l.lines[last], s+"\n")
			}
			if tt.name == "truncated last line" {
				ll := l.lines[last]
				ll[len(ll)-1] = strings.TrimSuffix(ll[len(ll)-1], "\n")
			}
			l.write(t)
			rep, err := Verify(files, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var msgs []string
			for _, p := range rep.Problems {
				msgs = append(msgs, p.String())
			}
			if rep.OK() != tt.ok {
				t.Fatalf("OK = %v, want %v; problems: %s", rep.OK(), tt.ok, strings.Join(msgs, "; "))
			}
			if tt.want != "" && !strings.Contains(strings.Join(msgs, "\n"), tt.want) {
				t.Errorf("problems %q do not say %q", msgs, tt.want)
			}
			if tt.warn != "" {
				var ws []string
				for _, w := range rep.Warnings {
					ws = append(ws, w.String())
				}
				if !strings.Contains(strings.Join(ws, "\n"), tt.warn) {
					t.Errorf("warnings %q do not say %q", ws, tt.warn)
				}
			}
		})
	}
}
