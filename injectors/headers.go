package injectors

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"

	"golang.org/x/net/http/httpguts"

	"github.com/credgate/credgate/internal/headerset"
	"github.com/credgate/credgate/providers"
)

func init() {
	Register(Module{Name: "headers",
		Doc:         "several headers from one credential (templates over its fields, or constants)",
		SettingDocs: map[string]string{"headers": "header name → text/template over the credential's fields, or a constant"},
		New:         func() Injector { return new(Headers) }})
}

// HeaderSet is several headers, each a text/template over the
// credential's fields, compiled once when the policy loads. A template
// that names no field is a constant header (anthropic-version,
// Stripe-Version). Plugins use it to set several values from one
// credential: CompileHeaders when they load, Render then Set when they
// inject, Names in their Headers method.
//
// The zero value (and nil) is an empty set.
type HeaderSet struct {
	hs []headerTemplate // sorted by canonical name
}

type headerTemplate struct {
	name   string // canonical
	tmpl   *template.Template
	fields []string
	// constant is the checked value of a template that names no field.
	constant string
	isConst  bool
	// parts is the template as text and plain {{.field}} pieces, nil when
	// it uses more of text/template; rendered without reflection.
	parts []templatePart
}

// templatePart is literal text, or the value of one credential field.
type templatePart struct{ text, field string }

// plainParts returns t as parts when it is only text and plain {{.name}}
// actions (which text/template prints as is), else nil.
func plainParts(t *template.Template) []templatePart {
	var out []templatePart
	for _, n := range t.Tree.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			out = append(out, templatePart{text: string(n.Text)})
		case *parse.ActionNode:
			p := n.Pipe
			if len(p.Decl) != 0 || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
				return nil
			}
			f, ok := p.Cmds[0].Args[0].(*parse.FieldNode)
			if !ok || len(f.Ident) != 1 {
				return nil
			}
			out = append(out, templatePart{field: f.Ident[0]})
		default:
			return nil
		}
	}
	return out
}

// CompileHeaders parses m (header name ⇒ template) for who (the
// injector's name, used in errors). It refuses invalid and reserved names
// (Host, Content-Length, Proxy-Authorization, X-Credgate-*, ...), two
// spellings of one name, bad templates, and constant values that could not
// be sent.
func CompileHeaders(who string, m map[string]string) (*HeaderSet, error) {
	s := &HeaderSet{}
	seen := map[string]string{}
	for _, name := range slices.Sorted(mapKeys(m)) {
		if err := checkHeaderName(who, name); err != nil {
			return nil, err
		}
		c := http.CanonicalHeaderKey(name)
		if prev, ok := seen[c]; ok {
			return nil, fmt.Errorf("%s: headers %q and %q are the same header; keep one", who, prev, name)
		}
		seen[c] = name
		t, err := template.New(c).Option("missingkey=error").Parse(m[name])
		if err != nil {
			return nil, fmt.Errorf("%s: value of header %s is not a valid template: %w", who, c, err)
		}
		ht := headerTemplate{name: c, tmpl: t, fields: templateFields(t.Tree.Root, nil), parts: plainParts(t)}
		if len(ht.fields) == 0 {
			var b strings.Builder
			if err := t.Execute(&b, map[string]string{}); err != nil {
				return nil, fmt.Errorf("%s: value of header %s: %w", who, c, err)
			}
			if err := headerValue(who, c, b.String()); err != nil {
				return nil, err
			}
			ht.constant, ht.isConst = b.String(), true
		}
		s.hs = append(s.hs, ht)
	}
	slices.SortFunc(s.hs, func(a, b headerTemplate) int { return strings.Compare(a.name, b.name) })
	return s, nil
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// CheckHeaderName refuses a header name that is invalid or reserved for
// the proxy (Host, Content-Length, Proxy-Authorization, X-Credgate-*...),
// for plugins that set headers of their own.
func CheckHeaderName(who, name string) error { return checkHeaderName(who, name) }

func checkHeaderName(who, name string) error {
	c := http.CanonicalHeaderKey(name)
	switch {
	case name == "":
		return fmt.Errorf("%s: a header name is empty", who)
	case !httpguts.ValidHeaderFieldName(name):
		return fmt.Errorf("%s: %q is not a valid header name", who, name)
	case headerset.Reserved(c) || strings.HasPrefix(c, "X-Credgate-"):
		return fmt.Errorf("%s: %s is reserved for the proxy and cannot be injected", who, c)
	}
	return nil
}

// Names returns the canonical names of the headers in s, sorted.
func (s *HeaderSet) Names() []string {
	if s == nil {
		return nil
	}
	out := make([]string, len(s.hs))
	for i, h := range s.hs {
		out[i] = h.name
	}
	return out
}

// Len returns the number of headers in s.
func (s *HeaderSet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.hs)
}

// RenderedHeaders are header values ready to be set; see HeaderSet.Render.
type RenderedHeaders []struct{ Name, Value string }

// Render renders every header of s from cred. It fails, naming the
// header and field but never a value, if a field is missing, a template
// fails or a value contains a line break or control character. Nothing
// is set: call Set once everything else that can fail has succeeded.
func (s *HeaderSet) Render(who string, cred *providers.Credential) (RenderedHeaders, error) {
	if s == nil {
		return nil, nil
	}
	out := make(RenderedHeaders, len(s.hs))
	for i, h := range s.hs {
		out[i].Name = h.name
		if h.isConst {
			out[i].Value = h.constant
			continue
		}
		var b strings.Builder
		if h.parts != nil {
			for _, p := range h.parts {
				if p.field == "" {
					b.WriteString(p.text)
					continue
				}
				v, err := headerField(who+" header "+h.name, h.name, cred, p.field)
				if err != nil {
					return nil, err
				}
				b.WriteString(v)
			}
		} else {
			data := make(map[string]string, len(h.fields))
			for _, f := range h.fields {
				v, err := headerField(who+" header "+h.name, h.name, cred, f)
				if err != nil {
					return nil, err
				}
				data[f] = v
			}
			if err := h.tmpl.Execute(&b, data); err != nil {
				// The template error may quote data; do not include it.
				return nil, fmt.Errorf("%s header %s: rendering the value template failed", who, h.name)
			}
		}
		if err := headerValue(who, h.name, b.String()); err != nil {
			return nil, err
		}
		out[i].Value = b.String()
	}
	return out, nil
}

// Set replaces each header on r (Set, never Add).
func (rh RenderedHeaders) Set(r *http.Request) {
	for _, h := range rh {
		r.Header.Set(h.Name, h.Value)
	}
}

// Headers sets several headers from one credential, each a template over
// its fields; a template without a field is a constant header.
//
//	as: headers
//	headers:
//	  DD-API-KEY: "{{.api_key}}"
//	  DD-APPLICATION-KEY: "{{.app_key}}"
//	  anthropic-version: "2023-06-01"
//
// Every value is rendered and checked before the request is touched;
// every name is declared (HeaderNames), so client copies are removed.
type Headers struct {
	// Values maps a header name to its value template.
	Values map[string]string `yaml:"headers"`

	set *HeaderSet
}

// Provision compiles the templates.
func (h *Headers) Provision() error {
	if len(h.Values) == 0 {
		return errors.New(`headers: at least one header is required, e.g. headers: {X-Api-Key: "{{.token}}"}`)
	}
	set, err := CompileHeaders("headers", h.Values)
	if err != nil {
		return err
	}
	if set.Len() > 0 && allConstant(set) {
		return errors.New("headers: no header uses a credential field; name one, e.g. \"{{.token}}\" (constant headers alone inject no credential)")
	}
	h.set = set
	return nil
}

func allConstant(s *HeaderSet) bool {
	for _, h := range s.hs {
		if !h.isConst {
			return false
		}
	}
	return true
}

// Inject renders every header, then sets them all.
func (h *Headers) Inject(r *http.Request, cred *providers.Credential) error {
	rh, err := h.set.Render("headers", cred)
	if err != nil {
		return err
	}
	rh.Set(r)
	return nil
}

// Headers implements HeaderNames.
func (h *Headers) Headers() []string { return h.set.Names() }

// WithoutParams returns rawQuery without the parameters named in names,
// and without every parameter a server could read as one of them: a
// name is compared as servers decode it (paramKey: any percent-encoding,
// '+' for a space, case, PHP's and Rails' array and '.'/' ' spellings, a
// NUL that ends a C string), and a part is also split at ';', which some
// servers take as a separator too. The other parameters keep their order
// and encoding. Injectors that set a query parameter use it to drop the
// client's copies first, so that the upstream never reads a value of the
// client's for the injected name (docs/injectors.md, "query").
func WithoutParams(rawQuery string, names ...string) string {
	if rawQuery == "" {
		return ""
	}
	var parts []string
	for kv := range strings.SplitSeq(rawQuery, "&") {
		if !PartNames(kv, names...) {
			parts = append(parts, kv)
		}
	}
	return strings.Join(parts, "&")
}

// PartNames reports whether kv, one '&'-separated part of a query string
// or form body ("name=value"), may be read by some server as a parameter
// named one of names: its name, or that of any ';'-separated piece of it,
// compared as WithoutParams compares names. An injector that puts a value
// in a form body uses it to find the client's copies of that field.
func PartNames(kv string, names ...string) bool {
	for piece := range strings.SplitSeq(kv, ";") {
		k, _, _ := strings.Cut(piece, "=")
		key := paramKey(k)
		for _, n := range names {
			if key == paramKey(n) {
				return true
			}
		}
	}
	return false
}

// paramKey is a query parameter's name as the most lenient server reads
// it: percent-decoded with '+' as a space (a name that does not decode
// stays as sent), cut at a NUL (C strings) and at '[' (PHP and Rails
// read api_key[] and api_key[0] as api_key), leading spaces removed and
// ' ' and '.' read as '_' (PHP), and case-folded through upper case
// then lower case (ASP.NET and others match names without case; Java's
// equalsIgnoreCase and servers comparing upper-cased names read dotless
// 'ı' as 'i' and the long 'ſ' as 's', which lower-casing alone keeps).
func paramKey(name string) string {
	if u, err := url.QueryUnescape(name); err == nil {
		name = u
	}
	if i := strings.IndexAny(name, "\x00["); i >= 0 {
		name = name[:i]
	}
	name = strings.TrimLeft(name, " ")
	name = strings.Map(func(r rune) rune {
		if r == ' ' || r == '.' {
			return '_'
		}
		return r
	}, name)
	return strings.ToLower(strings.ToUpper(name))
}

// Interface guards.
var (
	_ Injector    = (*Headers)(nil)
	_ Provisioner = (*Headers)(nil)
	_ HeaderNames = (*Headers)(nil)
)

// TemplateFields returns the top-level names (.x in .x.y) that t uses,
// in order of first use, so a plugin can check them when it loads and
// know which inputs a request needs.
func TemplateFields(t *template.Template) []string {
	if t == nil || t.Tree == nil {
		return nil
	}
	return templateFields(t.Tree.Root, nil)
}
