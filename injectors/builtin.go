package injectors

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/template"
	"text/template/parse"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"

	"github.com/credgate/credgate/internal/headerset"
	"github.com/credgate/credgate/providers"
)

// The built-in injectors are registered here rather than in sub-packages:
// every gateway needs them and they have no dependencies of their own.
func init() {
	Register(Module{Name: "header", Doc: "one header from a template over the credential's fields (X-Api-Key, PRIVATE-TOKEN)",
		SettingDocs: map[string]string{
			"name":  "the header to set, e.g. X-Api-Key",
			"value": `text/template over the credential's fields (default "{{.token}}")`,
		},
		New: func() Injector { return new(Header) }})
	Register(Module{Name: "bearer", Doc: "Authorization: Bearer <token>",
		SettingDocs: map[string]string{"field": `credential field holding the token (default "token")`},
		New:         func() Injector { return new(Bearer) }})
	Register(Module{Name: "basic", Doc: "Authorization: Basic from a user name and a password field",
		SettingDocs: map[string]string{
			"username_field": `credential field holding the user name (default "username")`,
			"password_field": `credential field holding the password (default "password")`,
		},
		New: func() Injector { return new(Basic) }})
	Register(Module{Name: "query", Doc: "one query parameter (APIs that take the key in the URL)",
		SettingDocs: map[string]string{
			"param": "the query parameter name",
			"field": `credential field holding the value (default "token")`,
		},
		New: func() Injector { return new(Query) }})
}

// ErrInvalidValue marks a credential value that cannot be put on the wire
// (a line break or control character in a header value, a ':' in a basic
// username, an empty field, a key that does not parse). The value itself
// is never part of the error.
//
// Wrap it only when the credential's value is at fault, never the
// request or the caller (those wrap ErrRequest; FaultOf): the gateway
// then drops the credential from the cache, in memory and in Redis
// (providers.Cache.Reject), so that the next request after the error
// backoff fetches it anew instead of meeting the same value until it
// expires.
var ErrInvalidValue = errors.New("credential value cannot be sent")

// field returns the named credential field's value, or an error wrapping
// ErrMissingField naming the field (and ErrInvalidValue when the field
// is there but empty: the source returned nothing for it).
func field(who string, cred *providers.Credential, name string) (string, error) {
	s, ok := cred.Field(name)
	if !ok {
		if _, present := cred.Fields[name]; present {
			return "", fmt.Errorf("%s: the credential's %q field is empty: %w", who, name, ErrMissingField)
		}
		return "", fmt.Errorf("%s: credential has no %q field: %w", who, name, ErrMissingField)
	}
	return s.Reveal(), nil
}

// headerField returns the named field for use in a header value: as
// field, and refused as the value's fault (ErrInvalidValue) when the
// upstream would read another text than the credential's bytes, which
// the response scrubber searches for, so that it would not find the
// value in the upstream's echo:
//
//   - a space or tab at either end: HTTP drops whitespace around a field
//     value (RFC 9110 §5.5; Go's client trims it when writing, servers
//     when reading, and HTTP/2 calls such a value malformed);
//   - a byte that is not ASCII: servers read it as ISO-8859-1 (RFC 9110
//     §5.5's historical charset; Python's http.server, Node), and echo
//     the characters so read in UTF-8 or as JSON escapes.
//
// Neither is a value a service issues (tokens and keys are ASCII, RFC
// 6750's b64token); both are mistakes at the source (a key pasted with
// a trailing space or a typographic character). Basic carries any bytes
// intact (base64) and reads its fields with field.
func headerField(who, header string, cred *providers.Credential, name string) (string, error) {
	v, err := field(who, cred, name)
	if err != nil {
		return "", err
	}
	if v != strings.Trim(v, " \t") {
		return "", fmt.Errorf("%s: the credential's %q field for header %s begins or ends with a space or tab, which HTTP drops from a header value (the upstream would receive another value than the credential's); remove it at the source: %w", who, name, header, ErrInvalidValue)
	}
	for i := 0; i < len(v); i++ {
		if v[i] >= utf8.RuneSelf {
			return "", fmt.Errorf("%s: the credential's %q field for header %s holds a byte that is not ASCII, which servers read as other characters (ISO-8859-1) than the credential's; no token or key has one: check the value at the source: %w", who, name, header, ErrInvalidValue)
		}
	}
	return v, nil
}

// headerValue checks that v is a valid header value (no CR, LF or other
// control bytes), so a credential can never split or smuggle headers.
func headerValue(who, header, v string) error {
	if !httpguts.ValidHeaderFieldValue(v) {
		return fmt.Errorf("%s: value for header %s contains a line break or control character: %w", who, header, ErrInvalidValue)
	}
	return nil
}

// Header sets one header from a text/template over the credential's
// fields, for APIs with their own header (X-Api-Key, PRIVATE-TOKEN,
// "Authorization: token {{.token}}").
//
//	as: header
//	name: X-Api-Key
//	value: "{{.token}}"
type Header struct {
	// Name is the header to set, e.g. X-Api-Key.
	Name string `yaml:"name"`
	// Value is a text/template; {{.FIELD}} is a credential field, e.g.
	// "{{.token}}" or "token {{.token}}". Default "{{.token}}".
	Value string `yaml:"value"`

	canonical string
	names     []string // Headers' answer: canonical alone
	tmpl      *template.Template
	fields    []string // the fields the template names; all must be present
}

// Provision parses the template and records the fields it names.
func (h *Header) Provision() error {
	if h.Value == "" {
		h.Value = "{{." + providers.FieldToken + "}}"
	}
	t, err := template.New("value").Option("missingkey=error").Parse(h.Value)
	if err != nil {
		return fmt.Errorf("header: value is not a valid template: %w", err)
	}
	h.tmpl = t
	h.fields = templateFields(t.Tree.Root, nil)
	h.canonical = http.CanonicalHeaderKey(h.Name)
	h.names = []string{h.canonical}
	return nil
}

// Validate checks the header name.
func (h *Header) Validate() error {
	switch {
	case h.Name == "":
		return errors.New("header: name is required, e.g. name: X-Api-Key")
	case !httpguts.ValidHeaderFieldName(h.Name):
		return fmt.Errorf("header: %q is not a valid header name", h.Name)
	case headerset.Reserved(h.canonical) || strings.HasPrefix(h.canonical, "X-Credgate-"):
		return fmt.Errorf("header: %s is reserved for the proxy and cannot be injected", h.canonical)
	}
	return nil
}

// Inject renders the template and replaces the header. It fails, leaving
// r untouched, if a named field is missing, the template fails or the
// result contains a line break.
func (h *Header) Inject(r *http.Request, cred *providers.Credential) error {
	data := make(map[string]string, len(h.fields))
	for _, f := range h.fields {
		v, err := headerField("header "+h.canonical, h.canonical, cred, f)
		if err != nil {
			return err
		}
		data[f] = v
	}
	var b strings.Builder
	if err := h.tmpl.Execute(&b, data); err != nil {
		// The template error may quote data; do not include it.
		return fmt.Errorf("header %s: rendering the value template failed", h.canonical)
	}
	v := b.String()
	if err := headerValue("header", h.canonical, v); err != nil {
		return err
	}
	setHeader(r, h.canonical, v)
	return nil
}

// Headers implements HeaderNames.
func (h *Header) Headers() []string {
	if h.names == nil {
		return []string{h.canonical} // not provisioned
	}
	return h.names[:1:1]
}

// templateFields appends the top-level field names (.x in .x.y) used
// anywhere in the tree to out, without duplicates.
func templateFields(n parse.Node, out []string) []string {
	add := func(name string) {
		for _, f := range out {
			if f == name {
				return
			}
		}
		out = append(out, name)
	}
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			for _, c := range n.Nodes {
				out = templateFields(c, out)
			}
		}
	case *parse.ActionNode:
		out = templateFields(n.Pipe, out)
	case *parse.PipeNode:
		if n != nil {
			for _, c := range n.Cmds {
				out = templateFields(c, out)
			}
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			out = templateFields(a, out)
		}
	case *parse.FieldNode:
		add(n.Ident[0])
	case *parse.ChainNode:
		out = templateFields(n.Node, out)
	case *parse.IfNode:
		out = templateFields(n.Pipe, out)
		out = templateFields(n.List, out)
		out = templateFields(n.ElseList, out)
	case *parse.RangeNode:
		out = templateFields(n.Pipe, out)
		out = templateFields(n.List, out)
		out = templateFields(n.ElseList, out)
	case *parse.WithNode:
		out = templateFields(n.Pipe, out)
		out = templateFields(n.List, out)
		out = templateFields(n.ElseList, out)
	case *parse.TemplateNode:
		out = templateFields(n.Pipe, out)
	}
	return out
}

// Bearer sets "Authorization: Bearer <field>".
//
//	as: bearer
//	field: token   # default
type Bearer struct {
	// Field is the credential field holding the token. Default "token".
	Field string `yaml:"field"`
}

// Provision applies the default field.
func (b *Bearer) Provision() error {
	if b.Field == "" {
		b.Field = providers.FieldToken
	}
	return nil
}

// Inject replaces the Authorization header.
func (b *Bearer) Inject(r *http.Request, cred *providers.Credential) error {
	v, err := headerField("bearer", "Authorization", cred, b.Field)
	if err != nil {
		return err
	}
	v = "Bearer " + v
	if err := headerValue("bearer", "Authorization", v); err != nil {
		return err
	}
	setHeader(r, "Authorization", v)
	return nil
}

// authorization is the answer of Headers for injectors that set
// Authorization alone: one slice for every call (HeaderNames' callers
// only read it), never written.
var authorization = []string{"Authorization"}

// Headers implements HeaderNames.
func (*Bearer) Headers() []string { return authorization[:1:1] }

// Basic sets "Authorization: Basic base64(username:password)" (RFC 7617).
//
//	as: basic
//	username_field: username   # default
//	password_field: password   # default
type Basic struct {
	// UsernameField is the credential field holding the user name.
	// Default "username".
	UsernameField string `yaml:"username_field"`
	// PasswordField is the credential field holding the password.
	// Default "password".
	PasswordField string `yaml:"password_field"`
}

// Provision applies the default fields.
func (b *Basic) Provision() error {
	if b.UsernameField == "" {
		b.UsernameField = providers.FieldUsername
	}
	if b.PasswordField == "" {
		b.PasswordField = providers.FieldPassword
	}
	return nil
}

// Inject replaces the Authorization header.
func (b *Basic) Inject(r *http.Request, cred *providers.Credential) error {
	u, err := field("basic", cred, b.UsernameField)
	if err != nil {
		return err
	}
	p, err := field("basic", cred, b.PasswordField)
	if err != nil {
		return err
	}
	if strings.Contains(u, ":") {
		return fmt.Errorf("basic: the %q field contains ':', which basic authentication cannot carry: %w", b.UsernameField, ErrInvalidValue)
	}
	// RFC 7617: neither may contain a control character.
	if !httpguts.ValidHeaderFieldValue(u) || strings.IndexByte(u, '\t') >= 0 {
		return fmt.Errorf("basic: the %q field contains a line break or control character: %w", b.UsernameField, ErrInvalidValue)
	}
	if !httpguts.ValidHeaderFieldValue(p) || strings.IndexByte(p, '\t') >= 0 {
		return fmt.Errorf("basic: the %q field contains a line break or control character: %w", b.PasswordField, ErrInvalidValue)
	}
	setHeader(r, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u+":"+p)))
	return nil
}

// Headers implements HeaderNames.
func (*Basic) Headers() []string { return authorization[:1:1] }

// Query sets a URL query parameter, replacing every value of it the
// client sent (under any percent-encoding of its name). The other
// parameters keep their order and encoding.
//
//	as: query
//	param: api_key
//	field: token   # default
type Query struct {
	// Param is the query parameter name.
	Param string `yaml:"param"`
	// Field is the credential field holding the value. Default "token".
	Field string `yaml:"field"`
}

// Provision applies the default field.
func (q *Query) Provision() error {
	if q.Field == "" {
		q.Field = providers.FieldToken
	}
	return nil
}

// Validate checks the parameter name.
func (q *Query) Validate() error {
	if q.Param == "" {
		return errors.New("query: param is required, e.g. param: api_key")
	}
	return nil
}

// Inject replaces the query parameter.
func (q *Query) Inject(r *http.Request, cred *providers.Credential) error {
	v, err := field("query "+q.Param, cred, q.Field)
	if err != nil {
		return err
	}
	var parts []string
	if rest := WithoutParams(r.URL.RawQuery, q.Param); rest != "" {
		parts = append(parts, rest)
	}
	parts = append(parts, url.QueryEscape(q.Param)+"="+url.QueryEscape(v))
	r.URL.RawQuery = strings.Join(parts, "&")
	r.URL.ForceQuery = false
	return nil
}

// Headers implements HeaderNames; query sets none.
func (*Query) Headers() []string { return nil }

// Interface guards.
var (
	_ Injector    = (*Header)(nil)
	_ Provisioner = (*Header)(nil)
	_ Validator   = (*Header)(nil)
	_ HeaderNames = (*Header)(nil)
	_ Injector    = (*Bearer)(nil)
	_ Provisioner = (*Bearer)(nil)
	_ HeaderNames = (*Bearer)(nil)
	_ Injector    = (*Basic)(nil)
	_ Provisioner = (*Basic)(nil)
	_ HeaderNames = (*Basic)(nil)
	_ Injector    = (*Query)(nil)
	_ Provisioner = (*Query)(nil)
	_ Validator   = (*Query)(nil)
	_ HeaderNames = (*Query)(nil)
)
