package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
)

// TestSPIFFEIDFromURISANOnly: an X.509-SVID's SPIFFE ID is its one URI
// SAN, parsed as go-spiffe parses it; every other spelling of one (a
// trailing slash, dot or empty segments, percent-encoding, a port,
// userinfo, a query or fragment, an upper-case trust domain, a second
// URI SAN) is refused, not read as a nearby ID, and a SPIFFE ID only in
// the CN or a DNS SAN is no SPIFFE ID at all: the certificate is
// identified by its subject DN, which no spiffe selector reads. Only the
// scheme's case is not significant (URLs lower-case it). All passed when
// written: a guard for the probes of an outside review.
func TestSPIFFEIDFromURISANOnly(t *testing.T) {
	v, tdCA, anyCA := twoBundleVerifier(t)
	spec := Spec{Name: "admin", SPIFFE: []SPIFFEPattern{MustParseSPIFFEPattern("spiffe://prod.example.org/*")}}
	const refused = ""
	tests := []struct {
		name   string
		cn     string
		dns    []string
		uris   []string
		wantID string // the spiffe_id; refused: ErrInvalid
	}{
		{name: "the URI SAN", uris: []string{"spiffe://prod.example.org/ns/a"}, wantID: "spiffe://prod.example.org/ns/a"},
		{name: "upper-case scheme", uris: []string{"SPIFFE://prod.example.org/ns/a"}, wantID: "spiffe://prod.example.org/ns/a"},
		{name: "upper-case trust domain", uris: []string{"spiffe://PROD.example.org/ns/a"}},
		{name: "trailing slash", uris: []string{"spiffe://prod.example.org/ns/a/"}},
		{name: "dot-dot segment", uris: []string{"spiffe://prod.example.org/ns/a/../admin"}},
		{name: "dot segment", uris: []string{"spiffe://prod.example.org/./admin"}},
		{name: "empty segment", uris: []string{"spiffe://prod.example.org//admin"}},
		{name: "percent-encoded slash", uris: []string{"spiffe://prod.example.org/ns%2Fadmin"}},
		{name: "port", uris: []string{"spiffe://prod.example.org:443/ns/a"}},
		{name: "userinfo", uris: []string{"spiffe://admin@prod.example.org/ns/a"}},
		{name: "query", uris: []string{"spiffe://prod.example.org/ns/a?admin"}},
		{name: "fragment", uris: []string{"spiffe://prod.example.org/ns/a#admin"}},
		{name: "no authority", uris: []string{"spiffe:prod.example.org/ns/a"}},
		{name: "two URI SANs", uris: []string{"https://prod.example.org/x", "spiffe://prod.example.org/ns/a"}},
		{name: "SPIFFE ID only in the CN", cn: "spiffe://prod.example.org/ns/admin", wantID: "-"},
		{name: "SPIFFE-like DNS SAN", cn: "x", dns: []string{"prod.example.org"}, wantID: "-"},
	}
	for _, tt := range tests {
		for _, ca := range []*testCA{tdCA, anyCA} {
			t.Run(tt.name+"/"+ca.cert.Subject.CommonName, func(t *testing.T) {
				c := ca.issue(t, leafOpts{cn: tt.cn, dns: tt.dns, uris: tt.uris})
				f, err := v.Verify(context.Background(), Evidence{PeerCertificates: []*x509.Certificate{c}})
				switch {
				case tt.wantID == refused:
					if !errors.Is(err, ErrInvalid) {
						t.Fatalf("factor %+v, error %v; want ErrInvalid", f, err)
					}
				case tt.wantID == "-":
					// Not an SVID: only the generic CA verifies it, as a
					// subject, which no spiffe selector reads.
					if ca == tdCA {
						if !errors.Is(err, ErrInvalid) {
							t.Fatalf("a trust domain's CA verified a certificate without SPIFFE ID: %+v", f)
						}
						return
					}
					if err != nil || f == nil {
						t.Fatalf("refused: %v", err)
					}
					if _, has := f.Attributes[AttrSPIFFEID]; has || spec.Matches(Workload{Factors: []Factor{*f}}) {
						t.Fatalf("factor %+v has a SPIFFE ID", f)
					}
				case ca == anyCA:
					// A trust domain with its own bundle is verified by
					// that bundle only.
					if !errors.Is(err, ErrInvalid) {
						t.Fatalf("the generic CA vouched for an ID of a trust domain with its own bundle: %+v", f)
					}
				default:
					if err != nil || f == nil || f.Attributes[AttrSPIFFEID] != tt.wantID {
						t.Fatalf("factor %+v, error %v; want spiffe_id %s", f, err, tt.wantID)
					}
				}
			})
		}
	}
}
