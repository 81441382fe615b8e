package slack

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/internal/redistest"
	"github.com/credgate/credgate/internal/saastest"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/providertest"
	"github.com/credgate/credgate/providers/rediscache"
	_ "github.com/credgate/credgate/providers/static"
)

const (
	clientID     = "1234567890.0987654321"
	clientSecret = "c11ent5ecretc11ent5ecret"
	firstRefresh = "xoxe-1-first-refresh-token"
)

// fixture is a fake Slack and a source credential whose refresh token
// is a file, as an operator would mount it.
type fixture struct {
	fake           *saastest.Fake
	ca, secretFile string
	refreshFile    string
	settings       string
	source         providers.Provider
}

func newFixture(t *testing.T, opts saastest.Options) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{secretFile: filepath.Join(dir, "secret"), refreshFile: filepath.Join(dir, "refresh")}
	write(t, f.secretFile, clientSecret)
	write(t, f.refreshFile, firstRefresh)
	opts.SlackClientID, opts.SlackClientSecret, opts.SlackRefreshToken = clientID, clientSecret, firstRefresh
	f.fake = saastest.New(opts)
	t.Cleanup(f.fake.Close)
	ca, err := f.fake.CAFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	f.ca = ca
	f.settings = "client_id: \"" + clientID + "\"\nsource: slack-app\ntoken_url: " + f.fake.URL + "/api/oauth.v2.access\nca_cert: " + ca + "\n"
	f.source = load(t, "static", f.sourceSettings())
	return f
}

func (f *fixture) sourceSettings() string {
	return "fields:\n  client_secret: {file: " + f.secretFile + "}\n  refresh_token: {file: " + f.refreshFile + "}\n"
}

func write(t *testing.T, path, v string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(v), 0o600); err != nil {
		t.Fatal(err)
	}
}

func load(t *testing.T, name, settings string) providers.Provider {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(settings), &n); err != nil {
		t.Fatal(err)
	}
	p, err := providers.Load(t.Context(), name, n.Content[0])
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return p
}

func (f *fixture) provider(t *testing.T) *Provider {
	t.Helper()
	p := load(t, Name, f.settings).(*Provider)
	p.SetInputs(map[string]providers.Provider{"slack-app": f.source})
	t.Cleanup(func() { _ = p.Cleanup() })
	return p
}

// TestConformance runs the kit. Each check builds a provider and a cache
// of its own, so with no cached credential each starts from the source:
// the fake's OnSlackRefresh stores every rotated refresh token there, as
// an operator recovering a chain would.
func TestConformance(t *testing.T) {
	var f *fixture
	f = newFixture(t, saastest.Options{OnSlackRefresh: func(rt string) { _ = os.WriteFile(f.refreshFile, []byte(rt), 0o600) }})
	providertest.CheckConformance(t, providertest.Conformance{
		Name:     Name,
		Settings: f.settings,
		Inputs:   map[string]providertest.Input{"slack-app": {Provider: "static", Settings: f.sourceSettings()}},
		Bad: []providertest.BadSettings{
			{Settings: "source: slack-app", Want: "set client_id"},
			{Settings: "client_id: \"1.2\"", Want: "set source"},
			{Settings: "client_id: \"1.2\"\nsource: slack-app\ntoken_url: http://slack.com/api/oauth.v2.access", Want: "use https"},
			{Settings: "client_id: \"1.2\"\nsource: slack-app\nca_cert: /nonexistent/ca.pem", Want: "ca_cert"},
		},
		Issued: f.fake.Refreshes,
		Stalled: func(url string) string {
			return "client_id: \"" + clientID + "\"\nsource: slack-app\ntoken_url: " + url + "/api/oauth.v2.access\n"
		},
		Lifetime:      f.fake.SetSlackLifetime,
		LifetimeField: "expires_in",
	})
}

// TestRotationSingleFlight: 100 concurrent first requests make one
// refresh; the refresh ahead of expiry uses the rotated refresh token
// from the cached credential (the source's was used up), again once.
func TestRotationSingleFlight(t *testing.T) {
	f := newFixture(t, saastest.Options{SlackTokenLifetime: time.Hour})
	p := f.provider(t)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	cache := providers.NewCache(providers.CacheOptions{Now: clock, RefreshAhead: 5 * time.Minute})
	t.Cleanup(cache.Close)
	b := providers.Bind(p, providers.CacheKey{Credential: "slack-bot", Provider: Name}, identity.Workload{Name: "w"})

	getAll := func() map[string]bool {
		tokens := map[string]bool{}
		var wg sync.WaitGroup
		var tmu sync.Mutex
		for range 100 {
			wg.Go(func() {
				c, _, err := cache.GetBound(t.Context(), b)
				if err != nil {
					t.Error(err)
					return
				}
				s, _ := c.Field(providers.FieldToken)
				tmu.Lock()
				tokens[s.Reveal()] = true
				tmu.Unlock()
			})
		}
		wg.Wait()
		return tokens
	}
	if got := getAll(); len(got) != 1 || f.fake.Refreshes() != 1 {
		t.Fatalf("100 concurrent first Gets: %d tokens, %d refreshes; want 1 and 1", len(got), f.fake.Refreshes())
	}
	// Into the refresh-ahead window: one background refresh, with the
	// rotated token (the first one is spent: the fake would refuse it).
	mu.Lock()
	now = now.Add(time.Hour - 5*time.Minute)
	mu.Unlock()
	getAll()
	// The fake counts the refresh before its answer reaches the cache:
	// wait for the cache to hold the rotated token.
	poll.True(t, 5*time.Second, "the background refresh to reach the cache", func() bool {
		c, _, err := cache.GetBound(t.Context(), b)
		if err != nil {
			return false
		}
		s, _ := c.Field(providers.FieldToken)
		return strings.Contains(s.Reveal(), "saastest-2-")
	})
	if f.fake.Refreshes() != 2 {
		t.Errorf("%d refreshes, want 2", f.fake.Refreshes())
	}
}

// TestRotationAcrossReplicas: two caches ("replicas") share Redis; the
// second refreshes with the refresh token the first stored, sealed,
// in the shared entry (providers.Previous from the Redis entry).
func TestRotationAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	f := newFixture(t, saastest.Options{SlackTokenLifetime: time.Hour})
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	key := rediscache.Key{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")}
	replica := func() (*providers.Cache, providers.Binding) {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: 0})
		t.Cleanup(func() { _ = rdb.Close() })
		st, err := rediscache.New(t.Context(), rediscache.Options{Client: rdb, Namespace: "slack", Keys: []rediscache.Key{key}, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		c := providers.NewCache(providers.CacheOptions{Now: clock, RefreshAhead: 5 * time.Minute, Shared: st})
		t.Cleanup(c.Close)
		return c, providers.Bind(f.provider(t), providers.CacheKey{Credential: "slack-bot", Provider: Name}, identity.Workload{})
	}
	a, ba := replica()
	b, bb := replica()
	if _, _, err := a.GetBound(t.Context(), ba); err != nil {
		t.Fatal(err)
	}
	// The source still names the first, spent refresh token; replica b
	// has never seen a credential. Past the refresh point, b must use
	// the one a stored in Redis.
	mu.Lock()
	now = now.Add(time.Hour - 5*time.Minute)
	mu.Unlock()
	c, _, err := b.GetBound(t.Context(), bb)
	if err != nil {
		t.Fatalf("replica b: %v", err)
	}
	if s, _ := c.Field(providers.FieldToken); !strings.Contains(s.Reveal(), "saastest-2-") || f.fake.Refreshes() != 2 {
		t.Errorf("replica b got token %q after %d refreshes; want the second token", s.Reveal(), f.fake.Refreshes())
	}
}

// TestRecoveryAndErrors: a refused rotated token falls back to a new one
// in the source; the service's refusals say what to fix, name no secret,
// and 5xx / rate limits are ErrUnavailable.
func TestRecoveryAndErrors(t *testing.T) {
	f := newFixture(t, saastest.Options{})
	p := f.provider(t)
	prev := &providers.Credential{Fields: map[string]providers.Secret{FieldRefreshToken: providers.NewSecret("xoxe-1-spent")}}
	// The source's first token is still valid: the fallback uses it.
	if _, err := p.Fetch(providers.WithPrevious(t.Context(), prev), providers.Request{Credential: "slack-bot"}); err != nil {
		t.Fatalf("fallback to the source's refresh token: %v", err)
	}
	// Both spent now.
	_, err := p.Fetch(providers.WithPrevious(t.Context(), prev), providers.Request{Credential: "slack-bot"})
	if err == nil || !strings.Contains(err.Error(), "reinstall the app") || errors.Is(err, providers.ErrUnavailable) {
		t.Errorf("spent refresh tokens: %v", err)
	}
	write(t, f.secretFile, "wrong-secret")
	f.fake.SetSlackRefreshToken(firstRefresh)
	_, err = p.Fetch(t.Context(), providers.Request{Credential: "slack-bot"})
	if err == nil || !strings.Contains(err.Error(), "bad_client_secret") || strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("bad client secret: %v", err)
	}
	for _, e := range []error{err} {
		for _, s := range []string{clientSecret, firstRefresh, "wrong-secret"} {
			if strings.Contains(e.Error(), s) {
				t.Errorf("error %q shows a secret", e)
			}
		}
	}
	down := load(t, Name, "client_id: \""+clientID+"\"\nsource: slack-app\ntoken_url: "+f.fake.URL+"/nowhere\nca_cert: "+f.ca+"\n").(*Provider)
	down.SetInputs(map[string]providers.Provider{"slack-app": f.source})
	if _, err := down.Fetch(t.Context(), providers.Request{}); err == nil || !strings.Contains(err.Error(), "check token_url") {
		t.Errorf("wrong token_url: %v", err)
	}
}
