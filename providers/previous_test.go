package providers

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestPreviousIsTheReplacedCredential: a first fetch sees no previous
// credential; a refresh (ahead of expiry, or after it) sees the one it
// replaces.
func TestPreviousIsTheReplacedCredential(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	c := NewCache(CacheOptions{Now: clock, RefreshAhead: time.Minute})
	t.Cleanup(c.Close)
	n := 0
	var seen []string
	fetch := func(ctx context.Context) (*Credential, error) {
		mu.Lock()
		defer mu.Unlock()
		prev := "none"
		if p := Previous(ctx); p != nil {
			s, _ := p.Field(FieldToken)
			prev = s.Reveal()
		}
		seen = append(seen, prev)
		n++
		return &Credential{Fields: map[string]Secret{FieldToken: NewSecret(string(rune('a' + n - 1)))}, Expiry: now.Add(10 * time.Minute)}, nil
	}
	key := CacheKey{Credential: "c"}
	get := func() string {
		t.Helper()
		cred, _, err := c.Get(t.Context(), key, fetch)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := cred.Field(FieldToken)
		return s.Reveal()
	}
	if got := get(); got != "a" {
		t.Fatalf("first Get %q", got)
	}
	advance(20 * time.Minute) // expired: a fetch that replaces "a"
	if got := get(); got != "b" {
		t.Fatalf("Get after expiry %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != "none" || seen[1] != "a" {
		t.Errorf("previous credentials seen by the fetches %v, want [none a]", seen)
	}
}
