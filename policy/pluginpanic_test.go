package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/internal/module"
	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/providers"

	"github.com/credgate/credgate/internal/syncbuf"
)

const panicSecret = "sk_live_POLICY_PANIC_0123456789"

// panicCleanups counts the Cleanup calls of panicProvider.
var panicCleanups atomic.Int32

func init() {
	providers.Register(providers.Module{Name: "policytest-panic", New: func() providers.Provider { return new(panicProvider) }})
	injectors.Register(injectors.Module{Name: "policytest-panic-inj", New: func() injectors.Injector { return new(panicInjector) }})
}

// panicProvider panics, with a value holding panicSecret, in the method
// its `in` setting names.
type panicProvider struct {
	In string `yaml:"in"`
}

func (p *panicProvider) maybe(m string) {
	if p.In == m {
		panic("key " + panicSecret)
	}
}

func (p *panicProvider) Fetch(context.Context, providers.Request) (*providers.Credential, error) {
	return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret("x")}}, nil
}
func (p *panicProvider) Provision(context.Context) error { p.maybe("Provision"); return nil }
func (p *panicProvider) Validate() error {
	p.maybe("Validate")
	if p.In == "HangAfterFailing" {
		return errors.New("policytest-panic: invalid")
	}
	return nil
}
func (p *panicProvider) CheckSources() []providers.SourceProblem { p.maybe("CheckSources"); return nil }

// Inputs and SetInputs make it a Composer reading no credential.
func (p *panicProvider) Inputs() []string                        { p.maybe("Inputs"); return nil }
func (p *panicProvider) SetInputs(map[string]providers.Provider) { p.maybe("SetInputs") }
func (p *panicProvider) Cleanup() error {
	if p.In == "Cleanup" {
		panicCleanups.Add(1)
	}
	p.maybe("Cleanup")
	if strings.HasPrefix(p.In, "Hang") {
		<-hungCleanups // until the test ends
	}
	return nil
}

// hungCleanups is closed when TestHungCleanupBounded ends.
var hungCleanups = make(chan struct{})

// panicInjector panics in CheckHost when its `in` says so.
type panicInjector struct {
	In string `yaml:"in"`
}

func (i *panicInjector) Inject(*http.Request, *providers.Credential) error { return nil }
func (i *panicInjector) CheckHost(string) error {
	if i.In == "CheckHost" {
		panic("host key " + panicSecret)
	}
	return nil
}

var (
	_ providers.SourceChecker = (*panicProvider)(nil)
	_ injectors.HostChecker   = (*panicInjector)(nil)
)

// syncBuffer captures output goroutines write while the test reads.
type syncBuffer = syncbuf.Buffer

// TestPluginPanicKeepsThePolicy checks the class "a plugin method that
// panics while a policy loads or is released never ends the gateway":
// on a reload, a panic in a provider's Provision, Validate or
// CheckSources, or an injector's CheckHost, rejects the new policy (or,
// for CheckSources, reports the source) and the last good policy stays
// in force; a panic in Cleanup when a replaced policy is released is
// logged. No panic value reaches the log or an error. Before, each of
// these 5 ended the test process (the gateway, on a reload or a minute
// after it).
func TestPluginPanicKeepsThePolicy(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	writeFile(t, path, storePolicy(1))
	var logs syncBuffer
	s := newTestStore(t, path, StoreOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil)), MaxCloseDelay: time.Millisecond})
	good := s.Current()
	withPanic := func(cred, inj string) string {
		return strings.Replace(strings.Replace(storePolicy(1),
			"c: {provider: policytest, value: x}", "c: {provider: policytest-panic, in: "+cred+"}", 1),
			"as: policytest-inj}", "as: policytest-panic-inj, in: "+inj+"}", 1)
	}
	for _, tc := range []struct{ cred, inj string }{
		{"Provision", "none"}, {"Validate", "none"}, {"none", "CheckHost"}, {"Inputs", "none"}, {"SetInputs", "none"},
	} {
		t.Run(tc.cred+"/"+tc.inj, func(t *testing.T) {
			writeFile(t, path, withPanic(tc.cred, tc.inj))
			err := s.Reload(t.Context())
			if err == nil || !strings.Contains(err.Error(), "panicked") {
				t.Fatalf("Reload: %v, want an error saying the plugin panicked", err)
			}
			if strings.Contains(err.Error(), panicSecret) {
				t.Errorf("Reload's error holds the panic value: %v", err)
			}
			if s.Current() != good {
				t.Errorf("the last good policy is no longer in force")
			}
		})
	}
	t.Run("CheckSources", func(t *testing.T) {
		p, err := Parse(t.Context(), "p.yaml", []byte(withPanic("CheckSources", "none")))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		probs := p.SourceProblems()
		if len(probs) != 1 || !strings.Contains(probs.Error(), "panicked") || strings.Contains(probs.Error(), panicSecret) {
			t.Errorf("SourceProblems = %v, want one problem saying the plugin panicked", probs)
		}
	})
	t.Run("Cleanup", func(t *testing.T) {
		writeFile(t, path, withPanic("Cleanup", "none"))
		if err := s.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, storePolicy(2))
		if err := s.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
		poll.True(t, 5*time.Second, "the replaced policy's release to be logged", func() bool {
			return panicCleanups.Load() == 1 && strings.Contains(logs.String(), "panicked")
		})
	})
	if strings.Contains(logs.String(), panicSecret) {
		t.Errorf("the log holds a panic value:\n%s", logs.String())
	}
}

// TestHungCleanupBounded checks the class "a plugin's Cleanup that never
// returns holds neither a reload nor the shutdown": a reload whose
// provider fails Validate and then hangs in the Cleanup after it is
// rejected within module.CleanupTimeout (and the next reload loads), and
// releasing a policy whose provider hangs in Cleanup (a replaced policy,
// the gateway's shutdown: Store.Close) returns within it, with an error
// saying the Cleanup was abandoned; Store.Close with three such policies
// (the one in force, two replaced ones still held) within one bound, not
// three. Before, both waited for as long as
// the Cleanup blocked: the reload goroutine never loaded another policy
// and the gateway never finished shutting down (the test hung at the reload before).
func TestHungCleanupBounded(t *testing.T) {
	t.Cleanup(func() { close(hungCleanups) })
	bound := module.CleanupTimeout + 3*time.Second
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	writeFile(t, path, storePolicy(1))
	s := newTestStore(t, path, StoreOptions{})
	hung := strings.Replace(storePolicy(1), "c: {provider: policytest, value: x}", "c: {provider: policytest-panic, in: HangAfterFailing}", 1)

	within := func(what string, fn func() error) error {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- fn() }()
		select {
		case err := <-done:
			return err
		case <-time.After(bound):
			t.Fatalf("%s did not return within %s", what, bound)
			return nil
		}
	}
	writeFile(t, path, hung)
	err := within("a reload whose rejected provider's Cleanup hangs", func() error { return s.Reload(context.Background()) })
	if !errors.Is(err, module.ErrAbandoned) {
		t.Errorf("Reload: %v, want it rejected, the hung Cleanup abandoned", err)
	}
	writeFile(t, path, storePolicy(3))
	if err := within("the next reload", func() error { return s.Reload(context.Background()) }); err != nil || s.Current().Stats().Rules != 3 {
		t.Errorf("the next reload: %v", err)
	}

	p, err := Parse(t.Context(), "p.yaml", []byte(strings.Replace(hung, "HangAfterFailing", "Hang", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := within("releasing a policy whose Cleanup hangs", p.Close); !errors.Is(err, module.ErrAbandoned) {
		t.Errorf("Close: %v, want an error wrapping module.ErrAbandoned", err)
	}

	// The shutdown: the policy in force and two replaced ones still held
	// by requests, each hanging in Cleanup, are released by Store.Close
	// within one module.CleanupTimeout, not one per policy (15s before).
	hangs := strings.Replace(hung, "HangAfterFailing", "Hang", 1)
	writeFile(t, path, hangs)
	if err := s.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	for n := range 2 {
		s.Acquire() // never released: a request the drain left
		writeFile(t, path, strings.Replace(hangs, "d.test", fmt.Sprintf("d%d.test", n), -1))
		if err := s.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Retired(); got != 2 {
		t.Fatalf("%d replaced policies held, want 2", got)
	}
	start := time.Now()
	err = within("Store.Close with three policies whose Cleanup hangs", s.Close)
	if el := time.Since(start); el >= 2*module.CleanupTimeout {
		t.Errorf("Store.Close took %s, want under %s (one module.CleanupTimeout for all)", el, 2*module.CleanupTimeout)
	}
	if !errors.Is(err, module.ErrAbandoned) || strings.Count(err.Error(), "Cleanup") < 3 {
		t.Errorf("Store.Close: %v, want the three hung Cleanups reported abandoned", err)
	}
}

func init() {
	providers.Register(providers.Module{Name: "policytest-goroutine", New: func() providers.Provider { return new(goroutineProvider) }})
}

// goroutineProvider starts a goroutine in Provision and stops it in
// Cleanup; Fail makes Validate fail after it started.
type goroutineProvider struct {
	Fail bool `yaml:"fail"`
	stop chan struct{}
}

func (p *goroutineProvider) Provision(context.Context) error {
	p.stop = make(chan struct{})
	go func() { <-p.stop }()
	return nil
}

func (p *goroutineProvider) Validate() error {
	if p.Fail {
		return errors.New("policytest-goroutine: invalid")
	}
	return nil
}

func (p *goroutineProvider) Cleanup() error { close(p.stop); return nil }

func (p *goroutineProvider) Fetch(context.Context, providers.Request) (*providers.Credential, error) {
	return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret("x")}}, nil
}

// TestReloadsLeakNoGoroutine: over 40 reloads, alternately rejected (the
// provider started its goroutine, then failed Validate) and accepted
// (the replaced policy released after its grace period), every goroutine
// a provider started is stopped: the count comes back to where it was.
func TestReloadsLeakNoGoroutine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	pol := func(n int, fail bool) string {
		return strings.Replace(storePolicy(n), "c: {provider: policytest, value: x}", fmt.Sprintf("c: {provider: policytest-goroutine, fail: %v}", fail), 1)
	}
	writeFile(t, path, pol(1, false))
	s := newTestStore(t, path, StoreOptions{MaxCloseDelay: time.Millisecond})
	before := runtime.NumGoroutine()
	for i := range 40 {
		writeFile(t, path, pol(2+i, i%2 == 0))
		err := s.Reload(t.Context())
		if (err != nil) != (i%2 == 0) {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	poll.True(t, 5*time.Second, "the goroutines of the replaced and rejected policies to end", func() bool {
		return runtime.NumGoroutine() <= before
	})
}
