// Package module is the machinery shared by the provider and injector
// registries: a name → constructor map that panics on empty or duplicate
// names, and the lifecycle that turns a name plus YAML settings into a
// ready module (New, strict decode, Provision, Validate, Cleanup on
// failure), in the style of Caddy's modules.
//
// It exists so that providers and injectors do not each carry a copy of
// this code. It is internal because its generic shape is not an API third
// parties should depend on: they use providers.Register and
// injectors.Register.
package module

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/internal/panics"
	"github.com/credgate/credgate/internal/yamlstrict"
)

// ErrPanicked marks a plugin method (New, decoding, Provision, Validate,
// Cleanup, Close) that panicked: Load and Guard return it as an error
// instead of letting the panic end the process, which on a reload would
// take the gateway down (and print the panic's value, which may hold a
// secret, on its standard error).
var ErrPanicked = errors.New("the plugin panicked")

// Guard calls fn and turns a panic in it into an error wrapping
// ErrPanicked that names what was called (what: "provider \"vault\"
// Provision"), where the panic happened and the type of its value, never
// the value (internal/panics).
func Guard(what string, fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: %w: %s; at %s", what, ErrPanicked, panics.Describe(p), firstLine(panics.Where(1)))
		}
	}()
	return fn()
}

// ErrAbandoned marks a plugin method that had not returned by its
// deadline (Call, GuardUntil): the caller goes on without it.
var ErrAbandoned = errors.New("the plugin did not return in time; it was abandoned and runs on")

// CleanupTimeout bounds the Cleanup calls of one release (Load's after a
// failed load; a replaced policy's, at a reload or at shutdown): a
// Cleanup that hangs must not hold a reload, which would never load
// another policy, nor the gateway's shutdown.
const CleanupTimeout = 5 * time.Second

// The states of a Call's goroutine.
const (
	callRunning int32 = iota
	callReturned
	callAbandoned
)

// Call is the one bounded call to a plugin's method: it calls fn with
// ctx, guarded as Guard does, in a goroutine of its own, and waits for it
// until ctx ends and grace more (a plugin that honours its context gets
// that long to return its own error). If fn has not returned by then,
// Call returns an error wrapping ErrAbandoned that names what was called
// and why it ended (context.Cause(ctx): give the context a cause that
// says the bound, as WithBound does), and leaves fn running: its
// goroutine ends when fn returns and then calls late (when not nil), so
// that the caller can release what the abandoned call built or count the
// calls still outstanding. late is called for an abandoned call only,
// exactly once.
func Call[T any](ctx context.Context, grace time.Duration, what string, fn func(context.Context) (T, error), late func()) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	// state settles who owns the result: the waiter, or (once it gave
	// up) the goroutine, which then calls late.
	var state atomic.Int32
	go func() {
		var r result
		r.err = Guard(what, func() (err error) { r.v, err = fn(ctx); return err })
		if !state.CompareAndSwap(callRunning, callReturned) && late != nil {
			late()
		}
		done <- r
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
	}
	if grace > 0 {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case r := <-done:
			return r.v, r.err
		case <-t.C:
		}
	}
	if !state.CompareAndSwap(callRunning, callAbandoned) {
		r := <-done // it returned as the wait ended
		return r.v, r.err
	}
	var zero T
	return zero, fmt.Errorf("%s: %w (%w)", what, ErrAbandoned, context.Cause(ctx))
}

// WithBound returns ctx ending after d, whose cause (context.Cause, and
// so Call's error) says so: "not returned within 10s".
func WithBound(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, d, fmt.Errorf("not returned within %s", d))
}

// GuardUntil calls fn as Guard does and waits for it until deadline (Call
// without a context for fn); then it returns an error wrapping
// ErrAbandoned and leaves fn running (its goroutine ends when fn
// returns).
func GuardUntil(deadline time.Time, what string, fn func() error) error {
	ctx, cancel := context.WithDeadlineCause(context.Background(), deadline, fmt.Errorf("not returned by its deadline, %s", deadline.Format(time.TimeOnly)))
	defer cancel()
	_, err := Call(ctx, 0, what, func(context.Context) (struct{}, error) { return struct{}{}, fn() }, nil)
	return err
}

// firstLine is the innermost frame of a panics.Where stack: the
// plugin's function that panicked.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Registry maps module names to constructors of T. It is safe for
// concurrent use. Kind ("provider", "injector") appears in panics and
// errors.
type Registry[T any] struct {
	kind  string
	mu    sync.RWMutex
	news  map[string]func() T
	infos map[string]Info
}

// Info is what a module says about itself for people (`credgate
// plugins`); the three registries' Module structs carry these fields.
type Info struct {
	// Doc is one line saying what the module does.
	Doc string
	// SettingDocs maps setting names (yaml keys) to one line each.
	SettingDocs map[string]string
}

// New returns an empty registry for modules of the given kind.
func New[T any](kind string) *Registry[T] {
	return &Registry[T]{kind: kind, news: map[string]func() T{}, infos: map[string]Info{}}
}

// Info returns what the module registered under name says about itself.
func (r *Registry[T]) Info(name string) Info {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.infos[name]
}

// Register adds a module. It panics if name is empty, newFn is nil or
// the name is taken: these are programming errors in an init function.
// info is optional.
func (r *Registry[T]) Register(name string, newFn func() T, info ...Info) {
	if name == "" {
		panic(fmt.Sprintf("%s module registered with an empty name", r.kind))
	}
	if newFn == nil {
		panic(fmt.Sprintf("%s module %q registered without a New function", r.kind, name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.news[name]; dup {
		panic(fmt.Sprintf("%s module %q registered twice", r.kind, name))
	}
	r.news[name] = newFn
	if len(info) > 0 {
		r.infos[name] = info[0]
	}
}

// Lookup returns the constructor registered under name.
func (r *Registry[T]) Lookup(name string) (func() T, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	f, ok := r.news[name]
	return f, ok
}

// Names returns the registered names, sorted.
func (r *Registry[T]) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.news))
	for n := range r.news {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// StepTimeout bounds each step of a plugin's load (New, decoding its
// settings, Provision, Validate; and CheckSources, CheckHost while a
// policy loads): a step that has not returned by then fails the load
// with an error wrapping ErrAbandoned that names the plugin, the step and
// the bound, so a hung plugin fails a reload (the last good
// configuration stays) or the start-up instead of holding it forever.
// Provision's context ends then too. WithStepTimeout changes it for a
// context (tests).
const StepTimeout = 10 * time.Second

// stepTimeoutKey is the context key of WithStepTimeout.
type stepTimeoutKey struct{}

// WithStepTimeout returns ctx under which plugin loads (Load, and the
// policy's CheckSources and CheckHost calls) bound each step by d instead
// of StepTimeout; d <= 0 leaves StepTimeout.
func WithStepTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, stepTimeoutKey{}, d)
}

// StepTimeoutFrom returns the step bound of ctx: WithStepTimeout's, or
// StepTimeout.
func StepTimeoutFrom(ctx context.Context) time.Duration {
	if d, ok := ctx.Value(stepTimeoutKey{}).(time.Duration); ok && d > 0 {
		return d
	}
	return StepTimeout
}

// Step calls fn as one bounded step of a plugin's load: Call, waiting
// StepTimeoutFrom(ctx) and no grace; late is Call's. what names the
// plugin and the step: `provider "vault": Provision`. fn's context ends
// when ctx does or the bound passes, but only the bound ends the wait: a
// step that returns at once (New, most Validates) is not abandoned
// because ctx was cancelled first, as it was not before steps were
// bounded.
func Step[T any](ctx context.Context, what string, fn func(context.Context) (T, error), late func()) (T, error) {
	wait, cancel := WithBound(context.WithoutCancel(ctx), StepTimeoutFrom(ctx))
	defer cancel()
	fctx, fcancel := context.WithCancelCause(ctx)
	defer fcancel(nil)
	stop := context.AfterFunc(wait, func() { fcancel(context.Cause(wait)) })
	defer stop()
	return Call(wait, 0, what, func(context.Context) (T, error) { return fn(fctx) }, late)
}

// Load builds the module registered under name: New(), strict decoding
// of settings into it (a nil node means no settings), Provision, then
// Validate. If Provision or Validate fails, Cleanup is called (when the
// module has one) so a half-built module leaks nothing.
//
// Provision may be Provision(context.Context) error or Provision() error.
// Decoding errors are returned as the *yaml.TypeError from yamlstrict
// (messages "line N: ..."). Errors from Provision and Validate are
// returned unchanged (joined with any Cleanup error): the module names
// its own problem and the caller knows which module it loaded. A panic in
// any of the module's methods is an error wrapping ErrPanicked (Guard),
// so that a plugin's bug fails its load, never the process. Each step
// is bounded (Step: StepTimeout, or WithStepTimeout's); one that has not
// returned by then fails the load with an error wrapping ErrAbandoned,
// and a module whose Provision or Validate was abandoned is cleaned up
// once that call returns. A Cleanup that has not returned after
// CleanupTimeout is abandoned too.
func (r *Registry[T]) Load(ctx context.Context, name string, settings *yaml.Node) (T, error) {
	var zero T
	newFn, ok := r.Lookup(name)
	if !ok {
		return zero, fmt.Errorf("unknown %s %q; available: %v", r.kind, name, r.Names())
	}
	what := func(method string) string { return fmt.Sprintf("%s %q: %s", r.kind, name, method) }
	m, err := Step(ctx, what("New"), func(context.Context) (T, error) { return newFn(), nil }, nil)
	if err != nil {
		return zero, err
	}
	if any(m) == nil {
		return zero, fmt.Errorf("%s %q: New returned nil", r.kind, name)
	}
	// A decoding error is the module's settings' (line-numbered), not a
	// failed step.
	var derr error
	if _, err := Step(ctx, what("decoding its settings"), func(context.Context) (struct{}, error) {
		derr = yamlstrict.Decode(settings, m)
		return struct{}{}, nil
	}, nil); err != nil {
		return zero, err
	}
	if derr != nil {
		return zero, derr
	}
	cleanup := func() error {
		c, ok := any(m).(interface{ Cleanup() error })
		if !ok {
			return nil
		}
		return GuardUntil(time.Now().Add(CleanupTimeout), what("Cleanup after a failed load"), c.Cleanup)
	}
	// late releases a module whose Provision or Validate was abandoned,
	// once that call returns (not while it runs: Cleanup would race it).
	late := func() { _ = cleanup() }
	step := func(method string, fn func(context.Context) error) error {
		_, err := Step(ctx, what(method), func(ctx context.Context) (struct{}, error) { return struct{}{}, fn(ctx) }, late)
		return err
	}
	switch p := any(m).(type) {
	case interface{ Provision(context.Context) error }:
		err = step("Provision", p.Provision)
	case interface{ Provision() error }:
		err = step("Provision", func(context.Context) error { return p.Provision() })
	}
	if err == nil {
		if v, ok := any(m).(interface{ Validate() error }); ok {
			err = step("Validate", func(context.Context) error { return v.Validate() })
		}
	}
	if err != nil {
		if errors.Is(err, ErrAbandoned) {
			return zero, err // cleaned up by late
		}
		if cerr := cleanup(); errors.Is(cerr, ErrPanicked) || errors.Is(cerr, ErrAbandoned) {
			err = errors.Join(err, cerr)
		} else if cerr != nil {
			err = errors.Join(err, fmt.Errorf("%s %q: cleanup after failed load: %w", r.kind, name, cerr))
		}
		return zero, err
	}
	return m, nil
}
