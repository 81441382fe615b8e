package providers

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

// fakeProvider records its lifecycle calls.
type fakeProvider struct {
	Value        string `yaml:"value"`
	FailValidate bool   `yaml:"fail_validate"`
	FailProvide  bool   `yaml:"fail_provision"`

	calls []string
}

func (p *fakeProvider) Fetch(context.Context, Request) (*Credential, error) {
	return &Credential{Fields: map[string]Secret{FieldToken: NewSecret(p.Value)}}, nil
}

func (p *fakeProvider) Provision(ctx context.Context) error {
	p.calls = append(p.calls, "provision")
	if p.FailProvide {
		return errors.New("fake: provision failed")
	}
	return nil
}

func (p *fakeProvider) Validate() error {
	p.calls = append(p.calls, "validate")
	if p.FailValidate {
		return errors.New("fake: bad settings")
	}
	return nil
}

func (p *fakeProvider) Cleanup() error {
	p.calls = append(p.calls, "cleanup")
	return nil
}

func yamlNode(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Content[0]
}

func TestRegisterPanics(t *testing.T) {
	newFake := func() Provider { return &fakeProvider{} }
	tests := []struct {
		name string
		mods []Module
		want string // substring of the panic; "" = no panic
	}{
		{"ok", []Module{{Name: "a", New: newFake}, {Name: "b", New: newFake}}, ""},
		{"empty name", []Module{{Name: "", New: newFake}}, "empty name"},
		{"nil New", []Module{{Name: "a", New: nil}}, "without a New function"},
		{"duplicate", []Module{{Name: "a", New: newFake}, {Name: "a", New: newFake}}, `"a" registered twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRegistry()
			var got string
			func() {
				defer func() {
					if p := recover(); p != nil {
						got = p.(string)
					}
				}()
				for _, m := range tt.mods {
					r.Register(m)
				}
			}()
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("panic = %q, want one containing %q", got, tt.want)
			}
		})
	}
}

func TestRegistryNamesLookup(t *testing.T) {
	r := NewRegistry()
	for _, n := range []string{"zeta", "alpha", "mid"} {
		r.Register(Module{Name: n, New: func() Provider { return &fakeProvider{} }})
	}
	if diff := cmp.Diff([]string{"alpha", "mid", "zeta"}, r.Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	if m, ok := r.Lookup("mid"); !ok || m.Name != "mid" || m.New == nil {
		t.Errorf("Lookup(mid) = %+v, %v", m, ok)
	}
	if _, ok := r.Lookup("nope"); ok {
		t.Error("Lookup(nope) found a module")
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name      string
		settings  string // "" = nil node
		wantErr   string
		wantLine  bool // the error is a *yaml.TypeError
		wantCalls []string
	}{
		{"ok", "value: x", "", false, []string{"provision", "validate"}},
		{"nil settings", "", "", false, []string{"provision", "validate"}},
		{"unknown field", "value: x\nvalu: y", `line 2: unknown field "valu"; known fields are value, fail_validate, fail_provision`, true, nil},
		{"wrong type", "value: [x]", "line 1: value: want a string, got a list", true, nil},
		{"validate fails", "fail_validate: true", "fake: bad settings", false, []string{"provision", "validate", "cleanup"}},
		{"provision fails", "fail_provision: true", "fake: provision failed", false, []string{"provision", "cleanup"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var built *fakeProvider
			r := NewRegistry()
			r.Register(Module{Name: "fake", New: func() Provider { built = &fakeProvider{}; return built }})
			var n *yaml.Node
			if tt.settings != "" {
				n = yamlNode(t, tt.settings)
			}
			p, err := r.Load(context.Background(), "fake", n)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
				if p != nil {
					t.Errorf("Load returned a provider with error %v", err)
				}
			}
			if !strings.Contains(gotErr, tt.wantErr) || (tt.wantErr == "") != (gotErr == "") {
				t.Errorf("Load error = %q, want %q", gotErr, tt.wantErr)
			}
			var te *yaml.TypeError
			if got := errors.As(err, &te); got != tt.wantLine {
				t.Errorf("error is *yaml.TypeError = %v, want %v", got, tt.wantLine)
			}
			if diff := cmp.Diff(tt.wantCalls, built.calls); diff != "" {
				t.Errorf("lifecycle calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadUnknownName(t *testing.T) {
	r := NewRegistry()
	if _, err := r.Load(context.Background(), "nope", nil); err == nil || !strings.Contains(err.Error(), `unknown provider "nope"`) {
		t.Errorf("Load(nope) error = %v", err)
	}
}
