package identity

import (
	"errors"
	"strings"
	"testing"
)

func TestTemplate(t *testing.T) {
	w := Workload{Name: "billing", Factors: []Factor{
		{Kind: KindJWT, Attributes: map[string]string{"namespace": "pay"}},
		{Kind: KindKubernetes, Attributes: map[string]string{"namespace": "pay"}},
	}}
	conflict := Workload{Name: "x", Factors: []Factor{
		{Kind: KindJWT, Attributes: map[string]string{"namespace": "a"}},
		{Kind: KindKubernetes, Attributes: map[string]string{"namespace": "b"}},
	}}
	noDots := func(v string) error {
		if strings.Contains(v, "..") {
			return errors.New("dots")
		}
		return nil
	}
	tests := []struct {
		src     string
		w       Workload
		want    string
		wantErr string
	}{
		{src: "db/creds/{{.workload.name}}-{{ .workload.namespace }}", w: w, want: "db/creds/billing-pay"},
		{src: "plain/path", w: Workload{}, want: "plain/path"},
		{src: "{{.workload.name}}", w: Workload{}, wantErr: "matched no workload"},
		{src: "{{.workload.team}}", w: w, wantErr: "no verified factor"},
		{src: "{{.workload.namespace}}", w: conflict, wantErr: "disagree"},
		{src: "{{.workload.name}}", w: Workload{Name: "a..b"}, wantErr: "dots"},
	}
	for _, tt := range tests {
		tmpl, err := ParseTemplate(tt.src)
		if err != nil {
			t.Fatalf("ParseTemplate(%q): %v", tt.src, err)
		}
		got, err := tmpl.Render(tt.w, noDots)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%q: err %v, want %q", tt.src, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("%q: %q, %v; want %q", tt.src, got, err, tt.want)
		}
	}
	for _, bad := range []string{"{{.workload.name | printf}}", "{{index .}}", "a}}b", "{{ .Env.HOME }}"} {
		if _, err := ParseTemplate(bad); err == nil {
			t.Errorf("ParseTemplate(%q) accepted", bad)
		}
	}
	if _, err := conflict.Attribute("namespace"); !errors.Is(err, ErrNoAttribute) {
		t.Errorf("Attribute error %v, want ErrNoAttribute", err)
	}
}
