package audit

import (
	"github.com/credgate/credgate/internal/cfgfile"

	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
)

// Signer signs checkpoint lines. The Writer calls it on its flusher
// goroutine only, never on the request path. Implementations are safe for
// concurrent use. A key held elsewhere (Vault transit, a KMS) is one more
// implementation; credgate ships the file-backed one (LoadKeyFile).
type Signer interface {
	// Public returns the key that verifies the signatures.
	Public() ed25519.PublicKey
	// Sign returns the Ed25519 signature of msg.
	Sign(ctx context.Context, msg []byte) ([]byte, error)
}

// keySigner is a Signer over an Ed25519 private key in memory.
type keySigner struct{ key ed25519.PrivateKey }

func (s keySigner) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

func (s keySigner) Sign(_ context.Context, msg []byte) ([]byte, error) {
	return ed25519.Sign(s.key, msg), nil
}

// NewKeySigner returns a Signer over key.
func NewKeySigner(key ed25519.PrivateKey) Signer { return keySigner{key: key} }

// LoadKeyFile reads an Ed25519 private key in PEM PKCS#8 form ("PRIVATE
// KEY", as `openssl genpkey -algorithm ed25519` writes it). Errors name the
// file, never the key.
func LoadKeyFile(path string) (Signer, error) {
	data, err := cfgfile.ReadSecret(path)
	if err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("audit signing key %s: not a PEM \"PRIVATE KEY\" block (write one with: openssl genpkey -algorithm ed25519 -out %s)", path, path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("audit signing key %s: not a PKCS#8 key (write one with: openssl genpkey -algorithm ed25519)", path)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("audit signing key %s: a %T, want Ed25519 (openssl genpkey -algorithm ed25519)", path, k)
	}
	return keySigner{key: ek}, nil
}

// ParsePublicKey reads Ed25519 public keys from PEM "PUBLIC KEY" (PKIX)
// blocks, as `openssl pkey -pubout` and `credgate serve`'s log print them.
func ParsePublicKey(data []byte) ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		if blk.Type != "PUBLIC KEY" {
			continue
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public key: %w", err)
		}
		ek, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("public key: a %T, want Ed25519", k)
		}
		out = append(out, ek)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM \"PUBLIC KEY\" block (print one with: openssl pkey -in KEY -pubout)")
	}
	return out, nil
}

// MarshalPublicKey returns pub as a PEM "PUBLIC KEY" block.
func MarshalPublicKey(pub ed25519.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil // cannot happen for an Ed25519 key
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// KeyID names a public key in checkpoint lines: the first 16 hex digits of
// the SHA-256 of its bytes.
func KeyID(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:8])
}

// checkpointMessage is what a checkpoint signs: the chain head (the
// replica, the sequence number of the last line before the checkpoint and
// that line's hash), the checkpoint's time and whether it is the last one
// of its chain.
func checkpointMessage(replica string, headSeq uint64, prevHex, time string, final bool) []byte {
	m := make([]byte, 0, 160)
	m = append(m, "credgate-audit-checkpoint-v1\x00"...)
	m = append(m, replica...)
	m = append(m, 0)
	m = strconv.AppendUint(m, headSeq, 10)
	m = append(m, 0)
	m = append(m, prevHex...)
	m = append(m, 0)
	m = append(m, time...)
	m = append(m, 0)
	if final {
		m = append(m, "final"...)
	}
	return m
}
