package identity

import (
	"context"
	"log/slog"
	"time"

	"github.com/credgate/credgate/internal/filewatch"
)

// fileReloader re-reads one file and applies it when it changed, keeping
// the last good content (internal/filewatch).
type fileReloader = filewatch.Reloader

// newFileReloader watches path; what names it in logs ("trust bundle").
func newFileReloader(path, what string, interval time.Duration, log *slog.Logger, apply func(data []byte) error) *fileReloader {
	return &filewatch.Reloader{Paths: []string{path}, What: what, Interval: interval, Log: log,
		Apply: func(contents [][]byte) error { return apply(contents[0]) }}
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
