package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
)

func TestResolveFactors(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	ca := newCA(t, "prod")
	mv, err := newMTLSVerifier(context.Background(), Config{MTLS: MTLSConfig{Bundles: []TrustBundle{{File: writeFile(t, dir, "b.pem", ca.pem()), TrustDomain: "prod.example.org"}}}}.WithDefaults().MTLS, testOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mv.Close() })
	k8sKey, svidKey, idpKey := newRSAKey(t, "k8s"), newECKey(t, "spire"), newECKey(t, "idp")
	const (
		k8sIss = "https://k8s.example"
		idpIss = "https://idp.example"
	)
	jv := newTestJWT(t, clock, JWTConfig{Issuers: []IssuerConfig{
		{Issuer: k8sIss, Profile: ProfileKubernetes, Audiences: []string{"credgate"}, JWKSFile: writeFile(t, dir, "k.json", jwks(t, k8sKey))},
		{Profile: ProfileSPIFFE, TrustDomain: "prod.example.org", Audiences: []string{"credgate"}, JWKSFile: writeFile(t, dir, "s.json", jwks(t, svidKey))},
		{Issuer: idpIss, Audiences: []string{"credgate"}, JWKSFile: writeFile(t, dir, "i.json", jwks(t, idpKey)), Claims: map[string]string{"repo": "repository", "env": "environment"}},
	}})
	r := NewResolver(mv, jv)
	specs := []Spec{
		{Name: "office", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
		{Name: "billing-api", SPIFFE: []SPIFFEPattern{MustParseSPIFFEPattern("spiffe://prod.example.org/ns/billing/*")}, Namespaces: []string{"billing"}, Require: []string{KindMTLS, KindJWT}},
		{Name: "web", Namespaces: []string{"web"}, ServiceAccounts: []string{"frontend"}, Require: []string{KindJWT}},
		{Name: "web-svid", SPIFFE: []SPIFFEPattern{MustParseSPIFFEPattern("spiffe://prod.example.org/ns/web/*")}},
		{Name: "bound", SPIFFE: []SPIFFEPattern{MustParseSPIFFEPattern("spiffe://prod.example.org/ns/bound/sa/x")}, BindTokenToCert: true},
		{Name: "gh-deploy", Claims: map[string]string{"repository": "example/app", "environment": "prod"}},
	}

	billingCert := ca.issue(t, leafOpts{uris: []string{"spiffe://prod.example.org/ns/billing/sa/api"}})
	boundCert := ca.issue(t, leafOpts{uris: []string{"spiffe://prod.example.org/ns/bound/sa/x"}})
	k8s := func(ns, sa string) string {
		return k8sKey.sign(t, std(k8sIss, "system:serviceaccount:"+ns+":"+sa, "credgate"), k8sClaims(ns, sa, "p"))
	}
	cnf := func(c *x509.Certificate) map[string]any {
		return map[string]any{"cnf": map[string]string{"x5t#S256": thumbprint(c)}}
	}
	expiredStd := std(k8sIss, "system:serviceaccount:billing:api", "credgate")
	expiredStd.Expiry = jwt.NewNumericDate(t0.Add(-time.Hour))
	office := netip.MustParseAddrPort("10.1.2.3:4444")
	elsewhere := netip.MustParseAddrPort("192.0.2.7:4444")

	tests := []struct {
		name        string
		ev          Evidence
		wantName    string
		wantFactors []string
		wantErr     error
		inMsg       string
	}{
		{name: "certificate and token agree", ev: Evidence{Source: elsewhere, PeerCertificates: []*x509.Certificate{billingCert}, ProxyAuthorization: "Bearer " + k8s("billing", "api")},
			wantName: "billing-api", wantFactors: []string{"source", "mtls", "jwt"}},
		{name: "certificate of one workload, token of another", ev: Evidence{Source: elsewhere, PeerCertificates: []*x509.Certificate{billingCert}, ProxyAuthorization: "Bearer " + k8s("web", "frontend")},
			wantErr: ErrFactorConflict, inMsg: `mtls (spiffe://prod.example.org/ns/billing/sa/api) selects workload "billing-api", jwt (system:serviceaccount:web:frontend) selects workload "web"`},
		{name: "X.509-SVID and JWT-SVID of different workloads", ev: Evidence{Source: elsewhere, PeerCertificates: []*x509.Certificate{billingCert},
			ProxyAuthorization: "Bearer " + svidKey.sign(t, std("", "spiffe://prod.example.org/ns/web/sa/x", "credgate"))}, wantErr: ErrFactorConflict},
		{name: "a token of a namespace no workload selects does not satisfy billing-api", ev: Evidence{Source: elsewhere, PeerCertificates: []*x509.Certificate{billingCert}, ProxyAuthorization: "Bearer " + k8s("batch", "api")},
			wantName: "", wantFactors: []string{"source", "mtls", "jwt"}},
		{name: "a certificate selecting a workload it does not satisfy is not demoted to a network workload", ev: Evidence{Source: office, PeerCertificates: []*x509.Certificate{billingCert}},
			wantName: "", wantFactors: []string{"source", "mtls"}},
		{name: "token only", ev: Evidence{Source: office, ProxyAuthorization: "Bearer " + k8s("web", "frontend")}, wantName: "web", wantFactors: []string{"source", "jwt"}},
		{name: "source only", ev: Evidence{Source: office}, wantName: "office", wantFactors: []string{"source"}},
		{name: "claims", ev: Evidence{Source: elsewhere, ProxyAuthorization: "Bearer " + idpKey.sign(t, std(idpIss, "ci", "credgate"), map[string]any{"repo": "example/app", "env": "prod"})},
			wantName: "gh-deploy", wantFactors: []string{"source", "jwt"}},
		{name: "claims with one value wrong", ev: Evidence{Source: elsewhere, ProxyAuthorization: "Bearer " + idpKey.sign(t, std(idpIss, "ci", "credgate"), map[string]any{"repo": "example/app", "env": "dev"})},
			wantName: "", wantFactors: []string{"source", "jwt"}},
		{name: "token bound to the presented certificate", ev: Evidence{Source: elsewhere, PeerCertificates: []*x509.Certificate{boundCert}, ProxyAuthorization: "Bearer " + idpKey.sign(t, std(idpIss, "x", "credgate"), cnf(boundCert))},
			wantName: "bound", wantFactors: []string{"source", "mtls", "jwt"}},
		{name: "bind_token_to_cert without a bound token", ev: Evidence{Source: elsewhere, PeerCertificates: []*x509.Certificate{boundCert}, ProxyAuthorization: "Bearer " + idpKey.sign(t, std(idpIss, "x", "credgate"))},
			wantName: "", wantFactors: []string{"source", "mtls", "jwt"}},
		{name: "token bound to another certificate", ev: Evidence{Source: elsewhere, PeerCertificates: []*x509.Certificate{boundCert}, ProxyAuthorization: "Bearer " + idpKey.sign(t, std(idpIss, "x", "credgate"), cnf(billingCert))},
			wantErr: ErrInvalid, inMsg: "cnf.x5t#S256 mismatch"},
		{name: "bound token without its certificate", ev: Evidence{Source: elsewhere, ProxyAuthorization: "Bearer " + idpKey.sign(t, std(idpIss, "x", "credgate"), cnf(boundCert))},
			wantErr: ErrInvalid, inMsg: "presented none"},
		{name: "token of an issuer nobody configured", ev: Evidence{Source: office, ProxyAuthorization: "Bearer " + idpKey.sign(t, std("https://evil.example", "x", "credgate"))},
			wantErr: ErrInvalid, inMsg: "no configured issuer accepts"},
		{name: "garbage in Proxy-Authorization", ev: Evidence{Source: office, ProxyAuthorization: "Bearer not-a-jwt"}, wantErr: ErrInvalid},
		{name: "an invalid token fails although the certificate verifies", ev: Evidence{Source: elsewhere, PeerCertificates: []*x509.Certificate{billingCert},
			ProxyAuthorization: "Bearer " + k8sKey.sign(t, expiredStd, k8sClaims("billing", "api", "p"))}, wantErr: ErrInvalid, inMsg: "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := r.Resolve(context.Background(), tt.ev, specs)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.inMsg) {
					t.Fatalf("Resolve error = %v, want %v saying %q", err, tt.wantErr, tt.inMsg)
				}
				if tok, ok := strings.CutPrefix(tt.ev.ProxyAuthorization, "Bearer "); ok {
					assertNoSecret(t, err.Error(), tok)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if w.Name != tt.wantName {
				t.Errorf("Name = %q, want %q", w.Name, tt.wantName)
			}
			if diff := cmp.Diff(tt.wantFactors, w.FactorKinds()); diff != "" {
				t.Errorf("factors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSPIFFEPattern(t *testing.T) {
	tests := []struct {
		pattern string
		match   []string
		nomatch []string
		wantErr string
	}{
		{pattern: "spiffe://example.org/ns/billing/sa/api",
			match:   []string{"spiffe://example.org/ns/billing/sa/api"},
			nomatch: []string{"spiffe://example.org/ns/billing/sa/api/x", "spiffe://example.org/ns/billing/sa/ap", "spiffe://other.org/ns/billing/sa/api"}},
		{pattern: "spiffe://example.org/ns/billing/*",
			match:   []string{"spiffe://example.org/ns/billing/sa/api", "spiffe://example.org/ns/billing/x"},
			nomatch: []string{"spiffe://example.org/ns/billing", "spiffe://example.org/ns/billing-2/x", "spiffe://example.org/ns/billingx"}},
		{pattern: "spiffe://example.org/*",
			match:   []string{"spiffe://example.org/a", "spiffe://example.org/a/b"},
			nomatch: []string{"spiffe://example.org", "spiffe://example.org.evil/a"}},
		{pattern: "spiffe://example.org", wantErr: "names a trust domain"},
		{pattern: "spiffe://example.org/ns/*/sa/api", wantErr: "only allowed as the whole last segment"},
		{pattern: "spiffe://example.org/ns/b*", wantErr: "only allowed as the whole last segment"},
		{pattern: "https://example.org/x", wantErr: "scheme is missing or invalid"},
		{pattern: "spiffe://Example.org/x", wantErr: "trust domain characters"},
	}
	for _, tt := range tests {
		p, err := ParseSPIFFEPattern(tt.pattern)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseSPIFFEPattern(%q) error = %v, want %q", tt.pattern, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSPIFFEPattern(%q): %v", tt.pattern, err)
			continue
		}
		if p.String() != tt.pattern {
			t.Errorf("String() = %q, want %q", p.String(), tt.pattern)
		}
		for _, id := range tt.match {
			if !p.Match(id) {
				t.Errorf("%q does not match %q", tt.pattern, id)
			}
		}
		for _, id := range tt.nomatch {
			if p.Match(id) {
				t.Errorf("%q matches %q", tt.pattern, id)
			}
		}
	}
	if (SPIFFEPattern{}).Match("spiffe://example.org/a") {
		t.Error("the zero pattern matches")
	}
}
