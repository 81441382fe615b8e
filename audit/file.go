package audit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credgate/credgate/internal/atomicfile"
	"github.com/credgate/credgate/internal/episode"
)

// RotatedSuffixFormat is the time layout of a rotated file's suffix:
// FILE is renamed FILE.20261202T054012.345Z (UTC, when it was rotated).
// Names sort in rotation order.
const RotatedSuffixFormat = "20060102T150405.000Z"

// FileOptions configure a RotatingFile.
type FileOptions struct {
	// MaxBytes rotates the file before a write that would take it past
	// this size; 0 never rotates by size. A file holds at least one
	// write (the Writer writes whole lines, up to a flush at a time), so
	// it can exceed MaxBytes by one flush.
	MaxBytes int64
	// Every rotates the file when it is older than this (checked at each
	// write); 0 never rotates by time.
	Every time.Duration
	// Mode is the permission of new files (default 0640).
	Mode os.FileMode
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// Log receives rotation failures, once per failure episode; nil
	// discards them.
	Log *slog.Logger
}

// ReopenReason says why a RotatingFile opened its path again.
type ReopenReason int

const (
	// ReopenRemoved: the path named no file (rm, or mv without a new
	// file: logrotate's nocreate).
	ReopenRemoved ReopenReason = iota
	// ReopenReplaced: the path names another file than the one written
	// (mv, then a new file created by another: logrotate's create).
	ReopenReplaced
	// ReopenTruncated: the file is shorter than what was written to it
	// (logrotate's copytruncate, or truncate).
	ReopenTruncated
	// ReopenSignal: asked for by Reopen (SIGHUP).
	ReopenSignal
	numReopenReasons
)

var reopenReasons = [numReopenReasons]string{"removed", "replaced", "truncated", "signal"}

// String is the reason's metric label.
func (r ReopenReason) String() string {
	if r < 0 || r >= numReopenReasons {
		return "unknown"
	}
	return reopenReasons[r]
}

// ReopenReasons lists every ReopenReason, in order.
func ReopenReasons() []ReopenReason {
	out := make([]ReopenReason, numReopenReasons)
	for i := range out {
		out[i] = ReopenReason(i)
	}
	return out
}

// RotatingFile is an append-only file that is renamed aside and reopened
// when it grows past a size or age. It rotates only between writes, and
// the Writer hands it whole lines, so no line is ever split across files;
// the hash chain simply continues in the new file. Before each write it
// checks that its path still names the file it writes (one stat): when
// another process removed, renamed, replaced or truncated it (an external
// logrotate, an operator), it opens the path again, creating the file if
// needed, and the chain continues there. Safe for concurrent use.
type RotatingFile struct {
	path string
	opts FileOptions

	mu     sync.Mutex
	f      *os.File
	info   os.FileInfo // of f, as opened
	size   int64
	opened time.Time
	// rot is the rotation's failure episodes.
	rot episode.Tracker
	// reopens counts the reopenings by ReopenReason.
	reopens [numReopenReasons]atomic.Uint64
}

// OpenFile opens (appending to) or creates path. If the file does not end
// with a newline (a write cut short by a crash), a newline is added first,
// so the cut line stays one line and the next line starts on its own.
func OpenFile(path string, opts FileOptions) (*RotatingFile, error) {
	if opts.Mode == 0 {
		opts.Mode = 0o640
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	r := &RotatingFile{path: path, opts: opts}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *RotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, r.opts.Mode)
	if err != nil {
		return fmt.Errorf("audit file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("audit file: %w", err)
	}
	size := st.Size()
	if size > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], size-1); err != nil && err != io.EOF {
			_ = f.Close()
			return fmt.Errorf("audit file: read its last byte: %w", err)
		}
		if last[0] != '\n' {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				_ = f.Close()
				return fmt.Errorf("audit file: end the cut last line: %w", err)
			}
			size++
		}
	}
	r.f, r.info, r.size, r.opened = f, st, size, r.opts.Now()
	return nil
}

// reopen opens the path again (creating the file if it is gone) and
// closes the file written so far; on failure it keeps that file. Rotation
// and every reopening go through it.
func (r *RotatingFile) reopen() error {
	old := r.f
	if err := r.open(); err != nil {
		return err
	}
	_ = old.Close()
	return nil
}

// check reopens the path when it no longer names the file written, or
// that file is shorter than written: someone else removed, renamed,
// replaced or truncated it. It returns an error, and the write waits
// (the Writer retries it), when the path cannot be opened again (its
// directory gone, no permission to create the file): lines written to a
// file no path names would be lost.
func (r *RotatingFile) check() error {
	st, err := os.Stat(r.path)
	var reason ReopenReason
	switch {
	case err == nil && os.SameFile(st, r.info):
		if st.Size() >= r.size {
			return nil
		}
		reason = ReopenTruncated
	case err == nil:
		reason = ReopenReplaced
	case errors.Is(err, fs.ErrNotExist):
		reason = ReopenRemoved
	default:
		return fmt.Errorf("audit file: cannot tell whether %s is still the file written, so the lines wait: %w", r.path, err)
	}
	if err := r.reopen(); err != nil {
		return fmt.Errorf("audit file %s was %s by another process and cannot be opened again, so the lines wait (retried): %w", r.path, reason, err)
	}
	r.reopens[reason].Add(1)
	r.opts.Log.Warn("audit file replaced or removed under the gateway: reopened; the chain continues in the file at its path",
		slog.String("file", r.path), slog.String("reason", reason.String()))
	return nil
}

// Write appends p, rotating first when the file is full or old enough.
func (r *RotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, errClosed
	}
	if err := r.check(); err != nil {
		return 0, err
	}
	if r.size > 0 && ((r.opts.MaxBytes > 0 && r.size+int64(len(p)) > r.opts.MaxBytes) ||
		(r.opts.Every > 0 && r.opts.Now().Sub(r.opened) >= r.opts.Every)) {
		if err := r.rotate(); err != nil {
			// Keep appending to the current file rather than lose lines.
			r.opened = r.opts.Now()
			if r.rot.Fail(time.Now(), err.Error()) {
				r.opts.Log.Error("audit file rotation failed; appending to the current file and trying again at each write (logged once until a rotation succeeds; /readyz shows the state)",
					slog.String("file", r.path), slog.Any("error", err))
			}
		} else if st, ended := r.rot.OK(); ended {
			r.opts.Log.Warn("audit file rotation works again", slog.String("file", r.path), slog.Uint64("failures", st.EpisodeFailures))
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

// rotate renames the file aside and opens a new one.
func (r *RotatingFile) rotate() error {
	name := r.path + "." + r.opts.Now().UTC().Format(RotatedSuffixFormat)
	for i := 1; ; i++ {
		// Any error but "it exists" ends the search (not only "it does
		// not": a name too long, a directory no longer searchable made
		// this loop spin for ever, the file's lock held); the rename
		// below then reports it.
		if _, err := os.Lstat(name); err != nil {
			break
		}
		name = fmt.Sprintf("%s.%s-%d", r.path, r.opts.Now().UTC().Format(RotatedSuffixFormat), i)
	}
	if err := r.f.Sync(); err != nil {
		return fmt.Errorf("audit file: sync before rotation: %w", err)
	}
	// Synced with its directory: after a crash the rotated lines are
	// under the rotated name, not back under the live one.
	if err := atomicfile.Rename(r.path, name); err != nil {
		return fmt.Errorf("audit file: rotate: %w", err)
	}
	// Renamed but no new file: the next write's check opens the path
	// again, and the lines wait until it can.
	return r.reopen()
}

// Reopen opens the path again now, creating the file if it is gone, and
// closes the file written so far; the chain continues in the file at the
// path. It is what an external log rotation's postrotate asks for
// (credgate serve calls it on SIGHUP); a write would reopen a removed,
// renamed or truncated file by itself (check), Reopen only makes it
// immediate. On failure the current file is kept.
func (r *RotatingFile) Reopen() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return errClosed
	}
	if err := r.reopen(); err != nil {
		return err
	}
	r.reopens[ReopenSignal].Add(1)
	r.opts.Log.Info("audit file reopened on request", slog.String("file", r.path))
	return nil
}

// Reopens returns how many times the file was opened again for reason.
func (r *RotatingFile) Reopens(reason ReopenReason) uint64 {
	if reason < 0 || reason >= numReopenReasons {
		return 0
	}
	return r.reopens[reason].Load()
}

// Status returns the state of the rotation.
func (r *RotatingFile) Status() OutputStatus { return r.rot.Status() }

// RotateErrors returns how many rotations failed.
func (r *RotatingFile) RotateErrors() uint64 { return r.rot.Status().Failures }

// Close closes the file.
func (r *RotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
