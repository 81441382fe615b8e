package cli

import (
	"bytes"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
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
		"HTTPS_PROXY": p, "https_proxy": p, "HTTP_PROXY": p, "http_proxy": p,
		"NO_PROXY": "localhost,127.0.0.1,::1,.internal", "no_proxy": "localhost,127.0.0.1,::1,.internal",
		"CURL_CA_BUNDLE": "/tmp/d/ca-bundle.pem", "SSL_CERT_FILE": "/tmp/d/ca-bundle.pem", "REQUESTS_CA_BUNDLE": "/tmp/d/ca-bundle.pem",
		"NODE_EXTRA_CA_CERTS": "/tmp/d/ca-bundle.pem", "AWS_CA_BUNDLE": "/tmp/d/ca-bundle.pem", "GIT_SSL_CAINFO": "/tmp/d/ca-bundle.pem",
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
	o.gateway = "https://gw/x"
	if _, err := o.proxyURL(nil); err == nil {
		t.Error("an https proxy URL with a path was accepted")
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
}
