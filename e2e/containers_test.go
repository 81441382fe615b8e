package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/credgate/credgate/internal/fakekit"
	"github.com/credgate/credgate/internal/freeport"
	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/internal/testpki"
)

// containersPolicy is examples/containers.yaml on 127.0.0.1: a registry
// with token auth (the gateway does the exchange: oci-token) and one with
// HTTP Basic on every request (basic). Each allows pulls of every
// repository and pushes to ci/app only: a push elsewhere is refused by
// policy before the registry sees it.
const containersPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  token-registry: {hosts: [registry.token.test], allow_private: true}
  basic-registry: {hosts: [registry.basic.test], allow_private: true}
credentials:
  registry-robot:
    provider: static
    fields:
      username: {env: E2E_REGISTRY_USER}
      password: {env: E2E_REGISTRY_PASSWORD}
rules:
  - name: token-registry-pull
    from: local
    to: token-registry
    methods: [GET, HEAD]
    inject: &token {credential: registry-robot, as: oci-token, realm: "{{.Realm}}", service: registry.token.test, ca_cert: "{{.RealmCA}}"}
  - name: token-registry-push
    from: local
    to: token-registry
    methods: [POST, PUT, PATCH]
    paths: [/v2/ci/app/*]
    inject: *token
  - name: basic-registry-pull
    from: local
    to: basic-registry
    methods: [GET, HEAD]
    inject: {credential: registry-robot, as: basic}
  - name: basic-registry-push
    from: local
    to: basic-registry
    methods: [POST, PUT, PATCH]
    paths: [/v2/ci/app/*]
    inject: {credential: registry-robot, as: basic}
default: deny
`

const (
	registryUser     = "ci-robot"
	registryPassword = "registry-e2e-r0b0t-passw0rd-0123"
	tokenIssuer      = "credgate-e2e-token-service"
)

// TestContainerRegistries drives buildah through the gateway to CNCF
// Distribution's registry (built by scripts/distribution.sh), once with
// token auth (auth.token: a token service in this test checks the robot's
// Basic credentials and issues JWTs the registry verifies against its
// rootcertbundle) and once with auth.htpasswd (Basic on every request).
// buildah gets only HTTPS_PROXY and the gateway's CA (--cert-dir), no
// auth.json. It pushes an image to ci/app and pulls it back; a push to
// another repository is refused by the read-only rule and never reaches
// the registry. skopeo copies the image out the same way, when it is
// installed. Every request the registry logged was authenticated as
// the robot; no file buildah wrote and none of its output holds the
// password or any token the token service issued; the token service saw
// only the gateway, with the robot's Basic credentials, asking for the
// scope of each request.
func TestContainerRegistries(t *testing.T) {
	if _, err := exec.LookPath("buildah"); err != nil {
		t.Skip("buildah is not installed (scripts/test-tools.sh installs it)")
	}
	registryBin, err := distributionBinary(t)
	if err != nil {
		t.Fatalf("the registry: %v", err)
	}
	t.Parallel()
	ts := startTokenService(t)
	tokenReg := startRegistry(t, registryBin, "registry.token.test", fmt.Sprintf(`
  token:
    realm: %s
    service: registry.token.test
    issuer: %s
    rootcertbundle: %s`, ts.realm, tokenIssuer, ts.bundle))
	hash, err := bcrypt.GenerateFromPassword([]byte(registryPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	writeFileT(t, htpasswd, registryUser+":"+string(hash)+"\n")
	basicReg := startRegistry(t, registryBin, "registry.basic.test", fmt.Sprintf(`
  htpasswd:
    realm: registry.basic.test
    path: %s`, htpasswd))

	e := startEnv(t, envOptions{
		Policy:  strings.NewReplacer("{{.Realm}}", ts.realm, "{{.RealmCA}}", originCACert).Replace(containersPolicy),
		Resolve: map[string]string{"registry.token.test:443": tokenReg.addr, "registry.basic.test:443": basicReg.addr},
		Env:     []string{"E2E_REGISTRY_USER=" + registryUser, "E2E_REGISTRY_PASSWORD=" + registryPassword},
	})
	e.secrets = append(e.secrets, registryPassword)

	// buildah trusts the gateway's CA from --cert-dir (token registry) or,
	// as any Go program, from SSL_CERT_FILE (basic registry).
	for _, reg := range []*registry{tokenReg, basicReg} {
		t.Run(reg.host, func(t *testing.T) {
			b := newBuildah(t, e, reg == basicReg)
			b.run(t, "build an image", "from", "--name", "work", "scratch")
			b.run(t, "add a file", "config", "--label", "org.opencontainers.image.title=credgate-e2e", "work")
			b.run(t, "commit", "commit", "work", "localhost/e2e:v1")
			ref := "docker://" + reg.host + "/ci/app:v1"
			b.run(t, "push", "push", "--cert-dir", b.certDir, "--retry", "0", "localhost/e2e:v1", ref)
			b.run(t, "remove the local image", "rmi", "-a", "-f")
			b.run(t, "pull", "pull", "--cert-dir", b.certDir, "--retry", "0", ref)
			if out := b.run(t, "inspect", "inspect", "--type", "image", "--format", "{{index .ImageAnnotations \"org.opencontainers.image.title\"}}{{index .OCIv1.Config.Labels \"org.opencontainers.image.title\"}}", reg.host+"/ci/app:v1"); !strings.Contains(out, "credgate-e2e") {
				t.Errorf("the pulled image lacks the pushed label: %q", out)
			}
			if _, err := exec.LookPath("skopeo"); err != nil {
				t.Log("skopeo is not installed (scripts/test-tools.sh installs it): its copy is not checked")
			} else {
				// skopeo, the same way: the proxy, the CA, no credentials.
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				caArgs := []string{"--src-cert-dir", b.certDir}
				cmd := exec.CommandContext(ctx, "skopeo", append(append([]string{"copy", "--retry-times", "0", "--policy", filepath.Join(b.dir, "policy.json")}, caArgs...),
					ref, "oci:"+filepath.Join(b.dir, "skopeo-copy")+":v1")...)
				cmd.Env, cmd.Dir = b.env, b.dir
				out, err := cmd.CombinedOutput()
				cancel()
				b.output = append(b.output, string(out))
				if err != nil {
					t.Errorf("skopeo copy %s: %v\n%s", ref, err, tail(string(out), 20))
				} else if _, err := os.Stat(filepath.Join(b.dir, "skopeo-copy", "index.json")); err != nil {
					t.Errorf("skopeo copy wrote no OCI layout: %v", err)
				}
			}
			// A push the policy does not allow fails before the registry.
			out, err := b.runErr("push elsewhere", "push", "--cert-dir", b.certDir, "--retry", "0", reg.host+"/ci/app:v1", "docker://"+reg.host+"/ci/other:v1")
			if err == nil {
				t.Errorf("a push to ci/other succeeded:\n%s", tail(out, 20))
			}
			b.output = append(b.output, out)
			secrets := append([]string{registryPassword}, ts.issued()...)
			assertNotInTree(t, b.dir, strings.Join(b.output, "\n"), secrets)
			for _, f := range []string{filepath.Join(b.dir, "run", "containers", "auth.json"), filepath.Join(b.dir, "home", ".docker", "config.json"), filepath.Join(b.dir, "home", ".config", "containers", "auth.json")} {
				if _, err := os.Stat(f); err == nil {
					t.Errorf("buildah wrote %s: it must hold no registry credential", f)
				}
			}

			seen := reg.requests(t)
			pushes := 0
			for _, r := range seen {
				if r.User != registryUser || r.Status == http.StatusUnauthorized {
					t.Errorf("the registry got %s %s as user %q, answered %d: want every request authenticated as %s", r.Method, r.URI, r.User, r.Status, registryUser)
				}
				if strings.HasPrefix(r.URI, "/v2/ci/other/") && r.Method != http.MethodGet && r.Method != http.MethodHead {
					t.Errorf("%s %s reached the registry: the policy refuses it", r.Method, r.URI)
				}
				if r.Method == http.MethodPut && strings.Contains(r.URI, "/manifests/") {
					pushes++
				}
			}
			if pushes != 1 {
				t.Errorf("the registry stored %d manifests, want the one push", pushes)
			}
			// The refusal's audit line (written after the answer).
			var refused []auditEvent
			poll.True(t, 10*time.Second, "the gateway audits the refused upload to ci/other", func() bool {
				refused = refused[:0]
				for _, ev := range e.audit() {
					if ev.Host == reg.host && ev.Method == http.MethodPost && strings.HasPrefix(ev.Path, "/v2/ci/other/") {
						refused = append(refused, ev)
					}
				}
				return len(refused) > 0
			})
			for _, ev := range refused {
				if ev.Decision != "deny" || ev.Code != "method_not_allowed" {
					t.Errorf("the gateway's audit: POST %s %s %s, want deny method_not_allowed", ev.Path, ev.Decision, ev.Code)
				}
			}
		})
	}

	// The token service saw the gateway alone, with the robot's Basic
	// credentials, and was asked for each request's scope, never more:
	// pushes to ci/app only, pulls (buildah checks whether ci/other has
	// the blobs before it uploads them) anywhere.
	scopes := ts.scopes()
	if len(scopes) == 0 {
		t.Fatal("the token service issued no token")
	}
	for _, s := range scopes {
		switch s {
		case "", "repository:ci/app:pull", "repository:ci/app:pull,push", "repository:ci/other:pull":
		default:
			t.Errorf("the token service was asked for scope %q", s)
		}
	}
	if n := ts.refused(); n != 0 {
		t.Errorf("the token service refused %d requests: only the gateway, with the robot's credentials, may reach it", n)
	}
}

// distributionBinary returns CNCF Distribution's registry, built by
// scripts/distribution.sh into the tools directory.
func distributionBinary(t *testing.T) (string, error) {
	return buildTool(t, "distribution.sh", "registry", 40*time.Minute)
}

// registry is a running Distribution registry with TLS on 127.0.0.1.
type registry struct {
	host, addr string
	log        *syncBuffer
}

// registryRequest is one request of the registry's log.
type registryRequest struct {
	Method string `json:"http.request.method"`
	URI    string `json:"http.request.uri"`
	Status int    `json:"http.response.status"`
	User   string `json:"auth.user.name"`
	Agent  string `json:"http.request.useragent"`
	Msg    string `json:"msg"`
}

// probeAgent is the User-Agent of startRegistry's readiness probe.
const probeAgent = "credgate-e2e-readiness-probe"

// startRegistry runs the registry for host (a certificate of the origin
// CA) with filesystem storage and the given auth: block, and waits until
// it answers.
func startRegistry(t *testing.T, bin, host, auth string) *registry {
	t.Helper()
	dir := t.TempDir()
	leaf, err := originCA.Leaf(host, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := testpki.PEM(leaf)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFileT(t, certFile, string(certPEM))
	writeFileT(t, keyFile, string(keyPEM))
	r := &registry{host: host, addr: fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)), log: new(syncBuffer)}
	cfg := filepath.Join(dir, "config.yml")
	writeFileT(t, cfg, fmt.Sprintf(`version: 0.1
log:
  level: info
  formatter: json
  accesslog: {disabled: true}
storage:
  filesystem: {rootdirectory: %s}
  maintenance: {uploadpurging: {enabled: false}}
http:
  addr: %s
  secret: e2e-upload-state-key
  tls: {certificate: %s, key: %s}
auth:%s
`, filepath.Join(dir, "data"), r.addr, certFile, keyFile, auth))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve", cfg)
	cmd.Env = append(minimalEnv(), "OTEL_TRACES_EXPORTER=none")
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start the registry: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("registry %s log:\n%s", host, tail(r.log.String(), 40))
		}
	})
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: originCAPool, ServerName: host}}}
	poll.Until(t, 30*time.Second, "the registry answers /v2/", func() error {
		req, err := http.NewRequest(http.MethodGet, "https://"+r.addr+"/v2/", nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", probeAgent)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	reportPeer(t, "containers: CNCF Distribution registry v3.1.2 for %s at %s", host, r.addr)
	return r
}

// requests returns the requests the registry logged, but its readiness
// probe's.
func (r *registry) requests(t *testing.T) []registryRequest {
	t.Helper()
	var out []registryRequest
	sc := bufio.NewScanner(strings.NewReader(r.log.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var rr registryRequest
		if json.Unmarshal(sc.Bytes(), &rr) != nil {
			continue
		}
		switch {
		case strings.HasPrefix(rr.Msg, "response completed"):
		case strings.HasPrefix(rr.Msg, "error authorizing context"):
			rr.Status = http.StatusUnauthorized // logged instead of "response completed"
		default:
			continue
		}
		if rr.Agent == probeAgent {
			continue
		}
		out = append(out, rr)
	}
	if len(out) == 0 {
		t.Errorf("registry %s logged no request", r.host)
	}
	return out
}

// tokenService is the registry's token service (the docker token
// protocol): GET ?service=&scope= with HTTP Basic, answered with a JWT
// signed by a key whose certificate is the registry's rootcertbundle,
// granting what was asked for repositories under ci/.
type tokenService struct {
	realm, bundle string
	key           *rsa.PrivateKey
	certDER       []byte

	mu       sync.Mutex
	tokens   []string
	asked    []string
	refusals int
}

func startTokenService(t *testing.T) *tokenService {
	t.Helper()
	ts := &tokenService{key: fakekit.RSAKey(t)}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: tokenIssuer},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ts.key.PublicKey, ts.key)
	if err != nil {
		t.Fatal(err)
	}
	ts.certDER = der
	ts.bundle = filepath.Join(t.TempDir(), "token-signer.pem")
	writeFileT(t, ts.bundle, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	leaf, err := originCA.Leaf("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srv := fakekit.StartTLS(http.HandlerFunc(ts.serve), &leaf)
	t.Cleanup(srv.Close)
	ts.realm = srv.URL + "/token"
	reportPeer(t, "containers: registry token service (JWTs for Distribution's auth.token) at %s", ts.realm)
	return ts
}

func (ts *tokenService) serve(w http.ResponseWriter, r *http.Request) {
	u, p, ok := r.BasicAuth()
	q := r.URL.Query()
	if r.URL.Path != "/token" || !ok || u != registryUser || p != registryPassword || q.Get("service") != "registry.token.test" {
		ts.mu.Lock()
		ts.refusals++
		ts.mu.Unlock()
		w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
		http.Error(w, `{"details":"incorrect username or password"}`, http.StatusUnauthorized)
		return
	}
	type access struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Actions []string `json:"actions"`
	}
	grants := []access{}
	scopes := q["scope"]
	for _, s := range scopes {
		parts := strings.SplitN(s, ":", 3)
		if len(parts) != 3 || parts[0] != "repository" || !strings.HasPrefix(parts[1], "ci/") {
			continue // granted nothing, as registries do
		}
		grants = append(grants, access{Type: "repository", Name: parts[1], Actions: strings.Split(parts[2], ",")})
	}
	now := time.Now()
	jti := make([]byte, 8)
	_, _ = rand.Read(jti)
	tok, err := fakekit.SignJWT("RS256", ts.key, map[string]any{
		"iss": tokenIssuer, "sub": u, "aud": "registry.token.test",
		"iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"jti": fmt.Sprintf("%x", jti), "access": grants,
	}, map[string]any{"x5c": []string{base64.StdEncoding.EncodeToString(ts.certDER)}})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	ts.mu.Lock()
	ts.tokens = append(ts.tokens, tok)
	ts.asked = append(ts.asked, strings.Join(scopes, " "))
	ts.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"token": tok, "access_token": tok, "expires_in": 300, "issued_at": now.UTC().Format(time.RFC3339)})
}

func (ts *tokenService) issued() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return slices.Clone(ts.tokens)
}

func (ts *tokenService) scopes() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return slices.Clone(ts.asked)
}

func (ts *tokenService) refused() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.refusals
}

// buildahRun is buildah with its own storage, configuration and home in
// a temporary directory, the gateway as its proxy, the gateway's CA in
// certDir (or SSL_CERT_FILE, certDir then empty), and no credentials
// anywhere: its auth.json would be under
// XDG_RUNTIME_DIR or HOME, both in the directory, and none is written.
type buildahRun struct {
	dir, certDir string
	env          []string
	global       []string
	output       []string
}

func newBuildah(t *testing.T, e *env, sslCertFile bool) *buildahRun {
	t.Helper()
	dir := t.TempDir()
	b := &buildahRun{dir: dir, certDir: filepath.Join(dir, "certs")}
	if sslCertFile {
		b.certDir = filepath.Join(dir, "no-certs") // empty: the CA comes from SSL_CERT_FILE
	}
	home := filepath.Join(dir, "home")
	mkdirs(t, b.certDir, home, filepath.Join(dir, "run"))
	if !sslCertFile {
		ca, err := os.ReadFile(gwCACert)
		if err != nil {
			t.Fatal(err)
		}
		writeFileT(t, filepath.Join(b.certDir, "ca.crt"), string(ca))
	}
	writeFileT(t, filepath.Join(dir, "registries.conf"), "unqualified-search-registries = []\n")
	writeFileT(t, filepath.Join(dir, "policy.json"), `{"default":[{"type":"insecureAcceptAnything"}]}`)
	writeFileT(t, filepath.Join(dir, "storage.conf"), "[storage]\ndriver = \"vfs\"\n")
	b.global = []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--storage-driver", "vfs"}
	b.env = clientEnv(e.proxyURL, "HOME="+home, "XDG_RUNTIME_DIR="+filepath.Join(dir, "run"), "XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"CONTAINERS_REGISTRIES_CONF="+filepath.Join(dir, "registries.conf"),
		"CONTAINERS_STORAGE_CONF="+filepath.Join(dir, "storage.conf"), "SIGNATURE_POLICY="+filepath.Join(dir, "policy.json"),
		"BUILDAH_ISOLATION=chroot")
	if sslCertFile {
		b.env = append(b.env, "SSL_CERT_FILE="+gwCACert)
	}
	t.Cleanup(func() {
		// vfs layers may be read-only directories: let TempDir remove them.
		_, _ = b.runErr("clean up", "rm", "-a")
		_, _ = b.runErr("clean up", "rmi", "-a", "-f")
	})
	return b
}

// runErr runs buildah ARGS bounded in time and returns its output.
func (b *buildahRun) runErr(what string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append(slices.Clone(b.global), args[0])
	if args[0] == "push" || args[0] == "pull" {
		full = append(full, "--signature-policy", filepath.Join(b.dir, "policy.json"))
	}
	full = append(full, args[1:]...)
	cmd := exec.CommandContext(ctx, "buildah", full...)
	cmd.Env = b.env
	cmd.Dir = b.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: buildah %s: %w", what, strings.Join(args, " "), err)
	}
	return string(out), nil
}

// run is runErr that fails the test on an error.
func (b *buildahRun) run(t *testing.T, what string, args ...string) string {
	t.Helper()
	out, err := b.runErr(what, args...)
	b.output = append(b.output, out)
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(out, 30))
	}
	return out
}

// blobRedirectPolicy is examples/containers.yaml's shape for a registry
// whose blobs redirect to object storage: oci-token on the registry, a
// tunnel without credential to the storage host.
const blobRedirectPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  registry: {hosts: [registry.token.test], allow_private: true}
  blob-storage: {hosts: [blobs.storage.test], allow_private: true}
credentials:
  registry-robot:
    provider: static
    fields:
      username: {env: E2E_REGISTRY_USER}
      password: {env: E2E_REGISTRY_PASSWORD}
rules:
  - name: registry-pull
    from: local
    to: registry
    methods: [GET, HEAD]
    inject: {credential: registry-robot, as: oci-token, realm: "{{.Realm}}", service: registry.token.test, ca_cert: "{{.RealmCA}}"}
  - name: blob-downloads
    from: local
    to: blob-storage
    action: tunnel
default: deny
`

// TestContainerRegistryBlobRedirect: a registry answering a blob GET with
// a 307 to a presigned URL on object storage (Docker Hub, GHCR, ECR,
// registries on S3). The gateway returns the redirect (it follows none);
// the client follows it through the tunnel rule, and the storage host
// receives no credential: no Authorization, neither the password nor the
// registry's token, while the registry got the token.
func TestContainerRegistryBlobRedirect(t *testing.T) {
	t.Parallel()
	ts := startTokenService(t)
	const blob = "layer bytes from object storage"
	var mu sync.Mutex
	var regAuth, storageHeaders []http.Header
	storageLeaf, err := originCA.Leaf("blobs.storage.test")
	if err != nil {
		t.Fatal(err)
	}
	storage := fakekit.StartTLS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		storageHeaders = append(storageHeaders, r.Header.Clone())
		mu.Unlock()
		if r.URL.Query().Get("X-Amz-Signature") == "" {
			http.Error(w, "not presigned", http.StatusForbidden)
			return
		}
		_, _ = io.WriteString(w, blob)
	}), &storageLeaf)
	t.Cleanup(storage.Close)
	regLeaf, err := originCA.Leaf("registry.token.test")
	if err != nil {
		t.Fatal(err)
	}
	reg := fakekit.StartTLS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		regAuth = append(regAuth, r.Header.Clone())
		mu.Unlock()
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+ts.realm+`",service="registry.token.test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, "https://blobs.storage.test/docker/registry/v2/blobs/ab/data?X-Amz-Signature=presigned", http.StatusTemporaryRedirect)
	}), &regLeaf)
	t.Cleanup(reg.Close)

	e := startEnv(t, envOptions{
		Policy:  strings.NewReplacer("{{.Realm}}", ts.realm, "{{.RealmCA}}", originCACert).Replace(blobRedirectPolicy),
		Resolve: map[string]string{"registry.token.test:443": reg.Listener.Addr().String(), "blobs.storage.test:443": storage.Listener.Addr().String()},
		Env:     []string{"E2E_REGISTRY_USER=" + registryUser, "E2E_REGISTRY_PASSWORD=" + registryPassword},
	})
	// The client trusts the gateway's CA (the registry is intercepted)
	// and the storage's own (the tunnel is not).
	bundle := filepath.Join(t.TempDir(), "bundle.pem")
	gw, err := os.ReadFile(gwCACert)
	if err != nil {
		t.Fatal(err)
	}
	writeFileT(t, bundle, string(gw)+string(originCA.CertPEM))
	c := newGoClient(t, e.proxyURL, bundle, true)
	resp, err := c.Get("https://registry.token.test/v2/ci/app/blobs/sha256:" + strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != blob {
		t.Fatalf("the blob: %d %q", resp.StatusCode, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(regAuth) != 1 || !strings.HasPrefix(regAuth[0].Get("Authorization"), "Bearer ") {
		t.Errorf("the registry got %d requests, Authorization %v: want one with the token", len(regAuth), regAuth)
	}
	if len(storageHeaders) != 1 {
		t.Fatalf("the storage got %d requests, want 1", len(storageHeaders))
	}
	secrets := append([]string{registryPassword}, ts.issued()...)
	for name, vv := range storageHeaders[0] {
		for _, v := range vv {
			if strings.EqualFold(name, "Authorization") || slices.ContainsFunc(secrets, func(s string) bool { return strings.Contains(v, s) }) {
				t.Errorf("the storage host got %s: %q: no registry credential may follow the redirect", name, v)
			}
		}
	}
}
