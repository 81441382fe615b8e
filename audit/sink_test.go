package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.True(t, 5*time.Second, what, cond)
}

// TestRotation: files rotate by size and by age, between whole lines; every
// file is whole lines of JSON, the rotated names sort in order, and the
// chain verifies across them.
func TestRotation(t *testing.T) {
	signer, pub := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	clock := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	f, err := OpenFile(path, FileOptions{MaxBytes: 1500, Every: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(f, Options{Replica: "gw", Signer: signer, CheckpointLines: 10, FlushInterval: time.Hour, Now: now})
	for i := 1; i <= 60; i++ {
		w.Write(event(i, "alpha"))
		if i%2 == 0 {
			w.flushNow()
			advance(time.Second)
		}
	}
	advance(time.Hour) // the next write rotates by age, though the file is small
	w.Write(event(61, "alpha"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := Rotated(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("want several rotated files, got %v", files)
	}
	total := 0
	for i, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) == 0 || data[len(data)-1] != '\n' {
			t.Errorf("%s does not end with a whole line", name)
		}
		if i < len(files)-2 && len(data) > 1500 {
			t.Errorf("%s has %d bytes, over max_bytes", name, len(data))
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(data, []byte{'\n'}), []byte{'\n'}) {
			if !json.Valid(line) {
				t.Errorf("%s: a split or broken line: %s", name, line)
			}
			total++
		}
	}
	// The last rotation was by age: the live file holds the last event and
	// the final checkpoint only.
	last, _ := os.ReadFile(path)
	if n := bytes.Count(last, []byte{'\n'}); n != 2 {
		t.Errorf("the live file has %d lines, want 2 after the rotation by age:\n%s", n, last)
	}
	if want := int(w.Written()); total != want {
		t.Errorf("%d lines in the files, %d written", total, want)
	}
	rep, err := Verify(files, VerifyOptions{Keys: []ed25519.PublicKey{pub}, RequireSignedTail: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Chains[0].Files != len(files) || !rep.Chains[0].Final {
		var b bytes.Buffer
		rep.WriteText(&b)
		t.Errorf("the rotated files do not verify as one chain:\n%s", b.String())
	}
}

// gate is a sink whose writes wait until it is opened.
type gate struct {
	mu      sync.Mutex
	open    chan struct{}
	buf     bytes.Buffer
	waiting int
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) Write(p []byte) (int, error) {
	g.mu.Lock()
	g.waiting++
	g.mu.Unlock()
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	g.waiting--
	return g.buf.Write(p)
}

func (g *gate) blocked() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.waiting > 0 }

func (g *gate) String() string { g.mu.Lock(); defer g.mu.Unlock(); return g.buf.String() }

// fill writes events until the writer's buffer is full behind a stuck
// sink: the flusher is blocked in the sink with one batch, and the next
// batch fills up to BufferBytes.
func fill(t *testing.T, w *Writer, g *gate) int {
	t.Helper()
	w.Write(event(0, "first"))
	w.poke()
	waitFor(t, "the flusher blocked in the sink", g.blocked)
	n := 0
	for len(event(n+1, "alpha"))*(n+1) <= w.opts.BufferBytes {
		n++
		w.Write(event(n, "alpha"))
	}
	return n
}

func TestStallBlock(t *testing.T) {
	g := newGate()
	w := NewWriter(g, Options{Replica: "gw", BufferBytes: 1024, FlushInterval: time.Hour})
	n := fill(t, w, g)
	done := make(chan struct{})
	go func() {
		w.Write(event(n+1, "late"))
		close(done)
	}()
	waitFor(t, "the buffer reported full", w.Stalled)
	select {
	case <-done:
		t.Fatal("a write to a full buffer returned under the block policy")
	default:
	}
	close(g.open)
	<-done
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(g.String(), "\n"); got != n+2 || w.Dropped() != 0 {
		t.Errorf("%d lines written, %d dropped; want %d and 0", got, w.Dropped(), n+2)
	}
}

func TestStallDrop(t *testing.T) {
	g := newGate()
	w := NewWriter(g, Options{Replica: "gw", BufferBytes: 1024, FlushInterval: time.Hour, OnStall: Drop})
	n := fill(t, w, g)
	for i := 0; i < 5; i++ {
		w.Write(event(n+1+i, "dropped")) // returns at once
	}
	if w.Dropped() != 5 {
		t.Fatalf("Dropped() = %d, want 5", w.Dropped())
	}
	close(g.open)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out := g.String()
	if strings.Contains(out, `"dropped"}`) || !strings.Contains(out, `{"type":"dropped","time":"`) || !strings.Contains(out, `"count":5,"seq":`) {
		t.Errorf("want a chained dropped line with count 5 and no dropped event:\n%s", out)
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify([]string{path}, VerifyOptions{}); err != nil || !rep.OK() {
		t.Errorf("the log with a dropped line does not verify: %v %+v", err, rep)
	}
}

func TestStallFailClosed(t *testing.T) {
	g := newGate()
	w := NewWriter(g, Options{Replica: "gw", BufferBytes: 1 << 20, FlushInterval: time.Hour, OnStall: FailClosed, StallTimeout: 20 * time.Millisecond})
	if w.Stalled() {
		t.Fatal("stalled before anything was written")
	}
	w.Write(event(1, "alpha"))
	w.poke()
	// The buffer is far from full: the write taking longer than
	// StallTimeout is what reports the stall.
	waitFor(t, "Stalled after stall_timeout", w.Stalled)
	close(g.open)
	waitFor(t, "the stall to clear", func() bool { return !w.Stalled() })
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestStallOnMonotonicClock: whether a sink write is stalled is judged
// on the monotonic clock, from when the write began. Before the fix the
// start was kept as wall-clock Unix nanoseconds: a step of the wall clock
// back by an hour hid a stalled write for that hour (with fail_closed,
// requests went on unaudited), a step forward by more than
// stall_timeout reported a write that had just begun as stalled (with
// fail_closed, refusing every request). The wall clock no longer enters:
// only time since the write began on the Writer's monotonic timeline.
func TestStallOnMonotonicClock(t *testing.T) {
	w := NewWriter(io.Discard, Options{Replica: "gw", StallTimeout: 5 * time.Second})
	defer w.Close()
	for _, tc := range []struct {
		began, at time.Duration // on the Writer's monotonic timeline; began < 0: no write
		want      bool
	}{
		{-1, time.Hour, false},
		{time.Minute, time.Minute, false},
		{time.Minute, time.Minute + 5*time.Second, false},
		{time.Minute, time.Minute + 5*time.Second + time.Nanosecond, true},
		{time.Minute, 2 * time.Hour, true},
		{0, 6 * time.Second, true},
	} {
		w.writing.Store(0)
		if tc.began >= 0 {
			w.writing.Store(int64(tc.began) + 1)
		}
		if got := w.stalledAt(tc.at); got != tc.want {
			t.Errorf("write began at %v, checked at %v: stalled %v, want %v", tc.began, tc.at, got, tc.want)
		}
	}
	w.writing.Store(0)
}

func TestFingerprint(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	a, b := NewFingerprinter(key), NewFingerprinter(key)
	fp := a.Sum("token", "sk_live_secret")
	if len(fp) != 16 || strings.Trim(fp, "0123456789abcdef") != "" {
		t.Fatalf("fingerprint %q is not 16 hex digits", fp)
	}
	if b.Sum("token", "sk_live_secret") != fp {
		t.Error("the same key gives different fingerprints (replicas would disagree)")
	}
	for _, other := range []string{
		a.Sum("token", "sk_live_secreT"),
		a.Sum("tokens", "k_live_secret"),
		NewFingerprinter([]byte("another key of at least 16 bytes")).Sum("token", "sk_live_secret"),
		NewFingerprinter(nil).Sum("token", "sk_live_secret"),
	} {
		if other == fp {
			t.Errorf("fingerprint %s collides", fp)
		}
	}
}

// TestVerifyFilePerReplica: one file per replica, given together; a line
// deleted from one is found there, the other verifies.
func TestVerifyFilePerReplica(t *testing.T) {
	dir := t.TempDir()
	var files []string
	for _, id := range []string{"gw-a", "gw-b"} {
		path := filepath.Join(dir, id+".log")
		f, err := OpenFile(path, FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w := NewWriter(f, Options{Replica: id, FlushInterval: time.Hour})
		for i := 1; i <= 5; i++ {
			w.Write(event(i, id))
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
		files = append(files, path)
	}
	data, _ := os.ReadFile(files[1])
	lines := strings.SplitAfter(string(data), "\n")
	if err := os.WriteFile(files[1], []byte(strings.Join(append(lines[:2:2], lines[3:]...), "")), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(files, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || rep.Problems[0].Kind != KindDeleted || rep.Problems[0].Pos != (Pos{files[1], 3}) || rep.Problems[0].Seq != 4 {
		t.Errorf("want seq 3 of gw-b reported deleted at %s:3, got %+v", files[1], rep.Problems)
	}
	if c := rep.Chains[0]; c.Replica != "gw-a" || c.VerifiedSeq != 5 {
		t.Errorf("gw-a: %+v, want verified through seq 5", c)
	}
}

// Rotated lists path's rotated files, oldest first, then path itself if
// it exists: the order in which they were written.
func Rotated(path string) ([]string, error) {
	m, err := filepath.Glob(globEscape(path) + ".*")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range m {
		suffix := strings.TrimPrefix(f, path+".")
		if len(suffix) >= len(RotatedSuffixFormat) {
			if _, err := time.Parse(RotatedSuffixFormat, suffix[:len(RotatedSuffixFormat)]); err == nil {
				out = append(out, f)
			}
		}
	}
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	}
	return out, nil
}

func globEscape(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`)
	return r.Replace(s)
}

// failingSink fails every write until released, then takes them.
type failingSink struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	fails   int
	release bool
}

func (s *failingSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.release {
		s.fails++
		return 0, os.ErrDeadlineExceeded
	}
	return s.buf.Write(p)
}

func (s *failingSink) failures() int { s.mu.Lock(); defer s.mu.Unlock(); return s.fails }

// TestSinkErrorAtStopLosesNothing: a sink that fails (a full disk, a
// stdout pipe whose reader is gone) while the writer is stopped: the
// lines the flusher could not write are kept for Close's flush, which
// writes them once the sink takes writes again, so the chain is whole
// and closed by its final checkpoint, and every failure is counted.
// Before, the flusher's last try gave them up in silence, leaving a
// chain whose first lines were missing.
func TestSinkErrorAtStopLosesNothing(t *testing.T) {
	signer, pub := newKey(t)
	s := &failingSink{}
	w := NewWriter(s, Options{Replica: "gw-e", Signer: signer, FlushInterval: 5 * time.Millisecond})
	for i := 1; i <= 3; i++ {
		w.Write(event(i, "alpha"))
	}
	waitFor(t, "a failed write", func() bool { return s.failures() >= 1 })
	closed := make(chan error, 1)
	go func() { closed <- w.Close() }()
	// The flusher's last try and a try of Close's flush fail too.
	n := s.failures()
	waitFor(t, "two more failed writes", func() bool { return s.failures() >= n+2 })
	s.mu.Lock()
	s.release = true
	s.mu.Unlock()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if w.Errors() < uint64(n+2) {
		t.Errorf("Errors() = %d, want at least %d", w.Errors(), n+2)
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, s.buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify([]string{path}, VerifyOptions{Keys: []ed25519.PublicKey{pub}, RequireFinal: true})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	rep.WriteText(&b)
	if !rep.OK() || rep.Chains[0].LastSeq != 4 {
		t.Errorf("want the 3 lines and the final checkpoint, whole:\n%s\n%s", b.String(), s.buf.String())
	}
}
