package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/providers"
)

func init() {
	providers.Register(providers.Module{Name: "gwtest-retire", New: func() providers.Provider { return new(retireProvider) }})
}

// retireProbes maps a retireProvider's probe setting to what the test
// observes and steers of every provider built with it (one per policy
// generation).
var retireProbes sync.Map // string → *retireProbe

// retireProbe counts fetches and Cleanups of the providers of one test
// and holds the fetch numbered blockAt until release is closed.
type retireProbe struct {
	token    string
	blockAt  int32
	fetches  atomic.Int32
	closes   atomic.Int32
	entered  chan struct{}
	release  chan struct{}
	failures atomic.Int32 // fetches from a closed provider
}

// retireProvider serves probe.token-N at its N-th fetch (counted over
// every generation) and fails once it was cleaned up, as a provider
// whose client or lease a Cleanup released does. It asks for a new
// credential on 401.
type retireProvider struct {
	Probe  string `yaml:"probe"`
	closed atomic.Bool
}

func (p *retireProvider) probe() *retireProbe {
	v, _ := retireProbes.Load(p.Probe)
	return v.(*retireProbe)
}

func (p *retireProvider) Fetch(ctx context.Context, _ providers.Request) (*providers.Credential, error) {
	pr := p.probe()
	n := pr.fetches.Add(1)
	if n == pr.blockAt {
		close(pr.entered)
		select {
		case <-pr.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if p.closed.Load() {
		pr.failures.Add(1)
		return nil, fmt.Errorf("gwtest-retire: fetch from a provider already cleaned up: %w", providers.ErrUnavailable)
	}
	return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(fmt.Sprintf("%s-%d", pr.token, n))}}, nil
}

func (*retireProvider) ReissueOnUnauthorized() bool { return true }

func (p *retireProvider) Cleanup() error {
	if !p.closed.Swap(true) {
		p.probe().closes.Add(1)
	}
	return nil
}

var (
	_ providers.Reissuer     = (*retireProvider)(nil)
	_ providers.CleanerUpper = (*retireProvider)(nil)
)

// retirePolicy is testPolicy with a rule whose credential is a
// gwtest-retire provider with probe key; generation tells one reload's
// file from the next (the same rules: a request in flight is kept).
func retirePolicy(key string, generation int) string {
	p := strings.Replace(testPolicy, "credentials:\n", "credentials:\n  retire:\n    provider: gwtest-retire\n    probe: "+key+"\n", 1)
	p = strings.Replace(p, "rules:\n", "rules:\n  - name: retire\n    from: local\n    to: api\n    paths: [/auth/retire/*]\n    inject: {credential: retire, as: bearer}\n", 1)
	return p + fmt.Sprintf("# generation %d\n", generation)
}

// TestReloadKeepsProvidersOfRequestsInFlight: a request that holds the
// policy a reload replaces completes with its credential whatever it was
// doing at the reload — waiting on a slow fetch, or fetching again after
// the upstream's 401 — over HTTP/1.1 and HTTP/2, after one reload or 50
// in a row; the replaced policy's providers are closed only once it ends
// (and the 49 replaced generations nothing held, at once). Before, they
// were closed a fixed minute after the reload, whatever still used them.
func TestReloadKeepsProvidersOfRequestsInFlight(t *testing.T) {
	for _, kind := range []struct {
		name string
		// blockAt is the fetch the reload happens during: the first
		// (a slow fetch) or the second (the reissue after a 401 to the
		// first credential; the origin accepts only the second).
		blockAt int32
	}{
		{"slow fetch", 1},
		{"reissue after 401", 2},
	} {
		for _, h2 := range []bool{false, true} {
			for _, reloads := range []int{1, 50} {
				t.Run(fmt.Sprintf("%s/h2=%v/reloads=%d", kind.name, h2, reloads), func(t *testing.T) {
					testReloadKeepsProviders(t, kind.blockAt, h2, reloads)
				})
			}
		}
	}
}

func testReloadKeepsProviders(t *testing.T, blockAt int32, h2 bool, reloads int) {
	tg := startGateway(t)
	key := t.Name()
	pr := &retireProbe{token: "retire-" + tg.token, blockAt: blockAt, entered: make(chan struct{}), release: make(chan struct{})}
	retireProbes.Store(key, pr)
	t.Cleanup(func() { retireProbes.Delete(key) })
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(pr.release) }) }
	t.Cleanup(release)
	tg.origin.mu.Lock()
	tg.origin.accept = pr.token + "-1"
	tg.origin.mu.Unlock()

	reload := func(gen int) {
		t.Helper()
		writeFile(t, tg.dir, "policy.yaml", []byte(retirePolicy(key, gen)))
		if err := tg.gw.ReloadPolicy(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	reload(1)
	waitFor(t, 5*time.Second, "the policy before the test's to be closed", func() bool { return tg.gw.store.Retired() == 0 })
	c := tg.client(t, h2)
	if blockAt == 2 {
		// Fetch 1 is cached by a first request the origin accepts; the
		// origin then revokes it: the next request's 401 is reissued.
		tg.origin.mu.Lock()
		tg.origin.accept = pr.token + "-1"
		tg.origin.mu.Unlock()
		resp, err := c.Get("https://" + apiHost + "/auth/retire/warm")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("warm-up: status %d", resp.StatusCode)
		}
		tg.origin.mu.Lock()
		tg.origin.accept = pr.token + "-2"
		tg.origin.mu.Unlock()
	}

	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Get("https://" + apiHost + "/auth/retire/x")
		if err != nil {
			done <- result{err: err}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- result{status: resp.StatusCode}
	}()
	select {
	case <-pr.entered:
	case r := <-done:
		t.Fatalf("the request ended (%d, %v) before its fetch number %d", r.status, r.err, blockAt)
	case <-time.After(10 * time.Second):
		t.Fatal("the provider's blocking fetch was never reached")
	}
	for i := range reloads {
		reload(2 + i)
	}
	// Every generation the reloads replaced is closed, but the request's.
	waitFor(t, 10*time.Second, "the replaced generations nothing holds to be closed", func() bool {
		return pr.closes.Load() == int32(reloads-1)
	})
	if n := tg.gw.store.Retired(); n != 1 {
		t.Errorf("replaced policies open while the request holds one: %d, want 1", n)
	}

	release()
	select {
	case r := <-done:
		if r.err != nil || r.status != http.StatusOK {
			t.Errorf("the request across the reload: status %d, error %v; want 200 with its credential", r.status, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the request did not end")
	}
	if n := pr.failures.Load(); n != 0 {
		t.Errorf("%d fetches from a provider already cleaned up", n)
	}
	waitFor(t, 10*time.Second, "the request's replaced policy to be closed once it ended", func() bool {
		return pr.closes.Load() == int32(reloads) && tg.gw.store.Retired() == 0
	})
}

// TestReloadKeepsWebSocketsPolicy: a WebSocket holds the policy that
// admitted it until it closes (its upgrade request is in flight until
// then): a reload that still admits it leaves it open and its replaced
// policy with it, which is released when the WebSocket closes.
func TestReloadKeepsWebSocketsPolicy(t *testing.T) {
	tg := startGateway(t)
	lc := openLongClient(t, tg, kindWebSocket, "")
	if !lc.alive() {
		t.Fatal("the WebSocket does not echo")
	}
	writeFile(t, tg.dir, "policy.yaml", []byte(testPolicy+"# generation 2\n"))
	if err := tg.gw.ReloadPolicy(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := tg.gw.store.Retired(); n != 1 {
		t.Errorf("replaced policies open while the WebSocket holds one: %d, want 1", n)
	}
	if !lc.alive() {
		t.Fatal("the WebSocket stopped echoing after a reload that still admits it")
	}
	_ = lc.c.Close()
	waitFor(t, 10*time.Second, "the WebSocket's replaced policy to be released once it closed", func() bool { return tg.gw.store.Retired() == 0 })
}
