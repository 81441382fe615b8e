package module

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// secretValue is what the panicking plugins put in their panic values.
const secretValue = "sk_live_PANIC_VALUE_0123456789"

// panicker panics in the method named by In, with a value holding
// secretValue of the kind Value names; Cleanup counts its calls.
type panicker struct {
	In, Value string
	cleanups  *int
	A         string `yaml:"a"`
}

func (p *panicker) maybe(method string) {
	if p.In != method {
		return
	}
	switch p.Value {
	case "string":
		panic("bad key " + secretValue)
	case "error":
		panic(fmt.Errorf("key %q: %w", secretValue, errors.New("refused")))
	case "struct":
		panic(struct{ Key string }{secretValue})
	case "runtime":
		var s []string
		_ = s[len(secretValue)]
	}
}

func (p *panicker) UnmarshalYAML(n *yaml.Node) error {
	p.maybe("decode")
	type plain panicker
	return n.Decode((*plain)(p))
}

func (p *panicker) Provision(context.Context) error { p.maybe("Provision"); return nil }

func (p *panicker) Validate() error {
	p.maybe("Validate")
	if p.In == "Cleanup" {
		return errors.New("invalid, so Cleanup runs")
	}
	return nil
}

func (p *panicker) Cleanup() error { *p.cleanups++; p.maybe("Cleanup"); return nil }

// plainProvisioner has Provision() without a context.
type plainProvisioner struct {
	p *panicker
	A string `yaml:"a"`
}

func (pp *plainProvisioner) Provision() error { pp.p.maybe("Provision"); return nil }

// TestLoadContainsPanics checks the class "a plugin that panics in any
// method of its lifecycle fails its load with an error, never the
// process": New, decoding its settings (an UnmarshalYAML), Provision
// (both forms), Validate, and the Cleanup after a failed load, each with
// a panic value that holds a secret (a string, an error, a struct) or a Go
// runtime error. The error wraps ErrPanicked, names the plugin and the
// method, never the value (a runtime error's message excepted), and a
// plugin that panicked in Provision or Validate is still cleaned up.
// Before, each of these panics went up through Load: on a policy reload
// it ended the gateway, its value printed on standard error (20 of 20
// cases panicked).
func TestLoadContainsPanics(t *testing.T) {
	for _, in := range []string{"New", "decode", "Provision", "Provision()", "Validate", "Cleanup"} {
		for _, value := range []string{"string", "error", "struct", "runtime"} {
			if in == "decode" && value == "runtime" || in == "Provision()" && value != "string" {
				continue // the same path as the other values
			}
			t.Run(in+"/"+value, func(t *testing.T) {
				cleanups := 0
				p := &panicker{In: strings.TrimSuffix(in, "()"), Value: value, cleanups: &cleanups}
				r := New[any]("provider")
				r.Register("panicky", func() any {
					p.maybe("New")
					if in == "Provision()" {
						return &plainProvisioner{p: p}
					}
					return p
				})
				var node yaml.Node
				if err := yaml.Unmarshal([]byte("a: b\n"), &node); err != nil {
					t.Fatal(err)
				}
				var err error
				func() {
					defer func() {
						if v := recover(); v != nil {
							t.Fatalf("Load panicked (%T)", v)
						}
					}()
					_, err = r.Load(t.Context(), "panicky", node.Content[0])
				}()
				if !errors.Is(err, ErrPanicked) {
					t.Fatalf("Load: %v, want an error wrapping ErrPanicked", err)
				}
				method := map[string]string{"decode": "decoding its settings", "Cleanup": "Cleanup after a failed load", "Provision()": "Provision"}[in]
				if method == "" {
					method = in
				}
				if want := `provider "panicky": ` + method + ": the plugin panicked"; !strings.Contains(err.Error(), want) {
					t.Errorf("Load: %v, want it to say %q", err, want)
				}
				if strings.Contains(err.Error(), secretValue) {
					t.Errorf("Load's error holds the panic value: %v", err)
				}
				if value == "runtime" && !strings.Contains(err.Error(), "index out of range") {
					t.Errorf("Load's error lacks the runtime error's message: %v", err)
				}
				// yaml.v3 recovers and panics again: the frame is its own.
				if in != "decode" && !strings.Contains(err.Error(), "(*panicker).maybe") {
					t.Errorf("Load's error does not say where the panic happened: %v", err)
				}
				if wantCleanups := map[string]int{"Provision": 1, "Validate": 1, "Cleanup": 1}[in]; cleanups != wantCleanups {
					t.Errorf("Cleanup ran %d times, want %d", cleanups, wantCleanups)
				}
			})
		}
	}
}

// TestGuard: an error passes through unchanged, nil stays nil.
func TestGuard(t *testing.T) {
	want := errors.New("plain")
	if err := Guard("x", func() error { return want }); err != want {
		t.Errorf("Guard = %v, want %v", err, want)
	}
	if err := Guard("x", func() error { return nil }); err != nil {
		t.Errorf("Guard = %v, want nil", err)
	}
}

// ifaceSettings has a setting of a non-empty interface type, which
// yaml.v3 cannot decode into: it panics rather than returning an error.
type ifaceSettings struct {
	Hook interface{ Run() } `yaml:"hook"`
}

// TestLoadInterfaceSetting: a policy that sets a plugin's setting of an
// interface type fails its load with an error (yaml.v3 panics decoding
// it, with a message naming the type). Before, a policy writer's value
// for such a setting ended the process, on a reload too.
func TestLoadInterfaceSetting(t *testing.T) {
	r := New[*ifaceSettings]("provider")
	r.Register("hooked", func() *ifaceSettings { return new(ifaceSettings) })
	var node yaml.Node
	if err := yaml.Unmarshal([]byte("hook: 1\n"), &node); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Load(t.Context(), "hooked", node.Content[0]); !errors.Is(err, ErrPanicked) || !strings.Contains(err.Error(), "decoding its settings") {
		t.Errorf("Load: %v, want an error wrapping ErrPanicked while decoding", err)
	}
}
