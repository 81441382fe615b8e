package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func newKey(t testing.TB) (Signer, ed25519.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return NewKeySigner(priv), pub
}

// flushNow writes what is buffered, as the flusher's tick would.
func (w *Writer) flushNow() { _ = w.flush(context.Background(), false) }

// crash stops the flusher without the final flush and checkpoint, as a
// killed process would.
func (w *Writer) crash() {
	w.mu.Lock()
	w.closed = true
	w.space.Broadcast()
	w.mu.Unlock()
	close(w.stop)
	<-w.done
}

func event(i int, who string) []byte {
	return fmt.Appendf(nil, `{"time":"2026-12-02T05:00:00.000Z","workload":%q,"path":"/v1/item/%d","status":200}`, who, i)
}

// writeLog writes n events from each of two replicas, interleaved, into one
// rotating file of about 2 KB per file, flushing every 3 events, with a
// checkpoint every 4 lines and a final one; it returns the files oldest
// first.
func writeLog(t *testing.T, dir string, signer Signer, n int) []string {
	t.Helper()
	path := filepath.Join(dir, "audit.log")
	clock := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); clock = clock.Add(time.Millisecond); return clock }
	f, err := OpenFile(path, FileOptions{MaxBytes: 2000, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Signer: signer, CheckpointLines: 4, FlushInterval: time.Hour, Now: now}
	opts.Replica = "gw-a"
	a := NewWriter(f, opts)
	opts.Replica = "gw-b"
	b := NewWriter(f, opts)
	for i := 1; i <= n; i++ {
		a.Write(event(i, "alpha"))
		b.Write(event(i, "beta"))
		if i%3 == 0 {
			a.flushNow()
			b.flushNow()
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := Rotated(path)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

type logFiles struct {
	names []string
	lines [][]string
	// gzip and corrupt mark files (by index) writeAll compresses, and
	// whose compressed bytes it edits.
	gzip, corrupt map[int]bool
}

func readLog(t *testing.T, files []string) *logFiles {
	t.Helper()
	l := &logFiles{names: files}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		l.lines = append(l.lines, strings.SplitAfter(string(data), "\n"))
		last := len(l.lines) - 1
		if l.lines[last][len(l.lines[last])-1] == "" {
			l.lines[last] = l.lines[last][:len(l.lines[last])-1]
		}
	}
	return l
}

func (l *logFiles) write(t *testing.T) {
	t.Helper()
	for i, f := range l.names {
		if err := os.WriteFile(f, []byte(strings.Join(l.lines[i], "")), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// find returns the file index and line index of the line of replica with
// seq, and of which type ("" for an event).
func (l *logFiles) find(t *testing.T, replica string, seq uint64) (int, int) {
	t.Helper()
	for fi, lines := range l.lines {
		for li, s := range lines {
			var f struct {
				Seq     uint64 `json:"seq"`
				Replica string `json:"replica"`
			}
			if json.Unmarshal([]byte(s), &f) == nil && f.Replica == replica && f.Seq == seq {
				return fi, li
			}
		}
	}
	t.Fatalf("no line %s seq %d", replica, seq)
	return 0, 0
}

func (l *logFiles) pos(fi, li int) Pos { return Pos{File: l.names[fi], Line: li + 1} }

type found struct {
	Kind    string
	Replica string
	Seq     uint64
	Pos     Pos
}

// TestVerifyPinpointsTampering edits, deletes, inserts and reorders lines
// of two replicas interleaved across rotated files, and checks that
// verify names each break at its file:line.
func TestVerifyPinpointsTampering(t *testing.T) {
	signer, pub := newKey(t)
	base := t.TempDir()
	files := writeLog(t, base, signer, 40)
	if len(files) < 3 {
		t.Fatalf("want at least 3 files after rotation, got %v", files)
	}
	rep, err := Verify(files, VerifyOptions{Keys: []ed25519.PublicKey{pub}, RequireSignedTail: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Warnings) > 0 || len(rep.Chains) != 2 {
		var b bytes.Buffer
		rep.WriteText(&b)
		t.Fatalf("the untouched log does not verify:\n%s", b.String())
	}
	for _, c := range rep.Chains {
		if !c.Final || c.SignedSeq != c.LastSeq || c.FirstSeq != 1 || c.LastSeq < 50 {
			t.Errorf("chain %+v: want seq 1..50+ signed to the end by a final checkpoint", c)
		}
	}

	for _, tc := range []struct {
		name string
		// tamper changes the files and returns the breaks verify must find.
		tamper func(t *testing.T, l *logFiles) []found
	}{
		{"edit a line of a", func(t *testing.T, l *logFiles) []found {
			fi, li := l.find(t, "gw-a", 11) // seq 5, 10, 15... are checkpoints
			l.lines[fi][li] = strings.Replace(l.lines[fi][li], `"status":200`, `"status":403`, 1)
			return []found{{KindEdited, "gw-a", 11, l.pos(fi, li)}}
		}},
		{"edit the prev of a line of b", func(t *testing.T, l *logFiles) []found {
			fi, li := l.find(t, "gw-b", 21)
			i := strings.Index(l.lines[fi][li], `"prev":"`) + len(`"prev":"`)
			c := "0"
			if l.lines[fi][li][i] == '0' {
				c = "1"
			}
			l.lines[fi][li] = l.lines[fi][li][:i] + c + l.lines[fi][li][i+1:]
			return []found{{KindEdited, "gw-b", 21, l.pos(fi, li)}}
		}},
		{"delete a line of b", func(t *testing.T, l *logFiles) []found {
			fi, li := l.find(t, "gw-b", 17)
			l.lines[fi] = append(l.lines[fi][:li:li], l.lines[fi][li+1:]...)
			nf, nl := l.find(t, "gw-b", 18)
			return []found{{KindDeleted, "gw-b", 18, l.pos(nf, nl)}}
		}},
		{"delete the last line of a rotated file", func(t *testing.T, l *logFiles) []found {
			li := len(l.lines[0]) - 1
			var f struct {
				Seq     uint64 `json:"seq"`
				Replica string `json:"replica"`
			}
			if err := json.Unmarshal([]byte(l.lines[0][li]), &f); err != nil {
				t.Fatal(err)
			}
			l.lines[0] = l.lines[0][:li]
			nf, nl := l.find(t, f.Replica, f.Seq+1)
			return []found{{KindDeleted, f.Replica, f.Seq + 1, l.pos(nf, nl)}}
		}},
		{"insert a forged copy of a line of a", func(t *testing.T, l *logFiles) []found {
			fi, li := l.find(t, "gw-a", 31)
			forged := strings.Replace(l.lines[fi][li], `"workload":"alpha"`, `"workload":"mallory"`, 1)
			l.lines[fi] = append(l.lines[fi][:li+1:li+1], append([]string{forged}, l.lines[fi][li+1:]...)...)
			return []found{{KindInserted, "gw-a", 31, l.pos(fi, li+1)}}
		}},
		{"insert an unchained line", func(t *testing.T, l *logFiles) []found {
			l.lines[1] = append([]string{string(event(99, "mallory")) + "\n"}, l.lines[1]...)
			return []found{{KindUnchained, "", 0, l.pos(1, 0)}}
		}},
		{"swap two lines of a", func(t *testing.T, l *logFiles) []found {
			f1, l1 := l.find(t, "gw-a", 23)
			f2, l2 := l.find(t, "gw-a", 24)
			l.lines[f1][l1], l.lines[f2][l2] = l.lines[f2][l2], l.lines[f1][l1]
			return []found{{KindReordered, "gw-a", 24, l.pos(f1, l1)}}
		}},
		{"forge a checkpoint signature", func(t *testing.T, l *logFiles) []found {
			fi, li := l.find(t, "gw-b", 5) // lines 1-4, then a checkpoint
			if !strings.Contains(l.lines[fi][li], `"type":"checkpoint"`) {
				t.Fatalf("seq 5 is not a checkpoint: %s", l.lines[fi][li])
			}
			l.lines[fi][li] = strings.Replace(l.lines[fi][li], `"sig":"`, `"sig":"AAAA`, 1)
			pf, pl := l.find(t, "gw-b", 5)
			// The edit breaks the chain to seq 6 too.
			return []found{{KindCheckpoint, "gw-b", 5, l.pos(pf, pl)}, {KindEdited, "gw-b", 5, l.pos(pf, pl)}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			copies := copyLog(t, files)
			l := readLog(t, copies)
			want := tc.tamper(t, l)
			l.write(t)
			// Files in reverse order: verify orders them itself.
			rev := append([]string(nil), copies...)
			for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
				rev[i], rev[j] = rev[j], rev[i]
			}
			rep, err := Verify(rev, VerifyOptions{Keys: []ed25519.PublicKey{pub}})
			if err != nil {
				t.Fatal(err)
			}
			var got []found
			for _, p := range rep.Problems {
				got = append(got, found{p.Kind, p.Replica, p.Seq, p.Pos})
			}
			if diff := cmp.Diff(want, got); diff != "" {
				var b bytes.Buffer
				rep.WriteText(&b)
				t.Errorf("breaks (-want +got):\n%s\n%s", diff, b.String())
			}
			for _, c := range rep.Chains {
				if c.Replica == want[0].Replica && c.VerifiedSeq >= want[0].Seq {
					t.Errorf("chain %s verified through seq %d, past the break at seq %d", c.Replica, c.VerifiedSeq, want[0].Seq)
				}
			}
		})
	}
}

// TestCrashMidWrite: a line cut by a crash is reported as cut, every whole
// line before it verifies, and the restarted writer's lines start on a
// line of their own.
func TestCrashMidWrite(t *testing.T) {
	signer, pub := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	f, err := OpenFile(path, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(f, Options{Replica: "gw-1", Signer: signer, CheckpointLines: 3, FlushInterval: time.Hour})
	for i := 1; i <= 7; i++ {
		w.Write(event(i, "alpha"))
	}
	w.flushNow()
	w.Write(event(8, "alpha")) // buffered, lost in the crash
	w.crash()
	// The crash cut the next write in the middle of a line.
	if _, err := f.Write([]byte(`{"time":"2026-12-02T05:00:00.000Z","workload":"alp`)); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	f, err = OpenFile(path, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w2 := NewWriter(f, Options{Replica: "gw-2", Signer: signer, FlushInterval: time.Hour})
	w2.Write(event(1, "beta"))
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	rep, err := Verify([]string{path}, VerifyOptions{Keys: []ed25519.PublicKey{pub}})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.WriteText(&out)
	// 7 events and 2 checkpoints (after 3 and 6 events... after lines
	// 3 and 7), then the cut line.
	if !rep.OK() || len(rep.Warnings) != 1 || rep.Warnings[0].Kind != "cut_line" || rep.Warnings[0].Pos.Line != 10 {
		t.Fatalf("want one cut line at line 10 and no break:\n%s", out.String())
	}
	want := []Chain{
		{Replica: "gw-1", Lines: 9, Files: 1, FirstSeq: 1, LastSeq: 9, VerifiedSeq: 9, VerifiedPos: Pos{path, 9}, SignedSeq: 8, SignedPos: Pos{path, 8}},
		{Replica: "gw-2", Lines: 2, Files: 1, FirstSeq: 1, LastSeq: 2, VerifiedSeq: 2, VerifiedPos: Pos{path, 12}, SignedSeq: 2, SignedPos: Pos{path, 12}, Final: true},
	}
	if diff := cmp.Diff(want, rep.Chains); diff != "" {
		t.Errorf("chains (-want +got):\n%s\n%s", diff, out.String())
	}
	if !strings.Contains(out.String(), "unsigned tail: 1 lines") {
		t.Errorf("the line after gw-1's last checkpoint is not reported as an unsigned tail:\n%s", out.String())
	}
	rep, _ = Verify([]string{path}, VerifyOptions{Keys: []ed25519.PublicKey{pub}, RequireSignedTail: true})
	if rep.OK() {
		t.Errorf("--require-signed-tail passed a chain ending in an unsigned line")
	}
}
