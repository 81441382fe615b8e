package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/syncbuf"
)

// copyFile copies src to dst, as logrotate's copytruncate does before it
// truncates src.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// firstSeq returns the seq of the first line of file.
func firstSeq(t *testing.T, file string) uint64 {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := bytes.Cut(data, []byte{'\n'})
	var l struct{ Seq uint64 }
	if err := json.Unmarshal(line, &l); err != nil {
		t.Fatalf("%s: first line %q: %v", file, line, err)
	}
	return l.Seq
}

// TestFileReplacedUnderWriter: whatever another process does to the live
// audit file — removes it, renames it (with or without creating a new
// one), copies and truncates it, removes its directory, or renames it
// where the gateway may not create a new one — the lines written after
// it go to a file at the path, in the same chain: the files verify as one
// chain, closed by its final checkpoint, and no line written after the
// act is lost. While the path cannot be opened, the output is failing
// (its lines wait) and it recovers by itself once the path can be opened
// again. Before, the writer went on appending to the removed or renamed
// file, and the lines were lost from the path.
func TestFileReplacedUnderWriter(t *testing.T) {
	type act struct {
		// do acts on dir/audit.log; it returns the files holding the
		// lines written before it (verified with the live file), and
		// whether lines before it are gone (the chain then starts at the
		// live file's first line: --start).
		do func(t *testing.T, dir, path string) (kept []string, lost bool)
		// heal, when set, undoes what keeps the path from being opened;
		// the output is failing until it runs.
		heal   func(t *testing.T, dir, path string)
		reason ReopenReason
		root   bool // the case needs file permissions to apply
	}
	cases := map[string]act{
		"rm": {
			do: func(t *testing.T, dir, path string) ([]string, bool) {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
				return nil, true
			},
			reason: ReopenRemoved,
		},
		"mv (logrotate nocreate)": {
			do: func(t *testing.T, dir, path string) ([]string, bool) {
				if err := os.Rename(path, path+".1"); err != nil {
					t.Fatal(err)
				}
				return []string{path + ".1"}, false
			},
			reason: ReopenRemoved,
		},
		"mv and create by another (logrotate create)": {
			do: func(t *testing.T, dir, path string) ([]string, bool) {
				if err := os.Rename(path, path+".1"); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, nil, 0o640); err != nil {
					t.Fatal(err)
				}
				return []string{path + ".1"}, false
			},
			reason: ReopenReplaced,
		},
		"copytruncate": {
			do: func(t *testing.T, dir, path string) ([]string, bool) {
				copyFile(t, path, path+".1")
				if err := os.Truncate(path, 0); err != nil {
					t.Fatal(err)
				}
				return []string{path + ".1"}, false
			},
			reason: ReopenTruncated,
		},
		"copytruncate to a cut line": {
			do: func(t *testing.T, dir, path string) ([]string, bool) {
				copyFile(t, path, path+".1")
				// What stays is the start of a line: the line the
				// next one follows is ended first.
				if err := os.Truncate(path, 10); err != nil {
					t.Fatal(err)
				}
				return []string{path + ".1"}, false
			},
			reason: ReopenTruncated,
		},
		"directory removed, then back": {
			do: func(t *testing.T, dir, path string) ([]string, bool) {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				return nil, true
			},
			heal: func(t *testing.T, dir, path string) {
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
			},
			reason: ReopenRemoved,
		},
		"mv, permission denied on create, then granted": {
			do: func(t *testing.T, dir, path string) ([]string, bool) {
				if err := os.Rename(path, filepath.Join(filepath.Dir(dir), "audit.log.1")); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(dir, 0o500); err != nil {
					t.Fatal(err)
				}
				return []string{filepath.Join(filepath.Dir(dir), "audit.log.1")}, false
			},
			heal: func(t *testing.T, dir, path string) {
				if err := os.Chmod(dir, 0o700); err != nil {
					t.Fatal(err)
				}
			},
			reason: ReopenRemoved,
			root:   true,
		},
	}
	signer, pub := newKey(t)
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if c.root && os.Geteuid() == 0 {
				t.Skip("root creates files whatever the directory's permissions")
			}
			top := t.TempDir()
			dir := filepath.Join(top, "log")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
			path := filepath.Join(dir, "audit.log")
			var logs syncbuf.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			f, err := OpenFile(path, FileOptions{Log: log})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			w := NewWriter(f, Options{Replica: "gw", Signer: signer, CheckpointLines: 1000, FlushInterval: 5 * time.Millisecond, Log: log})
			for i := 1; i <= 5; i++ {
				w.Write(event(i, "before"))
			}
			waitFor(t, "the lines before reach the file", func() bool { return w.Written() == 5 })
			kept, lost := c.do(t, dir, path)
			for i := 6; i <= 10; i++ {
				w.Write(event(i, "after"))
			}
			if c.heal != nil {
				waitFor(t, "the output failing while the path cannot be opened", func() bool { return w.Status().Failing })
				if w.Written() != 5 {
					t.Errorf("%d lines written while the path could not be opened, want them to wait", w.Written()-5)
				}
				c.heal(t, dir, path)
			}
			waitFor(t, "the lines after reach the file at the path", func() bool { return w.Written() == 10 })
			if w.Status().Failing {
				t.Errorf("the output is still failing: %+v", w.Status())
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got := f.Reopens(c.reason); got != 1 {
				t.Errorf("%d reopens for %s, want 1", got, c.reason)
			}
			if !strings.Contains(logs.String(), "reopened") || !strings.Contains(logs.String(), path) {
				t.Errorf("the log does not say the file was reopened, with its path:\n%s", logs.String())
			}
			opts := VerifyOptions{Keys: []ed25519.PublicKey{pub}, RequireFinal: true}
			if lost {
				// What was before is gone with the file: the chain starts
				// at the path's first line, the first line after the act.
				if s := firstSeq(t, path); s != 6 {
					t.Errorf("the file at the path starts at seq %d, want 6 (no line after the act lost)", s)
				}
				opts.Starts = map[string]Start{"gw": {Seq: 6}}
			}
			files := append(kept, path)
			rep, err := Verify(files, opts)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			rep.WriteText(&b)
			if !rep.OK() || len(rep.Chains) != 1 || !rep.Chains[0].Final || rep.Chains[0].LastSeq != 11 {
				t.Errorf("the files do not verify as one chain, final, through seq 11:\n%s", b.String())
			}
		})
	}
}

// TestFileReopen: Reopen (SIGHUP) opens the path again at once: after an
// external rename, the next lines go to a new file at the path, and the
// renamed file and it verify as one chain.
func TestFileReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	f, err := OpenFile(path, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(f, Options{Replica: "gw", FlushInterval: time.Hour})
	w.Write(event(1, "a"))
	w.flushNow()
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("Reopen did not create the file at once: %v", err)
	}
	w.Write(event(2, "a"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if n := f.Reopens(ReopenSignal); n != 1 {
		t.Errorf("%d signal reopens, want 1", n)
	}
	if n := f.Reopens(ReopenRemoved); n != 0 {
		t.Errorf("%d removed reopens after Reopen, want 0", n)
	}
	rep, err := Verify([]string{path + ".1", path}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Chains[0].Files != 2 {
		var b bytes.Buffer
		rep.WriteText(&b)
		t.Errorf("the renamed and the new file do not verify as one chain:\n%s", b.String())
	}
	if err := f.Reopen(); err == nil {
		t.Error("Reopen of a closed file succeeded")
	}
}

// BenchmarkFileWrite measures a write of a batch of lines to the file,
// which now begins with a check that the path still names the file (one
// stat), and the check on its own.
func BenchmarkFileWrite(b *testing.B) {
	path := filepath.Join(b.TempDir(), "audit.log")
	f, err := OpenFile(path, FileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for _, size := range []int{512, 64 << 10} {
		batch := bytes.Repeat([]byte(strings.Repeat("x", 511)+"\n"), size/512)
		b.Run(fmt.Sprintf("write-%dB", size), func(b *testing.B) {
			b.SetBytes(int64(len(batch)))
			for b.Loop() {
				if _, err := f.Write(batch); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("rawwrite-%dB", size), func(b *testing.B) {
			b.SetBytes(int64(len(batch)))
			for b.Loop() {
				if _, err := f.f.Write(batch); err != nil {
					b.Fatal(err)
				}
			}
			f.size, _ = f.f.Seek(0, io.SeekEnd)
		})
	}
	b.Run("check", func(b *testing.B) {
		for b.Loop() {
			if err := f.check(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestPendingCountsLinesNotTaken: Pending counts the lines a sink has not
// taken, those in a write that does not return included, and none once it
// took them.
func TestPendingCountsLinesNotTaken(t *testing.T) {
	g := newGate()
	w := NewWriter(g, Options{Replica: "gw", FlushInterval: 5 * time.Millisecond})
	for i := 1; i <= 3; i++ {
		w.Write(event(i, "a"))
	}
	waitFor(t, "the sink's write to block", g.blocked)
	w.Write(event(4, "a"))
	w.Write(event(5, "a"))
	if n := w.Pending(); n != 5 {
		t.Errorf("Pending = %d with the sink blocked, want 5", n)
	}
	close(g.open)
	waitFor(t, "the sink to take the lines", func() bool { return w.Written() == 5 })
	if n := w.Pending(); n != 0 {
		t.Errorf("Pending = %d once the sink took every line, want 0", n)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
