// Package helloattest is a tiny identity verifier plugin defined outside
// the credgate repository: a workload presents
// "Proxy-Authorization: Bearer hello.SUBJECT.MAC", where MAC is the hex
// HMAC-SHA256 of SUBJECT under a key the gateway reads from an
// environment variable. It shows the shape of a verifier: settings as
// yaml-tagged fields, Provision reading the key once, Verify returning
// (nil, nil) when the factor is absent, a Factor of its own kind when it
// verified, an error wrapping identity.ErrInvalid (never the token) when
// it did not. A verifier that starts goroutines or opens clients in
// Provision releases them in Cleanup (or Close), called when the identity
// configuration is replaced. An example, not a production attestation
// scheme. See docs/plugins.md.
package helloattest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/credgate/credgate/identity"
)

// Kind is the factor kind and registered name (`require: [hello-attest]`).
const Kind = "hello-attest"

func init() {
	identity.Register(identity.Module{
		Name:        Kind,
		Doc:         "an HMAC of the workload's name in Proxy-Authorization (an example plugin)",
		SettingDocs: map[string]string{"key_env": "the environment variable holding the HMAC key"},
		New:         func() identity.Verifier { return new(Verifier) },
	})
}

// Verifier is the "hello-attest" verifier. Its exported fields are its
// settings; key is runtime state.
type Verifier struct {
	// KeyEnv names the environment variable holding the HMAC key.
	KeyEnv string `yaml:"key_env"`

	key []byte
}

// Provision reads the key once, when the gateway config loads.
func (v *Verifier) Provision(context.Context) error {
	if v.KeyEnv == "" {
		return errors.New("hello-attest: set key_env to the environment variable holding the HMAC key")
	}
	k := os.Getenv(v.KeyEnv)
	if len(k) < 16 {
		return fmt.Errorf("hello-attest: key_env: environment variable %s must hold at least 16 bytes", v.KeyEnv)
	}
	v.key = []byte(k)
	return nil
}

// Kind implements identity.Verifier.
func (*Verifier) Kind() string { return Kind }

// Verify implements identity.Verifier. Its errors say what was wrong,
// never the token; the gateway prefixes them with the kind.
func (v *Verifier) Verify(_ context.Context, ev identity.Evidence) (*identity.Factor, error) {
	tok, ok := strings.CutPrefix(ev.ProxyAuthorization, "Bearer hello.")
	if !ok {
		return nil, nil // not presented: another verifier may read the header
	}
	subject, mac, ok := strings.Cut(tok, ".")
	want := hmac.New(sha256.New, v.key)
	want.Write([]byte(subject))
	got, err := hex.DecodeString(mac)
	if !ok || subject == "" || err != nil || !hmac.Equal(got, want.Sum(nil)) {
		return nil, fmt.Errorf("the MAC does not verify under key_env's key: %w", identity.ErrInvalid)
	}
	return &identity.Factor{Kind: Kind, Subject: subject, Attributes: map[string]string{"attested": subject}}, nil
}

// ReadsProxyAuthorization implements identity.ProxyAuthorizationReader.
func (*Verifier) ReadsProxyAuthorization() {}

// Interface guards.
var (
	_ identity.Verifier                 = (*Verifier)(nil)
	_ identity.ProxyAuthorizationReader = (*Verifier)(nil)
)
