package identity

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestFactorSPIFFEIDCanonical: a spiffe selector compares a factor's
// spiffe_id as text, a prefix pattern by whole segments, which is sound
// only for an ID written as go-spiffe writes it. A verifier plugin's
// factor whose spiffe_id was not (dot segments, empty segments, a
// trailing slash, percent-encoding, a '*', a query) matched
// spiffe://td/ns/billing/* while naming another workload, or none, to
// anything that resolves it; so did one whose trust_domain or path
// attribute was another ID's. Such a factor is now refused (ErrInvalid,
// naming the attribute), as are other spellings (upper case, a port):
// 10 of the 13 refused cases identified the caller as billing before.
func TestFactorSPIFFEIDCanonical(t *testing.T) {
	specs := []Spec{{Name: "billing", SPIFFE: []SPIFFEPattern{MustParseSPIFFEPattern("spiffe://td.example/ns/billing/*")}}}
	const ok = "billing"
	tests := []struct {
		name  string
		attrs map[string]string
		want  string // the workload, or a piece of the refusal
	}{
		{"canonical", map[string]string{"spiffe_id": "spiffe://td.example/ns/billing/api"}, ok},
		{"canonical with its trust_domain and path", map[string]string{"spiffe_id": "spiffe://td.example/ns/billing/api", "trust_domain": "td.example", "path": "/ns/billing/api"}, ok},
		{"a trust domain's ID matches no workload", map[string]string{"spiffe_id": "spiffe://td.example"}, ""},
		{"trust_domain and path without spiffe_id", map[string]string{"trust_domain": "other", "path": "/x"}, ""},

		{"dot-dot segments", map[string]string{"spiffe_id": "spiffe://td.example/ns/billing/../../admin"}, "not a SPIFFE ID"},
		{"dot segment", map[string]string{"spiffe_id": "spiffe://td.example/ns/billing/./api"}, "not a SPIFFE ID"},
		{"empty segment", map[string]string{"spiffe_id": "spiffe://td.example/ns/billing//api"}, "not a SPIFFE ID"},
		{"trailing slash", map[string]string{"spiffe_id": "spiffe://td.example/ns/billing/api/"}, "not a SPIFFE ID"},
		{"percent-encoded dots", map[string]string{"spiffe_id": "spiffe://td.example/ns/billing/%2e%2e/admin"}, "not a SPIFFE ID"},
		{"percent-encoded slash", map[string]string{"spiffe_id": "spiffe://td.example/ns/billing/a%2Fb"}, "not a SPIFFE ID"},
		{"a star", map[string]string{"spiffe_id": "spiffe://td.example/ns/billing/*"}, "not a SPIFFE ID"},
		{"query", map[string]string{"spiffe_id": "spiffe://td.example/ns/billing/api?x=1"}, "not a SPIFFE ID"},
		{"upper-case scheme", map[string]string{"spiffe_id": "SPIFFE://td.example/ns/billing/api"}, "not a SPIFFE ID"},
		{"upper-case trust domain", map[string]string{"spiffe_id": "spiffe://TD.example/ns/billing/api"}, "not a SPIFFE ID"},
		{"port", map[string]string{"spiffe_id": "spiffe://td.example:443/ns/billing/api"}, "not a SPIFFE ID"},
		{"another trust_domain beside it", map[string]string{"spiffe_id": "spiffe://td.example/ns/billing/api", "trust_domain": "prod.example"}, "not the trust domain"},
		{"another path beside it", map[string]string{"spiffe_id": "spiffe://td.example/ns/billing/api", "path": "/ns/admin"}, "not the path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := NewResolver(attrVerifier{kind: "plugin", attrs: tt.attrs}).Resolve(context.Background(), Evidence{}, specs)
			if tt.want == ok || tt.want == "" {
				if err != nil || w.Name != tt.want {
					t.Fatalf("workload %q, error %v; want %q", w.Name, err, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) || w.Name != "" {
				t.Fatalf("workload %q, error %v; want ErrInvalid saying %q", w.Name, err, tt.want)
			}
		})
	}
}
