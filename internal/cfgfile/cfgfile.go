// Package cfgfile reads the files an operator points the gateway at —
// the config, the policy, the kill switch's state file — refusing what
// would hang or exhaust the reader instead of failing: a directory, a
// named pipe (whose read waits for a writer forever, holding a policy
// reload and every later one), a device such as /dev/zero (endless), a
// socket, and a file larger than MaxBytes. It exists so that every such
// loader gets the same checks and the same words. ReadSecret does the same
// for the small files that hold a secret (the admin token, the Redis
// password and encryption keys), which the gateway may read on a request.
package cfgfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// MaxBytes bounds a file Read returns: 64 MiB, orders of magnitude more
// than the largest policy (tens of thousands of rules) needs.
const MaxBytes = 64 << 20

// ErrNotRegular is wrapped by Read's error when the path (after symbolic
// links) is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is wrapped by Read's error when the file holds more than
// MaxBytes.
var ErrTooLarge = errors.New("file too large")

// Read returns the content of the regular file at path. Errors of
// opening it are os's, wrapped (errors.Is(err, fs.ErrNotExist) holds for
// a missing file); a path that is not a regular file, or a file over
// MaxBytes, gets an error that says what it is and what to do, wrapping
// ErrNotRegular or ErrTooLarge.
func Read(path string) ([]byte, error) {
	return read(context.Background(), path, MaxBytes, "a config, policy or state file")
}

// ReadContext is Read for a file read while a request waits (a CA bundle
// or a certificate a provider reads when it fetches): it returns ctx's
// error, wrapped, when ctx is done before the file is opened or between
// the chunks it is read in. A read of a regular file does not wait on
// another process, so the bound on its size bounds its time.
func ReadContext(ctx context.Context, path string) ([]byte, error) {
	return read(ctx, path, MaxBytes, "a config, policy or state file")
}

// MaxSecretBytes bounds a file ReadSecret returns: 64 KiB, far more than
// a token, a password or a key needs.
const MaxSecretBytes = 64 << 10

// ReadSecret is Read for a file that holds a secret (a token, a password,
// a key), bounded at MaxSecretBytes. The admin token is read at every
// admin request that presents one: a token file replaced by a named pipe
// would hold each such request forever, and one linked to /dev/zero would
// be read until memory ran out. Its errors never quote the content.
func ReadSecret(path string) ([]byte, error) {
	return read(context.Background(), path, MaxSecretBytes, "a secret file")
}

// ReadSecretContext is ReadSecret for a file read while a request waits
// (a provider's token, key or credential file, read when it fetches),
// with ReadContext's handling of ctx.
func ReadSecretContext(ctx context.Context, path string) ([]byte, error) {
	return read(ctx, path, MaxSecretBytes, "a secret file")
}

// chunk is how much read takes between two looks at its context.
const chunk = 32 << 10

func read(ctx context.Context, path string, limit int64, what string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	// O_NONBLOCK: opening a named pipe must not wait for a writer (the
	// Stat below refuses it); it changes nothing for a regular file.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %s, %w; name a regular file (a symbolic link to one is fine)", path, Kind(fi.Mode()), ErrNotRegular)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s holds %d bytes, more than the %d %s may: %w; is it the right file?", path, fi.Size(), limit, what, ErrTooLarge)
	}
	data := make([]byte, 0, min(fi.Size(), limit)+1)
	r := io.LimitReader(f, limit+1)
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		n, err := io.CopyN(sliceWriter{&data}, r, chunk)
		if err == io.EOF || err == nil && n < chunk {
			break
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s grew past %d bytes while read, more than %s may: %w; is it the right file?", path, limit, what, ErrTooLarge)
	}
	return data, nil
}

// sliceWriter appends what is written to the slice it points at.
type sliceWriter struct{ b *[]byte }

func (w sliceWriter) Write(p []byte) (int, error) {
	*w.b = append(*w.b, p...)
	return len(p), nil
}

// Kind names a non-regular file mode for people ("a directory", "a named
// pipe (FIFO)", "a socket", "a device", else "a special file"), for
// errors that refuse such a file.
func Kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}
