package vault

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/credgate/credgate/audit"
)

func init() {
	audit.RegisterSigner("vault_transit", func() audit.Signer { return &CheckpointSigner{} },
		"signs audit checkpoints with an ed25519 key in Vault's transit engine (the private key never leaves Vault)")
}

// CheckpointSigner signs the audit log's checkpoints with one version of
// an ed25519 transit key, so the private key never leaves Vault. It is
// the audit.Signer registered as "vault_transit" (audit.checkpoint.signer
// in the gateway config; the gateway and the audit package know it only
// through that registry). Provision reads the key's public halves; the
// version it signs with is the latest then, and every signature is asked
// for with that version, so all of them verify against Public() even
// after the key is rotated. Each signature is checked against Public()
// before it is returned. Safe for concurrent use once provisioned.
type CheckpointSigner struct {
	// Server is the Vault server and the gateway's login, as a vault
	// credential's server: mapping.
	Server Server `yaml:"server"`
	// Mount is where the transit engine is enabled (default "transit").
	Mount string `yaml:"mount"`
	// Key is the transit key's name; its type must be ed25519.
	Key string `yaml:"key"`

	client  *Client
	version int
	pub     ed25519.PublicKey
	all     []ed25519.PublicKey
}

// Validate checks the settings without contacting Vault.
func (s *CheckpointSigner) Validate() error {
	if s.Key == "" {
		return errors.New("key is required: the name of an ed25519 transit key (vault write -f transit/keys/credgate-audit type=ed25519)")
	}
	if _, err := transitKeyPath(s.Mount, s.Key); err != nil {
		return err
	}
	if s.client != nil {
		return nil
	}
	c, err := NewClient(s.Server)
	if err != nil {
		return err
	}
	return c.Close()
}

// Provision logs in (lazily) and reads the key's public halves.
func (s *CheckpointSigner) Provision(ctx context.Context) error {
	mount, err := transitKeyPath(s.Mount, s.Key)
	if err != nil {
		return err
	}
	c, err := NewClient(s.Server)
	if err != nil {
		return err
	}
	keys, latest, err := readEd25519Keys(ctx, c, mount, s.Key)
	if err != nil {
		_ = c.Close()
		return err
	}
	s.client, s.Mount, s.version, s.pub, s.all = c, mount, latest, keys[latest], sortedKeys(keys)
	return nil
}

// Cleanup stops the Vault client.
func (s *CheckpointSigner) Cleanup() error {
	if s.client == nil {
		return nil
	}
	return s.client.Close()
}

// Public returns the public key of the version the signer signs with.
func (s *CheckpointSigner) Public() ed25519.PublicKey { return s.pub }

// PublicKeys returns the public keys of every version of the key, oldest
// first: what verifies checkpoints signed before a rotation too.
func (s *CheckpointSigner) PublicKeys() []ed25519.PublicKey { return s.all }

// Sign returns the Ed25519 signature of msg, made by Vault.
func (s *CheckpointSigner) Sign(ctx context.Context, msg []byte) ([]byte, error) {
	op := fmt.Sprintf("sign with transit key %s/%s version %d", s.Mount, s.Key, s.version)
	if s.client == nil {
		return nil, fmt.Errorf("vault: %s: the signer was not provisioned", op)
	}
	body := map[string]any{"input": base64.StdEncoding.EncodeToString(msg), "key_version": s.version}
	path := s.Mount + "/sign/" + s.Key
	sec, err := s.client.do(ctx, op, func(ctx context.Context, a *api.Client) (*api.Secret, error) {
		return a.Logical().WriteWithContext(ctx, path, body)
	})
	if err != nil {
		return nil, err
	}
	var sig string
	if sec != nil {
		sig, _ = sec.Data["signature"].(string)
	}
	raw, err := transitSignature(sig)
	if err != nil {
		return nil, fmt.Errorf("vault: %s: %w", op, err)
	}
	if !ed25519.Verify(s.pub, msg, raw) {
		return nil, fmt.Errorf("vault: %s: the signature Vault returned does not verify with the key's public key (is %s/%s still an ed25519 key?)", op, s.Mount, s.Key)
	}
	return raw, nil
}

// sortedKeys returns the keys by version, oldest first.
func sortedKeys(keys map[int]ed25519.PublicKey) []ed25519.PublicKey {
	versions := make([]int, 0, len(keys))
	for v := range keys {
		versions = append(versions, v)
	}
	sort.Ints(versions)
	out := make([]ed25519.PublicKey, 0, len(keys))
	for _, v := range versions {
		out = append(out, keys[v])
	}
	return out
}

var _ audit.Signer = (*CheckpointSigner)(nil)

// transitKeyPath checks a transit mount and key name and returns the
// mount trimmed ("transit" when empty).
func transitKeyPath(mount, key string) (string, error) {
	mount = strings.Trim(mount, "/")
	if mount == "" {
		mount = "transit"
	}
	if key == "" || strings.ContainsAny(key, "/?#") || strings.Contains(mount, "..") {
		return "", fmt.Errorf("vault: transit key %q in mount %q: the key must be a plain key name and the mount a path without a .. segment", key, mount)
	}
	return mount, nil
}

// readEd25519Keys reads MOUNT/keys/KEY: the public key of each version
// and the latest version.
func readEd25519Keys(ctx context.Context, c *Client, mount, key string) (map[int]ed25519.PublicKey, int, error) {
	op := fmt.Sprintf("read transit key %s/%s", mount, key)
	path := mount + "/keys/" + key
	sec, err := c.do(ctx, op, func(ctx context.Context, a *api.Client) (*api.Secret, error) {
		return a.Logical().ReadWithContext(ctx, path)
	})
	if err != nil {
		return nil, 0, err
	}
	if sec == nil || sec.Data == nil {
		return nil, 0, fmt.Errorf("vault: %s: no such key; create it with: vault write -f %s/keys/%s type=ed25519", op, mount, key)
	}
	if typ, _ := sec.Data["type"].(string); typ != "ed25519" {
		return nil, 0, fmt.Errorf("vault: %s: the key is of type %q; checkpoints need an ed25519 key (vault write -f %s/keys/NAME type=ed25519)", op, typ, mount)
	}
	latest, _ := intOf(sec.Data["latest_version"])
	versions, _ := sec.Data["keys"].(map[string]any)
	keys := map[int]ed25519.PublicKey{}
	for vs, kv := range versions {
		v, err := strconv.Atoi(vs)
		m, _ := kv.(map[string]any)
		pk, _ := m["public_key"].(string)
		raw, derr := base64.StdEncoding.DecodeString(pk)
		if err != nil || derr != nil || len(raw) != ed25519.PublicKeySize {
			return nil, 0, fmt.Errorf("vault: %s: version %s has no ed25519 public key", op, vs)
		}
		keys[v] = ed25519.PublicKey(raw)
	}
	if keys[latest] == nil {
		return nil, 0, fmt.Errorf("vault: %s: %w", op, errors.New("the answer lacks the latest version's public key"))
	}
	return keys, latest, nil
}

// intOf reads a JSON number as Vault's API client decodes it.
func intOf(v any) (int, bool) {
	switch n := v.(type) {
	case float64:
		return int(n), true
	case int:
		return n, true
	case interface{ Int64() (int64, error) }:
		i, err := n.Int64()
		return int(i), err == nil
	}
	return 0, false
}
