package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/identity/runtoken"
)

// TestExplainRunToken: with run_tokens.key_file, explain verifies a run
// token like the gateway and names the workload it selects; a token of
// another key is the gateway's refusal.
func TestExplainRunToken(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := mitm.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyFile := write("run.key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	write("admin.token", "explain-admin-token-0123456789")
	write("policy.yaml", `workloads:
  agent:
    claims: {iss: "urn:credgate:run", sub: agent}
    require: [jwt]
destinations:
  api: {hosts: [api.example.com]}
credentials:
  k: {provider: static, env: HOME}
rules:
  - {name: agent-api, from: agent, to: api, inject: {credential: k, as: bearer}}
default: deny
`)
	cfg := write("credgate.yaml", "policy: policy.yaml\nca: {cert: ca.pem, key: ca-key.pem}\nadmin: {token_file: admin.token}\nrun_tokens: {workloads: [agent], key_file: run.key}\n")
	is, err := runtoken.New(runtoken.Config{Workloads: []string{"agent"}, KeyFile: keyFile}, runtoken.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := is.Issue("agent", 0)
	tokFile := write("run.token", tok.Value.Reveal())
	r := runCLI(t, "explain", "-c", cfg, "--token-file", tokFile, "GET", "https://api.example.com/v1/x")
	if r.code != 0 || !strings.Contains(r.stdout, "agent (verified:") || !strings.Contains(r.stdout, "jwt") {
		t.Errorf("explain with a run token: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	other, _ := runtoken.New(runtoken.Config{Workloads: []string{"agent"}}, runtoken.Options{})
	forged, _ := other.Issue("agent", 0)
	write("forged.token", forged.Value.Reveal())
	r = runCLI(t, "explain", "-c", cfg, "--token-file", filepath.Join(dir, "forged.token"), "GET", "https://api.example.com/v1/x")
	if r.code != exitDenied || !strings.Contains(r.stdout, "identity_invalid") {
		t.Errorf("explain with another key's token: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, forged.Value.Reveal()) {
		t.Error("explain printed the token")
	}
}

// TestRunChildExitCode: the command's exit code, 128+N for a signal N.
func TestRunChildExitCode(t *testing.T) {
	for _, c := range []struct {
		script string
		want   int
	}{{"exit 0", 0}, {"exit 7", 7}, {"kill -TERM $$", 143}} {
		code, err := runChild(t.Context(), []string{"sh", "-c", c.script}, os.Environ(), nil, io.Discard, io.Discard)
		if err != nil || code != c.want {
			t.Errorf("sh -c %q: %d %v, want %d", c.script, code, err, c.want)
		}
	}
	if _, err := runChild(t.Context(), []string{"credgate-no-such-command"}, nil, nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "executable file not found") {
		t.Errorf("a missing command: %v", err)
	}
}
