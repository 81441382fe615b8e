package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credgate/credgate/providers"
)

// Fields of a "vault-pki" credential, for the tlsclient injector.
const (
	// FieldCertificate is the issued leaf certificate, PEM.
	FieldCertificate = providers.FieldCertificate
	// FieldPrivateKey is the leaf's private key, PEM.
	FieldPrivateKey = providers.FieldPrivateKey
	// FieldCAChain is the issuing CA chain, PEM, leaf's issuer first. To
	// present the full chain, send FieldCertificate followed by it.
	FieldCAChain = providers.FieldCAChain
)

// PKIProvider is the "vault-pki" provider: it issues a client certificate
// from a PKI role (MOUNT/issue/ROLE) for outbound mTLS. Each workload gets
// its own certificate (the provider is always Scoped by workload), cached
// until shortly before it expires and then issued anew.
//
//	provider: vault-pki
//	server: *vault
//	mount: pki                        # default pki
//	role: partner-client              # required
//	common_name: "{{.workload.name}}.clients.example.com"   # required
//	alt_names: []                     # optional DNS/email SANs (templated)
//	uri_sans: ["spiffe://example.org/{{.workload.name}}"]   # optional
//	ttl: 1h                           # optional; default: the role's TTL
//	revoke_on_cleanup: false          # revoke leases (roles with generate_lease)
//
// Fields: FieldCertificate, FieldPrivateKey, FieldCAChain (PEM). Expiry is
// the certificate's NotAfter.
type PKIProvider struct {
	// Server is the Vault server and the gateway's login to it.
	Server Server `yaml:"server"`
	// Mount is where the PKI engine is enabled. Default "pki".
	Mount string `yaml:"mount"`
	// Role is the PKI role to issue from. Required.
	Role string `yaml:"role"`
	// CommonName is the certificate's CN; it may be templated like path.
	CommonName string `yaml:"common_name"`
	// AltNames are extra DNS or email SANs; each may be templated.
	AltNames []string `yaml:"alt_names"`
	// URISANs are URI SANs (such as a SPIFFE ID); each may be templated.
	URISANs []string `yaml:"uri_sans"`
	// TTL is the certificate lifetime requested; 0 uses the role's.
	TTL time.Duration `yaml:"ttl"`
	// RevokeOnCleanup revokes the leases of issued certificates (when the
	// role has generate_lease) and the gateway's token on cleanup.
	RevokeOnCleanup bool `yaml:"revoke_on_cleanup"`

	clock  clock
	client *Client
	cn     template
	alts   []template
	uris   []template
	leases *leases
}

// Provision parses the templates and prepares the Vault client.
func (p *PKIProvider) Provision(ctx context.Context) error {
	if p.clock == nil {
		p.clock = realClock{}
	}
	if p.Mount == "" {
		p.Mount = "pki"
	}
	p.Mount = strings.Trim(p.Mount, "/")
	var err error
	if p.cn, err = parseTemplate("common_name", p.CommonName); err != nil {
		return fmt.Errorf("vault-pki: %w", err)
	}
	for _, s := range p.AltNames {
		t, err := parseTemplate("alt_names", s)
		if err != nil {
			return fmt.Errorf("vault-pki: %w", err)
		}
		p.alts = append(p.alts, t)
	}
	for _, s := range p.URISANs {
		t, err := parseTemplate("uri_sans", s)
		if err != nil {
			return fmt.Errorf("vault-pki: %w", err)
		}
		p.uris = append(p.uris, t)
	}
	c, err := newClient(p.Server, p.clock, "vault-pki", providers.EnvFrom(ctx))
	if err != nil {
		return err
	}
	p.client = c
	p.leases = newLeases(c, p.clock, false)
	return nil
}

// Validate checks the settings.
func (p *PKIProvider) Validate() error {
	switch {
	case p.Role == "":
		return errors.New("vault-pki: role is not set; name the PKI role to issue client certificates from")
	case strings.ContainsAny(p.Role, "/{}") || p.Role == "..":
		return fmt.Errorf("vault-pki: role %q must be a plain role name", p.Role)
	case strings.Contains(p.Mount, ".."):
		return fmt.Errorf("vault-pki: mount %q must not contain a .. segment", p.Mount)
	case p.CommonName == "":
		return errors.New("vault-pki: common_name is not set; set it to the certificate's name, for example {{.workload.name}}.clients.example.com")
	case p.TTL < 0 || (p.TTL > 0 && p.TTL < time.Second):
		return fmt.Errorf("vault-pki: ttl %s must be at least 1s", p.TTL)
	}
	for _, s := range append(append([]string(nil), p.AltNames...), p.URISANs...) {
		if strings.Contains(s, ",") {
			return fmt.Errorf("vault-pki: SAN %q must not contain a comma; list each name separately", s)
		}
	}
	return nil
}

// CacheScope implements providers.Scoped: certificates are per workload,
// so that workloads never share a client certificate (nor, in the
// gateway, a client-authenticated upstream connection), and per rendered
// common name and SANs: two callers of one workload whose attributes
// render different names get different certificates.
func (p *PKIProvider) CacheScope(req providers.Request) string {
	s := providers.NewScope("vault-pki").Add("workload", req.Workload.Name)
	s.AddTemplate("common_name", p.cn.t, req.Workload, checkValue)
	for i, t := range p.alts {
		s.AddTemplate("alt_names["+strconv.Itoa(i)+"]", t.t, req.Workload, checkValue)
	}
	for i, t := range p.uris {
		s.AddTemplate("uri_sans["+strconv.Itoa(i)+"]", t.t, req.Workload, checkValue)
	}
	return s.String()
}

// Fetch issues a certificate for the caller.
func (p *PKIProvider) Fetch(ctx context.Context, req providers.Request) (*providers.Credential, error) {
	cn, err := p.cn.render(req.Workload)
	if err != nil {
		return nil, fmt.Errorf("vault-pki: common_name: %w", err)
	}
	render := func(what string, ts []template) (string, error) {
		var out []string
		for _, t := range ts {
			s, err := t.render(req.Workload)
			if err != nil {
				return "", fmt.Errorf("vault-pki: %s: %w", what, err)
			}
			out = append(out, s)
		}
		return strings.Join(out, ","), nil
	}
	alts, err := render("alt_names", p.alts)
	if err != nil {
		return nil, err
	}
	uris, err := render("uri_sans", p.uris)
	if err != nil {
		return nil, err
	}
	body := map[string]any{"common_name": cn, "format": "pem"}
	if alts != "" {
		body["alt_names"] = alts
	}
	if uris != "" {
		body["uri_sans"] = uris
	}
	if p.TTL > 0 {
		body["ttl"] = fmt.Sprintf("%ds", int(p.TTL.Seconds()))
	}
	path := p.Mount + "/issue/" + p.Role
	op := "issue a certificate for " + cn + " from " + path
	sent := p.clock.Now() // a lease's TTL runs from no later than this
	var date time.Time    // the answer's Date: Vault's clock
	sec, tok, err := p.client.doToken(ctx, op, func(ctx context.Context, a *api.Client) (*api.Secret, error) {
		return a.WithResponseCallbacks(func(r *api.Response) {
			date = providers.AnswerDate(r.Header)
		}).Logical().WriteWithContext(ctx, path, body)
	})
	if err != nil {
		return nil, err
	}
	cred, err := certCredential(sec)
	if err != nil {
		return nil, fmt.Errorf("vault-pki: %s: %w", op, err)
	}
	// NotAfter is on Vault's clock: counted on the gateway's from the
	// answer's Date, as every expiry a server states.
	cred.Expiry = providers.ServerExpiry(p.client.env.Log, "vault-pki "+path, cred.Expiry, date, sent)
	if sec.LeaseID != "" {
		if err := leaseLifetime(sec); err != nil {
			return nil, fmt.Errorf("vault-pki: %s: %w", op, err)
		}
		// generate_lease: the certificate's lease is the child of the
		// gateway's token; Vault revokes the certificate when the token
		// dies. Replace it before then, and drop it if the token is
		// found revoked.
		dies, revoked := p.leases.track(path, sec, tok, sent)
		if !dies.IsZero() {
			cred.Expiry = earliest(cred.Expiry, dies)
		}
		cred.Revoked = revoked
	}
	return cred, nil
}

// certCredential checks an issue answer and turns it into a credential.
func certCredential(sec *api.Secret) (*providers.Credential, error) {
	if sec == nil {
		return nil, errors.New("empty answer")
	}
	str := func(k string) string { s, _ := sec.Data[k].(string); return s }
	certPEM, keyPEM := str("certificate"), str("private_key")
	if certPEM == "" || keyPEM == "" {
		return nil, errors.New("the answer has no certificate or private_key")
	}
	var chain []string
	if cs, ok := sec.Data["ca_chain"].([]any); ok {
		for _, c := range cs {
			if s, ok := c.(string); ok && s != "" {
				chain = append(chain, strings.TrimSpace(s))
			}
		}
	}
	if len(chain) == 0 && str("issuing_ca") != "" {
		chain = []string{strings.TrimSpace(str("issuing_ca"))}
	}
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		// The tls error names no key material.
		return nil, fmt.Errorf("certificate and private_key do not form a key pair: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parse the issued certificate: %w", err)
	}
	if block, _ := pem.Decode([]byte(certPEM)); block == nil {
		return nil, errors.New("the certificate is not PEM")
	}
	fields := map[string]providers.Secret{
		FieldCertificate: providers.NewSecret(strings.TrimSpace(certPEM) + "\n"),
		FieldPrivateKey:  providers.NewSecret(strings.TrimSpace(keyPEM) + "\n"),
	}
	if len(chain) > 0 {
		fields[FieldCAChain] = providers.NewSecret(strings.Join(chain, "\n") + "\n")
	}
	return &providers.Credential{Fields: fields, Expiry: leaf.NotAfter}, nil
}

// Cleanup stops token renewal and, with revoke_on_cleanup, revokes the
// certificate leases still valid and the gateway's token.
func (p *PKIProvider) Cleanup() error {
	return cleanup(p.client, p.leases, p.RevokeOnCleanup)
}

// CheckSources reports the login's files and variable that cannot be
// read now (providers.SourceChecker).
func (p *PKIProvider) CheckSources() []providers.SourceProblem {
	return p.Server.CheckSources("server.")
}

// Interface guards.
var (
	_ providers.SourceChecker = (*PKIProvider)(nil)
	_ providers.Provider      = (*PKIProvider)(nil)
	_ providers.Provisioner   = (*PKIProvider)(nil)
	_ providers.Validator     = (*PKIProvider)(nil)
	_ providers.Scoped        = (*PKIProvider)(nil)
	_ providers.CleanerUpper  = (*PKIProvider)(nil)
)
