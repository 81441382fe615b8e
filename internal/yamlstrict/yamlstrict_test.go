package yamlstrict

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

type inner struct {
	Port int `yaml:"port"`
}

type embedded struct {
	Shared string `yaml:"shared"`
}

type settings struct {
	Name     string            `yaml:"name"`
	Inner    inner             `yaml:"inner"`
	List     []inner           `yaml:"list"`
	ByName   map[string]*inner `yaml:"by_name"`
	Skipped  string            `yaml:"-"`
	Untagged string
	embedded `yaml:",inline"`
}

type withExtra struct {
	Name  string         `yaml:"name"`
	Extra map[string]any `yaml:",inline"`
}

func node(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return &doc
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // TypeError messages; nil means success
	}{
		{"ok", "name: a\ninner: {port: 1}\nlist: [{port: 2}]\nby_name: {x: {port: 3}}\nuntagged: u\nshared: s\n", nil},
		{"unknown top", "name: a\nnmae: b\n", []string{`line 2: unknown field "nmae"; known fields are name, inner, list, by_name, untagged, shared`}},
		{"unknown nested", "inner:\n  port: 1\n  host: x\n", []string{`line 3: unknown field "host" in inner; known fields are port`}},
		{"unknown in list", "list:\n  - port: 1\n  - prot: 2\n", []string{`line 3: unknown field "prot" in list[1]; known fields are port`}},
		{"unknown in map value", "by_name:\n  a: {porty: 1}\n", []string{`line 2: unknown field "porty" in by_name.a; known fields are port`}},
		{"skipped is unknown", "Skipped: x\n", []string{`line 1: unknown field "Skipped"; known fields are name, inner, list, by_name, untagged, shared`}},
		{"type error and unknown, by line", "zzz: 1\ninner: {port: [1]}\n", []string{
			`line 1: unknown field "zzz"; known fields are name, inner, list, by_name, untagged, shared`,
			"line 2: inner.port: want a whole number, got a list",
		}},
		{"alias", "base: &b {port: 1, bad: 2}\n", []string{`line 1: unknown field "base"; known fields are name, inner, list, by_name, untagged, shared`}},
		{"inline map takes any key", "name: a\nanything: {port: 1, bad: 2}\n", nil}, // decoded into withExtra below
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.name == "inline map takes any key" {
				var v withExtra
				err = Decode(node(t, tt.src), &v)
			} else {
				var v settings
				err = Decode(node(t, tt.src), &v)
			}
			var got []string
			if err != nil {
				var te *yaml.TypeError
				if !errors.As(err, &te) {
					t.Fatalf("error %v is not a *yaml.TypeError", err)
				}
				got = te.Errors
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("errors mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeMergeKey(t *testing.T) {
	src := "defaults: &d {port: 1, bogus: 2}\nval:\n  <<: *d\n"
	var doc struct {
		Defaults map[string]any `yaml:"defaults"`
		Val      inner          `yaml:"val"`
	}
	err := Decode(node(t, src), &doc)
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		t.Fatalf("Decode = %v, want a TypeError for the merged unknown key", err)
	}
	if diff := cmp.Diff([]string{`line 1: unknown field "bogus" in val; known fields are port`}, te.Errors); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestDecodeNil(t *testing.T) {
	var v settings
	if err := Decode(nil, &v); err != nil {
		t.Fatalf("Decode(nil) = %v", err)
	}
	if diff := cmp.Diff(settings{}, v, cmp.AllowUnexported(settings{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// A yaml.Node field takes any YAML as it is (a plugin's settings, which
// the plugin checks): wherever it sits, none of the keys under it is
// unknown. Before, the walk took yaml.Node's own Go fields for the
// schema: "unknown field "trust_root"; known fields are kind, style, tag,
// value, …" for identity.verifiers' example in docs/config.md.
func TestNodeFieldsAreOpaque(t *testing.T) {
	type holder struct {
		Node  yaml.Node            `yaml:"node"`
		Ptr   *yaml.Node           `yaml:"ptr"`
		ByKey map[string]yaml.Node `yaml:"by_key"`
		List  []yaml.Node          `yaml:"list"`
		Name  string               `yaml:"name"`
	}
	for _, src := range []string{
		"node: {trust_root: /x.pem, kind: 9}\n",
		"ptr: {trust_root: /x.pem}\n",
		"by_key:\n  plugin:\n    trust_root: /x.pem\n    deep: {a: 1}\n",
		"list:\n  - {trust_root: /x.pem}\n",
	} {
		var v holder
		if err := Decode(node(t, src), &v); err != nil {
			t.Errorf("Decode(%q) = %v, want nil", src, err)
		}
		if got := UnknownKeys(node(t, src), &v); len(got) != 0 {
			t.Errorf("UnknownKeys(%q) = %v, want none", src, got)
		}
	}
	// The fields beside them are still checked.
	var v holder
	got := UnknownKeys(node(t, "by_key: {p: {a: 1}}\nnmae: x\n"), &v)
	if len(got) != 1 || got[0].Msg != `unknown field "nmae"; known fields are node, ptr, by_key, list, name` {
		t.Errorf("UnknownKeys = %v, want one unknown field \"nmae\"", got)
	}
}

// TestYAML11BoolRefused is the class of scalars yaml.v3 decodes into a
// bool as YAML 1.1 did while YAML 1.2 readers (and yaml.v3's own
// resolver) read them as text: y, yes, on, n, no, off in any of their
// cases, quoted or not. Decode refuses each in a bool field, in a
// struct, through a pointer, below a list; true and false pass, and the
// same words stay text in a string field. Before, audit: {chain: off}
// and "yes" quoted were taken as booleans silently, where the policy
// refuses allow_private: no.
func TestYAML11BoolRefused(t *testing.T) {
	type inner struct {
		On  bool   `yaml:"on"`
		Ptr *bool  `yaml:"ptr"`
		S   string `yaml:"s"`
	}
	type outer struct {
		In   inner   `yaml:"in"`
		List []inner `yaml:"list"`
	}
	for _, c := range []struct {
		in   string
		want string // "" accepted
	}{
		{"in: {on: true}", ""},
		{"in: {on: false, ptr: true}", ""},
		{"in: {s: yes}", ""},
		{"in: {s: off}", ""},
		{"in: {on: yes}", "line 1: in.on: yes is a boolean to YAML 1.1 readers"},
		{"in: {on: No}", "line 1: in.on: No is a boolean"},
		{"in: {on: OFF}", "line 1: in.on: OFF is a boolean"},
		{"in: {on: y}", "line 1: in.on: y is a boolean"},
		{"in: {on: \"yes\"}", "line 1: in.on: yes is a boolean"},
		{"in: {on: 'on'}", "line 1: in.on: on is a boolean"},
		{"in: {ptr: n}", "line 1: in.ptr: n is a boolean"},
		{"list:\n  - {on: true}\n  - {on: off}", "line 3: list[1].on: off is a boolean"},
		{"a: &a yes\nin: {on: *a}", "line 1: in.on: yes is a boolean"},
	} {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(c.in), &n); err != nil {
			t.Fatal(err)
		}
		var v outer
		err := Decode(&n, &v)
		if c.in == "a: &a yes\nin: {on: *a}" {
			// The unknown key "a" is reported too; the alias is judged
			// by what it stands for.
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%q: %v, want %q", c.in, err, c.want)
			}
			continue
		}
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: refused: %v", c.in, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: %v, want %q", c.in, err, c.want)
		}
	}
}
