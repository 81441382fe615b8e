package cli

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http/httpproxy"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/credgate/credgate/internal/testpki"
)

func TestRunEnvVars(t *testing.T) {
	proxy, _ := url.Parse("http://127.0.0.1:3128")
	proxy.User = url.UserPassword("token", "eyJ.abc.def")
	r := runEnv{Proxy: proxy, NoProxy: "localhost,127.0.0.1,::1,.internal",
		Files: runFiles{Bundle: "/tmp/d/ca-bundle.pem", TrustStore: "/tmp/d/truststore.p12", NodePreload: "/tmp/d/node-proxy.cjs"}, Workload: "agent"}
	base := []string{"PATH=/bin", "NODE_OPTIONS=--max-old-space-size=512", "GIT_CONFIG_COUNT=1",
		"GIT_CONFIG_KEY_0=user.name", "GIT_CONFIG_VALUE_0=me", "JAVA_TOOL_OPTIONS=-Xmx1g"}
	got := map[string]string{}
	var order []string
	for _, v := range r.vars(base) {
		got[v.Key] = v.Value
		order = append(order, v.Key)
	}
	p := "http://token:eyJ.abc.def@127.0.0.1:3128"
	want := map[string]string{
		"HTTPS_PROXY": p, "https_proxy": p, "HTTP_PROXY": p, "http_proxy": p, "ALL_PROXY": p, "all_proxy": p,
		"NO_PROXY": "localhost,127.0.0.1,::1,.internal", "no_proxy": "localhost,127.0.0.1,::1,.internal",
		"CURL_CA_BUNDLE": "/tmp/d/ca-bundle.pem", "SSL_CERT_FILE": "/tmp/d/ca-bundle.pem", "REQUESTS_CA_BUNDLE": "/tmp/d/ca-bundle.pem",
		"NODE_EXTRA_CA_CERTS": "/tmp/d/ca-bundle.pem", "AWS_CA_BUNDLE": "/tmp/d/ca-bundle.pem", "GIT_SSL_CAINFO": "/tmp/d/ca-bundle.pem",
		"PIP_CERT": "/tmp/d/ca-bundle.pem", "npm_config_cafile": "/tmp/d/ca-bundle.pem",
		"NODE_USE_ENV_PROXY": "1",
		"NODE_OPTIONS":       "--max-old-space-size=512 --require=/tmp/d/node-proxy.cjs",
		// After the caller's own GIT_CONFIG_* entry.
		"GIT_CONFIG_COUNT": "3",
		"GIT_CONFIG_KEY_1": "http.proxy", "GIT_CONFIG_VALUE_1": p,
		"GIT_CONFIG_KEY_2": "http.proxyAuthMethod", "GIT_CONFIG_VALUE_2": "basic",
		"JAVA_TOOL_OPTIONS": "-Xmx1g -Djavax.net.ssl.trustStore=/tmp/d/truststore.p12 -Djavax.net.ssl.trustStoreType=PKCS12 -Djavax.net.ssl.trustStorePassword=changeit" +
			" -Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=3128 -Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort=3128 -Dhttp.nonProxyHosts=localhost|127.0.0.1|[::1]|*.internal",
		"CREDGATE_RUN_WORKLOAD": "agent",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("vars (-want +got):\n%s", d)
	}
	if order[0] != "HTTPS_PROXY" || len(order) != len(want) {
		t.Errorf("order %v", order)
	}

	// Without a token, and without anything to extend.
	r.Proxy, r.Workload = &url.URL{Scheme: "http", Host: "gw:3128"}, ""
	vars := r.vars(nil)
	m := map[string]string{}
	for _, v := range vars {
		m[v.Key] = v.Value
	}
	if m["HTTPS_PROXY"] != "http://gw:3128" || m["GIT_CONFIG_COUNT"] != "2" || m["GIT_CONFIG_KEY_0"] != "http.proxy" ||
		m["NODE_OPTIONS"] != "--require=/tmp/d/node-proxy.cjs" || m["CREDGATE_RUN_WORKLOAD"] != "" {
		t.Errorf("without a token: %v", m)
	}
	// mergeEnv replaces, keeps the rest.
	env := mergeEnv([]string{"PATH=/bin", "HTTPS_PROXY=http://old:1"}, vars)
	if env[0] != "PATH=/bin" || strings.Count(strings.Join(env, "\n"), "HTTPS_PROXY=") != 1 {
		t.Errorf("mergeEnv: %v", env)
	}
}

func TestJoinOpts(t *testing.T) {
	if got := joinOpts("", "--require=/tmp/a b/x.cjs"); got != `"--require=/tmp/a b/x.cjs"` {
		t.Errorf("a path with a space: %s", got)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "''",
		"plain-1.2_/x:y=z@": "plain-1.2_/x:y=z@",
		"a b":               "'a b'",
		"it's":              `'it'\''s'`,
		"$HOME `x` \\ \"":   "'$HOME `x` \\ \"'",
		"-Da=b -Dc|d":       "'-Da=b -Dc|d'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
	// What sh reads back is the value.
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	vars := []envVar{{"A", "it's $HOME `x` \\ \"q\" | ; & *"}, {"B", "-Dx=y -Dz=\"w\""}, {"C", ""}}
	var b bytes.Buffer
	if err := printEnv(&b, "shell", vars); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", b.String()+`printf '%s\n%s\n%s' "$A" "$B" "$C"`).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), vars[0].Value+"\n"+vars[1].Value+"\n"; got != want {
		t.Errorf("sh read back %q, want %q", got, want)
	}
}

func TestPrintEnvGitHub(t *testing.T) {
	var b bytes.Buffer
	if err := printEnv(&b, "github", []envVar{{"A", "x y"}, {"B", "l1\nCREDGATE_EOF\nl2"}}); err != nil {
		t.Fatal(err)
	}
	want := "A=x y\nB<<CREDGATE_EOF_\nl1\nCREDGATE_EOF\nl2\nCREDGATE_EOF_\n"
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("github format (-want +got):\n%s", d)
	}
}

func TestWriteRunFiles(t *testing.T) {
	ca, err := testpki.NewAuthority("credgate run test CA")
	if err != nil {
		t.Fatal(err)
	}
	sysCA, err := testpki.NewAuthority("system root")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f, err := writeRunFiles(dir, sysCA.CertPEM, ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := os.ReadFile(f.Bundle)
	if certs := parseCerts(bundle); len(certs) != 2 || certs[1].Subject.CommonName != "credgate run test CA" {
		t.Errorf("bundle holds %d certificates, want the system root and the gateway CA", len(certs))
	}
	p12, _ := os.ReadFile(f.TrustStore)
	certs, err := pkcs12.DecodeTrustStore(p12, trustStorePassword)
	if err != nil || len(certs) != 2 {
		t.Errorf("trust store: %d certificates, %v", len(certs), err)
	}
	for _, p := range []string{f.Bundle, f.TrustStore, f.NodePreload} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 || filepath.Dir(p) != dir {
			t.Errorf("%s: %v %v", p, st.Mode(), err)
		}
	}
	if _, err := writeRunFiles(t.TempDir(), nil, []byte("not a certificate")); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("a bad CA: %v", err)
	}
}

func TestRunAddresses(t *testing.T) {
	for in, want := range map[string]string{":3128": "127.0.0.1:3128", "0.0.0.0:3128": "127.0.0.1:3128", "[::]:1": "127.0.0.1:1", "10.0.0.1:3128": "10.0.0.1:3128"} {
		if got := localAddr(in); got != want {
			t.Errorf("localAddr(%q) = %q, want %q", in, got, want)
		}
	}
	o := &runOptions{gateway: "127.0.0.1:3128"}
	if u, err := o.proxyURL(nil); err != nil || u.String() != "http://127.0.0.1:3128" {
		t.Errorf("proxyURL: %v %v", u, err)
	}
	// Nothing but scheme, host and port: a client reads a query or
	// fragment in a proxy URL as part of the port, or drops it.
	for _, bad := range []string{"https://gw/x", "http://gw:3128/x", "http://gw:3128?x=1", "http://gw:3128/?", "http://gw:3128#f", "ftp://gw:21"} {
		o.gateway = bad
		if _, err := o.proxyURL(nil); err == nil || !strings.Contains(err.Error(), "is not a proxy URL") {
			t.Errorf("--gateway %s: %v", bad, err)
		}
	}
	for host, want := range map[string]bool{"127.0.0.1": true, "::1": true, "127.1.2.3": true, "localhost": true, "LocalHost": true,
		"gw": false, "10.0.0.1": false, "localhost.example.com": false, "::ffff:10.0.0.1": false} {
		if got := loopbackHost(host); got != want {
			t.Errorf("loopbackHost(%q) = %v", host, got)
		}
	}
	o.gateway = "http://user:pass@gw:3128/"
	if u, err := o.proxyURL(nil); err != nil || u.String() != "http://gw:3128" {
		t.Errorf("userinfo and / dropped: %v %v", u, err)
	}
}

func TestRunArgs(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"run"}, &out, &errb); code != exitError || !strings.Contains(errb.String(), "name the command to run after --") {
		t.Errorf("no command: %d %s", code, errb.String())
	}
	errb.Reset()
	if code := run(t.Context(), []string{"run", "--print-env", "--", "true"}, &out, &errb); code != exitError || !strings.Contains(errb.String(), "--print-env prints the variables and runs nothing") {
		t.Errorf("--print-env with a command: %d %s", code, errb.String())
	}
	// The relay's client certificate: a pair, to an https:// gateway,
	// through the relay. Refused before anything is asked of the admin
	// API (there is none at 127.0.0.1:9).
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"certificate without key", []string{"--gateway", "https://127.0.0.1:3129", "--gateway-cert", "c.pem"}, "--gateway-cert and --gateway-key go together"},
		{"key without certificate", []string{"--gateway", "https://127.0.0.1:3129", "--gateway-key", "k.pem"}, "--gateway-cert and --gateway-key go together"},
		{"plain gateway", []string{"--gateway", "http://127.0.0.1:3128", "--gateway-cert", "c.pem", "--gateway-key", "k.pem"}, "--gateway-cert is presented by credgate run's relay to an https:// gateway"},
	} {
		t.Run(c.name, func(t *testing.T) {
			errb.Reset()
			args := append(append([]string{"run", "--admin", "http://127.0.0.1:9"}, c.args...), "--", "true")
			if code := run(t.Context(), args, &out, &errb); code != exitError || !strings.Contains(errb.String(), c.want) {
				t.Errorf("%d %s, want %q", code, errb.String(), c.want)
			}
		})
	}
	t.Run("env", func(t *testing.T) {
		t.Setenv("CREDGATE_GATEWAY_CERT", "c.pem")
		errb.Reset()
		if code := run(t.Context(), []string{"run", "--gateway", "https://127.0.0.1:3129", "--", "true"}, &out, &errb); code != exitError || !strings.Contains(errb.String(), "go together") {
			t.Errorf("CREDGATE_GATEWAY_CERT without a key: %d %s", code, errb.String())
		}
	})
}

// proxyRecorder is a stand-in proxy on 127.0.0.1 that records the first
// line of each request it receives (CONNECT host:port, GET ftp://...)
// and whether it carried Proxy-Authorization, then refuses it.
type proxyRecorder struct {
	ln  net.Listener
	mu  sync.Mutex
	got []string
}

func newProxyRecorder(t *testing.T) *proxyRecorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxyRecorder{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				r, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				line := r.Method + " " + r.RequestURI
				if r.Header.Get("Proxy-Authorization") != "" {
					line += " +auth"
				}
				p.mu.Lock()
				p.got = append(p.got, line)
				p.mu.Unlock()
				_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			}()
		}
	}()
	return p
}

func (p *proxyRecorder) url() string { return "http://" + p.ln.Addr().String() }

func (p *proxyRecorder) port() string { return strconv.Itoa(p.ln.Addr().(*net.TCPAddr).Port) }

// take returns what the recorder saw since the last call.
func (p *proxyRecorder) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	got := p.got
	p.got = nil
	return got
}

// TestRunEnvInheritedProxies: whatever proxy variables the caller's
// environment holds — another proxy under a spelling some client reads
// (Https_proxy, ALL_PROXY, PIP_PROXY, npm_config_https_proxy, a git
// http.<url>.proxy entry), a bypass list of every host (NO_proxy=*,
// npm_config_noproxy) — real clients under credgate run's environment
// (curl, Python's urllib behind a shell that reorders the environment,
// Node's https.get and http.get, git, Go's net/http proxy choice) send
// their request to the gateway, with the token, and nothing to the other
// proxy; so do plain http:// requests (Node 20's http.get went direct
// before: the preload covered https only). Before,
// 3 of 5 left the gateway: Python went direct (NO_proxy=*, read after
// no_proxy once a shell reordered the environment), curl's ftp:// went
// to the caller's ALL_PROXY, git to its http.<url>.proxy.
func TestRunEnvInheritedProxies(t *testing.T) {
	gw, decoy := newProxyRecorder(t), newProxyRecorder(t)
	ca, err := testpki.NewAuthority("credgate run test CA")
	if err != nil {
		t.Fatal(err)
	}
	files, err := writeRunFiles(t.TempDir(), nil, ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	proxy, _ := url.Parse(gw.url())
	proxy.User = url.UserPassword("token", "eyJ.run.token")
	r := runEnv{Proxy: proxy, NoProxy: DefaultNoProxy, Files: files, Workload: "agent"}

	inherited := map[string]string{
		"NO_proxy": "*", "No_Proxy": "*", "no_PROXY": "*", "npm_config_noproxy": "*", "YARN_NO_PROXY": "*",
		"HTTPS_proxy": decoy.url(), "Https_Proxy": decoy.url(), "ALL_PROXY": decoy.url(), "all_proxy": decoy.url(),
		"ftp_proxy": decoy.url(), "PIP_PROXY": decoy.url(), "npm_config_https_proxy": decoy.url(), "npm_config_proxy": decoy.url(),
		"GIT_CONFIG_COUNT": "2", "GIT_CONFIG_KEY_0": "http.https://api.example.test.proxy", "GIT_CONFIG_VALUE_0": decoy.url(),
		"GIT_CONFIG_KEY_1": "remote.origin.proxy", "GIT_CONFIG_VALUE_1": decoy.url(),
		// A parent git's -c, read after GIT_CONFIG_COUNT; both forms.
		"GIT_CONFIG_PARAMETERS": "'http.https://api.example.test/r.git.proxy'='" + decoy.url() + "' 'http.Proxy=" + decoy.url() + "'",
		// Read after JAVA_TOOL_OPTIONS, by the launcher and the JVM.
		"JDK_JAVA_OPTIONS": "-Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=" + decoy.port(),
		"_JAVA_OPTIONS":    "-Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=" + decoy.port(),
	}
	base := []string{"HOME=" + t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0"}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "HOME" && !strings.HasSuffix(strings.ToLower(k), "proxy") && !strings.HasPrefix(k, "GIT_CONFIG") {
			base = append(base, kv)
		}
	}
	for k, v := range inherited {
		base = append(base, k+"="+v)
	}
	vars := r.vars(base)
	env := mergeEnv(base, vars)

	// The variables themselves: each inherited proxy variable now names
	// the gateway, each bypass list is NO_PROXY's.
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	for k := range inherited {
		want := proxy.String()
		if strings.HasSuffix(strings.ToLower(k), "no_proxy") || k == "npm_config_noproxy" {
			want = DefaultNoProxy
		}
		if strings.HasPrefix(k, "GIT_CONFIG") || strings.HasSuffix(k, "JAVA_OPTIONS") {
			continue
		}
		if m[k] != want {
			t.Errorf("%s=%q, want %q", k, m[k], want)
		}
	}
	if m["GIT_CONFIG_VALUE_0"] != proxy.String() || m["GIT_CONFIG_VALUE_1"] != proxy.String() || m["GIT_CONFIG_KEY_2"] != "http.proxy" {
		t.Errorf("git entries: %v %v %v", m["GIT_CONFIG_VALUE_0"], m["GIT_CONFIG_VALUE_1"], m["GIT_CONFIG_KEY_2"])
	}

	// Go's net/http: the proxy ProxyFromEnvironment would choose.
	cfg := httpproxy.Config{HTTPProxy: m["HTTP_PROXY"], HTTPSProxy: m["HTTPS_PROXY"], NoProxy: m["NO_PROXY"]}
	if u, err := cfg.ProxyFunc()(&url.URL{Scheme: "https", Host: "api.example.test"}); err != nil || u == nil || u.Host != proxy.Host || u.User == nil {
		t.Errorf("Go net/http proxy: %v %v", u, err)
	}

	javaGet := filepath.Join(t.TempDir(), "Get.java")
	if err := os.WriteFile(javaGet, []byte(`public class Get {
  public static void main(String[] a) throws Exception {
    var c = (javax.net.ssl.HttpsURLConnection) new java.net.URL("https://api.example.test/x").openConnection();
    c.setConnectTimeout(10000); c.setReadTimeout(10000);
    c.getResponseCode();
  }
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	clients := []struct {
		name string
		args []string
		want string
	}{
		{"curl", []string{"curl", "-sS", "--max-time", "10", "https://api.example.test/x"}, "CONNECT api.example.test:443 +auth"},
		// ftp goes through ALL_PROXY (an HTTP proxy: GET ftp://...).
		{"curl ftp", []string{"curl", "-sS", "--max-time", "10", "ftp://api.example.test/x"}, "GET ftp://api.example.test/x +auth"},
		// sh -c: a shell passes the environment on in an order of its own.
		{"python3 urllib", []string{"sh", "-c", `exec python3 -c 'import urllib.request; urllib.request.urlopen("https://api.example.test/x", timeout=10)'`}, "CONNECT api.example.test:443 +auth"},
		{"node https.get", []string{"node", "-e", `require('https').get('https://api.example.test/x', {timeout: 10000}).on('error', () => process.exit(1))`}, "CONNECT api.example.test:443 +auth"},
		{"git ls-remote", []string{"git", "ls-remote", "https://api.example.test/r.git"}, "CONNECT api.example.test:443 +auth"},
		// Plain http://: an absolute-URI request to the proxy.
		{"curl http", []string{"curl", "-sS", "--max-time", "10", "http://api.example.test/x"}, "GET http://api.example.test/x +auth"},
		{"python3 urllib http", []string{"sh", "-c", `exec python3 -c 'import urllib.request; urllib.request.urlopen("http://api.example.test/x", timeout=10)'`}, "GET http://api.example.test/x +auth"},
		// Java sends no token (docs/agents.md); javac: the source
		// launcher needs a JDK.
		{"java", []string{"java", javaGet}, "CONNECT api.example.test:443"},
		// Node 20 went direct (the preload covered https only).
		{"node http.get", []string{"node", "-e", `require('http').get('http://api.example.test/x', {timeout: 10000}).on('error', () => process.exit(1))`}, "GET http://api.example.test/x +auth"},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			bin := c.args[0]
			switch bin {
			case "sh":
				bin = "python3"
			case "java":
				bin = "javac"
			}
			if _, err := exec.LookPath(bin); err != nil {
				t.Skipf("%s is not installed", bin)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, c.args[0], c.args[1:]...)
			cmd.Env = env
			out, _ := cmd.CombinedOutput() // the stand-in refuses: the client fails
			if got := gw.take(); len(got) == 0 || got[0] != c.want {
				t.Errorf("the gateway saw %q, want %q\n%s", got, c.want, out)
			}
			if got := decoy.take(); len(got) != 0 {
				t.Errorf("the caller's other proxy saw %q", got)
			}
		})
	}
}

// TestPrintEnvInheritedNames: the caller's environment chooses the names
// of the proxy variables credgate run overrides, and --print-env prints
// them. Names no shell can hold — a command, a second assignment, a line
// for $GITHUB_ENV — are left out of the class, and printEnv refuses to
// write one: sourcing the shell output runs nothing else, the github
// output sets only credgate run's variables.
func TestPrintEnvInheritedNames(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	marker := filepath.Join(t.TempDir(), "injected")
	proxy, _ := url.Parse("http://127.0.0.1:3128")
	r := runEnv{Proxy: proxy, NoProxy: DefaultNoProxy, Files: runFiles{Bundle: "/b", TrustStore: "/t", NodePreload: "/n"}}
	hostile := []string{
		"x;touch " + marker + ";_proxy=v",
		"x$(touch " + marker + ")_proxy=v",
		"x`touch " + marker + "`_proxy=v",
		"A\nEVIL=1\nB_proxy=v",
		"EVIL<<EOF\nx_proxy=v",
		"1_proxy=v",
		"a-b_proxy=v",
		"Https_proxy=http://other:1", // a name like this one is overridden
	}
	vars := r.vars(hostile)
	var names []string
	for _, v := range vars {
		if !envName(v.Key) {
			t.Errorf("vars overrides %q", v.Key)
		}
		names = append(names, v.Key)
	}
	if !slices.Contains(names, "Https_proxy") {
		t.Error("Https_proxy not overridden")
	}
	for _, format := range []string{"shell", "github"} {
		var b bytes.Buffer
		if err := printEnv(&b, format, vars); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(b.String(), "EVIL") || strings.Contains(b.String(), "touch") {
			t.Errorf("%s output holds an inherited name:\n%s", format, b.String())
		}
		if format == "shell" {
			if out, err := exec.Command("sh", "-c", b.String()).CombinedOutput(); err != nil {
				t.Errorf("sh: %v\n%s", err, out)
			}
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("sourcing the output ran an inherited name")
	}
	if err := printEnv(io.Discard, "shell", []envVar{{"x;id", "v"}}); err == nil {
		t.Error("printEnv wrote a name that is not one")
	}
}
