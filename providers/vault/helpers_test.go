package vault

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/httpclient"
	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/internal/vaulttest"
	"github.com/credgate/credgate/providers"

	"github.com/credgate/credgate/internal/syncbuf"
)

// realServer is the real Vault or OpenBao the tests run against when
// one is available (set once by TestMain, read-only afterwards).
var realServer *vaulttest.Real

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	r, err := vaulttest.FindReal(ctx)
	cancel()
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "vault tests: a real server was found but did not start (%v); using the in-repo emulator (internal/vaulttest)\n", err)
	case r != nil:
		realServer = r
		fmt.Fprintf(os.Stderr, "vault tests: using a real server (%s) at %s; fault-injection tests use the in-repo emulator\n", r.Kind, r.Addr)
	default:
		fmt.Fprintln(os.Stderr, "vault tests: no real server (VAULT_ADDR+VAULT_TOKEN unset, no vault or bao on PATH); using the in-repo emulator (internal/vaulttest)")
	}
	if p := os.Getenv("CREDGATE_PEERS_LOG"); p != "" {
		if f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			kind := "in-repo emulator (internal/vaulttest)"
			if realServer != nil {
				kind = "real " + realServer.Kind + " at " + realServer.Addr + " (fault tests: emulator)"
			}
			fmt.Fprintf(f, "providers/vault: vault: %s\n", kind)
			f.Close()
		}
	}
	code := m.Run()
	realServer.Stop()
	os.Exit(code)
}

// ---- fake clock

// fakeClock is a clock that moves only when Advance is called.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) TimerAt(at time.Time) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: at, ch: make(chan time.Time, 1)}
	if !c.now.Before(at) {
		t.ch <- c.now
		return t.ch, func() {}
	}
	c.timers = append(c.timers, t)
	return t.ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, x := range c.timers {
			if x == t {
				c.timers = append(c.timers[:i], c.timers[i+1:]...)
				return
			}
		}
	}
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if !c.now.Before(t.at) {
			t.ch <- c.now
		} else {
			kept = append(kept, t)
		}
	}
	c.timers = kept
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.True(t, 10*time.Second, what, cond)
}

// ---- test environment

// env is a Vault to test against plus an admin client for setting it up.
type env struct {
	addr  string
	root  string
	kind  string
	emu   *vaulttest.Server // nil on a real server
	clock *fakeClock        // nil: the wall clock
	admin *api.Client
	// policy is a Vault policy allowing everything, for login roles (a
	// real server gives login tokens only the default policy otherwise).
	policy string
	// events and logs receive what the providers loaded by e report.
	events *eventLog
	logs   *lockedBuffer
}

// eventLog is a providers.EventObserver that records events as
// "provider event result".
type eventLog struct {
	mu  sync.Mutex
	all []string
}

func (l *eventLog) ProviderEvent(provider, event, result string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, provider+" "+event+" "+result)
}

// count returns how many times "provider event result" was reported.
func (l *eventLog) count(what string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.all {
		if e == what {
			n++
		}
	}
	return n
}

// lockedBuffer captures output goroutines write while the test reads.
type lockedBuffer = syncbuf.Buffer

type envOpts struct {
	emulatorOnly bool   // the test injects faults or needs the fake clock in Vault
	fakeClock    bool   // the provider (and the emulator, if used) run on a fake clock
	namespace    string // emulator namespace
	tls          bool   // emulator serves HTTPS
	// skew puts the emulator's clock this far from the gateway's (real)
	// one; it implies emulatorOnly.
	skew time.Duration
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	e := &env{events: &eventLog{}, logs: &lockedBuffer{}}
	if o.fakeClock {
		e.clock = newFakeClock()
	}
	if realServer != nil && !o.emulatorOnly && o.skew == 0 {
		e.addr, e.root, e.kind = realServer.Addr, realServer.Token, realServer.Kind
	} else {
		opts := vaulttest.Options{Namespace: o.namespace, TLS: o.tls}
		if e.clock != nil {
			opts.Now = e.clock.Now
		}
		if o.skew != 0 {
			opts.Now = func() time.Time { return time.Now().Add(o.skew) }
		}
		e.emu = vaulttest.NewServer(opts)
		t.Cleanup(e.emu.Close)
		e.addr, e.root, e.kind = e.emu.URL, e.emu.RootToken, "emulator"
	}
	t.Logf("vault server: %s at %s", e.kind, e.addr)
	cfg := api.DefaultConfig()
	cfg.Address = e.addr
	cfg.MaxRetries = 0
	// The test's own admin client goes direct too, whatever
	// VAULT_PROXY_ADDR or HTTPS_PROXY say (providertest's no-proxy check
	// sets them).
	httpclient.Configure(cfg.HttpClient.Transport.(*http.Transport))
	if o.tls {
		if err := cfg.ConfigureTLS(&api.TLSConfig{CACertBytes: e.emu.CertPEM}); err != nil {
			t.Fatal(err)
		}
	}
	a, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.SetToken(e.root)
	a.SetNamespace(o.namespace)
	e.admin = a
	e.policy = "cgtest-" + randName()
	e.write(t, "sys/policies/acl/"+e.policy, map[string]any{"policy": `path "*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }`})
	t.Setenv(tokenEnv, e.root)
	return e
}

// tokenEnv is the environment variable the token-auth test settings read.
const tokenEnv = "CREDGATE_VAULT_TEST_TOKEN"

func randName() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (e *env) write(t *testing.T, path string, data map[string]any) *api.Secret {
	t.Helper()
	s, err := e.admin.Logical().WriteWithContext(context.Background(), path, data)
	if err != nil {
		t.Fatalf("setup: write %s: %v", path, err)
	}
	return s
}

func (e *env) read(t *testing.T, path string) *api.Secret {
	t.Helper()
	s, err := e.admin.Logical().ReadWithContext(context.Background(), path)
	if err != nil || s == nil {
		t.Fatalf("setup: read %s: %v", path, err)
	}
	return s
}

// mount enables a secrets engine at a fresh path and returns the path.
// extra is merged into the request body (options, config).
func (e *env) mount(t *testing.T, typ string, extra map[string]any) string {
	t.Helper()
	path := typ + "-" + randName()
	body := map[string]any{"type": typ}
	for k, v := range extra {
		body[k] = v
	}
	e.write(t, "sys/mounts/"+path, body)
	t.Cleanup(func() { _, _ = e.admin.Logical().Delete("sys/mounts/" + path) })
	return path
}

// enableAuth enables an auth method at a fresh path and returns it.
func (e *env) enableAuth(t *testing.T, typ string) string {
	t.Helper()
	path := typ + "-" + randName()
	e.write(t, "sys/auth/"+path, map[string]any{"type": typ})
	t.Cleanup(func() { _, _ = e.admin.Logical().Delete("sys/auth/" + path) })
	return path
}

// kv mounts a KV v2 engine.
func (e *env) kv(t *testing.T) string {
	return e.mount(t, "kv", map[string]any{"options": map[string]any{"version": "2"}})
}

// putKV writes a KV v2 version and returns its number.
func (e *env) putKV(t *testing.T, mount, name string, data map[string]any) int {
	t.Helper()
	// A fresh KV v2 mount upgrades itself for a moment on real servers.
	var s *api.Secret
	var err error
	waitFor(t, "kv mount ready", func() bool {
		s, err = e.admin.Logical().WriteWithContext(context.Background(), mount+"/data/"+name, map[string]any{"data": data})
		return err == nil
	})
	v, _ := s.Data["version"].(json.Number).Int64()
	return int(v)
}

// appRole creates a role and returns its role_id and a function making
// response-wrapped secret_ids (the wrapping tokens).
func (e *env) appRole(t *testing.T, tokenTTL, maxTTL string) (mount, roleID string, wrappedSecretID func() string) {
	t.Helper()
	mount = e.enableAuth(t, "approle")
	e.write(t, "auth/"+mount+"/role/gateway", map[string]any{"token_ttl": tokenTTL, "token_max_ttl": maxTTL, "token_policies": []string{e.policy}})
	roleID = e.read(t, "auth/"+mount+"/role/gateway/role-id").Data["role_id"].(string)
	return mount, roleID, func() string {
		t.Helper()
		w, err := e.admin.Clone()
		if err != nil {
			t.Fatal(err)
		}
		w.SetToken(e.root)
		w.SetWrappingLookupFunc(func(string, string) string { return "5m" })
		s, err := w.Logical().WriteWithContext(context.Background(), "auth/"+mount+"/role/gateway/secret-id", nil)
		if err != nil || s == nil || s.WrapInfo == nil {
			t.Fatalf("setup: wrapped secret-id: %v", err)
		}
		return s.WrapInfo.Token
	}
}

// jwtAuth configures a JWT auth method trusting a fresh ES256 key and
// returns the mount and a function signing tokens for the role.
func (e *env) jwtAuth(t *testing.T) (mount string, sign func(claims map[string]any) string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	mount = e.enableAuth(t, "jwt")
	e.write(t, "auth/"+mount+"/config", map[string]any{"jwt_validation_pubkeys": []string{string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}})
	e.write(t, "auth/"+mount+"/role/credgate", map[string]any{"role_type": "jwt", "bound_audiences": []string{"vault"},
		"user_claim": "sub", "bound_subject": "system:serviceaccount:egress:credgate", "token_ttl": "1h", "token_policies": []string{e.policy}})
	return mount, func(claims map[string]any) string {
		h, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT"})
		c, _ := json.Marshal(claims)
		in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
		d := sha256.Sum256([]byte(in))
		r, s, err := ecdsa.Sign(rand.Reader, key, d[:])
		if err != nil {
			t.Fatal(err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return in + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
}

// serverYAML is the server: block for settings, with the given auth.
func (e *env) serverYAML(auth string) string {
	return fmt.Sprintf("server:\n  address: %s\n  retries: 2\n  retry_backoff: 1ms\n  timeout: 5s\n  auth: %s\n", e.addr, auth)
}

// tokenAuth is the auth: mapping for token login with the root token.
const tokenAuth = "{method: token, token_env: " + tokenEnv + "}"

// load builds a provider from YAML settings through the registry
// lifecycle, on e's clock, and cleans it up at the end of the test.
func (e *env) load(t *testing.T, name, settings string) providers.Provider {
	t.Helper()
	p, err := e.tryLoad(t, name, settings)
	if err != nil {
		t.Fatalf("load %s: %v\n%s", name, err, settings)
	}
	t.Cleanup(func() {
		if err := p.(providers.CleanerUpper).Cleanup(); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
	})
	return p
}

func (e *env) tryLoad(t *testing.T, name, settings string) (providers.Provider, error) {
	t.Helper()
	var clk clock
	if e != nil && e.clock != nil {
		clk = e.clock
	}
	reg := providers.NewRegistry()
	reg.Register(providers.Module{Name: "vault", New: func() providers.Provider { return &Provider{clock: clk} }})
	reg.Register(providers.Module{Name: "vault-pki", New: func() providers.Provider { return &PKIProvider{clock: clk} }})
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(settings), &doc); err != nil {
		t.Fatalf("settings YAML: %v\n%s", err, settings)
	}
	ctx := context.Background()
	if e != nil {
		ctx = providers.WithEnv(ctx, providers.Env{
			Log:    slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Events: e.events,
		})
	}
	return reg.Load(ctx, name, doc.Content[0])
}

// writeFile writes content to a fresh file and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// workload returns a verified workload with the given factor attributes.
func workload(name string, attrs map[string]string) identity.Workload {
	return identity.Workload{Name: name, Factors: []identity.Factor{{Kind: identity.KindJWT, Subject: name, Attributes: attrs}}}
}

func fetch(t *testing.T, p providers.Provider, w identity.Workload) (*providers.Credential, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return p.Fetch(ctx, providers.Request{Credential: "test", Workload: w})
}

func mustFetch(t *testing.T, p providers.Provider, w identity.Workload) *providers.Credential {
	t.Helper()
	c, err := fetch(t, p, w)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return c
}

// reveal returns the credential's fields as plain strings.
func reveal(c *providers.Credential) map[string]string {
	out := map[string]string{}
	for k, v := range c.Fields {
		out[k] = v.Reveal()
	}
	return out
}

// errString is err's text, or "".
func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
