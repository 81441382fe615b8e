package identity

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func thumbprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return base64.RawURLEncoding.EncodeToString(s[:])
}

func TestMTLSVerify(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	prodCA := newCA(t, "prod SPIFFE CA")
	stagingCA := newCA(t, "staging SPIFFE CA")
	corpCA := newCA(t, "corporate PKI")
	rogueCA := newCA(t, "rogue")
	cfg := Config{MTLS: MTLSConfig{
		Bundles: []TrustBundle{
			{File: writeFile(t, dir, "prod.pem", prodCA.pem()), TrustDomain: "prod.example.org"},
			{File: writeFile(t, dir, "staging.pem", stagingCA.pem()), TrustDomain: "staging.example.org"},
			{File: writeFile(t, dir, "corp.pem", corpCA.pem())},
		},
		TrustDomains: []string{"prod.example.org", "staging.example.org"},
	}}.WithDefaults()
	v, err := newMTLSVerifier(context.Background(), cfg.MTLS, testOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })

	svid := prodCA.issue(t, leafOpts{cn: "api", uris: []string{"spiffe://prod.example.org/ns/billing/sa/api"}})
	corp := corpCA.issue(t, leafOpts{cn: "billing-batch"})
	tests := []struct {
		name      string
		ev        Evidence
		want      *Factor
		wantInMsg string // "": no error
	}{
		{name: "no certificate", ev: Evidence{}},
		{name: "X.509-SVID verified against its trust domain's bundle", ev: Evidence{PeerCertificates: []*x509.Certificate{svid}},
			want: &Factor{Kind: KindMTLS, Subject: "spiffe://prod.example.org/ns/billing/sa/api", Expires: svid.NotAfter, Attributes: map[string]string{
				"spiffe_id": "spiffe://prod.example.org/ns/billing/sa/api", "trust_domain": "prod.example.org", "path": "/ns/billing/sa/api", "x5t_s256": thumbprint(svid)}}},
		{name: "chain verified by the listener", ev: Evidence{VerifiedChains: [][]*x509.Certificate{{svid, prodCA.cert}}},
			want: &Factor{Kind: KindMTLS, Subject: "spiffe://prod.example.org/ns/billing/sa/api", Expires: svid.NotAfter, Attributes: map[string]string{
				"spiffe_id": "spiffe://prod.example.org/ns/billing/sa/api", "trust_domain": "prod.example.org", "path": "/ns/billing/sa/api", "x5t_s256": thumbprint(svid)}}},
		{name: "non-SPIFFE certificate identified by subject", ev: Evidence{PeerCertificates: []*x509.Certificate{corp}},
			want: &Factor{Kind: KindMTLS, Subject: "CN=billing-batch,O=Example", Expires: corp.NotAfter, Attributes: map[string]string{
				"subject": "CN=billing-batch,O=Example", "x5t_s256": thumbprint(corp)}}},
		{name: "untrusted CA", ev: Evidence{PeerCertificates: []*x509.Certificate{rogueCA.issue(t, leafOpts{cn: "x"})}}, wantInMsg: "did not verify"},
		{name: "SVID of a domain signed by another domain's CA", ev: Evidence{PeerCertificates: []*x509.Certificate{
			stagingCA.issue(t, leafOpts{uris: []string{"spiffe://prod.example.org/ns/billing/sa/api"}})}}, wantInMsg: "bundle of trust domain prod.example.org"},
		{name: "SVID of a trust domain without bundle is not verified by a restricted bundle", ev: Evidence{PeerCertificates: []*x509.Certificate{
			prodCA.issue(t, leafOpts{uris: []string{"spiffe://other.example.org/x"}})}}, wantInMsg: "did not verify"},
		{name: "wrong trust domain through the generic bundle", ev: Evidence{PeerCertificates: []*x509.Certificate{
			corpCA.issue(t, leafOpts{uris: []string{"spiffe://other.example.org/x"}})}}, wantInMsg: "trust_domains does not accept"},
		{name: "expired certificate", ev: Evidence{PeerCertificates: []*x509.Certificate{
			prodCA.issue(t, leafOpts{uris: []string{"spiffe://prod.example.org/a"}, notBefore: t0.Add(-2 * time.Hour), notAfter: t0.Add(-time.Hour)})}}, wantInMsg: "did not verify"},
		{name: "listener-verified chain that expired since", ev: Evidence{VerifiedChains: [][]*x509.Certificate{{
			prodCA.issue(t, leafOpts{uris: []string{"spiffe://prod.example.org/a"}, notBefore: t0.Add(-2 * time.Hour), notAfter: t0.Add(-time.Minute)})}}}, wantInMsg: "validity period"},
		{name: "two URI SANs", ev: Evidence{PeerCertificates: []*x509.Certificate{
			prodCA.issue(t, leafOpts{uris: []string{"spiffe://prod.example.org/a", "spiffe://prod.example.org/b"}})}}, wantInMsg: "not a valid X.509-SVID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := v.Verify(context.Background(), tt.ev)
			if tt.wantInMsg == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if diff := cmp.Diff(tt.want, f); diff != "" {
					t.Errorf("factor (-want +got):\n%s", diff)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantInMsg) {
				t.Fatalf("Verify error = %v, want ErrInvalid saying %q", err, tt.wantInMsg)
			}
		})
	}
}

func TestMTLSWithoutBundles(t *testing.T) {
	clock := newFakeClock()
	v, err := newMTLSVerifier(context.Background(), Config{MTLS: MTLSConfig{RequireSPIFFE: true}}.WithDefaults().MTLS, testOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ca := newCA(t, "ca")
	if _, err := v.Verify(context.Background(), Evidence{PeerCertificates: []*x509.Certificate{ca.issue(t, leafOpts{cn: "x"})}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unverified peer certificate: error %v, want ErrInvalid", err)
	}
	if _, err := v.Verify(context.Background(), Evidence{VerifiedChains: [][]*x509.Certificate{{ca.issue(t, leafOpts{cn: "x"})}}}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "require_spiffe") {
		t.Fatalf("non-SPIFFE certificate with require_spiffe: error %v", err)
	}
	if v.clientCAs() != nil {
		t.Fatal("clientCAs without bundles is not nil")
	}
}

// TestMTLSBundleReload: a bundle file replaced on disk is picked up
// without a restart; a broken replacement keeps the last good bundle.
func TestMTLSBundleReload(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	oldCA, newCA := newCA(t, "old"), newCA(t, "new")
	path := writeFile(t, dir, "bundle.pem", oldCA.pem())
	cfg := MTLSConfig{Bundles: []TrustBundle{{File: path, TrustDomain: "example.org"}}, ReloadInterval: 5 * time.Millisecond}
	v, err := newMTLSVerifier(context.Background(), Config{MTLS: cfg}.WithDefaults().MTLS, testOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	oldCert := oldCA.issue(t, leafOpts{uris: []string{"spiffe://example.org/w"}})
	newCert := newCA.issue(t, leafOpts{uris: []string{"spiffe://example.org/w"}})
	verifies := func(c *x509.Certificate) bool {
		_, err := v.Verify(context.Background(), Evidence{PeerCertificates: []*x509.Certificate{c}})
		return err == nil
	}
	if !verifies(oldCert) || verifies(newCert) {
		t.Fatal("initial bundle not in force")
	}
	writeFile(t, dir, "bundle.pem", append(oldCA.pem(), newCA.pem()...))
	waitFor(t, "the new CA to be trusted", func() bool { return verifies(newCert) })
	writeFile(t, dir, "bundle.pem", []byte("-----BEGIN GARBAGE-----\n"))
	if _, err := v.reloaders[0].Load(); err == nil || !strings.Contains(err.Error(), "PEM block 1 does not decode") {
		t.Fatalf("loading a broken bundle: error %v", err)
	}
	if !verifies(oldCert) || !verifies(newCert) {
		t.Fatal("a broken bundle file replaced the last good bundle")
	}
	if got := v.state.Load().size; got != 2 {
		t.Fatalf("bundle holds %d CAs, want 2", got)
	}
	if v.clientCAs() == nil {
		t.Fatal("clientCAs is nil with a bundle configured")
	}
}

// TestMTLSVerifiedChainCache: a chain verified once is served from the
// cache, still checked against the clock, and forgotten when the bundles
// change.
func TestMTLSVerifiedChainCache(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	oldCA, newCA := newCA(t, "old"), newCA(t, "new")
	path := writeFile(t, dir, "bundle.pem", oldCA.pem())
	v, err := newMTLSVerifier(context.Background(), Config{MTLS: MTLSConfig{Bundles: []TrustBundle{{File: path, TrustDomain: "example.org"}}}}.WithDefaults().MTLS, testOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	cert := oldCA.issue(t, leafOpts{uris: []string{"spiffe://example.org/w"}, notAfter: t0.Add(time.Minute)})
	ev := Evidence{PeerCertificates: []*x509.Certificate{cert}}
	for range 2 {
		if _, err := v.Verify(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(v.state.Load().verified.m); got != 1 {
		t.Fatalf("%d cached chains, want 1", got)
	}
	clock.Advance(2 * time.Minute)
	if _, err := v.Verify(context.Background(), ev); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "validity period") {
		t.Fatalf("cached chain after expiry: %v, want ErrInvalid (validity period)", err)
	}
	clock.Advance(-2 * time.Minute)
	writeFile(t, dir, "bundle.pem", newCA.pem())
	if _, err := v.reloaders[0].Load(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), ev); !errors.Is(err, ErrInvalid) {
		t.Fatalf("cached chain of a CA no longer trusted: %v, want ErrInvalid", err)
	}
}
