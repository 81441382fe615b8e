package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credgate/credgate/internal/vaulttest"
)

// vaultServer is the Vault-compatible server the Vault e2e test uses: a
// real one when VAULT_ADDR+VAULT_TOKEN are set or a vault/bao binary is
// on PATH, else the in-repo emulation of the endpoints credgate calls.
type vaultServer struct {
	kind, addr, root string
	stop             func()
}

func startVault(t *testing.T) *vaultServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	real, err := vaulttest.FindReal(ctx)
	var v *vaultServer
	switch {
	case err == nil && real != nil:
		v = &vaultServer{kind: "real " + real.Kind, addr: real.Addr, root: real.Token, stop: real.Stop}
	default:
		why := "no VAULT_ADDR+VAULT_TOKEN, no vault or bao binary on PATH"
		if err != nil {
			why = "a real server was found but did not start: " + err.Error()
		}
		emu := vaulttest.NewServer(vaulttest.Options{})
		v = &vaultServer{kind: "in-repo emulator (" + why + ")", addr: emu.URL, root: emu.RootToken, stop: emu.Close}
	}
	t.Cleanup(v.stop)
	reportPeer(t, "vault: %s at %s", v.kind, v.addr)
	return v
}

// reportPeer logs which real or emulated peer a test used, and appends it
// to $CREDGATE_PEERS_LOG, which `make test` prints after the run.
func reportPeer(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	if p := os.Getenv("CREDGATE_PEERS_LOG"); p != "" {
		if f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			fmt.Fprintf(f, "%s: %s\n", t.Name(), line)
			f.Close()
		}
	}
}

func (v *vaultServer) client(t *testing.T) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = v.addr
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(v.root)
	return c
}

func vwrite(t *testing.T, c *api.Client, path string, data map[string]any) *api.Secret {
	t.Helper()
	s, err := c.Logical().WriteWithContext(context.Background(), path, data)
	if err != nil {
		t.Fatalf("vault setup: write %s: %v", path, err)
	}
	return s
}

const vaultPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
  bank:
    hosts: [other.origin.test]
    allow_private: true
credentials:
  stripe:
    provider: vault
    server: &vault
      address: VAULT_ADDR_HERE
      auth: {method: token, token_env: CREDGATE_E2E_VAULT_TOKEN}
    path: secret/data/e2e-stripe
    field: secret_key
    ttl: 1s
  bank-cert:
    provider: vault-pki
    server: *vault
    mount: PKI_MOUNT_HERE
    role: bank-client
    common_name: {{"\"{{.workload.name}}.clients.test\""}}
    ttl: 1h
rules:
  - name: stripe
    from: local
    to: api
    inject: {credential: stripe, as: bearer}
  - name: bank
    from: local
    to: bank
    inject: {credential: bank-cert, as: tlsclient}
default: deny
`

// TestVaultCredentials: a KV secret is injected and a new version is
// picked up without a restart; a PKI certificate issued per workload is
// presented to an origin that requires client certificates (outbound
// mTLS). Against a real Vault-compatible server when one is available.
func TestVaultCredentials(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	admin := v.client(t)
	first, second := randomToken(t), randomToken(t)
	vwrite(t, admin, "secret/data/e2e-stripe", map[string]any{"data": map[string]any{"secret_key": first}})
	mount := "pki-e2e-" + fmt.Sprint(time.Now().UnixNano()%1e6)
	vwrite(t, admin, "sys/mounts/"+mount, map[string]any{"type": "pki", "config": map[string]any{"max_lease_ttl": "87600h"}})
	root := vwrite(t, admin, mount+"/root/generate/internal", map[string]any{"common_name": "e2e bank client CA", "ttl": "8760h"})
	vwrite(t, admin, mount+"/roles/bank-client", map[string]any{"allow_any_name": true, "enforce_hostnames": false,
		"client_flag": true, "server_flag": false, "max_ttl": "2h", "key_type": "ec", "key_bits": 256})
	caPEM, _ := root.Data["certificate"].(string)
	clientCAs := x509.NewCertPool()
	if !clientCAs.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatalf("the PKI root has no certificate")
	}

	// The partner bank: only clients with a certificate from that CA.
	bank := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	bank.TLS = &tls.Config{Certificates: []tls.Certificate{originLeaf}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs}
	bank.StartTLS()
	t.Cleanup(bank.Close)

	pol := strings.NewReplacer("VAULT_ADDR_HERE", v.addr, "PKI_MOUNT_HERE", mount).Replace(vaultPolicy)
	e := startEnv(t, envOptions{
		Policy:  pol,
		Resolve: map[string]string{otherHost + ":443": bank.Listener.Addr().String()},
		Env:     []string{"CREDGATE_E2E_VAULT_TOKEN=" + v.root},
	})
	e.secrets = append(e.secrets, first, second, v.root)

	c := goClient{} // curl and Python are covered by the other tests
	resp := c.Do(t, e, clientRequest{URL: "https://" + apiHost + "/v1/vault-kv"})
	if resp.Err != "" || resp.Status != http.StatusOK {
		t.Fatalf("KV: status %d err %s body %s", resp.Status, resp.Err, resp.Body)
	}
	if got := e.origin.one(t, "/v1/vault-kv").Header.Get("Authorization"); got != "Bearer "+first {
		t.Errorf("KV: origin did not get the Vault secret as a bearer token")
	}
	// The login is logged and counted (never the token: stopAndCheck
	// greps the logs and /metrics for it).
	if n := e.metric(t, `credgate_provider_events_total{event="login",provider="vault",result="ok"}`); n < 1 {
		t.Errorf("credgate_provider_events_total{event=login,provider=vault,result=ok} = %v, want at least 1", n)
	}
	e.waitLog(t, "vault: logged in")

	// A new version is in use within the credential's ttl (1s).
	vwrite(t, admin, "secret/data/e2e-stripe", map[string]any{"data": map[string]any{"secret_key": second}})
	n := 0
	waitFor(t, 15*time.Second, "the new KV version to be injected", func() error {
		n++
		p := fmt.Sprintf("/v1/vault-kv-%d", n)
		r := c.Do(t, e, clientRequest{URL: "https://" + apiHost + p})
		if r.Status != http.StatusOK {
			return fmt.Errorf("status %d", r.Status)
		}
		if e.origin.one(t, p).Header.Get("Authorization") != "Bearer "+second {
			return fmt.Errorf("still the old version")
		}
		return nil
	})

	// Outbound mTLS with a certificate issued for the workload.
	resp = c.Do(t, e, clientRequest{URL: "https://" + otherHost + "/v2/transfers"})
	if resp.Err != "" || resp.Status != http.StatusOK {
		t.Fatalf("mTLS: status %d err %s body %s", resp.Status, resp.Err, resp.Body)
	}
	if resp.Body != "hello local.clients.test" {
		t.Errorf("the bank saw %q, want the workload's certificate local.clients.test", resp.Body)
	}
}

const vaultLeasePolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
credentials:
  db:
    provider: vault
    server:
      address: VAULT_ADDR_HERE
      auth: {method: token, token_env: CREDGATE_E2E_VAULT_TOKEN}
    path: database/creds/e2e-ro
rules:
  - name: db
    from: local
    to: api
    inject: {credential: db, as: basic}
default: deny
`

// TestVaultLeaseRevokedNotInjected: a database user injected from a
// dynamic secret is revoked by an operator (vault lease revoke). The
// gateway learns it at the renewal its cache's refresh triggers, drops
// the secret at once and injects a new user: the revoked user is injected
// for at most one renewal interval (two thirds of the 6s lease) after
// Vault last vouched for it, and never after the switch. The refusal is
// logged and counted. Against the emulator (a database engine needs a
// database).
func TestVaultLeaseRevokedNotInjected(t *testing.T) {
	t.Parallel()
	emu := vaulttest.NewServer(vaulttest.Options{})
	t.Cleanup(emu.Close)
	reportPeer(t, "vault: in-repo emulator at %s (a database engine)", emu.URL)
	admin := (&vaultServer{addr: emu.URL, root: emu.RootToken}).client(t)
	vwrite(t, admin, "sys/mounts/database", map[string]any{"type": "database"})
	vwrite(t, admin, "database/roles/e2e-ro", map[string]any{"db_name": "pg", "default_ttl": "6s", "max_ttl": "1h"})

	e := startEnv(t, envOptions{
		Policy: strings.ReplaceAll(vaultLeasePolicy, "VAULT_ADDR_HERE", emu.URL),
		Env:    []string{"CREDGATE_E2E_VAULT_TOKEN=" + emu.RootToken},
		// A short refresh-ahead, so the bound does not come from the
		// cache refreshing early anyway.
		CacheConfig: "  refresh_ahead: 500ms\n",
	})
	e.secrets = append(e.secrets, emu.RootToken)
	c := goClient{}
	n := 0
	user := func() string {
		t.Helper()
		n++
		p := fmt.Sprintf("/v1/db-%d", n)
		if r := c.Do(t, e, clientRequest{URL: "https://" + apiHost + p}); r.Err != "" || r.Status != http.StatusOK {
			t.Fatalf("status %d err %s body %s", r.Status, r.Err, r.Body)
		}
		r := http.Request{Header: e.origin.one(t, p).Header}
		u, _, _ := r.BasicAuth()
		return u
	}
	first := user()
	leases := emu.Leases()
	if len(leases) != 1 || leases[0].Username != first {
		t.Fatalf("leases = %+v, want one for %s", leases, first)
	}
	if err := admin.Sys().RevokeWithContext(context.Background(), leases[0].ID); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	var switched time.Time
	waitFor(t, 15*time.Second, "a new database user to be injected", func() error {
		if u := user(); u == first {
			return fmt.Errorf("still %s", u)
		}
		switched = time.Now()
		return nil
	})
	// Vault vouched for the lease when it was issued, before the first
	// request and the revocation: the bound is 4s from then.
	t.Logf("the revoked user was injected for %s after the revocation", switched.Sub(revoked).Round(time.Millisecond))
	if d := switched.Sub(revoked); d > 4500*time.Millisecond {
		t.Errorf("the revoked user was injected for %s after the revocation, want at most one renewal interval (4s)", d)
	}
	for range 5 {
		if u := user(); u == first {
			t.Fatalf("the revoked user %s was injected again after the switch", u)
		}
	}
	if v := e.metric(t, `credgate_provider_events_total{event="lease_renewal",provider="vault",result="refused"}`); v != 1 {
		t.Errorf("lease_renewal refused events = %v, want 1", v)
	}
	e.waitLog(t, "lease renewal refused")
}
