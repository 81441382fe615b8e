package cli

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// TestSetMemoryLimit checks the Go soft memory limit serve sets from the
// container's: 90% of it, GOMEMLIMIT and AUTOMEMLIMIT winning, and the
// limit left alone when there is none or it cannot be read.
func TestSetMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	const gib = 1 << 30
	failing := func() (uint64, error) { return 0, errors.New("cgroup unreadable") }
	for _, tc := range []struct {
		name     string
		env      map[string]string
		provider memlimit.Provider
		want     int64 // -1: unchanged
		log      string
	}{
		{"container limit", nil, memlimit.Limit(gib), gib * 9 / 10, "Go memory limit set from the container's"},
		{"AUTOMEMLIMIT ratio", map[string]string{"AUTOMEMLIMIT": "0.5"}, memlimit.Limit(gib), gib / 2, `"ratio":0.5`},
		{"GOMEMLIMIT wins", map[string]string{"GOMEMLIMIT": "123MiB"}, memlimit.Limit(gib), -1, "Go memory limit from GOMEMLIMIT"},
		{"AUTOMEMLIMIT off", map[string]string{"AUTOMEMLIMIT": "off"}, memlimit.Limit(gib), -1, "AUTOMEMLIMIT=off"},
		{"no cgroup", nil, func() (uint64, error) { return 0, memlimit.ErrNoCgroup }, -1, ""},
		{"unreadable", nil, failing, -1, "set GOMEMLIMIT by hand"},
		{"bad AUTOMEMLIMIT", map[string]string{"AUTOMEMLIMIT": "90%"}, memlimit.Limit(gib), gib * 9 / 10, "nor off: using the default"},
		{"unlimited", nil, memlimit.Limit(math.MaxUint64), -1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOMEMLIMIT", "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			const before = 7 * gib
			debug.SetMemoryLimit(before)
			var logs bytes.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			got := setMemoryLimit(ctx, slog.New(slog.NewJSONHandler(&logs, nil)), tc.provider, time.Hour)
			want := tc.want
			if want == -1 {
				want = before
			}
			if now := debug.SetMemoryLimit(-1); got != want || now != want {
				t.Errorf("setMemoryLimit returned %d, limit now %d; want %d", got, now, want)
			}
			if !strings.Contains(logs.String(), tc.log) {
				t.Errorf("log %q does not say %q", logs.String(), tc.log)
			}
		})
	}
}

// TestSetMemoryLimitFollows checks that the soft limit follows the
// container's when it changes (a pod resized in place), and keeps the
// last one while the limit cannot be read.
func TestSetMemoryLimitFollows(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	t.Setenv("GOMEMLIMIT", "")
	var cur, calls atomic.Int64
	cur.Store(1000 << 20)
	provider := func() (uint64, error) {
		calls.Add(1)
		if n := cur.Load(); n > 0 {
			return uint64(n), nil
		}
		return 0, errors.New("cgroup unreadable")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if got := setMemoryLimit(ctx, slog.New(slog.DiscardHandler), provider, time.Millisecond); got != 900<<20 {
		t.Fatalf("limit %d, want %d", got, 900<<20)
	}
	waitLimit := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for debug.SetMemoryLimit(-1) != want {
			if time.Now().After(deadline) {
				t.Fatalf("limit %d, want %d", debug.SetMemoryLimit(-1), want)
			}
			runtime.Gosched()
		}
	}
	cur.Store(2000 << 20)
	waitLimit(1800 << 20)
	cur.Store(0) // unreadable: the last limit stays
	for n, deadline := calls.Load()+3, time.Now().Add(10*time.Second); calls.Load() < n; {
		if time.Now().After(deadline) {
			t.Fatal("the limit was not read again")
		}
		runtime.Gosched()
	}
	if got := debug.SetMemoryLimit(-1); got != 1800<<20 {
		t.Fatalf("limit %d while the container's was unreadable, want the last one, %d", got, 1800<<20)
	}
	cur.Store(500 << 20)
	waitLimit(450 << 20)
}
