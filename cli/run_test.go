package cli

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/gateway"
	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/identity/runtoken"
	"github.com/credgate/credgate/internal/runrelay"
	"github.com/credgate/credgate/internal/testpki"
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
	var ec *exitCode
	if _, err := runChild(t.Context(), []string{"credgate-no-such-command"}, nil, nil, io.Discard, io.Discard); !errors.As(err, &ec) || ec.code != exitNotFound || !strings.Contains(err.Error(), "command not found") {
		t.Errorf("a missing command: %v", err)
	}
}

// TestRunCommandNotFoundIssuesNoToken: a command that is not there exits
// 127 before credgate run asks for a token (none issued, none to revoke)
// and leaves no files. The e2e TestCredgateRunProcess has the other codes.
func TestRunCommandNotFoundIssuesNoToken(t *testing.T) {
	var calls atomic.Int32
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "no", http.StatusTeapot)
	}))
	defer admin.Close()
	ca, err := testpki.NewAuthority("credgate run test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Setenv("CREDGATE_ADMIN_TOKEN", "run-test-admin-token-0123456789")
	var out, errb bytes.Buffer
	code := run(t.Context(), []string{"run", "--ca", caFile, "--gateway", "127.0.0.1:9", "--admin", admin.URL, "--workload", "agent", "--", "credgate-no-such-command"}, &out, &errb)
	if code != exitNotFound || !strings.Contains(errb.String(), "credgate-no-such-command: command not found") {
		t.Errorf("exit %d %s, want %d: command not found", code, errb.String(), exitNotFound)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the admin API was called %d times", n)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left %s behind", left[0].Name())
	}
}

// TestRunKeepsAdminCredentials: the admin token (or the files of the
// token and the admin client certificate) that let credgate run ask for
// the run token never reach the command: with them it could issue tokens
// for any workload and use the whole admin API. --print-env unsets them
// in the shell it is evaluated in. Before, the command inherited all four.
func TestRunKeepsAdminCredentials(t *testing.T) {
	ca, err := testpki.NewAuthority("credgate run test CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	// The admin client certificate's files: credgate run loads them for
	// an https admin URL (which it never calls without --workload).
	certFile, keyFile, err := ca.WriteFiles(t.TempDir(), "admin")
	if err != nil {
		t.Fatal(err)
	}
	const adminToken = "run-test-admin-token-0123456789"
	t.Setenv("TMPDIR", t.TempDir())
	t.Setenv("CREDGATE_ADMIN_TOKEN", adminToken)
	t.Setenv("CREDGATE_ADMIN_TOKEN_FILE", filepath.Join(t.TempDir(), "admin.token"))
	t.Setenv("CREDGATE_ADMIN_CERT", certFile)
	t.Setenv("CREDGATE_ADMIN_KEY", keyFile)
	t.Setenv("CREDGATE_ADMIN_URL", "https://127.0.0.1:9")
	t.Setenv("CREDGATE_RUN_TEST_KEPT", "kept")
	var out, errb bytes.Buffer
	code := run(t.Context(), []string{"run", "--ca", caFile, "--gateway", "127.0.0.1:9", "--", "env"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, k := range adminCredentialVars {
		if strings.Contains(out.String(), k+"=") {
			t.Errorf("the command's environment holds %s", k)
		}
	}
	if !strings.Contains(out.String(), "CREDGATE_RUN_TEST_KEPT=kept") || !strings.Contains(out.String(), "HTTPS_PROXY=") {
		t.Errorf("the command's environment lost the rest:\n%s", out.String())
	}
	out.Reset()
	if code := run(t.Context(), []string{"run", "--print-env", "--ca", caFile, "--gateway", "127.0.0.1:9"}, &out, &errb); code != 0 {
		t.Fatalf("--print-env: exit %d: %s", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "unset CREDGATE_ADMIN_TOKEN CREDGATE_ADMIN_TOKEN_FILE CREDGATE_ADMIN_CERT CREDGATE_ADMIN_KEY\n") || strings.Contains(out.String(), adminToken) {
		t.Errorf("--print-env:\n%s", out.String())
	}
	sh, err := exec.Command("sh", "-c", out.String()+`printf '%s' "${CREDGATE_ADMIN_TOKEN-unset}"`).Output()
	if err != nil || string(sh) != "unset" {
		t.Errorf("sh after the printed lines: %q %v", sh, err)
	}
}

// TestRunWarnsOfClearTextToken: with a token and a gateway that is not
// this machine, credgate run says the token crosses the network in clear
// text (an http:// proxy URL), naming neither the token nor anything of
// it; to a loopback gateway it says nothing. The token is revoked at exit.
func TestRunWarnsOfClearTextToken(t *testing.T) {
	const runToken = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJl"
	var revoked atomic.Int32
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/admin/v1/run-tokens":
			_ = json.NewEncoder(w).Encode(gateway.RunTokenResponse{Token: runToken, ID: "j1", Workload: "agent", Expires: time.Now().Add(time.Minute)})
		case "/admin/v1/run-tokens/revoke":
			revoked.Add(1)
			_ = json.NewEncoder(w).Encode(gateway.RunTokenRevokeResponse{ID: "j1", Scope: "replica"})
		default:
			http.NotFound(w, r)
		}
	}))
	defer admin.Close()
	ca, err := testpki.NewAuthority("credgate run test CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", t.TempDir())
	t.Setenv("CREDGATE_ADMIN_TOKEN", "run-test-admin-token-0123456789")
	for gw, warn := range map[string]bool{"127.0.0.1:3128": false, "localhost:3128": false, "[::1]:3128": false, "gw.example.test:3128": true, "10.1.2.3:3128": true} {
		var out, errb bytes.Buffer
		code := run(t.Context(), []string{"run", "--ca", caFile, "--gateway", gw, "--admin", admin.URL, "--workload", "agent", "--", "true"}, &out, &errb)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", gw, code, errb.String())
		}
		if got := strings.Contains(errb.String(), "in clear text"); got != warn {
			t.Errorf("--gateway %s: warned %v, want %v: %s", gw, got, warn, errb.String())
		}
		for _, piece := range strings.Split(runToken, ".") {
			if strings.Contains(errb.String(), piece) {
				t.Errorf("--gateway %s: stderr holds a piece of the token: %s", gw, errb.String())
			}
		}
	}
	if n := revoked.Load(); n != 5 {
		t.Errorf("%d revocations, want 5", n)
	}
}

// TestRunRelayEnv: by default the command's proxy variables name credgate
// run's relay (a per-run secret, never the token), and so do Java's
// where the relay admits the command's own processes without it (Linux;
// elsewhere Java gets the
// gateway itself); --relay=false and --print-env put the token in the
// proxy URL, as documented.
func TestRunRelayEnv(t *testing.T) {
	const runToken = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.cmVsYXktZW52LXRlc3Q"
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/admin/v1/run-tokens":
			_ = json.NewEncoder(w).Encode(gateway.RunTokenResponse{Token: runToken, ID: "j1", Workload: "agent", Expires: time.Now().Add(time.Minute)})
		case "/admin/v1/run-tokens/revoke":
			_ = json.NewEncoder(w).Encode(gateway.RunTokenRevokeResponse{ID: "j1", Scope: "replica"})
		default:
			http.NotFound(w, r)
		}
	}))
	defer admin.Close()
	ca, err := testpki.NewAuthority("credgate run test CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", t.TempDir())
	t.Setenv("CREDGATE_ADMIN_TOKEN", "run-test-admin-token-0123456789")
	common := []string{"--ca", caFile, "--gateway", "127.0.0.1:3128", "--admin", admin.URL, "--workload", "agent"}
	for _, c := range []struct {
		name      string
		args      []string
		token     bool   // the token in what the command (or the shell) gets
		proxyPref string // HTTPS_PROXY's start
	}{
		{"relay", append(append([]string{"run"}, common...), "--", "env"), false, "HTTPS_PROXY=http://credgate:"},
		{"--relay=false", append(append([]string{"run", "--relay=false"}, common...), "--", "env"), true, "HTTPS_PROXY=http://token:"},
		{"--print-env", append([]string{"run", "--print-env"}, common...), true, "export HTTPS_PROXY=http://token:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(t.Context(), c.args, &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			if got := strings.Contains(out.String(), runToken); got != c.token {
				t.Errorf("the token in the output: %v, want %v", got, c.token)
			}
			var proxy string
			for _, l := range strings.Split(out.String(), "\n") {
				if strings.HasPrefix(l, c.proxyPref) {
					proxy = l
				}
			}
			if proxy == "" {
				t.Fatalf("no line starting %q:\n%s", c.proxyPref, out.String())
			}
			if !c.token && !strings.Contains(proxy, "@127.0.0.1:") {
				t.Errorf("HTTPS_PROXY is not the relay: %s", proxy)
			}
			// Java sends no proxy credentials: the relay where it admits
			// the command's processes without them, else the gateway.
			javaPort := "3128"
			if !c.token && runrelay.DescendantsSupported {
				u, err := url.Parse(strings.TrimPrefix(proxy, "HTTPS_PROXY="))
				if err != nil {
					t.Fatal(err)
				}
				javaPort = u.Port()
			}
			if !strings.Contains(out.String(), "-Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort="+javaPort+" ") {
				t.Errorf("Java's proxy is not 127.0.0.1:%s:\n%s", javaPort, out.String())
			}
		})
	}
}
