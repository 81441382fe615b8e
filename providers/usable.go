package providers

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"golang.org/x/net/http/httpguts"
)

// ErrUnusable marks a credential a provider returned that no injector
// could use as it is: no value at all, a value too large, an expiry
// already past, a well-known field holding bytes its kind never holds
// (a line break in a user name or an AWS key), or a PEM field that does
// not parse. The cache refuses such a credential before it keeps it (in
// memory or in the shared tier): the fetch fails, is remembered for the
// error backoff like any failed fetch, and the next fetch after it asks
// the source again. Errors wrapping it also wrap ErrUnavailable (503
// with Retry-After: the source may be fixed) and name the credential,
// the provider, the field and the cause, never the value.
var ErrUnusable = errors.New("credential not usable")

// MaxFieldBytes bounds one field of a credential: far above any token,
// key, certificate chain or JSON service-account key, far below what
// would make an upstream refuse the request head (injectors bound what
// they set to 64 KiB in all).
const MaxFieldBytes = 64 << 10

// lineFields are the well-known fields whose every value is one line of
// printable text wherever it is put: RFC 7617 forbids control
// characters in a Basic user-id and password, and AWS access key ids,
// secret keys and session tokens are base64-like text. `token` is not
// among them: a static `file:` input may hold a PEM key or a JSON key
// file in it (jwtsign, google), and what bytes a token may hold depends
// on the injector, which refuses what it cannot send (the gateway then
// drops the credential from the cache; see injectors.ErrInvalidValue).
var lineFields = []string{FieldUsername, FieldPassword, FieldAccessKeyID, FieldSecretAccessKey, FieldSessionToken}

// CheckUsable reports why cred cannot be used at now: see ErrUnusable.
// credential and provider name it in the error; no value ever appears
// there.
func CheckUsable(cred *Credential, credential, provider string, now time.Time) error {
	unusable := func(format string, args ...any) error {
		return fmt.Errorf("credential %q: provider %s returned a credential that cannot be used: %s: %w: %w",
			credential, provider, fmt.Sprintf(format, args...), ErrUnusable, ErrUnavailable)
	}
	if cred == nil {
		return unusable("no credential")
	}
	if !cred.Expiry.IsZero() && !now.Before(cred.Expiry) {
		return unusable("it has already expired (at %s)", cred.Expiry.UTC().Format(time.RFC3339))
	}
	any := false
	for name, v := range cred.Fields {
		if n := len(v.Reveal()); n > MaxFieldBytes {
			return unusable("field %q is %d bytes, more than the %d a credential field may have", name, n, MaxFieldBytes)
		}
		any = any || !v.IsZero()
	}
	if !any {
		return unusable("it has no value (every field is empty or missing)")
	}
	for _, name := range lineFields {
		if v, ok := cred.Field(name); ok && !httpguts.ValidHeaderFieldValue(v.Reveal()) {
			return unusable("field %q contains a line break, NUL or other control character", name)
		}
	}
	return checkPEMFields(cred, unusable)
}

// checkPEMFields checks the PEM fields of a TLS client certificate: each
// present one parses, and a certificate and key present together match
// (tls.X509KeyPair).
func checkPEMFields(cred *Credential, unusable func(string, ...any) error) error {
	cert, hasCert := cred.Field(FieldCertificate)
	key, hasKey := cred.Field(FieldPrivateKey)
	if hasCert {
		if err := parseCertificates(cert.Reveal()); err != nil {
			return unusable("field %q is not PEM certificates: %v", FieldCertificate, err)
		}
	}
	if chain, ok := cred.Field(FieldCAChain); ok {
		if err := parseCertificates(chain.Reveal()); err != nil {
			return unusable("field %q is not PEM certificates: %v", FieldCAChain, err)
		}
	}
	if hasKey {
		if b, _ := pem.Decode([]byte(key.Reveal())); b == nil {
			return unusable("field %q is not a PEM private key", FieldPrivateKey)
		}
	}
	if hasCert && hasKey {
		if _, err := tls.X509KeyPair([]byte(cert.Reveal()), []byte(key.Reveal())); err != nil {
			// X509KeyPair's errors say what is wrong, never the bytes.
			return unusable("fields %q and %q are not a certificate and its private key: %v", FieldCertificate, FieldPrivateKey, err)
		}
	}
	return nil
}

// parseCertificates parses every CERTIFICATE block of s; s must hold at
// least one. Other blocks and text around them are skipped, as
// tls.X509KeyPair skips them.
func parseCertificates(s string) error {
	rest := []byte(s)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("certificate %d does not parse", n+1)
		}
		n++
	}
	if n == 0 {
		return errors.New("no CERTIFICATE block")
	}
	return nil
}
