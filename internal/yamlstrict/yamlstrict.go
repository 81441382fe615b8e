// Package yamlstrict decodes a yaml.Node into a Go value and rejects
// mapping keys the value has no field for.
//
// It exists because gopkg.in/yaml.v3 only offers strict decoding
// (Decoder.KnownFields) on a byte stream, while providers and injectors
// receive their settings as a *yaml.Node cut out of the policy file:
// re-encoding the node would lose the line numbers that policy errors
// report. Errors come back as a *yaml.TypeError whose messages start
// with "line N: ", the same shape yaml.v3 uses, so callers that map them
// to file:line:col keep working.
//
// Explain words yaml.v3's type errors for people, with the key path and
// without the value (which may be a secret); every decoder of typed YAML
// in credgate reports through it.
package yamlstrict

import (
	"cmp"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Decode decodes n into v (a pointer) like n.Decode(v), and additionally
// reports every mapping key that has no matching field in v's struct
// types (recursively, through pointers, slices, arrays and maps). A nil
// node decodes nothing and returns nil. Errors are a *yaml.TypeError with
// one "line N: message" per problem, sorted by line; a value of the wrong
// kind is worded by Explain ("line N: KEY.PATH: want a list, got a
// string"), never echoing the value. Decoding errors of custom
// yaml.Unmarshaler implementations are returned as they are.
func Decode(n *yaml.Node, v any) error {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	var probs []problem
	if t := reflect.TypeOf(v); t != nil {
		check(n, t, &probs, nil, "")
	}
	err := n.Decode(v)
	if err != nil {
		te, ok := err.(*yaml.TypeError)
		if !ok {
			return err
		}
		for _, p := range Explain(n, v, te) {
			m := p.Msg
			if p.Line > 0 {
				m = fmt.Sprintf("line %d: %s", p.Line, m)
			}
			probs = append(probs, problem{line: p.Line, msg: m})
		}
	}
	if len(probs) == 0 {
		return nil
	}
	slices.SortStableFunc(probs, func(a, b problem) int { return cmp.Compare(a.line, b.line) })
	te := &yaml.TypeError{}
	for _, p := range probs {
		te.Errors = append(te.Errors, p.msg)
	}
	return te
}

type problem struct {
	line int
	msg  string
}

// Problem is one unknown mapping key, at its position.
type Problem struct {
	// Line and Col are the key's 1-based position.
	Line, Col int
	// Msg says which key is unknown and lists the known ones, without a
	// position prefix.
	Msg string
}

// UnknownKeys reports every mapping key in n that v's struct types
// (recursively) have no field for, with its line and column. It decodes
// nothing; callers that need the positions of unknown keys (yaml.v3's
// errors carry a line only) use it before or instead of Decode.
func UnknownKeys(n *yaml.Node, v any) []Problem {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	var out []Problem
	if t := reflect.TypeOf(v); t != nil {
		var probs []problem
		check(n, t, &probs, &out, "")
	}
	return out
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	// nodeType is yaml.Node, which takes any YAML as it is (a plugin's
	// settings, checked by the plugin): its Go fields are no schema.
	nodeType = reflect.TypeFor[yaml.Node]()
)

// check walks n alongside type t and records unknown mapping keys. path
// is n's key path ("cache.redis", "issuers[0]"; "" at the top), which a
// message about a key below the top names ("unknown field "x" in
// cache.redis"), as Explain's do.
func check(n *yaml.Node, t reflect.Type, probs *[]problem, pos *[]Problem, path string) {
	if n == nil {
		return
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
		if n == nil {
			return
		}
	}
	for t.Kind() == reflect.Pointer {
		if t.Implements(unmarshalerType) {
			return
		}
		t = t.Elem()
	}
	if t == nodeType || t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return // the type decodes itself
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // n.Decode reports the type mismatch
		}
		fs := fieldsOf(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
				checkMerge(val, t, probs, pos, path)
				continue
			}
			if ft, ok := fs.types[k.Value]; ok && k.Kind == yaml.ScalarNode {
				if v := resolved(val); isInt(ft) && !PlainInt(v) && v.Kind == yaml.ScalarNode && v.Tag == "!!int" {
					msg := fmt.Sprintf("%s: %s", k.Value, NotPlainInt)
					*probs = append(*probs, problem{line: v.Line, msg: fmt.Sprintf("line %d: %s", v.Line, msg)})
					if pos != nil {
						*pos = append(*pos, Problem{Line: v.Line, Col: v.Column, Msg: msg})
					}
				}
				if v := resolved(val); isBool(ft) && YAML11Bool(v) {
					msg := fmt.Sprintf("%s: %s", keyPath(path, k.Value), fmt.Sprintf(NotPlainBool, v.Value))
					*probs = append(*probs, problem{line: v.Line, msg: fmt.Sprintf("line %d: %s", v.Line, msg)})
					if pos != nil {
						*pos = append(*pos, Problem{Line: v.Line, Col: v.Column, Msg: msg})
					}
				}
				check(val, ft, probs, pos, keyPath(path, k.Value))
				continue
			}
			if fs.inlineMap {
				continue
			}
			msg := fmt.Sprintf("unknown field %q", k.Value)
			if path != "" {
				msg += " in " + path
			}
			if len(fs.names) > 0 {
				msg += "; known fields are " + strings.Join(fs.names, ", ")
			}
			*probs = append(*probs, problem{line: k.Line, msg: fmt.Sprintf("line %d: %s", k.Line, msg)})
			if pos != nil {
				*pos = append(*pos, Problem{Line: k.Line, Col: k.Column, Msg: msg})
			}
		}
	case reflect.Slice, reflect.Array:
		if n.Kind == yaml.SequenceNode {
			for i, c := range n.Content {
				check(c, t.Elem(), probs, pos, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	case reflect.Map:
		if n.Kind == yaml.MappingNode {
			for i := 1; i < len(n.Content); i += 2 {
				check(n.Content[i], t.Elem(), probs, pos, keyPath(path, n.Content[i-1].Value))
			}
		}
	}
}

// NotPlainInt says what is wrong with a number PlainInt refuses, and
// what to write instead, without the value.
const NotPlainInt = "a number with a leading zero is read by YAML as octal (0443 is 291); write it without the leading zero (or as 0o443 if octal is meant)"

// leadingZeroRE matches the integers yaml.v3 reads as YAML 1.1 octal:
// a leading 0 followed by more digits.
var leadingZeroRE = regexp.MustCompile(`^[-+]?0[0-9_]+$`)

// PlainInt reports whether n is not an integer written with a leading
// zero. yaml.v3 resolves integers as YAML 1.1 did: "0443" is 291 (YAML
// 1.2 and people read 443), so a port or size written with a leading zero
// silently becomes another number. Explicit spellings (0o443, 0x1BB) say
// what they mean and pass. Loaders refuse what it refuses.
func PlainInt(n *yaml.Node) bool {
	n = resolved(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		return true
	}
	return !leadingZeroRE.MatchString(n.Value)
}

// NotPlainBool says what is wrong with a boolean YAML11Bool reports (a
// format verb for the value, one of yaml.v3's fixed set, never a secret)
// and what to write instead.
const NotPlainBool = "%s is a boolean to YAML 1.1 readers (yaml.v3 takes it as one) and text to YAML 1.2 readers (linters, other tools, a policy's own settings); write true or false"

// yaml11Bools are the scalars yaml.v3 resolves as text but decodes into
// a bool field as YAML 1.1 did.
var yaml11Bools = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true, "on": true, "On": true, "ON": true,
	"n": true, "N": true, "no": true, "No": true, "NO": true, "off": true, "Off": true, "OFF": true,
}

// YAML11Bool reports whether n is a scalar such as yes, no, on or off,
// quoted or not: text in YAML 1.2 (and to yaml.v3's resolver), a
// boolean when yaml.v3 decodes it into a bool (quoted too, where "true"
// quoted is refused). Loaders refuse it in a bool setting, as
// the policy refuses allow_private: no, so that every reader of the file
// reads the same value.
func YAML11Bool(n *yaml.Node) bool {
	n = resolved(n)
	return n != nil && n.Kind == yaml.ScalarNode && n.Tag == "!!str" && yaml11Bools[n.Value]
}

// isBool reports whether t (through pointers) is a bool that decodes
// itself by yaml.v3's rules.
func isBool(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return false
	}
	return t.Kind() == reflect.Bool
}

// resolved follows aliases.
func resolved(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// isInt reports whether t (through pointers) is an integer kind that
// decodes itself by yaml.v3's rules.
func isInt(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return false
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// keyPath is the path of key below path.
func keyPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// checkMerge checks the mapping(s) merged in with a "<<" key.
func checkMerge(val *yaml.Node, t reflect.Type, probs *[]problem, pos *[]Problem, path string) {
	if val.Kind == yaml.AliasNode {
		val = val.Alias
	}
	if val == nil {
		return
	}
	if val.Kind == yaml.SequenceNode {
		for _, c := range val.Content {
			checkMerge(c, t, probs, pos, path)
		}
		return
	}
	check(val, t, probs, pos, path)
}

// fields describes the keys a struct type accepts.
type fields struct {
	names     []string // in declaration order
	types     map[string]reflect.Type
	inlineMap bool // an ",inline" map takes any other key
}

// fieldsOf follows yaml.v3's rules: the key is the tag name or the
// lower-cased field name, "-" skips the field, ",inline" merges a struct's
// fields or makes a map take all other keys.
func fieldsOf(t reflect.Type) fields {
	fs := fields{types: map[string]reflect.Type{}}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous {
				continue
			}
			tag := f.Tag.Get("yaml")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if slices.Contains(strings.Split(opts, ","), "inline") {
				ft := f.Type
				for ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				switch ft.Kind() {
				case reflect.Struct:
					walk(ft)
				case reflect.Map:
					fs.inlineMap = true
				}
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if _, dup := fs.types[name]; !dup {
				fs.names = append(fs.names, name)
			}
			fs.types[name] = f.Type
		}
	}
	walk(t)
	return fs
}
