package fakekit

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// TestTokenStore: a token added is known, with its record, until it
// expires, and only for its resource; grants count every Add; an unknown
// or expired token is ErrUnknownToken.
func TestTokenStore(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	s := NewTokenStore[string](func() time.Time { return now })
	s.Add("t1", "rec1", "https://r1", now.Add(time.Minute))
	s.Add("t2", "rec2", "https://r2", now.Add(2*time.Minute))
	if got := s.Grants(); got != 2 {
		t.Errorf("Grants = %d, want 2", got)
	}
	got := s.Tokens()
	slices.Sort(got)
	if !slices.Equal(got, []string{"t1", "t2"}) {
		t.Errorf("Tokens = %v", got)
	}
	for _, tc := range []struct {
		at       time.Duration
		tok, res string
		rec      string // "" when Info says unknown
		unknown  bool
		wrongRes bool
	}{
		{0, "t1", "https://r1", "rec1", false, false},
		{0, "t1", "https://r2", "rec1", false, true},
		{0, "nope", "https://r1", "", true, false},
		{time.Minute, "t1", "https://r1", "", true, false}, // expired at its instant
		{time.Minute, "t2", "https://r2", "rec2", false, false},
	} {
		now = time.Unix(1_000_000, 0).Add(tc.at)
		rec, ok := s.Info(tc.tok)
		if ok != (tc.rec != "") || rec != tc.rec {
			t.Errorf("+%s Info(%s) = %q, %v; want %q", tc.at, tc.tok, rec, ok, tc.rec)
		}
		err := s.Check(tc.tok, tc.res)
		switch {
		case tc.unknown:
			if !errors.Is(err, ErrUnknownToken) {
				t.Errorf("+%s Check(%s, %s) = %v, want ErrUnknownToken", tc.at, tc.tok, tc.res, err)
			}
		case tc.wrongRes:
			if err == nil || errors.Is(err, ErrUnknownToken) {
				t.Errorf("+%s Check(%s, %s) = %v, want a wrong-resource error", tc.at, tc.tok, tc.res, err)
			}
		case err != nil:
			t.Errorf("+%s Check(%s, %s) = %v, want nil", tc.at, tc.tok, tc.res, err)
		}
	}
}
