package policy

// YAML node helpers shared by the parsers of each policy section: node
// dereferencing, mapping entries with duplicate and unknown-key checks,
// typed scalars, and FILE:LINE:COL positions for plugin settings errors.

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/internal/yamlstrict"
)

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
		if k.Tag == "!!merge" {
			continue // reported once for the whole file (yamlstrict.MergeKeys)
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
		te = explained(settings, te)
		err = te
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
			ps.errs = append(ps.errs, &Error{File: ps.file, Line: line, Col: col, Msg: what + ": " + sub[2], Err: err})
		}
		return
	}
	ps.errs = append(ps.errs, &Error{File: ps.file, Line: at.Line, Col: at.Column, Msg: what + ": " + err.Error(), Err: err})
}

// explained rewords, with yamlstrict.Explain, messages of te that are
// yaml.v3's own type errors (which echo the value): modules decode with
// yamlstrict.Decode, which already does, but one that called yaml.v3
// directly must not put a secret into a policy error either.
func explained(settings *yaml.Node, te *yaml.TypeError) *yaml.TypeError {
	out := &yaml.TypeError{Errors: make([]string, 0, len(te.Errors))}
	for _, m := range te.Errors {
		if strings.Contains(m, "cannot unmarshal") || strings.Contains(m, "invalid map key") {
			p := yamlstrict.Explain(settings, nil, &yaml.TypeError{Errors: []string{m}})[0]
			m = p.Msg
			if p.Line > 0 {
				m = fmt.Sprintf("line %d: %s", p.Line, m)
			}
		}
		out.Errors = append(out.Errors, m)
	}
	return out
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
