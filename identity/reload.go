package identity

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// fileReloader re-reads a file every interval and hands its content to
// apply when it changed. Polling (rather than inotify) sees Kubernetes
// ConfigMap and Secret volumes, which swap a symbolic link, and editors
// that rename a new file over the old one, the same way. A file that
// cannot be read or that apply rejects leaves the last good content in
// force; the problem is logged once per distinct content.
type fileReloader struct {
	path     string
	what     string // for logs: "trust bundle", "JWKS", "posture feed"
	interval time.Duration
	apply    func(data []byte) error
	log      *slog.Logger

	mu      sync.Mutex
	last    [sha256.Size]byte // content last applied or rejected
	lastErr error
}

// load reads and applies the file now. It reports whether the content
// changed, and the read or apply error; unchanged content is not applied
// again.
func (r *fileReloader) load() (changed bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, err := os.ReadFile(r.path)
	if err != nil {
		return false, fmt.Errorf("read %s %s: %w", r.what, r.path, err)
	}
	sum := sha256.Sum256(data)
	if sum == r.last {
		return false, r.lastErr
	}
	r.last = sum
	r.lastErr = r.apply(data)
	if r.lastErr != nil {
		r.lastErr = fmt.Errorf("%s %s: %w", r.what, r.path, r.lastErr)
	}
	return true, r.lastErr
}

// run polls until ctx is done.
func (r *fileReloader) run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	var logged error
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := r.load()
		switch {
		case err != nil && (logged == nil || err.Error() != logged.Error()):
			r.log.Warn("identity: reload failed; keeping the last good content", "file", r.path, "what", r.what, "error", err)
			logged = err
		case err == nil && (changed || logged != nil):
			r.log.Info("identity: reloaded", "file", r.path, "what", r.what)
			logged = nil
		}
	}
}

// background runs fn in a goroutine bound to a context that the returned
// function cancels, and waits for fn to return.
func background(fn func(ctx context.Context)) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(ctx)
	}()
	return func() error {
		cancel()
		<-done
		return nil
	}
}
