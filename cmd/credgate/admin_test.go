package main

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
)

// startAdminGateway runs a gateway of gatewayDir's config plus an admin
// token file in-process and returns its admin URL and the token file.
func startAdminGateway(t *testing.T) (adminURL, tokenFile string) {
	t.Helper()
	setEnv(t)
	path := gatewayDir(t)
	tokenFile = filepath.Join(filepath.Dir(path), "admin.token")
	if err := os.WriteFile(tokenFile, []byte("cli-test-admin-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("admin:\n  token_file: admin.token\n")
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
	return "http://" + gw.AdminAddr().String(), tokenFile
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
	if r := step("--token-file", tok, "disable", "rule", "billing-charges", "--by", "alice", "--reason", "INC-42 key leaked"); r.code != 0 {
		t.Fatalf("disable: %+v", r)
	}
	step("--token-file", tok, "disable", "rule", "billing-charges", "--by", "bob")
	step("--token-file", tok, "disable", "workload", "ghost", "--by", "alice")
	step("list")
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
	if r := runCLI(t, "admin", "--admin", "ftp://x", "list"); r.code != exitError || !strings.Contains(r.stderr, "is not a URL such as") {
		t.Errorf("bad URL: %+v", r)
	}
	t.Setenv("CREDGATE_ADMIN_TOKEN", "cli-test-admin-token-0123456789")
	if r := admin("enable", "rule", "billing-charges", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"changed":true`) {
		t.Errorf("enable with CREDGATE_ADMIN_TOKEN and --json: %+v", r)
	}
}
