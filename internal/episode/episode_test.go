package episode

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestEpisodes drives a Tracker through sequences of failures and
// successes and checks, at every step, what the caller is told (log
// now or not) and the state a health report would show.
func TestEpisodes(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	type step struct {
		fail bool // a failure at t0+i seconds, else a success
		text string
		// what the call reports: began for Fail, ended for OK
		report bool
		// the state after the step
		failing        bool
		since          int // seconds after t0; -1 for zero
		failures, inEp uint64
		episodes       uint64
		lastErr        string
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"success with no episode logs nothing", []step{
			{fail: false, report: false, since: -1},
			{fail: false, report: false, since: -1},
		}},
		{"first failure begins an episode, repeats do not", []step{
			{fail: true, text: "disk full", report: true, failing: true, since: 0, failures: 1, inEp: 1, episodes: 1, lastErr: "disk full"},
			{fail: true, text: "disk full", report: false, failing: true, since: 0, failures: 2, inEp: 2, episodes: 1, lastErr: "disk full"},
			{fail: true, text: "permission denied", report: false, failing: true, since: 0, failures: 3, inEp: 3, episodes: 1, lastErr: "permission denied"},
		}},
		{"success ends the episode once and keeps its counts", []step{
			{fail: true, text: "a", report: true, failing: true, since: 0, failures: 1, inEp: 1, episodes: 1, lastErr: "a"},
			{fail: true, text: "b", report: false, failing: true, since: 0, failures: 2, inEp: 2, episodes: 1, lastErr: "b"},
			{fail: false, report: true, failing: false, since: -1, failures: 2, inEp: 2, episodes: 1, lastErr: "b"},
			{fail: false, report: false, failing: false, since: -1, failures: 2, inEp: 2, episodes: 1, lastErr: "b"},
		}},
		{"a second episode starts afresh and counts on", []step{
			{fail: true, text: "a", report: true, failing: true, since: 0, failures: 1, inEp: 1, episodes: 1, lastErr: "a"},
			{fail: false, report: true, since: -1, failures: 1, inEp: 1, episodes: 1, lastErr: "a"},
			{fail: true, text: "c", report: true, failing: true, since: 2, failures: 2, inEp: 1, episodes: 2, lastErr: "c"},
			{fail: true, text: "c", report: false, failing: true, since: 2, failures: 3, inEp: 2, episodes: 2, lastErr: "c"},
			{fail: false, report: true, since: -1, failures: 3, inEp: 2, episodes: 2, lastErr: "c"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var tr Tracker
			for i, s := range c.steps {
				now := t0.Add(time.Duration(i) * time.Second)
				var report bool
				if s.fail {
					report = tr.Fail(now, s.text)
				} else {
					var ended Status
					ended, report = tr.OK()
					if report && !ended.Failing {
						t.Errorf("step %d: the ended episode's status says not failing: %+v", i, ended)
					}
					if !report && ended != (Status{}) {
						t.Errorf("step %d: OK with no episode returned a status: %+v", i, ended)
					}
				}
				if report != s.report {
					t.Errorf("step %d: reported %v, want %v", i, report, s.report)
				}
				want := Status{Failing: s.failing, Failures: s.failures, EpisodeFailures: s.inEp, Episodes: s.episodes, LastError: s.lastErr}
				if s.since >= 0 {
					want.Since = t0.Add(time.Duration(s.since) * time.Second)
				}
				if got := tr.Status(); got != want {
					t.Errorf("step %d: status %+v, want %+v", i, got, want)
				}
			}
		})
	}
}

// TestEndedStatusIsTheEpisodes: the status OK returns is the episode
// that ended, as it stood (its start and failures), for the recovery line.
func TestEndedStatusIsTheEpisodes(t *testing.T) {
	var tr Tracker
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	tr.Fail(t0, "x")
	tr.Fail(t0.Add(time.Minute), "y")
	ended, ok := tr.OK()
	want := Status{Failing: true, Since: t0, Failures: 2, EpisodeFailures: 2, Episodes: 1, LastError: "y"}
	if !ok || ended != want {
		t.Fatalf("OK() = %+v, %v; want %+v, true", ended, ok, want)
	}
}

// TestConcurrentUse: failures and successes from many goroutines are
// all counted, and every episode begun is ended at most once (run with
// -race).
func TestConcurrentUse(t *testing.T) {
	var tr Tracker
	const workers, each = 8, 500
	var mu sync.Mutex
	began, ended := 0, 0
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if (w+i)%3 == 0 {
					if _, ok := tr.OK(); ok {
						mu.Lock()
						ended++
						mu.Unlock()
					}
					continue
				}
				if tr.Fail(time.Now(), fmt.Sprint("err ", w)) {
					mu.Lock()
					began++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	st := tr.Status()
	fails := uint64(0)
	for w := range workers {
		for i := range each {
			if (w+i)%3 != 0 {
				fails++
			}
		}
	}
	if st.Failures != fails {
		t.Errorf("failures %d, want %d", st.Failures, fails)
	}
	if uint64(began) != st.Episodes {
		t.Errorf("Fail reported %d beginnings, status counts %d episodes", began, st.Episodes)
	}
	open := 0
	if st.Failing {
		open = 1
	}
	if ended+open != began {
		t.Errorf("%d episodes began, %d ended, %d open", began, ended, open)
	}
}
