package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/credgate/credgate/internal/spiffetest"
	"github.com/credgate/credgate/internal/testpki"
)

// TestTLSListenerServesSVID: with tls.svid and identity.mtls.workload_api
// the TLS listener serves the gateway's X.509-SVID, verifies client SVIDs
// against the Workload API's bundle, and follows a rotation of both
// without a restart; /readyz and /metrics show the SVID.
func TestTLSListenerServesSVID(t *testing.T) {
	api := spiffetest.Start(t)
	spire := mustCA(t, "SPIRE CA 1")
	gwSVID := mustSVIDFor(t, spire, "spiffe://test.example/credgate", "credgate.test")
	if err := api.Set([]tls.Certificate{gwSVID}, map[string][]*x509.Certificate{"test.example": {spire.Cert}}); err != nil {
		t.Fatal(err)
	}

	pki := newTestPKI(t, apiHost)
	e := &identityEnv{testGateway: newTestGateway(t, pki, startOrigin(t, pki))}
	var pub any
	e.signer, pub = newSigner(t)
	e.forger, _ = newSigner(t)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	writeFile(t, e.dir, "jwks.json", jwks)
	writeFile(t, e.dir, "policy.yaml", []byte(identityPolicy))
	const adminToken = "spiffe-admin-token-0123456789"
	writeFile(t, e.dir, "admin.token", []byte(adminToken))
	e.run(t, fmt.Sprintf(`tls_listen: 127.0.0.1:0
tls: {svid: true}
resolve: {"api.origin.test:443": %q}
identity:
  mtls:
    workload_api: {socket: %q, start_timeout: 10s}
    require_spiffe: true
  jwt:
    issuers:
      - issuer: https://k8s.test
        profile: kubernetes
        audiences: [credgate]
        jwks_file: jwks.json
admin: {token_file: admin.token}
`, e.origin.addr, api.Addr))
	// The client trusts the SPIRE bundle for the proxy hop and the
	// interception CA inside the tunnel.
	trust := func(spireCA *testpki.Authority) {
		e.roots = e.caPool.Clone()
		e.roots.AddCert(spireCA.Cert)
	}
	trust(spire)

	billing := mustSVIDFor(t, spire, "spiffe://test.example/ns/billing/sa/api")
	rogue := mustSVIDFor(t, mustCA(t, "rogue"), "spiffe://test.example/ns/billing/sa/api")
	token := e.token(t, "billing", false)
	for _, tc := range []struct {
		name       string
		cert       *tls.Certificate
		token      string
		wantStatus int
		wantAudit  string
	}{
		{"svid-and-token", &billing, token, 200, `"workload":"billing","factors":["source","mtls","jwt"]`},
		{"svid-of-unknown-ca", &rogue, token, 403, `"code":"identity_invalid"`},
		{"conflicting-token", &billing, e.token(t, "web", false), 403, `"code":"factor_conflict"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if resp := e.get(t, tc.cert, tc.token, "/v1/"+tc.name); resp.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			waitFor(t, 5*time.Second, "audit line "+tc.wantAudit, func() bool { return strings.Contains(e.audit.String(), tc.wantAudit) })
		})
	}
	if got := servedLeaf(t, e); !got.Equal(gwSVID.Leaf) {
		t.Fatalf("the listener serves %v, want the gateway's SVID", got.URIs)
	}
	admin := func(path string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, "http://"+e.gw.AdminAddr().String()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := admin("/readyz"); code != 200 || !strings.Contains(body, `"svid":{"spiffe_id":"spiffe://test.example/credgate"`) || !strings.Contains(body, `"held":true`) {
		t.Errorf("/readyz: %d %s", code, body)
	}

	// The SPIRE CA rotates: new SVID for the gateway, new bundle.
	spire2 := mustCA(t, "SPIRE CA 2")
	gwSVID2 := mustSVIDFor(t, spire2, "spiffe://test.example/credgate", "credgate.test")
	if err := api.Set([]tls.Certificate{gwSVID2}, map[string][]*x509.Certificate{"test.example": {spire2.Cert}}); err != nil {
		t.Fatal(err)
	}
	trust(spire2)
	waitFor(t, 5*time.Second, "the rotated SVID on the listener", func() bool { return servedLeaf(t, e).Equal(gwSVID2.Leaf) })
	if resp := e.get(t, &billing, token, "/v1/old-ca"); resp.StatusCode != 403 {
		t.Errorf("client SVID of the rotated-out CA: status %d, want 403", resp.StatusCode)
	}
	billing2 := mustSVIDFor(t, spire2, "spiffe://test.example/ns/billing/sa/api")
	if resp := e.get(t, &billing2, token, "/v1/new-ca"); resp.StatusCode != 200 {
		t.Errorf("client SVID of the new CA: status %d, want 200", resp.StatusCode)
	}
	_, metrics := admin("/metrics")
	for _, want := range []string{"credgate_svid_rotations_total 1", "credgate_workload_api_updates_total 2",
		fmt.Sprintf("credgate_svid_expiry_timestamp_seconds %g", float64(gwSVID2.Leaf.NotAfter.Unix()))} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// servedLeaf does a TLS handshake with the TLS listener and returns the
// certificate it served.
func servedLeaf(t *testing.T, e *identityEnv) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.gw.TLSProxyAddr().String(),
		&tls.Config{ServerName: "credgate.test", RootCAs: e.roots})
	if err != nil {
		return &x509.Certificate{}
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

func mustCA(t testing.TB, name string) *testpki.Authority {
	t.Helper()
	a, err := testpki.NewAuthority(name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustSVIDFor(t testing.TB, a *testpki.Authority, id string, names ...string) tls.Certificate {
	t.Helper()
	c, err := a.SVID(id, names...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
