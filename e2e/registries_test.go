package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/registrytest"
)

// registriesPolicy is examples/registries.yaml with the hosts on the
// fake: read-only CI credentials for an npm registry (Bearer), a Python
// index, a Go module proxy and a Maven repository (Basic). Only GET and HEAD are
// allowed, so a publish (npm PUT, twine POST, mvn deploy PUT) is refused
// by policy. The
// npm registry sets encoded_slashes: npm asks for a scoped package as
// /@scope%2fname.
const registriesPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  npm-registry: {hosts: [npm.registry.test], allow_private: true, encoded_slashes: true}
  python-index: {hosts: [pypi.internal.test], allow_private: true}
  go-proxy: {hosts: [goproxy.internal.test], allow_private: true}
  maven-repo: {hosts: [maven.internal.test], allow_private: true}
credentials:
  npm-read-token: {provider: static, env: E2E_NPM_TOKEN}
  python-index-read:
    provider: static
    fields:
      username: {env: E2E_PYPI_USER}
      password: {env: E2E_PYPI_PASSWORD}
  go-proxy-read:
    provider: static
    fields:
      username: {env: E2E_GOPROXY_USER}
      password: {env: E2E_GOPROXY_PASSWORD}
  maven-read:
    provider: static
    fields:
      username: {env: E2E_MAVEN_USER}
      password: {env: E2E_MAVEN_PASSWORD}
rules:
  - name: npm-read
    from: local
    to: npm-registry
    methods: [GET, HEAD]
    inject: {credential: npm-read-token, as: bearer}
  - name: python-index-read
    from: local
    to: python-index
    methods: [GET, HEAD]
    paths: [/simple/*, /packages/*]
    inject: {credential: python-index-read, as: basic}
  - name: go-proxy-read
    from: local
    to: go-proxy
    methods: [GET, HEAD]
    inject: {credential: go-proxy-read, as: basic}
  - name: maven-read
    from: local
    to: maven-repo
    methods: [GET, HEAD]
    paths: [/releases/*]
    inject: {credential: maven-read, as: basic}
default: deny
`

// TestPackageRegistries drives the real package managers a CI job runs
// (npm, pip, the go command, Maven) through the gateway to internal/registrytest,
// which implements each registry's protocol and refuses a missing or
// wrong credential as the registry does. npm installs an unscoped and a
// scoped package (/@acme%2fgadget). Each client is configured only
// with HTTPS_PROXY and its CA setting and holds no credential: the
// registry must see the injected one, nothing the client wrote (its
// cache, lock file, output) may contain it, and a publish is refused by
// the read-only policy before it reaches the registry.
func TestPackageRegistries(t *testing.T) {
	t.Parallel()
	const (
		npmToken   = "npm_E2Er3adOnlyT0ken0123456789abcdef"
		pypiUser   = "ci-reader"
		pypiPass   = "pypi-e2e-r3ad-0nly-passw0rd"
		goUser     = "ci-reader"
		goPass     = "goproxy-e2e-r3ad-0nly-passw0rd"
		npmHost    = "npm.registry.test"
		pypiHost   = "pypi.internal.test"
		goProxHost = "goproxy.internal.test"
		mvnUser    = "ci-reader"
		mvnPass    = "maven-e2e-r3ad-0nly-passw0rd"
		mvnHost    = "maven.internal.test"
	)
	secrets := []string{npmToken, pypiPass, goPass, mvnPass}
	leaf, err := originCA.Leaf(npmHost, pypiHost, goProxHost, mvnHost, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	fake, err := registrytest.New(registrytest.Options{Certificate: &leaf,
		NPMHost: npmHost, NPMToken: npmToken,
		PyPIHost: pypiHost, PyPIUser: pypiUser, PyPIPassword: pypiPass,
		GoProxyHost: goProxHost, GoProxyUser: goUser, GoProxyPassword: goPass,
		MavenHost: mvnHost, MavenUser: mvnUser, MavenPassword: mvnPass})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	reportPeer(t, "registries: fake npm registry, Python index, Go module proxy and Maven repository (internal/registrytest) at %s", fake.URL)
	e := startEnv(t, envOptions{
		Policy:  registriesPolicy,
		Resolve: map[string]string{npmHost + ":443": fake.Addr, pypiHost + ":443": fake.Addr, goProxHost + ":443": fake.Addr, mvnHost + ":443": fake.Addr},
		Env: []string{"E2E_NPM_TOKEN=" + npmToken, "E2E_PYPI_USER=" + pypiUser, "E2E_PYPI_PASSWORD=" + pypiPass,
			"E2E_GOPROXY_USER=" + goUser, "E2E_GOPROXY_PASSWORD=" + goPass,
			"E2E_MAVEN_USER=" + mvnUser, "E2E_MAVEN_PASSWORD=" + mvnPass},
	})
	e.secrets = append(e.secrets, secrets...)

	// seenOK checks that registry saw requests, each with the injected
	// credential.
	seenOK := func(t *testing.T, registry string) {
		t.Helper()
		n := 0
		for _, s := range fake.Requests() {
			if s.Registry != registry {
				continue
			}
			n++
			if !s.OK {
				t.Errorf("%s: %s %s arrived without the injected credential", registry, s.Method, s.Path)
			}
		}
		if n == 0 {
			t.Errorf("%s: the registry saw no request", registry)
		}
	}

	t.Run("npm install", func(t *testing.T) {
		t.Parallel()
		if _, err := exec.LookPath("npm"); err != nil {
			t.Skip("npm is not installed (scripts/test-tools.sh installs it)")
		}
		dir := t.TempDir()
		home := filepath.Join(dir, "home")
		project := filepath.Join(dir, "project")
		mkdirs(t, home, project)
		// An empty user config: no _authToken anywhere.
		npmrc := filepath.Join(home, ".npmrc")
		writeFileT(t, npmrc, "")
		out := runRegistryClient(t, e, project, "npm", []string{"install", registrytest.NPMPackage, registrytest.NPMScopedPackage,
			"--registry", "https://" + npmHost + "/", "--no-audit", "--no-fund", "--no-update-notifier", "--loglevel", "warn"},
			"HOME="+home, "NODE_EXTRA_CA_CERTS="+gwCACert, "npm_config_userconfig="+npmrc,
			"npm_config_cache="+filepath.Join(dir, "cache"), "npm_config_globalconfig="+filepath.Join(dir, "global-npmrc"))
		pkgs := []string{registrytest.NPMPackage, registrytest.NPMScopedPackage}
		for _, p := range pkgs {
			b, err := os.ReadFile(filepath.Join(project, "node_modules", filepath.FromSlash(p), "index.js"))
			if err != nil || !strings.Contains(string(b), p+" from registrytest") {
				t.Fatalf("the installed package %s: %v %q\n%s", p, err, b, out)
			}
		}
		var lock struct {
			Packages map[string]struct{ Integrity, Resolved string } `json:"packages"`
		}
		b, err := os.ReadFile(filepath.Join(project, "package-lock.json"))
		if err == nil {
			err = json.Unmarshal(b, &lock)
		}
		if err != nil {
			t.Fatalf("package-lock.json: %v", err)
		}
		tarballs := 0
		for _, s := range fake.Requests() {
			if s.Registry == "npm" && strings.HasSuffix(s.Path, ".tgz") {
				tarballs++
			}
		}
		for _, p := range pkgs {
			if got := lock.Packages["node_modules/"+p].Integrity; got != fake.NPMIntegrity(p) {
				t.Errorf("%s: lock integrity %q, want the registry's %q", p, got, fake.NPMIntegrity(p))
			}
		}
		if tarballs != len(pkgs) {
			t.Errorf("npm fetched %d tarballs from the registry, want %d", tarballs, len(pkgs))
		}
		seenOK(t, "npm")
		assertNotInTree(t, dir, out, secrets)
	})

	t.Run("pip download", func(t *testing.T) {
		t.Parallel()
		if err := exec.Command("python3", "-m", "pip", "--version").Run(); err != nil {
			t.Skipf("python3 -m pip does not run (%v); scripts/test-tools.sh installs python3-pip", err)
		}
		dir := t.TempDir()
		home, dest := filepath.Join(dir, "home"), filepath.Join(dir, "dest")
		mkdirs(t, home, dest)
		out := runRegistryClient(t, e, dir, "python3", []string{"-m", "pip", "download", "--index-url", "https://" + pypiHost + "/simple/",
			"--cert", gwCACert, "--no-deps", "--no-cache-dir", "--disable-pip-version-check", "--no-input", "--dest", dest,
			registrytest.PyPIProject + "==" + registrytest.PyPIVersion},
			"HOME="+home, "PIP_CONFIG_FILE="+os.DevNull, "PYTHONNOUSERSITE=1")
		whl, err := filepath.Glob(filepath.Join(dest, "*.whl"))
		if err != nil || len(whl) != 1 {
			t.Fatalf("pip downloaded %v (%v)\n%s", whl, err, out)
		}
		b, err := os.ReadFile(whl[0])
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != fake.WheelSHA256() {
			t.Errorf("the wheel differs from the index's")
		}
		seenOK(t, "pypi")
		assertNotInTree(t, dir, out, secrets)
	})

	t.Run("go mod download", func(t *testing.T) {
		t.Parallel()
		goBin, err := exec.LookPath("go")
		if err != nil {
			t.Skip("the go command is not on PATH")
		}
		dir := t.TempDir()
		home, work := filepath.Join(dir, "home"), filepath.Join(dir, "work")
		mkdirs(t, home, work)
		out := runRegistryClient(t, e, work, goBin, []string{"mod", "download", "-json", registrytest.GoModule + "@" + registrytest.GoVersion},
			"HOME="+home, "GOENV=off", "GOTOOLCHAIN=local", "GOPATH="+filepath.Join(dir, "gopath"),
			"GOMODCACHE="+filepath.Join(dir, "modcache"), "GOFLAGS=-mod=mod -modcacherw",
			"GOPROXY=https://"+goProxHost, "GOSUMDB=off", "GONOSUMDB=acme.internal.test", "GOPRIVATE=", "GONOPROXY=",
			"GOAUTH=off", "NETRC="+filepath.Join(home, "no-netrc"), "SSL_CERT_FILE="+gwCACert)
		var res struct{ Path, Version, Zip, Sum, Error string }
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("go mod download -json: %v\n%s", err, out)
		}
		if res.Error != "" || res.Version != registrytest.GoVersion || !strings.HasPrefix(res.Sum, "h1:") {
			t.Fatalf("go mod download: %+v", res)
		}
		if _, err := os.Stat(res.Zip); err != nil {
			t.Errorf("module zip: %v", err)
		}
		seenOK(t, "goproxy")
		assertNotInTree(t, dir, out, secrets)
	})

	t.Run("mvn validate", func(t *testing.T) {
		t.Parallel()
		for _, tool := range []string{"mvn", "keytool"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("%s is not installed (scripts/test-tools.sh installs maven)", tool)
			}
		}
		dir := t.TempDir()
		home, project, repo := filepath.Join(dir, "home"), filepath.Join(dir, "project"), filepath.Join(dir, "repo")
		mkdirs(t, home, project, repo)
		// Maven ignores HTTPS_PROXY: its proxy comes from settings.xml,
		// which holds no <server> credentials.
		host, port, _ := strings.Cut(e.proxyAddr, ":")
		settings := filepath.Join(dir, "settings.xml")
		writeFileT(t, settings, `<settings><proxies><proxy><id>credgate</id><active>true</active><protocol>https</protocol>`+
			`<host>`+host+`</host><port>`+port+`</port></proxy></proxies></settings>`)
		// A build extension is resolved (pom, jar and their .sha1) by
		// Maven's core when it reads the project, so "validate" fetches
		// it without any plugin, which would have to come from Maven
		// Central. The repository replaces "central", so nothing else is
		// asked for elsewhere.
		repoXML := `<id>central</id><url>https://` + mvnHost + registrytest.MavenRepoPath + `</url>` +
			`<releases><checksumPolicy>fail</checksumPolicy></releases><snapshots><enabled>false</enabled></snapshots>`
		writeFileT(t, filepath.Join(project, "pom.xml"), `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ci</groupId><artifactId>job</artifactId><version>1</version><packaging>pom</packaging>
  <repositories><repository>`+repoXML+`</repository></repositories>
  <pluginRepositories><pluginRepository>`+repoXML+`</pluginRepository></pluginRepositories>
  <build><extensions><extension><groupId>`+registrytest.MavenGroup+`</groupId><artifactId>`+registrytest.MavenArtifact+
			`</artifactId><version>`+registrytest.MavenVersion+`</version></extension></extensions></build>
</project>
`)
		trust := filepath.Join(dir, "credgate.p12")
		if out, err := exec.Command("keytool", "-importcert", "-noprompt", "-alias", "credgate", "-file", gwCACert,
			"-keystore", trust, "-storetype", "PKCS12", "-storepass", "changeit").CombinedOutput(); err != nil {
			t.Fatalf("keytool: %v\n%s", err, out)
		}
		out := runRegistryClient(t, e, project, "mvn", []string{"-B", "-s", settings, "-Dmaven.repo.local=" + repo, "validate"},
			"HOME="+home, "MAVEN_OPTS=-Djavax.net.ssl.trustStore="+trust+" -Djavax.net.ssl.trustStorePassword=changeit -Djavax.net.ssl.trustStoreType=PKCS12")
		_, jarPath := registrytest.MavenPaths()
		local := filepath.Join(repo, filepath.FromSlash(strings.TrimPrefix(jarPath, registrytest.MavenRepoPath+"/")))
		if _, err := os.Stat(local); err != nil {
			t.Fatalf("the artifact is not in the local repository: %v\n%s", err, tail(out, 40))
		}
		fetched := map[string]bool{}
		for _, s := range fake.Requests() {
			if s.Registry == "maven" && s.Method == http.MethodGet {
				fetched[s.Path] = true
			}
		}
		if !fetched[jarPath] || !fetched[jarPath+".sha1"] {
			t.Errorf("maven fetched %v, want the jar and its .sha1", fetched)
		}
		seenOK(t, "maven")
		assertNotInTree(t, dir, out, secrets)
	})

	t.Run("publish refused by policy", func(t *testing.T) {
		t.Parallel()
		c := newGoClient(t, e.proxyURL, gwCACert, false)
		for _, tc := range []struct{ method, url, code string }{
			{"PUT", "https://" + npmHost + "/" + registrytest.NPMPackage, "method_not_allowed"},                      // npm publish
			{"DELETE", "https://" + npmHost + "/" + registrytest.NPMPackage + "/-rev/1", "method_not_allowed"},       // npm unpublish
			{"POST", "https://" + pypiHost + "/legacy/", "path_not_allowed"},                                         // twine upload
			{"GET", "https://" + pypiHost + "/admin/", "path_not_allowed"},                                           // outside the read paths
			{"PUT", "https://" + mvnHost + "/releases/com/acme/widget/1.0.1/widget-1.0.1.jar", "method_not_allowed"}, // mvn deploy
		} {
			req, err := http.NewRequest(tc.method, tc.url, strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			checkDenial(t, resp.StatusCode, resp.Header, string(body), http.StatusForbidden, tc.code, "*")
		}
		for _, s := range fake.Requests() {
			if s.Method != http.MethodGet && s.Method != http.MethodHead || strings.HasPrefix(s.Path, "/admin") {
				t.Errorf("%s: %s %s reached the registry", s.Registry, s.Method, s.Path)
			}
		}
	})
}

// runRegistryClient runs a package manager in dir with clientEnv's proxy
// settings plus extra, bounded in time, and returns its combined output.
func runRegistryClient(t *testing.T, e *env, dir, name string, args []string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = clientEnv(e.proxyURL, extra...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s %s: %v", filepath.Base(name), args[0], time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, tail(stdout.String(), 40), tail(stderr.String(), 40))
	}
	return stdout.String() + stderr.String()
}

// assertNotInTree fails if any secret appears in output or in any file
// under dir (the client's home, config, cache and what it installed):
// the client never held the credential.
func assertNotInTree(t *testing.T, dir, output string, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(output, s) {
			t.Errorf("a registry credential appears in the client's output")
		}
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("a registry credential appears in the client's file %s", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("walk %s: %v", dir, err)
	}
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}
