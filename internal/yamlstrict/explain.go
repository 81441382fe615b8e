package yamlstrict

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Explain turns err, returned by decoding root into v (root.Decode(v) or
// Decode), into one Problem per message, each at the position of the
// offending value and worded as "KEY.PATH: want a list, got a string"
// (with a hint where one is natural).
//
// It exists because yaml.v3 words a type error as "line 3: cannot
// unmarshal !!str `k9Zq2Lw7Xa` into otlp.HeaderValue": it echoes the value
// (up to ten characters whole, the first seven of a longer one), which may
// be a secret pasted in the wrong place, and names a Go type instead of
// the key. A Problem never contains a value: the value in yaml.v3's
// message is used only to find the node it came from. Messages that are
// not type errors (a custom unmarshaler's "line N: ...") keep their text,
// prefixed with the key path of the value on that line (at that column,
// when the message is "line N: column C: ...").
func Explain(root *yaml.Node, v any, err error) []Problem {
	if err == nil {
		return nil
	}
	if root != nil && root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	var t reflect.Type
	if v != nil {
		t = reflect.TypeOf(v)
	}
	msgs := []string{err.Error()}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	out := make([]Problem, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, explainOne(root, t, strings.TrimPrefix(m, "yaml: ")))
	}
	return out
}

// unmarshalRE matches yaml.v3's type error; the value between backticks
// may itself hold backticks or newlines.
var unmarshalRE = regexp.MustCompile("(?s)^line (\\d+): cannot unmarshal (\\S+?)(?: `(.*)`)? into (.+)$")

// lineRE matches any other "line N: message", and "line N: column C:
// message" of a custom unmarshaler that knows its node's column.
var lineRE = regexp.MustCompile(`(?s)^line (\d+): (?:column (\d+): )?(.*)$`)

func explainOne(root *yaml.Node, t reflect.Type, msg string) Problem {
	if m := unmarshalRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		tag, value, into := m[2], m[3], m[4]
		f := best(findAll(root, t, func(n *yaml.Node) bool {
			return n.Line == line && tagOf(n) == tag && valueMatches(n, value)
		}), into)
		p := Problem{Line: line, Col: f.col()}
		want := describeWant(f.typ, into)
		got := describeGot(tag)
		p.Msg = fmt.Sprintf("want %s, got %s", want, got)
		if h := hint(f.typ, into, tag); h != "" {
			p.Msg += "; " + h
		}
		if f.path != "" {
			p.Msg = f.path + ": " + p.Msg
		}
		return p
	}
	if strings.HasPrefix(msg, "invalid map key:") {
		// "invalid map key: map[string]interface {}{...}" prints the key.
		return Problem{Msg: "a mapping key must be a single value, not a list or a mapping"}
	}
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		col, _ := strconv.Atoi(m[2])
		p := Problem{Line: line, Col: col, Msg: m[3]}
		f := first(findAll(root, t, func(n *yaml.Node) bool { return n.Line == line && (col == 0 || n.Column == col) }))
		if col == 0 {
			p.Col = f.col()
		}
		if f.path != "" && !strings.HasPrefix(p.Msg, f.path) {
			p.Msg = f.path + ": " + p.Msg
		}
		return p
	}
	return Problem{Msg: msg}
}

// tagOf is the tag yaml.v3 prints for n in a type error.
func tagOf(n *yaml.Node) string {
	if strings.HasPrefix(n.Tag, "tag:yaml.org,2002:") {
		return "!!" + strings.TrimPrefix(n.Tag, "tag:yaml.org,2002:")
	}
	if n.Tag != "" {
		return n.Tag
	}
	return n.ShortTag()
}

// valueMatches reports whether n's value is the one yaml.v3 printed
// (whole, or its first seven bytes and "..."); an empty printed value
// (lists and mappings print none) matches any node.
func valueMatches(n *yaml.Node, printed string) bool {
	switch {
	case printed == "":
		return true
	case len(n.Value) > 10:
		return strings.HasSuffix(printed, "...") && strings.HasPrefix(n.Value, strings.TrimSuffix(printed, "..."))
	default:
		return n.Value == printed
	}
}

// found is a node a message may be about: its key path, the Go type it
// was decoded into (nil when unknown), its depth and the node itself
// (nil: not found).
type found struct {
	node  *yaml.Node
	path  string
	typ   reflect.Type
	depth int
}

func (f found) col() int {
	if f.node == nil {
		return 0
	}
	return f.node.Column
}

func first(fs []found) found {
	if len(fs) == 0 {
		return found{}
	}
	return fs[0]
}

// best picks, among the nodes a type error may be about (several lists or
// mappings can start on one line), the one decoded into the type the
// message names; else one decoded by a custom unmarshaler (which decodes
// into a type of its own) or into an unknown type; else the deepest.
func best(fs []found, into string) found {
	for _, f := range fs {
		if f.typ != nil && f.typ.String() == into {
			return f
		}
	}
	for _, f := range fs {
		if f.typ == nil || f.typ.Implements(unmarshalerType) || reflect.PointerTo(f.typ).Implements(unmarshalerType) {
			return f
		}
	}
	var b found
	for _, f := range fs {
		if b.node == nil || f.depth > b.depth {
			b = f
		}
	}
	return b
}

// findAll walks root alongside type t and returns the nodes, in document
// order, that match accepts, with their key paths and Go types.
func findAll(root *yaml.Node, t reflect.Type, match func(*yaml.Node) bool) []found {
	var res []found
	var walk func(n *yaml.Node, t reflect.Type, path string, depth int)
	walk = func(n *yaml.Node, t reflect.Type, path string, depth int) {
		if n == nil || depth > 64 {
			return
		}
		if n.Kind == yaml.AliasNode {
			// yaml.v3 reports an error in aliased content at the
			// anchor, which the walk visits where it is written; not
			// following aliases keeps the walk linear in the file.
			return
		}
		for t != nil && t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if match(n) {
			res = append(res, found{node: n, path: path, typ: t, depth: depth})
		}
		join := func(k string) string {
			if path == "" {
				return k
			}
			return path + "." + k
		}
		switch n.Kind {
		case yaml.MappingNode:
			var fs fields
			if t != nil && t.Kind() == reflect.Struct {
				fs = fieldsOf(t)
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, val := n.Content[i], n.Content[i+1]
				var et reflect.Type
				switch {
				case t == nil:
				case t.Kind() == reflect.Struct:
					et = fs.types[k.Value]
				case t.Kind() == reflect.Map:
					et = t.Elem()
				}
				walk(val, et, join(k.Value), depth+1)
			}
		case yaml.SequenceNode:
			var et reflect.Type
			if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
				et = t.Elem()
			}
			for i, c := range n.Content {
				walk(c, et, fmt.Sprintf("%s[%d]", path, i), depth+1)
			}
		}
	}
	walk(root, t, "", 0)
	return res
}

var durationType = reflect.TypeFor[time.Duration]()

// describeWant names what a value of type t (or, when t is unknown, of
// the Go type yaml.v3 named) is written as.
func describeWant(t reflect.Type, into string) string {
	if t == nil || t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		// A custom unmarshaler decoded into another type: the message
		// names that one.
		return describeTypeName(into)
	}
	return describeType(t)
}

func describeType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		return "a duration such as 10s or 5m"
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a value of type " + t.String()
}

// describeTypeName is describeType from the type's printed name.
func describeTypeName(into string) string {
	into = strings.TrimLeft(into, "*")
	switch {
	case into == "time.Duration":
		return "a duration such as 10s or 5m"
	case strings.HasPrefix(into, "[]") || strings.HasPrefix(into, "["):
		return "a list"
	case strings.HasPrefix(into, "map["):
		return "a mapping"
	case into == "string":
		return "a string"
	case into == "bool":
		return "true or false"
	case strings.HasPrefix(into, "int") || strings.HasPrefix(into, "uint"):
		return "a whole number"
	case strings.HasPrefix(into, "float"):
		return "a number"
	}
	return "a value of type " + into
}

// describeGot names a node's tag in the words of describeWant.
func describeGot(tag string) string {
	switch tag {
	case "!!seq":
		return "a list"
	case "!!map":
		return "a mapping"
	case "!!str":
		return "a string"
	case "!!int":
		return "a whole number"
	case "!!float":
		return "a number"
	case "!!bool":
		return "true or false"
	case "!!null":
		return "nothing (null)"
	case "!!timestamp":
		return "a timestamp"
	case "!!binary":
		return "binary data"
	}
	return "a value tagged " + tag
}

// hint says how to write what is wanted, where that is short.
func hint(t reflect.Type, into, tag string) string {
	want := describeWant(t, into)
	switch {
	case want == "a mapping" && t != nil && t.Kind() == reflect.Struct:
		if fs := fieldsOf(t); len(fs.names) > 0 {
			return "write its keys on the lines below it, indented (" + strings.Join(fs.names, ", ") + ")"
		}
		return "write its keys on the lines below it, indented"
	case want == "a mapping":
		return "write NAME: VALUE entries on the lines below it, indented"
	case want == "a list":
		return "write a list, such as [a, b] or one \"- item\" per line below it"
	case want == "a whole number" && tag == "!!str", want == "a number" && tag == "!!str":
		return "write digits, without quotes"
	case strings.HasPrefix(want, "a duration") && (tag == "!!int" || tag == "!!float"):
		return "add a unit, such as 30s"
	case want == "true or false" && tag == "!!str":
		return "write true or false, without quotes"
	}
	return ""
}
