package yamlstrict

import (
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// secretString decodes itself from a string, as secret-bearing types do:
// its own n.Decode error is yaml.v3's, which would echo the value.
type secretString struct{ v string }

func (s *secretString) UnmarshalYAML(n *yaml.Node) error { return n.Decode(&s.v) }

// secretRef is a plain struct that holds a secret (like otlp.HeaderValue).
type secretRef struct {
	Value string `yaml:"value"`
	Env   string `yaml:"env"`
}

// TestTypeErrorsNeverEchoTheValue decodes every kind of YAML value into
// every kind of Go type it does not fit, and checks that each message has
// a line, the key, what was wanted and what was found, and never the value
// (short values yaml.v3 would print whole, long ones it would cut).
func TestTypeErrorsNeverEchoTheValue(t *testing.T) {
	inputs := []struct {
		name, yaml, got string
		kind            string // "seq", "map", "str", "int", "bool"
	}{
		{"list", "[SECRETV]", "a list", "seq"},
		{"long list", "[SECRETVALUE-long-0123456789]", "a list", "seq"},
		{"block list", "\n    - SECRETV\n    - SECRETV2", "a list", "seq"},
		{"mapping", "{k: SECRETV}", "a mapping", "map"},
		{"block mapping", "\n    SECRETV: SECRETV", "a mapping", "map"},
		{"short string", "SECRETV", "a string", "str"},
		{"ten-char string", "SECRETV123", "a string", "str"},
		{"long string", "SECRETVALUE-long-0123456789", "a string", "str"},
		{"quoted string", `"SECRETV"`, "a string", "str"},
		{"backticks", "SEC`RETV` into x", "a string", "str"},
		{"literal block", "|\n    SECRETV\n    more", "a string", "str"},
		{"number", "4242424242", "a whole number", "int"},
		{"bool", "true", "true or false", "bool"},
	}
	targets := []struct {
		name   string
		typ    reflect.Type
		want   string
		accept string // input kinds that fit
	}{
		{"struct", reflect.TypeFor[inner](), "a mapping", "map"},
		{"secret struct", reflect.TypeFor[secretRef](), "a mapping", "map"},
		{"pointer to struct", reflect.TypeFor[*secretRef](), "a mapping", "map"},
		{"slice", reflect.TypeFor[[]string](), "a list", "seq"},
		{"slice of structs", reflect.TypeFor[[]secretRef](), "a list", "seq"},
		{"map", reflect.TypeFor[map[string]string](), "a mapping", "map"},
		{"string", reflect.TypeFor[string](), "a string", "str int bool"},
		{"int", reflect.TypeFor[int](), "a whole number", "int"},
		{"bool", reflect.TypeFor[bool](), "true or false", "bool"},
		{"float", reflect.TypeFor[float64](), "a number", "int"},
		{"duration", reflect.TypeFor[time.Duration](), "a duration", "int"},
		{"custom unmarshaler", reflect.TypeFor[secretString](), "a string", "str int bool"},
	}
	lineRE := regexp.MustCompile(`^line (\d+): `)
	for _, tg := range targets {
		for _, in := range inputs {
			if strings.Contains(tg.accept, in.kind) {
				continue
			}
			t.Run(tg.name+"/"+in.name, func(t *testing.T) {
				st := reflect.StructOf([]reflect.StructField{
					{Name: "Other", Type: reflect.TypeFor[int](), Tag: `yaml:"other"`},
					{Name: "Outer", Type: reflect.StructOf([]reflect.StructField{
						{Name: "F", Type: tg.typ, Tag: `yaml:"f"`},
					}), Tag: `yaml:"outer"`},
				})
				src := "other: 1\nouter:\n  f: " + in.yaml + "\n"
				err := Decode(node(t, src), reflect.New(st).Interface())
				var te *yaml.TypeError
				if !errors.As(err, &te) {
					t.Fatalf("Decode(%q) = %v, want a *yaml.TypeError", src, err)
				}
				if len(te.Errors) != 1 {
					t.Fatalf("want one message, got %q", te.Errors)
				}
				msg := te.Errors[0]
				if strings.Contains(msg, "SECRETV") || strings.Contains(msg, "SEC`") {
					t.Errorf("message echoes the value: %q", msg)
				}
				m := lineRE.FindStringSubmatch(msg)
				if m == nil {
					t.Fatalf("message %q has no position", msg)
				}
				if m[1] != "3" && !(m[1] == "4" && strings.HasPrefix(in.yaml, "\n")) {
					t.Errorf("message %q: want line 3 (or 4 for a block)", msg)
				}
				for _, part := range []string{"outer.f", "want " + tg.want, "got " + in.got} {
					if !strings.Contains(msg, part) {
						t.Errorf("message %q does not say %q", msg, part)
					}
				}
				// Explain on the plain yaml.v3 error gives the column too.
				root := node(t, src)
				perr := root.Content[0].Decode(reflect.New(st).Interface())
				ps := Explain(root, reflect.New(st).Interface(), perr)
				if len(ps) != 1 || ps[0].Line == 0 || ps[0].Col == 0 || strings.Contains(ps[0].Msg, "SECRETV") {
					t.Errorf("Explain = %+v, want one problem with line and column and no value", ps)
				}
			})
		}
	}
}

// TestExplainFallbacks: messages Explain cannot place still drop the value.
func TestExplainFallbacks(t *testing.T) {
	for _, msg := range []string{
		"line 9: cannot unmarshal !!str `SECRETV` into foo.Bar",
		"line 9: cannot unmarshal !!str `SECRETV...` into []string",
		"invalid map key: map[string]interface {}{\"SECRETV\":1}",
	} {
		ps := Explain(nil, nil, &yaml.TypeError{Errors: []string{msg}})
		if len(ps) != 1 || strings.Contains(ps[0].Msg, "SECRETV") {
			t.Errorf("Explain(%q) = %+v", msg, ps)
		}
	}
}
