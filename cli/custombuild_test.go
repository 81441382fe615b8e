package cli

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCustomBuild builds examples/custom-build, a module of its own that
// adds a provider, an injector and an identity verifier (hello-token,
// hello, hello-attest) by one blank import each, as docs/plugins.md
// tells an integrator to, and runs the binary: plugins lists the three,
// validate accepts the policy and the gateway config that use them and
// reports a bad hello setting at FILE:LINE:COL, and explain names the
// injector and takes a workload for what the verifier verified (and
// refuses a token it does not).
//
// The module is copied to a temporary directory with its replace pointed
// at this checkout, so the build cannot rewrite the example's go.mod. It
// runs offline from the module cache (GOPROXY=off): the example needs no
// module the main module does not already require.
func TestCustomBuild(t *testing.T) {
	const attestKey = "hello-attest-key-not-real-0123456789"
	if testing.Short() {
		t.Skip("builds a binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not installed")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(root, "examples", "custom-build")
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	// The main module's go.sum covers every module the build can need.
	mainSum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "go.sum"), os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(mainSum); err != nil {
		t.Fatal(err)
	}
	f.Close()

	env := append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off", "GOTOOLCHAIN=local")
	gocmd := func(args ...string) {
		t.Helper()
		cmd := exec.Command(goBin, args...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	gocmd("mod", "edit", "-replace", "github.com/credgate/credgate="+root)
	bin := filepath.Join(dir, "credgate")
	gocmd("build", "-o", bin, ".")

	run := func(wantCode int, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HELLO_KEY=hello-not-a-real-key-0123456789", "HELLO_ATTEST_KEY="+attestKey)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("credgate %s: %v", strings.Join(args, " "), err)
		}
		if code != wantCode {
			t.Fatalf("credgate %s: exit %d, want %d\n%s", strings.Join(args, " "), code, wantCode, out.String())
		}
		if strings.Contains(out.String(), "hello-not-a-real-key") || strings.Contains(out.String(), attestKey) {
			t.Errorf("credgate %s printed the credential value:\n%s", strings.Join(args, " "), out.String())
		}
		return out.String()
	}

	out := run(0, "plugins")
	for _, want := range []string{
		"  hello ", "sets one header to a greeting",
		`header (string)    the header to set (default "X-Hello")`,
		"  hello-token ", "a token read from an environment variable",
		"  hello-attest ", "key_env (string)",
		"  bearer ", "  static ", "  github-app ", // the standard set is still there
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plugins output lacks %q:\n%s", want, out)
		}
	}

	if out := run(0, "version"); !strings.Contains(out, "custom build example.com/credgate-custom with github.com/credgate/credgate v0.0.0 => "+root+"\n") {
		t.Errorf("version does not name the custom build:\n%s", out)
	}

	if out := run(0, "validate", "-c", "policy.yaml"); !strings.HasPrefix(out, "policy.yaml: ok (1 rule,") {
		t.Errorf("validate: %s", out)
	}

	out = run(0, "explain", "-c", "policy.yaml", "GET", "https://httpbin.org/headers")
	if !strings.Contains(out, "hello (sets X-Hello; client values replaced)") {
		t.Errorf("explain does not name the hello injector:\n%s", out)
	}

	// The gateway config with the verifier plugin, and a workload that
	// proves itself with it.
	run(0, "ca", "init", "--out", ".")
	if out := run(0, "validate", "-c", "credgate.yaml"); !strings.HasPrefix(out, "credgate.yaml: ok (gateway config") {
		t.Errorf("validate credgate.yaml: %s", out)
	}
	mac := hmac.New(sha256.New, []byte(attestKey))
	mac.Write([]byte("build-bot"))
	for _, tc := range []struct {
		token, want string
		code        int
	}{
		{"hello.build-bot." + hex.EncodeToString(mac.Sum(nil)), "workload:          build-bot (verified: source=127.0.0.1, hello-attest=build-bot)", 0},
		{"hello.build-bot.00", "hello-attest: the MAC does not verify", 3},
	} {
		if err := os.WriteFile(filepath.Join(dir, "token"), []byte(tc.token), 0o600); err != nil {
			t.Fatal(err)
		}
		if out := run(tc.code, "explain", "-c", "credgate.yaml", "--token-file", "token", "GET", "https://httpbin.org/headers"); !strings.Contains(out, tc.want) {
			t.Errorf("explain with the token %q does not say %q:\n%s", tc.token, tc.want, out)
		}
	}

	pol, err := os.ReadFile(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(pol), "header: X-Hello", "header: X Hello", 1)
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out = run(1, "validate", "-c", "bad.yaml")
	if !regexp.MustCompile(`(?m)^bad\.yaml:\d+:\d+: .*hello: header "X Hello" is not a header name`).MatchString(out) {
		t.Errorf("validate bad.yaml: want FILE:LINE:COL and the plugin's words:\n%s", out)
	}
}
