package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// BenchmarkInjectKeepAliveTwoFactors is BenchmarkInjectKeepAlive over the
// TLS listener, for a workload that must present a client certificate
// (verified by identity against identity.mtls.bundles, as with the
// Workload API) and a token: the per-request cost of two factors, for
// profiling (go test -bench TwoFactors -cpuprofile cpu.out ./gateway).
func BenchmarkInjectKeepAliveTwoFactors(b *testing.B) {
	pki := newTestPKI(b, apiHost, "credgate.test")
	e := &identityEnv{testGateway: newTestGateway(b, pki, startOrigin(b, pki))}
	clientCA := mustCA(b, "client CA")
	var pub any
	e.signer, pub = newSigner(b)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	writeFile(b, e.dir, "client-ca.pem", clientCA.CertPEM)
	writeFile(b, e.dir, "jwks.json", jwks)
	writeFile(b, e.dir, "policy.yaml", []byte(identityPolicy))
	e.run(b, fmt.Sprintf(`tls_listen: 127.0.0.1:0
tls: {cert: listener.pem, key: listener-key.pem}
resolve: {"api.origin.test:443": %q}
identity:
  mtls:
    bundles: [{file: client-ca.pem, trust_domain: test.example}]
  jwt:
    issuers:
      - issuer: https://k8s.test
        profile: kubernetes
        audiences: [credgate]
        jwks_file: jwks.json
`, e.origin.addr))
	roots := e.caPool.Clone()
	roots.AppendCertsFromPEM(pki.caPEM)
	cert, err := clientCA.ClientLeaf("billing", "spiffe://test.example/ns/billing/sa/api")
	if err != nil {
		b.Fatal(err)
	}
	addr := e.gw.TLSProxyAddr().String()
	pu, _ := url.Parse("https://credgate.test:" + portOf(e.gw.TLSProxyAddr()))
	var d net.Dialer
	tr := &http.Transport{
		Proxy:           http.ProxyURL(pu),
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		ProxyConnectHeader:  http.Header{"Proxy-Authorization": {"Bearer " + e.token(b, "billing", false)}},
		MaxIdleConnsPerHost: 64,
	}
	b.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	get := func() error {
		resp, err := c.Get("https://" + apiHost + "/v1/bench")
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	}
	if err := get(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := get(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
