package lograte

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestAllow(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(10*time.Second, func() time.Time { return now })
	steps := []struct {
		advance        time.Duration
		key            string
		ok             bool
		wantSuppressed int
	}{
		{0, "a", true, 0},               // first line of a key
		{time.Second, "a", false, 0},    // held back
		{time.Second, "a", false, 0},    // held back
		{0, "b", true, 0},               // another key is independent
		{8 * time.Second, "a", true, 2}, // interval over: says how many were held back
		{time.Second, "a", false, 0},
		{20 * time.Second, "a", true, 1},
		{20 * time.Second, "a", true, 0},
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		ok, n := l.Allow(s.key)
		if ok != s.ok || n != s.wantSuppressed {
			t.Errorf("step %d (%s): Allow = %v, %d; want %v, %d", i, s.key, ok, n, s.ok, s.wantSuppressed)
		}
	}
}

// TestConcurrent: of many simultaneous callers within one interval,
// exactly one writes, and the next line counts all the others.
func TestConcurrent(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := New(time.Second, clock)
	var wg sync.WaitGroup
	var allowed sync.Map
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, _ := l.Allow("k"); ok {
				allowed.Store(i, true)
			}
		}()
	}
	wg.Wait()
	n := 0
	allowed.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Fatalf("%d callers allowed, want 1", n)
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if ok, held := l.Allow("k"); !ok || held != 99 {
		t.Errorf("after the interval: Allow = %v, %d; want true, 99", ok, held)
	}
}

// TestKeysBounded: past MaxKeys, new keys share one entry: the table stops
// growing, and their lines are still limited (the first allowed, the
// rest held back and counted).
func TestKeysBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(time.Second, func() time.Time { return now })
	for i := range MaxKeys {
		if ok, _ := l.Allow(fmt.Sprint("k", i)); !ok {
			t.Fatalf("key %d: the first line of a key was held back", i)
		}
	}
	if ok, _ := l.Allow("new-1"); !ok {
		t.Fatal("the first line past MaxKeys was held back")
	}
	for i := range 100 {
		if ok, _ := l.Allow(fmt.Sprint("new-", i+2)); ok {
			t.Fatalf("new key %d past MaxKeys was allowed within the interval", i+2)
		}
	}
	if n := len(l.keys); n != MaxKeys+1 {
		t.Errorf("%d entries, want %d", n, MaxKeys+1)
	}
	now = now.Add(time.Second)
	if ok, held := l.Allow("new-x"); !ok || held != 100 {
		t.Errorf("after the interval: Allow = %v, %d; want true, 100", ok, held)
	}
}
