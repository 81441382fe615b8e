package httpsig

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/credgate/credgate/injectors/injectortest"
	"github.com/credgate/credgate/internal/httpsigtest"
	"github.com/credgate/credgate/internal/vaulttest"
)

// TestVaultTransit signs with keys that never leave the in-repo Vault
// emulator's transit engine, and the verifier checks the signatures with
// the public keys the engine publishes.
func TestVaultTransit(t *testing.T) {
	emu := vaulttest.NewServer(vaulttest.Options{})
	t.Cleanup(emu.Close)
	t.Setenv("CREDGATE_HTTPSIG_TEST_VAULT_TOKEN", emu.RootToken)
	vc, err := emu.MountTransit(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	v := &httpsigtest.Verifier{Keys: map[string]httpsigtest.Key{}}
	srv := httpsigtest.NewServer(nil, v)
	defer srv.Close()
	for _, tt := range []struct{ alg, typ string }{{Ed25519, "ed25519"}, {ECDSAP256, "ecdsa-p256"}, {ECDSAP384, "ecdsa-p384"}, {RSAPSS, "rsa-2048"}, {RSAv15, "rsa-2048"}} {
		t.Run(tt.alg, func(t *testing.T) {
			key := strings.ReplaceAll(tt.alg, "_", "-")
			if _, err := vc.Logical().WriteWithContext(t.Context(), "transit/keys/"+key, map[string]any{"type": tt.typ}); err != nil {
				t.Fatal(err)
			}
			v.Keys[key] = httpsigtest.Key{Alg: tt.alg, Public: emu.TransitPublicKey("transit", key)}
			settings := fmt.Sprintf("{key_id: %s, algorithm: %s, transit: {key: %s, server: {address: %q, auth: {method: token, token_env: CREDGATE_HTTPSIG_TEST_VAULT_TOKEN}}}}", key, tt.alg, key, emu.URL)
			inj, err := injectortest.Load(t, "httpsig", settings)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = inj.(*Injector).Cleanup() })
			r, _ := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/v1/orders", strings.NewReader(`{"n":1}`))
			r.Header.Set("Content-Type", "application/json")
			// The rule's credential holds no key: the key is in Vault.
			if err := inj.Inject(r, injectortest.Cred("token", "unused")); err != nil {
				t.Fatalf("Inject: %v", err)
			}
			resp, err := srv.Client().Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if b, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK {
				t.Fatalf("verifier answered %d: %s", resp.StatusCode, b)
			}
		})
	}
}
