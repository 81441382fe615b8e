package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// copyLog copies files into a new temporary directory, keeping their
// names, and returns the copies in the same order.
func copyLog(t *testing.T, files []string) []string {
	t.Helper()
	dir := t.TempDir()
	var copies []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(c, data, 0o600); err != nil {
			t.Fatal(err)
		}
		copies = append(copies, c)
	}
	return copies
}

// deleteSeqs deletes the lines of replica with seq from..to.
func (l *logFiles) deleteSeqs(t *testing.T, replica string, from, to uint64) {
	t.Helper()
	for s := from; s <= to; s++ {
		fi, li := l.find(t, replica, s)
		l.lines[fi] = append(l.lines[fi][:li:li], l.lines[fi][li+1:]...)
	}
}

// firstSeqs returns the lowest seq of each replica in lines.
func firstSeqs(t *testing.T, lines []string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, s := range lines {
		var f struct {
			Seq     uint64 `json:"seq"`
			Replica string `json:"replica"`
		}
		if err := json.Unmarshal([]byte(s), &f); err != nil {
			t.Fatal(err)
		}
		if cur, ok := out[f.Replica]; !ok || f.Seq < cur {
			out[f.Replica] = f.Seq
		}
	}
	return out
}

// prevOf returns the prev field of the line of replica with seq.
func (l *logFiles) prevOf(t *testing.T, replica string, seq uint64) string {
	t.Helper()
	fi, li := l.find(t, replica, seq)
	var f struct {
		Prev string `json:"prev"`
	}
	if err := json.Unmarshal([]byte(l.lines[fi][li]), &f); err != nil {
		t.Fatal(err)
	}
	return f.Prev
}

// TestVerifyTruncation: a chained log whose head was cut (its first lines
// deleted, or its oldest rotated file left out) fails verification with
// `truncated`, naming where the chain starts, unless the operator anchors
// where the retained log legitimately starts (--start REPLICA=SEQ[:PREV],
// retention): then a cut beyond the anchor, a forged start line (prev not
// the recorded one) and an anchored replica with no line still fail.
// Deletions in the middle fail as `deleted`; a cut tail is caught only by
// --require-signed-tail, or, when it ends on a checkpoint, by the missing
// "closed by a final checkpoint" (the limit of what the files alone can
// prove). Before, every head cut was a warning and verify exited 0.
func TestVerifyTruncation(t *testing.T) {
	signer, pub := newKey(t)
	files := writeLog(t, t.TempDir(), signer, 40)
	if len(files) < 3 {
		t.Fatalf("want at least 3 files after rotation, got %v", files)
	}
	type want struct {
		Kind    string
		Replica string
	}
	for _, tc := range []struct {
		name string
		// cut changes the files (l.names may lose a file) and returns the
		// starts to pass to Verify.
		cut         func(t *testing.T, l *logFiles) map[string]Start
		requireTail bool
		want        []want
		// notFinal: the chain verifies but is not closed by a final checkpoint.
		notFinal string
	}{
		{name: "untouched", cut: func(*testing.T, *logFiles) map[string]Start { return nil }},
		{name: "head: first line of a", cut: func(t *testing.T, l *logFiles) map[string]Start {
			l.deleteSeqs(t, "gw-a", 1, 1)
			return nil
		}, want: []want{{KindTruncated, "gw-a"}}},
		{name: "head: first 6 lines of b, a checkpoint among them", cut: func(t *testing.T, l *logFiles) map[string]Start {
			l.deleteSeqs(t, "gw-b", 1, 6)
			return nil
		}, want: []want{{KindTruncated, "gw-b"}}},
		{name: "head: both replicas", cut: func(t *testing.T, l *logFiles) map[string]Start {
			l.deleteSeqs(t, "gw-a", 1, 3)
			l.deleteSeqs(t, "gw-b", 1, 2)
			return nil
		}, want: []want{{KindTruncated, "gw-a"}, {KindTruncated, "gw-b"}}},
		{name: "head: the oldest rotated file left out", cut: func(t *testing.T, l *logFiles) map[string]Start {
			l.names, l.lines = l.names[1:], l.lines[1:]
			return nil
		}, want: []want{{KindTruncated, "gw-a"}, {KindTruncated, "gw-b"}}},
		{name: "head: the oldest rotated file emptied", cut: func(t *testing.T, l *logFiles) map[string]Start {
			l.lines[0] = []string{}
			return nil
		}, want: []want{{KindEmpty, ""}, {KindTruncated, "gw-a"}, {KindTruncated, "gw-b"}}},
		{name: "middle: seq 20 of a", cut: func(t *testing.T, l *logFiles) map[string]Start {
			l.deleteSeqs(t, "gw-a", 20, 20)
			return nil
		}, want: []want{{KindDeleted, "gw-a"}}},
		{name: "middle: a whole rotated file left out", cut: func(t *testing.T, l *logFiles) map[string]Start {
			l.names = append(l.names[:1:1], l.names[2:]...)
			l.lines = append(l.lines[:1:1], l.lines[2:]...)
			return nil
		}, want: []want{{KindDeleted, "gw-a"}, {KindDeleted, "gw-b"}}},
		{name: "tail: last 3 lines of a (final checkpoint among them), --require-signed-tail", requireTail: true, cut: func(t *testing.T, l *logFiles) map[string]Start {
			last := lastSeq(t, l, "gw-a")
			from := last - 2
			if isCheckpoint(t, l, "gw-a", from-1) {
				from-- // the cut must not end on a checkpoint: the next case does
			}
			l.deleteSeqs(t, "gw-a", from, last)
			return nil
		}, want: []want{{KindUnsigned, "gw-a"}}},
		{name: "tail: cut back to a checkpoint", cut: func(t *testing.T, l *logFiles) map[string]Start {
			last := lastSeq(t, l, "gw-a")
			s := last - 1
			for !isCheckpoint(t, l, "gw-a", s) {
				s--
			}
			l.deleteSeqs(t, "gw-a", s+1, last)
			return nil
		}, notFinal: "gw-a"},
		{name: "rotation: oldest file deleted, --start for both", cut: func(t *testing.T, l *logFiles) map[string]Start {
			starts := map[string]Start{}
			for r, s := range firstSeqs(t, l.lines[1]) {
				starts[r] = Start{Seq: s, Prev: l.prevOf(t, r, s)}
			}
			l.names, l.lines = l.names[1:], l.lines[1:]
			return starts
		}},
		{name: "rotation: --start seq only", cut: func(t *testing.T, l *logFiles) map[string]Start {
			starts := map[string]Start{}
			for r, s := range firstSeqs(t, l.lines[1]) {
				starts[r] = Start{Seq: s}
			}
			l.names, l.lines = l.names[1:], l.lines[1:]
			return starts
		}},
		{name: "rotation: --start, all files given", cut: func(t *testing.T, l *logFiles) map[string]Start {
			return map[string]Start{"gw-a": {Seq: 7}, "gw-b": {Seq: 9}}
		}},
		{name: "rotation: one more line cut past --start", cut: func(t *testing.T, l *logFiles) map[string]Start {
			starts := map[string]Start{}
			for r, s := range firstSeqs(t, l.lines[1]) {
				starts[r] = Start{Seq: s, Prev: l.prevOf(t, r, s)}
			}
			l.names, l.lines = l.names[1:], l.lines[1:]
			l.deleteSeqs(t, "gw-b", starts["gw-b"].Seq, starts["gw-b"].Seq)
			return starts
		}, want: []want{{KindTruncated, "gw-b"}}},
		{name: "rotation: --start with a prev the first line does not carry", cut: func(t *testing.T, l *logFiles) map[string]Start {
			starts := map[string]Start{}
			for r, s := range firstSeqs(t, l.lines[1]) {
				starts[r] = Start{Seq: s, Prev: l.prevOf(t, r, s)}
			}
			st := starts["gw-a"]
			st.Prev = strings.Repeat("ab", 32)
			starts["gw-a"] = st
			l.names, l.lines = l.names[1:], l.lines[1:]
			return starts
		}, want: []want{{KindTruncated, "gw-a"}}},
		{name: "rotation: --start with a prev, all files given, line SEQ's prev not it", cut: func(t *testing.T, l *logFiles) map[string]Start {
			// Before, the anchor's prev was checked only when the chain
			// started at the anchor: one starting earlier skipped it.
			return map[string]Start{"gw-a": {Seq: 7, Prev: strings.Repeat("ab", 32)}, "gw-b": {Seq: 9, Prev: l.prevOf(t, "gw-b", 9)}}
		}, want: []want{{KindTruncated, "gw-a"}}},
		{name: "rotation: --start with a prev, the retained log replaced by a forged chain starting before it", cut: func(t *testing.T, l *logFiles) map[string]Start {
			starts := map[string]Start{}
			for r, s := range firstSeqs(t, l.lines[1]) {
				starts[r] = Start{Seq: s, Prev: l.prevOf(t, r, s)}
			}
			l.names, l.lines = l.names[1:], l.lines[1:]
			// gw-a's lines out, a chain of unsigned lines (an unsigned
			// tail, which passes without --require-signed-tail) in,
			// numbered from one before the anchor.
			for fi := range l.lines {
				var keep []string
				for _, s := range l.lines[fi] {
					if !strings.Contains(s, `"replica":"gw-a"`) {
						keep = append(keep, s)
					}
				}
				l.lines[fi] = keep
			}
			var prev [32]byte
			for seq := starts["gw-a"].Seq - 1; seq <= starts["gw-a"].Seq+2; seq++ {
				line := chained(`{"workload":"mallory","path":"/v1/forged"}`, seq, "gw-a", prev)
				l.appendLine(line)
				prev = hashOf(line)
			}
			return starts
		}, want: []want{{KindTruncated, "gw-a"}}},
		{name: "a line numbered seq 0 before the anchor", cut: func(t *testing.T, l *logFiles) map[string]Start {
			l.lines[0] = append([]string{chained(`{"workload":"mallory"}`, 0, "gw-a", [32]byte{}) + "\n"}, l.lines[0]...)
			return map[string]Start{"gw-a": {Seq: 1}}
		}, want: []want{{KindGarbled, "gw-a"}}},
		{name: "rotation: --start names a replica with no line", cut: func(t *testing.T, l *logFiles) map[string]Start {
			return map[string]Start{"gw-c": {Seq: 1}}
		}, want: []want{{KindTruncated, "gw-c"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := readLog(t, copyLog(t, files))
			starts := tc.cut(t, l)
			l.write(t)
			rep, err := Verify(l.names, VerifyOptions{Keys: []ed25519.PublicKey{pub}, RequireSignedTail: tc.requireTail, Starts: starts})
			if err != nil {
				t.Fatal(err)
			}
			var got []want
			for _, p := range rep.Problems {
				got = append(got, want{p.Kind, p.Replica})
			}
			var b bytes.Buffer
			rep.WriteText(&b)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("breaks (-want +got):\n%s\n%s", diff, b.String())
			}
			if rep.OK() != (len(tc.want) == 0) {
				t.Errorf("OK = %v with breaks %v", rep.OK(), got)
			}
			for _, c := range rep.Chains {
				if len(tc.want) == 0 && c.Final == (c.Replica == tc.notFinal) {
					t.Errorf("chain %s: Final = %v\n%s", c.Replica, c.Final, b.String())
				}
			}
			if len(tc.want) > 0 && tc.want[0].Kind == KindTruncated && !strings.Contains(b.String(), "--start") {
				t.Errorf("the report does not say how to anchor a legitimate start:\n%s", b.String())
			}
		})
	}
}

func lastSeq(t *testing.T, l *logFiles, replica string) uint64 {
	t.Helper()
	var last uint64
	for _, lines := range l.lines {
		for _, s := range lines {
			var f struct {
				Seq     uint64 `json:"seq"`
				Replica string `json:"replica"`
			}
			if json.Unmarshal([]byte(s), &f) == nil && f.Replica == replica && f.Seq > last {
				last = f.Seq
			}
		}
	}
	return last
}

func isCheckpoint(t *testing.T, l *logFiles, replica string, seq uint64) bool {
	t.Helper()
	fi, li := l.find(t, replica, seq)
	return strings.Contains(l.lines[fi][li], `"type":"checkpoint"`)
}

// TestParseStart: --start takes REPLICA=SEQ[:PREV]; anything else is an
// error naming the form.
func TestParseStart(t *testing.T) {
	prev := strings.Repeat("0f", 32)
	for _, tc := range []struct {
		in      string
		replica string
		st      Start
		err     string
	}{
		{in: "gw-0-3f9a2c1d=120", replica: "gw-0-3f9a2c1d", st: Start{Seq: 120}},
		{in: "a=b=7:" + prev, replica: "a=b", st: Start{Seq: 7, Prev: prev}},
		{in: "gw=0", err: "at least 1"},
		{in: "gw=x", err: "at least 1"},
		{in: "=5", err: "REPLICA=SEQ"},
		{in: "gw", err: "REPLICA=SEQ"},
		{in: "gw=5:" + strings.ToUpper(prev), err: "64 lower-case hex"},
		{in: "gw=5:abc", err: "64 lower-case hex"},
	} {
		r, st, err := ParseStart(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseStart(%q) = %v, want an error with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || r != tc.replica || st != tc.st {
			t.Errorf("ParseStart(%q) = %q %+v %v, want %q %+v", tc.in, r, st, err, tc.replica, tc.st)
		}
	}
}
