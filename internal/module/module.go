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
// deadline (GuardUntil): the caller goes on without it.
var ErrAbandoned = errors.New("the plugin did not return in time; it was abandoned and runs on")

// CleanupTimeout bounds the Cleanup calls of one release (Load's after a
// failed load; a replaced policy's, at a reload or at shutdown): a
// Cleanup that hangs must not hold a reload, which would never load
// another policy, nor the gateway's shutdown.
const CleanupTimeout = 5 * time.Second

// GuardUntil calls fn as Guard does, in a goroutine of its own, and waits
// for it until deadline; then it returns an error wrapping ErrAbandoned
// and leaves fn running (its goroutine ends when fn returns).
func GuardUntil(deadline time.Time, what string, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- Guard(what, fn) }()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("%s: %w", what, ErrAbandoned)
	}
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
// so that a plugin's bug fails its load, never the process; a Cleanup
// that has not returned after CleanupTimeout is abandoned (ErrAbandoned).
func (r *Registry[T]) Load(ctx context.Context, name string, settings *yaml.Node) (T, error) {
	var zero T
	newFn, ok := r.Lookup(name)
	if !ok {
		return zero, fmt.Errorf("unknown %s %q; available: %v", r.kind, name, r.Names())
	}
	what := func(method string) string { return fmt.Sprintf("%s %q: %s", r.kind, name, method) }
	var m T
	if err := Guard(what("New"), func() error { m = newFn(); return nil }); err != nil {
		return zero, err
	}
	if any(m) == nil {
		return zero, fmt.Errorf("%s %q: New returned nil", r.kind, name)
	}
	var err error
	if perr := Guard(what("decoding its settings"), func() error { err = yamlstrict.Decode(settings, m); return nil }); perr != nil {
		return zero, perr
	}
	if err != nil {
		return zero, err
	}
	switch p := any(m).(type) {
	case interface{ Provision(context.Context) error }:
		err = Guard(what("Provision"), func() error { return p.Provision(ctx) })
	case interface{ Provision() error }:
		err = Guard(what("Provision"), p.Provision)
	}
	if err == nil {
		if v, ok := any(m).(interface{ Validate() error }); ok {
			err = Guard(what("Validate"), v.Validate)
		}
	}
	if err != nil {
		if c, ok := any(m).(interface{ Cleanup() error }); ok {
			if cerr := GuardUntil(time.Now().Add(CleanupTimeout), what("Cleanup after a failed load"), c.Cleanup); errors.Is(cerr, ErrPanicked) || errors.Is(cerr, ErrAbandoned) {
				err = errors.Join(err, cerr)
			} else if cerr != nil {
				err = errors.Join(err, fmt.Errorf("%s %q: cleanup after failed load: %w", r.kind, name, cerr))
			}
		}
		return zero, err
	}
	return m, nil
}
