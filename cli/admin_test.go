package cli

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/credgate/credgate/gateway"
	"github.com/credgate/credgate/internal/testpki"
)

// startAdminGateway runs a gateway of gatewayDir's config plus an admin
// token file in-process and returns its admin URL and the token file.
func startAdminGateway(t *testing.T) (adminURL, tokenFile string) {
	t.Helper()
	return startAdminGatewayWith(t, "", nil)
}

// startAdminGatewayWith is startAdminGateway with adminExtra added to the
// admin block (indented two spaces) and its files written in the config's
// directory first.
func startAdminGatewayWith(t *testing.T, adminExtra string, files map[string][]byte) (adminURL, tokenFile string) {
	t.Helper()
	setEnv(t)
	path := gatewayDir(t)
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(filepath.Dir(path), name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tokenFile = filepath.Join(filepath.Dir(path), "admin.token")
	if err := os.WriteFile(tokenFile, []byte("cli-test-admin-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("admin:\n  token_file: admin.token\n" + adminExtra)
	f.Close()
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gw, err := gateway.New(ctx, cfg, gateway.Options{Audit: io.Discard})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	<-gw.Ready()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	scheme := "http://"
	if cfg.Admin.TLS.Enabled() {
		scheme = "https://"
	}
	return scheme + gw.AdminAddr().String(), tokenFile
}

var rfc3339 = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)

func TestAdmin(t *testing.T) {
	url, tok := startAdminGateway(t)
	t.Setenv("CREDGATE_ADMIN_TOKEN", "")
	t.Setenv("CREDGATE_ADMIN_TOKEN_FILE", "")
	admin := func(args ...string) result {
		t.Helper()
		return runCLI(t, append([]string{"admin", "--admin", url}, args...)...)
	}
	var transcript strings.Builder
	step := func(args ...string) result {
		t.Helper()
		r := admin(args...)
		shown := make([]string, len(args))
		for i, a := range args {
			shown[i] = a
			if strings.Contains(a, " ") {
				shown[i] = strconv.Quote(a)
			}
		}
		transcript.WriteString("$ credgate admin " + strings.Join(shown, " ") + "\n" + r.stdout + r.stderr)
		transcript.WriteString("exit " + string(rune('0'+r.code)) + "\n\n")
		return r
	}
	step("list")
	step("--token-file", tok, "list")
	if r := step("--token-file", tok, "disable", "rule", "billing-charges", "--by", "alice", "--reason", "INC-42 key leaked"); r.code != 0 {
		t.Fatalf("disable: %+v", r)
	}
	step("--token-file", tok, "disable", "rule", "billing-charges", "--by", "bob")
	step("--token-file", tok, "disable", "workload", "ghost", "--by", "alice")
	step("--token-file", tok, "list")
	step("--token-file", tok, "enable", "workload", "ghost", "--by", "alice")
	step("--token-file", tok, "enable", "workload", "ghost", "--by", "alice")
	// Errors.
	step("disable", "rule", "billing-charges")
	wrong := filepath.Join(filepath.Dir(tok), "wrong.token")
	if err := os.WriteFile(wrong, []byte("not-the-admin-token-at-all\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	step("--token-file", wrong, "disable", "rule", "billing-charges")
	step("--token-file", tok, "disable", "host", "x")
	step("--token-file", tok, "disable", "rule", "a,b")
	got := rfc3339.ReplaceAllString(transcript.String(), "2006-01-02T15:04:05Z")
	got = strings.ReplaceAll(got, url, "URL")
	got = strings.ReplaceAll(got, filepath.Dir(tok), "DIR")
	golden(t, "admin", got)

	if r := runCLI(t, "admin", "--admin", "http://127.0.0.1:1", "list"); r.code != exitError || !strings.Contains(r.stderr, "not reachable") {
		t.Errorf("unreachable gateway: %+v", r)
	}
	if r := runCLI(t, "admin", "--admin", "https://"+strings.TrimPrefix(url, "http://"), "list"); r.code != exitError || !strings.Contains(r.stderr, "the admin listener does not speak TLS: use an http:// --admin URL") {
		t.Errorf("https to a plain admin listener: %+v", r)
	}
	if r := runCLI(t, "admin", "--admin", "ftp://x", "list"); r.code != exitError || !strings.Contains(r.stderr, "is not a URL such as") {
		t.Errorf("bad URL: %+v", r)
	}
	t.Setenv("CREDGATE_ADMIN_TOKEN", "cli-test-admin-token-0123456789")
	if r := admin("enable", "rule", "billing-charges", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"changed":true`) {
		t.Errorf("enable with CREDGATE_ADMIN_TOKEN and --json: %+v", r)
	}
}

// TestAdminTLS: credgate admin against an admin listener with admin.tls
// and admin.tls.client_ca: --cacert trusts it, --cert/--key are the
// client certificate, and each mistake gets an error that says what to
// change.
func TestAdminTLS(t *testing.T) {
	ca, err := testpki.NewAuthority("admin CA")
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
	ops, err := testpki.NewAuthority("operators CA")
	if err != nil {
		t.Fatal(err)
	}
	url, tok := startAdminGatewayWith(t, "  tls: {cert: admin.pem, key: admin-key.pem, client_ca: operators.pem}\n",
		map[string][]byte{"admin.pem": certPEM, "admin-key.pem": keyPEM, "operators.pem": ops.CertPEM})
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("admin URL %s, want https", url)
	}
	dir := filepath.Dir(tok)
	caFile := filepath.Join(dir, "admin-ca.pem")
	otherCA, err := testpki.NewAuthority("other CA")
	if err != nil {
		t.Fatal(err)
	}
	otherFile := filepath.Join(dir, "other-ca.pem")
	clientCert, err := ops.ClientLeaf("alice")
	if err != nil {
		t.Fatal(err)
	}
	cc, ck, err := testpki.PEM(clientCert)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{caFile: ca.CertPEM, otherFile: otherCA.CertPEM, filepath.Join(dir, "alice.pem"): cc, filepath.Join(dir, "alice-key.pem"): ck} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("CREDGATE_ADMIN_TOKEN", "")
	t.Setenv("CREDGATE_ADMIN_TOKEN_FILE", "")
	t.Setenv("CREDGATE_ADMIN_CACERT", "")
	t.Setenv("CREDGATE_ADMIN_CERT", "")
	t.Setenv("CREDGATE_ADMIN_KEY", "")
	plainURL := "http://" + strings.TrimPrefix(url, "https://")
	clientFlags := []string{"--cert", filepath.Join(dir, "alice.pem"), "--key", filepath.Join(dir, "alice-key.pem")}
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantCode int
		want     string // in stdout (exit 0) or stderr
	}{
		{"list with --cacert", append([]string{"--admin", url, "--cacert", caFile, "--token-file", tok}, append(clientFlags, "list")...), nil, 0, "nothing is disabled"},
		{"list with CREDGATE_ADMIN_CACERT", append([]string{"--admin", url, "--token-file", tok}, append(clientFlags, "list")...), map[string]string{"CREDGATE_ADMIN_CACERT": caFile}, 0, "nothing is disabled"},
		{"list without a client certificate", []string{"--admin", url, "--cacert", caFile, "--token-file", tok, "list"}, nil, exitError, "403 client_certificate_required"},
		{"disable with a client certificate", append([]string{"--admin", url, "--cacert", caFile, "--token-file", tok}, append(clientFlags, "disable", "rule", "billing-charges", "--by", "alice")...), nil, 0, `disabled rule "billing-charges" on this replica (by alice)`},
		{"client certificate from the environment", []string{"--admin", url, "--token-file", tok, "enable", "rule", "billing-charges"},
			map[string]string{"CREDGATE_ADMIN_CACERT": caFile, "CREDGATE_ADMIN_CERT": filepath.Join(dir, "alice.pem"), "CREDGATE_ADMIN_KEY": filepath.Join(dir, "alice-key.pem")}, 0, `enabled rule "billing-charges"`},
		{"no --cacert", []string{"--admin", url, "list"}, nil, exitError, "the admin certificate is not signed by a trusted CA: pass --cacert FILE"},
		{"wrong --cacert", []string{"--admin", url, "--cacert", otherFile, "list"}, nil, exitError, "does not verify against --cacert " + otherFile},
		{"name not in the certificate", []string{"--admin", strings.Replace(url, "127.0.0.1", "localhost", 1), "--cacert", caFile, "list"}, nil, exitError, "the admin certificate is not valid for localhost"},
		{"no client certificate", []string{"--admin", url, "--cacert", caFile, "--token-file", tok, "disable", "rule", "billing-charges"}, nil, exitError, "403 client_certificate_required: admin.tls.client_ca is set: the admin API needs a client certificate signed by it (pass --cert and --key"},
		{"cert without key", []string{"--admin", url, "--cacert", caFile, "--cert", filepath.Join(dir, "alice.pem"), "list"}, nil, exitError, "--cert and --key go together"},
		{"http URL to the TLS listener", []string{"--admin", plainURL, "list"}, nil, exitError, "the admin listener speaks HTTPS (admin.tls): use --admin https://"},
		{"--cacert with an http URL", []string{"--admin", plainURL, "--cacert", caFile, "list"}, nil, exitError, "--cacert, --cert and --key are for an https admin URL"},
		{"unreadable --cacert", []string{"--admin", url, "--cacert", filepath.Join(dir, "missing.pem"), "list"}, nil, exitError, "admin: --cacert: open"},
		{"--cacert without PEM", []string{"--admin", url, "--cacert", tok, "list"}, nil, exitError, "holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			r := runCLI(t, append([]string{"admin"}, tt.args...)...)
			out := r.stderr
			if tt.wantCode == 0 {
				out = r.stdout
			}
			if r.code != tt.wantCode || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", r.code, r.stdout, r.stderr, tt.wantCode, tt.want)
			}
		})
	}
}
