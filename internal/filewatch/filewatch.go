// Package filewatch re-reads files that can change under a running
// gateway — trust bundles, key sets, certificates and keys, posture feeds —
// and applies their content when it changed, keeping the last good
// content when a new version cannot be read or is rejected.
//
// It polls rather than using inotify: polling sees Kubernetes ConfigMap and
// Secret volumes, which swap a symbolic link, cert-manager renewals and
// editors that rename a new file over the old one, all the same way.
package filewatch

import (
	"github.com/credgate/credgate/internal/cfgfile"

	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Reloader re-reads Paths every Interval and calls Apply with their
// contents (in Paths order) when any of them changed. Files that belong
// together (a certificate and its key) are one Reloader, so Apply never
// sees a new certificate with an old key twice in a row without the
// chance to reject it. Problems are logged once per distinct content.
type Reloader struct {
	// Paths are the files, read together.
	Paths []string
	// What names them in logs and errors ("trust bundle", "TLS
	// listener certificate").
	What string
	// Interval is the polling period.
	Interval time.Duration
	// Apply installs new content; an error keeps the previous content.
	Apply func(contents [][]byte) error
	// Log receives reload results; nil discards them.
	Log *slog.Logger

	mu      sync.Mutex
	last    [sha256.Size]byte // content last applied or rejected
	lastErr error
}

// Load reads and applies the files now. It reports whether the content
// changed, and the read or apply error; unchanged content is not applied
// again.
func (r *Reloader) Load() (changed bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := sha256.New()
	contents := make([][]byte, 0, len(r.Paths))
	for _, p := range r.Paths {
		data, err := cfgfile.Read(p)
		if err != nil {
			return false, fmt.Errorf("read %s %s: %w", r.What, p, err)
		}
		contents = append(contents, data)
		fmt.Fprintf(h, "%d:", len(data))
		h.Write(data)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	if sum == r.last {
		return false, r.lastErr
	}
	r.last = sum
	r.lastErr = r.Apply(contents)
	if r.lastErr != nil {
		r.lastErr = fmt.Errorf("%s %s: %w", r.What, strings.Join(r.Paths, ", "), r.lastErr)
	}
	return true, r.lastErr
}

// Run polls until ctx is done.
func (r *Reloader) Run(ctx context.Context) {
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	var logged error
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := r.Load()
		switch {
		case err != nil && (logged == nil || err.Error() != logged.Error()):
			log.Warn("reload failed; keeping the last good content", "files", r.Paths, "what", r.What, "error", err)
			logged = err
		case err == nil && (changed || logged != nil):
			log.Info("reloaded", "files", r.Paths, "what", r.What)
			logged = nil
		}
	}
}

// Start runs r in a goroutine until the returned stop function is
// called; stop waits for it to return.
func (r *Reloader) Start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}
