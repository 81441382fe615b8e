// Package snowflake is the "snowflake" credential provider: Snowflake's
// key-pair JWT, so that workloads call the Snowflake SQL API and REST APIs
// with no private key of their own.
//
// Snowflake authenticates a user with a key pair by a JWT the client
// signs itself (no token endpoint):
//
//   - RS256, signed by the private key whose public key is assigned to the
//     user (ALTER USER ... SET RSA_PUBLIC_KEY);
//   - iss = ACCOUNT.USER.SHA256:FINGERPRINT, where FINGERPRINT is the
//     base64 SHA-256 of the public key's DER SubjectPublicKeyInfo (what
//     DESCRIBE USER shows as RSA_PUBLIC_KEY_FP);
//   - sub = ACCOUNT.USER, both upper-cased, ACCOUNT without region,
//     cloud or the .snowflakecomputing.com suffix (AccountIdentifier);
//   - iat, and exp at most one hour later.
//
// The request carries it as Authorization: Bearer JWT with
// X-Snowflake-Authorization-Token-Type: KEYPAIR_JWT; the headers injector
// sets both from the credential's token field (docs/plugins/snowflake.md).
//
// The fingerprint is computed from the key that signs, at every signing,
// so a rotated key file or credential is picked up at the next mint. The
// credential (one JWT) is cached and re-minted before it expires.
//
// # Settings
//
//	provider: snowflake
//	account: myorg-myaccount           # or xy12345.us-east-2.aws, or the host
//	user: etl_service
//	private_key: {file: /run/secrets/snowflake.p8}   # or {credential: NAME}
//	#   passphrase: {credential: NAME}  # for an encrypted PKCS#8 key
//	lifetime: 1h                       # ≤ 1h (Snowflake's limit)
package snowflake

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/jwtsign"
)

// Name is the provider's registered name.
const Name = "snowflake"

func init() {
	providers.Register(providers.Module{
		Name: Name,
		Doc:  "Snowflake key-pair JWTs (RS256, iss ACCOUNT.USER.SHA256:fingerprint) for the SQL API and REST APIs",
		SettingDocs: map[string]string{
			"account":     "the account identifier: orgname-accountname, or the account locator (region and .snowflakecomputing.com are dropped)",
			"user":        "the Snowflake user the public key is assigned to",
			"private_key": "the user's RSA private key: a PEM file or another credential (PKCS#8, PKCS#1; encrypted PKCS#8 with passphrase: {credential: NAME})",
			"lifetime":    "how long each JWT is valid (default and maximum 1h)",
		},
		New: func() providers.Provider { return new(Provider) },
	})
}

// Limits.
const (
	// MaxLifetime is the longest lifetime Snowflake accepts for a key-pair
	// JWT (exp - iat).
	MaxLifetime = time.Hour
	// expiryMargin is how much earlier than its exp a JWT is treated as
	// expired (clock skew, transit time); the cache re-mints ahead of it.
	expiryMargin = 2 * time.Minute
	// minLifetime leaves the JWT useful after the margin.
	minLifetime = 5 * time.Minute
	// TokenType is the X-Snowflake-Authorization-Token-Type of a key-pair
	// JWT.
	TokenType = "KEYPAIR_JWT"
)

// Provider is the "snowflake" provider. Its exported fields are its
// settings; see the package documentation.
type Provider struct {
	// Account is the account identifier, as in the account's URL.
	Account string `yaml:"account"`
	// User is the Snowflake user the public key is assigned to.
	User string `yaml:"user"`
	// PrivateKey is the user's RSA private key (a PEM file or another
	// credential of the policy).
	PrivateKey jwtsign.KeySource `yaml:"private_key"`
	// Lifetime is how long each JWT is valid. Default and maximum 1h.
	Lifetime time.Duration `yaml:"lifetime"`

	signer jwtsign.KeyedSigner
	// subject is ACCOUNT.USER, computed once.
	subject string
	scope   string
	now     func() time.Time

	providers.InputSet `yaml:"-"`
}

// userName matches the Snowflake user names the JWT can carry unquoted.
var userName = regexp.MustCompile(`^[A-Za-z0-9_$@.\-]+$`)

// AccountIdentifier returns the account part of a key-pair JWT's iss and
// sub as Snowflake documents it: upper-cased, without "https://" and the
// ".snowflakecomputing.com" (and ".privatelink") suffix;
//
//   - an org-account identifier is kept whole (myorg-myaccount →
//     MYORG-MYACCOUNT), and its SQL spelling with a "." joined with "-"
//     (myorg.my_account → MYORG-MY_ACCOUNT: account names have no "-");
//   - an account locator loses its region and cloud (xy12345.us-east-2.aws
//     → XY12345: region names always have a "-", or are a cloud name);
//   - a ".global" (client redirect) host keeps the part before its first
//     "-", as Snowflake's own JWT generator does.
func AccountIdentifier(account string) string {
	a := strings.TrimSpace(account)
	a = strings.TrimPrefix(strings.TrimPrefix(a, "https://"), "http://")
	a = strings.TrimSuffix(a, "/")
	a = strings.TrimSuffix(strings.ToLower(a), ".snowflakecomputing.com")
	a = strings.TrimSuffix(a, ".privatelink")
	first, rest, dotted := strings.Cut(a, ".")
	switch {
	case rest == "global":
		first, _, _ = strings.Cut(first, "-")
		a = first
	case dotted && !strings.Contains(rest, ".") && !strings.Contains(rest, "-") && !clouds[rest]:
		a = first + "-" + rest // orgname.account_name
	case dotted:
		a = first // locator.region[.cloud]
	}
	return strings.ToUpper(a)
}

// clouds are the cloud names that end an account locator's region.
var clouds = map[string]bool{"aws": true, "gcp": true, "azure": true}

// Fingerprint returns "SHA256:" and the base64 SHA-256 of pub's DER
// SubjectPublicKeyInfo, the form DESCRIBE USER shows as RSA_PUBLIC_KEY_FP.
func Fingerprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encode the public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return "SHA256:" + base64.StdEncoding.EncodeToString(sum[:]), nil
}

// Provision applies defaults and builds the signer. It contacts nothing
// and reads no key.
func (p *Provider) Provision(context.Context) error {
	if p.Lifetime == 0 {
		p.Lifetime = MaxLifetime
	}
	if p.PrivateKey.Algorithm == "" {
		p.PrivateKey.Algorithm = jwtsign.RS256
	}
	if p.now == nil {
		p.now = time.Now
	}
	p.subject = AccountIdentifier(p.Account) + "." + strings.ToUpper(p.User)
	var pass []string
	if pp := p.PrivateKey.Passphrase; pp != nil {
		pass = []string{pp.Credential, pp.Field}
	}
	p.scope = providers.NewScope(Name).AddList("settings", []string{p.subject, p.PrivateKey.File,
		p.PrivateKey.Credential, p.PrivateKey.Field, p.Lifetime.String()}).AddList("passphrase", pass).String()
	if !p.PrivateKey.IsSet() || p.PrivateKey.Transit != nil {
		return nil // Validate says what to change
	}
	s, err := jwtsign.New(p.PrivateKey, "private_key", jwtsign.FromInputs(p.Map))
	if err != nil {
		return fmt.Errorf("snowflake: %w", err)
	}
	ks, ok := s.(jwtsign.KeyedSigner)
	if !ok {
		return errors.New("snowflake: private_key: this key source cannot give the public key the JWT's iss names; use file or credential")
	}
	p.signer = ks
	return nil
}

// Validate checks the settings and says what to change.
func (p *Provider) Validate() error {
	acct := AccountIdentifier(p.Account)
	switch {
	case p.Account == "":
		return errors.New("snowflake: set account (the account identifier: orgname-accountname, or the account locator as in xy12345.us-east-2.aws)")
	case acct == "" || strings.ContainsAny(acct, "/:@ ") || strings.Contains(acct, ".."):
		return fmt.Errorf("snowflake: account %q is not an account identifier; write orgname-accountname or the account locator", p.Account)
	case p.User == "":
		return errors.New("snowflake: set user (the Snowflake user the public key is assigned to)")
	case !userName.MatchString(p.User):
		return fmt.Errorf("snowflake: user %q has characters a key-pair JWT cannot carry; use the user's login name", p.User)
	case !p.PrivateKey.IsSet():
		return errors.New("snowflake: set private_key: {file: PATH} (the user's RSA private key, PEM) or {credential: NAME}")
	case p.PrivateKey.Transit != nil:
		return errors.New("snowflake: private_key.transit is not supported: the JWT names the public key's fingerprint, which the gateway reads from the key; use file or credential")
	case p.PrivateKey.Algorithm != jwtsign.RS256:
		return fmt.Errorf("snowflake: private_key.algorithm is %s; Snowflake key-pair JWTs are RS256 (an RSA key of at least %d bits)", p.PrivateKey.Algorithm, jwtsign.MinRSABits)
	case p.Lifetime > MaxLifetime:
		return fmt.Errorf("snowflake: lifetime %s is longer than Snowflake accepts; set at most 1h", p.Lifetime)
	case p.Lifetime < minLifetime:
		return fmt.Errorf("snowflake: lifetime %s is too short; set at least %s", p.Lifetime, minLifetime)
	}
	if err := p.PrivateKey.Validate("private_key"); err != nil {
		return fmt.Errorf("snowflake: %w", err)
	}
	return nil
}

// Inputs lists the credential holding the key, if any.
func (p *Provider) Inputs() []string { return p.PrivateKey.Inputs() }

// CacheScope keys credentials by every setting that shapes them; they do
// not depend on the caller.
func (p *Provider) CacheScope(providers.Request) string { return p.scope }

// ReissueOnUnauthorized implements providers.Reissuer: after the user's
// key is rotated, a JWT signed with the old key is refused before it
// expires; the gateway drops it and the next request mints anew.
func (p *Provider) ReissueOnUnauthorized() bool { return true }

// Fetch signs a key-pair JWT.
func (p *Provider) Fetch(ctx context.Context, req providers.Request) (*providers.Credential, error) {
	if p.signer == nil {
		return nil, errors.New("snowflake: the provider was not provisioned")
	}
	ctx = jwtsign.WithRequest(ctx, req)
	now := p.now()
	exp := now.Add(p.Lifetime)
	jwt, err := p.signer.SignKeyed(ctx, nil, func(pub crypto.PublicKey) (map[string]any, error) {
		fp, err := Fingerprint(pub)
		if err != nil {
			return nil, err
		}
		return map[string]any{"iss": p.subject + "." + fp, "sub": p.subject, "iat": now.Unix(), "exp": exp.Unix()}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("snowflake: sign the key-pair JWT for %s: %w", p.subject, err)
	}
	return &providers.Credential{
		Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(jwt)},
		Expiry: exp.Add(-expiryMargin),
	}, nil
}

// String describes the provider; it is what every fmt verb and slog print.
func (p *Provider) String() string { return fmt.Sprintf("snowflake(%s)", p.subject) }

// GoString implements fmt.GoStringer.
func (p *Provider) GoString() string { return p.String() }

// Format implements fmt.Formatter.
func (p *Provider) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(p.String())) }

// LogValue implements slog.LogValuer.
func (p *Provider) LogValue() slog.Value { return slog.StringValue(p.String()) }

// CheckSources reports the private key's file (or its transit login's
// file or variable) when it cannot be read now (providers.SourceChecker).
func (p *Provider) CheckSources() []providers.SourceProblem {
	return p.PrivateKey.CheckSources("snowflake", "private_key.")
}

// Interface guards.
var (
	_ providers.SourceChecker = (*Provider)(nil)
	_ providers.Provider      = (*Provider)(nil)
	_ providers.Provisioner   = (*Provider)(nil)
	_ providers.Validator     = (*Provider)(nil)
	_ providers.Composer      = (*Provider)(nil)
	_ providers.Scoped        = (*Provider)(nil)
	_ providers.Reissuer      = (*Provider)(nil)
)
