package gateway

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/internal/vaulttest"
)

// TestAuditCheckpointVaultTransit: with audit.checkpoint.vault_transit the
// checkpoints are signed by an ed25519 key in Vault's transit engine (the
// in-repo emulator, which signs and verifies like the real engine) and the
// log verifies to its final checkpoint with the transit key's public
// half; the Vault token never reaches the logs or the audit lines.
func TestAuditCheckpointVaultTransit(t *testing.T) {
	emu := vaulttest.NewServer(vaulttest.Options{})
	t.Cleanup(emu.Close)
	cfg := api.DefaultConfig()
	cfg.Address = emu.URL
	admin, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	admin.SetToken(emu.RootToken)
	if _, err := admin.Logical().Write("sys/mounts/audit-transit", map[string]any{"type": "transit"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Logical().Write("audit-transit/keys/checkpoints", map[string]any{"type": "ed25519"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDGATE_GATEWAY_TEST_VAULT_TOKEN", emu.RootToken)

	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(testPolicy))
	tg.run(t, fmt.Sprintf(`resolve:
  "api.origin.test:443": %q
audit:
  replica: gw-transit
  checkpoint:
    lines: 2
    signer:
      vault_transit:
        server: {address: %q, auth: {method: token, token_env: CREDGATE_GATEWAY_TEST_VAULT_TOKEN}}
        mount: audit-transit
        key: checkpoints
`, tg.origin.addr, emu.URL))
	c := tg.client(t, false)
	for range 3 {
		resp, err := c.Get("https://" + apiHost + "/v1/receipt")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err := tg.stop(); err != nil {
		t.Fatal(err)
	}
	if n := emu.Count("sign"); n < 2 {
		t.Errorf("Vault signed %d checkpoints, want at least 2 (every 2 lines and the final one)", n)
	}
	out := tg.audit.String()
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	pub := emu.TransitPublicKey("audit-transit", "checkpoints").(ed25519.PublicKey)
	rep, err := audit.Verify([]string{path}, audit.VerifyOptions{Keys: []ed25519.PublicKey{pub}, RequireSignedTail: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Chains) != 1 || !rep.Chains[0].Final {
		var b strings.Builder
		rep.WriteText(&b)
		t.Errorf("the audit log does not verify with the transit key to a final checkpoint:\n%s", b.String())
	}
	for where, s := range map[string]string{"audit": out, "logs": tg.logs.String()} {
		if strings.Contains(s, emu.RootToken) {
			t.Errorf("the Vault token appears in the %s", where)
		}
	}
	if !strings.Contains(tg.logs.String(), audit.KeyID(pub)) {
		t.Errorf("the start-up log does not name the transit key's key id %s", audit.KeyID(pub))
	}
}

// TestAuditTransitConfigErrors: vault_transit settings are checked when
// the config loads, with FILE:LINE:COL.
func TestAuditTransitConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, audit, want string }{
		{"both", "checkpoint: {key_file: a.key, signer: {vault_transit: {server: {address: \"http://127.0.0.1:1\", auth: {method: token}}, key: k}}}", "set key_file or signer, not both"},
		{"no key", "checkpoint: {signer: {vault_transit: {server: {address: \"http://127.0.0.1:1\", auth: {method: token}}}}}", "key is required"},
		{"bad server", "checkpoint: {signer: {vault_transit: {server: {address: \"http://127.0.0.1:1\"}, key: k}}}", "server.auth.method is not set"},
		{"unknown key", "checkpoint: {signer: {vault_transit: {server: {address: \"http://127.0.0.1:1\", auth: {method: token}}, key: k, keyy: x}}}", "keyy"},
		{"unknown signer", "checkpoint: {signer: {kms: {key: k}}}", "unknown checkpoint signer \"kms\""},
		{"unchained", "chain: false\n  checkpoint: {signer: {vault_transit: {server: {address: \"http://127.0.0.1:1\", auth: {method: token}}, key: k}}}", "needs audit.chain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := writeFile(t, dir, "credgate.yaml", []byte("policy: p.yaml\nca: {cert: c.pem, key: k.pem}\naudit:\n  "+tc.audit+"\n"))
			_, err := LoadConfig(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p+":") {
				t.Fatalf("LoadConfig: %v; want FILE:LINE:COL and %q", err, tc.want)
			}
		})
	}
}
