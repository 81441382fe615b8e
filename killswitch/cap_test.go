package killswitch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/credgate/credgate/internal/redistest"
)

// TestSwitchCap: the switches in force are bounded (Options.MaxEntries)
// on every backend — in memory, through Redis, and pending while Redis is
// down: a disable beyond the bound fails with ErrFull naming the setting
// that raises it, a tripwire's quarantine stops at three quarters so that
// an operator keeps the last quarter, a disable of a switch in force
// still answers (unchanged), and an enable makes room. 10× the bound of
// disables leave the state at its bound. Before, every disable was
// stored: an admin token holder (or anonymous callers tripping
// tripwires from many addresses) grew the Redis hash and the state file,
// which every replica re-reads and rewrites whole, without bound.
func TestSwitchCap(t *testing.T) {
	const max = 8
	srv := redistest.Start(t)
	backends := []struct {
		name string
		new  func(t *testing.T, ns string) *Switch
	}{
		{name: "memory", new: func(t *testing.T, _ string) *Switch {
			s, err := New(context.Background(), Options{MaxEntries: max})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
		{name: "redis", new: func(t *testing.T, ns string) *Switch {
			return newRedisSwitch(t, srv, Options{MaxEntries: max, Namespace: ns})
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.new(t, "cap-"+b.name)
			// Tripwires of anonymous callers from many addresses: at most
			// three quarters are set.
			quarantined := 0
			for i := range 10 * max {
				_, err := s.Quarantine(ctx, Entry{Kind: Source, Name: fmt.Sprintf("192.0.2.%d", i+1), By: "credgate tripwire"})
				switch {
				case err == nil:
					quarantined++
				case !errors.Is(err, ErrFull):
					t.Fatalf("quarantine %d: %v", i, err)
				}
			}
			if want := max - max/4; quarantined != want {
				t.Errorf("%d quarantines set, want %d (three quarters of %d)", quarantined, want, max)
			}
			// The operator's quarter is still there.
			disabled := 0
			var full error
			for i := range 10 * max {
				_, err := s.Disable(ctx, Entry{Kind: Rule, Name: fmt.Sprintf("rule-%d", i), By: "admin"})
				switch {
				case err == nil:
					disabled++
				case errors.Is(err, ErrFull):
					full = err
				default:
					t.Fatalf("disable %d: %v", i, err)
				}
				if n := s.Snapshot().Len(); n > max {
					t.Fatalf("after %d disables %d switches are in force, bound %d", i+1, n, max)
				}
			}
			if disabled != max/4 {
				t.Errorf("the operator disabled %d after the tripwires, want %d", disabled, max/4)
			}
			if full == nil || !strings.Contains(full.Error(), "admin.max_switches") || !strings.Contains(full.Error(), "8 are in force") {
				t.Errorf("the refusal does not say how many are in force and what raises the bound: %v", full)
			}
			// Disabling a switch in force answers, unchanged.
			if res, err := s.Disable(ctx, Entry{Kind: Rule, Name: "rule-0", By: "admin"}); err != nil || res.Changed {
				t.Errorf("disable of a switch in force at the bound = %+v, %v", res, err)
			}
			// An enable makes room for one.
			if _, err := s.Enable(ctx, Source, "192.0.2.1"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Disable(ctx, Entry{Kind: Workload, Name: "billing", By: "admin"}); err != nil {
				t.Errorf("disable after an enable: %v", err)
			}
			if n := s.Snapshot().Len(); n != max {
				t.Errorf("%d switches in force, want %d", n, max)
			}
		})
	}
	t.Run("redis down: pending disables", func(t *testing.T) {
		ctx := context.Background()
		down := redistest.Start(t)
		s := newRedisSwitch(t, down, Options{MaxEntries: max, Namespace: "cap-down"})
		for i := range max / 2 {
			if _, err := s.Disable(ctx, Entry{Kind: Rule, Name: fmt.Sprintf("r%d", i)}); err != nil {
				t.Fatal(err)
			}
		}
		down.Stop()
		pending := 0
		for i := range 10 * max {
			res, err := s.Disable(ctx, Entry{Kind: Workload, Name: fmt.Sprintf("w%d", i)})
			switch {
			case err == nil && res.Pending:
				pending++
			case err == nil:
				t.Fatalf("disable %d with Redis down was not pending: %+v", i, res)
			case !errors.Is(err, ErrFull):
				t.Fatalf("disable %d: %v", i, err)
			}
		}
		if pending != max/2 {
			t.Errorf("%d pending disables, want %d", pending, max/2)
		}
		if n := s.Snapshot().Len(); n != max {
			t.Errorf("%d switches in force, want %d", n, max)
		}
	})
}
