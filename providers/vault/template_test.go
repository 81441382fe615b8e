package vault

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/identity"
)

func TestTemplate(t *testing.T) {
	w := identity.Workload{Name: "billing-api", Factors: []identity.Factor{
		{Kind: "source", Attributes: map[string]string{}},
		{Kind: "jwt", Attributes: map[string]string{"namespace": "billing", "service_account": "api"}},
		{Kind: "kubernetes", Attributes: map[string]string{"namespace": "billing"}},
	}}
	tests := []struct {
		src, want, wantErr string
	}{
		{"secret/data/stripe", "secret/data/stripe", ""},
		{"database/creds/{{.workload.name}}-ro", "database/creds/billing-api-ro", ""},
		{"database/creds/{{ .workload.namespace }}-{{.workload.service_account}}", "database/creds/billing-api", ""},
		{"kv/data/{{.workload.pod}}", "", "no verified factor of workload billing-api carries it"},
		{"kv/data/{{.workload.name}", "", "only {{.workload.NAME}} placeholders"},
		{"kv/data/{{.Workload.name}}", "", "only {{.workload.NAME}} placeholders"},
		{"kv/data/{{printf \"x\"}}", "", "only {{.workload.NAME}} placeholders"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			tmpl, err := parseTemplate("path", tt.src)
			var got string
			if err == nil {
				got, err = tmpl.render(w)
			}
			if tt.wantErr != "" {
				if !strings.Contains(errString(err), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("render (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckValue(t *testing.T) {
	for _, v := range []string{"billing", "billing-api", "v1.2_x", "A-Z"} {
		if err := checkValue(v); err != nil {
			t.Errorf("checkValue(%q) = %v, want nil", v, err)
		}
	}
	for _, v := range []string{"", ".", "..", "a..b", "a/b", "/", "a\\b", "a b", "a%2fb", "ä", "a\x00", "a?b", "a#b", "{{x}}"} {
		if err := checkValue(v); !errors.Is(err, ErrTemplateValue) {
			t.Errorf("checkValue(%q) = %v, want ErrTemplateValue", v, err)
		}
	}
}
