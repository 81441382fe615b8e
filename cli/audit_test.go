package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/internal/vaulttest"
)

// TestAuditVerifyCommand: exit 0 and a summary for a whole log, exit 1 and
// the edited line's FILE:LINE after an edit; audit pubkey prints the key
// verify takes.
func TestAuditVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "audit.key")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"audit", "pubkey", "--key", keyFile}, &stdout, &stderr); code != 0 {
		t.Fatalf("audit pubkey: exit %d: %s", code, stderr.String())
	}
	pubFile := filepath.Join(dir, "audit.pub")
	if err := os.WriteFile(pubFile, stdout.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	logFile := filepath.Join(dir, "audit.log")
	f, err := audit.OpenFile(logFile, audit.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.LoadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	w := audit.NewWriter(f, audit.Options{Replica: "gw-0", Signer: signer})
	for i := 0; i < 3; i++ {
		w.Write(fmt.Appendf(nil, `{"path":"/v1/%d","status":200}`, i))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	verify := func() (int, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"audit", "verify", "--pubkey", pubFile, "--require-signed-tail", logFile}, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := verify(); code != 0 || !strings.Contains(out, "replica gw-0: 4 lines in 1 files, seq 1..4; verified through seq 4 ("+logFile+":4); signed through seq 4 ("+logFile+":4); closed by a final checkpoint\nOK: 1 chains verified\n") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	data, _ := os.ReadFile(logFile)
	if err := os.WriteFile(logFile, bytes.Replace(data, []byte(`"/v1/1"`), []byte(`"/v1/9"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := verify(); code != 1 || !strings.Contains(out, "BREAK "+logFile+":2: edited: replica gw-0 seq 2:") || !strings.Contains(out, "FAIL: 1 breaks") {
		t.Errorf("after an edit: exit %d:\n%s", code, out)
	}
	var errOut bytes.Buffer
	if code := run(context.Background(), []string{"audit", "verify", "--require-signed-tail", logFile}, &bytes.Buffer{}, &errOut); code != 1 || !strings.Contains(errOut.String(), "--require-signed-tail needs --pubkey") {
		t.Errorf("--require-signed-tail without --pubkey: exit %d: %s", code, errOut.String())
	}
}

// TestAuditVerifyTransitKey: checkpoints signed by a Vault transit
// ed25519 key (audit.checkpoint.signer.vault_transit; here Vault is the
// in-repo emulator) verify with --transit-key, which reads the key's
// public halves from VAULT_ADDR with VAULT_TOKEN; audit pubkey
// --transit-key prints them.
func TestAuditVerifyTransitKey(t *testing.T) {
	emu := vaulttest.NewServer(vaulttest.Options{})
	t.Cleanup(emu.Close)
	if _, err := emu.MountTransit(t.Context(), map[string]string{"credgate-audit": "ed25519"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VAULT_ADDR", emu.URL)
	t.Setenv("VAULT_TOKEN", emu.RootToken)
	t.Setenv("VAULT_CACERT", "")

	var node yaml.Node
	if err := node.Encode(map[string]any{"server": map[string]any{"auth": map[string]any{"method": "token"}}, "key": "credgate-audit"}); err != nil {
		t.Fatal(err)
	}
	signer, err := audit.LoadSigner(t.Context(), "vault_transit", &node)
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "audit.log")
	f, err := audit.OpenFile(logFile, audit.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := audit.NewWriter(f, audit.Options{Replica: "gw-0", Signer: signer})
	for i := 0; i < 3; i++ {
		w.Write(fmt.Appendf(nil, `{"path":"/v1/%d","status":200}`, i))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	_ = audit.CloseSigner(signer)

	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"audit", "verify", "--transit-key", "transit/credgate-audit", "--require-signed-tail", logFile}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "closed by a final checkpoint\nOK: 1 chains verified\n") {
		t.Fatalf("audit verify --transit-key: exit %d:\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := run(t.Context(), []string{"audit", "pubkey", "--transit-key", "transit/credgate-audit"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "# key_id "+audit.KeyID(signer.Public())+"\n-----BEGIN PUBLIC KEY-----") {
		t.Fatalf("audit pubkey --transit-key: exit %d:\n%s%s", code, out.String(), errOut.String())
	}
	errOut.Reset()
	if code := run(t.Context(), []string{"audit", "verify", "--transit-key", "transit/missing", logFile}, &bytes.Buffer{}, &errOut); code == 0 || !strings.Contains(errOut.String(), "vault write -f transit/keys/missing type=ed25519") {
		t.Errorf("a missing transit key: exit %d: %s", code, errOut.String())
	}
	if strings.Contains(out.String()+errOut.String(), emu.RootToken) {
		t.Error("the Vault token appears in the output")
	}
}
