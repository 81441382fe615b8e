package gateway

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestConfigWrongKindNeverEchoes walks every field of Config (by
// reflection, through structs, pointers, maps and lists) and writes a
// value of each wrong kind into it: a string where a mapping, list or
// number is wanted, a list or mapping where a string is. Every config
// must be rejected without a panic, with FILE:LINE:COL and the key path
// on each message, and no message may hold the value (short values
// yaml.v3 echoes whole, long ones cut: both carry SECRETV).
func TestConfigWrongKindNeverEchoes(t *testing.T) {
	var fields []cfgField
	walkConfig(reflect.TypeFor[Config](), nil, map[reflect.Type]bool{}, &fields)
	if len(fields) < 100 {
		t.Fatalf("walked only %d fields of Config; the walk misses some", len(fields))
	}
	posRE := regexp.MustCompile(`^c\.yaml:\d+:\d+: `)
	n := 0
	for _, f := range fields {
		for _, bad := range wrongKinds(f.typ) {
			n++
			doc := nest(f.path, bad)
			data, err := yaml.Marshal(map[string]any{"policy": "p.yaml", "ca": map[string]any{"cert": "c", "key": "k"}})
			if err != nil {
				t.Fatal(err)
			}
			body, err := yaml.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			src := mergeTop(string(data), string(body))
			name := fmt.Sprintf("%s=%v", f.dotted(), bad)
			_, err = ParseConfig("c.yaml", []byte(src))
			if err == nil {
				if f.lenient() {
					continue
				}
				t.Errorf("%s: accepted\n%s", name, src)
				continue
			}
			msg := err.Error()
			if strings.Contains(msg, "SECRETV") {
				t.Errorf("%s: the error echoes the value:\n%s", name, msg)
			}
			if f.lenient() {
				continue
			}
			for _, line := range strings.Split(msg, "\n") {
				if !posRE.MatchString(line) {
					t.Errorf("%s: message without FILE:LINE:COL: %q", name, line)
				}
			}
			if !strings.Contains(msg, f.dotted()+": want ") {
				t.Errorf("%s: the error does not name the key and what it wants:\n%s", name, msg)
			}
		}
	}
	t.Logf("%d fields, %d wrong-kind configs", len(fields), n)
}

type cfgField struct {
	path []any // string keys, 0 for a list's first entry
	typ  reflect.Type
}

func (f cfgField) dotted() string {
	var b strings.Builder
	for _, p := range f.path {
		switch p := p.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(p)
		case int:
			fmt.Fprintf(&b, "[%d]", p)
		}
	}
	return b.String()
}

// lenient fields take any YAML: a custom unmarshaler that keeps the node
// for later (the audit signer's settings) or an interface.
func (f cfgField) lenient() bool {
	t := f.typ
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t == reflect.TypeFor[SignerSettings]() || t == reflect.TypeFor[yaml.Node]() || t.Kind() == reflect.Interface
}

var yamlUnmarshaler = reflect.TypeFor[yaml.Unmarshaler]()

func walkConfig(t reflect.Type, path []any, seen map[reflect.Type]bool, out *[]cfgField) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if seen[t] || len(path) > 12 {
		return
	}
	if t.Implements(yamlUnmarshaler) || reflect.PointerTo(t).Implements(yamlUnmarshaler) || t == reflect.TypeFor[yaml.Node]() {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		seen[t] = true
		defer delete(seen, t)
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			tag := sf.Tag.Get("yaml")
			if tag == "-" || (!sf.IsExported() && !sf.Anonymous) {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if strings.Contains(opts, "inline") {
				walkConfig(sf.Type, path, seen, out)
				continue
			}
			if !sf.IsExported() {
				continue
			}
			if name == "" {
				name = strings.ToLower(sf.Name)
			}
			p := append(append([]any{}, path...), name)
			*out = append(*out, cfgField{path: p, typ: sf.Type})
			walkConfig(sf.Type, p, seen, out)
		}
	case reflect.Map:
		p := append(append([]any{}, path...), "k")
		*out = append(*out, cfgField{path: p, typ: t.Elem()})
		walkConfig(t.Elem(), p, seen, out)
	case reflect.Slice, reflect.Array:
		p := append(append([]any{}, path...), 0)
		*out = append(*out, cfgField{path: p, typ: t.Elem()})
		walkConfig(t.Elem(), p, seen, out)
	}
}

// wrongKinds returns values that do not fit t.
func wrongKinds(t reflect.Type) []any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	short, long := "SECRETV", "SECRETVALUE-0123456789"
	list, mapping := []any{"SECRETV"}, map[string]any{"k": "SECRETVALUE-0123456789"}
	if t.Implements(yamlUnmarshaler) || reflect.PointerTo(t).Implements(yamlUnmarshaler) {
		// A custom unmarshaler: only it knows what fits; try all.
		return []any{short, long, list, mapping}
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return []any{short, long, list}
	case reflect.Slice, reflect.Array:
		return []any{short, long, mapping}
	case reflect.String:
		return []any{list, mapping}
	case reflect.Interface:
		return []any{list}
	}
	return []any{short, long, list, mapping} // numbers, booleans, durations
}

// nest builds {a: {b: [{c: v}]}} from the path [a b 0 c].
func nest(path []any, v any) any {
	for i := len(path) - 1; i >= 0; i-- {
		switch p := path[i].(type) {
		case string:
			v = map[string]any{p: v}
		case int:
			v = []any{v}
		}
	}
	return v
}

// mergeTop puts body's top-level key after base's, unless base has it.
func mergeTop(base, body string) string {
	for _, k := range []string{"policy:", "ca:"} {
		if strings.HasPrefix(body, k) {
			return body
		}
	}
	return base + body
}
