package helm_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

var (
	credgateOnce sync.Once
	credgatePath string
	credgateErr  error
	caOnce       sync.Once
	caCert       string
	caKey        string
	caErr        error
)

// credgateBin builds ./cmd/credgate once per test binary and returns its path.
func credgateBin(t *testing.T) string {
	t.Helper()
	credgateOnce.Do(func() {
		dir, err := os.MkdirTemp("", "credgate-helm-")
		if err != nil {
			credgateErr = err
			return
		}
		credgatePath = filepath.Join(dir, "credgate")
		_, credgateErr = runErr("go", "build", "-o", credgatePath, "./cmd/credgate")
	})
	if credgateErr != nil {
		t.Fatalf("go build ./cmd/credgate: %v", credgateErr)
	}
	return credgatePath
}

// caPair returns the certificate and key PEM of a CA that `credgate ca init`
// wrote (once per test binary): what the pod's CA Secret holds.
func caPair(t *testing.T) (cert, key string) {
	t.Helper()
	bin := credgateBin(t)
	caOnce.Do(func() {
		dir := filepath.Join(filepath.Dir(bin), "ca")
		if _, caErr = runErr(bin, "ca", "init", "--out", dir); caErr != nil {
			return
		}
		var c, k []byte
		if c, caErr = os.ReadFile(filepath.Join(dir, "ca.pem")); caErr != nil {
			return
		}
		if k, caErr = os.ReadFile(filepath.Join(dir, "ca-key.pem")); caErr != nil {
			return
		}
		caCert, caKey = string(c), string(k)
	})
	if caErr != nil {
		t.Fatalf("credgate ca init: %v", caErr)
	}
	return caCert, caKey
}

// defaultPolicy is the policy embedded in values.yaml.
func defaultPolicy(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Policy string }
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v.Policy
}

// fixtures returns what a variant's pod needs besides the rendered objects.
func fixtures(t *testing.T) podFixtures {
	admin := testAdminPKI(t)
	return podFixtures{
		configMaps: map[string]map[string]string{
			"corp-policy":        {"egress.yaml": defaultPolicy(t)},
			"corp-ca":            {"ca.pem": testCACert},
			"partner-ca":         {"ca.pem": testCACert},
			"spire-jwt-bundle":   {"bundle.jwks": testJWKS},
			"posture":            {"posture.json": `{"shop-api": {"patched": true}}`},
			"credgate-operators": {"ca.crt": admin.operatorsPEM},
			"vault-ca":           {"ca.pem": testCACert},
		},
		secrets: map[string]map[string]string{
			"credgate-admin": {"token": "helm-test-admin-token-0123456789"},
			"redis-keys": {
				"k1": base64.StdEncoding.EncodeToString(randomBytes(t, 32)),
				"k2": base64.StdEncoding.EncodeToString(randomBytes(t, 32)),
			},
			"redis-auth":         {"password": "helm-test-redis-password"},
			"credgate-admin-tls": {"tls.crt": admin.certPEM, "tls.key": admin.keyPEM},
			"credgate-audit-keys": {
				"checkpoint.pem": ed25519KeyPEM(t),
				"fingerprint":    base64.StdEncoding.EncodeToString(randomBytes(t, 32)),
			},
			"credgate-run-tokens": {"signing.pem": ed25519KeyPEM(t)},
			"otel-auth":           {"audit": "Bearer helm-test-audit-export", "traces": "helm-test-trace-key"},
			"otel-tenant":         {"id": "egress"},
		},
		token: "projected-service-account-token",
	}
}

// ed25519KeyPEM returns a new Ed25519 private key, PEM PKCS#8 (what
// `openssl genpkey -algorithm ed25519` writes).
func ed25519KeyPEM(t *testing.T) string {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// validateRendered lays out the pod's files for rendered objects and runs
// the real `credgate validate -c /etc/credgate/config.yaml` on the config
// as rendered (its policy is read from where the pod mounts it; its
// absolute paths under the pod's mounts lead where the test laid them
// out), in the container's environment: validate reads the files and
// variables the config names, as serve does at start.
func validateRendered(t *testing.T, objs []object) string {
	t.Helper()
	bin := credgateBin(t)
	p := newPod(t, objs, fixtures(t))
	p.rootConfig("/etc/credgate/config.yaml")
	config := p.path("/etc/credgate/config.yaml")
	cmd := exec.Command(bin, "validate", "-c", config)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), p.env()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		raw, _ := os.ReadFile(config)
		t.Fatalf("credgate validate rejected the chart's config: %v: %s\nconfig.yaml:\n%s", err, out, raw)
	}
	if !strings.Contains(string(out), ": ok (gateway config;") {
		t.Fatalf("credgate validate: %s, want a gateway config that is ok", out)
	}
	return string(out)
}

// TestGatewayAcceptsRenderedConfig runs `credgate validate` on the gateway
// config and policy the chart renders for every variant, plus the default
// policy given as a YAML object. The gateway config is strict (an unknown
// key is fatal), so this proves the chart writes only keys it accepts.
func TestGatewayAcceptsRenderedConfig(t *testing.T) {
	vs := append(variants(), variant{name: "policy-as-object", values: `
policy:
  workloads:
    shop:
      cidrs: [10.8.0.0/16]
      require: [source]
  destinations:
    github:
      hosts: [api.github.com, "*.githubusercontent.com"]
  rules:
    - name: shop-github
      from: shop
      to: github
      action: tunnel
  default: deny
`})
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			out := validateRendered(t, parse(t, render(t, v)))
			t.Logf("credgate validate: %s", out)
		})
	}
}

// TestGatewayRejectsUnknownKey shows that validateRendered would catch a
// chart that writes a key the gateway does not have (say, Redis settings
// at the top level instead of under cache.redis): the config is strict.
func TestGatewayRejectsUnknownKey(t *testing.T) {
	objs := parse(t, render(t, variantByName(t, "default")))
	cm := mustFind(t, objs, "ConfigMap", fullname+"-config")
	data := cm["data"].(map[string]any)
	data["config.yaml"] = data["config.yaml"].(string) + "redis:\n  address: redis.cache.svc:6379\n"
	p := newPod(t, objs, fixtures(t))
	out, err := runErr(credgateBin(t), "validate", "-c", p.path("/etc/credgate/config.yaml"))
	if err == nil || !strings.Contains(err.Error(), "redis") {
		t.Fatalf("credgate validate accepted an unknown key (err %v): %s", err, out)
	}
}

// TestGatewayValidatesWorkloadAPIOffline shows what `credgate validate`
// does with the SPIRE variant's identity.mtls.workload_api: it checks the
// settings without asking the agent (the pod's socket directory is empty
// here, and validate answers at once rather than after start_timeout),
// and it does reject a socket address the gateway could not use (http://).
func TestGatewayValidatesWorkloadAPIOffline(t *testing.T) {
	objs := parse(t, render(t, variantByName(t, "spire")))
	start := time.Now()
	validateRendered(t, objs)
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("credgate validate took %s: it waited for the agent", d)
	}
	cm := mustFind(t, objs, "ConfigMap", fullname+"-config")
	data := cm["data"].(map[string]any)
	data["config.yaml"] = strings.Replace(data["config.yaml"].(string), "unix:///spiffe-workload-api/", "http:///spiffe-workload-api/", 1)
	p := newPod(t, objs, fixtures(t))
	out, err := runErr(credgateBin(t), "validate", "-c", p.path("/etc/credgate/config.yaml"))
	if err == nil || !strings.Contains(err.Error(), "workload_api.socket") {
		t.Fatalf("credgate validate accepted an http socket address (err %v): %s", err, out)
	}
}
