package fakekit

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// TokenStore is what a fake token service remembers of the access tokens
// it issued: for each, the fake's own record R (who it was issued to and
// how), the resource it is for and when it expires; and how many it
// issued. Tests ask it whether a token the client under test presents is
// one the fake issued, unexpired, for the resource. It is safe for
// concurrent use. azuretest's Entra and IMDS fakes keep theirs in one.
type TokenStore[R any] struct {
	now func() time.Time

	mu     sync.Mutex
	tokens map[string]storedToken[R]
	grants int
}

type storedToken[R any] struct {
	rec      R
	resource string
	expires  time.Time
}

// NewTokenStore returns an empty store whose clock is now (nil: time.Now).
func NewTokenStore[R any](now func() time.Time) *TokenStore[R] {
	if now == nil {
		now = time.Now
	}
	return &TokenStore[R]{now: now, tokens: map[string]storedToken[R]{}}
}

// Add records tok, issued as rec for resource until expires, and counts
// the grant.
func (s *TokenStore[R]) Add(tok string, rec R, resource string, expires time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[tok] = storedToken[R]{rec: rec, resource: resource, expires: expires}
	s.grants++
}

// Grants returns how many tokens were issued.
func (s *TokenStore[R]) Grants() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grants
}

// Tokens returns the tokens issued, expired ones too, in no order.
func (s *TokenStore[R]) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.tokens))
	for t := range s.tokens {
		out = append(out, t)
	}
	return out
}

// Info returns the record of tok while it is unexpired.
func (s *TokenStore[R]) Info(tok string) (R, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tok]
	if !ok || !s.now().Before(t.expires) {
		var zero R
		return zero, false
	}
	return t.rec, true
}

// ErrUnknownToken is Check's error for a token never issued or expired.
var ErrUnknownToken = errors.New("token unknown or expired")

// Check returns nil when tok is an unexpired token for resource.
func (s *TokenStore[R]) Check(tok, resource string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tok]
	switch {
	case !ok || !s.now().Before(t.expires):
		return ErrUnknownToken
	case t.resource != resource:
		return fmt.Errorf("token is for %s, not %s", t.resource, resource)
	}
	return nil
}
