package audit

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
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

// RotatingFile is an append-only file that is renamed aside and reopened
// when it grows past a size or age. It rotates only between writes, and
// the Writer hands it whole lines, so no line is ever split across files;
// the hash chain simply continues in the new file. Safe for concurrent
// use.
type RotatingFile struct {
	path string
	opts FileOptions

	mu     sync.Mutex
	f      *os.File
	size   int64
	opened time.Time
	// rot is the rotation's failure episodes.
	rot episode.Tracker
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
	r.f, r.size, r.opened = f, st.Size(), r.opts.Now()
	if r.size > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], r.size-1); err != nil && err != io.EOF {
			_ = f.Close()
			return fmt.Errorf("audit file: read its last byte: %w", err)
		}
		if last[0] != '\n' {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				_ = f.Close()
				return fmt.Errorf("audit file: end the cut last line: %w", err)
			}
			r.size++
		}
	}
	return nil
}

// Write appends p, rotating first when the file is full or old enough.
func (r *RotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, errClosed
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
		if _, err := os.Lstat(name); os.IsNotExist(err) {
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
	old := r.f
	if err := r.open(); err != nil {
		// Renamed but no new file: go on writing to the renamed one.
		r.f = old
		return err
	}
	_ = old.Close()
	return nil
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
