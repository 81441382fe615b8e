package vault

import (
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
)

// TestEd25519Signer: checkpoint signatures made by a transit ed25519 key
// verify with the key's public key, locally and by Vault's own verify
// endpoint; a tampered message does not; keys of another type and
// missing keys are refused with the command that fixes them.
func TestEd25519Signer(t *testing.T) {
	e := newEnv(t, envOpts{})
	mount := e.mount(t, "transit", nil)
	key := "audit-" + randName()
	e.write(t, mount+"/keys/"+key, map[string]any{"type": "ed25519"})
	srv := Server{Address: e.addr, Auth: Auth{Method: MethodToken, TokenEnv: tokenEnv}}
	s := &CheckpointSigner{Server: srv, Mount: mount, Key: key}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := s.Provision(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Cleanup()
	if want := transitPublicKey(t, e, mount, key).(ed25519.PublicKey); !s.Public().Equal(want) {
		t.Fatalf("Public() = %x, want the transit key's %x", s.Public(), want)
	}
	msg := []byte("credgate-audit-checkpoint-v1\x00gw-1\x0042\x00abcd")
	sig, err := s.Sign(t.Context(), msg)
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(s.Public(), msg, sig) {
		t.Fatal("the signature does not verify with the public key")
	}
	for _, tc := range []struct {
		msg  []byte
		want bool
	}{{msg, true}, {append([]byte("x"), msg...), false}} {
		v := e.write(t, mount+"/verify/"+key, map[string]any{
			"input":     base64.StdEncoding.EncodeToString(tc.msg),
			"signature": "vault:v1:" + base64.StdEncoding.EncodeToString(sig),
		})
		if got, _ := v.Data["valid"].(bool); got != tc.want {
			t.Errorf("Vault's verify of %q: valid %v, want %v", tc.msg, got, tc.want)
		}
	}
	if pubs := s.PublicKeys(); len(pubs) != 1 || !pubs[0].Equal(s.Public()) {
		t.Errorf("PublicKeys = %x; want the one version's key", pubs)
	}

	ecKey := "ec-" + randName()
	e.write(t, mount+"/keys/"+ecKey, map[string]any{"type": "ecdsa-p256"})
	if err := (&CheckpointSigner{Server: srv, Mount: mount, Key: ecKey}).Provision(t.Context()); err == nil || !strings.Contains(err.Error(), "type=ed25519") {
		t.Errorf("an ecdsa key: %v; want a refusal naming type=ed25519", err)
	}
	if err := (&CheckpointSigner{Server: srv, Mount: mount, Key: "missing-" + randName()}).Provision(t.Context()); err == nil || !strings.Contains(err.Error(), "vault write -f") {
		t.Errorf("a missing key: %v; want a refusal saying how to create it", err)
	}
	if err := (&CheckpointSigner{Server: srv}).Validate(); err == nil || !strings.Contains(err.Error(), "key is required") {
		t.Errorf("no key: %v", err)
	}
}
