package module

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type inner struct {
	Region string `yaml:"region"`
}

type sample struct {
	inner   `yaml:",inline"`
	Name    string            `yaml:"name,omitempty"`
	Every   time.Duration     `yaml:"every"`
	Hosts   []string          `yaml:"hosts"`
	Labels  map[string]string `yaml:"labels"`
	Limit   *int              `yaml:"limit"`
	Nested  struct{ A int }   `yaml:"nested"`
	Skipped string            `yaml:"-"`
	Plain   bool
	state   string // unexported: not a setting
}

func TestSettings(t *testing.T) {
	_ = sample{state: "runtime"}
	got := Settings(&sample{}, map[string]string{"name": "what it is called"})
	want := []Setting{
		{Name: "region", Type: "string"},
		{Name: "name", Type: "string", Doc: "what it is called"},
		{Name: "every", Type: "duration"},
		{Name: "hosts", Type: "list of string"},
		{Name: "labels", Type: "map of string"},
		{Name: "limit", Type: "int"},
		{Name: "nested", Type: "object"},
		{Name: "plain", Type: "bool"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Settings (-want +got):\n%s", diff)
	}
	if got := Settings(nil, nil); got != nil {
		t.Errorf("Settings(nil) = %v, want nil", got)
	}
}
