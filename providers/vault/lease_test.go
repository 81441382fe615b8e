package vault

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/fakekit"
	"github.com/credgate/credgate/internal/freeport"
	"github.com/credgate/credgate/internal/vaulttest"
	"github.com/credgate/credgate/providers"
)

// dbEnv is an emulator on a fake clock with a database engine whose role
// "billing-ro" leases credentials for 60s (max 1h).
func dbEnv(t *testing.T) (*env, string) {
	t.Helper()
	e := newEnv(t, envOpts{emulatorOnly: true, fakeClock: true})
	db := e.mount(t, "database", nil)
	e.write(t, db+"/roles/billing-ro", map[string]any{"db_name": "pg", "default_ttl": "60s", "max_ttl": "1h"})
	e.write(t, db+"/roles/search-ro", map[string]any{"db_name": "pg", "default_ttl": "60s", "max_ttl": "1h"})
	return e, db
}

func leaseOf(e *env, id string) vaulttest.Lease {
	for _, l := range e.emu.Leases() {
		if l.ID == id {
			return l
		}
	}
	return vaulttest.Lease{}
}

func TestDynamicLeaseRenewedAndRevoked(t *testing.T) {
	e, db := dbEnv(t)
	p := e.load(t, "vault", e.serverYAML(tokenAuth)+"path: "+db+"/creds/{{.workload.name}}-ro\nrevoke_on_cleanup: true")
	billing := workload("billing", nil)
	start := e.clock.Now()

	c1 := mustFetch(t, p, billing)
	if _, ok := c1.Field(providers.FieldUsername); !ok {
		t.Fatalf("credential has no username: %v", c1.Fields)
	}
	if _, ok := c1.Field(providers.FieldPassword); !ok {
		t.Fatalf("credential has no password: %v", c1.Fields)
	}
	// The credential expires at the end of the renewal interval, two
	// thirds of the 60s lease: the cache's refresh then renews it.
	if want := start.Add(40 * time.Second); !c1.Expiry.Equal(want) {
		t.Errorf("Expiry = %v, want %v (two thirds of the lease duration)", c1.Expiry, want)
	}
	if c1.Revoked == nil || c1.Revoked.Err() != nil {
		t.Errorf("Revoked = %v, want a live context", c1.Revoked)
	}
	leases := e.emu.Leases()
	if len(leases) != 1 {
		t.Fatalf("leases = %d, want 1", len(leases))
	}
	id := leases[0].ID

	// Early in the interval: the same secret, not renewed.
	e.clock.Advance(20 * time.Second)
	if c := mustFetch(t, p, billing); !c.Expiry.Equal(c1.Expiry) || leaseOf(e, id).Renewals != 0 {
		t.Errorf("at 20s: Expiry %v, renewals %d; want %v and none", c.Expiry, leaseOf(e, id).Renewals, c1.Expiry)
	}
	// In its last third (where the cache refreshes): renewed first, same
	// secret, a new interval.
	e.clock.Advance(10 * time.Second)
	c2 := mustFetch(t, p, billing)
	if diff := cmp.Diff(reveal(c1), reveal(c2)); diff != "" {
		t.Errorf("renewed credential differs (-first +second):\n%s", diff)
	}
	if n := leaseOf(e, id).Renewals; n != 1 {
		t.Errorf("renewals = %d, want 1", n)
	}
	if want := start.Add(30*time.Second + 40*time.Second); !c2.Expiry.Equal(want) {
		t.Errorf("Expiry after renewal = %v, want %v", c2.Expiry, want)
	}
	if n := e.emu.Count("creds"); n != 1 {
		t.Errorf("creds reads = %d, want 1", n)
	}
	if n := e.events.count("vault lease_renewal ok"); n != 1 {
		t.Errorf("lease_renewal ok events = %d, want 1", n)
	}

	// Another workload gets its own lease; the scopes differ.
	mustFetch(t, p, workload("search", nil))
	if a, b := p.(providers.Scoped).CacheScope(providers.Request{Workload: billing}), p.(providers.Scoped).CacheScope(providers.Request{Workload: workload("search", nil)}); a == b {
		t.Errorf("CacheScope is %q for both workloads", a)
	}

	if err := p.(providers.CleanerUpper).Cleanup(); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	for _, l := range e.emu.Leases() {
		if !l.Revoked {
			t.Errorf("lease %s not revoked on cleanup", l.Path)
		}
	}
	if n := e.events.count("vault lease_revoke ok"); n != 2 {
		t.Errorf("lease_revoke ok events = %d, want 2", n)
	}
	if !strings.Contains(e.logs.String(), "revoked leases on cleanup") {
		t.Errorf("no log line for the revocations on cleanup:\n%s", e.logs)
	}
}

// TestLeaseWithdrawnWhenVaultStopsVouching: whatever makes Vault stop
// vouching for a lease — a refused renewal, an operator's lease revoke,
// the parent token revoked — the secret is withdrawn (its credential's
// Revoked is done, so the cache drops it) as soon as the gateway learns
// of it, at the latest at the renewal the cache's refresh triggers, and a
// fresh secret is read.
func TestLeaseWithdrawnWhenVaultStopsVouching(t *testing.T) {
	tests := []struct {
		name      string
		stop      func(t *testing.T, e *env, leaseID string)
		wantCause string
		wantEvent string
	}{
		{"renewal refused", func(t *testing.T, e *env, _ string) { e.emu.RefuseLeaseRenewals(true) },
			"lease renewal refused", "vault lease_renewal refused"},
		{"lease revoked by an operator", func(t *testing.T, e *env, id string) {
			e.write(t, "sys/leases/revoke", map[string]any{"lease_id": id})
		}, "lease not found (HTTP 400)", "vault lease_renewal refused"},
		{"parent token revoked", func(t *testing.T, e *env, _ string) { e.emu.RevokeLoginTokens() },
			errTokenRevoked.Error(), "vault relogin ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, db := dbEnv(t)
			mount, roleID, wrapped := e.appRole(t, "1h", "24h")
			auth := fmt.Sprintf("{method: approle, mount: %s, role_id: %s, secret_id_file: %s}", mount, roleID, writeFile(t, "sid", wrapped()))
			p := e.load(t, "vault", e.serverYAML(auth)+"path: "+db+"/creds/billing-ro")
			c1 := mustFetch(t, p, identity.Workload{})
			tt.stop(t, e, e.emu.Leases()[0].ID)

			e.clock.Advance(30 * time.Second) // the cache refreshes in the interval's last third
			c2 := mustFetch(t, p, identity.Workload{})
			if reveal(c1)["username"] == reveal(c2)["username"] {
				t.Fatalf("still the old username %q", reveal(c2)["username"])
			}
			if n := e.emu.Count("creds"); n != 2 {
				t.Errorf("creds reads = %d, want 2", n)
			}
			if c1.Revoked.Err() == nil {
				t.Fatal("the old credential's Revoked is not done: the cache would keep serving it")
			}
			if cause := context.Cause(c1.Revoked); !strings.Contains(cause.Error(), tt.wantCause) {
				t.Errorf("cause = %v, want %q", cause, tt.wantCause)
			}
			if c2.Revoked.Err() != nil {
				t.Errorf("the fresh credential is revoked: %v", context.Cause(c2.Revoked))
			}
			if e.events.count(tt.wantEvent) == 0 {
				t.Errorf("no %q event in %v", tt.wantEvent, e.events.all)
			}
			logs := e.logs.String()
			for _, c := range []*providers.Credential{c1, c2} {
				for k, v := range reveal(c) {
					if strings.Contains(logs, v) {
						t.Errorf("the %s of a credential is in the log:\n%s", k, logs)
					}
				}
			}
		})
	}
}

// TestLeaseReplacedBeforeParentTokenDies is the lease lineage: the
// gateway's token (60s, max 100s) is renewed, then replaced by a new
// login before its max TTL; Vault revokes the 1h database lease it read
// when it dies. Through the cache, every second for 200s, the credential
// handed out is never one whose lease Vault has revoked.
func TestLeaseReplacedBeforeParentTokenDies(t *testing.T) {
	e, db := dbEnv(t)
	e.write(t, db+"/roles/long", map[string]any{"db_name": "pg", "default_ttl": "1h", "max_ttl": "24h"})
	mount, roleID, wrapped := e.appRole(t, "60s", "100s")
	auth := fmt.Sprintf("{method: approle, mount: %s, role_id: %s, secret_id_file: %s}", mount, roleID, writeFile(t, "sid", wrapped()))
	p := e.load(t, "vault", e.serverYAML(auth)+"path: "+db+"/creds/long")
	cache := providers.NewCache(providers.CacheOptions{Now: e.clock.Now})
	t.Cleanup(cache.Close)
	key := providers.CacheKey{Credential: "db", Provider: "vault"}

	users := map[string]bool{}
	for i := 0; i <= 200; i++ {
		cred, _, err := cache.Get(context.Background(), key, func(ctx context.Context) (*providers.Credential, error) {
			return p.Fetch(ctx, providers.Request{Credential: "db"})
		})
		if err != nil {
			t.Fatalf("at %ds: %v", i, err)
		}
		user := reveal(cred)["username"]
		users[user] = true
		for _, l := range e.emu.Leases() {
			if l.Username == user && l.Revoked {
				t.Fatalf("at %ds: handed out %s, whose lease Vault revoked with its parent token", i, l.Path)
			}
		}
		e.clock.Advance(time.Second)
		waitFor(t, "the token renewer to catch up", func() bool {
			c := p.(*Provider).client
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.tok == nil || c.tok.next.After(e.clock.Now())
		})
	}
	if n := e.emu.Count("renew-self"); n < 2 {
		t.Errorf("token renewals = %d, want the token renewed before the re-login", n)
	}
	if n := e.emu.Count("login approle"); n < 2 {
		t.Errorf("logins = %d, want a re-login before the max TTL", n)
	}
	if len(users) < 2 {
		t.Errorf("one database user for 200s; want the lease replaced with its parent token")
	}
}

// TestTokenMethodRenewsWithCreationTTL: a token picked up 50s into its
// 60s TTL is renewed for 60s (its creation TTL), not for the 10s it had
// left when it was read; renew_increment, when set, is asked for instead.
func TestTokenMethodRenewsWithCreationTTL(t *testing.T) {
	tests := []struct {
		name      string
		increment string
		want      time.Duration
	}{
		{"creation TTL", "", 60 * time.Second},
		{"renew_increment", ", renew_increment: 45s", 45 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOpts{emulatorOnly: true, fakeClock: true})
			kv := e.kv(t)
			e.putKV(t, kv, "x", map[string]any{"v": "value"})
			sec := e.write(t, "auth/token/create", map[string]any{"ttl": "60s", "renewable": true, "policies": []string{e.policy}})
			e.clock.Advance(50 * time.Second)
			t.Setenv("CREDGATE_VAULT_TEST_LATE_TOKEN", sec.Auth.ClientToken)
			p := e.load(t, "vault", e.serverYAML("{method: token, token_env: CREDGATE_VAULT_TEST_LATE_TOKEN"+tt.increment+"}")+"path: "+kv+"/data/x")
			mustFetch(t, p, identity.Workload{})

			e.clock.Advance(7 * time.Second) // two thirds of the 10s left
			waitFor(t, "the token to be renewed", func() bool { return e.emu.Count("renew-self") == 1 })
			waitFor(t, "the renewed TTL", func() bool {
				tok := p.(*Provider).client.current()
				return tok != nil && tok.ttl == tt.want
			})
			if n := e.events.count("vault token_renewal ok"); n != 1 {
				t.Errorf("token_renewal ok events = %d, want 1", n)
			}
		})
	}
}

func TestTokenRenewedThenRelogin(t *testing.T) {
	e := newEnv(t, envOpts{emulatorOnly: true, fakeClock: true})
	kv := e.kv(t)
	e.putKV(t, kv, "x", map[string]any{"v": "value"})
	mount, roleID, wrapped := e.appRole(t, "60s", "100s")
	auth := fmt.Sprintf("{method: approle, mount: %s, role_id: %s, secret_id_file: %s}", mount, roleID, writeFile(t, "sid", wrapped()))
	p := e.load(t, "vault", e.serverYAML(auth)+"path: "+kv+"/data/x")
	mustFetch(t, p, identity.Workload{})

	e.clock.Advance(41 * time.Second) // 2/3 of 60s
	waitFor(t, "the token to be renewed", func() bool { return e.emu.Count("renew-self") == 1 })
	waitFor(t, "the renewed expiry", func() bool {
		tok := p.(*Provider).client.current()
		return tok != nil && tok.expires.Equal(e.clock.Now().Add(59*time.Second))
	})
	// The next renewal is capped by the 100s max TTL to 19s, less than a
	// third of the login TTL: the client logs in again instead.
	e.clock.Advance(40 * time.Second)
	waitFor(t, "a second login", func() bool { return e.emu.Count("login approle") == 2 })
	mustFetch(t, p, identity.Workload{})
	if n := e.emu.Count("unwrap"); n != 1 {
		t.Errorf("unwraps = %d, want 1 (the secret_id is kept after unwrapping)", n)
	}
}

func TestTokenRevokedRelogin(t *testing.T) {
	e := newEnv(t, envOpts{emulatorOnly: true})
	kv := e.kv(t)
	e.putKV(t, kv, "x", map[string]any{"v": "value"})
	e.putKV(t, kv, "forbidden", map[string]any{"v": "value"})
	mount, roleID, wrapped := e.appRole(t, "1h", "24h")
	auth := fmt.Sprintf("{method: approle, mount: %s, role_id: %s, secret_id_file: %s}", mount, roleID, writeFile(t, "sid", wrapped()))
	p := e.load(t, "vault", e.serverYAML(auth)+"path: "+kv+"/data/x")
	mustFetch(t, p, identity.Workload{})
	e.emu.RevokeLoginTokens()
	mustFetch(t, p, identity.Workload{})
	if n := e.emu.Count("login approle"); n != 2 {
		t.Errorf("logins = %d, want 2 (a re-login after the revocation)", n)
	}

	// A path the policy does not allow: 403 without a re-login.
	e.emu.Deny(kv + "/data/forbidden")
	auth2 := fmt.Sprintf("{method: approle, mount: %s, role_id: %s, secret_id_file: %s}", mount, roleID, writeFile(t, "sid", wrapped()))
	q := e.load(t, "vault", e.serverYAML(auth2)+"path: "+kv+"/data/forbidden")
	_, err := fetch(t, q, identity.Workload{})
	if !strings.Contains(errString(err), "vault: read "+kv+"/data/forbidden: permission denied (HTTP 403)") || errors.Is(err, providers.ErrUnavailable) {
		t.Fatalf("Fetch error = %v, want permission denied, not unavailable", err)
	}
	if n := e.emu.Count("login approle"); n != 3 {
		t.Errorf("logins = %d, want 3 (no re-login for a policy refusal)", n)
	}
}

// TestCleanup is revoke_on_cleanup as docs/providers/vault.md states it,
// per login method: with it, the leases are revoked, and the gateway's
// token too unless it was given with the token method; without it,
// neither (the leases die with the token, which is no longer renewed).
// Either way the credentials handed out are withdrawn from the cache.
func TestCleanup(t *testing.T) {
	tests := []struct {
		name          string
		method        string
		revoke        bool
		wantRevoked   bool // the lease
		wantTokenLive bool
	}{
		{"approle with revoke_on_cleanup", MethodAppRole, true, true, false},
		{"token with revoke_on_cleanup", MethodToken, true, true, true},
		{"approle", MethodAppRole, false, false, true},
		{"token", MethodToken, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, db := dbEnv(t)
			auth := ""
			switch tt.method {
			case MethodAppRole:
				mount, roleID, wrapped := e.appRole(t, "1h", "24h")
				auth = fmt.Sprintf("{method: approle, mount: %s, role_id: %s, secret_id_file: %s}", mount, roleID, writeFile(t, "sid", wrapped()))
			case MethodToken:
				sec := e.write(t, "auth/token/create", map[string]any{"ttl": "1h", "policies": []string{e.policy}})
				t.Setenv("CREDGATE_VAULT_TEST_GIVEN_TOKEN", sec.Auth.ClientToken)
				auth = "{method: token, token_env: CREDGATE_VAULT_TEST_GIVEN_TOKEN}"
			}
			p, err := e.tryLoad(t, "vault", e.serverYAML(auth)+"path: "+db+"/creds/billing-ro"+fmt.Sprintf("\nrevoke_on_cleanup: %v", tt.revoke))
			if err != nil {
				t.Fatal(err)
			}
			cred := mustFetch(t, p, identity.Workload{})
			if err := p.(providers.CleanerUpper).Cleanup(); err != nil {
				t.Fatal(err)
			}
			ls := e.emu.Leases()
			if len(ls) != 1 || ls[0].Revoked != tt.wantRevoked {
				t.Errorf("leases after cleanup = %+v, want one, revoked %v", ls, tt.wantRevoked)
			}
			if live := e.emu.LiveTokens() == 1; live != tt.wantTokenLive {
				t.Errorf("token live after cleanup = %v, want %v", live, tt.wantTokenLive)
			}
			if cred.Revoked.Err() == nil {
				t.Error("the credential handed out is still valid for the cache after cleanup")
			}
			want := map[bool]int{true: 1}[tt.revoke]
			if n := e.events.count(p.(*Provider).client.name + " lease_revoke ok"); n != want {
				t.Errorf("lease_revoke ok events = %d, want %d", n, want)
			}
		})
	}
}

func TestTemplatedPathRejectsEscapes(t *testing.T) {
	e, db := dbEnv(t)
	p := e.load(t, "vault", e.serverYAML(tokenAuth)+"path: "+db+"/creds/{{.workload.team}}-ro")
	tests := []struct {
		name string
		w    identity.Workload
	}{
		{"dotdot", workload("a", map[string]string{"team": ".."})},
		{"dotdot prefix", workload("a", map[string]string{"team": "../../sys/leases"})},
		{"slash", workload("a", map[string]string{"team": "billing/../../x"})},
		{"encoded slash", workload("a", map[string]string{"team": "billing%2f"})},
		{"empty", workload("a", map[string]string{"team": ""})},
		{"space", workload("a", map[string]string{"team": "a b"})},
		{"newline", workload("a", map[string]string{"team": "a\nb"})},
		{"query", workload("a", map[string]string{"team": "a?version=1"})},
		{"missing", workload("a", nil)},
		{"factors disagree", identity.Workload{Name: "a", Factors: []identity.Factor{
			{Kind: "jwt", Attributes: map[string]string{"team": "billing"}},
			{Kind: "mtls", Attributes: map[string]string{"team": "search"}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fetch(t, p, tt.w)
			if !errors.Is(err, ErrTemplateValue) {
				t.Fatalf("Fetch error = %v, want ErrTemplateValue", err)
			}
		})
	}
	if n := e.emu.Count("creds"); n != 0 {
		t.Errorf("Vault was asked %d times; a rejected path must not be read", n)
	}
	cred := mustFetch(t, p, workload("a", map[string]string{"team": "billing"}))
	if _, ok := cred.Field(providers.FieldPassword); !ok {
		t.Errorf("no password for a valid attribute")
	}
	t.Run("anonymous", func(t *testing.T) {
		q := e.load(t, "vault", e.serverYAML(tokenAuth)+"path: "+db+"/creds/{{.workload.name}}-ro")
		if _, err := fetch(t, q, identity.Workload{}); !errors.Is(err, ErrTemplateValue) {
			t.Fatalf("Fetch error = %v, want ErrTemplateValue for an anonymous caller", err)
		}
	})
}

func TestUnavailable(t *testing.T) {
	e := newEnv(t, envOpts{emulatorOnly: true})
	kv := e.kv(t)
	e.putKV(t, kv, "x", map[string]any{"v": "value"})
	sealed := e.load(t, "vault", e.serverYAML(tokenAuth)+"path: "+kv+"/data/x")
	mustFetch(t, sealed, identity.Workload{}) // logged in; now seal
	e.emu.Seal()
	defer e.emu.Unseal()

	down := fmt.Sprintf("server:\n  address: http://127.0.0.1:%d\n  retries: 1\n  retry_backoff: 1ms\n  auth: %s\npath: a/data/b", freeport.Get(t), tokenAuth)
	tests := []struct {
		name    string
		p       providers.Provider
		wantErr string
	}{
		{"sealed", sealed, "vault: read " + kv + "/data/x: Vault is sealed (HTTP 503) after 3 attempts"},
		{"unreachable", e.load(t, "vault", down), "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fetch(t, tt.p, identity.Workload{})
			if !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(errString(err), tt.wantErr) {
				t.Fatalf("Fetch error = %v, want ErrUnavailable and %q", err, tt.wantErr)
			}
		})
	}
	t.Run("context ends", func(t *testing.T) {
		release := e.emu.Hold()
		defer release()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		e.emu.Unseal()
		_, err := sealed.Fetch(ctx, providers.Request{})
		if !errors.Is(err, providers.ErrUnavailable) {
			t.Fatalf("Fetch error = %v, want ErrUnavailable", err)
		}
	})
}

// TestCacheServesWhileVaultDown runs the provider behind the credential
// cache: when Vault stops, the cached credential is served until it
// expires, then requests fail with ErrUnavailable (503); when Vault is
// slow, requests for a cached credential do not wait for the refresh.
func TestCacheServesWhileVaultDown(t *testing.T) {
	setup := func(t *testing.T) (*env, providers.Provider, *providers.Cache) {
		e := newEnv(t, envOpts{emulatorOnly: true, fakeClock: true})
		kv := e.kv(t)
		e.putKV(t, kv, "x", map[string]any{"v": "cached_value"})
		p := e.load(t, "vault", e.serverYAML(tokenAuth)+"path: "+kv+"/data/x\nfield: v\nttl: 60s")
		c := providers.NewCache(providers.CacheOptions{Now: e.clock.Now, RefreshAhead: 20 * time.Second, ErrorBackoff: -1})
		t.Cleanup(c.Close)
		return e, p, c
	}
	get := func(t *testing.T, c *providers.Cache, p providers.Provider) (string, bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		cred, hit, err := c.Get(ctx, providers.CacheKey{Credential: "x", Provider: "vault"}, func(ctx context.Context) (*providers.Credential, error) {
			return p.Fetch(ctx, providers.Request{Credential: "x"})
		})
		if err != nil {
			return "", hit, err
		}
		s, _ := cred.Field(providers.FieldToken)
		return s.Reveal(), hit, nil
	}

	t.Run("stopped", func(t *testing.T) {
		e, p, c := setup(t)
		if v, _, err := get(t, c, p); err != nil || v != "cached_value" {
			t.Fatalf("first Get = %q, %v", v, err)
		}
		e.emu.Close()
		e.clock.Advance(50 * time.Second) // in the refresh window; the refresh fails
		if v, hit, err := get(t, c, p); err != nil || !hit || v != "cached_value" {
			t.Fatalf("Get with Vault down before expiry = %q, hit %v, %v; want the cached value", v, hit, err)
		}
		e.clock.Advance(11 * time.Second) // expired
		waitFor(t, "the failed refresh to finish", func() bool {
			_, _, err := get(t, c, p)
			return err != nil
		})
		_, _, err := get(t, c, p)
		if !errors.Is(err, providers.ErrUnavailable) {
			t.Fatalf("Get after expiry with Vault down = %v, want ErrUnavailable", err)
		}
	})
	t.Run("slow", func(t *testing.T) {
		e, p, c := setup(t)
		if _, _, err := get(t, c, p); err != nil {
			t.Fatal(err)
		}
		release := e.emu.Hold()
		defer release()
		e.clock.Advance(45 * time.Second) // refresh ahead starts and hangs
		for range 3 {
			start := time.Now()
			v, hit, err := get(t, c, p)
			if err != nil || !hit || v != "cached_value" {
				t.Fatalf("Get while Vault is slow = %q, hit %v, %v", v, hit, err)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("Get waited %v for a slow Vault", d)
			}
		}
	})
}

// TestLeaseServedWhileVaultSealed: a lease that cannot be renewed because
// Vault is sealed keeps being handed out until its end (Vault revokes
// nothing while sealed), with renewal tried again soon; once Vault is
// back, the next refresh renews it.
func TestLeaseServedWhileVaultSealed(t *testing.T) {
	e, db := dbEnv(t)
	p := e.load(t, "vault", e.serverYAML(tokenAuth)+"path: "+db+"/creds/billing-ro")
	c1 := mustFetch(t, p, identity.Workload{})
	e.emu.Seal()
	e.clock.Advance(30 * time.Second) // in the last third of the renewal interval
	c2 := mustFetch(t, p, identity.Workload{})
	if reveal(c1)["username"] != reveal(c2)["username"] || c2.Revoked.Err() != nil {
		t.Fatalf("with Vault sealed: username %q (revoked: %v), want the cached %q", reveal(c2)["username"], c2.Revoked.Err(), reveal(c1)["username"])
	}
	if now := e.clock.Now(); !c2.Expiry.After(now) || c2.Expiry.After(now.Add(30*time.Second)) {
		t.Errorf("Expiry while sealed = %v, want a retry within 30s of %v", c2.Expiry, now)
	}
	if n := e.events.count("vault lease_renewal error"); n != 1 {
		t.Errorf("lease_renewal error events = %d, want 1", n)
	}
	e.emu.Unseal()
	e.clock.Advance(5 * time.Second)
	c3 := mustFetch(t, p, identity.Workload{})
	if reveal(c3)["username"] != reveal(c1)["username"] || e.emu.Leases()[0].Renewals != 1 {
		t.Errorf("after unseal: username %q, renewals %d; want the same lease renewed once", reveal(c3)["username"], e.emu.Leases()[0].Renewals)
	}
}

// TestLeaseDurationStated: a leased secret (one with a lease_id) whose
// lease_duration is 0, negative, absent or not a number is refused,
// naming lease_duration, never kept as if it were not leased (before,
// lease_duration 0 or less made it a static secret, kept for
// cache.default_ttl or ttl); a plausible one is honoured (renewed at two
// thirds of it). KV reads have no lease_id: their lease_duration says
// nothing of the secret's end, and they keep ttl or cache.default_ttl.
func TestLeaseDurationStated(t *testing.T) {
	e, db := dbEnv(t)
	p := e.load(t, "vault", e.serverYAML(tokenAuth)+"path: "+db+"/creds/billing-ro")
	billing := workload("billing", nil)
	for _, tc := range []struct {
		name string
		l    fakekit.Lifetime
		bad  bool
	}{
		{"zero", fakekit.Lifetime{Seconds: 0}, true},
		{"minus-one", fakekit.Lifetime{Seconds: -1}, true},
		{"minus-3600", fakekit.Lifetime{Seconds: -3600}, true},
		{"absent", fakekit.Lifetime{Absent: true}, true},
		{"not-a-number", fakekit.Lifetime{Raw: `"soon"`}, true},
		{"float", fakekit.Lifetime{Raw: "3600.5"}, true},
		{"plausible-60", fakekit.Lifetime{Seconds: 60}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.emu.SetLeaseLifetime(&tc.l)
			t.Cleanup(func() { e.emu.SetLeaseLifetime(nil) })
			start := e.clock.Now()
			c, err := p.Fetch(t.Context(), providers.Request{Credential: "db", Workload: billing})
			if !tc.bad {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if want := start.Add(40 * time.Second); !c.Expiry.Equal(want) {
					t.Errorf("Expiry = %v, want %v (two thirds of the stated 60s)", c.Expiry, want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Fetch returned a credential expiring %v after the request; want an error naming lease_duration", c.Expiry.Sub(start))
			}
			if !strings.Contains(err.Error(), "lease_duration") {
				t.Errorf("the error does not name lease_duration: %v", err)
			}
		})
	}
}
