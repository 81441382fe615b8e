package audit

import (
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/internal/syncbuf"
)

// scriptedSink fails the writes fail says to fail (1-based), and takes
// the others.
type scriptedSink struct {
	mu     sync.Mutex
	n      int
	fail   func(n int) bool
	taken  int
	healed bool
}

// heal makes every later write succeed.
func (s *scriptedSink) heal() { s.mu.Lock(); s.healed = true; s.mu.Unlock() }

func (s *scriptedSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	if !s.healed && s.fail(s.n) {
		return 0, errors.New("write audit.log: no space left on device")
	}
	s.taken++
	return len(p), nil
}

func (s *scriptedSink) writes() (all, taken int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, s.taken
}

// logLines returns the log lines at level WARN or above.
func logLines(b *syncbuf.Buffer) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
			out = append(out, l)
		}
	}
	return out
}

// TestOutputFailureEpisodes: every way the audit output can fail — a
// write refused for a while, a write refused for good under
// audit.on_stall: drop, failures in episodes, a rotation that fails — is
// logged once when it starts and once when it ends (never per retry or
// per line), counted every time, and shown by the writer's status.
func TestOutputFailureEpisodes(t *testing.T) {
	type want struct {
		// logs is the number of WARN/ERROR lines; failing whether the
		// status says failing at the end.
		logs    int
		failing bool
	}
	cases := []struct {
		name string
		run  func(t *testing.T, log *slog.Logger) (w *Writer, status func() OutputStatus, heal func())
		want want
	}{
		{name: "a write refused 4 times, then taken", want: want{logs: 2}, run: func(t *testing.T, log *slog.Logger) (*Writer, func() OutputStatus, func()) {
			s := &scriptedSink{fail: func(n int) bool { return n <= 4 }}
			w := NewWriter(s, Options{Replica: "gw-e", FlushInterval: 5 * time.Millisecond, Log: log})
			w.Write(event(1, "alpha"))
			waitFor(t, "the line taken", func() bool { _, k := s.writes(); return k >= 1 })
			if w.Errors() != 4 {
				t.Errorf("Errors() = %d, want 4", w.Errors())
			}
			return w, w.Status, s.heal
		}},
		{name: "two episodes of 2 refused writes", want: want{logs: 4}, run: func(t *testing.T, log *slog.Logger) (*Writer, func() OutputStatus, func()) {
			s := &scriptedSink{fail: func(n int) bool { return n <= 2 || n == 4 || n == 5 }}
			w := NewWriter(s, Options{Replica: "gw-e", FlushInterval: 5 * time.Millisecond, Log: log})
			w.Write(event(1, "alpha"))
			waitFor(t, "the first line taken", func() bool { _, k := s.writes(); return k >= 1 })
			w.Write(event(2, "alpha"))
			waitFor(t, "the second line taken", func() bool { _, k := s.writes(); return k >= 2 })
			if w.Errors() != 4 {
				t.Errorf("Errors() = %d, want 4", w.Errors())
			}
			return w, w.Status, s.heal
		}},
		{name: "drop: an output that never recovers, 500 lines", want: want{logs: 2, failing: true}, run: func(t *testing.T, log *slog.Logger) (*Writer, func() OutputStatus, func()) {
			s := &scriptedSink{fail: func(int) bool { return true }}
			w := NewWriter(s, Options{Replica: "gw-e", FlushInterval: 5 * time.Millisecond, BufferBytes: 1024, OnStall: Drop, Log: log})
			for i := 1; i <= 500; i++ {
				w.Write(event(i, "alpha"))
			}
			waitFor(t, "3 failed writes", func() bool { return w.Errors() >= 3 })
			if w.Dropped() == 0 {
				t.Errorf("Dropped() = 0, want the lines past the buffer")
			}
			return w, w.Status, s.heal
		}},
		// A live file deleted no longer makes the rotation fail: it is
		// reopened (TestFileReplacedUnderWriter). A rotated name longer
		// than a file name may be does, whoever runs the test.
		{name: "a rotation that fails (the rotated name too long), 40 writes", want: want{logs: 1, failing: true}, run: func(t *testing.T, log *slog.Logger) (*Writer, func() OutputStatus, func()) {
			dir := t.TempDir()
			path := filepath.Join(dir, strings.Repeat("a", 250))
			f, err := OpenFile(path, FileOptions{MaxBytes: 200, Log: log})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = f.Close() })
			w := NewWriter(f, Options{Replica: "gw-e", FlushInterval: time.Hour, Log: log})
			for i := 1; i <= 40; i++ {
				w.Write(event(i, "alpha"))
				_ = w.flush(t.Context(), false)
			}
			if f.RotateErrors() < 39 {
				t.Errorf("RotateErrors() = %d, want a failure per write past the size", f.RotateErrors())
			}
			return w, f.Status, func() {}
		}},
	}
	failed := 0
	for _, tc := range cases {
		ok := t.Run(tc.name, func(t *testing.T) {
			var buf syncbuf.Buffer
			log := slog.New(slog.NewJSONHandler(&buf, nil))
			w, status, heal := tc.run(t, log)
			// The writer logs a start or an end after the sink's call
			// returns, which is what the cases wait for: wait for the
			// lines and the state, then check them exactly.
			poll.Within(2*time.Second, func() bool {
				return len(logLines(&buf)) >= tc.want.logs && status().Failing == tc.want.failing
			})
			st := status()
			if got := logLines(&buf); len(got) != tc.want.logs {
				t.Errorf("%d WARN/ERROR log lines, want %d (once when the failure starts, once when it ends):\n%s", len(got), tc.want.logs, strings.Join(got, "\n"))
			}
			if st.Failing != tc.want.failing || st.Failures == 0 || st.LastError == "" {
				t.Errorf("status %+v: want failing %v, failures counted and the last error", st, tc.want.failing)
			}
			if tc.want.failing && st.Since.IsZero() {
				t.Errorf("status %+v: a failing output says since when", st)
			}
			heal()
			if err := w.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		if !ok {
			failed++
		}
	}
	t.Logf("%d of %d cases failed", failed, len(cases))
}
