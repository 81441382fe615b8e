package audit

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/internal/module"
	"github.com/credgate/credgate/internal/yamlstrict"
)

// signers holds the checkpoint signers whose key is kept outside the
// gateway (a Vault transit key, a KMS), registered by the packages that
// implement them, so that this package, the gateway and the CLI know
// none of them: the gateway config names one under
// audit.checkpoint.signer.
var signers = module.New[Signer]("audit checkpoint signer")

// RegisterSigner adds a checkpoint signer under name; call it from an init
// function. newFn returns an unconfigured Signer whose yaml-tagged fields
// are its settings; it may have the module lifecycle methods Provision
// (reach the key's holder, read the public key), Validate (check the
// settings without contacting anything) and Cleanup (release what
// Provision built). It panics if name is empty or taken.
func RegisterSigner(name string, newFn func() Signer, doc string) {
	signers.Register(name, newFn, module.Info{Doc: doc})
}

// SignerNames returns the registered signers' names, sorted.
func SignerNames() []string { return signers.Names() }

// CheckSigner checks the settings of the signer registered under name as
// the config loads: strict decoding and Validate, nothing contacted.
// Decoding errors have the "line N: " form of yaml.v3.
func CheckSigner(name string, settings *yaml.Node) error {
	newFn, ok := signers.Lookup(name)
	if !ok {
		return fmt.Errorf("unknown checkpoint signer %q; name one that is compiled in (%s), or build credgate with the signer's package imported", name, strings.Join(signers.Names(), ", "))
	}
	s := newFn()
	if err := yamlstrict.Decode(settings, s); err != nil {
		return err
	}
	if v, ok := s.(interface{ Validate() error }); ok {
		return v.Validate()
	}
	return nil
}

// LoadSigner builds the signer registered under name from its settings:
// strict decoding, Provision (which may contact the key's holder),
// Validate, and Cleanup when one of them fails. Release it with
// CloseSigner.
func LoadSigner(ctx context.Context, name string, settings *yaml.Node) (Signer, error) {
	s, err := signers.Load(ctx, name, settings)
	if err != nil {
		return nil, fmt.Errorf("checkpoint signer %s: %w", name, err)
	}
	return s, nil
}

// CloseSigner releases what LoadSigner built (the signer's Cleanup).
func CloseSigner(s Signer) error {
	if c, ok := s.(interface{ Cleanup() error }); ok {
		return c.Cleanup()
	}
	return nil
}

// PublicKeys returns every key that verifies s's signatures: all
// versions of a rotated key when s says so (a PublicKeys method), else
// Public.
func PublicKeys(s Signer) []ed25519.PublicKey {
	if p, ok := s.(interface{ PublicKeys() []ed25519.PublicKey }); ok {
		return p.PublicKeys()
	}
	return []ed25519.PublicKey{s.Public()}
}
