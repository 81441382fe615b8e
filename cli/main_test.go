package cli

import (
	"bytes"
	"context"
	"flag"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/internal/poll"

	"github.com/credgate/credgate/internal/syncbuf"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// result is one in-process run of the command.
type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// golden compares got with testdata/name.golden, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

// setEnv gives the static credentials in testdata policies their values.
func setEnv(t *testing.T) {
	t.Setenv("CREDGATE_TEST_STRIPE_KEY", "sk_test_not_a_real_key_0123456789")
	t.Setenv("CREDGATE_TEST_PARTNER_KEY", "partner-not-a-real-key-0123456789")
}

// gatewayDir writes a gateway config, its policy (testdata/good-policy.yaml)
// and a fresh CA into a temporary directory and returns the config path.
func gatewayDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	pol, err := os.ReadFile(filepath.Join("testdata", "good-policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), pol, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "ca"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := mitm.WriteCA(filepath.Join(dir, "ca")); err != nil {
		t.Fatal(err)
	}
	cfg := `listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
policy: policy.yaml
ca:
  cert: ca/ca.pem
  key: ca/ca-key.pem
log:
  level: info
shutdown_timeout: 5s
`
	path := filepath.Join(dir, "credgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestVersion(t *testing.T) {
	r := runCLI(t, "version")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	got := strings.ReplaceAll(r.stdout, runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH, "GOVERSION GOOS/GOARCH")
	golden(t, "version", got)
}

func TestValidate(t *testing.T) {
	setEnv(t)
	tests := []struct {
		name     string
		file     string
		wantCode int
	}{
		{name: "validate-good-policy", file: "testdata/good-policy.yaml", wantCode: 0},
		{name: "validate-bad-policy", file: "testdata/bad-policy.yaml", wantCode: 1},
		{name: "validate-syntax", file: "testdata/syntax.yaml", wantCode: 1},
		{name: "validate-neither", file: "testdata/neither.yaml", wantCode: 1},
		{name: "validate-bad-gateway", file: "testdata/bad-gateway.yaml", wantCode: 1},
		{name: "validate-missing", file: "testdata/no-such-file.yaml", wantCode: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, "validate", "-c", tt.file)
			if r.code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stdout %q, stderr %q)", r.code, tt.wantCode, r.stdout, r.stderr)
			}
			golden(t, tt.name, r.stdout+r.stderr)
		})
	}
}

func TestValidateGatewayConfig(t *testing.T) {
	setEnv(t)
	path := gatewayDir(t)
	r := runCLI(t, "validate", "-c", path)
	if r.code != 0 {
		t.Fatalf("exit %d, stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	got := strings.ReplaceAll(r.stdout, filepath.Dir(path), "DIR")
	golden(t, "validate-gateway", got)
}

func TestValidateExamples(t *testing.T) {
	t.Setenv("STRIPE_SECRET_KEY", "sk_test_not_a_real_key_0123456789")
	t.Setenv("OPENAI_API_KEY", "sk-not-a-real-key-0123456789")
	files, err := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if filepath.Base(f) == "credgate.yaml" {
				t.Skip("the example gateway config names a CA that ca init writes on the user's machine")
			}
			r := runCLI(t, "validate", "-c", f)
			if r.code != 0 || !strings.Contains(r.stdout, ": ok (") {
				t.Errorf("validate %s: exit %d\n%s%s", f, r.code, r.stdout, r.stderr)
			}
			// No false positive of the shadowed-rule warning on a
			// ready policy.
			if strings.Contains(r.stdout, "warning:") {
				t.Errorf("validate %s warns:\n%s", f, r.stdout)
			}
		})
	}
}

func TestValidateList(t *testing.T) {
	r := runCLI(t, "validate", "--list")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"providers:", "static", "injectors:", "bearer", "header", "basic", "query", "factors:", "source"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("validate --list output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestExplain(t *testing.T) {
	setEnv(t)
	tests := []struct {
		name     string
		args     []string
		wantCode int
	}{
		{name: "explain-inject", args: []string{"--source", "10.1.2.3", "POST", "https://api.stripe.com/v1/charges"}, wantCode: 0},
		{name: "explain-path-denied", args: []string{"--source", "10.1.2.3", "GET", "https://api.stripe.com/v1/balance"}, wantCode: 3},
		{name: "explain-method-denied", args: []string{"--source", "10.1.2.3", "DELETE", "https://api.stripe.com/v1/customers/cus_1"}, wantCode: 3},
		{name: "explain-wrong-workload", args: []string{"--source", "192.0.2.9", "GET", "https://api.stripe.com/v1/charges"}, wantCode: 3},
		{name: "explain-anonymous", args: []string{"--workload-less", "GET", "https://http-intake.logs.datadoghq.com/api/v2/logs"}, wantCode: 3},
		{name: "explain-tunnel", args: []string{"--source", "10.1.2.3", "POST", "https://http-intake.logs.datadoghq.com/api/v2/logs"}, wantCode: 0},
		{name: "explain-plaintext", args: []string{"GET", "http://api.partner.test/v2/items?x=1"}, wantCode: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"explain", "-c", "testdata/good-policy.yaml"}, tt.args...)
			r := runCLI(t, args...)
			if r.code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stdout %q, stderr %q)", r.code, tt.wantCode, r.stdout, r.stderr)
			}
			golden(t, tt.name, r.stdout+r.stderr)
		})
	}
}

// TestExplainRanges: explain prints the ranges setting in force: the
// default of a signing-only rule (pass), of a signing rule whose
// credential has a placeholder (whole), and an explicit one.
func TestExplainRanges(t *testing.T) {
	setEnv(t)
	for name, url := range map[string]string{
		"explain-ranges-sigv4":       "https://s3.eu-west-1.amazonaws.com/bucket/key",
		"explain-ranges-placeholder": "https://agent.s3.eu-west-1.amazonaws.com/key",
		"explain-ranges-refuse":      "https://api.stripe.com/v1/files/file_1/contents",
	} {
		t.Run(name, func(t *testing.T) {
			r := runCLI(t, "explain", "-c", "testdata/ranges-policy.yaml", "GET", url)
			if r.code != 0 {
				t.Errorf("exit code = %d, want 0 (stdout %q, stderr %q)", r.code, r.stdout, r.stderr)
			}
			golden(t, name, r.stdout+r.stderr)
		})
	}
}

// TestExplainAddress: explain applies the gateway's special-purpose
// address check to IP literals and resolve map entries, naming the range.
func TestExplainAddress(t *testing.T) {
	tests := []struct {
		name     string
		url      string
		wantCode int
	}{
		{name: "explain-address-private", url: "https://10.0.0.5/v1", wantCode: 3},
		{name: "explain-address-metadata", url: "https://169.254.169.254/latest/meta-data/", wantCode: 3},
		{name: "explain-address-public", url: "https://93.184.216.34/", wantCode: 0},
		{name: "explain-address-allowed", url: "https://10.0.0.6/", wantCode: 0},
		{name: "explain-address-pinned-allowed", url: "https://internal.test/", wantCode: 0},
		{name: "explain-address-pinned-refused", url: "https://pinned.test/", wantCode: 3},
	}
	// The config names a CA, which must exist: copy it beside one.
	dir := t.TempDir()
	for _, f := range []string{"address-gateway.yaml", "address-policy.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if r := runCLI(t, "ca", "init", "--out", filepath.Join(dir, "ca")); r.code != 0 {
		t.Fatalf("ca init: %s%s", r.stdout, r.stderr)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, "explain", "-c", filepath.Join(dir, "address-gateway.yaml"), "GET", tt.url)
			if r.code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stdout %q, stderr %q)", r.code, tt.wantCode, r.stdout, r.stderr)
			}
			golden(t, tt.name, r.stdout+r.stderr)
		})
	}
}

func TestExplainErrors(t *testing.T) {
	setEnv(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "bad source", args: []string{"--source", "nope", "GET", "https://api.stripe.com/"}, want: "is not an IP address"},
		{name: "bad scheme", args: []string{"GET", "ftp://api.stripe.com/"}, want: "scheme must be https or http"},
		{name: "both", args: []string{"--source", "10.0.0.1", "--workload-less", "GET", "https://api.stripe.com/"}, want: "exclude each other"},
		{name: "one arg", args: []string{"GET"}, want: "accepts 2 arg(s)"},
		{name: "header without colon", args: []string{"-H", "X-Ticket", "GET", "https://api.stripe.com/"}, want: "want \"Name: value\""},
		{name: "Host header", args: []string{"-H", "Host: other.test", "GET", "https://api.stripe.com/"}, want: "the URL names the host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"explain", "-c", "testdata/good-policy.yaml"}, tt.args...)
			r := runCLI(t, args...)
			if r.code != exitError || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit 1 and %q", r.code, r.stderr, tt.want)
			}
		})
	}
}

func TestCAInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	r := runCLI(t, "ca", "init", "--out", dir)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, f := range []string{"ca.pem", "ca-key.pem"} {
		if !strings.Contains(r.stdout, filepath.Join(dir, f)) {
			t.Errorf("output does not name %s:\n%s", f, r.stdout)
		}
	}
	st, err := os.Stat(filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("ca-key.pem mode = %v, want 0600", st.Mode().Perm())
	}
	if _, err := mitm.LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")); err != nil {
		t.Errorf("LoadCA: %v", err)
	}
	again := runCLI(t, "ca", "init", "--out", dir)
	if again.code != exitError {
		t.Errorf("second ca init: exit %d, want 1 (refuse to overwrite); stderr %q", again.code, again.stderr)
	}
}

// TestCAInitPermit: --permit writes critical name constraints (DNS
// domains, IP prefixes, and no IP at all without one); a value that is
// neither a domain nor a prefix is refused, naming it, and nothing is
// written.
func TestCAInitPermit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	r := runCLI(t, "ca", "init", "--out", dir, "--permit", "example.com", "--permit", "partner.test,10.0.0.0/8")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	ca, err := mitm.LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Cert
	if !c.PermittedDNSDomainsCritical || strings.Join(c.PermittedDNSDomains, ",") != "example.com,partner.test" || len(c.PermittedIPRanges) != 1 || c.PermittedIPRanges[0].String() != "10.0.0.0/8" {
		t.Errorf("constraints: critical %v, DNS %v, IP %v", c.PermittedDNSDomainsCritical, c.PermittedDNSDomains, c.PermittedIPRanges)
	}
	bad := filepath.Join(t.TempDir(), "ca")
	r = runCLI(t, "ca", "init", "--out", bad, "--permit", "*.example.com")
	if r.code != exitError || !strings.Contains(r.stderr, `permit "*.example.com"`) || strings.Contains(r.stderr, "mitm:") {
		t.Errorf("--permit '*.example.com': exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(bad, "ca.pem")); err == nil {
		t.Error("a CA was written for a refused --permit")
	}
}

func TestServeBadConfig(t *testing.T) {
	r := runCLI(t, "serve", "-c", "testdata/bad-gateway.yaml")
	if r.code != exitError {
		t.Fatalf("exit %d, want 1", r.code)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "credgate: testdata/bad-gateway.yaml:2:") {
		t.Errorf("stderr = %q, want one line credgate: testdata/bad-gateway.yaml:2:...", r.stderr)
	}
}

// syncBuffer captures output goroutines write while the test reads.
type syncBuffer = syncbuf.Buffer

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.True(t, 15*time.Second, what, cond)
}

func TestServeReloadAndStop(t *testing.T) {
	setEnv(t)
	path := gatewayDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "-c", path}, &stdout, &stderr) }()

	waitFor(t, "credgate serving", func() bool { return strings.Contains(stderr.String(), `"msg":"credgate serving"`) })
	// Go's log package (net/http's Transport, OpenTelemetry) writes to
	// the JSON log while serve runs, quoted peer bytes elided.
	before := log.Writer()
	log.Printf("Unsolicited response received on idle HTTP channel starting with %q; err=<nil>", "X-Echo: Bearer sk_served_secret")
	if out := stderr.String(); strings.Contains(out, "sk_served_secret") ||
		!strings.Contains(out, `"level":"WARN","msg":"Unsolicited response received on idle HTTP channel starting with \"[31 bytes elided]\"; err=<nil>"`) {
		t.Errorf("a line of Go's log package is not a JSON record with its quoted bytes elided:\n%s", out)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reload on SIGHUP", func() bool { return strings.Contains(stderr.String(), "SIGHUP") })
	if !strings.Contains(stderr.String(), `"msg":"policy reloaded on SIGHUP"`) {
		t.Errorf("reload of an unchanged valid policy failed:\n%s", stderr.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exit %d:\n%s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop after its context was cancelled")
	}
	if log.Writer() == before {
		t.Error("Go's log package still writes to the stopped gateway's log")
	}
}

func TestDemoOnce(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	r := runCLI(t, "demo", "--once")
	if r.code != 0 {
		t.Fatalf("demo --once: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		`"credential_injected": true`,
		`"Authorization": "Bearer demo…(32 chars)"`,
		"ok: the origin received Bearer demo…(32 chars)",
		"gateway answered: 200 OK",
		`"echoed_authorization": "Bearer [REDACTED]*`,
		"ok: the gateway scrubbed the echoed credential",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("demo left %d entries in its temp dir parent, want 0 (cleanup)", len(left))
	}
}
