package providertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/policy"
	"github.com/credgate/credgate/providers"
)

// Conformance describes a provider for CheckConformance: settings that
// work against a fake of its service, and what the fake counts.
type Conformance struct {
	// Name is the provider's registered name (provider: NAME). Its package
	// must be imported by the test, so that it is registered.
	Name string
	// Settings are valid settings, as the YAML keys beside provider: at
	// the left margin ("env: X\n"), with which Fetch succeeds against the
	// test's fake service (or environment, or file).
	Settings string
	// Bad are settings the provider must refuse when a policy loads.
	Bad []BadSettings
	// Request is the Fetch request. Its Credential defaults to
	// "conformance".
	Request providers.Request
	// Issued, when set, returns how many credentials the service has
	// issued so far (token grants, mints); CheckConformance checks that
	// concurrent first Gets through a providers.Cache make one.
	Issued func() int
	// Stalled, when set, returns valid settings that point the provider
	// at url, an https:// server on 127.0.0.1 that accepts connections and
	// never answers; CheckConformance checks that Fetch returns soon after
	// its context is cancelled. The hostile check calls it with a plain
	// http:// loopback URL of an endpoint answering badly. Nil for
	// providers with no service.
	Stalled func(url string) string
	// NoExpiry opts out of the expiry check, for providers whose
	// credentials never expire (static: the cache keeps them for its
	// DefaultTTL). Without it, a fetched credential with no Expiry fails
	// that check, so a provider cannot drop its service's expiry unseen.
	NoExpiry bool
	// Unauthorized, when set, makes the provider's service refuse the
	// provider's own credentials from now on (on) or serve again (off),
	// as it does when they were revoked or are wrong: a token endpoint's
	// 401 invalid_client, GitHub's 401 to an app JWT, Vault's 403 to a
	// revoked token. Nil for providers with no service.
	Unauthorized func(on bool)
	// Secrets are configured secret values (a client secret, a key, a
	// Vault token, a subject token) that no error may contain; the
	// fetched credential's own values are checked too.
	Secrets []string
	// Inputs are the other credentials a provider that reads them
	// (providers.Composer) names in its settings, by name: each is
	// written beside the tested credential in the policy of the settings
	// check, and built and handed to SetInputs for the other checks.
	Inputs map[string]Input
}

// Input is one credential a Composer reads.
type Input struct {
	// Provider is its provider's registered name.
	Provider string
	// Settings are its keys beside provider:, as Conformance.Settings.
	Settings string
}

// BadSettings are settings a provider refuses, and a part of its error.
type BadSettings struct {
	// Settings are the YAML keys beside provider:, as Conformance.Settings.
	Settings string
	// Want is a substring of the error (after "FILE:LINE:COL: ").
	Want string
}

// CheckConformance runs the checks every provider must pass, each as a
// subtest:
//
//   - settings: an unknown key, and every Bad setting, fail the policy load
//     with FILE:LINE:COL inside the credential's block;
//   - redacted: a fetched credential's values appear in no printed form of
//     the credential, its fields or the provider (fmt verbs, JSON, slog);
//   - single-fetch: 32 concurrent first Gets through providers.Cache, each
//     binding the provider as the gateway does, share one cache key and
//     make one fetch (and, with Issued, one credential issued);
//   - expiry: a credential whose Expiry has passed on the cache's clock is
//     never returned by providers.Cache for the provider's binding: a Get
//     at or after it fetches anew and returns a credential that has not
//     expired, or an error. Without NoExpiry, a credential with no Expiry
//     fails it;
//   - ctx: with Stalled, Fetch returns an error within 2s of its context's
//     cancellation;
//   - hostile: with Stalled, against each broken or hostile answer of
//     hostileCases (redirects, endless and slow bodies, malformed JSON, an
//     echo of the request), Fetch fails in bounded time and memory,
//     follows no redirect and puts no secret it sent in its error
//     (checkHostile);
//   - no-proxy: with HTTPS_PROXY, HTTP_PROXY, ALL_PROXY (and their
//     lower-case forms, VAULT_PROXY_ADDR, VAULT_HTTP_PROXY) pointing at a
//     listener that fails the check if contacted, Fetch still reaches the
//     service directly and, with Stalled, a fetch from a name only a
//     proxy could resolve never connects to the proxy (providers must
//     build their clients with internal/httpclient, which ignores the
//     proxy environment). net/http reads that environment once per
//     process, so the check runs in a fresh copy of the test binary
//     started with it set;
//   - forget-shared: with Issued, for a provider whose binding asks for
//     reissue, an upstream's 401 (Cache.Forget) drops the credential from
//     a shared tier that, like Redis, drops only the credential it handed
//     out, with a max_ttl shorter than the credential's life and the
//     default: the next Get fetches a new one (checkForgetReachesShared);
//   - unauthorized: with Unauthorized, a Fetch the service refuses
//     returns an error that does not wrap providers.ErrUnavailable (the
//     gateway answers 502 and does not retry: a revoked key or client
//     is for an operator to fix) and contains no secret; an upstream's
//     401 to the cached credential drops it exactly when the provider's
//     binding asks for reissue (providers.Reissuer), the next Get then
//     failing rather than serving it; once the service serves again, the
//     provider fetches again (no failure is latched).
func CheckConformance(t *testing.T, c Conformance) {
	t.Helper()
	if c.Request.Credential == "" {
		c.Request.Credential = "conformance"
	}
	t.Run("settings", func(t *testing.T) { checkSettings(t, c) })
	t.Run("redacted", func(t *testing.T) { checkRedacted(t, c) })
	t.Run("single-fetch", func(t *testing.T) { checkSingleFetch(t, c) })
	if !c.NoExpiry {
		t.Run("expiry", func(t *testing.T) { checkExpiry(t, c) })
	}
	if c.Stalled != nil {
		t.Run("ctx", func(t *testing.T) { checkCancel(t, c) })
		t.Run("hostile", func(t *testing.T) { checkHostile(t, c) })
	}
	t.Run("no-proxy", func(t *testing.T) { checkNoProxy(t, c) })
	if c.Unauthorized != nil {
		t.Run("unauthorized", func(t *testing.T) { checkUnauthorized(t, c) })
	}
	if c.Issued != nil {
		t.Run("forget-shared", func(t *testing.T) { checkForgetReachesShared(t, c) })
	}
}

// policyWith writes a policy whose one credential has settings, and
// returns its path and the line range of the credential's block.
func policyWith(t *testing.T, c Conformance, settings string) (path string, first, last int) {
	t.Helper()
	var b strings.Builder
	b.WriteString("credentials:\n  " + c.Request.Credential + ":\n    provider: " + c.Name + "\n")
	lines := strings.Split(strings.TrimRight(settings, "\n"), "\n")
	for _, l := range lines {
		b.WriteString("    " + l + "\n")
	}
	first, last = 2, 3+len(lines)
	for _, name := range slices.Sorted(maps.Keys(c.Inputs)) {
		in := c.Inputs[name]
		b.WriteString("  " + name + ":\n    provider: " + in.Provider + "\n")
		for _, l := range strings.Split(strings.TrimRight(in.Settings, "\n"), "\n") {
			b.WriteString("    " + l + "\n")
		}
	}
	path = filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, first, last
}

// parse loads the policy at path, closing it at the end of the test.
func parse(t *testing.T, path string) error {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse(t.Context(), path, data)
	if err == nil {
		_ = pol.Close()
	}
	return err
}

var position = regexp.MustCompile(`^(.*):(\d+):(\d+): `)

func checkSettings(t *testing.T, c Conformance) {
	path, _, _ := policyWith(t, c, c.Settings)
	if err := parse(t, path); err != nil {
		t.Fatalf("the valid settings do not load: %v", err)
	}
	bad := append([]BadSettings{{
		Settings: strings.TrimRight(c.Settings, "\n") + "\nconformance_unknown_setting: 1",
		Want:     `unknown field "conformance_unknown_setting"`,
	}}, c.Bad...)
	for _, b := range bad {
		path, first, last := policyWith(t, c, b.Settings)
		err := parse(t, path)
		if err == nil {
			t.Errorf("settings %q loaded; want an error containing %q", b.Settings, b.Want)
			continue
		}
		msg := strings.Split(err.Error(), "\n")[0]
		m := position.FindStringSubmatch(msg)
		if m == nil || m[1] != path {
			t.Errorf("settings %q: error %q does not start with %s:LINE:COL", b.Settings, msg, path)
			continue
		}
		var line int
		fmt.Sscan(m[2], &line)
		if line < first || line > last {
			t.Errorf("settings %q: error at line %d, outside the credential's block (lines %d-%d): %s", b.Settings, line, first, last, msg)
		}
		if !strings.Contains(msg, b.Want) {
			t.Errorf("settings %q: error %q does not contain %q", b.Settings, msg, b.Want)
		}
	}
}

// load builds the provider from c.Settings, with Cleanup at the end of
// the test.
func load(t *testing.T, c Conformance, settings string) providers.Provider {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(settings), &n); err != nil {
		t.Fatalf("settings: %v", err)
	}
	var node *yaml.Node
	if len(n.Content) > 0 {
		node = n.Content[0]
	}
	p := loadNamed(t, c.Name, node)
	if cp, ok := p.(providers.Composer); ok && len(c.Inputs) > 0 {
		inputs := map[string]providers.Provider{}
		for name, in := range c.Inputs {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(in.Settings), &n); err != nil {
				t.Fatalf("input %s settings: %v", name, err)
			}
			var node *yaml.Node
			if len(n.Content) > 0 {
				node = n.Content[0]
			}
			inputs[name] = loadNamed(t, in.Provider, node)
		}
		cp.SetInputs(inputs)
	}
	return p
}

// loadNamed builds the provider registered as name, with Cleanup at the
// end of the test.
func loadNamed(t *testing.T, name string, node *yaml.Node) providers.Provider {
	t.Helper()
	p, err := providers.Load(t.Context(), name, node)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	if cu, ok := p.(providers.CleanerUpper); ok {
		t.Cleanup(func() { _ = cu.Cleanup() })
	}
	return p
}

func checkRedacted(t *testing.T, c Conformance) {
	p := load(t, c, c.Settings)
	cred, err := p.Fetch(t.Context(), c.Request)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if cred == nil || len(cred.Fields) == 0 {
		t.Fatalf("Fetch returned no credential fields")
	}
	if !cred.Expiry.IsZero() && !cred.Expiry.After(time.Now()) {
		t.Errorf("Fetch returned a credential that expired at %v", cred.Expiry)
	}
	var values []string
	for name, v := range cred.Fields {
		// Short values (a user name like "x") would match by chance.
		if s := v.Reveal(); len(s) >= 8 {
			values = append(values, s)
		} else if s == "" {
			t.Errorf("field %q is empty", name)
		}
	}
	var printed bytes.Buffer
	for _, v := range []any{cred, *cred, cred.Fields, p} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			fmt.Fprintf(&printed, verb+"\n", v)
		}
		if b, err := json.Marshal(v); err == nil {
			printed.Write(b)
		}
		slog.New(slog.NewJSONHandler(&printed, nil)).Info("x", "v", v)
		slog.New(slog.NewTextHandler(&printed, nil)).Info("x", "v", v)
	}
	for _, s := range values {
		if strings.Contains(printed.String(), s) {
			t.Errorf("a credential value appears in a printed form of the credential or the provider")
		}
	}
}

func checkSingleFetch(t *testing.T, c Conformance) {
	p := load(t, c, c.Settings)
	cache := providers.NewCache(providers.CacheOptions{})
	t.Cleanup(cache.Close)
	before := 0
	if c.Issued != nil {
		before = c.Issued()
	}
	var (
		mu      sync.Mutex
		fetches int
		keys    = map[providers.CacheKey]bool{}
		wg      sync.WaitGroup
		start   = make(chan struct{})
	)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			// Each request binds the provider, as the gateway does.
			b := providers.Bind(p, providers.CacheKey{Credential: c.Request.Credential, Version: "v1", Provider: c.Name}, c.Request.Workload)
			fetch := b.Fetch
			b.Fetch = func(ctx context.Context) (*providers.Credential, error) {
				mu.Lock()
				fetches++
				mu.Unlock()
				return fetch(ctx)
			}
			mu.Lock()
			keys[b.Key] = true
			mu.Unlock()
			if _, _, err := cache.GetBound(t.Context(), b); err != nil {
				t.Errorf("Get: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(keys) != 1 {
		t.Errorf("32 bindings of one caller made %d cache keys, want 1 (CacheScope must be stable)", len(keys))
	}
	if fetches != 1 {
		t.Errorf("32 concurrent first Gets made %d fetches, want 1", fetches)
	}
	if c.Issued != nil {
		if n := c.Issued() - before; n != 1 {
			t.Errorf("32 concurrent first Gets made the service issue %d credentials, want 1", n)
		}
	}
}

// fakeNow is a clock for the cache that moves only when set.
type fakeNow struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeNow) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeNow) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = t
}

// checkExpiry moves the cache's clock (not the provider's or its
// service's) to and past the first credential's Expiry. The provider may
// then return a fresh credential or one that is, on the cache's clock,
// already expired (its service's clock did not move); the cache must
// turn the second into an error, never serve it or the first.
func checkExpiry(t *testing.T, c Conformance) {
	p := load(t, c, c.Settings)
	clock := &fakeNow{now: time.Now()}
	// No refresh ahead, so that every fetch is one this check asks for,
	// and no error backoff, so that each Get after the clock moves
	// fetches again.
	cache := providers.NewCache(providers.CacheOptions{Now: clock.Now, RefreshAhead: -1, ErrorBackoff: -1})
	t.Cleanup(cache.Close)
	b := providers.Bind(p, providers.CacheKey{Credential: c.Request.Credential, Version: "v1", Provider: c.Name}, c.Request.Workload)
	var mu sync.Mutex
	fetches := 0
	fetch := b.Fetch
	b.Fetch = func(ctx context.Context) (*providers.Credential, error) {
		mu.Lock()
		fetches++
		mu.Unlock()
		return fetch(ctx)
	}
	first, _, err := cache.GetBound(t.Context(), b)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if first.Expiry.IsZero() {
		t.Fatalf("%s returned a credential with no Expiry; set Conformance.NoExpiry if its credentials never expire", c.Name)
	}
	for _, at := range []time.Time{first.Expiry, first.Expiry.Add(time.Second), first.Expiry.Add(24 * time.Hour)} {
		clock.Set(at)
		mu.Lock()
		before := fetches
		mu.Unlock()
		cred, _, err := cache.GetBound(t.Context(), b)
		mu.Lock()
		after := fetches
		mu.Unlock()
		if after == before {
			t.Errorf("Get %v after the credential's Expiry made no fetch", at.Sub(first.Expiry))
		}
		if err != nil {
			continue // a credential expired on the cache's clock, refused
		}
		if cred == first {
			t.Errorf("Get %v after the credential's Expiry returned that credential", at.Sub(first.Expiry))
		}
		if !cred.Expiry.IsZero() && !cred.Expiry.After(at) {
			t.Errorf("Get %v after the first credential's Expiry returned one that expired at %v", at.Sub(first.Expiry), cred.Expiry)
		}
	}
}

func checkCancel(t *testing.T, c Conformance) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, conn) // accepted, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, conn := range held {
			conn.Close()
		}
		mu.Unlock()
	})
	p := load(t, c, c.Stalled("https://"+ln.Addr().String()))
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := p.Fetch(ctx, c.Request)
		errc <- err
	}()
	// Let the fetch reach the stalled server, then cancel.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(held)
		mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-errc:
		t.Fatalf("Fetch returned before its context was cancelled (the stalled server never answers): %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-errc:
		if err == nil {
			t.Errorf("Fetch against a server that never answers returned no error")
		}
	case <-time.After(2 * time.Second):
		t.Errorf("Fetch did not return within 2s of its context's cancellation")
	}
}
