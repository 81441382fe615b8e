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
	if want := start.Add(60 * time.Second); !c1.Expiry.Equal(want) {
		t.Errorf("Expiry = %v, want %v (the lease duration)", c1.Expiry, want)
	}
	leases := e.emu.Leases()
	if len(leases) != 1 {
		t.Fatalf("leases = %d, want 1", len(leases))
	}
	id := leases[0].ID

	// At two thirds of the lease the renewer renews it.
	e.clock.Advance(41 * time.Second)
	waitFor(t, "the lease to be renewed", func() bool { return leaseOf(e, id).Renewals == 1 })

	// The cache asks again before the old expiry: same secret, new expiry,
	// no new read.
	e.clock.Advance(15 * time.Second)
	c2 := mustFetch(t, p, billing)
	if diff := cmp.Diff(reveal(c1), reveal(c2)); diff != "" {
		t.Errorf("renewed credential differs (-first +second):\n%s", diff)
	}
	if want := start.Add(41*time.Second + 60*time.Second); !c2.Expiry.Equal(want) {
		t.Errorf("Expiry after renewal = %v, want %v", c2.Expiry, want)
	}
	if n := e.emu.Count("creds"); n != 1 {
		t.Errorf("creds reads = %d, want 1", n)
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
}

func TestLeaseRenewalRefusedFetchesFresh(t *testing.T) {
	e, db := dbEnv(t)
	p := e.load(t, "vault", e.serverYAML(tokenAuth)+"path: "+db+"/creds/billing-ro")
	c1 := mustFetch(t, p, identity.Workload{})
	e.emu.RefuseLeaseRenewals(true)
	e.clock.Advance(41 * time.Second)
	waitFor(t, "a refused renewal", func() bool { return e.emu.Count("lease renew") >= 1 })
	waitFor(t, "the lease marked not renewable", func() bool {
		ls := p.(*Provider).leases
		ls.mu.Lock()
		defer ls.mu.Unlock()
		l := ls.current[db+"/creds/billing-ro"]
		return l != nil && !l.renewable
	})
	// The cache asks shortly before expiry: a fresh secret.
	e.clock.Advance(14 * time.Second)
	c2 := mustFetch(t, p, identity.Workload{})
	if reveal(c1)["username"] == reveal(c2)["username"] {
		t.Errorf("still the old username %q after renewal was refused", reveal(c2)["username"])
	}
	if n := e.emu.Count("creds"); n != 2 {
		t.Errorf("creds reads = %d, want 2", n)
	}
}

func TestLeaseIdleNotRenewed(t *testing.T) {
	e, db := dbEnv(t)
	p := e.load(t, "vault", e.serverYAML(tokenAuth)+"path: "+db+"/creds/billing-ro")
	mustFetch(t, p, identity.Workload{})
	e.clock.Advance(41 * time.Second)
	waitFor(t, "the first renewal", func() bool { return e.emu.Count("lease renew") == 1 })
	// Nobody fetched it during the next period: it is left to expire.
	e.clock.Advance(41 * time.Second)
	waitFor(t, "the idle lease to stop renewing", func() bool {
		ls := p.(*Provider).leases
		ls.mu.Lock()
		defer ls.mu.Unlock()
		l := ls.current[db+"/creds/billing-ro"]
		return l != nil && !l.renewable
	})
	if n := e.emu.Count("lease renew"); n != 1 {
		t.Errorf("renewals = %d, want 1", n)
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

func TestCleanupRevokesToken(t *testing.T) {
	e := newEnv(t, envOpts{emulatorOnly: true})
	kv := e.kv(t)
	e.putKV(t, kv, "x", map[string]any{"v": "value"})
	mount, roleID, wrapped := e.appRole(t, "1h", "24h")
	auth := fmt.Sprintf("{method: approle, mount: %s, role_id: %s, secret_id_file: %s}", mount, roleID, writeFile(t, "sid", wrapped()))
	p, err := e.tryLoad(t, "vault", e.serverYAML(auth)+"path: "+kv+"/data/x\nrevoke_on_cleanup: true")
	if err != nil {
		t.Fatal(err)
	}
	mustFetch(t, p, identity.Workload{})
	if n := e.emu.LiveTokens(); n != 1 {
		t.Fatalf("live tokens = %d, want 1", n)
	}
	if err := p.(providers.CleanerUpper).Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n := e.emu.LiveTokens(); n != 0 {
		t.Errorf("live tokens after cleanup = %d, want 0", n)
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

	down := fmt.Sprintf("server:\n  address: http://127.0.0.1:%d\n  retries: 1\n  retry_backoff: 1ms\n  auth: %s\npath: a/data/b", closedPort(t), tokenAuth)
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

// closedPort returns a port on 127.0.0.1 nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l := listenLocal(t)
	port := l.Addr().(interface{ AddrPort() netipAddrPort }).AddrPort().Port()
	l.Close()
	return int(port)
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
