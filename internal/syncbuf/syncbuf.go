// Package syncbuf is a bytes.Buffer that goroutines may write and read at
// once: the log and audit sink tests capture a gateway's output in, which
// its goroutines write while the test reads.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer behind a mutex. The zero value is empty and
// ready to use; it must not be copied after first use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	// fail, when set, is every Write's error (FailWrites).
	fail error
}

// Write appends p; it never fails.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, s.fail
	}
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Reset empties the buffer (a long benchmark's output is dropped as it
// goes).
func (s *Buffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// FailWrites makes every Write fail with err until restore is called: a
// sink that refuses writes (a full disk), for tests of what a failing
// log or audit output does.
func (s *Buffer) FailWrites(err error) (restore func()) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.fail = nil
		s.mu.Unlock()
	}
}

// Hold blocks every Write (and read) until release is called: a sink
// that stalls, for tests of what a stalled log or audit writer does.
func (s *Buffer) Hold() (release func()) {
	s.mu.Lock()
	return s.mu.Unlock
}
