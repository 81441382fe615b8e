package audit

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"hash"
	"sync"
)

// Fingerprinter computes credential fingerprints for audit lines: the
// first 16 hex digits of HMAC-SHA256 under a key, over the credential's
// parts. Keyed, so that a fingerprint of a low-entropy secret cannot be
// checked against guesses by whoever reads the log; with a key shared by
// the replicas (audit.fingerprint_key_file), the same credential has the
// same fingerprint on every replica and across restarts, otherwise only
// within one process. Safe for concurrent use.
type Fingerprinter struct {
	pool sync.Pool
}

// NewFingerprinter returns a Fingerprinter keyed with key, or with 32
// random bytes when key is empty.
func NewFingerprinter(key []byte) *Fingerprinter {
	if len(key) == 0 {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
	}
	key = append([]byte(nil), key...)
	f := &Fingerprinter{}
	f.pool.New = func() any { return &fpState{h: hmac.New(sha256.New, key)} }
	return f
}

// fpState is a keyed HMAC and a scratch buffer, pooled.
type fpState struct {
	h   hash.Hash
	buf []byte
}

// Sum returns the fingerprint of parts, each written with its length so
// that ("ab","c") and ("a","bc") differ.
func (f *Fingerprinter) Sum(parts ...string) string {
	st := f.pool.Get().(*fpState)
	b := st.buf[:0]
	for _, p := range parts {
		l := len(p)
		b = append(b, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
		b = append(b, p...)
	}
	st.h.Reset()
	_, _ = st.h.Write(b)
	clear(b) // the scratch held secret values
	var sum [sha256.Size]byte
	s := st.h.Sum(sum[:0])
	var out [16]byte
	appendHex(out[:0], s[:8])
	if cap(b) <= 4<<10 {
		st.buf = b
	} else {
		st.buf = nil
	}
	f.pool.Put(st)
	return string(out[:])
}
