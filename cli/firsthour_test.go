package cli

// The first hour with credgate (issue 19): every error a newcomer can cause
// while following the README names its cause and its fix. One test per
// item, each asserting the message.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/gateway"
	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/internal/demo"
)

// readme returns the repository's README.md.
func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the README text from heading up to the next "## ".
func section(t *testing.T, doc, heading string) string {
	t.Helper()
	i := strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no %q heading", heading)
	}
	s := doc[i+1+len(heading):]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	return s
}

// firstBlock returns the lines of the first ```sh block in s.
func firstBlock(t *testing.T, s string) []string {
	t.Helper()
	i := strings.Index(s, "```sh\n")
	if i < 0 {
		t.Fatal("no ```sh block")
	}
	s = s[i+len("```sh\n"):]
	j := strings.Index(s, "```")
	if j < 0 {
		t.Fatal("unterminated ```sh block")
	}
	return strings.Split(strings.TrimRight(s[:j], "\n"), "\n")
}

// Item 2: the heading promises two commands; the block holds two.
func TestReadmeTwoCommands(t *testing.T) {
	var cmds []string
	for _, l := range firstBlock(t, section(t, readme(t), "## Two commands on a fresh machine")) {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			cmds = append(cmds, strings.TrimSpace(strings.SplitN(l, "#", 2)[0]))
		}
	}
	want := []string{"go run ./cmd/credgate demo", "make test"}
	if diff := cmp.Diff(want, cmds); diff != "" {
		t.Errorf("README two commands (-want +got):\n%s", diff)
	}
}

// Items 9 and 10: the README says how to see why a CONNECT was refused,
// and the Quickstart's admin port is not Prometheus's 9090.
func TestReadmeQuickstartHints(t *testing.T) {
	qs := section(t, readme(t), "## Quickstart (5 minutes, offline)")
	for _, want := range []string{"curl -v", "X-Credgate-Reason", "credgate demo --origin-only", "kill -HUP"} {
		if !strings.Contains(qs, want) {
			t.Errorf("Quickstart does not mention %q", want)
		}
	}
	if !strings.Contains(qs, `admin_listen: "127.0.0.1:3180"`) {
		t.Error("the Quickstart's admin_listen is not 127.0.0.1:3180 (9090 is Prometheus's default)")
	}
}

// Item 8: the files the Quickstart writes in a checkout are ignored.
func TestQuickstartFilesIgnored(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("git", "-C", root, "rev-parse", "--git-dir").Run(); err != nil {
		t.Skip("not in a git checkout")
	}
	for _, f := range []string{"ca/ca.pem", "ca/ca-key.pem", "origin-ca.pem", "credgate.yaml", "policy.yaml", "credgate"} {
		if err := exec.Command("git", "-C", root, "check-ignore", "-q", f).Run(); err != nil {
			t.Errorf("%s, written by the Quickstart, is not git-ignored", f)
		}
	}
}

// Item 10: ca init over an existing CA names the file and the way out,
// without an internal package prefix.
func TestCAInitOverwriteMessage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if r := runCLI(t, "ca", "init", "--out", dir); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	r := runCLI(t, "ca", "init", "--out", dir)
	if r.code != exitError {
		t.Fatalf("second ca init: exit %d, want 1", r.code)
	}
	for _, want := range []string{"credgate: ca init: " + filepath.Join(dir, "ca.pem") + " already exists", "--out"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q: %q", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "mitm") {
		t.Errorf("stderr leaks the internal mitm prefix: %q", r.stderr)
	}
}

// Item 4: validate (and serve) fail at the line naming a missing file.
func TestValidateMissingFiles(t *testing.T) {
	path := gatewayDir(t)
	dir := filepath.Dir(path)
	if err := os.Remove(filepath.Join(dir, "ca", "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	cfg := `listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
policy: policy.yaml
ca:
  cert: ca/ca.pem
  key: ca/ca-key.pem
upstream:
  ca_bundle: origin-ca.pem
`
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "validate", "-c", path)
	if r.code != exitError {
		t.Fatalf("validate: exit %d, want 1\n%s", r.code, r.stdout)
	}
	want := []string{
		path + ":6:8: ca.key: " + filepath.Join(dir, "ca", "ca-key.pem") + " does not exist (write it with: credgate ca init --out DIR; a relative path is relative to the config file's directory); correct the path or put the file there",
		path + ":8:14: upstream.ca_bundle: " + filepath.Join(dir, "origin-ca.pem") + " does not exist (PEM certificates of the CAs upstream servers are verified against; a relative path is relative to the config file's directory); correct the path or put the file there",
	}
	if diff := cmp.Diff(want, strings.Split(strings.TrimSpace(r.stdout), "\n")); diff != "" {
		t.Errorf("validate output (-want +got):\n%s", diff)
	}
	s := runCLI(t, "serve", "-c", path)
	if s.code != exitError || !strings.Contains(s.stderr, path+":6:8: ca.key:") {
		t.Errorf("serve: exit %d, stderr %q; want 1 and %s:6:8: ca.key: ...", s.code, s.stderr, path)
	}
}

// served is a gateway run in-process by `credgate serve`.
type served struct {
	dir    string // holds credgate.yaml, policy.yaml and ca/
	proxy  string
	stderr *syncBuffer
	stop   func() int
}

// serveConfig writes cfg (with a fresh CA under ca/) and policy into a
// temporary directory and runs serve on it until the test ends.
func serveConfig(t *testing.T, cfg, policy string) *served {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "ca"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := mitm.WriteCA(filepath.Join(dir, "ca")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "credgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{dir: dir, stderr: new(syncBuffer)}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "-c", path}, io.Discard, s.stderr) }()
	code := -1
	s.stop = func() int {
		if code < 0 {
			cancel()
			select {
			case code = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("serve did not stop")
			}
		}
		return code
	}
	t.Cleanup(func() { s.stop() })
	re := regexp.MustCompile(`"msg":"credgate serving","proxy":"([^"]+)"`)
	waitFor(t, "credgate serving", func() bool {
		select {
		case c := <-done:
			code = c
			t.Fatalf("serve exited %d:\n%s", c, s.stderr.String())
		default:
		}
		m := re.FindStringSubmatch(s.stderr.String())
		if m != nil {
			s.proxy = m[1]
		}
		return m != nil
	})
	return s
}

// get sends GET target through the gateway, trusting its CA in dir.
func (s *served) get(t *testing.T, caFile, target string) *http.Response {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	pu, _ := url.Parse("http://" + s.proxy)
	tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: roots}}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr, Timeout: 15 * time.Second}).Get(target)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// body decodes the gateway's JSON refusal.
func refusalOf(t *testing.T, resp *http.Response) map[string]string {
	t.Helper()
	var m map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("refusal body: %v", err)
	}
	return m
}

const localPolicy = `workloads:
  dev:
    cidrs: [127.0.0.1/32]
destinations:
  saas:
    hosts: [api.saas.test, other.saas.test]
    allow_private: true
credentials:
  saas-key:
    provider: static
    env: CREDGATE_TEST_FIRSTHOUR_KEY
rules:
  - name: dev-saas
    from: dev
    to: saas
    methods: [GET]
    paths: [/v1/*]
    inject: {credential: saas-key, as: bearer}
default: deny
`

// localConfig is a Quickstart config against an origin at addr, its CA
// in bundle ("" for none).
func localConfig(addr, bundle string) string {
	cfg := fmt.Sprintf(`listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
policy: policy.yaml
ca: {cert: ca/ca.pem, key: ca/ca-key.pem}
resolve: {"api.saas.test:443": %q, "other.saas.test:443": %q}
shutdown_timeout: 7s
audit: {output: audit.log}
`, addr, addr)
	if bundle != "" {
		cfg += fmt.Sprintf("upstream: {ca_bundle: %q}\n", bundle)
	}
	return cfg
}

func startOrigin(t *testing.T) (addr, caFile string) {
	t.Helper()
	caFile = filepath.Join(t.TempDir(), "origin-ca.pem")
	o, err := demo.StartOrigin("127.0.0.1:0", caFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Close(context.Background()) })
	return o.Addr().String(), caFile
}

// Item 5: an unset credential variable is a 502 credential_not_configured
// pointing at the log, which names it and the fix, with no Retry-After; the shutdown log gives the timeout as a duration.
func TestCredentialEnvUnset(t *testing.T) {
	t.Setenv("CREDGATE_TEST_FIRSTHOUR_KEY", "")
	addr, bundle := startOrigin(t)
	s := serveConfig(t, localConfig(addr, bundle), localPolicy)
	resp := s.get(t, filepath.Join(s.dir, "ca", "ca.pem"), "https://api.saas.test/v1/x")
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(gateway.ReasonHeader) != "credential_not_configured" || resp.Header.Get("Retry-After") != "" {
		t.Errorf("got %d %s=%q Retry-After=%q, want 502 credential_not_configured without Retry-After",
			resp.StatusCode, gateway.ReasonHeader, resp.Header.Get(gateway.ReasonHeader), resp.Header.Get("Retry-After"))
	}
	reason := refusalOf(t, resp)["reason"]
	for _, want := range []string{`credential "saas-key"`, "not configured on the gateway", "environment variable or file", "log", "retrying will not help"} {
		if !strings.Contains(reason, want) {
			t.Errorf("reason lacks %q: %q", want, reason)
		}
	}
	if code := s.stop(); code != 0 {
		t.Errorf("serve exit %d", code)
	}
	log := s.stderr.String()
	if !strings.Contains(log, "environment variable CREDGATE_TEST_FIRSTHOUR_KEY is not set or empty in the gateway's environment; export it before starting credgate serve") {
		t.Errorf("log does not name the variable and the fix:\n%s", log)
	}
	if !strings.Contains(log, `"msg":"shutting down: draining in-flight requests","timeout":"7s"`) {
		t.Errorf("shutdown log does not give the timeout as 7s:\n%s", log)
	}
}

// Item 6: an upstream certificate that does not verify says why and what
// to change.
func TestUpstreamTLSReasons(t *testing.T) {
	t.Setenv("CREDGATE_TEST_FIRSTHOUR_KEY", "sk_test_firsthour_0123456789")
	addr, bundle := startOrigin(t)
	t.Run("unknown authority", func(t *testing.T) {
		s := serveConfig(t, localConfig(addr, ""), localPolicy)
		resp := s.get(t, filepath.Join(s.dir, "ca", "ca.pem"), "https://api.saas.test/v1/x")
		reason := refusalOf(t, resp)["reason"]
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(reason, "unknown authority") || !strings.Contains(reason, "upstream.ca_bundle") || !strings.Contains(reason, "credgate demo upstream CA") {
			t.Errorf("got %d %q, want 502 naming the unknown authority, its issuer and upstream.ca_bundle", resp.StatusCode, reason)
		}
	})
	t.Run("name mismatch", func(t *testing.T) {
		s := serveConfig(t, localConfig(addr, bundle), localPolicy)
		resp := s.get(t, filepath.Join(s.dir, "ca", "ca.pem"), "https://other.saas.test/v1/x")
		reason := refusalOf(t, resp)["reason"]
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(reason, "name mismatch") || !strings.Contains(reason, "other.saas.test") {
			t.Errorf("got %d %q, want 502 naming the name mismatch", resp.StatusCode, reason)
		}
	})
}

// Item 9: a refused CONNECT carries X-Credgate-Reason, which curl -v shows.
func TestRefusedConnectReason(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	t.Setenv("CREDGATE_TEST_FIRSTHOUR_KEY", "sk_test_firsthour_0123456789")
	addr, bundle := startOrigin(t)
	s := serveConfig(t, localConfig(addr, bundle), localPolicy)
	out, _ := exec.Command("curl", "-sv", "--proxy", "http://"+s.proxy, "https://unknown.saas.test/").CombinedOutput()
	if !strings.Contains(string(out), "X-Credgate-Reason: no_rule") {
		t.Errorf("curl -v does not show X-Credgate-Reason: no_rule:\n%s", out)
	}
}

// Item 7: an address in use names the setting to change.
func TestListenAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	path := gatewayDir(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), `listen: "127.0.0.1:0"`, fmt.Sprintf("listen: %q", ln.Addr().String()), 1)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	setEnv(t)
	r := runCLI(t, "serve", "-c", path)
	want := "credgate: listen " + ln.Addr().String() + ": address already in use: another process (perhaps another credgate) holds it; stop it or set another address with listen: in the gateway config (credgate demo: --listen ADDR)"
	// The error is the last line (info lines of the start may precede it).
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if r.code != exitError || lines[len(lines)-1] != want {
		t.Errorf("serve: exit %d, stderr %q\nwant exit 1, %q", r.code, r.stderr, want)
	}
}

// Item 1: every command the demo prints exists and works.
func TestDemoPrintedCommands(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	t.Setenv("TMPDIR", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"demo", "--listen", "127.0.0.1:0"}, &stdout, &stderr) }()
	waitFor(t, "the demo's help", func() bool { return strings.Contains(stdout.String(), "Press Ctrl-C to stop.") })
	help := stdout.String()
	if strings.Contains(help, "your-program") {
		t.Errorf("the demo prints a command for a program that does not exist:\n%s", help)
	}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(help))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "curl ") && !strings.HasPrefix(line, "HTTPS_PROXY=") {
			continue
		}
		if strings.Contains(line, "python3") {
			if _, err := exec.LookPath("python3"); err != nil {
				continue
			}
		}
		n++
		out, err := exec.Command("bash", "-c", line).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "api.saas.test") {
			t.Errorf("printed command %q: %v\n%s", line, err, out)
		}
	}
	if n < 3 {
		t.Errorf("ran %d printed commands, want at least 3:\n%s", n, help)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("demo exit %d:\n%s", code, stderr.String())
	}
}

// SIGHUP: the config settings that changed and need a restart are named.
func TestConfigChanges(t *testing.T) {
	a, err := gateway.ParseConfig("a.yaml", []byte("listen: \":3128\"\npolicy: p.yaml\nca: {cert: c, key: k}\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := gateway.ParseConfig("a.yaml", []byte("listen: \":3129\"\npolicy: p.yaml\nca: {cert: c, key: k}\nupstream: {ca_bundle: x.pem}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"listen", "upstream.ca_bundle"}, gateway.ConfigChanges(a, b)); diff != "" {
		t.Errorf("ConfigChanges (-want +got):\n%s", diff)
	}
	if got := gateway.ConfigChanges(a, a); len(got) != 0 {
		t.Errorf("ConfigChanges of a config with itself = %v, want none", got)
	}
}

// Every example config compares equal to itself read twice: SIGHUP names
// only what really changed.
func TestConfigChangesStable(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		a, err := gateway.LoadConfig(f)
		if err != nil {
			continue // a policy, not a gateway config
		}
		b, err := gateway.LoadConfig(f)
		if err != nil {
			t.Fatal(err)
		}
		n++
		if got := gateway.ConfigChanges(a, b); len(got) != 0 {
			t.Errorf("%s read twice: ConfigChanges = %v, want none", f, got)
		}
	}
	if n == 0 {
		t.Fatal("no example gateway config found")
	}
}
