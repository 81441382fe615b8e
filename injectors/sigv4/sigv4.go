// Package sigv4 is the "sigv4" injector: it re-signs requests to AWS (and
// S3-compatible) endpoints with AWS Signature Version 4, using the
// credential's access key, secret key and session token, with
// aws-sdk-go-v2's signer (github.com/aws/aws-sdk-go-v2/aws/signer/v4).
// Applications keep their AWS SDKs and CLIs, configured with placeholder
// keys; the gateway throws the client's signature away and signs again.
//
// # Settings
//
//	as: sigv4
//	service: s3                 # optional: the signing name; default from the host name
//	region: us-east-1           # optional: default from the host name
//	unsigned_payload: true      # optional: sign S3 bodies as UNSIGNED-PAYLOAD (default true for s3)
//	max_hashed_body: 1048576    # optional: bytes a body may have when it must be hashed (default 1 MiB)
//	max_chunk_size: 16777216    # optional: bytes one aws-chunked chunk may have (default 16 MiB)
//	access_key_field: access_key_id          # optional: providers.FieldAccessKeyID
//	secret_key_field: secret_access_key      # optional: providers.FieldSecretAccessKey
//	session_token_field: session_token       # optional: providers.FieldSessionToken
//
// Service and region come from the host name for AWS endpoints: s3
// (virtual-hosted bucket.s3.REGION.amazonaws.com and path style
// s3.REGION.amazonaws.com/bucket, legacy s3-REGION, FIPS and dual-stack
// names; s3-object-lambda and s3-outposts access points, signed with S3's
// rules like s3), sts, dynamodb, sqs, sns, kms, secretsmanager,
// execute-api and bedrock-runtime (signed as bedrock), in the amazonaws.com,
// amazonaws.com.cn and api.aws domains. Any other host (MinIO, a
// custom or VPC endpoint) needs service and region in the settings; the
// settings win over the host name when both are there.
//
// When a field is absent the injector also accepts the names of Vault's
// AWS secrets engine (access_key, secret_key, security_token).
//
// # What is removed and what is signed
//
// The client's Authorization, X-Amz-Security-Token and X-Amz-Date are
// removed (Headers lists them, the gateway drops them). The request is
// signed over its method, path, query and every remaining header, and
// the credential's session token is added as X-Amz-Security-Token. For
// S3 the path is signed as S3 canonicalizes it (the decoded key with every
// byte but the unreserved ones and '/' percent-encoded), whatever spelling
// the client sent; other services escape the wire path once more. The
// path goes upstream as the client spelled it.
//
// # Bodies are never buffered whole
//
// The payload hash is, in this order:
//
//   - the client's X-Amz-Content-Sha256 when it declares a hex SHA-256 (the
//     server checks the body against it), or UNSIGNED-PAYLOAD for S3;
//   - for aws-chunked uploads (STREAMING-AWS4-HMAC-SHA256-PAYLOAD and
//     STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER), the streaming value: the
//     body is wrapped and each chunk's signature, and the trailer
//     signature, is replaced on the fly by one chained from the gateway's
//     seed signature; one chunk (at most max_chunk_size) is held at a time,
//     in a buffer that grows with the bytes received, not with the size
//     the chunk header declares, and a larger chunk ends the upload with
//     413. STREAMING-UNSIGNED-
//     PAYLOAD-TRAILER bodies pass through unchanged;
//   - UNSIGNED-PAYLOAD for S3 without a declared hash (unless
//     unsigned_payload is false);
//   - the SHA-256 of an empty body;
//   - otherwise the body is read, up to max_hashed_body bytes, and hashed;
//     a larger body is refused with 413 (injectors.ErrBodyTooLarge).
//
// X-Amz-Content-Sha256 is sent to S3 (which requires it) with the value
// signed; to other services it is not sent, the value being an artifact
// of the client's signature.
//
// # Refused requests
//
// Presigned URLs (X-Amz-Signature, X-Amz-Credential or X-Amz-Algorithm in
// the query) are refused with 400 (injectors.ErrUnsupportedRequest): the
// placeholder signature in the URL is never forwarded and the gateway
// does not re-presign. Let the SDK send the request, signed with headers,
// through the gateway instead. SigV4a (STREAMING-AWS4-ECDSA-P256-SHA256-
// PAYLOAD) and unknown payload modes are refused the same way.
package sigv4

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go/encoding/httpbinding"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

func init() {
	injectors.Register(injectors.Module{
		Name: "sigv4",
		Doc:  "AWS Signature Version 4 re-signing, streaming aws-chunked uploads",
		SettingDocs: map[string]string{
			"service":             "the signing name (s3, sts, execute-api, ...)",
			"region":              "the signing region",
			"unsigned_payload":    "sign S3 bodies without a declared hash as UNSIGNED-PAYLOAD",
			"max_hashed_body":     "bound on the bytes of a body read to be hashed",
			"max_chunk_size":      "bound on one chunk of an aws-chunked upload",
			"access_key_field":    "credential field of the access key ID",
			"secret_key_field":    "credential field of the secret access key",
			"session_token_field": "credential field of the session token",
		},
		New: func() injectors.Injector { return new(Injector) },
	})
}

// Defaults applied by Provision.
const (
	DefaultMaxHashedBody = 1 << 20
	DefaultMaxChunkSize  = 16 << 20
)

// Header names.
const (
	hdrAuthorization = "Authorization"
	hdrSecurityToken = "X-Amz-Security-Token"
	hdrDate          = "X-Amz-Date"
	hdrContentSHA256 = "X-Amz-Content-Sha256"
)

// Injector is the "sigv4" injector. See the package documentation.
type Injector struct {
	// Service is the signing name (s3, sts, execute-api, ...). Default:
	// derived from the host name.
	Service string `yaml:"service"`
	// Region is the signing region. Default: derived from the host name.
	Region string `yaml:"region"`
	// UnsignedPayload signs S3 bodies without a declared hash as
	// UNSIGNED-PAYLOAD. Default true; false hashes them (up to
	// MaxHashedBody). Only S3 accepts it: other services always hash.
	UnsignedPayload *bool `yaml:"unsigned_payload"`
	// MaxHashedBody bounds the bytes of a body that must be read to be
	// hashed. Default DefaultMaxHashedBody.
	MaxHashedBody int `yaml:"max_hashed_body"`
	// MaxChunkSize bounds one chunk of an aws-chunked upload. Default
	// DefaultMaxChunkSize.
	MaxChunkSize int `yaml:"max_chunk_size"`
	// AccessKeyField, SecretKeyField and SessionTokenField name the
	// credential's fields. Defaults providers.FieldAccessKeyID,
	// providers.FieldSecretAccessKey, providers.FieldSessionToken.
	AccessKeyField    string `yaml:"access_key_field"`
	SecretKeyField    string `yaml:"secret_key_field"`
	SessionTokenField string `yaml:"session_token_field"`

	signer *v4.Signer
	now    func() time.Time // the signing clock; tests set it
}

// Provision applies the defaults.
func (s *Injector) Provision() error {
	if s.MaxHashedBody == 0 {
		s.MaxHashedBody = DefaultMaxHashedBody
	}
	if s.MaxChunkSize == 0 {
		s.MaxChunkSize = DefaultMaxChunkSize
	}
	if s.AccessKeyField == "" {
		s.AccessKeyField = providers.FieldAccessKeyID
	}
	if s.SecretKeyField == "" {
		s.SecretKeyField = providers.FieldSecretAccessKey
	}
	if s.SessionTokenField == "" {
		s.SessionTokenField = providers.FieldSessionToken
	}
	s.signer = v4.NewSigner()
	if s.now == nil {
		s.now = time.Now
	}
	return nil
}

// Validate checks the settings.
func (s *Injector) Validate() error {
	if s.MaxHashedBody < 0 || s.MaxChunkSize < 0 {
		return fmt.Errorf("sigv4: max_hashed_body and max_chunk_size must not be negative")
	}
	for _, v := range []string{s.Service, s.Region} {
		if strings.ContainsAny(v, "/ \t\r\n") {
			return fmt.Errorf("sigv4: service and region may not contain '/' or white space (got %q)", v)
		}
	}
	return nil
}

// Headers implements injectors.HeaderNames: the client's signature
// headers, which the gateway removes before Inject.
func (*Injector) Headers() []string {
	return []string{hdrAuthorization, hdrSecurityToken, hdrDate}
}

// vaultNames are the field names of Vault's AWS secrets engine, accepted
// when the configured names are absent.
var vaultNames = map[string]string{
	providers.FieldAccessKeyID:     "access_key",
	providers.FieldSecretAccessKey: "secret_key",
	providers.FieldSessionToken:    "security_token",
}

// field returns the named credential field (or its Vault spelling). A
// value with a control character, a space or a character that is not
// ASCII is refused as the value's fault (injectors.ErrInvalidValue): the
// access key and the session token go into header values, where servers
// read non-ASCII bytes as other characters (ISO-8859-1) than the
// scrubber searches for, and no AWS key holds any of them.
func (s *Injector) field(cred *providers.Credential, name string, required bool) (string, error) {
	v, ok := cred.Field(name)
	if !ok {
		if alt, isAlt := vaultNames[name]; isAlt {
			v, ok = cred.Field(alt)
		}
	}
	if ok {
		if val := v.Reveal(); strings.IndexFunc(val, func(c rune) bool { return c <= ' ' || c >= 0x7f }) < 0 {
			return val, nil
		}
		return "", fmt.Errorf("sigv4: the credential's %q field holds a space, a control character or a character that is not ASCII, which no AWS key has: %w", name, injectors.ErrInvalidValue)
	}
	if !required {
		return "", nil
	}
	return "", fmt.Errorf("sigv4: credential has no %q field: %w", name, injectors.ErrMissingField)
}

// scopeFor returns the signing service and region for r.
func (s *Injector) scopeFor(r *http.Request) (service, region string, err error) {
	service, region = s.Service, s.Region
	if service != "" && region != "" {
		return service, region, nil
	}
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	hs, hr, err := endpoint(host)
	if err != nil {
		return "", "", fmt.Errorf("sigv4: set service and region in the rule for this host: %w: %w", err, injectors.ErrRequest)
	}
	if service == "" {
		service = hs
	}
	if region == "" {
		region = hr
	}
	return service, region, nil
}

// Inject re-signs r. Everything that can fail (fields, service and
// region, the payload mode, the hashed body's size) is checked before r
// is changed, except that a body read for hashing and found too large is
// consumed: the request is refused then anyway.
func (s *Injector) Inject(r *http.Request, cred *providers.Credential) error {
	// Parse the query only when it may hold a presigned signature (also
	// percent-encoded).
	if raw := r.URL.RawQuery; strings.Contains(raw, "Amz") || strings.Contains(raw, "%") {
		q := r.URL.Query()
		for _, k := range []string{"X-Amz-Signature", "X-Amz-Credential", "X-Amz-Algorithm"} {
			if q.Has(k) {
				return fmt.Errorf("sigv4: presigned URL (%s in the query) is not re-signed: %w", k, injectors.ErrUnsupportedRequest)
			}
		}
	}
	akid, err := s.field(cred, s.AccessKeyField, true)
	if err != nil {
		return err
	}
	secret, err := s.field(cred, s.SecretKeyField, true)
	if err != nil {
		return err
	}
	token, _ := s.field(cred, s.SessionTokenField, false)
	service, region, err := s.scopeFor(r)
	if err != nil {
		return err
	}
	isS3 := s3Family(service)

	declared := r.Header.Get(hdrContentSHA256)
	var payload string
	var chunked, trailer bool
	var body io.ReadCloser // a replacement body, when the body was read
	switch {
	case isHexSHA256(declared):
		payload = strings.ToLower(declared)
	case declared == streamingPayload || declared == streamingPayloadTrailer:
		if !isS3 || r.Body == nil || r.Body == http.NoBody {
			return fmt.Errorf("sigv4: %s upload without a body or to a service other than s3: %w", declared, injectors.ErrUnsupportedRequest)
		}
		payload, chunked, trailer = declared, true, declared == streamingPayloadTrailer
	case declared == streamingUnsigned && isS3:
		payload = declared
	case declared == unsignedPayload && isS3:
		payload = declared
	case declared != "" && declared != unsignedPayload:
		// The value is the client's; it is not echoed.
		return fmt.Errorf("sigv4: the payload signing mode in X-Amz-Content-Sha256 is not supported (SigV4a or unknown): %w", injectors.ErrUnsupportedRequest)
	case isS3 && (s.UnsignedPayload == nil || *s.UnsignedPayload):
		payload = unsignedPayload
	case r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0:
		payload = emptySHA256
	default:
		payload, body, err = s.hashBody(r)
		if err != nil {
			return err
		}
	}
	for _, k := range []string{hdrAuthorization, hdrSecurityToken, hdrDate, hdrContentSHA256} {
		delete(r.Header, k)
	}
	if body != nil {
		r.Body = body
	}
	if isS3 {
		r.Header[hdrContentSHA256] = []string{payload}
	}
	creds := aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret, SessionToken: token}
	now := s.now().UTC()
	// The signer takes the canonical URI from the path as it goes on the
	// wire (URL.EscapedPath). Other services escape that once more, as
	// they do. S3 does not: it decodes the path and escapes every byte
	// but the unreserved ones and '/' (the object key's own encoding), so
	// a path spelled otherwise on the wire (a raw , + = : @ ! $ & ' ( ) *,
	// or an escaped unreserved byte such as %41 or %7E) would be signed
	// over bytes S3 does not use. For S3 the signer is shown that key
	// encoding; the wire keeps the client's spelling, which decodes to
	// the same key.
	rawPath := r.URL.RawPath
	if isS3 {
		r.URL.RawPath = httpbinding.EscapePath(r.URL.Path, false)
	}
	err = s.signer.SignHTTP(r.Context(), creds, r, payload, service, region, now, func(o *v4.SignerOptions) {
		o.DisableURIPathEscaping = isS3
	})
	r.URL.RawPath = rawPath
	if err != nil {
		// Cannot happen with this signer (it has no failure paths), but
		// never forward a half-signed request.
		return fmt.Errorf("sigv4: sign: %w", err)
	}
	if chunked {
		auth := r.Header.Get(hdrAuthorization)
		i := strings.LastIndex(auth, "Signature=")
		if i < 0 {
			return fmt.Errorf("sigv4: the signer produced no seed signature")
		}
		seed := auth[i+len("Signature="):]
		date := now.Format("20060102")
		key := signingKey(secret, date, region, service)
		cs := newChunkSigner(key, r.Header.Get(hdrDate), date+"/"+region+"/"+service+"/aws4_request", seed)
		r.Body = newChunkedBody(r.Body, cs, trailer, s.MaxChunkSize)
	}
	return nil
}

// hashBody reads r's body, at most MaxHashedBody bytes, and returns its
// SHA-256 and a body that replays it.
func (s *Injector) hashBody(r *http.Request) (string, io.ReadCloser, error) {
	limit := int64(s.MaxHashedBody)
	if r.ContentLength > limit {
		return "", nil, fmt.Errorf("sigv4: body of %d bytes must be hashed and is larger than max_hashed_body %d: %w", r.ContentLength, limit, injectors.ErrBodyTooLarge)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return "", nil, fmt.Errorf("sigv4: read body to hash it: %w: %w", err, injectors.ErrRequest)
	}
	if int64(len(b)) > limit {
		return "", nil, fmt.Errorf("sigv4: body must be hashed and is larger than max_hashed_body %d: %w", limit, injectors.ErrBodyTooLarge)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), readCloser{Reader: bytes.NewReader(b), Closer: r.Body}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// s3Family reports whether service is a signing name of the S3 API: s3,
// and s3-object-lambda and s3-outposts, which the S3 client signs for
// Object Lambda and Outposts access points with S3's rules (the path
// escaped once, UNSIGNED-PAYLOAD and aws-chunked bodies,
// X-Amz-Content-Sha256 sent): aws-sdk-go-v2's S3 client signs every
// request with DisableURIPathEscaping, whatever its signing name.
func s3Family(service string) bool {
	return service == "s3" || service == "s3-object-lambda" || service == "s3-outposts"
}

// isHexSHA256 reports whether v is 64 hex digits.
func isHexSHA256(v string) bool {
	if len(v) != 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// SignatureOnly marks the injector as putting no reusable secret on the
// request: the secret access key only signs, and the session token
// (X-Amz-Security-Token) authenticates nothing without it. Its rules pass
// Range requests by default (policy ranges:), so the SDKs' ranged
// downloads work.
func (*Injector) SignatureOnly() {}

// Interface guards.
var (
	_ injectors.SignatureOnly = (*Injector)(nil)
	_ injectors.Injector      = (*Injector)(nil)
	_ injectors.Provisioner   = (*Injector)(nil)
	_ injectors.Validator     = (*Injector)(nil)
	_ injectors.HeaderNames   = (*Injector)(nil)
)
