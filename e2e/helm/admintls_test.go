package helm_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/testpki"
)

// adminTLSValues serve the admin port over HTTPS with a Secret the user
// provides, and make kill switch changes need an operator's client
// certificate.
const adminTLSValues = `
admin:
  tokenSecret: {name: credgate-admin}
  tls:
    enabled: true
    existingSecret: credgate-admin-tls
    clientCAConfigMap: credgate-operators
metrics:
  serviceMonitor:
    enabled: true
    tlsConfig:
      ca: {configMap: {name: credgate-admin-ca, key: ca.crt}}
      serverName: cg-credgate-admin.egress.svc
`

// adminPKI is the admin listener's certificate (for 127.0.0.1 and the
// admin Service's name), its CA, and an operator's client certificate from
// another CA, made once per test binary.
type adminPKI struct {
	caPEM, certPEM, keyPEM             string
	operatorsPEM, clientPEM, clientKey string
}

var (
	adminPKIOnce sync.Once
	adminPKIVal  adminPKI
	adminPKIErr  error
)

func testAdminPKI(t *testing.T) adminPKI {
	t.Helper()
	adminPKIOnce.Do(func() {
		ca, err := testpki.NewAuthority("admin CA")
		if err != nil {
			adminPKIErr = err
			return
		}
		leaf, err := ca.Leaf(fullname+"-admin."+namespace+".svc", "127.0.0.1")
		if err != nil {
			adminPKIErr = err
			return
		}
		c, k, err := testpki.PEM(leaf)
		if err != nil {
			adminPKIErr = err
			return
		}
		ops, err := testpki.NewAuthority("operators CA")
		if err != nil {
			adminPKIErr = err
			return
		}
		client, err := ops.ClientLeaf("alice")
		if err != nil {
			adminPKIErr = err
			return
		}
		cc, ck, err := testpki.PEM(client)
		if err != nil {
			adminPKIErr = err
			return
		}
		adminPKIVal = adminPKI{caPEM: string(ca.CertPEM), certPEM: string(c), keyPEM: string(k),
			operatorsPEM: string(ops.CertPEM), clientPEM: string(cc), clientKey: string(ck)}
	})
	if adminPKIErr != nil {
		t.Fatalf("admin PKI: %v", adminPKIErr)
	}
	return adminPKIVal
}

// checkAdminTLS drives the kill switch with `credgate admin` over the
// admin port's HTTPS, as an operator would through a port-forward, and
// checks that plain HTTP is no way in.
func checkAdminTLS(t *testing.T, g *gatewayProcess) {
	t.Helper()
	pki := testAdminPKI(t)
	dir := t.TempDir()
	files := map[string]string{"ca.pem": pki.caPEM, "alice.pem": pki.clientPEM, "alice-key.pem": pki.clientKey}
	for name, data := range files {
		write(t, filepath.Join(dir, name), data)
	}
	url := fmt.Sprintf("https://127.0.0.1:%d", g.adminPort)
	tokenFile := g.pod.path("/etc/credgate/admin-token/token")
	admin := func(args ...string) (string, error) {
		base := []string{"admin", "--admin", url, "--cacert", filepath.Join(dir, "ca.pem"), "--token-file", tokenFile}
		out, err := runErr(credgateBin(t), append(base, args...)...)
		return string(out), err
	}
	client := []string{"--cert", filepath.Join(dir, "alice.pem"), "--key", filepath.Join(dir, "alice-key.pem")}
	if out, err := admin(append(client, "disable", "rule", "github-passthrough", "--by", "alice", "--reason", "helm test")...); err != nil || !strings.Contains(out, `disabled rule "github-passthrough"`) {
		t.Fatalf("credgate admin disable over https: %v\n%s\nstderr:\n%s", err, out, g.stderr.String())
	}
	if out, err := admin(append(client, "list")...); err != nil || !strings.Contains(out, "github-passthrough") {
		t.Errorf("credgate admin list over https: %v\n%s", err, out)
	}
	if _, err := admin("enable", "rule", "github-passthrough"); err == nil || !strings.Contains(err.Error(), "client_certificate_required") {
		t.Errorf("enable without a client certificate: %v, want client_certificate_required", err)
	}
	if out, err := admin(append(client, "enable", "rule", "github-passthrough")...); err != nil {
		t.Errorf("credgate admin enable over https: %v\n%s", err, out)
	}
	plain := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	resp, err := plain.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", g.adminPort))
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the admin port: %s, want 400", resp.Status)
		}
	}
	if strings.Contains(g.stderr.String(), strings.TrimSpace(readFile(t, tokenFile))) {
		t.Error("the admin token is in the gateway's log")
	}
}

// kubeletClient is how kubelet runs an httpGet probe with scheme HTTPS:
// TLS without verifying the certificate. (checkAdminTLS verifies it.)
func kubeletClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAdminTLSValueErrors: admin values (and upstream.http2) that cannot
// work fail the render with what to set.
func TestAdminTLSValueErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no Secret", []string{"--set", "admin.tls.enabled=true"}, "admin.tls.enabled needs admin.tls.existingSecret"},
		{"client CA without TLS", []string{"--set", "admin.tls.clientCAConfigMap=ops"}, "admin.tls.clientCAConfigMap needs admin.tls.enabled"},
		{"state file on the read-only root", []string{"--set", "admin.stateFile=/var/lib/credgate/switches.json"}, "admin.stateFile /var/lib/credgate/switches.json: the root filesystem is read-only; mount a writable volume"},
		{"state file on a read-only volume", []string{"--set", "admin.stateFile=/state/switches.json", "--set", "extraVolumes[0].name=s", "--set", "extraVolumes[0].emptyDir.medium=Memory", "--set", "extraVolumeMounts[0].name=s", "--set", "extraVolumeMounts[0].mountPath=/state", "--set", "extraVolumeMounts[0].readOnly=true"}, "admin.stateFile /state/switches.json: the root filesystem is read-only"},
		{"relative state file", []string{"--set", "admin.stateFile=switches.json"}, "stateFile"},
		{"unknown http2", []string{"--set", "config.upstream.http2=sometimes"}, "http2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := runErr(helmBin, templateArgs(tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("helm template %v: %v, want an error with %q", tt.args, err, tt.want)
			}
		})
	}
}
