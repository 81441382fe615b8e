package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
)

// storePolicy is a valid policy with n rules.
func storePolicy(n int) string {
	s := `workloads:
  w: {cidrs: [10.0.0.0/8]}
destinations:
  d: {hosts: [d.test]}
credentials:
  c: {provider: policytest, value: x}
rules:
`
	for i := range n {
		s += fmt.Sprintf("  - {name: r%d, from: w, to: d, inject: {credential: c, as: policytest-inj}}\n", i)
	}
	return s + "default: deny\n"
}

const brokenPolicy = "rules:\n  - name: x\n    from: nobody\ndefault: deny\n"

// writeFile replaces path atomically, as editors and config tools do.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.True(t, 10*time.Second, what, cond)
}

// reloads records OnReload calls.
type reloads struct {
	mu   sync.Mutex
	errs []error
}

func (r *reloads) record(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

func (r *reloads) snapshot() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestStore(t *testing.T, path string, opts StoreOptions) *Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	s, err := NewStore(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestNewStoreRejectsInvalid(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	writeFile(t, path, brokenPolicy)
	_, err := NewStore(context.Background(), path, StoreOptions{Logger: quietLogger()})
	var el ErrorList
	if !errors.As(err, &el) {
		t.Fatalf("NewStore error = %v, want an ErrorList", err)
	}
	if _, err := NewStore(context.Background(), filepath.Join(dir, "missing.yaml"), StoreOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("NewStore(missing) error = %v, want ErrNotExist", err)
	}
}

func TestStoreReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, storePolicy(1))
	var rec reloads
	s := newTestStore(t, path, StoreOptions{OnReload: rec.record, MaxCloseDelay: time.Hour})
	first := s.Acquire() // as a request in flight across the reload holds it
	oldProv := first.Decide(request("w", "GET", "https", "d.test", 443, "/")).Inject.Provider.(*testProvider)

	// A broken file is rejected and the last good policy stays.
	writeFile(t, path, brokenPolicy)
	err := s.Reload(context.Background())
	var el ErrorList
	if !errors.As(err, &el) {
		t.Fatalf("Reload(broken) = %v, want an ErrorList", err)
	}
	if s.Current() != first {
		t.Fatal("Reload(broken) replaced the policy")
	}
	if got := first.Decide(request("w", "GET", "https", "d.test", 443, "/")); got.Action != Inject {
		t.Fatalf("last good policy no longer injects: %+v", got)
	}

	// A valid change is picked up; the old policy stays usable (held).
	writeFile(t, path, storePolicy(2))
	if err := s.Reload(context.Background()); err != nil {
		t.Fatalf("Reload(valid): %v", err)
	}
	if got := s.Current().Stats().Rules; got != 2 {
		t.Fatalf("rules after reload = %d, want 2", got)
	}
	if n := oldProv.cleanups.Load(); n != 0 {
		t.Fatalf("replaced policy cleaned up while held (%d)", n)
	}
	got := rec.snapshot()
	if len(got) != 2 || got[0] == nil || got[1] != nil {
		t.Fatalf("OnReload calls = %v, want [error, nil]", got)
	}

	// Close releases the current and the held replaced policy at once.
	newProv := s.Current().Decide(request("w", "GET", "https", "d.test", 443, "/")).Inject.Provider.(*testProvider)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if a, b := oldProv.cleanups.Load(), newProv.cleanups.Load(); a != 1 || b != 1 {
		t.Fatalf("cleanups after Close = %d, %d, want 1, 1", a, b)
	}
	if err := s.Reload(context.Background()); err == nil {
		t.Fatal("Reload after Close succeeded")
	}
}

func TestStoreClosesReplacedPolicyAfterGrace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, storePolicy(1))
	s := newTestStore(t, path, StoreOptions{MaxCloseDelay: 10 * time.Millisecond})
	old := s.Current().Decide(request("w", "GET", "https", "d.test", 443, "/")).Inject.Provider.(*testProvider)
	writeFile(t, path, storePolicy(3))
	if err := s.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replaced policy's provider to be cleaned up", func() bool { return old.cleanups.Load() == 1 })
}

func TestStoreWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	writeFile(t, path, storePolicy(1))
	var rec reloads
	s := newTestStore(t, path, StoreOptions{OnReload: rec.record, Debounce: 20 * time.Millisecond, MaxCloseDelay: time.Millisecond})
	startWatch(t, s)
	first := s.Current()

	writeFile(t, path, brokenPolicy)
	waitFor(t, "the broken policy to be rejected", func() bool { return len(rec.snapshot()) == 1 })
	if s.Current() != first {
		t.Fatal("a broken policy replaced the last good one")
	}
	if err := rec.snapshot()[0]; err == nil {
		t.Fatal("OnReload(nil) for a broken policy")
	}

	writeFile(t, path, storePolicy(4))
	waitFor(t, "the valid policy to load", func() bool { return s.Current().Stats().Rules == 4 })

	// In-place write (no rename) is seen too.
	if err := os.WriteFile(path, []byte(storePolicy(5)), 0o600); err != nil {
		t.Fatal(err)
	}
	// OnReload runs after the swap: wait for its record of this reload
	// too (the second successful one), or n below would be one short.
	successes := func() int {
		n := 0
		for _, err := range rec.snapshot() {
			if err == nil {
				n++
			}
		}
		return n
	}
	waitFor(t, "the in-place edit to load", func() bool { return s.Current().Stats().Rules == 5 && successes() == 2 })
	// Unrelated files in the directory cause no reload.
	n := len(rec.snapshot())
	writeFile(t, filepath.Join(dir, "other.txt"), "x")
	writeFile(t, path, storePolicy(6)) // a change after it, to know events were processed
	// OnReload runs after the swap, so wait for both.
	waitFor(t, "the next change to load", func() bool { return s.Current().Stats().Rules == 6 && len(rec.snapshot()) > n })
	if got := len(rec.snapshot()); got != n+1 {
		t.Errorf("reloads = %d, want %d (unrelated file must not reload)", got, n+1)
	}
}

// TestStoreWatchConfigMap swaps a symlinked directory the way Kubernetes
// updates ConfigMap volumes: policy.yaml -> ..data/policy.yaml, and ..data
// -> ..v1 is atomically replaced by a link to ..v2.
func TestStoreWatchConfigMap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "policy.yaml"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	swap := func(target string) {
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", storePolicy(1))
	swap("..v1")
	path := filepath.Join(dir, "policy.yaml")
	if err := os.Symlink(filepath.Join("..data", "policy.yaml"), path); err != nil {
		t.Fatal(err)
	}
	s := newTestStore(t, path, StoreOptions{Debounce: 20 * time.Millisecond, MaxCloseDelay: time.Millisecond})
	startWatch(t, s)

	version("..v2", storePolicy(2))
	swap("..v2")
	if err := os.RemoveAll(filepath.Join(dir, "..v1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the swapped ConfigMap to load", func() bool { return s.Current().Stats().Rules == 2 })
}

func startWatch(t *testing.T, s *Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	waitFor(t, "the watch to start", s.watching.Load)
}

func TestStoreOnRetireBeforeClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, storePolicy(1))
	var retired atomic.Pointer[Policy]
	var cleanupsAtRetire atomic.Int32
	var old *testProvider
	s := newTestStore(t, path, StoreOptions{MaxCloseDelay: 10 * time.Millisecond, OnRetire: func(p *Policy) {
		cleanupsAtRetire.Store(old.cleanups.Load())
		retired.Store(p)
	}})
	first := s.Current()
	old = first.Decide(request("w", "GET", "https", "d.test", 443, "/")).Inject.Provider.(*testProvider)
	writeFile(t, path, storePolicy(3))
	if err := s.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replaced policy's provider to be cleaned up", func() bool { return old.cleanups.Load() == 1 })
	if retired.Load() != first || cleanupsAtRetire.Load() != 0 {
		t.Errorf("OnRetire got %p (want the replaced policy %p) with %d cleanups done (want 0: before Close)", retired.Load(), first, cleanupsAtRetire.Load())
	}
	refs := first.Credentials()
	if len(refs) == 0 || refs[0].Releases != true || refs[0].Version == "" {
		t.Errorf("Credentials() = %+v, want the test provider marked as releasing resources", refs)
	}
}

// TestStoreWatchBesideABusyFile: the policy's directory also holds a file
// written without pause (the gateway's audit log, in a common layout).
// Its events must neither reload the policy nor keep postponing the
// debounced reload of a real change: the soak found a policy change never
// applied while traffic filled an audit file beside it.
func TestStoreWatchBesideABusyFile(t *testing.T) {
	for _, relative := range []bool{false, true} {
		t.Run(fmt.Sprintf("relative=%v", relative), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "policy.yaml")
			if relative {
				t.Chdir(dir)
				path = "policy.yaml"
			}
			writeFile(t, path, storePolicy(1))
			var rec reloads
			s := newTestStore(t, path, StoreOptions{OnReload: rec.record, Debounce: 50 * time.Millisecond, MaxCloseDelay: time.Millisecond})
			startWatch(t, s)

			busy := filepath.Join(dir, "audit.jsonl")
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, err := os.OpenFile(busy, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
				if err != nil {
					t.Error(err)
					return
				}
				defer f.Close()
				tick := time.NewTicker(5 * time.Millisecond) // well inside the debounce
				defer tick.Stop()
				for i := 0; i < 20000; i++ {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
						fmt.Fprintf(f, "{\"seq\":%d}\n", i)
					}
				}
			}()
			t.Cleanup(func() { cancel(); wg.Wait() })

			writeFile(t, path, storePolicy(3))
			// The store swaps the policy in, then reports the reload: wait
			// for both.
			waitFor(t, "the new policy to load while the other file is written", func() bool {
				return s.Current().Stats().Rules == 3 && len(rec.snapshot()) > 0
			})
			if got := len(rec.snapshot()); got != 1 {
				t.Errorf("%d reloads, want 1: the other file's events reloaded the policy", got)
			}
		})
	}
}

// TestStoreReportsEveryChange: each state the watcher finds the file in
// is judged once, against the state it found before — not against the
// last rejected content — so a bad file put back after a rollback is
// reported again, a vanished file is reported, and the same state seen
// twice is reported once. The sequences are what operators do: roll a
// ConfigMap forward and back, delete and restore, touch.
func TestStoreReportsEveryChange(t *testing.T) {
	const (
		good    = "good"    // the policy the store started with
		good2   = "good2"   // another valid policy
		bad     = "bad"     // rejected content
		bad2    = "bad2"    // other rejected content
		missing = "missing" // the file is deleted
	)
	content := map[string]string{
		good:  storePolicy(1),
		good2: storePolicy(2),
		bad:   brokenPolicy,
		bad2:  "rules: 5\n",
	}
	// want per step: "" nothing reported, "ok" a reload, "error" a failed one.
	for _, c := range []struct {
		name  string
		steps []string
		want  []string
	}{
		{"bad, rollback, bad again", []string{bad, good, bad}, []string{"error", "", "error"}},
		{"bad twice in a row", []string{bad, bad}, []string{"error", ""}},
		{"bad, other bad, first bad", []string{bad, bad2, bad}, []string{"error", "error", "error"}},
		{"unchanged", []string{good, good}, []string{"", ""}},
		{"deleted, still deleted, restored", []string{missing, missing, good}, []string{"error", "", ""}},
		{"deleted, restored, deleted", []string{missing, good, missing}, []string{"error", "", "error"}},
		{"deleted, bad, deleted", []string{missing, bad, missing}, []string{"error", "error", "error"}},
		{"new, bad, new", []string{good2, bad, good2}, []string{"ok", "error", ""}},
		{"new, bad, old", []string{good2, bad, good}, []string{"ok", "error", "ok"}},
		{"new, back, new", []string{good2, good, good2}, []string{"ok", "ok", "ok"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "policy.yaml")
			writeFile(t, path, content[good])
			var rec reloads
			s := newTestStore(t, path, StoreOptions{OnReload: rec.record, MaxCloseDelay: time.Hour})
			for i, step := range c.steps {
				if step == missing {
					if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
						t.Fatal(err)
					}
				} else {
					writeFile(t, path, content[step])
				}
				before := len(rec.snapshot())
				_, _ = s.reload(context.Background(), false) // what the watcher does after its debounce
				got := ""
				if after := rec.snapshot(); len(after) > before {
					got = "ok"
					if after[len(after)-1] != nil {
						got = "error"
					}
				}
				if got != c.want[i] {
					t.Fatalf("step %d (%s): reported %q, want %q", i, step, got, c.want[i])
				}
			}
		})
	}
}
