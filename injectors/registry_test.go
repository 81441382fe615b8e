package injectors

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/providers"
)

type lifecycleInjector struct {
	Fail  string `yaml:"fail"`
	calls []string
}

func (l *lifecycleInjector) Inject(*http.Request, *providers.Credential) error { return nil }
func (l *lifecycleInjector) Provision() error {
	l.calls = append(l.calls, "provision")
	if l.Fail == "provision" {
		return errors.New("provision failed")
	}
	return nil
}
func (l *lifecycleInjector) Validate() error {
	l.calls = append(l.calls, "validate")
	if l.Fail == "validate" {
		return errors.New("validate failed")
	}
	return nil
}
func (l *lifecycleInjector) Cleanup() error { l.calls = append(l.calls, "cleanup"); return nil }

func TestRegistry(t *testing.T) {
	newInj := func() Injector { return &lifecycleInjector{} }
	panics := func(f func()) (msg string) {
		defer func() {
			if p := recover(); p != nil {
				msg = p.(string)
			}
		}()
		f()
		return ""
	}
	r := NewRegistry()
	if got := panics(func() { r.Register(Module{Name: "", New: newInj}) }); !strings.Contains(got, "empty name") {
		t.Errorf("empty name panic = %q", got)
	}
	r.Register(Module{Name: "b", New: newInj})
	r.Register(Module{Name: "a", New: newInj})
	if got := panics(func() { r.Register(Module{Name: "a", New: newInj}) }); !strings.Contains(got, `injector module "a" registered twice`) {
		t.Errorf("duplicate panic = %q", got)
	}
	if diff := cmp.Diff([]string{"a", "b"}, r.Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
}

func TestLoadLifecycle(t *testing.T) {
	tests := []struct {
		fail      string
		wantErr   string
		wantCalls []string
	}{
		{"", "", []string{"provision", "validate"}},
		{"provision", "provision failed", []string{"provision", "cleanup"}},
		{"validate", "validate failed", []string{"provision", "validate", "cleanup"}},
	}
	for _, tt := range tests {
		t.Run(tt.fail, func(t *testing.T) {
			var built *lifecycleInjector
			r := NewRegistry()
			r.Register(Module{Name: "x", New: func() Injector { built = &lifecycleInjector{}; return built }})
			n := yamlNodeFor(t, "fail: "+tt.fail)
			_, err := r.Load(context.Background(), "x", n)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.wantErr {
				t.Errorf("Load error = %q, want %q", got, tt.wantErr)
			}
			if diff := cmp.Diff(tt.wantCalls, built.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}
