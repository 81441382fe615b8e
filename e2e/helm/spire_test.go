package helm_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/internal/freeport"
	"github.com/credgate/credgate/internal/spiffetest"
	"github.com/credgate/credgate/internal/testpki"
)

const (
	gatewayID   = "spiffe://prod.example.org/ns/egress/sa/cg-credgate"
	gatewayHost = "cg-credgate.egress.svc"
	shopID      = "spiffe://prod.example.org/ns/shop/sa/api"
)

// TestGatewayServesSPIREChart runs the real gateway on what the chart
// renders with spire.enabled (the "spire" variant: the SPIFFE CSI volume,
// the SVID listener, no certificate Secret), with a fake SPIRE agent's
// Workload API socket where the CSI driver would mount it. The readiness
// probe passes with the SVID held; the TLS listener serves the gateway's
// own SVID (the one spire.spiffeID names, of the two the agent issues) and
// picks up a rotated one without a restart; client SVIDs are verified
// against the agent's bundle.
func TestGatewayServesSPIREChart(t *testing.T) {
	prod := mustAuthority(t, "prod SPIRE CA")
	other := mustAuthority(t, "another CA")
	api := spiffetest.Start(t)
	decoy := mustSVID(t, prod, "spiffe://prod.example.org/ns/egress/sa/sidecar")
	gw1 := mustSVID(t, prod, gatewayID, gatewayHost)
	bundles := map[string][]*x509.Certificate{"prod.example.org": {prod.Cert}}
	if err := api.Set([]tls.Certificate{decoy, gw1}, bundles); err != nil {
		t.Fatal(err)
	}

	fx := fixtures(t)
	fx.agentSocketDir = filepath.Dir(strings.TrimPrefix(api.Addr, "unix://"))
	upstream := startUpstream(t)
	tlsPort := freeport.Get(t)
	extra := fmt.Sprintf(`
proxyPort: %d
adminPort: %d
tls: {port: %d}
spire:
  agentSocket: {fileName: %s}
  startTimeout: 20s
config:
  resolve:
    "api.partner.test:443": %q
policy:
  workloads:
    shop-api:
      spiffe: %s
      require: [mtls]
  destinations:
    partner:
      hosts: [api.partner.test]
      ports: [443]
      allow_private: true
  rules:
    - name: shop-partner
      from: shop-api
      to: partner
      action: tunnel
  default: deny
`, freeport.Get(t), freeport.Get(t), tlsPort, filepath.Base(api.Addr), upstream, shopID)
	args := append(valuesArgs(t, variantByName(t, "spire")), valuesArgs(t, variant{name: "serve", values: extra})...)
	objs := parse(t, run(t, helmBin, templateArgs(args...)...))
	g := startGateway(t, newPod(t, objs, fx))
	g.checkAdminEndpoints(t)
	// /readyz names the SVID only with the admin token: without one, it
	// is ready (an SVID is held) and /metrics shows its expiry.
	ready, err := g.adminGet("/readyz")
	if err != nil || !strings.Contains(ready, `"status":"ready"`) {
		t.Errorf("/readyz = %s (%v), want ready with the gateway's SVID %s", ready, err, gatewayID)
	}
	if m, err := g.adminGet("/metrics"); err != nil || !strings.Contains(m, "credgate_svid_expiry_timestamp_seconds") || strings.Contains(m, "credgate_svid_expiry_timestamp_seconds 0\n") {
		t.Errorf("/metrics holds no SVID expiry (%v)", err)
	}

	tlsAddr := fmt.Sprintf("127.0.0.1:%d", containerPort(t, g.pod, "proxy-tls"))
	shop := mustSVID(t, prod, shopID)
	stranger := mustSVID(t, other, shopID)
	tests := []struct {
		name       string
		client     *tls.Certificate
		wantStatus int
		wantReason string
	}{
		{"SVID of the trust domain", &shop, http.StatusOK, ""},
		{"same ID from another CA", &stranger, http.StatusForbidden, "identity_invalid"},
		{"no client certificate", nil, http.StatusForbidden, "no_rule"},
	}
	for _, tt := range tests {
		status, reason, served := connectTLS(t, g, tlsAddr, prod.Cert, tt.client, "api.partner.test:443")
		if diff := cmp.Diff([]any{tt.wantStatus, tt.wantReason}, []any{status, reason}); diff != "" {
			t.Errorf("%s: CONNECT status, reason (-want +got):\n%s\ngateway stderr:\n%s", tt.name, diff, g.stderr.String())
		}
		if !served.Equal(leaf(t, gw1)) {
			t.Errorf("%s: the TLS listener served %v, want the gateway's SVID %s", tt.name, served.URIs, gatewayID)
		}
	}

	// SPIRE rotates the SVID: the next handshakes get the new one, no restart.
	gw2 := mustSVID(t, prod, gatewayID, gatewayHost)
	if err := api.Set([]tls.Certificate{decoy, gw2}, bundles); err != nil {
		t.Fatal(err)
	}
	g.waitFor(t, 20*time.Second, "the rotated SVID on the TLS listener", func() error {
		_, _, served := connectTLS(t, g, tlsAddr, prod.Cert, &shop, "api.partner.test:443")
		if !served.Equal(leaf(t, gw2)) {
			return fmt.Errorf("served serial %v, want %v", served.SerialNumber, leaf(t, gw2).SerialNumber)
		}
		return nil
	})
	g.checkRunning(t)
	g.stop(t)
}

// connectTLS sends CONNECT target through the TLS listener at addr,
// verifying the listener for gatewayHost against root and presenting
// client (if any). It returns the status, the X-Credgate-Reason header and
// the certificate the listener served.
func connectTLS(t *testing.T, g *gatewayProcess, addr string, root *x509.Certificate, client *tls.Certificate, target string) (int, string, *x509.Certificate) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(root)
	cfg := &tls.Config{RootCAs: roots, ServerName: gatewayHost, MinVersion: tls.VersionTLS12}
	if client != nil {
		cfg.Certificates = []tls.Certificate{*client}
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS listener %s: %v\nstderr:\n%s", addr, err, g.stderr.String())
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(15 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s over TLS: %v\nstderr:\n%s", target, err, g.stderr.String())
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Credgate-Reason"), c.ConnectionState().PeerCertificates[0]
}

func mustAuthority(t *testing.T, name string) *testpki.Authority {
	t.Helper()
	a, err := testpki.NewAuthority(name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// mustSVID issues an X.509-SVID for id (and DNS names) as SPIRE does.
func mustSVID(t *testing.T, a *testpki.Authority, id string, names ...string) tls.Certificate {
	t.Helper()
	c, err := a.SVID(id, names...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func leaf(t *testing.T, c tls.Certificate) *x509.Certificate {
	t.Helper()
	l, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return l
}
