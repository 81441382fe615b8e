package injectors

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/credgate/credgate/providers"
)

func init() {
	Register(Module{
		Name: "tlsclient",
		Doc:  "present the credential as the upstream TLS client certificate (mTLS APIs)",
		SettingDocs: map[string]string{
			"cert_field":  "credential field of the certificate (PEM; default certificate)",
			"key_field":   "credential field of the private key (PEM; default private_key)",
			"chain_field": `credential field of the issuing chain (default ca_chain; "-" sends the leaf only)`,
		},
		New: func() Injector { return new(TLSClient) },
	})
}

// ClientCertificate is implemented by injectors that authenticate the
// upstream TLS connection with a client certificate instead of (or
// besides) a header. The gateway calls Certificate after Inject succeeded
// and sends the request over a connection that presents it; connections
// are pooled per certificate, so requests with different certificates
// (different workloads) never share a client-authenticated connection.
type ClientCertificate interface {
	Certificate(cred *providers.Credential) (*tls.Certificate, error)
}

// TLSClient is the "tlsclient" injector: it presents the credential's
// certificate and key (PEM, with the issuing chain when present) as the
// TLS client certificate on the upstream connection: outbound mTLS to
// partner APIs that require client certificates (e.g. from the vault-pki
// provider). It sets no header.
//
// Settings (all optional):
//
//	as: tlsclient
//	cert_field: certificate    # default providers.FieldCertificate
//	key_field: private_key     # default providers.FieldPrivateKey
//	chain_field: ca_chain      # default providers.FieldCAChain; "-" sends the leaf only
type TLSClient struct {
	CertField  string `yaml:"cert_field"`
	KeyField   string `yaml:"key_field"`
	ChainField string `yaml:"chain_field"`

	mu     sync.Mutex
	parsed map[[32]byte]*tls.Certificate
}

// maxParsed bounds the parsed-certificate memo (one entry per live
// certificate: per workload and renewal).
const maxParsed = 1024

// Provision applies the defaults.
func (t *TLSClient) Provision() error {
	if t.CertField == "" {
		t.CertField = providers.FieldCertificate
	}
	if t.KeyField == "" {
		t.KeyField = providers.FieldPrivateKey
	}
	if t.ChainField == "" {
		t.ChainField = providers.FieldCAChain
	}
	t.parsed = map[[32]byte]*tls.Certificate{}
	return nil
}

// Inject checks that the credential holds a usable certificate; the
// certificate itself goes on the connection, not on r.
func (t *TLSClient) Inject(_ *http.Request, cred *providers.Credential) error {
	_, err := t.Certificate(cred)
	return err
}

// Headers implements HeaderNames: tlsclient sets none.
func (*TLSClient) Headers() []string { return nil }

// Certificate returns the credential's certificate, parsed once per
// distinct certificate.
func (t *TLSClient) Certificate(cred *providers.Credential) (*tls.Certificate, error) {
	certPEM, err := field("tlsclient", cred, t.CertField)
	if err != nil {
		return nil, err
	}
	keyPEM, err := field("tlsclient", cred, t.KeyField)
	if err != nil {
		return nil, err
	}
	chain := ""
	if t.ChainField != "-" {
		if s, ok := cred.Field(t.ChainField); ok {
			chain = s.Reveal()
		}
	}
	h := sha256.New()
	h.Write([]byte(certPEM))
	h.Write([]byte{0})
	h.Write([]byte(chain))
	h.Write([]byte{0})
	h.Write([]byte(keyPEM))
	var key [32]byte
	h.Sum(key[:0])

	t.mu.Lock()
	c, ok := t.parsed[key]
	t.mu.Unlock()
	if ok {
		return c, nil
	}
	full := strings.TrimSpace(certPEM) + "\n"
	if chain != "" {
		full += strings.TrimSpace(chain) + "\n"
	}
	pair, err := tls.X509KeyPair([]byte(full), []byte(keyPEM))
	if err != nil {
		// The error says what is wrong with the PEM, never its bytes.
		return nil, fmt.Errorf("tlsclient: the credential's %s/%s are not a certificate and matching key: %w", t.CertField, t.KeyField, ErrInvalidValue)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tlsclient: parse certificate: %w", ErrInvalidValue)
		}
	}
	t.mu.Lock()
	if len(t.parsed) >= maxParsed {
		clear(t.parsed)
	}
	t.parsed[key] = &pair
	t.mu.Unlock()
	return &pair, nil
}

// Interface guards.
var (
	_ Injector          = (*TLSClient)(nil)
	_ Provisioner       = (*TLSClient)(nil)
	_ HeaderNames       = (*TLSClient)(nil)
	_ ClientCertificate = (*TLSClient)(nil)
)
