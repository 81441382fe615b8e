package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

// TestIdentifyIsResolveUnderOtherSpecs is a differential test of
// Identify against Resolve: for evidence presenting each kind of factor
// (source, an X.509-SVID, Kubernetes, JWT-SVID and OIDC tokens with
// claims, a certificate-bound token), resolved under one set of
// workload definitions, Identify with the factors that verified names
// under another set exactly the workload a fresh Resolve of the same
// evidence names there (or fails with the same conflict). The other
// sets are every one-step change of the first: each definition removed,
// renamed, moved first, each of its selectors narrowed or dropped
// (widened), a factor added to require, bind_token_to_cert toggled; and
// back. This is what a reload relies on to identify open connections
// again without verifying their evidence again.
func TestIdentifyIsResolveUnderOtherSpecs(t *testing.T) {
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
	spiffe := func(ps ...string) []SPIFFEPattern {
		var out []SPIFFEPattern
		for _, p := range ps {
			out = append(out, MustParseSPIFFEPattern(p))
		}
		return out
	}
	base := []Spec{
		{Name: "office", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
		{Name: "billing-api", SPIFFE: spiffe("spiffe://prod.example.org/ns/billing/*"), Namespaces: []string{"billing"}, Require: []string{KindMTLS, KindJWT}},
		{Name: "web", Namespaces: []string{"web"}, ServiceAccounts: []string{"frontend"}, Require: []string{KindJWT}},
		{Name: "web-svid", SPIFFE: spiffe("spiffe://prod.example.org/ns/web/*")},
		{Name: "bound", SPIFFE: spiffe("spiffe://prod.example.org/ns/bound/sa/x"), BindTokenToCert: true},
		{Name: "gh-deploy", Claims: map[string]string{"repository": "example/app", "environment": "prod"}},
		{Name: "billing-cert", SPIFFE: spiffe("spiffe://prod.example.org/ns/billing/sa/api"), Require: []string{KindMTLS}},
	}

	billingCert := ca.issue(t, leafOpts{uris: []string{"spiffe://prod.example.org/ns/billing/sa/api"}})
	boundCert := ca.issue(t, leafOpts{uris: []string{"spiffe://prod.example.org/ns/bound/sa/x"}})
	k8s := func(ns, sa string) string {
		return "Bearer " + k8sKey.sign(t, std(k8sIss, "system:serviceaccount:"+ns+":"+sa, "credgate"), k8sClaims(ns, sa, "p"))
	}
	office := netip.MustParseAddrPort("10.1.2.3:4444")
	elsewhere := netip.MustParseAddrPort("192.0.2.7:4444")
	evidence := map[string]Evidence{
		"source":                {Source: office},
		"certificate":           {Source: elsewhere, PeerCertificates: []*x509.Certificate{billingCert}},
		"certificate in office": {Source: office, PeerCertificates: []*x509.Certificate{billingCert}},
		"certificate and token": {Source: elsewhere, PeerCertificates: []*x509.Certificate{billingCert}, ProxyAuthorization: k8s("billing", "api")},
		"kubernetes token":      {Source: office, ProxyAuthorization: k8s("web", "frontend")},
		"JWT-SVID":              {Source: elsewhere, ProxyAuthorization: "Bearer " + svidKey.sign(t, std("", "spiffe://prod.example.org/ns/web/sa/x", "credgate"))},
		"claims":                {Source: elsewhere, ProxyAuthorization: "Bearer " + idpKey.sign(t, std(idpIss, "ci", "credgate"), map[string]any{"repo": "example/app", "env": "prod"})},
		"bound token":           {Source: elsewhere, PeerCertificates: []*x509.Certificate{boundCert}, ProxyAuthorization: "Bearer " + idpKey.sign(t, std(idpIss, "x", "credgate"), map[string]any{"cnf": map[string]string{"x5t#S256": thumbprint(boundCert)}})},
	}

	// variants are the one-step changes of base, by name.
	variants := map[string][]Spec{"unchanged": base}
	edit := func(name string, i int, f func(*Spec)) {
		specs := slices.Clone(base)
		s := specs[i]
		s.Require = slices.Clone(s.Require)
		f(&s)
		specs[i] = s
		variants[fmt.Sprintf("%s %s", s.Name, name)] = specs
	}
	for i, s := range base {
		variants[s.Name+" removed"] = slices.Delete(slices.Clone(base), i, i+1)
		edit("renamed", i, func(s *Spec) { s.Name += "-2" })
		moved := append([]Spec{s}, slices.Delete(slices.Clone(base), i, i+1)...)
		variants[s.Name+" moved first"] = moved
		edit("requires kubernetes", i, func(s *Spec) { s.Require = append(s.Require, KindKubernetes) })
		edit("requires nothing", i, func(s *Spec) { s.Require = nil })
		edit("bind_token_to_cert toggled", i, func(s *Spec) { s.BindTokenToCert = !s.BindTokenToCert })
		if len(s.CIDRs) > 0 {
			edit("cidrs narrowed", i, func(s *Spec) { s.CIDRs = []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")} })
			edit("cidrs widened", i, func(s *Spec) { s.CIDRs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")} })
		}
		if len(s.SPIFFE) > 0 {
			edit("spiffe narrowed", i, func(s *Spec) { s.SPIFFE = spiffe("spiffe://prod.example.org/ns/none/sa/x") })
			edit("spiffe widened", i, func(s *Spec) { s.SPIFFE = spiffe("spiffe://prod.example.org/*") })
			edit("spiffe dropped", i, func(s *Spec) { s.SPIFFE = nil })
		}
		if len(s.Namespaces) > 0 {
			edit("namespace narrowed", i, func(s *Spec) { s.Namespaces = []string{"none"} })
			edit("namespace widened", i, func(s *Spec) { s.Namespaces = []string{"billing", "web", "batch"} })
			edit("namespace dropped", i, func(s *Spec) { s.Namespaces = nil })
		}
		if len(s.ServiceAccounts) > 0 {
			edit("service_account narrowed", i, func(s *Spec) { s.ServiceAccounts = []string{"none"} })
			edit("service_account dropped", i, func(s *Spec) { s.ServiceAccounts = nil })
		}
		if len(s.Claims) > 0 {
			edit("claims narrowed", i, func(s *Spec) { s.Claims = map[string]string{"repository": "example/app", "environment": "dev"} })
			edit("claims widened", i, func(s *Spec) { s.Claims = map[string]string{"repository": "example/app"} })
			edit("iss required", i, func(s *Spec) { s.Claims = map[string]string{"repository": "example/app", AttrIssuer: idpIss} })
		}
	}

	outcome := func(name string, err error) string {
		switch {
		case errors.Is(err, ErrFactorConflict):
			return "conflict"
		case err != nil:
			return "error: " + err.Error()
		}
		return fmt.Sprintf("%q", name)
	}
	cells, changed := 0, 0
	for evName, ev := range evidence {
		for vName, other := range variants {
			for _, dir := range []struct {
				name     string
				from, to []Spec
			}{{"to", base, other}, {"back", other, base}} {
				w, err := r.Resolve(context.Background(), ev, dir.from)
				if err != nil && !errors.Is(err, ErrFactorConflict) {
					t.Fatalf("%s under %s: %v", evName, vName, err)
				}
				if err != nil {
					continue // nothing was admitted: nothing is open
				}
				fresh, ferr := r.Resolve(context.Background(), ev, dir.to)
				if ferr != nil && !errors.Is(ferr, ErrFactorConflict) {
					t.Fatalf("%s under %s: %v", evName, vName, ferr)
				}
				w.Name = "stale-" + w.Name // Identify must not read it
				got, gerr := Identify(w, dir.to)
				cells++
				if outcome(got, gerr) != outcome(fresh.Name, ferr) {
					t.Errorf("%s, %s (%s): Identify says %s, Resolve says %s", evName, vName, dir.name, outcome(got, gerr), outcome(fresh.Name, ferr))
				}
				if "stale-"+got != w.Name {
					changed++
				}
			}
		}
	}
	// The changes must change something for the test to mean anything.
	if changed < 50 {
		t.Errorf("only %d of %d cells changed the workload", changed, cells)
	}
	t.Logf("%d cells, %d of them another workload (or none, or a conflict) after the change", cells, changed)
}
