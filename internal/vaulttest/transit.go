package vaulttest

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/api"
)

// MountTransit sets up the transit engine as an operator would, through
// the Vault API with the root token: it mounts it at transit/ and creates
// each key of keys (name: type, e.g. "rsa-2048", "ecdsa-p256",
// "ed25519"). It returns that root client, for tests that create more
// keys themselves.
func (s *Server) MountTransit(ctx context.Context, keys map[string]string) (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = s.URL
	vc, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vaulttest: Vault client: %w", err)
	}
	vc.SetToken(s.RootToken)
	if _, err := vc.Logical().WriteWithContext(ctx, "sys/mounts/transit", map[string]any{"type": "transit"}); err != nil {
		return nil, fmt.Errorf("vaulttest: mount transit: %w", err)
	}
	for name, typ := range keys {
		if _, err := vc.Logical().WriteWithContext(ctx, "transit/keys/"+name, map[string]any{"type": typ}); err != nil {
			return nil, fmt.Errorf("vaulttest: create transit key %s: %w", name, err)
		}
	}
	return vc, nil
}
