// Package httpsig is the "httpsig" injector: it signs requests with HTTP
// Message Signatures (RFC 9421), adding Signature-Input and Signature, and
// a Content-Digest (RFC 9530) of the body when the body is covered. The
// application sends plain requests and never holds the key.
//
//	inject:
//	  credential: partner-key       # field private_key (PEM) or secret (HMAC)
//	  as: httpsig
//	  key_id: partner-2026          # the keyid parameter
//	  algorithm: ed25519            # default: from the key
//	  components: ["@method", "@authority", "@path", "@query", "content-type", "content-digest"]
//	  expires: 5m
//
// The key is a PEM private key in a credential field (Ed25519, ECDSA P-256
// or P-384, RSA) or an HMAC secret, or stays in Vault: `transit:` signs
// the signature base with a Vault transit key. The body, when covered
// through content-digest, is read once, hashed as it is read, and held in
// memory up to max_body (a larger body is refused with 413 and nothing is
// sent).
package httpsig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dunglas/httpsfv"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/jwtsign"
)

func init() {
	injectors.Register(injectors.Module{Name: "httpsig",
		Doc: "HTTP Message Signatures (RFC 9421) with Content-Digest (RFC 9530); key from a credential or Vault transit",
		SettingDocs: map[string]string{
			"key_id":         "the keyid parameter (the verifier's name for the key); or key_id_field",
			"key_id_field":   "credential field holding the keyid instead of key_id",
			"algorithm":      "ed25519, ecdsa-p256-sha256, ecdsa-p384-sha384, rsa-pss-sha512, rsa-v1_5-sha256 or hmac-sha256 (default: from the key)",
			"key_field":      `credential field with the PEM key or HMAC secret (default "private_key", "secret" for hmac-sha256)`,
			"key_encoding":   "HMAC secret encoding: raw (default), base64 or hex",
			"transit":        "sign with a Vault transit key instead: {server, mount, key}",
			"label":          `signature label (default "sig1")`,
			"components":     "covered components, in order (default @method @authority @path @query content-type content-digest)",
			"content_digest": "sha-256 (default) or sha-512: the Content-Digest written when content-digest is covered",
			"created":        "add the created parameter (default true)",
			"expires":        "add expires = created + this duration (e.g. 5m)",
			"nonce":          "add a random nonce parameter",
			"include_alg":    "add the alg parameter",
			"tag":            "the tag parameter, if the verifier asks for one",
			"max_body":       "bytes of a body read to compute Content-Digest (default 1048576)",
		},
		New: func() injectors.Injector { return new(Injector) }})
}

// Algorithm names of the HTTP Signature Algorithms registry (RFC 9421
// §6.2.2).
const (
	Ed25519   = "ed25519"
	ECDSAP256 = "ecdsa-p256-sha256"
	ECDSAP384 = "ecdsa-p384-sha384"
	RSAPSS    = "rsa-pss-sha512"
	RSAv15    = "rsa-v1_5-sha256"
	HMACSHA   = "hmac-sha256"
)

// jwsAlg maps an asymmetric algorithm to the JWS alg whose signature
// format it shares (RFC 9421 §3.3 defers to the same primitives).
var jwsAlg = map[string]string{
	Ed25519: jwtsign.EdDSA, ECDSAP256: jwtsign.ES256, ECDSAP384: jwtsign.ES384,
	RSAPSS: jwtsign.PS512, RSAv15: jwtsign.RS256,
}

// Algorithms lists the supported algorithms.
var Algorithms = []string{Ed25519, ECDSAP256, ECDSAP384, RSAPSS, RSAv15, HMACSHA}

// DefaultComponents are covered when components is not set. Header
// components absent from a request are left out of its signature.
var DefaultComponents = []string{"@method", "@authority", "@path", "@query", "content-type", "content-digest"}

// DefaultMaxBody is the default max_body.
const DefaultMaxBody = 1 << 20

// Injector signs requests. Its yaml fields are the rule's settings.
type Injector struct {
	KeyID         string           `yaml:"key_id"`
	KeyIDField    string           `yaml:"key_id_field"`
	Algorithm     string           `yaml:"algorithm"`
	KeyField      string           `yaml:"key_field"`
	KeyEncoding   string           `yaml:"key_encoding"`
	Transit       *jwtsign.Transit `yaml:"transit"`
	Label         string           `yaml:"label"`
	Components    []string         `yaml:"components"`
	ContentDigest string           `yaml:"content_digest"`
	Created       *bool            `yaml:"created"`
	Expires       time.Duration    `yaml:"expires"`
	Nonce         bool             `yaml:"nonce"`
	IncludeAlg    bool             `yaml:"include_alg"`
	Tag           string           `yaml:"tag"`
	MaxBody       int64            `yaml:"max_body"`

	comps      []component
	keyIDParam string // key_id serialized as a structured-field string
	tagParam   string // tag, likewise
	transit    jwtsign.BytesSigner
	closer     io.Closer
	// now is the clock (tests set it).
	now func() time.Time
	// last is the most recently parsed PEM key, so a warm request does
	// not parse the key again.
	last atomic.Pointer[parsedKey]
}

// parsedKey is a PEM key and what it parsed to.
type parsedKey struct {
	pem string
	key crypto.Signer
}

// component is one covered component: its identifier as it appears in
// Signature-Input and the signature base, and how to read its value.
type component struct {
	id    string // serialized component identifier, e.g. "@method" or "@query-param";name="id"
	name  string // lower-case name: "@method", "content-type"
	param string // the name= parameter of @query-param
}

var (
	fieldName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// labelRE is compiled on first use ({0,63}: a 26 KB program).
	labelRE    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z*][a-z0-9_.*-]{0,63}$`) })
	headerName = regexp.MustCompile(`^[a-z0-9!#$%&'*+.^_|~` + "`" + `-]+$`)
)

// derived lists the derived components this injector can sign.
var derived = []string{"@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path", "@query", "@query-param"}

// Provision fills defaults and parses the components.
func (s *Injector) Provision() error {
	if s.Label == "" {
		s.Label = "sig1"
	}
	if s.ContentDigest == "" {
		s.ContentDigest = "sha-256"
	}
	if s.MaxBody == 0 {
		s.MaxBody = DefaultMaxBody
	}
	if s.KeyEncoding == "" {
		s.KeyEncoding = "raw"
	}
	if s.KeyField == "" {
		s.KeyField = providers.FieldPrivateKey
		if s.Algorithm == HMACSHA {
			s.KeyField = "secret"
		}
	}
	if s.now == nil {
		s.now = time.Now
	}
	list := s.Components
	if list == nil {
		list = DefaultComponents
	}
	s.comps = s.comps[:0]
	seen := map[string]bool{}
	for _, c := range list {
		comp, err := parseComponent(c)
		if err != nil {
			return err
		}
		if seen[comp.id] {
			return fmt.Errorf("httpsig: components: %q is listed twice", c)
		}
		seen[comp.id] = true
		s.comps = append(s.comps, comp)
	}
	if s.Transit != nil {
		if s.Algorithm == "" || s.Algorithm == HMACSHA {
			return fmt.Errorf("httpsig: transit needs algorithm set to one of %s", strings.Join(Algorithms[:5], ", "))
		}
		alg, ok := jwsAlg[s.Algorithm]
		if !ok {
			return fmt.Errorf("httpsig: algorithm %q is not one of %s", s.Algorithm, strings.Join(Algorithms, ", "))
		}
		signer, err := jwtsign.New(jwtsign.KeySource{Transit: s.Transit, Algorithm: alg}, "httpsig", nil)
		if err != nil {
			return err
		}
		bs, ok := signer.(jwtsign.BytesSigner)
		if !ok {
			return errors.New("httpsig: the transit signer cannot sign bytes")
		}
		s.transit = bs
		s.closer, _ = signer.(io.Closer)
	}
	return nil
}

// parseComponent reads one entry of components: a derived component
// ("@method"), a header field name ("content-type"), or
// `@query-param;name=NAME`.
func parseComponent(c string) (component, error) {
	name, params, _ := strings.Cut(strings.TrimSpace(c), ";")
	name = strings.ToLower(strings.Trim(name, `"`))
	switch {
	case strings.HasPrefix(name, "@"):
		if !slices.Contains(derived, name) {
			return component{}, fmt.Errorf("httpsig: components: %q is not a derived component this injector signs (%s)", c, strings.Join(derived, ", "))
		}
	case !headerName.MatchString(name):
		return component{}, fmt.Errorf("httpsig: components: %q is not a header field name or a derived component", c)
	case name == "host":
		return component{}, errors.New(`httpsig: components: use "@authority", not "host" (HTTP/2 has no Host header)`)
	case name == "signature" || name == "signature-input":
		return component{}, fmt.Errorf("httpsig: components: %q cannot be signed by the signature it is part of", c)
	}
	comp := component{name: name}
	item := httpsfv.NewItem(name)
	if name == "@query-param" {
		k, v, ok := strings.Cut(params, "=")
		if !ok || strings.TrimSpace(k) != "name" || strings.Trim(v, `"`) == "" {
			return component{}, fmt.Errorf("httpsig: components: %q needs a parameter, like @query-param;name=id", c)
		}
		comp.param = strings.Trim(strings.TrimSpace(v), `"`)
		item.Params.Add("name", comp.param)
	} else if params != "" {
		return component{}, fmt.Errorf("httpsig: components: %q: only @query-param takes a parameter (sf, bs, key and req are not supported)", c)
	}
	id, err := httpsfv.Marshal(item)
	if err != nil {
		return component{}, fmt.Errorf("httpsig: components: %q: %w", c, err)
	}
	comp.id = id
	return comp, nil
}

// Validate checks the settings.
func (s *Injector) Validate() error {
	switch {
	case s.KeyID == "" && s.KeyIDField == "":
		return errors.New("httpsig: needs key_id (the name the verifier knows the key by) or key_id_field")
	case s.KeyID != "" && s.KeyIDField != "":
		return errors.New("httpsig: set key_id or key_id_field, not both")
	case s.KeyIDField != "" && !fieldName.MatchString(s.KeyIDField):
		return fmt.Errorf("httpsig: key_id_field %q is not a field name (letters, digits, _)", s.KeyIDField)
	case !fieldName.MatchString(s.KeyField):
		return fmt.Errorf("httpsig: key_field %q is not a field name (letters, digits, _)", s.KeyField)
	case s.Algorithm != "" && !slices.Contains(Algorithms, s.Algorithm):
		return fmt.Errorf("httpsig: algorithm %q is not one of %s", s.Algorithm, strings.Join(Algorithms, ", "))
	case !labelRE().MatchString(s.Label):
		return fmt.Errorf("httpsig: label %q must be a structured-field key: lower-case letters, digits, _ - . *", s.Label)
	case s.ContentDigest != "sha-256" && s.ContentDigest != "sha-512":
		return fmt.Errorf("httpsig: content_digest %q must be sha-256 or sha-512", s.ContentDigest)
	case s.KeyEncoding != "raw" && s.KeyEncoding != "base64" && s.KeyEncoding != "hex":
		return fmt.Errorf("httpsig: key_encoding %q must be raw, base64 or hex", s.KeyEncoding)
	case s.KeyEncoding != "raw" && s.Algorithm != HMACSHA:
		return errors.New("httpsig: key_encoding applies to algorithm hmac-sha256 only")
	case s.MaxBody < 0:
		return fmt.Errorf("httpsig: max_body %d must be positive", s.MaxBody)
	case s.Expires < 0:
		return errors.New("httpsig: expires must be positive")
	case s.Expires > 0 && !s.created():
		return errors.New("httpsig: expires needs created (it is counted from it)")
	case len(s.comps) == 0:
		return errors.New("httpsig: components is empty: a signature must cover something (at least @method and @authority)")
	}
	if s.KeyID != "" {
		q, err := sfString(s.KeyID)
		if err != nil {
			return fmt.Errorf("httpsig: key_id %q %w", s.KeyID, err)
		}
		s.keyIDParam = q
	}
	if s.Tag != "" {
		q, err := sfString(s.Tag)
		if err != nil {
			return fmt.Errorf("httpsig: tag %q %w", s.Tag, err)
		}
		s.tagParam = q
	}
	return nil
}

// Cleanup releases the Vault client of a transit key.
func (s *Injector) Cleanup() error {
	if s.closer != nil {
		return s.closer.Close()
	}
	return nil
}

func (s *Injector) created() bool { return s.Created == nil || *s.Created }

// covers reports whether name is covered.
func (s *Injector) covers(name string) bool {
	for _, c := range s.comps {
		if c.name == name {
			return true
		}
	}
	return false
}

// Headers implements injectors.HeaderNames: the client's copies of these
// are removed. Content-Digest is the gateway's to write when it is
// covered (it is computed from the body sent).
func (s *Injector) Headers() []string {
	h := []string{"Signature", "Signature-Input"}
	if s.covers("content-digest") {
		h = append(h, "Content-Digest")
	}
	return h
}

// Inject computes the Content-Digest (if covered), builds the signature
// base, signs it and sets Signature-Input and Signature. It checks
// everything before it changes r's headers; the body, when read, is put
// back unchanged.
func (s *Injector) Inject(r *http.Request, cred *providers.Credential) error {
	keyID := s.KeyID
	if s.KeyIDField != "" {
		v, ok := cred.Field(s.KeyIDField)
		if !ok {
			return fmt.Errorf("httpsig: the credential has no field %q for the keyid: %w", s.KeyIDField, injectors.ErrMissingField)
		}
		keyID = v.Reveal()
	}
	sign, alg, err := s.signer(r, cred)
	if err != nil {
		return err
	}
	set := map[string]string{}
	if s.covers("content-digest") {
		d, err := s.digest(r)
		if err != nil {
			return err
		}
		if d != "" {
			set["Content-Digest"] = d
		}
	}
	if s.covers("date") && r.Header.Get("Date") == "" {
		set["Date"] = s.now().UTC().Format(http.TimeFormat)
	}
	get := func(name string) []string {
		if v, ok := set[http.CanonicalHeaderKey(name)]; ok {
			return []string{v}
		}
		return headerValues(r, name)
	}
	base, params, err := s.base(r, get, keyID, alg)
	if err != nil {
		return err
	}
	sig, err := sign([]byte(base))
	if err != nil {
		return err
	}
	// Signature-Input and Signature are one-member structured-field
	// dictionaries (RFC 8941): label=(inner list);params and
	// label=:base64:. Built by hand on the request path; the RFC 9421
	// vectors in the tests pin the bytes.
	in := s.Label + "=" + params
	sv := s.Label + "=:" + base64.StdEncoding.EncodeToString(sig) + ":"
	for k, v := range set {
		r.Header.Set(k, v)
	}
	r.Header.Set("Signature-Input", in)
	r.Header.Set("Signature", sv)
	return nil
}

// signer returns the function that signs a signature base and the
// algorithm name it signs with.
func (s *Injector) signer(r *http.Request, cred *providers.Credential) (func([]byte) ([]byte, error), string, error) {
	if s.transit != nil {
		ctx := r.Context()
		return func(b []byte) ([]byte, error) { return s.transit.SignBytes(ctx, b) }, s.Algorithm, nil
	}
	v, ok := cred.Field(s.KeyField)
	if !ok {
		return nil, "", fmt.Errorf("httpsig: the credential has no field %q holding the key: %w", s.KeyField, injectors.ErrMissingField)
	}
	if s.Algorithm == HMACSHA {
		key, err := decodeKey(s.KeyEncoding, v.Reveal())
		if err != nil {
			return nil, "", fmt.Errorf("httpsig: field %q is not %s (check key_encoding): %w", s.KeyField, s.KeyEncoding, injectors.ErrInvalidValue)
		}
		return func(b []byte) ([]byte, error) {
			m := hmac.New(sha256.New, key)
			m.Write(b)
			return m.Sum(nil), nil
		}, HMACSHA, nil
	}
	key, err := s.parse(v.Reveal())
	if err != nil {
		return nil, "", err
	}
	alg := s.Algorithm
	if alg == "" {
		alg = algorithmOf(key)
	}
	if err := jwtsign.CheckKey(jwsAlg[alg], key); err != nil {
		return nil, "", fmt.Errorf("httpsig: field %q: %w: %w", s.KeyField, err, injectors.ErrInvalidValue)
	}
	if alg == RSAPSS {
		// RFC 9421 §3.3.1: RSASSA-PSS with SHA-512 and a 64-byte salt.
		return func(b []byte) ([]byte, error) {
			d := sha512.Sum512(b)
			return rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA512, d[:], &rsa.PSSOptions{SaltLength: 64})
		}, alg, nil
	}
	bs, err := jwtsign.NewFromKey(key, jwsAlg[alg], "")
	if err != nil {
		return nil, "", fmt.Errorf("httpsig: field %q: %w: %w", s.KeyField, err, injectors.ErrInvalidValue)
	}
	signer := bs.(jwtsign.BytesSigner)
	ctx := r.Context()
	return func(b []byte) ([]byte, error) { return signer.SignBytes(ctx, b) }, alg, nil
}

// parse parses a PEM key, reusing the last parse when the PEM is the same.
func (s *Injector) parse(pem string) (crypto.Signer, error) {
	if p := s.last.Load(); p != nil && p.pem == pem {
		return p.key, nil
	}
	key, err := jwtsign.ParsePrivateKey([]byte(pem))
	if err != nil {
		return nil, fmt.Errorf("httpsig: field %q: %w: %w", s.KeyField, err, injectors.ErrInvalidValue)
	}
	s.last.Store(&parsedKey{pem: pem, key: key})
	return key, nil
}

// algorithmOf picks the algorithm for a key.
func algorithmOf(k crypto.Signer) string {
	switch k := k.(type) {
	case ed25519.PrivateKey:
		return Ed25519
	case *ecdsa.PrivateKey:
		if k.Curve == elliptic.P384() {
			return ECDSAP384
		}
		return ECDSAP256
	}
	return RSAPSS
}

// digest reads the body (bounded), and returns the Content-Digest of it:
// "" for a request without a body.
func (s *Injector) digest(r *http.Request) (string, error) {
	if r.Body == nil || r.Body == http.NoBody {
		if !methodHasBody(r.Method) {
			return "", nil
		}
	}
	var h hash.Hash
	if s.ContentDigest == "sha-512" {
		h = sha512.New()
	} else {
		h = sha256.New()
	}
	if _, err := injectors.BufferBody(r, s.MaxBody, "httpsig", h); err != nil {
		return "", err
	}
	return s.ContentDigest + "=:" + base64.StdEncoding.EncodeToString(h.Sum(nil)) + ":", nil
}

// methodHasBody reports whether Go's transport sends a body (perhaps
// empty, with Content-Length: 0) for method.
func methodHasBody(m string) bool { return m == "POST" || m == "PUT" || m == "PATCH" }

// headerValues is the value of a header component (RFC 9421 §2.1): every
// field line's value trimmed, joined by ", ". Content-Length comes from
// the request's length, which Go keeps outside Header.
func headerValues(r *http.Request, name string) []string {
	if name == "content-length" {
		switch {
		case r.ContentLength > 0:
			return []string{strconv.FormatInt(r.ContentLength, 10)}
		case r.ContentLength == 0 && methodHasBody(r.Method):
			return []string{"0"}
		}
		return nil
	}
	vs := r.Header.Values(name)
	if len(vs) == 0 {
		return nil
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = strings.TrimSpace(v)
	}
	return []string{strings.Join(parts, ", ")}
}

// base builds the signature base (RFC 9421 §2.5) and the serialized
// signature parameters. Header components the request lacks are left out.
func (s *Injector) base(r *http.Request, header func(string) []string, keyID, alg string) (string, string, error) {
	var b, list strings.Builder
	list.WriteByte('(')
	n := 0
	for _, c := range s.comps {
		var values []string
		if strings.HasPrefix(c.name, "@") {
			v, err := derivedValue(r, c)
			if err != nil {
				return "", "", err
			}
			values = v
		} else {
			values = header(c.name)
		}
		if len(values) == 0 {
			continue
		}
		for _, v := range values {
			if strings.ContainsAny(v, "\r\n") {
				return "", "", fmt.Errorf("httpsig: component %s has a line break: %w", c.id, injectors.ErrUnsupportedRequest)
			}
			b.WriteString(c.id)
			b.WriteString(": ")
			b.WriteString(v)
			b.WriteByte('\n')
		}
		if n > 0 {
			list.WriteByte(' ')
		}
		list.WriteString(c.id)
		n++
	}
	list.WriteByte(')')
	now := s.now()
	if s.created() {
		list.WriteString(";created=")
		list.WriteString(strconv.FormatInt(now.Unix(), 10))
	}
	if s.Expires > 0 {
		list.WriteString(";expires=")
		list.WriteString(strconv.FormatInt(now.Add(s.Expires).Unix(), 10))
	}
	if s.Nonce {
		var nonce [16]byte
		if _, err := rand.Read(nonce[:]); err != nil {
			return "", "", fmt.Errorf("httpsig: nonce: %w", err)
		}
		list.WriteString(`;nonce="`)
		list.WriteString(base64.RawURLEncoding.EncodeToString(nonce[:]))
		list.WriteByte('"')
	}
	if s.IncludeAlg {
		list.WriteString(`;alg="`)
		list.WriteString(alg)
		list.WriteByte('"')
	}
	kid := s.keyIDParam
	if s.KeyIDField != "" {
		q, err := sfString(keyID)
		if err != nil {
			return "", "", fmt.Errorf("httpsig: the keyid in field %q %w: %w", s.KeyIDField, err, injectors.ErrInvalidValue)
		}
		kid = q
	}
	list.WriteString(";keyid=")
	list.WriteString(kid)
	if s.tagParam != "" {
		list.WriteString(";tag=")
		list.WriteString(s.tagParam)
	}
	b.WriteString(`"@signature-params": `)
	b.WriteString(list.String())
	return b.String(), list.String(), nil
}

// sfString serializes v as a structured-field string (RFC 8941 §4.1.6):
// printable ASCII, quoted, with " and \ escaped.
func sfString(v string) (string, error) {
	q, err := httpsfv.Marshal(httpsfv.NewItem(v))
	if err != nil {
		return "", fmt.Errorf("is not printable ASCII: %w", err)
	}
	return q, nil
}

// derivedValue is the value of a derived component (RFC 9421 §2.2) of the
// request as it will be sent upstream.
func derivedValue(r *http.Request, c component) ([]string, error) {
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	query := "?" + r.URL.RawQuery
	scheme := strings.ToLower(r.URL.Scheme)
	if scheme == "" {
		scheme = "https"
	}
	switch c.name {
	case "@method":
		return []string{r.Method}, nil
	case "@authority":
		return []string{authority(r, scheme)}, nil
	case "@scheme":
		return []string{scheme}, nil
	case "@path":
		return []string{path}, nil
	case "@query":
		return []string{query}, nil
	case "@request-target":
		if r.URL.RawQuery == "" && !r.URL.ForceQuery {
			return []string{path}, nil
		}
		return []string{path + query}, nil
	case "@target-uri":
		t := scheme + "://" + authority(r, scheme) + path
		if r.URL.RawQuery != "" || r.URL.ForceQuery {
			t += query
		}
		return []string{t}, nil
	case "@query-param":
		return queryParam(r.URL.RawQuery, c.param)
	}
	return nil, fmt.Errorf("httpsig: component %s is not supported", c.id)
}

// authority is the lower-cased host, without the scheme's default port.
func authority(r *http.Request, scheme string) string {
	h := r.Host
	if h == "" {
		h = r.URL.Host
	}
	h = strings.ToLower(h)
	if scheme == "https" {
		h = strings.TrimSuffix(h, ":443")
	} else if scheme == "http" {
		h = strings.TrimSuffix(h, ":80")
	}
	return h
}

// queryParam returns each value of the query parameter name (RFC 9421
// §2.2.8): parameters decoded as application/x-www-form-urlencoded, the
// value percent-encoded again.
func queryParam(raw, name string) ([]string, error) {
	var out []string
	for _, pair := range strings.Split(raw, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		dk, err := formDecode(k)
		if err != nil {
			return nil, fmt.Errorf("httpsig: query parameter %q is not percent-encoded properly: %w", k, injectors.ErrUnsupportedRequest)
		}
		if dk != name {
			continue
		}
		dv, err := formDecode(v)
		if err != nil {
			return nil, fmt.Errorf("httpsig: query parameter %q has a value that is not percent-encoded properly: %w", k, injectors.ErrUnsupportedRequest)
		}
		out = append(out, percentEncode(dv))
	}
	return out, nil
}

// formDecode decodes an application/x-www-form-urlencoded name or value.
func formDecode(s string) (string, error) {
	s = strings.ReplaceAll(s, "+", " ")
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("truncated escape")
		}
		v, err := hex.DecodeString(s[i+1 : i+3])
		if err != nil {
			return "", err
		}
		b.WriteByte(v[0])
		i += 2
	}
	return b.String(), nil
}

// percentEncode escapes every byte outside the unreserved set of the
// application/x-www-form-urlencoded percent-encode set (a space is %20).
func percentEncode(s string) string {
	const upper = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '*' || c == '-' || c == '.' || c == '_' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upper[c>>4])
		b.WriteByte(upper[c&15])
	}
	return b.String()
}

// decodeKey decodes an HMAC secret.
func decodeKey(enc, v string) ([]byte, error) {
	switch enc {
	case "base64":
		return base64.StdEncoding.DecodeString(v)
	case "hex":
		return hex.DecodeString(v)
	}
	return []byte(v), nil
}

// Interface guards.
var (
	_ injectors.Injector    = (*Injector)(nil)
	_ injectors.Provisioner = (*Injector)(nil)
	_ injectors.Validator   = (*Injector)(nil)
	_ injectors.HeaderNames = (*Injector)(nil)
)
