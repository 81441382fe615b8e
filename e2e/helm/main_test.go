// Package helm_test checks the Helm chart in charts/credgate offline: helm
// lint, helm template of the default values and of variants, kubeconform in
// strict mode against Kubernetes 1.34 schemas generated from the Kubernetes
// OpenAPI document, and assertions over the rendered objects.
//
// The tools (Helm v3.22.0, kubeconform v0.8.0, the schemas) are installed by
// scripts/helm-tools.sh into ~/.cache/credgate; TestMain runs it when any of
// them is missing, so `go test ./e2e/helm/` works on a fresh machine that can
// reach the Go module proxy.
package helm_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const k8sVersion = "1.34.4"

var (
	repoRoot    string // the module root
	chartDir    string // charts/credgate
	helmBin     string
	kubeconform string
	schemaRoot  string // kubeconform -schema-location
	// testCACert is a freshly generated CA certificate (PEM, no key) for the
	// existing-Secret variant and the trust bundles the pod mounts.
	testCACert string
	// testSigner signs service-account tokens (ES256, key id testKeyID);
	// testJWKS is its public key set.
	testSigner *ecdsa.PrivateKey
	testJWKS   string
)

const testKeyID = "helm-test"

func TestMain(m *testing.M) {
	if err := setup(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e/helm setup:", err)
		os.Exit(1)
	}
	code := m.Run()
	if credgatePath != "" {
		_ = os.RemoveAll(filepath.Dir(credgatePath))
	}
	os.Exit(code)
}

func setup() error {
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("getwd: %w", err)
	}
	repoRoot = filepath.Join(wd, "..", "..")
	chartDir = filepath.Join(repoRoot, "charts", "credgate")
	home, err := os.UserHomeDir()
	if err != nil {
		return fmt.Errorf("home dir: %w", err)
	}
	bin := envOr("CREDGATE_TOOLS_BIN", filepath.Join(home, ".cache", "credgate", "bin"))
	schemaRoot = envOr("CREDGATE_K8S_SCHEMAS", filepath.Join(home, ".cache", "credgate", "k8s-schemas"))
	helmBin = filepath.Join(bin, "helm")
	kubeconform = filepath.Join(bin, "kubeconform")
	marker := filepath.Join(schemaRoot, "v"+k8sVersion+"-standalone-strict", ".complete")
	if !exists(helmBin) || !exists(kubeconform) || !exists(marker) {
		start := time.Now()
		cmd := exec.Command("bash", filepath.Join(repoRoot, "scripts", "helm-tools.sh"))
		cmd.Dir = repoRoot
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("scripts/helm-tools.sh: %w", err)
		}
		fmt.Fprintf(os.Stderr, "e2e/helm: tools installed in %s\n", time.Since(start).Round(time.Second))
	}
	testCACert, err = newCACertPEM()
	if err != nil {
		return fmt.Errorf("test CA: %w", err)
	}
	testSigner, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("token key: %w", err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: testSigner.Public(), KeyID: testKeyID, Algorithm: string(jose.ES256), Use: "sig"},
	}})
	if err != nil {
		return fmt.Errorf("JWKS: %w", err)
	}
	testJWKS = string(jwks)
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// newCACertPEM returns a self-signed ECDSA P-256 CA certificate in PEM form.
func newCACertPEM() (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generate key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "credgate test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", fmt.Errorf("create certificate: %w", err)
	}
	var b bytes.Buffer
	if err := pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der}); err != nil {
		return "", fmt.Errorf("encode: %w", err)
	}
	return b.String(), nil
}
