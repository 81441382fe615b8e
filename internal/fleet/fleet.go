// Package fleet holds what the Redis-backed fleet features — the shared
// credential cache (providers/rediscache), the kill switch (killswitch)
// and the rate limiter (ratelimit) — each need in the same form: the
// "Redis answers / Redis is down" state with its degraded mode, the rule
// for a key namespace, and the random origin id a replica stamps on its
// messages.
//
// It exists so that each feature does not carry its own copy: a failed
// call marks Redis down once (one warning, one observer call), a success
// marks it up once (one info line), and a caller that went away is not
// Redis's fault.
package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"regexp"
	"sync"
	"sync/atomic"
)

// namespaceRE is compiled on first use: {1,64} makes a 26 KB program
// that a process without Redis never needs.
var namespaceRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`) })

// ValidNamespace reports whether ns may prefix Redis keys: 1 to 64
// letters, digits, '_', '.', ':' or '-'.
func ValidNamespace(ns string) bool { return namespaceRE().MatchString(ns) }

// NewOrigin returns a random id of n bytes, hex-encoded, for a replica to
// recognise its own messages (and tokens) in Redis.
func NewOrigin(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Health is whether Redis answered the last call of one feature. The zero
// value is "down"; it is safe for concurrent use.
type Health struct {
	up atomic.Bool
	// Log receives one line per transition (nil: slog.Default()).
	Log *slog.Logger
	// Down and Recovered are the messages of the two transitions, in the
	// feature's own words ("kill switch: Redis unavailable; the last known
	// switches stay in force").
	Down, Recovered string
	// OnError, if set, is called for every failed call (a metric).
	OnError func(op string)
	// OnChange, if set, is called on each transition with the new state.
	OnChange func(up bool)
}

// Up reports whether Redis answered the last call.
func (h *Health) Up() bool { return h.up.Load() }

// Fail records a failed call of operation op. The first failure after a
// success marks Redis down, logs Down with op and err (never a secret:
// callers pass Redis errors) and calls OnChange(false). A context.Canceled
// error — the caller left — is not counted.
func (h *Health) Fail(op string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	if h.OnError != nil {
		h.OnError(op)
	}
	if h.up.Swap(false) {
		h.log().Warn(h.Down, slog.String("op", op), slog.Any("error", err))
		if h.OnChange != nil {
			h.OnChange(false)
		}
	}
}

// Succeed records a call Redis answered; the first after a failure logs
// Recovered and calls OnChange(true).
func (h *Health) Succeed() {
	if !h.up.Swap(true) {
		h.log().Info(h.Recovered)
		if h.OnChange != nil {
			h.OnChange(true)
		}
	}
}

// Set sets the state without logging (at start, where the caller logs
// what it found).
func (h *Health) Set(up bool) { h.up.Store(up) }

func (h *Health) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.Default()
}
