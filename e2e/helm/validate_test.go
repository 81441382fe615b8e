package helm_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPolicyValidates runs `credgate validate` on the gateway config and the
// policy the chart renders, laid out as the pod sees them (/etc/credgate):
// the embedded default policy, and the same policy given as a YAML object.
func TestPolicyValidates(t *testing.T) {
	if files, _ := filepath.Glob(filepath.Join(repoRoot, "cmd", "credgate", "*.go")); len(files) == 0 {
		t.Skip("cmd/credgate is not written yet; nothing to validate with")
	}
	bin := filepath.Join(t.TempDir(), "credgate")
	run(t, "go", "build", "-o", bin, "./cmd/credgate")

	tests := []variant{
		{name: "default"},
		{name: "policy-as-object", values: `
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
`},
	}
	for _, v := range tests {
		t.Run(v.name, func(t *testing.T) {
			objs := parse(t, run(t, helmBin, templateArgs(valuesArgs(t, v)...)...))
			dir := t.TempDir()
			cfg, _ := get(mustFind(t, objs, "ConfigMap", fullname+"-config"), "data.[config.yaml]").(string)
			policy, _ := get(mustFind(t, objs, "ConfigMap", fullname+"-policy"), "data.[policy.yaml]").(string)
			write(t, filepath.Join(dir, "config.yaml"), cfg)
			write(t, filepath.Join(dir, "policy", "policy.yaml"), policy)
			// The pod's CA Secret has tls.crt/tls.key; make them with the CLI.
			initDir := filepath.Join(t.TempDir(), "ca")
			run(t, bin, "ca", "init", "--out", initDir)
			certPEM, keyPEM := readCA(t, initDir)
			write(t, filepath.Join(dir, "ca", "tls.crt"), certPEM)
			write(t, filepath.Join(dir, "ca", "tls.key"), keyPEM)

			out, err := runErr(bin, "validate", "-c", filepath.Join(dir, "config.yaml"))
			if err != nil {
				t.Fatalf("credgate validate rejected the chart's config/policy: %v\nconfig.yaml:\n%s\npolicy.yaml:\n%s", err, cfg, policy)
			}
			t.Logf("credgate validate: %s", out)
		})
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// readCA returns the certificate and key PEM that `credgate ca init` wrote,
// whatever the file names.
func readCA(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		switch s := string(b); {
		case strings.Contains(s, "PRIVATE KEY"):
			key = s
		case strings.Contains(s, "BEGIN CERTIFICATE"):
			cert = s
		}
	}
	if cert == "" || key == "" {
		t.Fatalf("credgate ca init --out %s wrote no certificate/key pair (%d files)", dir, len(entries))
	}
	return cert, key
}
