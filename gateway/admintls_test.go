package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/testpki"
)

// adminPKI writes an admin listener certificate for 127.0.0.1 signed by a
// fresh CA into dir and returns the CA.
func adminPKI(t *testing.T, dir, name string) *testpki.Authority {
	t.Helper()
	ca, err := testpki.NewAuthority(name)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf("credgate-admin.test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := testpki.PEM(leaf)
	if err != nil {
		t.Fatal(err)
	}
	// Key first, then certificate: a reload in between sees a mismatched
	// pair and keeps the last good one.
	writeFile(t, dir, "admin-key.pem", keyPEM)
	writeFile(t, dir, "admin.pem", certPEM)
	return ca
}

// httpsClient trusts roots and presents certs.
func httpsClient(t *testing.T, roots *x509.CertPool, certs ...tls.Certificate) *http.Client {
	t.Helper()
	tr := &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func adminDo(c *http.Client, method, url, token, body string) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// TestAdminOverTLS: with admin.tls the admin listener speaks HTTPS only,
// the kill switch works over it with the token, and a renewed certificate
// is served without a restart.
func TestAdminOverTLS(t *testing.T) {
	const token = "admin-tls-token-0123456789abcdef"
	dir := t.TempDir()
	writeFile(t, dir, "admin.token", []byte(token+"\n"))
	ca := adminPKI(t, dir, "admin CA")
	tg := startSwitchGateway(t, fmt.Sprintf("admin:\n  token_file: %q\n  tls:\n    cert: %q\n    key: %q\n    reload_interval: 50ms\n",
		filepath.Join(dir, "admin.token"), filepath.Join(dir, "admin.pem"), filepath.Join(dir, "admin-key.pem")))
	base := "https://" + tg.gw.AdminAddr().String()
	c := httpsClient(t, ca.Pool())

	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/admin/v1/switches"} {
		if st, body, err := adminDo(c, http.MethodGet, base+path, token, ""); err != nil || st != http.StatusOK {
			t.Errorf("GET %s over https: %d %v %.200s", path, st, err, body)
		}
	}
	disable := `{"kind":"rule","name":"api","by":"alice","reason":"INC-1"}`
	if st, body, err := adminDo(c, http.MethodPost, base+"/admin/v1/disable", token, disable); err != nil || st != http.StatusOK || !strings.Contains(body, `"changed":true`) {
		t.Fatalf("disable over https: %d %v %s", st, err, body)
	}
	if st, _, err := adminDo(c, http.MethodPost, base+"/admin/v1/disable", "wrong-token-0123456789abcdef", disable); err != nil || st != http.StatusUnauthorized {
		t.Errorf("disable with a wrong token over https: %d %v, want 401", st, err)
	}
	waitFor(t, 5*time.Second, "the https audit line of the admin call", func() bool {
		return regexp.MustCompile(`"method":"POST","scheme":"https","host":"admin",.*"path":"/admin/v1/disable".*"decision":"admin"`).MatchString(tg.audit.String())
	})

	// Plain HTTP to the TLS port gets nothing the admin API would answer,
	// and a token sent that way is refused before any handler sees it.
	plain := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	if st, body, err := adminDo(plain, http.MethodPost, "http://"+tg.gw.AdminAddr().String()+"/admin/v1/enable", token, `{"kind":"rule","name":"api"}`); err == nil && (st != http.StatusBadRequest || !strings.Contains(body, "HTTPS")) {
		t.Errorf("plain HTTP to the admin TLS port: %d %q, want 400 or a failure", st, body)
	}
	if st, body, _ := adminDo(c, http.MethodGet, base+"/admin/v1/switches", token, ""); st != http.StatusOK || !strings.Contains(body, `"name":"api"`) {
		t.Errorf("the plain HTTP enable changed something: %d %s", st, body)
	}
	// A client that does not trust the admin certificate fails.
	if _, _, err := adminDo(httpsClient(t, x509.NewCertPool()), http.MethodGet, base+"/healthz", "", ""); err == nil {
		t.Error("a client without the admin CA reached /healthz")
	}

	// Renewed from another CA: new handshakes get it without a restart.
	renewed := adminPKI(t, dir, "renewed admin CA")
	waitFor(t, 5*time.Second, "the renewed admin certificate", func() bool {
		st, _, err := adminDo(httpsClient(t, renewed.Pool()), http.MethodGet, base+"/healthz", "", "")
		return err == nil && st == http.StatusOK
	})
	if strings.Contains(tg.logs.String(), token) {
		t.Error("the admin token is in the log")
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:9090": true, "[::1]:9090": true, "0.0.0.0:9090": false, "[::]:9090": false, "10.1.2.3:9090": false} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := loopback(a); got != want {
			t.Errorf("loopback(%s) = %v, want %v", addr, got, want)
		}
	}
}

// TestAdminTLSClientCA: with admin.tls.client_ca a change needs a client
// certificate signed by it, while the probes, the metrics and the list
// need none.
func TestAdminTLSClientCA(t *testing.T) {
	const token = "admin-tls-token-0123456789abcdef"
	dir := t.TempDir()
	writeFile(t, dir, "admin.token", []byte(token))
	ca := adminPKI(t, dir, "admin CA")
	clients, err := testpki.NewAuthority("operators CA")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "operators.pem", clients.CertPEM)
	tg := startSwitchGateway(t, fmt.Sprintf("admin:\n  token_file: %q\n  tls: {cert: %q, key: %q, client_ca: %q}\n",
		filepath.Join(dir, "admin.token"), filepath.Join(dir, "admin.pem"), filepath.Join(dir, "admin-key.pem"), filepath.Join(dir, "operators.pem")))
	base := "https://" + tg.gw.AdminAddr().String()
	operator, err := clients.ClientLeaf("alice")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := ca.ClientLeaf("mallory") // signed by a CA the listener does not trust for clients
	if err != nil {
		t.Fatal(err)
	}
	noCert := httpsClient(t, ca.Pool())
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if st, _, err := adminDo(noCert, http.MethodGet, base+path, "", ""); err != nil || st != http.StatusOK {
			t.Errorf("GET %s without a client certificate: %d %v", path, st, err)
		}
	}
	// The list and /readyz's detail name operators: they need the
	// client certificate as well as the token.
	if st, body, err := adminDo(noCert, http.MethodGet, base+"/admin/v1/switches", token, ""); err != nil || st != http.StatusForbidden || !strings.Contains(body, codeAdminClientCert) {
		t.Errorf("GET /admin/v1/switches without a client certificate: %d %v %s, want 403", st, err, body)
	}
	if _, body, _ := adminDo(noCert, http.MethodGet, base+"/readyz", token, ""); strings.Contains(body, "kill_switch") {
		t.Errorf("/readyz detail without a client certificate: %s", body)
	}
	disable := `{"kind":"rule","name":"api"}`
	if st, body, err := adminDo(noCert, http.MethodPost, base+"/admin/v1/disable", token, disable); err != nil || st != http.StatusForbidden || !strings.Contains(body, codeAdminClientCert) {
		t.Errorf("disable without a client certificate: %d %v %s, want 403 %s", st, err, body, codeAdminClientCert)
	}
	// Presented even though the server names another CA (Go's client
	// would otherwise send none).
	strangerTr := &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: ca.Pool(),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &stranger, nil }}}
	t.Cleanup(strangerTr.CloseIdleConnections)
	if _, _, err := adminDo(&http.Client{Transport: strangerTr, Timeout: 5 * time.Second}, http.MethodPost, base+"/admin/v1/disable", token, disable); err == nil {
		t.Error("disable with a client certificate from another CA: the handshake succeeded")
	}
	withCert := httpsClient(t, ca.Pool(), operator)
	if st, _, err := adminDo(withCert, http.MethodPost, base+"/admin/v1/disable", "", disable); err != nil || st != http.StatusUnauthorized {
		t.Errorf("disable with a client certificate but no token: %d %v, want 401", st, err)
	}
	if st, body, err := adminDo(withCert, http.MethodPost, base+"/admin/v1/disable", token, disable); err != nil || st != http.StatusOK {
		t.Errorf("disable with a client certificate and the token: %d %v %s", st, err, body)
	}
	if !strings.Contains(tg.logs.String(), `"client_cert":"CN=alice"`) {
		t.Errorf("the change's log line does not name the client certificate:\n%s", tg.logs.String())
	}
}
