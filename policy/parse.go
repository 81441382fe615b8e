package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

// Reserved `from` values.
const (
	// FromAny matches any identified workload.
	FromAny = "*"
	// FromAnonymous matches callers that matched no workload.
	FromAnonymous = "anonymous"
)

// Parse parses, validates and compiles a policy. filename is used in error
// positions only. Every problem found is reported, as an ErrorList of
// "FILE:LINE:COL: message" entries sorted by position. Providers are built
// (providers.Load, which may provision them using ctx) and injectors are
// built (injectors.Load) here, so bad settings are caught at load time;
// when Parse fails it releases whatever it built.
func Parse(ctx context.Context, filename string, data []byte) (*Policy, error) {
	ps := &parser{ctx: ctx, file: filename, src: data}
	p := ps.parse(data)
	if len(ps.errs) > 0 {
		_ = cleanup(ps.built, ps.builtInjectors)
		ps.errs.sort()
		return nil, ps.errs
	}
	return p, nil
}

type parser struct {
	ctx  context.Context
	file string
	src  []byte
	errs ErrorList
	// srcLines is src split into lines, for positions inside conditions.
	srcLines []string
	built    []*credential // providers built so far, released on failure
	// builtInjectors are the injectors built so far, released on failure.
	builtInjectors []injectors.Injector

	workloads map[string]bool
	dests     map[string]*destination
	creds     map[string]*credential

	// wlLimits are the workloads' rate_limit settings.
	wlLimits map[string]*RateLimit
}

func (ps *parser) errorf(n *yaml.Node, format string, args ...any) {
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	ps.errs = append(ps.errs, &Error{File: ps.file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func (ps *parser) parse(data []byte) *Policy {
	root, ok := ps.document(data)
	if !ok {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		ps.errorf(root, "the policy must be a mapping with keys workloads, destinations, credentials, rules and default")
		return nil
	}
	sections := ps.fields(root, "policy", "workloads", "destinations", "credentials", "rules", "default")
	p := &Policy{file: ps.file}
	sum := sha256.Sum256(data)
	p.hash = hex.EncodeToString(sum[:])

	p.workloads = ps.parseWorkloads(sections["workloads"])
	p.wlLimits = ps.wlLimits
	p.dests = ps.parseDestinations(sections["destinations"])
	p.creds = ps.parseCredentials(sections["credentials"])
	p.rules = ps.parseRules(sections["rules"])
	if f, ok := sections["default"]; ok {
		v := deref(f.val)
		if v.Kind != yaml.ScalarNode || v.Value != "deny" {
			ps.errorf(v, "default must be deny (the only default supported); add rules to allow traffic")
		}
	}
	if len(ps.errs) > 0 {
		return nil
	}
	p.injectors = ps.builtInjectors
	p.index = buildIndex(p.rules)
	return p
}

// document decodes exactly one YAML document and returns its root.
func (ps *parser) document(data []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			ps.errs = append(ps.errs, &Error{File: ps.file, Line: 1, Col: 1, Msg: "the policy file is empty; it needs at least rules and default: deny"})
			return nil, false
		}
		ps.yamlError(err)
		return nil, false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		ps.errorf(&extra, "only one YAML document is allowed in a policy file; remove the '---' separator")
		return nil, false
	} else if !errors.Is(err, io.EOF) {
		ps.yamlError(err)
		return nil, false
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = deref(root.Content[0])
	}
	if root.Kind == 0 || root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		ps.errs = append(ps.errs, &Error{File: ps.file, Line: 1, Col: 1, Msg: "the policy file is empty; it needs at least rules and default: deny"})
		return nil, false
	}
	return root, true
}

// yamlError turns a YAML syntax error, which carries a line but no column,
// into an Error at column 1 of that line.
func (ps *parser) yamlError(err error) {
	msg := err.Error()
	line := 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil {
			line = n
		}
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	ps.errs = append(ps.errs, &Error{File: ps.file, Line: line, Col: 1, Msg: "invalid YAML: " + msg, Err: err})
}

// deref follows aliases.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	if n == nil || n.Kind == yaml.AliasNode {
		return &yaml.Node{}
	}
	return n
}

type field struct{ key, val *yaml.Node }

// entries returns a mapping's entries in file order, reporting non-scalar
// and duplicate keys. A null node is an empty mapping.
func (ps *parser) entries(n *yaml.Node, what string) []field {
	n = deref(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		ps.errorf(n, "%s must be a mapping of name: settings", what)
		return nil
	}
	seen := map[string]bool{}
	out := make([]field, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode || isNull(k) {
			ps.errorf(k, "%s: keys must be plain names", what)
			continue
		}
		if seen[k.Value] {
			ps.errorf(k, "%s: %q is defined twice; remove or rename one", what, k.Value)
			continue
		}
		seen[k.Value] = true
		out = append(out, field{k, v})
	}
	return out
}

// fields decodes a mapping with a fixed set of keys, reporting unknown and
// duplicate ones.
func (ps *parser) fields(n *yaml.Node, what string, known ...string) map[string]field {
	out := map[string]field{}
	for _, f := range ps.entries(n, what) {
		if !slices.Contains(known, f.key.Value) {
			ps.errorf(f.key, "unknown field %q in %s; known fields are %s", f.key.Value, what, strings.Join(known, ", "))
			continue
		}
		out[f.key.Value] = f
	}
	return out
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// str returns a scalar's value, reporting anything else.
func (ps *parser) str(n *yaml.Node, what string) (string, bool) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || isNull(n) {
		ps.errorf(n, "%s must be a single value", what)
		return "", false
	}
	return n.Value, true
}

// list returns the scalars of a sequence. If scalarOK, a lone scalar is a
// list of one. An empty or missing list is reported.
func (ps *parser) list(n *yaml.Node, what string, scalarOK bool) ([]string, []*yaml.Node) {
	n = deref(n)
	switch {
	case scalarOK && n.Kind == yaml.ScalarNode && !isNull(n):
		return []string{n.Value}, []*yaml.Node{n}
	case n.Kind != yaml.SequenceNode:
		ps.errorf(n, "%s must be a list, like [a, b]", what)
		return nil, nil
	case len(n.Content) == 0:
		ps.errorf(n, "%s is empty; list at least one value or remove it", what)
		return nil, nil
	}
	vals := make([]string, 0, len(n.Content))
	nodes := make([]*yaml.Node, 0, len(n.Content))
	for _, e := range n.Content {
		e = deref(e)
		if e.Kind != yaml.ScalarNode || isNull(e) {
			ps.errorf(e, "%s: each entry must be a single value", what)
			continue
		}
		vals = append(vals, e.Value)
		nodes = append(nodes, e)
	}
	return vals, nodes
}

func (ps *parser) boolean(n *yaml.Node, what string) bool {
	n = deref(n)
	var b bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		ps.errorf(n, "%s must be true or false", what)
		return false
	}
	return b
}

// ---- workloads

func (ps *parser) parseWorkloads(f field) []identity.Spec {
	ps.workloads = map[string]bool{}
	var specs []identity.Spec
	for _, e := range ps.entries(f.val, "workloads") {
		name := e.key.Value
		ps.workloads[name] = true
		if msg := checkName(name); msg != "" {
			ps.errorf(e.key, "workload name %s", msg)
			continue
		}
		if name == FromAny || name == FromAnonymous {
			ps.errorf(e.key, "workload name %q is reserved (it is a `from` keyword); choose another name", name)
			continue
		}
		what := fmt.Sprintf("workload %q", name)
		if body := deref(e.val); !isNull(body) && body.Kind != yaml.MappingNode {
			ps.errorf(body, "%s must be a mapping of selectors (%s)", what, strings.Join(workloadFields, ", "))
			continue
		}
		fs := ps.fields(e.val, what, workloadFields...)
		spec := identity.Spec{Name: name}
		if c, ok := fs["cidrs"]; ok {
			vals, nodes := ps.list(c.val, what+" cidrs", false)
			for i, v := range vals {
				pfx, err := netip.ParsePrefix(v)
				switch {
				case err != nil && !strings.Contains(v, "/"):
					if _, aerr := netip.ParseAddr(v); aerr == nil {
						ps.errorf(nodes[i], "%s: cidr %q has no prefix length; write %s/%d for a single address", what, v, v, map[bool]int{true: 32, false: 128}[strings.Contains(v, ".")])
					} else {
						ps.errorf(nodes[i], "%s: %q is not a CIDR; write it like 10.1.0.0/16", what, v)
					}
				case err != nil:
					ps.errorf(nodes[i], "%s: %q is not a CIDR; write it like 10.1.0.0/16", what, v)
				case pfx.Masked() != pfx:
					ps.errorf(nodes[i], "%s: cidr %q has bits set after the prefix length; did you mean %s?", what, v, pfx.Masked())
				default:
					spec.CIDRs = append(spec.CIDRs, pfx)
				}
			}
		}
		ps.parseIdentitySelectors(&spec, fs, what)
		if r, ok := fs["require"]; ok {
			known := identity.Names()
			vals, nodes := ps.list(r.val, what+" require", false)
			for i, v := range vals {
				if !slices.Contains(known, v) {
					ps.errorf(nodes[i], "%s: unknown factor kind %q in require; known kinds are %s", what, v, strings.Join(known, ", "))
					continue
				}
				if !slices.Contains(spec.Require, v) {
					spec.Require = append(spec.Require, v)
				}
			}
		}
		hasSelector := false
		for _, k := range workloadFields {
			if _, ok := fs[k]; ok && k != "bind_token_to_cert" && k != "rate_limit" {
				hasSelector = true
			}
		}
		if !hasSelector {
			ps.errorf(e.key, "%s has no selector and would never match; set cidrs, spiffe, namespace, service_account, claims and/or require", what)
		}
		if rl, ok := fs["rate_limit"]; ok {
			if l := ps.parseRateLimit(rl, what); l != nil {
				if ps.wlLimits == nil {
					ps.wlLimits = map[string]*RateLimit{}
				}
				ps.wlLimits[name] = l
			}
		}
		specs = append(specs, spec)
	}
	return specs
}

// workloadFields are the keys of a `workloads:` entry.
var workloadFields = []string{"cidrs", "spiffe", "namespace", "service_account", "claims", "require", "bind_token_to_cert", "rate_limit"}

// parseIdentitySelectors reads the selectors on verified factor
// attributes: spiffe, namespace, service_account, claims and
// bind_token_to_cert.
func (ps *parser) parseIdentitySelectors(spec *identity.Spec, fs map[string]field, what string) {
	if f, ok := fs["spiffe"]; ok {
		vals, nodes := ps.list(f.val, what+" spiffe", true)
		for i, v := range vals {
			p, err := identity.ParseSPIFFEPattern(v)
			if err != nil {
				ps.errorf(nodes[i], "%s: %v", what, err)
				continue
			}
			spec.SPIFFE = append(spec.SPIFFE, p)
		}
	}
	for _, sel := range []struct {
		key string
		dst *[]string
	}{{"namespace", &spec.Namespaces}, {"service_account", &spec.ServiceAccounts}} {
		f, ok := fs[sel.key]
		if !ok {
			continue
		}
		vals, nodes := ps.list(f.val, what+" "+sel.key, true)
		for i, v := range vals {
			if v == "" || strings.ContainsAny(v, " \t:/") {
				ps.errorf(nodes[i], "%s: %s %q is not a Kubernetes name", what, sel.key, v)
				continue
			}
			if !slices.Contains(*sel.dst, v) {
				*sel.dst = append(*sel.dst, v)
			}
		}
	}
	if f, ok := fs["claims"]; ok {
		entries := ps.entries(f.val, what+" claims")
		if len(entries) == 0 && deref(f.val).Kind == yaml.MappingNode {
			ps.errorf(deref(f.val), "%s claims is empty; list attribute: value pairs or remove it", what)
		}
		for _, c := range entries {
			v, ok := ps.str(c.val, fmt.Sprintf("%s claims %s", what, c.key.Value))
			if !ok {
				continue
			}
			if spec.Claims == nil {
				spec.Claims = map[string]string{}
			}
			spec.Claims[c.key.Value] = v
		}
	}
	if f, ok := fs["bind_token_to_cert"]; ok {
		spec.BindTokenToCert = ps.boolean(f.val, what+" bind_token_to_cert")
	}
}

// checkName reports a problem with a user-chosen name, or "".
func checkName(s string) string {
	if s == "" {
		return "is empty"
	}
	for _, c := range s {
		if c < ' ' || c == 0x7f || c == ' ' || c == ',' {
			return fmt.Sprintf("%q must not contain spaces, commas or control characters", s)
		}
	}
	return ""
}

// ---- destinations

func (ps *parser) parseDestinations(f field) map[string]*destination {
	ps.dests = map[string]*destination{}
	for _, e := range ps.entries(f.val, "destinations") {
		name := e.key.Value
		d := &destination{name: name}
		ps.dests[name] = d
		if msg := checkName(name); msg != "" {
			ps.errorf(e.key, "destination name %s", msg)
			continue
		}
		what := fmt.Sprintf("destination %q", name)
		if body := deref(e.val); !isNull(body) && body.Kind != yaml.MappingNode {
			ps.errorf(body, "%s must be a mapping with hosts and optionally ports, allow_private, path_case and encoded_slashes", what)
			continue
		}
		fs := ps.fields(e.val, what, "hosts", "ports", "allow_private", "path_case", "encoded_slashes")
		if h, ok := fs["hosts"]; ok {
			vals, nodes := ps.list(h.val, what+" hosts", false)
			for i, v := range vals {
				hp, msg := parseHostPattern(v)
				if msg != "" {
					ps.errorf(nodes[i], "%s: %s", what, msg)
					continue
				}
				d.hosts = append(d.hosts, hp)
			}
		} else {
			ps.errorf(e.key, "%s has no hosts; add hosts: [api.example.com]", what)
		}
		if pf, ok := fs["ports"]; ok {
			vals, nodes := ps.list(pf.val, what+" ports", false)
			for i, v := range vals {
				if _, err := strconv.Atoi(v); err == nil && nodes[i].Tag == "!!str" {
					ps.errorf(nodes[i], "%s: port %q is quoted; write it as a plain number", what, v)
					continue
				}
				var n int
				if nodes[i].Tag != "!!int" || nodes[i].Decode(&n) != nil || n < 1 || n > 65535 {
					ps.errorf(nodes[i], "%s: port %q must be a number from 1 to 65535", what, v)
					continue
				}
				if !slices.Contains(d.ports, n) {
					d.ports = append(d.ports, n)
				}
			}
		}
		if ap, ok := fs["allow_private"]; ok {
			d.allowPrivate = ps.boolean(ap.val, what+" allow_private")
		}
		if es, ok := fs["encoded_slashes"]; ok {
			d.encodedSlashes = ps.boolean(es.val, what+" encoded_slashes")
		}
		if pc, ok := fs["path_case"]; ok {
			if v, ok := ps.str(pc.val, what+" path_case"); ok {
				switch v {
				case "sensitive":
				case "insensitive":
					d.foldCase = true
				default:
					ps.errorf(deref(pc.val), "%s: path_case %q must be sensitive (the default) or insensitive (the API routes /V1/X and /v1/x alike)", what, v)
				}
			}
		}
	}
	return ps.dests
}

// ---- credentials

func (ps *parser) parseCredentials(f field) []*credential {
	ps.creds = map[string]*credential{}
	keys := map[*credential]*yaml.Node{}
	var out []*credential
	for _, e := range ps.entries(f.val, "credentials") {
		name := e.key.Value
		what := fmt.Sprintf("credential %q", name)
		if msg := checkName(name); msg != "" {
			ps.errorf(e.key, "credential name %s", msg)
			continue
		}
		ps.creds[name] = nil // known, even if broken: rules naming it get no second error
		body := deref(e.val)
		if body.Kind != yaml.MappingNode {
			ps.errorf(body, "%s must be a mapping with a provider key, like {provider: static, env: API_KEY}", what)
			continue
		}
		settings, extracted := ps.split(body, what, "provider")
		pn, ok := extracted["provider"]
		if !ok {
			ps.errorf(e.key, "%s has no provider; add provider: <name> (available: %s)", what, strings.Join(providers.Names(), ", "))
			continue
		}
		prov, ok := ps.str(pn.val, what+" provider")
		if !ok {
			continue
		}
		if _, ok := providers.Lookup(prov); !ok {
			ps.errorf(deref(pn.val), "%s: unknown provider %q; available providers are %s", what, prov, strings.Join(providers.Names(), ", "))
			continue
		}
		pr, err := providers.Load(ps.ctx, prov, settings)
		if err != nil {
			ps.moduleError(body, settings, fmt.Sprintf("%s (provider %s)", what, prov), err)
			continue
		}
		c := &credential{name: name, provider: prov, version: settingsHash(prov, settings), p: pr}
		ps.built = append(ps.built, c)
		ps.creds[name] = c
		keys[c] = e.key
		out = append(out, c)
	}
	ps.composeCredentials(out, keys)
	return out
}

// composeCredentials hands providers.Composer providers the credentials
// they read, after checking that each exists and that no credential reads
// itself through a chain of inputs. A composer's version includes its
// inputs' versions, so editing an input re-keys the composer's cache.
func (ps *parser) composeCredentials(creds []*credential, keys map[*credential]*yaml.Node) {
	inputs := map[*credential][]*credential{}
	for _, c := range creds {
		comp, ok := c.p.(providers.Composer)
		if !ok {
			continue
		}
		for _, in := range comp.Inputs() {
			ic, known := ps.creds[in]
			switch {
			case !known:
				ps.errorf(keys[c], "credential %q reads credential %q, which is not defined under credentials (defined: %s)", c.name, in, ps.credNames())
			case ic != nil:
				inputs[c] = append(inputs[c], ic)
			}
		}
	}
	// Cycle check: depth-first, reporting each cycle once at the
	// credential where it was entered.
	const (
		unseen = iota
		active
		done
	)
	state := map[*credential]int{}
	var path []*credential
	var visit func(c *credential) bool
	visit = func(c *credential) bool {
		switch state[c] {
		case active:
			names := []string{}
			start := slices.Index(path, c)
			for _, p := range path[start:] {
				names = append(names, strconv.Quote(p.name))
			}
			names = append(names, strconv.Quote(c.name))
			ps.errorf(keys[c], "credentials read each other in a cycle: %s", strings.Join(names, " -> "))
			return false
		case done:
			return true
		}
		state[c] = active
		path = append(path, c)
		ok := true
		for _, in := range inputs[c] {
			ok = visit(in) && ok
		}
		path = path[:len(path)-1]
		state[c] = done
		return ok
	}
	acyclic := true
	for _, c := range creds {
		if state[c] == unseen {
			acyclic = visit(c) && acyclic
		}
	}
	if !acyclic {
		return
	}
	var version func(c *credential) string
	versioned := map[*credential]bool{}
	version = func(c *credential) string {
		if versioned[c] || len(inputs[c]) == 0 {
			return c.version
		}
		h := sha256.New()
		h.Write([]byte(c.version))
		for _, in := range inputs[c] {
			h.Write([]byte{0})
			h.Write([]byte(in.name))
			h.Write([]byte{0})
			h.Write([]byte(version(in)))
		}
		c.version = hex.EncodeToString(h.Sum(nil))[:16]
		versioned[c] = true
		return c.version
	}
	for _, c := range creds {
		comp, ok := c.p.(providers.Composer)
		if !ok {
			continue
		}
		version(c)
		m := map[string]providers.Provider{}
		for _, in := range inputs[c] {
			m[in.name] = in.p
		}
		comp.SetInputs(m)
	}
}

// split returns a copy of the mapping n without the given keys, and the
// removed entries. Duplicate keys are reported.
func (ps *parser) split(n *yaml.Node, what string, keys ...string) (*yaml.Node, map[string]field) {
	rest := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column, Style: n.Style}
	got := map[string]field{}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := deref(n.Content[i])
		if k.Kind == yaml.ScalarNode {
			if seen[k.Value] {
				ps.errorf(k, "%s: %q is set twice; remove one", what, k.Value)
				continue
			}
			seen[k.Value] = true
			if slices.Contains(keys, k.Value) {
				got[k.Value] = field{k, n.Content[i+1]}
				continue
			}
		}
		rest.Content = append(rest.Content, n.Content[i], n.Content[i+1])
	}
	return rest, got
}

// moduleError reports an error from providers.Load or injectors.Load. YAML
// decoding errors carry lines ("line 7: field x not found"): each becomes
// its own Error at that line, at the column of the key found there.
// Anything else is reported at the start of the module's mapping.
func (ps *parser) moduleError(at, settings *yaml.Node, what string, err error) {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, m := range te.Errors {
			sub := yamlLineRE.FindStringSubmatch(m)
			if sub == nil {
				ps.errs = append(ps.errs, &Error{File: ps.file, Line: at.Line, Col: at.Column, Msg: what + ": " + m, Err: err})
				continue
			}
			line, _ := strconv.Atoi(sub[1])
			col := columnAt(settings, line, quotedRE.FindAllStringSubmatch(sub[2], -1))
			if col == 0 {
				col = at.Column
			}
			ps.errs = append(ps.errs, &Error{File: ps.file, Line: line, Col: col, Msg: what + ": " + friendlyYAML(sub[2]), Err: err})
		}
		return
	}
	ps.errs = append(ps.errs, &Error{File: ps.file, Line: at.Line, Col: at.Column, Msg: what + ": " + err.Error(), Err: err})
}

var unmarshalRE = regexp.MustCompile("^cannot unmarshal !!(\\w+) (?:`[^`]*` )?into (.+)$")

// friendlyYAML rewords yaml.v3's "cannot unmarshal !!seq into string".
func friendlyYAML(msg string) string {
	m := unmarshalRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	got := map[string]string{"seq": "a list", "map": "a mapping", "str": "text", "int": "a number",
		"float": "a number", "bool": "true or false", "null": "nothing", "timestamp": "a timestamp"}[m[1]]
	if got == "" {
		got = m[1]
	}
	return fmt.Sprintf("got %s where a value of type %s is expected", got, m[2])
}

// quotedRE finds the quoted names in a decoding error, such as the field
// in `unknown field "bogus"`.
var quotedRE = regexp.MustCompile(`"([^"]*)"`)

// columnAt returns the column, on line, of the scalar in n's tree whose
// value is one of the names quoted in the error message, else of the first
// scalar on that line, else 0.
func columnAt(n *yaml.Node, line int, quoted [][]string) int {
	first := 0
	var walk func(n *yaml.Node, depth int) int
	walk = func(n *yaml.Node, depth int) int {
		if n == nil || depth > 64 {
			return 0
		}
		if n.Line == line && n.Kind == yaml.ScalarNode {
			for _, q := range quoted {
				if n.Value == q[1] {
					return n.Column
				}
			}
			if first == 0 {
				first = n.Column
			}
		}
		for _, c := range n.Content {
			if col := walk(c, depth+1); col != 0 {
				return col
			}
		}
		return 0
	}
	if col := walk(n, 0); col != 0 {
		return col
	}
	return first
}

// settingsHash is a stable digest of a module's settings: the same settings
// give the same hash whatever their order, comments or layout.
func settingsHash(module string, n *yaml.Node) string {
	h := sha256.New()
	io.WriteString(h, module)
	budget := 1 << 16 // aliases can make a small tree huge; stop hashing there
	var walk func(n *yaml.Node, depth int)
	walk = func(n *yaml.Node, depth int) {
		n = deref(n)
		if budget--; depth > 64 || budget < 0 {
			return
		}
		switch n.Kind {
		case yaml.MappingNode:
			type kv struct {
				k   string
				key *yaml.Node
				v   *yaml.Node
			}
			var kvs []kv
			for i := 0; i+1 < len(n.Content); i += 2 {
				kvs = append(kvs, kv{deref(n.Content[i]).Value, n.Content[i], n.Content[i+1]})
			}
			sort.SliceStable(kvs, func(i, j int) bool { return kvs[i].k < kvs[j].k })
			fmt.Fprintf(h, "{%d", len(kvs))
			for _, e := range kvs {
				walk(e.key, depth+1)
				walk(e.v, depth+1)
			}
			io.WriteString(h, "}")
		case yaml.SequenceNode:
			fmt.Fprintf(h, "[%d", len(n.Content))
			for _, c := range n.Content {
				walk(c, depth+1)
			}
			io.WriteString(h, "]")
		default:
			fmt.Fprintf(h, "%q%q", n.ShortTag(), n.Value)
		}
	}
	walk(n, 0)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// ---- rules

func (ps *parser) parseRules(f field) []*rule {
	n := deref(f.val)
	if f.val == nil || isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		ps.errorf(n, "rules must be a list of rules, each starting with '- name:'")
		return nil
	}
	names := map[string]*yaml.Node{}
	var out []*rule
	for i, rn := range n.Content {
		rn = deref(rn)
		what := fmt.Sprintf("rule %d", i+1)
		if rn.Kind != yaml.MappingNode {
			ps.errorf(rn, "%s must be a mapping with name, from, to and action or inject", what)
			continue
		}
		fs := ps.fields(rn, what, "name", "from", "to", "action", "methods", "paths", "when", "inject", "plaintext", "rate_limit")
		r := &rule{index: len(out)}
		if nf, ok := fs["name"]; ok {
			if name, ok := ps.str(nf.val, what+" name"); ok {
				if msg := checkName(name); msg != "" {
					ps.errorf(deref(nf.val), "%s: name %s", what, msg)
				} else if prev, dup := names[name]; dup {
					ps.errorf(deref(nf.val), "rule name %q is already used by the rule at line %d; rule names must be unique", name, prev.Line)
				} else {
					names[name] = deref(nf.val)
					r.name = name
					what = fmt.Sprintf("rule %q", name)
				}
			}
		} else {
			ps.errorf(rn, "%s has no name; add name: <unique name>", what)
		}
		ps.parseFrom(r, fs, rn, what)
		ps.parseTo(r, fs, rn, what)
		ps.parseAction(r, fs, rn, what)
		if m, ok := fs["methods"]; ok {
			vals, nodes := ps.list(m.val, what+" methods", false)
			r.methods = []string{}
			for i, v := range vals {
				if !isToken(v) {
					ps.errorf(nodes[i], "%s: %q is not an HTTP method", what, v)
					continue
				}
				if up := strings.ToUpper(v); !slices.Contains(r.methods, up) {
					r.methods = append(r.methods, up)
				}
			}
		}
		if pf, ok := fs["paths"]; ok {
			vals, nodes := ps.list(pf.val, what+" paths", false)
			r.paths = []glob{}
			for i, v := range vals {
				g, msg := compileGlob(v)
				if msg != "" {
					ps.errorf(nodes[i], "%s: %s", what, msg)
					continue
				}
				r.paths = append(r.paths, g)
			}
		}
		if r.act == ruleTunnel {
			for _, k := range []string{"methods", "paths"} {
				if kf, ok := fs[k]; ok {
					ps.errorf(kf.key, "%s: a tunnel rule cannot have %s, because the gateway does not see requests inside a tunnel; remove %s or use inject or deny", what, k, k)
				}
			}
		}
		if wf, ok := fs["when"]; ok {
			ps.parseWhen(r, wf, what)
		}
		if pt, ok := fs["plaintext"]; ok {
			if r.act != ruleInject {
				ps.errorf(pt.key, "%s: plaintext applies only to inject rules; remove it", what)
			} else {
				r.plaintext = ps.boolean(pt.val, what+" plaintext")
			}
		}
		if rl, ok := fs["rate_limit"]; ok {
			ps.rateLimitOn(r, rl, what)
		}
		out = append(out, r)
	}
	return out
}

// parseWhen compiles a rule's condition, reporting CEL errors at their
// position in the file.
func (ps *parser) parseWhen(r *rule, f field, what string) {
	src, ok := ps.str(f.val, what+" when")
	if !ok {
		return
	}
	n := deref(f.val)
	if strings.TrimSpace(src) == "" {
		ps.errorf(n, "%s: when is empty; write a condition such as workload.posture.patched, or remove it", what)
		return
	}
	c, issues := compileCondition(src)
	for _, is := range issues {
		line, col := ps.conditionPosition(n, src, is.line, is.col)
		ps.errs = append(ps.errs, &Error{File: ps.file, Line: line, Col: col, Msg: fmt.Sprintf("%s when: %s", what, is.msg)})
	}
	if c == nil {
		return
	}
	if r.act == ruleTunnel && c.usesRequest {
		ps.errorf(n, "%s: a tunnel rule's condition cannot use request, because the gateway does not see requests inside a tunnel; use workload and now only, or use inject or deny", what)
		return
	}
	r.cond = c
}

func (ps *parser) parseFrom(r *rule, fs map[string]field, rn *yaml.Node, what string) {
	f, ok := fs["from"]
	if !ok {
		ps.errorf(rn, "%s has no from; add from: <workload>, \"*\" or anonymous", what)
		return
	}
	vals, nodes := ps.list(f.val, what+" from", true)
	for i, v := range vals {
		switch {
		case v == FromAny:
			r.fromAny = true
		case v == FromAnonymous:
			r.fromAnon = true
		case ps.workloads[v]:
			if !slices.Contains(r.from, v) {
				r.from = append(r.from, v)
			}
		default:
			ps.errorf(nodes[i], "%s: from names unknown workload %q; define it under workloads or use one of %s", what, v, known(ps.workloads, FromAny, FromAnonymous))
		}
	}
}

func (ps *parser) parseTo(r *rule, fs map[string]field, rn *yaml.Node, what string) {
	f, ok := fs["to"]
	if !ok {
		ps.errorf(rn, "%s has no to; add to: <destination>", what)
		return
	}
	vals, nodes := ps.list(f.val, what+" to", true)
	for i, v := range vals {
		d, ok := ps.dests[v]
		if !ok {
			ps.errorf(nodes[i], "%s: to names unknown destination %q; define it under destinations (defined: %s)", what, v, known(ps.destNames()))
			continue
		}
		if !slices.Contains(r.to, d) {
			r.to = append(r.to, d)
		}
	}
}

func (ps *parser) destNames() map[string]bool {
	m := make(map[string]bool, len(ps.dests))
	for k := range ps.dests {
		m[k] = true
	}
	return m
}

func (ps *parser) parseAction(r *rule, fs map[string]field, rn *yaml.Node, what string) {
	inj, hasInject := fs["inject"]
	af, hasAction := fs["action"]
	act := ""
	if hasAction {
		var ok bool
		if act, ok = ps.str(af.val, what+" action"); !ok {
			return
		}
	}
	switch {
	case !hasAction && !hasInject:
		ps.errorf(rn, "%s has neither action nor inject; add action: tunnel, action: deny, or an inject block", what)
		return
	case act == "deny" || act == "tunnel":
		if hasInject {
			ps.errorf(inj.key, "%s: action %s cannot have an inject block; remove inject or the action", what, act)
			return
		}
		r.act = map[string]ruleAction{"deny": ruleDeny, "tunnel": ruleTunnel}[act]
		return
	case act == "inject" || act == "":
		r.act = ruleInject
		if !hasInject {
			ps.errorf(deref(af.val), "%s: action inject needs an inject block with credential and as", what)
			return
		}
	default:
		ps.errorf(deref(af.val), "%s: unknown action %q; use tunnel, deny or inject", what, act)
		return
	}
	body := deref(inj.val)
	if body.Kind != yaml.MappingNode {
		ps.errorf(body, "%s: inject must be a mapping like {credential: name, as: bearer}", what)
		return
	}
	settings, got := ps.split(body, what+" inject", "credential", "as")
	cf, ok := got["credential"]
	if !ok {
		ps.errorf(inj.key, "%s: inject has no credential; add credential: <name>", what)
	}
	asf, ok2 := got["as"]
	if !ok2 {
		ps.errorf(inj.key, "%s: inject has no as; add as: <injector> (available: %s)", what, strings.Join(injectors.Names(), ", "))
	}
	if !ok || !ok2 {
		return
	}
	credName, ok := ps.str(cf.val, what+" inject credential")
	if !ok {
		return
	}
	as, ok := ps.str(asf.val, what+" inject as")
	if !ok {
		return
	}
	cred, known := ps.creds[credName]
	if !known {
		ps.errorf(deref(cf.val), "%s: unknown credential %q; define it under credentials (defined: %s)", what, credName, ps.credNames())
	}
	if _, ok := injectors.Lookup(as); !ok {
		ps.errorf(deref(asf.val), "%s: unknown injector %q; available injectors are %s", what, as, strings.Join(injectors.Names(), ", "))
		return
	}
	inject, err := injectors.Load(as, settings)
	if err != nil {
		ps.moduleError(body, settings, fmt.Sprintf("%s inject (as %s)", what, as), err)
		return
	}
	ps.builtInjectors = append(ps.builtInjectors, inject)
	if cred == nil {
		return // reported above or in credentials
	}
	r.plan = &InjectPlan{
		Credential:        cred.name,
		CredentialVersion: cred.version,
		ProviderName:      cred.provider,
		Provider:          cred.p,
		As:                as,
		Injector:          inject,
	}
}

func (ps *parser) credNames() string {
	m := make(map[string]bool, len(ps.creds))
	for k := range ps.creds {
		m[k] = true
	}
	return known(m)
}

// known lists names for an error message, sorted, at most 10.
func known(m map[string]bool, extra ...string) string {
	names := make([]string, 0, len(m)+len(extra))
	for k := range m {
		names = append(names, strconv.Quote(k))
	}
	sort.Strings(names)
	if len(names) > 10 {
		names = append(names[:10], "...")
	}
	for _, e := range extra {
		names = append(names, strconv.Quote(e))
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
