package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/gateway"
	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/internal/testpki"
)

// filesConfig is a gateway config that names every kind of file and
// variable the gateway reads at start, as top-level sections in order;
// a row of TestValidateRefusesWhatServeRefuses replaces some.
var filesConfig = []struct{ key, yaml string }{
	{"listen", `listen: "127.0.0.1:0"`},
	{"tls_listen", `tls_listen: "127.0.0.1:0"`},
	{"admin_listen", `admin_listen: "127.0.0.1:0"`},
	{"policy", `policy: policy.yaml`},
	{"ca", "ca:\n  cert: ca/ca.pem\n  key: ca/ca-key.pem"},
	{"tls", "tls:\n  cert: tls.pem\n  key: tls-key.pem\n  client_ca: client-ca.pem"},
	{"upstream", "upstream:\n  ca_bundle: bundle.pem"},
	{"admin", "admin:\n  token_file: admin.token\n  state_file: state.json\n  tls:\n    cert: admin-tls.pem\n    key: admin-tls-key.pem\n    client_ca: admin-client-ca.pem"},
	{"audit", "audit:\n  output: audit/audit.log\n  checkpoint:\n    key_file: checkpoint.key\n  fingerprint_key_file: fp.key"},
	{"run_tokens", "run_tokens:\n  workloads: [\"*\"]\n  key_file: run.key"},
	{"shutdown_timeout", "shutdown_timeout: 5s"},
}

// redisSection turns on the shared cache; serve fails on its files before
// it connects, so the address is never dialled.
const redisSection = "cache:\n  redis:\n    addrs: [\"127.0.0.1:1\"]\n    encryption_keys:\n      - id: k1\n        file: redis.key\n"

// filesContent writes the good files filesConfig names into dir.
func filesContent(t *testing.T) map[string][]byte {
	t.Helper()
	tmp := t.TempDir()
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	caCert, caKey, err := mitm.WriteCA(filepath.Join(tmp))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(tmp, "other"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := mitm.WriteCA(filepath.Join(tmp, "other"))
	if err != nil {
		t.Fatal(err)
	}
	auth, err := testpki.NewAuthority("credgate test listener CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := auth.Leaf("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	leafCert, leafKey, err := testpki.PEM(leaf)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	edPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	key32 := []byte(base64.StdEncoding.EncodeToString(make32(t)) + "\n")
	return map[string][]byte{
		"policy.yaml":         read(filepath.Join("testdata", "good-policy.yaml")),
		"ca/ca.pem":           read(caCert),
		"ca/ca-key.pem":       read(caKey),
		"other-ca-key.pem":    read(otherKey),
		"tls.pem":             leafCert,
		"tls-key.pem":         leafKey,
		"client-ca.pem":       read(caCert),
		"bundle.pem":          read(caCert),
		"admin.token":         []byte("0123456789abcdef0123456789abcdef\n"),
		"admin-tls.pem":       leafCert,
		"admin-tls-key.pem":   leafKey,
		"admin-client-ca.pem": read(caCert),
		"checkpoint.key":      edPEM,
		"fp.key":              key32,
		"run.key":             edPEM,
		"redis.key":           key32,
		"audit/.keep":         nil,
	}
}

func make32(t *testing.T) []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestValidateRefusesWhatServeRefuses is the class test of validate
// against serve: for every file and variable the gateway config names,
// one bad content. Each row is run three ways: `credgate validate`,
// `credgate serve`, and gateway.New on the config as LoadConfig reads it
// (the start-up's own loaders, without the CLI's check of the files).
// All three must refuse it with the same cause, and validate and serve
// must name the key's FILE:LINE:COL; the good row starts and stops.
func TestValidateRefusesWhatServeRefuses(t *testing.T) {
	setEnv(t)
	good := filesContent(t)
	const notPEM = "this is not PEM\n"
	tests := []struct {
		name     string
		files    map[string]string // replaced contents; "-" removes the file
		sections map[string]string // replaced config sections; "" removes one
		env      map[string]string
		cause    string   // in every refusal
		newCause string   // in gateway.New's instead, when the OS words it
		at       []string // the key whose value the error points at
	}{
		{name: "good"},
		{name: "policy missing", files: map[string]string{"policy.yaml": "-"},
			cause: "does not exist", newCause: "no such file or directory", at: []string{"policy"}},
		{name: "ca.cert not PEM", files: map[string]string{"ca/ca.pem": notPEM},
			cause: "failed to find any PEM data in certificate input", at: []string{"ca", "cert"}},
		{name: "ca.key of another CA", files: map[string]string{"ca/ca-key.pem": "@other-ca-key.pem"},
			cause: "private key does not match public key", at: []string{"ca", "key"}},
		{name: "tls.cert not PEM", files: map[string]string{"tls.pem": notPEM},
			cause: "failed to find any PEM data in certificate input", at: []string{"tls", "cert"}},
		{name: "tls.key of another certificate", files: map[string]string{"tls-key.pem": "@other-ca-key.pem"},
			cause: "private key does not match public key", at: []string{"tls", "key"}},
		{name: "tls.client_ca not PEM", files: map[string]string{"client-ca.pem": notPEM},
			cause: "holds no PEM certificate", at: []string{"tls", "client_ca"}},
		{name: "tls.client_ca a leaf certificate", files: map[string]string{"client-ca.pem": "@tls.pem"},
			cause: "not a CA certificate", at: []string{"tls", "client_ca"}},
		{name: "tls.client_ca a CA and a leaf", files: map[string]string{"client-ca.pem": "@ca/ca.pem+tls.pem"},
			cause: "certificate 2 (subject \"CN=localhost\"): not a CA certificate", at: []string{"tls", "client_ca"}},
		{name: "upstream.ca_bundle not PEM", files: map[string]string{"bundle.pem": notPEM},
			cause: "holds no PEM certificate", at: []string{"upstream", "ca_bundle"}},
		{name: "upstream.ca_bundle a CA and a key", files: map[string]string{"bundle.pem": "@ca/ca.pem+tls-key.pem"},
			cause: "PEM block (block 2); a CA bundle holds only CERTIFICATE blocks", at: []string{"upstream", "ca_bundle"}},
		{name: "upstream.ca_bundle a CA and a damaged block", files: map[string]string{"bundle.pem": string(good["ca/ca.pem"]) + "-----BEGIN CERTIFICATE-----\n!!not base64\n-----END CERTIFICATE-----\n"},
			cause: "bundle.pem: PEM block 2 does not decode", at: []string{"upstream", "ca_bundle"}},
		{name: "admin.token_file too short", files: map[string]string{"admin.token": "short"},
			cause: "holds 5 characters", at: []string{"admin", "token_file"}},
		{name: "admin.token_env unset", sections: map[string]string{"admin": "admin:\n  token_env: CREDGATE_TEST_UNSET_TOKEN"},
			cause: "environment variable CREDGATE_TEST_UNSET_TOKEN is not set", at: []string{"admin", "token_env"}},
		{name: "admin.state_file not JSON", files: map[string]string{"state.json": "{not json"},
			cause: "is not valid JSON", at: []string{"admin", "state_file"}},
		{name: "admin.state_file in a missing directory", sections: map[string]string{"admin": "admin:\n  token_file: admin.token\n  state_file: no-such-dir/state.json"},
			cause: "no-such-dir does not exist", at: []string{"admin", "state_file"}},
		{name: "admin.tls.cert not PEM", files: map[string]string{"admin-tls.pem": notPEM},
			cause: "failed to find any PEM data in certificate input", at: []string{"admin", "tls", "cert"}},
		{name: "admin.tls.client_ca not PEM", files: map[string]string{"admin-client-ca.pem": notPEM},
			cause: "holds no PEM certificate", at: []string{"admin", "tls", "client_ca"}},
		{name: "admin.tls.client_ca a leaf certificate", files: map[string]string{"admin-client-ca.pem": "@admin-tls.pem"},
			cause: "not a CA certificate", at: []string{"admin", "tls", "client_ca"}},
		{name: "audit.output in a missing directory", sections: map[string]string{"audit": "audit:\n  output: no-such-dir/audit.log"},
			cause: "no-such-dir", at: []string{"audit", "output"}},
		{name: "audit.checkpoint.key_file not PEM", files: map[string]string{"checkpoint.key": notPEM},
			cause: "not a PEM \"PRIVATE KEY\" block", at: []string{"audit", "checkpoint", "key_file"}},
		{name: "audit.fingerprint_key_file not base64", files: map[string]string{"fp.key": "not base64!"},
			cause: "want at least 16 random bytes in base64", at: []string{"audit", "fingerprint_key_file"}},
		{name: "run_tokens.key_file not PEM", files: map[string]string{"run.key": notPEM},
			cause: "holds no PEM block", at: []string{"run_tokens", "key_file"}},
		{name: "cache.redis.encryption_keys file not base64", files: map[string]string{"redis.key": "not base64!"},
			sections: map[string]string{"cache": redisSection},
			cause:    "must hold 32 random bytes in base64", at: []string{"cache", "redis", "encryption_keys", "0", "file"}},
		{name: "cache.redis.encryption_keys env unset",
			sections: map[string]string{"cache": "cache:\n  redis:\n    addrs: [\"127.0.0.1:1\"]\n    encryption_keys:\n      - id: k1\n        env: CREDGATE_TEST_UNSET_KEY\n"},
			cause:    "environment variable CREDGATE_TEST_UNSET_KEY is not set", at: []string{"cache", "redis", "encryption_keys", "0", "env"}},
		{name: "cache.redis.password_env unset",
			sections: map[string]string{"cache": redisSection + "    password_env: CREDGATE_TEST_UNSET_PASSWORD\n"},
			cause:    "environment variable CREDGATE_TEST_UNSET_PASSWORD is not set", at: []string{"cache", "redis", "password_env"}},
		{name: "cache.redis.tls.ca not PEM", files: map[string]string{"redis-ca.pem": notPEM},
			sections: map[string]string{"cache": redisSection + "    tls:\n      enabled: true\n      ca: redis-ca.pem\n"},
			cause:    "holds no PEM certificate", at: []string{"cache", "redis", "tls", "ca"}},
		{name: "cache.redis.tls.ca a CA and a key", files: map[string]string{"redis-ca.pem": "@ca/ca.pem+tls-key.pem"},
			sections: map[string]string{"cache": redisSection + "    tls:\n      enabled: true\n      ca: redis-ca.pem\n"},
			cause:    "PEM block (block 2)", at: []string{"cache", "redis", "tls", "ca"}},
		{name: "audit.otlp header env unset",
			sections: map[string]string{"audit": "audit:\n  otlp:\n    endpoint: \"127.0.0.1:1\"\n    insecure: true\n    headers:\n      x-api-key:\n        env: CREDGATE_TEST_UNSET_HEADER"},
			cause:    "environment variable CREDGATE_TEST_UNSET_HEADER is not set", at: []string{"audit", "otlp", "headers"}},
		{name: "audit.otlp.ca not PEM", files: map[string]string{"otlp-ca.pem": notPEM},
			sections: map[string]string{"audit": "audit:\n  otlp:\n    endpoint: \"127.0.0.1:1\"\n    ca: otlp-ca.pem"},
			cause:    "holds no PEM certificate", at: []string{"audit", "otlp", "ca"}},
		{name: "tracing.ca not PEM", files: map[string]string{"otlp-ca.pem": notPEM},
			sections: map[string]string{"tracing": "tracing:\n  enabled: true\n  endpoint: \"127.0.0.1:1\"\n  ca: otlp-ca.pem"},
			cause:    "holds no PEM certificate", at: []string{"tracing", "ca"}},
		{name: "identity.mtls.bundles file not PEM", files: map[string]string{"trust.pem": notPEM},
			sections: map[string]string{
				"tls":      "tls:\n  cert: tls.pem\n  key: tls-key.pem",
				"identity": "identity:\n  mtls:\n    bundles:\n      - file: trust.pem"},
			cause: "holds no PEM certificate", at: []string{"identity", "mtls", "bundles", "0", "file"}},
		{name: "identity.mtls.bundles a leaf certificate", files: map[string]string{"trust.pem": "@tls.pem"},
			sections: map[string]string{
				"tls":      "tls:\n  cert: tls.pem\n  key: tls-key.pem",
				"identity": "identity:\n  mtls:\n    bundles:\n      - file: trust.pem"},
			cause: "not a CA certificate", at: []string{"identity", "mtls", "bundles", "0", "file"}},
		{name: "identity.jwt jwks_file not JSON", files: map[string]string{"jwks.json": "not json"},
			sections: map[string]string{"identity": "identity:\n  jwt:\n    issuers:\n      - issuer: https://issuer.test\n        audiences: [credgate]\n        jwks_file: jwks.json"},
			cause:    "not a JSON Web Key Set", at: []string{"identity", "jwt", "issuers", "0", "jwks_file"}},
		{name: "identity.jwt jwks_file missing",
			sections: map[string]string{"identity": "identity:\n  jwt:\n    issuers:\n      - issuer: https://issuer.test\n        audiences: [credgate]\n        jwks_file: no-such-jwks.json"},
			cause:    "does not exist", newCause: "no such file or directory", at: []string{"identity", "jwt", "issuers", "0", "jwks_file"}},
		{name: "identity.mtls.bundles file missing",
			sections: map[string]string{
				"tls":      "tls:\n  cert: tls.pem\n  key: tls-key.pem",
				"identity": "identity:\n  mtls:\n    bundles:\n      - file: no-such-trust.pem"},
			cause: "does not exist", newCause: "no such file or directory", at: []string{"identity", "mtls", "bundles", "0", "file"}},
		{name: "identity.posture file not JSON", files: map[string]string{"posture.json": "[1, 2]"},
			sections: map[string]string{"identity": "identity:\n  posture:\n    file: posture.json"},
			cause:    "not a JSON object keyed by workload name", at: []string{"identity", "posture", "file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, b := range good {
				writeFile(t, filepath.Join(dir, name), b)
			}
			for name, s := range tt.files {
				p := filepath.Join(dir, name)
				switch {
				case s == "-":
					if err := os.Remove(p); err != nil {
						t.Fatal(err)
					}
				case strings.HasPrefix(s, "@"):
					// @a+b: the good contents of a and b, one after the other.
					var content []byte
					for f := range strings.SplitSeq(s[1:], "+") {
						content = append(content, good[f]...)
					}
					writeFile(t, p, content)
				default:
					writeFile(t, p, []byte(s))
				}
			}
			var cfg []string
			seen := map[string]bool{}
			for _, s := range filesConfig {
				seen[s.key] = true
				if r, ok := tt.sections[s.key]; ok {
					if r != "" {
						cfg = append(cfg, strings.TrimRight(r, "\n"))
					}
					continue
				}
				cfg = append(cfg, s.yaml)
			}
			for k, r := range tt.sections {
				if !seen[k] {
					cfg = append(cfg, strings.TrimRight(r, "\n"))
				}
			}
			text := strings.Join(cfg, "\n") + "\n"
			path := filepath.Join(dir, "credgate.yaml")
			writeFile(t, path, []byte(text))

			v := runCLI(t, "validate", "-c", path)
			if tt.cause == "" {
				if v.code != 0 {
					t.Fatalf("validate: exit %d, want 0:\n%s%s", v.code, v.stdout, v.stderr)
				}
				if _, err := os.Stat(filepath.Join(dir, "audit", "audit.log")); err == nil {
					t.Errorf("validate created audit.output")
				}
				serveGood(t, path)
				return
			}
			line, col := valueAt(t, text, tt.at...)
			prefix := path + ":" + strconv.Itoa(line) + ":" + strconv.Itoa(col) + ": "
			var vline string
			for _, l := range strings.Split(v.stdout, "\n") {
				if strings.Contains(l, tt.cause) {
					vline = l
				}
			}
			if v.code != exitError || !strings.HasPrefix(vline, prefix) {
				t.Errorf("validate: exit %d, output:\n%s\nwant exit 1 and a line %s...%s...", v.code, v.stdout, prefix, tt.cause)
			}
			// The message names the key, not only its position: the
			// reader of a log line has no file open at that line.
			if kp := dottedKey(tt.at); strings.HasPrefix(vline, prefix) && !strings.Contains(vline[len(prefix):], kp) {
				t.Errorf("validate: %s\ndoes not name the key %s", vline, kp)
			}
			if _, err := os.Stat(filepath.Join(dir, "no-such-dir")); err == nil {
				t.Errorf("validate created no-such-dir")
			}

			// A serve that started would run until this deadline.
			sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var sout, serr strings.Builder
			s := result{code: run(sctx, []string{"serve", "-c", path}, &sout, &serr)}
			s.stderr = serr.String()
			if s.code != exitError || !strings.Contains(s.stderr, prefix) || !strings.Contains(s.stderr, tt.cause) {
				t.Errorf("serve: exit %d, stderr:\n%s\nwant exit 1 and %s...%s...", s.code, s.stderr, prefix, tt.cause)
			}
			if vline != "" && !strings.Contains(s.stderr, vline) {
				t.Errorf("serve's error differs from validate's:\nserve:    %s\nvalidate: %s", strings.TrimSpace(s.stderr), vline)
			}

			// The start-up itself, without the CLI's check: it must refuse
			// the same thing, so that the check is not stricter than serve.
			gcfg, err := gateway.LoadConfig(path)
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			gw, err := gateway.New(context.Background(), gcfg, gateway.Options{})
			if err == nil {
				gw.Close()
				t.Fatalf("gateway.New accepted the config that validate refuses (%s)", tt.cause)
			}
			cause := tt.cause
			if tt.newCause != "" {
				cause = tt.newCause
			}
			if !strings.Contains(err.Error(), cause) {
				t.Errorf("gateway.New: %v\nwant the cause %q", err, cause)
			}
			t.Logf("validate: %s\nserve:    %s", vline, strings.TrimSpace(s.stderr))
		})
	}
}

// serveGood runs serve on path until it serves, then stops it.
func serveGood(t *testing.T, path string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := new(syncBuffer)
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "-c", path}, io.Discard, stderr) }()
	exited := false
	waitFor(t, "credgate serving", func() bool {
		select {
		case c := <-done:
			exited = true
			t.Fatalf("serve exited %d:\n%s", c, stderr.String())
		default:
		}
		return strings.Contains(stderr.String(), `"msg":"credgate serving"`)
	})
	cancel()
	if !exited {
		select {
		case c := <-done:
			if c != 0 {
				t.Errorf("serve: exit %d after stop:\n%s", c, stderr.String())
			}
		case <-time.After(15 * time.Second):
			t.Fatal("serve did not stop")
		}
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if b == nil {
		return
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// dottedKey writes keys as the messages do: "cache.redis.encryption_keys[0].file".
func dottedKey(keys []string) string {
	var b strings.Builder
	for i, k := range keys {
		if _, err := strconv.Atoi(k); err == nil {
			b.WriteString("[" + k + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(k)
	}
	return b.String()
}

// valueAt is the line and column of the value at keys in the YAML text.
func valueAt(t *testing.T, text string, keys ...string) (int, int) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	n := doc.Content[0]
	for _, k := range keys {
		var next *yaml.Node
		if i, err := strconv.Atoi(k); err == nil && n.Kind == yaml.SequenceNode {
			next = n.Content[i]
		}
		for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			t.Fatalf("no key %v in:\n%s", keys, text)
		}
		n = next
	}
	return n.Line, n.Column
}
