// Package hmac is the "hmac" injector: generic HMAC request signing
// configured in the policy, for APIs that authenticate each request with
// a keyed hash of it (Binance, OKX, Coinbase Exchange, many partner
// APIs) instead of a bearer token.
//
//	as: hmac
//	key_field: secret              # the credential field holding the HMAC key
//	algorithm: sha256              # or sha512
//	encoding: hex                  # or base64
//	string_to_sign: "{{.query}}{{.body}}"
//	timestamp: {format: unix_ms, query: timestamp}
//	signature: {query: signature}
//	headers: {X-MBX-APIKEY: "{{.api_key}}"}
//
// The string to sign is a text/template over the request: .method,
// .host, .path, .query, .sorted_query, .request_uri, .body,
// .body_sha256, .body_sha512, .timestamp, .nonce, .header (a map of the
// signed_headers) and .canonical_headers. Values the injector places
// (timestamp, nonce) are on the request before it is signed, so a
// timestamp query parameter is part of .query.
//
// A body is read only when the template names it: it is hashed as it is
// read and held (the signature goes in a header or the URL, which precede
// the body) up to max_body; beyond that the request is refused with
// injectors.ErrBodyTooLarge (413 body_too_large) and nothing is sent.
package hmac

import (
	"bytes"
	stdhmac "crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

func init() {
	injectors.Register(injectors.Module{Name: "hmac",
		Doc: "signs the request with HMAC over a canonical string from a template (exchange APIs, webhooks)",
		SettingDocs: map[string]string{
			"key_field":      `credential field holding the HMAC key (default "secret")`,
			"key_encoding":   "how the key field is written: raw (default), base64 or hex",
			"algorithm":      "sha256 (default) or sha512",
			"encoding":       "signature encoding: hex (default) or base64",
			"string_to_sign": "text/template of the signed string (method, path, query, body hash, timestamp, headers ...)",
			"signature":      "where the signature goes: {header: NAME} or {query: PARAM}",
			"timestamp":      "a timestamp added to the request and offered to the template as .timestamp",
			"nonce":          "a random nonce added to the request (.nonce)",
			"signed_headers": "request headers offered to the template (.header, .canonical_headers)",
			"headers":        "further headers from the credential's fields or constants (the API key)",
			"max_body":       "largest body read to be signed; beyond it 413 body_too_large",
		},
		New: func() injectors.Injector { return new(Injector) }})
}

// DefaultMaxBody is the default bound on a body read to be signed.
const DefaultMaxBody = 1 << 20

// Place says where a value goes: a header or a query parameter (exactly
// one).
type Place struct {
	// Header is the header name, e.g. OK-ACCESS-SIGN.
	Header string `yaml:"header"`
	// Query is the query parameter name, e.g. signature.
	Query string `yaml:"query"`
}

func (p Place) set() bool { return p.Header != "" || p.Query != "" }

// Timestamp is the request time the injector puts on the request and
// offers to the string to sign as .timestamp.
type Timestamp struct {
	// Format is unix (seconds), unix_ms, rfc3339 (2006-01-02T15:04:05Z)
	// or rfc3339_ms (2006-01-02T15:04:05.000Z), always UTC. Default unix.
	Format string `yaml:"format"`
	// Header or Query: where it goes (exactly one).
	Header string `yaml:"header"`
	Query  string `yaml:"query"`
}

// Injector signs requests with HMAC. Settings are documented in the
// package comment and docs/plugins/hmac.md.
type Injector struct {
	// KeyField is the credential field holding the HMAC key. Default
	// "secret".
	KeyField string `yaml:"key_field"`
	// KeyEncoding is how the key field is written: raw (its bytes, the
	// default), base64 (Coinbase Exchange) or hex.
	KeyEncoding string `yaml:"key_encoding"`
	// Algorithm is sha256 (default) or sha512.
	Algorithm string `yaml:"algorithm"`
	// Encoding of the signature: hex (default, lower case) or base64.
	Encoding string `yaml:"encoding"`
	// StringToSign is the text/template of the signed string. Required.
	StringToSign string `yaml:"string_to_sign"`
	// Signature is where the signature goes. Required.
	Signature Place `yaml:"signature"`
	// Timestamp, if set, is added to the request and is .timestamp.
	Timestamp *Timestamp `yaml:"timestamp"`
	// Nonce, if set, is a random 128-bit hex value added to the request;
	// it is .nonce.
	Nonce *Place `yaml:"nonce"`
	// SignedHeaders are request headers offered to the template as
	// .header (index .header "Content-Type") and .canonical_headers
	// ("name:value\n" per header, lower-case names, in this order).
	SignedHeaders []string `yaml:"signed_headers"`
	// Headers are further headers from the credential's fields or
	// constants (the API key that names the signer), as the headers
	// injector.
	Values map[string]string `yaml:"headers"`
	// MaxBody bounds the bytes of a body read to be signed. Default
	// DefaultMaxBody.
	MaxBody int64 `yaml:"max_body"`

	tmpl      *template.Template
	uses      map[string]bool // the variables the template names
	newHash   func() hash.Hash
	headers   *injectors.HeaderSet
	signed    []string // canonical names of SignedHeaders
	names     []string // every header set, sorted
	queryOut  []string // every parameter set
	now       func() time.Time
	nonceRand io.Reader
	parts     []part                    // string_to_sign without reflection, nil when not simple
	observe   func(stringToSign string) // tests: sees the string signed
}

// variables are the names the string to sign may use.
var variables = map[string]bool{
	"method": true, "host": true, "path": true, "query": true, "sorted_query": true,
	"request_uri": true, "body": true, "body_sha256": true, "body_sha512": true,
	"timestamp": true, "nonce": true, "header": true, "canonical_headers": true,
}

// Provision applies defaults, parses the template and checks that every
// name it uses exists and is configured.
func (s *Injector) Provision() error {
	if s.KeyField == "" {
		s.KeyField = "secret"
	}
	if s.KeyEncoding == "" {
		s.KeyEncoding = "raw"
	}
	if s.Algorithm == "" {
		s.Algorithm = "sha256"
	}
	if s.Encoding == "" {
		s.Encoding = "hex"
	}
	if s.MaxBody == 0 {
		s.MaxBody = DefaultMaxBody
	}
	if s.Timestamp != nil && s.Timestamp.Format == "" {
		s.Timestamp.Format = "unix"
	}
	switch s.Algorithm {
	case "sha256":
		s.newHash = sha256.New
	case "sha512":
		s.newHash = sha512.New
	default:
		return fmt.Errorf("hmac: algorithm %q is not sha256 or sha512", s.Algorithm)
	}
	if s.StringToSign == "" {
		return errors.New(`hmac: string_to_sign is required, e.g. string_to_sign: "{{.timestamp}}{{.method}}{{.request_uri}}{{.body}}"`)
	}
	t, err := template.New("string_to_sign").Option("missingkey=error").Parse(s.StringToSign)
	if err != nil {
		return fmt.Errorf("hmac: string_to_sign is not a valid template: %w", err)
	}
	s.tmpl = t
	s.uses = map[string]bool{}
	for _, v := range injectors.TemplateFields(t) {
		s.uses[v] = true
		switch {
		case !variables[v]:
			return fmt.Errorf("hmac: string_to_sign uses .%s; known: %s", v, strings.Join(slices.Sorted(mapKeys(variables)), ", "))
		case v == "timestamp" && s.Timestamp == nil:
			return errors.New("hmac: string_to_sign uses .timestamp but no timestamp is configured, e.g. timestamp: {format: unix_ms, query: timestamp}")
		case v == "nonce" && s.Nonce == nil:
			return errors.New("hmac: string_to_sign uses .nonce but no nonce is configured, e.g. nonce: {header: X-Nonce}")
		case (v == "header" || v == "canonical_headers") && len(s.SignedHeaders) == 0:
			return fmt.Errorf("hmac: string_to_sign uses .%s but signed_headers is empty", v)
		}
	}
	s.parts = simpleParts(t)
	if s.headers, err = injectors.CompileHeaders("hmac", s.Values); err != nil {
		return err
	}
	for _, h := range s.SignedHeaders {
		if err := injectors.CheckHeaderName("hmac: signed_headers", h); err != nil {
			return err
		}
		s.signed = append(s.signed, http.CanonicalHeaderKey(h))
	}
	return nil
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Validate checks the choices and that no two settings place a value
// under one name.
func (s *Injector) Validate() error {
	switch s.KeyEncoding {
	case "raw", "base64", "hex":
	default:
		return fmt.Errorf("hmac: key_encoding %q is not raw, base64 or hex", s.KeyEncoding)
	}
	switch s.Encoding {
	case "hex", "base64":
	default:
		return fmt.Errorf("hmac: encoding %q is not hex or base64", s.Encoding)
	}
	if s.MaxBody < 0 {
		return errors.New("hmac: max_body must not be negative")
	}
	names := map[string]string{}
	params := map[string]string{}
	place := func(what string, p Place) error {
		switch {
		case p.Header != "" && p.Query != "":
			return fmt.Errorf("hmac: %s: set header or query, not both", what)
		case p.Header != "":
			if err := injectors.CheckHeaderName("hmac: "+what, p.Header); err != nil {
				return err
			}
			c := http.CanonicalHeaderKey(p.Header)
			if prev, ok := names[c]; ok {
				return fmt.Errorf("hmac: %s and %s both set header %s", prev, what, c)
			}
			names[c] = what
		case p.Query != "":
			if prev, ok := params[p.Query]; ok {
				return fmt.Errorf("hmac: %s and %s both set query parameter %s", prev, what, p.Query)
			}
			params[p.Query] = what
		}
		return nil
	}
	for _, n := range s.headers.Names() {
		names[n] = "headers"
	}
	if !s.Signature.set() {
		return errors.New("hmac: signature is required: signature: {header: NAME} or signature: {query: NAME}")
	}
	if err := place("signature", s.Signature); err != nil {
		return err
	}
	if ts := s.Timestamp; ts != nil {
		switch ts.Format {
		case "unix", "unix_ms", "rfc3339", "rfc3339_ms":
		default:
			return fmt.Errorf("hmac: timestamp format %q is not unix, unix_ms, rfc3339 or rfc3339_ms", ts.Format)
		}
		p := Place{Header: ts.Header, Query: ts.Query}
		if !p.set() {
			return errors.New("hmac: timestamp: set header or query, where the server reads it")
		}
		if err := place("timestamp", p); err != nil {
			return err
		}
	}
	if s.Nonce != nil {
		if !s.Nonce.set() {
			return errors.New("hmac: nonce: set header or query, where the server reads it")
		}
		if err := place("nonce", *s.Nonce); err != nil {
			return err
		}
	}
	// Canonical once, so setting them per request allocates nothing.
	s.Signature.Header = http.CanonicalHeaderKey(s.Signature.Header)
	if s.Timestamp != nil {
		s.Timestamp.Header = http.CanonicalHeaderKey(s.Timestamp.Header)
	}
	if s.Nonce != nil {
		s.Nonce.Header = http.CanonicalHeaderKey(s.Nonce.Header)
	}
	s.names = slices.Sorted(func(yield func(string) bool) {
		for n := range names {
			if !yield(n) {
				return
			}
		}
	})
	for p := range params {
		s.queryOut = append(s.queryOut, p)
	}
	slices.Sort(s.queryOut)
	return nil
}

// Headers implements injectors.HeaderNames: the configured headers and
// the signature, timestamp and nonce headers.
func (s *Injector) Headers() []string { return s.names }

// Inject signs r. Everything that can fail (the key, the headers, the
// body read and its cap, the template) happens before r is changed; a
// body that was read is put back as it was.
func (s *Injector) Inject(r *http.Request, cred *providers.Credential) error {
	sec, ok := cred.Field(s.KeyField)
	if !ok {
		return fmt.Errorf("hmac: credential has no %q field: %w", s.KeyField, injectors.ErrMissingField)
	}
	key, err := decodeKey(s.KeyEncoding, sec.Reveal())
	if err != nil {
		return fmt.Errorf("hmac: the %q field is not %s: %w", s.KeyField, s.KeyEncoding, injectors.ErrInvalidValue)
	}
	rh, err := s.headers.Render("hmac", cred)
	if err != nil {
		return err
	}
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	var ts, nonce string
	if s.Timestamp != nil {
		ts = formatTime(now().UTC(), s.Timestamp.Format)
	}
	if s.Nonce != nil {
		var b [16]byte
		rnd := s.nonceRand
		if rnd == nil {
			rnd = rand.Reader
		}
		if _, err := io.ReadFull(rnd, b[:]); err != nil {
			return fmt.Errorf("hmac: nonce: %w", err)
		}
		nonce = hex.EncodeToString(b[:])
	}

	// The query as it will be sent, without the signature.
	query := injectors.WithoutParams(r.URL.RawQuery, s.queryOut...)
	add := func(name, v string) {
		if query != "" {
			query += "&"
		}
		query += url.QueryEscape(name) + "=" + url.QueryEscape(v)
	}
	if s.Timestamp != nil && s.Timestamp.Query != "" {
		add(s.Timestamp.Query, ts)
	}
	if s.Nonce != nil && s.Nonce.Query != "" {
		add(s.Nonce.Query, nonce)
	}

	v := vars{method: r.Method, host: r.Host, path: r.URL.EscapedPath(), query: query, timestamp: ts, nonce: nonce}
	if s.uses["sorted_query"] {
		v.sortedQuery = sortedQuery(query)
	}
	v.requestURI = v.path
	if query != "" {
		v.requestURI += "?" + query
	}
	if len(s.signed) > 0 {
		v.header = make(map[string]string, len(s.signed))
		var canon strings.Builder
		for _, h := range s.signed {
			hv := s.headerValue(r, rh, h, ts, nonce)
			v.header[h] = hv
			canon.WriteString(strings.ToLower(h))
			canon.WriteByte(':')
			canon.WriteString(hv)
			canon.WriteByte('\n')
		}
		v.canonicalHeaders = canon.String()
	}
	if s.uses["body"] || s.uses["body_sha256"] || s.uses["body_sha512"] {
		var err error
		if v.body, v.bodySHA256, v.bodySHA512, err = s.readBody(r); err != nil {
			return err
		}
	}

	m := stdhmac.New(s.newHash, key)
	if s.parts != nil && s.observe == nil {
		// The common case, text and plain {{.name}}: straight into the
		// MAC, without reflection or a copy of the body.
		for _, p := range s.parts {
			if p.name == "" {
				io.WriteString(m, p.text)
			} else if p.name == "body" {
				m.Write(v.body)
			} else {
				io.WriteString(m, v.get(p.name))
			}
		}
	} else {
		var str bytes.Buffer
		if err := s.tmpl.Execute(&str, v.asMap()); err != nil {
			// The error may quote request data; it never holds the key.
			return fmt.Errorf("hmac: rendering string_to_sign failed")
		}
		if s.observe != nil {
			s.observe(str.String())
		}
		m.Write(str.Bytes())
	}
	var sig string
	if s.Encoding == "base64" {
		sig = base64.StdEncoding.EncodeToString(m.Sum(nil))
	} else {
		sig = hex.EncodeToString(m.Sum(nil))
	}

	// Nothing below fails.
	rh.Set(r)
	if s.Timestamp != nil && s.Timestamp.Header != "" {
		r.Header.Set(s.Timestamp.Header, ts)
	}
	if s.Nonce != nil && s.Nonce.Header != "" {
		r.Header.Set(s.Nonce.Header, nonce)
	}
	if s.Signature.Header != "" {
		r.Header.Set(s.Signature.Header, sig)
	} else {
		add(s.Signature.Query, sig)
	}
	r.URL.RawQuery = query
	r.URL.ForceQuery = false
	return nil
}

// vars are the values the string to sign may use.
type vars struct {
	method, host, path, query, sortedQuery, requestURI string
	timestamp, nonce, canonicalHeaders                 string
	bodySHA256, bodySHA512                             string
	body                                               []byte
	header                                             map[string]string
}

func (v *vars) get(name string) string {
	switch name {
	case "method":
		return v.method
	case "host":
		return v.host
	case "path":
		return v.path
	case "query":
		return v.query
	case "sorted_query":
		return v.sortedQuery
	case "request_uri":
		return v.requestURI
	case "timestamp":
		return v.timestamp
	case "nonce":
		return v.nonce
	case "canonical_headers":
		return v.canonicalHeaders
	case "body_sha256":
		return v.bodySHA256
	case "body_sha512":
		return v.bodySHA512
	case "body":
		return string(v.body)
	}
	return ""
}

func (v *vars) asMap() map[string]any {
	m := make(map[string]any, len(variables))
	for name := range variables {
		m[name] = v.get(name)
	}
	m["header"] = v.header
	return m
}

// part is a piece of a simple string_to_sign: literal text, or the value
// of one variable.
type part struct{ text, name string }

// simpleParts returns t as parts when it is only text and plain
// {{.name}} actions (printed as is by text/template too), else nil.
func simpleParts(t *template.Template) []part {
	var out []part
	for _, n := range t.Tree.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			out = append(out, part{text: string(n.Text)})
		case *parse.ActionNode:
			p := n.Pipe
			if len(p.Decl) != 0 || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
				return nil
			}
			f, ok := p.Cmds[0].Args[0].(*parse.FieldNode)
			if !ok || len(f.Ident) != 1 || f.Ident[0] == "header" {
				return nil
			}
			out = append(out, part{name: f.Ident[0]})
		default:
			return nil
		}
	}
	return out
}

// headerValue is the value header h will have when the request is sent.
func (s *Injector) headerValue(r *http.Request, rh injectors.RenderedHeaders, h, ts, nonce string) string {
	if s.Timestamp != nil && http.CanonicalHeaderKey(s.Timestamp.Header) == h {
		return ts
	}
	if s.Nonce != nil && http.CanonicalHeaderKey(s.Nonce.Header) == h {
		return nonce
	}
	for _, x := range rh {
		if x.Name == h {
			return x.Value
		}
	}
	if h == "Host" {
		return r.Host
	}
	return strings.TrimSpace(r.Header.Get(h))
}

// readBody reads r's body, at most MaxBody bytes, hashing it as it is
// read, and puts back a body that replays it.
func (s *Injector) readBody(r *http.Request) (body []byte, sum256, sum512 string, err error) {
	var h256, h512 hash.Hash
	var w []io.Writer
	if s.uses["body_sha256"] {
		h256 = sha256.New()
		w = append(w, h256)
	}
	if s.uses["body_sha512"] {
		h512 = sha512.New()
		w = append(w, h512)
	}
	sums := func() (string, string) {
		var a, b string
		if h256 != nil {
			a = hex.EncodeToString(h256.Sum(nil))
		}
		if h512 != nil {
			b = hex.EncodeToString(h512.Sum(nil))
		}
		return a, b
	}
	body, err = injectors.BufferBody(r, s.MaxBody, "hmac", w...)
	if err != nil {
		return nil, "", "", err
	}
	sum256, sum512 = sums()
	return body, sum256, sum512, nil
}

func decodeKey(enc, v string) ([]byte, error) {
	switch enc {
	case "base64":
		return base64.StdEncoding.DecodeString(v)
	case "hex":
		return hex.DecodeString(v)
	}
	return []byte(v), nil
}

func formatTime(t time.Time, format string) string {
	switch format {
	case "unix_ms":
		return strconv.FormatInt(t.UnixMilli(), 10)
	case "rfc3339":
		return t.Format("2006-01-02T15:04:05Z")
	case "rfc3339_ms":
		return t.Format("2006-01-02T15:04:05.000Z")
	}
	return strconv.FormatInt(t.Unix(), 10)
}

// sortedQuery returns the query's name=value pairs, as encoded on the
// wire, sorted by name then value, joined by &.
func sortedQuery(q string) string {
	if q == "" {
		return ""
	}
	parts := strings.Split(q, "&")
	slices.SortStableFunc(parts, func(a, b string) int {
		ak, av, _ := strings.Cut(a, "=")
		bk, bv, _ := strings.Cut(b, "=")
		if c := strings.Compare(ak, bk); c != 0 {
			return c
		}
		return strings.Compare(av, bv)
	})
	return strings.Join(parts, "&")
}

// Interface guards.
var (
	_ injectors.Injector    = (*Injector)(nil)
	_ injectors.Provisioner = (*Injector)(nil)
	_ injectors.Validator   = (*Injector)(nil)
	_ injectors.HeaderNames = (*Injector)(nil)
)
