package audit

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestVerifyLineBound: verify reads a line no further than its bound
// (VerifyOptions.MaxLineBytes, DefaultMaxLineBytes when zero): a longer
// line, wherever it is and however it is stored, is a line_too_long break
// naming its file and line, costs no memory beyond the bound, and leaves
// the lines after it their numbers; a genuine line at the bound verifies.
// ReadRecords (policy suggest, policy diff) skips such a line.
func TestVerifyLineBound(t *testing.T) {
	signer, pub := newKey(t)
	keys := []ed25519.PublicKey{pub}
	// base is a signed log of 6 events whose line 2 is long.
	base := func(t *testing.T) (string, []string) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "audit.log")
		f, err := OpenFile(path, FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w := NewWriter(f, Options{Replica: "gw-b", Signer: signer, CheckpointLines: 4})
		for i := 1; i <= 6; i++ {
			if i == 2 {
				w.Write([]byte(`{"path":"/` + strings.Repeat("p", 3000) + `"}`))
				continue
			}
			w.Write(fmt.Appendf(nil, `{"method":"GET","host":"api.example.com","path":"/v1/item/%d","decision":"inject"}`, i))
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return path, strings.SplitAfter(string(data), "\n")
	}
	write := func(t *testing.T, path string, lines []string, gz bool) string {
		t.Helper()
		data := []byte(strings.Join(lines, ""))
		if gz {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			_, _ = zw.Write(data)
			_ = zw.Close()
			data, path = b.Bytes(), path+".gz"
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	longest := func(lines []string) int {
		n := 0
		for _, l := range lines {
			n = max(n, len(strings.TrimSuffix(l, "\n")))
		}
		return n
	}
	insert := func(lines []string, at int, s string) []string {
		return append(append(append([]string{}, lines[:at]...), s), lines[at:]...)
	}
	cases := []struct {
		name string
		// files returns the files and the bound to verify them with.
		files func(t *testing.T) ([]string, int)
		// long is the line (of the first file) that must be
		// line_too_long; 0: the files must verify.
		long int
		// after is a line after the long one that another break must
		// name (its number kept), 0 for none.
		after int
		// maxAlloc bounds the bytes Verify may allocate, 0 for no bound.
		maxAlloc uint64
		// records: ReadRecords (bounded by DefaultMaxLineBytes) must
		// skip the long line and read the lines after it.
		records bool
	}{
		{name: "a genuine line exactly at the bound verifies", files: func(t *testing.T) ([]string, int) {
			p, l := base(t)
			return []string{write(t, p, l, false)}, longest(l)
		}},
		{name: "a genuine line one byte over the bound", long: 2, files: func(t *testing.T) ([]string, int) {
			p, l := base(t)
			return []string{write(t, p, l, false)}, longest(l) - 1
		}},
		{name: "a gzip'd file with a genuine line at the bound verifies", files: func(t *testing.T) ([]string, int) {
			p, l := base(t)
			return []string{write(t, p, l, true)}, longest(l)
		}},
		{name: "an inserted line over the bound; the lines after keep their numbers", long: 3, after: 4, files: func(t *testing.T) ([]string, int) {
			p, l := base(t)
			// Line 4 (seq 3) is edited too: its break names line 4.
			l[2] = strings.Replace(l[2], "/v1/item/3", "/v1/item/9", 1)
			if !strings.Contains(l[2], "/v1/item/9") {
				t.Fatalf("line 3 is not seq 3's: %s", l[2])
			}
			return []string{write(t, p, insert(l, 2, `{"x":"`+strings.Repeat("x", 8000)+`"}`+"\n"), false)}, 4096
		}},
		{name: "an over-long line without a newline at the end", long: 9, files: func(t *testing.T) ([]string, int) {
			p, l := base(t)
			return []string{write(t, p, append(l, `{"x":"`+strings.Repeat("x", 8000)), false)}, 4096
		}},
		{name: "an over-long line that is not JSON", long: 1, files: func(t *testing.T) ([]string, int) {
			p, l := base(t)
			return []string{write(t, p, insert(l, 0, strings.Repeat("\x00", 5000)+"\n"), false)}, 4096
		}},
		{name: "an over-long line in a gzip'd file", long: 3, files: func(t *testing.T) ([]string, int) {
			p, l := base(t)
			return []string{write(t, p, insert(l, 2, strings.Repeat("y", 9000)+"\n"), true)}, 4096
		}},
		{name: "a 32 MiB line in a gzip'd file costs no memory beyond the bound", long: 3, maxAlloc: 16 << 20, files: func(t *testing.T) ([]string, int) {
			p, l := base(t)
			return []string{write(t, p, insert(l, 2, `{"x":"`+strings.Repeat("z", 32<<20)+"\"}\n"), true)}, 4096
		}},
		{name: "the default bound: a line over DefaultMaxLineBytes", long: 3, maxAlloc: 2*DefaultMaxLineBytes + 16<<20, records: true, files: func(t *testing.T) ([]string, int) {
			p, l := base(t)
			return []string{write(t, p, insert(l, 2, `{"x":"`+strings.Repeat("z", DefaultMaxLineBytes+1)+"\"}\n"), true)}, 0
		}},
	}
	failed := 0
	for _, tc := range cases {
		ok := t.Run(tc.name, func(t *testing.T) {
			files, bound := tc.files(t)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			rep, err := Verify(files, VerifyOptions{Keys: keys, RequireFinal: true, MaxLineBytes: bound})
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; tc.maxAlloc > 0 && alloc > tc.maxAlloc {
				t.Errorf("Verify allocated %d MiB, want at most %d MiB", alloc>>20, tc.maxAlloc>>20)
			}
			var buf bytes.Buffer
			rep.WriteText(&buf)
			if tc.long == 0 {
				if !rep.OK() {
					t.Fatalf("a valid log does not verify:\n%s", buf.String())
				}
				return
			}
			found, foundAfter := false, tc.after == 0
			for _, p := range rep.Problems {
				if p.Kind == KindLongLine && p.Pos == (Pos{File: files[0], Line: tc.long}) {
					found = true
				}
				if p.Kind != KindLongLine && p.Pos.Line == tc.after {
					foundAfter = true
				}
				if p.Kind == KindLongLine && p.Pos.Line != tc.long {
					t.Errorf("line_too_long at %s, want line %d", p.Pos, tc.long)
				}
			}
			if !found {
				t.Errorf("no line_too_long break at %s:%d:\n%s", files[0], tc.long, buf.String())
			}
			if !foundAfter {
				t.Errorf("no break names line %d after the long line (its number lost):\n%s", tc.after, buf.String())
			}
			if len(buf.String()) > 64<<10 {
				t.Errorf("the report is %d bytes: it quotes the long line", buf.Len())
			}
			if !tc.records {
				return
			}
			var got []int
			if err := ReadRecords(files, nil, func(r Record) error { got = append(got, r.Pos.Line); return nil }); err != nil {
				t.Fatalf("ReadRecords: %v", err)
			}
			if len(got) == 0 || got[len(got)-1] <= tc.long {
				t.Errorf("ReadRecords read lines %v: want lines after line %d", got, tc.long)
			}
		})
		if !ok {
			failed++
		}
	}
	t.Logf("%d of %d cases failed", failed, len(cases))
}

// TestVerifyProblemsBounded: the breaks and warnings a report keeps are
// bounded (MaxReported each, the rest counted and summed in the FAIL
// line), so that what whoever writes the files puts there cannot make
// verify's memory grow with it: 200,000 blank lines (a 200 KB gzip'd file
// of 200 MB of them took 24 GB before), as many lines cut short, and a
// chained line repeated 5,000 times each fail with every break counted
// and at most MaxReported kept, in a few MiB.
func TestVerifyProblemsBounded(t *testing.T) {
	line := chained(`{"path":"/v1/x"}`, 1, "gw-a", [32]byte{})
	for _, tc := range []struct {
		name           string
		data           string
		breaks, warned int
	}{
		{"blank lines", strings.Repeat("\n", 200000), 200000 + 1, 0}, // and the file is empty
		{"cut lines", strings.Repeat("{\"path\":\"/v\n", 200000), 1, 200000},
		{"one line repeated", strings.Repeat(line+"\n", 5000), 5000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			_, _ = zw.Write([]byte(tc.data))
			_ = zw.Close()
			path := filepath.Join(t.TempDir(), "audit.log.gz")
			if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			rep, err := Verify([]string{path}, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 8<<20 {
				t.Errorf("the report holds %d MiB", grew>>20)
			}
			if rep.OK() || len(rep.Problems) > MaxReported || len(rep.Warnings) > MaxReported {
				t.Fatalf("OK %v, %d problems and %d warnings kept, want not OK and at most %d each", rep.OK(), len(rep.Problems), len(rep.Warnings), MaxReported)
			}
			if got := len(rep.Problems) + rep.MoreProblems; got != tc.breaks {
				t.Errorf("%d breaks counted, want %d", got, tc.breaks)
			}
			if got := len(rep.Warnings) + rep.MoreWarnings; got != tc.warned {
				t.Errorf("%d warnings counted, want %d", got, tc.warned)
			}
			var out bytes.Buffer
			rep.WriteText(&out)
			if n := strings.Count(out.String(), "\n"); n > 2*MaxReported+10 {
				t.Errorf("the report is %d lines long", n)
			}
			if !strings.HasSuffix(out.String(), fmt.Sprintf("FAIL: %d breaks\n", tc.breaks)) {
				t.Errorf("the report does not end with the count of every break:\n...%s", out.String()[max(0, out.Len()-300):])
			}
		})
	}
}
