package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/providers"
)

// Default StoreOptions values.
const (
	// DefaultMaxCloseDelay is the longest a replaced policy's providers
	// stay open for the requests still holding it: the default of
	// limits.long_lived.max_lifetime, the longest a request may run.
	DefaultMaxCloseDelay = 24 * time.Hour
	// DefaultDebounce is how long Watch waits for file events to settle.
	DefaultDebounce = 250 * time.Millisecond
)

// StoreOptions configures a Store. The zero value is usable.
type StoreOptions struct {
	// Logger receives reload results; nil means slog.Default(). Messages
	// carry file names, counts and validation errors, never secret values.
	Logger *slog.Logger
	// OnReload, if set, is called after every reload attempt (not the
	// initial load) with nil on success or the error that was rejected,
	// for example to count reloads in a metric. It runs without locks held.
	OnReload func(err error)
	// OnRetire, if set, is called with a replaced policy just before its
	// providers are released (once the last hold of it is released, or
	// MaxCloseDelay passed), for example to drop cached credentials those
	// providers are about to revoke.
	OnRetire func(old *Policy)
	// MaxCloseDelay bounds how long a replaced policy's providers stay
	// open for requests still holding it (Acquire): a request stuck
	// longer no longer keeps them, and its next fetch may fail. A replaced
	// policy nobody holds is closed at once. Default DefaultMaxCloseDelay;
	// the gateway sets limits.long_lived.max_lifetime.
	MaxCloseDelay time.Duration
	// Debounce is how long Watch waits after the last file event before
	// reloading, so that an editor's write-rename sequence or a ConfigMap
	// symlink swap causes one reload. Default DefaultDebounce.
	Debounce time.Duration
}

// Store holds the current policy of a policy file and replaces it on
// reload. Current is lock-free.
//
// Lifetime of replaced policies: a request takes the policy in force once
// (Acquire) and keeps it for its whole life, so a reload never changes the
// decision of a request in flight, and its providers stay open for the
// request's fetches (the first, a 401's reissue) however long it runs. A
// replaced policy's providers are released (Close) when the last request
// holding it releases it (Release), at once when none does, and at the
// latest StoreOptions.MaxCloseDelay after the reload, so that a stuck
// request cannot keep them forever. Many reloads in a row leave open only
// the replaced policies still held, with one timer each.
type Store struct {
	path string
	opts StoreOptions
	log  *slog.Logger
	cur  atomic.Pointer[Policy]

	mu sync.Mutex // serialises loads; guards the fields below
	// lastSeen is what the watcher last found at path: the content's
	// hash, or the read error's text. A change is judged against it, not
	// against the last rejected content, so a bad file put back after
	// the good one in force is reported (and counted) every time.
	lastSeen string
	// retiring holds the replaced policies still held at their reload
	// and not closed yet, each with its MaxCloseDelay timer.
	retiring map[*Policy]*time.Timer
	closed   bool

	watching atomic.Bool // set once Watch has its watches in place (tests)
	// fileBad is set while the file, as last read, is not the policy in
	// force: rejected or unreadable (FileInForce).
	fileBad atomic.Bool
	// looseFiles counts the policy in force's credential files of loose
	// mode, as judged when it was loaded (LooseSecretFiles).
	looseFiles atomic.Int64
}

// FileInForce reports whether the policy file, as the store last read
// it, is the policy in force: false from a rejected or unreadable file
// until the file loads or returns to the policy in force. It backs
// credgate_policy_last_reload_successful, which an alert can watch for as
// long as a bad file stays (a counter of failures only rises once).
// Lock-free: a scrape does not wait for a reload.
func (s *Store) FileInForce() bool { return !s.fileBad.Load() }

// NewStore loads the policy file at path. It fails if the file cannot be
// read or is invalid; there is no last good policy to fall back on yet.
func NewStore(ctx context.Context, path string, opts StoreOptions) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxCloseDelay <= 0 {
		opts.MaxCloseDelay = DefaultMaxCloseDelay
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	p, err := LoadFile(ctx, path)
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, opts: opts, log: opts.Logger, retiring: map[*Policy]*time.Timer{}, lastSeen: p.hash}
	s.cur.Store(p)
	s.warnSources(p)
	return s, nil
}

// Current returns the policy in force, not held: a reload may close its
// providers at any time. It serves what only reads the policy (its rules,
// workloads, stats, deciding again); a request that fetches a credential
// takes its policy with Acquire.
func (s *Store) Current() *Policy { return s.cur.Load() }

// Acquire returns the policy in force, held: its providers stay open,
// even after a reload replaced it, until Release(p) (or MaxCloseDelay
// after the reload). Every Acquire needs one Release. Lock-free.
func (s *Store) Acquire() *Policy {
	for {
		p := s.cur.Load()
		p.users.Add(1)
		// Still in force after the hold was counted: a reload from now
		// on sees the hold (retire). Replaced meanwhile: the reload may
		// have closed p without seeing it; take the new one (a reload is
		// rare and serialised, so this repeats seldom).
		if s.cur.Load() == p {
			return p
		}
		s.Release(p)
	}
}

// Release ends a hold of p taken by Acquire. The last hold of a replaced
// policy closes its providers (in a goroutine of its own: a Cleanup that
// revokes a lease does not delay the request that released it).
func (s *Store) Release(p *Policy) {
	if p.users.Add(-1) == 0 && p.retired.Load() {
		go s.closeRetired(p, false)
	}
}

// Path returns the policy file's path.
func (s *Store) Path() string { return s.path }

// Reload re-reads and re-parses the policy file (for SIGHUP). On success
// the new policy replaces the current one; on error the current policy
// stays in force, the error is logged and returned. OnReload is called
// either way.
func (s *Store) Reload(ctx context.Context) error {
	_, err := s.reload(ctx, true)
	return err
}

// reload loads the file. Unless force, a file found as the watcher last
// found it (the same content, or unreadable for the same reason) is left
// alone, and so is content identical to the policy in force. It reports
// whether a load was attempted: an unreadable file (after the debounce:
// deleted, or its permissions changed) and rejected content count as
// failed attempts, each once until the file changes again.
func (s *Store) reload(ctx context.Context, force bool) (bool, error) {
	attempted, err := s.reloadLocked(ctx, force)
	if attempted && s.opts.OnReload != nil {
		s.opts.OnReload(err)
	}
	return attempted, err
}

func (s *Store) reloadLocked(ctx context.Context, force bool) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, errors.New("policy: reload after the store was closed")
	}
	prev := s.lastSeen
	data, err := cfgfile.Read(s.path)
	if err != nil {
		err = fmt.Errorf("policy: %w", err)
		seen := "unreadable: " + err.Error()
		if !force && seen == prev {
			return false, nil
		}
		s.lastSeen = seen
		s.fileBad.Store(true)
		s.log.Error("policy file not readable; keeping the last good policy", "file", s.path, "error", err,
			"fix", "restore the file (or its volume); the gateway reloads it when it is back")
		return true, err
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	s.lastSeen = hash
	if !force && hash == prev {
		return false, nil
	}
	if !force && hash == s.cur.Load().hash {
		// Back to the policy in force after a rejected or unreadable
		// file: say so, as the error said the file was wrong.
		s.fileBad.Store(false)
		s.log.Info("policy file is back to the policy in force", "file", s.path, "hash", hash)
		return false, nil
	}
	p, err := Parse(ctx, s.path, data)
	if err != nil {
		s.fileBad.Store(true)
		s.log.Error("policy reload rejected; keeping the last good policy", "file", s.path, "error", err)
		return true, err
	}
	old := s.cur.Swap(p)
	s.fileBad.Store(false)
	st := p.Stats()
	s.log.Info("policy reloaded", "file", s.path, "rules", st.Rules, "destinations", st.Destinations,
		"credentials", st.Credentials, "workloads", st.Workloads, "hash", st.Hash)
	s.warnSources(p)
	s.retire(old)
	return true, nil
}

// warnSources logs one warning per credential source of p that cannot be
// read now, and one per credential file whose mode or owner is loose
// (Policy.CheckSources), and counts the latter (LooseSecretFiles). It runs
// once per load of a policy (NewStore, each reload that puts one in
// force), not per fetch: a static file read at every request is judged
// here only. Neither rejects the policy: a credential whose source is
// missing fails the requests that use it, and only those, with 502
// credential_not_configured, as it would if the source went away later;
// a file of loose mode is used.
func (s *Store) warnSources(p *Policy) {
	probs, warns := p.CheckSources()
	for _, e := range probs {
		s.log.Warn("credential source not available; requests that use the credential get 502 credential_not_configured until it is",
			"at", fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Col), "error", e.Msg)
	}
	var loose int64
	for _, e := range warns {
		msg := "credential source warning; the credential is used"
		if errors.Is(e.Err, providers.ErrLooseMode) {
			loose++
			msg = "credential file readable or writable by others than the gateway's user; it is used anyway"
		}
		s.log.Warn(msg, "at", fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Col), "warning", e.Msg)
	}
	s.looseFiles.Store(loose)
}

// LooseSecretFiles is the number of credential files of the policy in
// force whose mode or owner was loose when it was loaded (Policy.CheckSources'
// warnings wrapping providers.ErrLooseMode): the gateway counts them in
// credgate_secret_files_loose_mode. A rejected reload leaves it as it was.
// Lock-free.
func (s *Store) LooseSecretFiles() int { return int(s.looseFiles.Load()) }

// retire closes old once nothing holds it, at the latest after
// MaxCloseDelay. Called with s.mu held.
func (s *Store) retire(old *Policy) {
	if old == nil {
		return
	}
	old.retired.Store(true)
	if old.users.Load() == 0 {
		// Nothing holds it (an Acquire that counts its hold from now on
		// sees the new policy and lets it go): closed now, not listed.
		go s.release(old)
		return
	}
	// Held: the last Release closes it (it sees retired, set above, or
	// this count was 0). The timer is the bound on a stuck request.
	s.retiring[old] = time.AfterFunc(s.opts.MaxCloseDelay, func() { s.closeRetired(old, true) })
}

// closeRetired releases the providers of old, replaced by a reload while
// held, once: the first of its last Release, its MaxCloseDelay timer
// (capped) and Store.Close does it.
func (s *Store) closeRetired(old *Policy, capped bool) {
	s.mu.Lock()
	t, still := s.retiring[old]
	delete(s.retiring, old)
	s.mu.Unlock()
	if !still {
		return // closed already
	}
	t.Stop()
	if capped {
		s.log.Warn("a replaced policy's providers are released while requests still hold it; their next credential fetch fails",
			"file", s.path, "requests", old.users.Load(), "max_close_delay", s.opts.MaxCloseDelay.String(),
			"fix", "raise limits.long_lived.max_lifetime if requests run longer, or find what keeps them")
	}
	s.release(old)
}

// release calls OnRetire with old, replaced by a reload, then closes it.
func (s *Store) release(old *Policy) {
	if s.opts.OnRetire != nil {
		s.opts.OnRetire(old)
	}
	if err := old.Close(); err != nil {
		s.log.Warn("releasing a replaced policy's providers failed", "file", s.path, "error", err)
	}
}

// Retired returns how many replaced policies are still open because
// requests hold them (Acquire): those a reload replaced while in use,
// until their last Release or MaxCloseDelay.
func (s *Store) Retired() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.retiring)
}

// Close releases the current policy and every replaced policy still in its
// grace period. Call it once the gateway has drained; Current keeps
// returning the last policy, whose providers are released. The policies
// are released together, so Close returns within one
// module.CleanupTimeout however many replaced policies are still open:
// the gateway's stop budget (the chart's terminationGracePeriodSeconds)
// counts one. A Cleanup still running then (Vault's revoke_on_cleanup
// against a slow Vault) is abandoned and reported in the error.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var pending []*Policy
	for p, t := range s.retiring {
		t.Stop()
		pending = append(pending, p)
	}
	clear(s.retiring)
	s.mu.Unlock()
	pending = append(pending, s.cur.Load())
	errs := make([]error, len(pending))
	var wg sync.WaitGroup
	for i, p := range pending {
		wg.Go(func() { errs[i] = p.Close() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Watch reloads the policy whenever its file changes, until ctx is done;
// it then returns nil. It watches the file's directory (and, when the path
// is a symbolic link, its target's directory), so that editors that write
// a new file and rename it over the old one, and Kubernetes ConfigMap
// volumes that swap a symbolic link, are seen. Events are debounced, and a
// reload happens only when the file's content differs from the policy in
// force and from the last rejected content. It returns an error only if
// watching cannot start.
func (s *Store) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("policy: watch %s: %w", s.path, err)
	}
	defer w.Close()
	dir := filepath.Dir(s.path)
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("policy: watch %s: %w", dir, err)
	}
	s.watchTarget(w, dir)
	s.watching.Store(true)
	defer s.watching.Store(false)

	var timer *time.Timer
	var fire <-chan time.Time
	var first time.Time // first event of the burst being debounced
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			// The directory holds other files (an audit log written on
			// every request, say) whose events must neither reload nor
			// keep postponing a reload.
			if !s.concerns(ev.Name, dir) {
				continue
			}
			// Debounced, but never beyond maxDebounce after the burst's
			// first event: a file rewritten without pause still reloads.
			wait := s.opts.Debounce
			if fire == nil {
				first = time.Now()
			} else if left := s.opts.Debounce*maxDebounceFactor - time.Since(first); left < wait {
				wait = max(left, 0)
			}
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			fire = timer.C
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			s.log.Warn("policy file watch error", "file", s.path, "error", err)
		case <-fire:
			fire = nil
			_, _ = s.reload(ctx, false)
			s.watchTarget(w, dir)
		}
	}
}

// maxDebounceFactor bounds a debounced burst of events: the reload
// comes at most this many Debounce intervals after its first event.
const maxDebounceFactor = 10

// concerns reports whether an event on name (in dir or in the directory
// of the path's symlink target) can change the policy: the policy file
// itself, its symlink target, or a Kubernetes atomic-writer entry
// ("..data" and the "..TIMESTAMP" directories a ConfigMap volume swaps).
func (s *Store) concerns(name, dir string) bool {
	name = filepath.Clean(name)
	if name == filepath.Clean(s.path) || strings.HasPrefix(filepath.Base(name), "..") {
		return true
	}
	if real, err := filepath.EvalSymlinks(s.path); err == nil && name == filepath.Clean(real) {
		return true
	}
	// An event in the target's directory (not dir) on a name the target
	// resolves through, e.g. a swapped symlink on the way.
	return filepath.Dir(name) != filepath.Clean(dir) && filepath.Base(name) == filepath.Base(s.path)
}

// watchTarget adds the directory of the path's symlink target, if it is
// not dir. Errors are ignored: the target may be mid-swap.
func (s *Store) watchTarget(w *fsnotify.Watcher, dir string) {
	real, err := filepath.EvalSymlinks(s.path)
	if err != nil {
		return
	}
	if td := filepath.Dir(real); td != dir {
		_ = w.Add(td)
	}
}
