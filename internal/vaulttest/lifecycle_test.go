package vaulttest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/vault/api"
)

// TestLifecycleAsTheRealServer checks the behaviours the gateway's lease
// handling depends on, against the emulator and, when one is available
// (FindReal), against a real Vault or OpenBao: the emulator must answer
// as the real server does.
func TestLifecycleAsTheRealServer(t *testing.T) {
	t.Run("emulator", func(t *testing.T) {
		clk := &testClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
		s := NewServer(Options{Now: clk.Now})
		t.Cleanup(s.Close)
		checkLifecycle(t, s.URL, s.RootToken, func(t *testing.T, d time.Duration) { clk.Advance(d) },
			func(path string) { s.Deny(path) })
	})
	t.Run("real server", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		r, err := FindReal(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r == nil {
			t.Skip("no real server (VAULT_ADDR+VAULT_TOKEN, or a vault or bao binary on PATH)")
		}
		t.Cleanup(r.Stop)
		t.Logf("real server: %s at %s", r.Kind, r.Addr)
		// Real time passes; the token's expiry is awaited below.
		checkLifecycle(t, r.Addr, r.Token, func(*testing.T, time.Duration) {}, func(string) {})
	})
}

// checkLifecycle runs the checks against the server at addr. pass makes
// d of the server's time pass (a no-op for a real server: callers poll);
// deny makes path refused by policy (the emulator enforces no policies).
func checkLifecycle(t *testing.T, addr, root string, pass func(*testing.T, time.Duration), deny func(string)) {
	ctx := context.Background()
	client := func(tok string) *api.Client {
		cfg := api.DefaultConfig()
		cfg.Address = addr
		cfg.MaxRetries = 0
		c, err := api.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.SetToken(tok)
		return c
	}
	admin := client(root)
	write := func(c *api.Client, path string, data map[string]any) *api.Secret {
		t.Helper()
		s, err := c.Logical().WriteWithContext(ctx, path, data)
		if err != nil {
			t.Fatalf("write %s: %v", path, err)
		}
		return s
	}
	// errs returns Vault's error messages and status for err.
	errs := func(err error) (int, []string) {
		var re *api.ResponseError
		if !errors.As(err, &re) {
			t.Fatalf("error %v is not a Vault answer", err)
		}
		return re.StatusCode, re.Errors
	}
	renew := func(id string) error {
		_, err := admin.Sys().RenewWithContext(ctx, id, 60)
		return err
	}

	write(admin, "sys/mounts/pki-lc", map[string]any{"type": "pki", "config": map[string]any{"max_lease_ttl": "87600h"}})
	write(admin, "pki-lc/root/generate/internal", map[string]any{"common_name": "lifecycle CA", "ttl": "8760h"})
	write(admin, "pki-lc/roles/r", map[string]any{"allow_any_name": true, "generate_lease": true, "max_ttl": "1h"})

	// A token created with a 3s TTL: lookup-self says ttl (what is left)
	// and creation_ttl (what it was created with).
	tok := write(admin, "auth/token/create", map[string]any{"ttl": "3s", "policies": []string{"root"}}).Auth.ClientToken
	self, err := client(tok).Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := self.Data["creation_ttl"]; got == nil || got.(interface{ String() string }).String() != "3" {
		t.Errorf("lookup-self creation_ttl = %v, want 3", got)
	}
	if ttl, err := self.TokenTTL(); err != nil || ttl <= 0 || ttl > 3*time.Second {
		t.Errorf("lookup-self ttl = %v, %v; want what is left of 3s", ttl, err)
	}

	// A lease it created (a certificate with generate_lease).
	child := write(client(tok), "pki-lc/issue/r", map[string]any{"common_name": "child.example", "ttl": "30m"})
	if child.LeaseID == "" {
		t.Fatal("the issued certificate has no lease")
	}
	code, msgs := errs(renew(child.LeaseID))
	if diff := cmp.Diff([]string{"lease is not renewable"}, msgs); diff != "" || code != 400 {
		t.Errorf("renew of a live non-renewable lease: %d (-want +got):\n%s", code, diff)
	}

	// The token expires: Vault revokes the leases it created.
	pass(t, 4*time.Second)
	waitFor(t, 20*time.Second, "the lease to die with its parent token", func() bool {
		_, msgs := errs(renew(child.LeaseID))
		return cmp.Equal([]string{"lease not found"}, msgs)
	})
	code, _ = errs(renew(child.LeaseID))
	if code != 400 {
		t.Errorf("renew of a lease revoked with its token: HTTP %d, want 400", code)
	}

	// A lease revoked by an operator.
	other := write(admin, "pki-lc/issue/r", map[string]any{"common_name": "other.example", "ttl": "30m"})
	if err := admin.Sys().RevokeWithContext(ctx, other.LeaseID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the revoked lease to be gone", func() bool {
		code, msgs := errs(renew(other.LeaseID))
		return code == 400 && cmp.Equal([]string{"lease not found"}, msgs)
	})

	// A policy refusal: go-multierror's text, which the api package
	// prints on several lines.
	deny("secret/data/lifecycle")
	weak := write(admin, "auth/token/create", map[string]any{"policies": []string{"default"}, "ttl": "1h"}).Auth.ClientToken
	_, err = client(weak).Logical().ReadWithContext(ctx, "secret/data/lifecycle")
	code, msgs = errs(err)
	if diff := cmp.Diff([]string{"1 error occurred:\n\t* permission denied\n\n"}, msgs); diff != "" || code != 403 {
		t.Errorf("policy refusal: %d (-want +got):\n%s", code, diff)
	}
	if !strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "Code: 403") {
		t.Errorf("the api package's ResponseError is no longer multi-line (%q): revisit vault.describe", err)
	}
	// An unknown token: plain "permission denied".
	_, err = client("hvs.not-a-token").Logical().ReadWithContext(ctx, "secret/data/lifecycle")
	code, msgs = errs(err)
	if diff := cmp.Diff([]string{"permission denied"}, msgs); diff != "" || code != 403 {
		t.Errorf("unknown token: %d (-want +got):\n%s", code, diff)
	}
}

// testClock is a clock the test moves.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// waitFor polls cond until it holds or timeout passes (a real server
// revokes asynchronously; there is no event to wait on).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	poll.True(t, timeout, what, cond)
}
