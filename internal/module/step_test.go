package module

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/internal/poll"
)

// hanger blocks, ignoring its context, in the method In names until
// release is closed; Cleanup counts its calls.
type hanger struct {
	In       string `yaml:"-"`
	release  chan struct{}
	cleanups *atomic.Int32
	A        string `yaml:"a"`
}

func (h *hanger) maybe(method string) {
	if h.In == method {
		<-h.release
	}
}

func (h *hanger) UnmarshalYAML(n *yaml.Node) error {
	h.maybe("decode")
	type plain hanger
	return n.Decode((*plain)(h))
}

func (h *hanger) Provision(context.Context) error { h.maybe("Provision"); return nil }
func (h *hanger) Validate() error                 { h.maybe("Validate"); return nil }
func (h *hanger) Cleanup() error                  { h.cleanups.Add(1); return nil }

// TestLoadBoundsHungSteps checks the class "a plugin step that never
// returns fails its load within the step bound": New, decoding its
// settings, Provision and Validate each block (ignoring their context);
// Load returns within the bound (WithStepTimeout) an error wrapping
// ErrAbandoned that names the plugin, the step and the bound, and a
// plugin whose Provision or Validate was abandoned is cleaned up once
// that call returns (not while it runs). Before, Load waited for as long
// as the step blocked: a reload, or the start-up, hung (4 of 4 cases
// failed).
func TestLoadBoundsHungSteps(t *testing.T) {
	const bound = 50 * time.Millisecond
	for _, tc := range []struct {
		in, step    string
		wantCleanup int32
	}{
		{"New", "New", 0},
		{"decode", "decoding its settings", 0},
		{"Provision", "Provision", 1},
		{"Validate", "Validate", 1},
	} {
		t.Run(tc.in, func(t *testing.T) {
			release := make(chan struct{})
			var cleanups atomic.Int32
			r := New[any]("provider")
			r.Register("hung", func() any {
				h := &hanger{In: tc.in, release: release, cleanups: &cleanups}
				h.maybe("New")
				return h
			})
			var node yaml.Node
			if err := yaml.Unmarshal([]byte("a: b\n"), &node); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := r.Load(WithStepTimeout(t.Context(), bound), "hung", node.Content[0])
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(bound + 5*time.Second):
				close(release)
				t.Fatalf("Load did not return within %s", bound+5*time.Second)
			}
			if !errors.Is(err, ErrAbandoned) {
				t.Fatalf("Load: %v, want an error wrapping ErrAbandoned", err)
			}
			for _, want := range []string{`provider "hung": ` + tc.step, "not returned within " + bound.String()} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Load: %v, want it to say %q", err, want)
				}
			}
			if n := cleanups.Load(); n != 0 {
				t.Errorf("Cleanup ran %d times while the abandoned step still ran", n)
			}
			close(release)
			// The late Cleanup runs in the step's goroutine.
			poll.Within(5*time.Second, func() bool { return cleanups.Load() >= tc.wantCleanup })
			if n := cleanups.Load(); n != tc.wantCleanup {
				t.Errorf("Cleanup ran %d times after the abandoned step returned, want %d", n, tc.wantCleanup)
			}
		})
	}
}

// TestCallLateOnce: late runs once for an abandoned call, never for one
// that returned in time, and the panic of a late one is contained.
func TestCallLateOnce(t *testing.T) {
	var lates atomic.Int32
	late := func() { lates.Add(1) }
	v, err := Call(t.Context(), 0, "quick", func(context.Context) (int, error) { return 7, nil }, late)
	if v != 7 || err != nil {
		t.Errorf("Call = %d, %v, want 7, nil", v, err)
	}
	ctx, cancel := WithBound(t.Context(), time.Millisecond)
	defer cancel()
	release := make(chan struct{})
	_, err = Call(ctx, 0, "slow", func(context.Context) (int, error) { <-release; panic("late") }, late)
	if !errors.Is(err, ErrAbandoned) || !strings.Contains(err.Error(), "slow: ") {
		t.Errorf("Call = %v, want an error wrapping ErrAbandoned naming the call", err)
	}
	close(release)
	poll.Within(5*time.Second, func() bool { return lates.Load() >= 1 })
	if n := lates.Load(); n != 1 {
		t.Errorf("late ran %d times, want 1", n)
	}
}

// TestStepCancelledContext: a step that returns at once is not abandoned
// because its caller's context had ended (it ran to completion before
// steps were bounded), and the step's own context carries that end.
func TestStepCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for range 100 {
		v, err := Step(ctx, "quick", func(ctx context.Context) (error, error) { return ctx.Err(), nil }, nil)
		if err != nil || !errors.Is(v, context.Canceled) {
			t.Fatalf("Step = %v, %v; want the step's context cancelled and no error", v, err)
		}
	}
}
