package helm_test

import (
	"bufio"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/internal/freeport"

	"github.com/credgate/credgate/internal/syncbuf"
)

// TestGatewayServesRenderedChart starts the real gateway (`credgate serve`)
// on what the chart renders, with the files the pod would see, and checks
// what the cluster relies on: the liveness and readiness probes and the
// Prometheus scrape path answer on the admin port the manifests name, and
// (per case) an edit of the policy ConfigMap is picked up without a
// restart, and callers' service-account tokens are verified through the
// API server's JWKS and TokenReview with the pod's API token and CA.
func TestGatewayServesRenderedChart(t *testing.T) {
	tests := []struct {
		name    string
		variant string
		// values are added to the variant's (helm merges -f files in order).
		values func(api *fakeAPIServer, upstream string) string
		check  func(t *testing.T, g *gatewayProcess, api *fakeAPIServer)
	}{
		{
			name:    "policy reload",
			variant: "default",
			check: func(t *testing.T, g *gatewayProcess, _ *fakeAPIServer) {
				g.waitForRules(t, 1)
				g.pod.updateConfigMap(fullname+"-policy", map[string]string{"policy.yaml": `
workloads:
  cluster-pods:
    cidrs: [10.0.0.0/8]
    require: [source]
destinations:
  github:
    hosts: [api.github.com, uploads.github.com]
rules:
  - name: github-passthrough
    from: cluster-pods
    to: github
    action: tunnel
  - name: github-deny-gists
    from: "*"
    to: github
    action: deny
default: deny
`})
				g.waitForRules(t, 2)
				g.checkRunning(t)
			},
		},
		{
			name:    "service-account tokens",
			variant: "identity",
			values: func(api *fakeAPIServer, upstream string) string {
				return fmt.Sprintf(`
identity:
  apiServer: %s
config:
  resolve:
    "api.partner.test:443": %q
policy:
  workloads:
    shop-api:
      namespace: shop
      service_account: api
      require: [jwt, kubernetes]
  destinations:
    partner:
      hosts: [api.partner.test]
      ports: [443]
      allow_private: true
  rules:
    - name: shop-partner
      from: shop-api
      to: partner
      action: tunnel
  default: deny
`, api.URL, upstream)
			},
			check: func(t *testing.T, g *gatewayProcess, api *fakeAPIServer) {
				good := mintToken(t, "https://kubernetes.default.svc.cluster.local", "credgate", "shop", "api")
				api.accept(good)
				tests := []struct {
					name, token string
					wantStatus  int
					wantReason  string
				}{
					{"token for credgate", good, http.StatusOK, ""},
					{"no token", "", http.StatusForbidden, "no_rule"},
					{"token for another audience", mintToken(t, "https://kubernetes.default.svc.cluster.local", "vault", "shop", "api"), http.StatusForbidden, "identity_invalid"},
				}
				for _, tt := range tests {
					status, reason := g.connect(t, "api.partner.test:443", tt.token)
					if diff := cmp.Diff([]any{tt.wantStatus, tt.wantReason}, []any{status, reason}); diff != "" {
						t.Errorf("%s: CONNECT status, reason (-want +got):\n%s\ngateway stderr:\n%s", tt.name, diff, g.stderr.String())
					}
				}
				// The JWKS and the reviews were asked for with the pod's
				// API token (the fake API server refuses anything else).
				if n := api.jwksFetches.Load(); n == 0 {
					t.Error("the gateway never fetched the API server's JWKS")
				}
				if n := api.reviews.Load(); n == 0 {
					t.Error("the gateway never asked for a TokenReview")
				}
				if n := api.refused.Load(); n != 0 {
					t.Errorf("%d requests reached the API server without the pod's API token", n)
				}
			},
		},
		{
			name:    "admin over TLS",
			variant: "admin-tls",
			check:   func(t *testing.T, g *gatewayProcess, _ *fakeAPIServer) { checkAdminTLS(t, g) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := fixtures(t)
			api := startFakeAPIServer(t, fx.token)
			fx.configMaps["kube-root-ca.crt"] = map[string]string{"ca.crt": api.caPEM}
			upstream := startUpstream(t)
			extra := fmt.Sprintf("proxyPort: %d\nadminPort: %d\ntls: {port: %d}\n", freeport.Get(t), freeport.Get(t), freeport.Get(t))
			if tt.values != nil {
				extra += tt.values(api, upstream)
			}
			v := variantByName(t, tt.variant)
			args := append(valuesArgs(t, v), valuesArgs(t, variant{name: "serve", values: extra})...)
			objs := parse(t, run(t, helmBin, templateArgs(args...)...))
			g := startGateway(t, newPod(t, objs, fx))
			g.checkAdminEndpoints(t)
			tt.check(t, g, api)
			g.stop(t)
		})
	}
}

// gatewayProcess is `credgate serve` running on a pod's files.
type gatewayProcess struct {
	pod       *pod
	cmd       *exec.Cmd
	stderr    *syncBuffer
	exited    chan struct{}
	waitErr   error
	proxyPort int64
	adminPort int64
	// scheme and client reach the admin port the way kubelet's probes
	// do (https without verifying the certificate, with admin.tls).
	scheme string
	client *http.Client
}

// startGateway rewrites the pod's config so that its absolute paths point
// into the pod's root (relative ones already resolve there), runs the
// gateway on it and waits for its readiness probe to pass.
func startGateway(t *testing.T, p *pod) *gatewayProcess {
	t.Helper()
	cfgPath := p.path("/etc/credgate/config.yaml")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	rootPaths(p, cfg)
	rootSocket(t, p, cfg)
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	write(t, cfgPath, string(out))

	g := &gatewayProcess{
		pod:       p,
		stderr:    &syncBuffer{},
		exited:    make(chan struct{}),
		proxyPort: containerPort(t, p, "proxy"),
		adminPort: containerPort(t, p, "admin"),
		client:    &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second},
		scheme:    "http",
	}
	if s, _ := get(p.ctr, "readinessProbe.httpGet.scheme").(string); s == "HTTPS" {
		g.scheme, g.client = "https", kubeletClient()
	}
	g.cmd = exec.Command(credgateBin(t), "serve", "-c", cfgPath)
	g.cmd.Dir = p.root
	g.cmd.Env = append(withoutProxyEnv(os.Environ()), secretEnv(t, p)...)
	g.cmd.Stdout = io.Discard // the audit log
	g.cmd.Stderr = g.stderr
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("start credgate: %v", err)
	}
	go func() {
		g.waitErr = g.cmd.Wait()
		close(g.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-g.exited:
		default:
			_ = g.cmd.Process.Kill()
			<-g.exited
		}
	})
	g.waitFor(t, 30*time.Second, "the readiness probe", func() error {
		return g.probe(get(g.pod.ctr, "readinessProbe.httpGet.path").(string))
	})
	return g
}

// secretEnv returns the container's environment variables that come from
// Secrets (secretKeyRef), as NAME=VALUE with the fixtures' values: what
// kubelet would set. Plain values are left out: they may name paths of
// the pod, which the config (rewritten by rootPaths) names anyway.
func secretEnv(t *testing.T, p *pod) []string {
	t.Helper()
	env, _ := p.ctr["env"].([]any)
	var out []string
	for _, e := range env {
		ref, ok := get(e, "valueFrom.secretKeyRef").(map[string]any)
		if !ok {
			continue
		}
		name, key := fmt.Sprint(ref["name"]), fmt.Sprint(ref["key"])
		v, ok := p.fx.secrets[name][key]
		if !ok {
			t.Fatalf("env %v: no fixture for Secret %s key %s", get(e, "name"), name, key)
		}
		out = append(out, fmt.Sprintf("%v=%s", get(e, "name"), v))
	}
	return out
}

// rootPaths prefixes every absolute file path in the gateway config (and
// an audit output file and the kill switch state file) with the pod's root.
func rootPaths(p *pod, v any) {
	switch n := v.(type) {
	case map[string]any:
		for k, e := range n {
			if s, ok := e.(string); ok && (slices.Contains(fileKeys, k) || k == "output" || k == "state_file") && strings.HasPrefix(s, "/") {
				n[k] = p.path(s)
				continue
			}
			rootPaths(p, e)
		}
	case []any:
		for _, e := range n {
			rootPaths(p, e)
		}
	}
}

// rootSocket points the config's Workload API socket (unix:///...) into
// the pod's root. The socket's directory is resolved (it is a symlink to
// the fake agent's) so that the address stays within the ~100 bytes a unix
// socket path may have.
func rootSocket(t *testing.T, p *pod, cfg map[string]any) {
	t.Helper()
	wl, _ := get(cfg, "identity.mtls.workload_api").(map[string]any)
	sock, _ := wl["socket"].(string)
	file, ok := strings.CutPrefix(sock, "unix://")
	if !ok {
		return
	}
	dir, err := filepath.EvalSymlinks(p.path(path.Dir(file)))
	if err != nil {
		t.Fatalf("workload_api.socket %s: its directory is not in the pod: %v", sock, err)
	}
	wl["socket"] = "unix://" + filepath.Join(dir, path.Base(file))
}

// containerPort is the credgate container's port of that name.
func containerPort(t *testing.T, p *pod, name string) int64 {
	t.Helper()
	port, ok := get(p.ctr, "ports.[name="+name+"].containerPort").(int)
	if !ok {
		t.Fatalf("the container has no port %s", name)
	}
	return int64(port)
}

// waitFor polls cond every 20ms until it returns nil, failing the test
// after timeout or when the gateway exits.
func (g *gatewayProcess) waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-g.exited:
			t.Fatalf("credgate exited (%v) while waiting for %s\nstderr:\n%s", g.waitErr, what, g.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v\nstderr:\n%s", timeout, what, err, g.stderr.String())
		}
		<-tick.C
	}
}

// probe GETs path on the admin port, as kubelet's httpGet probe does.
func (g *gatewayProcess) probe(path string) error {
	_, err := g.adminGet(path)
	return err
}

func (g *gatewayProcess) adminGet(path string) (string, error) {
	resp, err := g.client.Get(fmt.Sprintf("%s://127.0.0.1:%d%s", g.scheme, g.adminPort, path))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(body), nil
}

// checkAdminEndpoints checks that the probes (start-up, liveness,
// readiness) and the scrape annotations of the rendered pod reach the
// gateway's admin listener.
func (g *gatewayProcess) checkAdminEndpoints(t *testing.T) {
	t.Helper()
	d := mustFind(t, g.pod.objs, "Deployment", fullname)
	ann := get(d, "spec.template.metadata.annotations").(map[string]any)
	for _, c := range []struct{ what, port, path string }{
		{"startupProbe", fmt.Sprint(get(g.pod.ctr, "startupProbe.httpGet.port")), fmt.Sprint(get(g.pod.ctr, "startupProbe.httpGet.path"))},
		{"livenessProbe", fmt.Sprint(get(g.pod.ctr, "livenessProbe.httpGet.port")), get(g.pod.ctr, "livenessProbe.httpGet.path").(string)},
		{"readinessProbe", fmt.Sprint(get(g.pod.ctr, "readinessProbe.httpGet.port")), get(g.pod.ctr, "readinessProbe.httpGet.path").(string)},
		{"prometheus.io annotations", fmt.Sprint(ann["prometheus.io/port"]), fmt.Sprint(ann["prometheus.io/path"])},
	} {
		if c.port != "admin" && c.port != fmt.Sprint(g.adminPort) {
			t.Errorf("%s: port %s is not the admin port %d", c.what, c.port, g.adminPort)
			continue
		}
		if err := g.probe(c.path); err != nil {
			t.Errorf("%s: %v", c.what, err)
		}
	}
	if body, _ := g.adminGet("/metrics"); !strings.Contains(body, "# TYPE") {
		t.Errorf("/metrics is not a Prometheus exposition:\n%.300s", body)
	}
}

// waitForRules waits until /metrics reports a policy with n rules
// (/readyz shows the policy only with the admin token).
func (g *gatewayProcess) waitForRules(t *testing.T, n int) {
	t.Helper()
	g.waitFor(t, 15*time.Second, fmt.Sprintf("a policy with %d rules", n), func() error {
		body, err := g.adminGet("/metrics")
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("\ncredgate_policy_rules %d\n", n); !strings.Contains(body, want) {
			return fmt.Errorf("/metrics does not report %d rules", n)
		}
		return nil
	})
}

// checkRunning fails when the gateway has exited (so a change was picked
// up in place, not by a restart).
func (g *gatewayProcess) checkRunning(t *testing.T) {
	t.Helper()
	select {
	case <-g.exited:
		t.Fatalf("credgate exited: %v\nstderr:\n%s", g.waitErr, g.stderr.String())
	default:
	}
}

// connect sends CONNECT target through the plain proxy port, with a bearer
// token in Proxy-Authorization when token is set, and returns the status
// and the X-Credgate-Reason header.
func (g *gatewayProcess) connect(t *testing.T, target, token string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", g.proxyPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(15 * time.Second)); err != nil {
		t.Fatal(err)
	}
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if token != "" {
		req += "Proxy-Authorization: Bearer " + token + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v\nstderr:\n%s", target, err, g.stderr.String())
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Credgate-Reason")
}

// stop sends SIGTERM, as kubelet does after the preStop hook, and expects a
// clean exit.
func (g *gatewayProcess) stop(t *testing.T) {
	t.Helper()
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	timer := time.NewTimer(40 * time.Second)
	defer timer.Stop()
	select {
	case <-g.exited:
	case <-timer.C:
		t.Fatalf("credgate did not exit within 40s of SIGTERM\nstderr:\n%s", g.stderr.String())
	}
	if g.waitErr != nil {
		t.Errorf("credgate exited with %v after SIGTERM\nstderr:\n%s", g.waitErr, g.stderr.String())
	}
}

// fakeAPIServer answers the two Kubernetes API calls identity makes:
// GET /openid/v1/jwks and POST .../tokenreviews, each only with the pod's
// API token.
type fakeAPIServer struct {
	*httptest.Server
	caPEM       string
	jwksFetches atomic.Int64
	reviews     atomic.Int64
	refused     atomic.Int64
	mu          sync.Mutex
	valid       map[string]bool // tokens TokenReview authenticates
}

func startFakeAPIServer(t *testing.T, podToken string) *fakeAPIServer {
	t.Helper()
	api := &fakeAPIServer{valid: map[string]bool{}}
	mux := http.NewServeMux()
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+podToken {
				api.refused.Add(1)
				http.Error(w, "Unauthorized", http.StatusUnauthorized)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /openid/v1/jwks", auth(func(w http.ResponseWriter, _ *http.Request) {
		api.jwksFetches.Add(1)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = io.WriteString(w, testJWKS)
	}))
	mux.HandleFunc("POST /apis/authentication.k8s.io/v1/tokenreviews", auth(func(w http.ResponseWriter, r *http.Request) {
		api.reviews.Add(1)
		var tr struct {
			Spec struct {
				Token     string   `json:"token"`
				Audiences []string `json:"audiences"`
			} `json:"spec"`
		}
		if err := json.NewDecoder(r.Body).Decode(&tr); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		api.mu.Lock()
		ok := api.valid[tr.Spec.Token]
		api.mu.Unlock()
		status := map[string]any{"authenticated": false}
		if ok {
			status = map[string]any{
				"authenticated": true,
				"user":          map[string]any{"username": "system:serviceaccount:shop:api"},
				"audiences":     tr.Spec.Audiences,
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status,
		})
	}))
	api.Server = httptest.NewTLSServer(mux)
	t.Cleanup(api.Close)
	api.caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}))
	return api
}

// accept makes TokenReview authenticate token.
func (a *fakeAPIServer) accept(token string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.valid[token] = true
}

// mintToken returns a projected service-account token of namespace/sa,
// signed with testSigner.
func mintToken(t *testing.T, issuer, audience, namespace, sa string) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: testSigner},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", testKeyID))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(sig).Claims(jwt.Claims{
		Issuer:    issuer,
		Subject:   "system:serviceaccount:" + namespace + ":" + sa,
		Audience:  jwt.Audience{audience},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(now.Add(time.Hour)),
	}).Claims(map[string]any{
		"kubernetes.io": map[string]any{
			"namespace":      namespace,
			"serviceaccount": map[string]any{"name": sa, "uid": "0b7b1c4e-0000-4000-8000-000000000001"},
			"pod":            map[string]any{"name": sa + "-7d9f", "uid": "0b7b1c4e-0000-4000-8000-000000000002"},
		},
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// startUpstream listens on 127.0.0.1 and accepts connections (the tunnel's
// far end); it returns its address.
func startUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// withoutProxyEnv drops proxy variables, which the gateway ignores anyway.
func withoutProxyEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// syncBuffer captures output goroutines write while the test reads.
type syncBuffer = syncbuf.Buffer

var _ io.Writer = (*syncBuffer)(nil)
