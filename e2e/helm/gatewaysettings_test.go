package helm_test

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/internal/freeport"
)

// TestGatewaySettingsConfig checks the session_tickets, audit, tracing,
// run_tokens and admin blocks and upstream.http2 the chart writes into the
// gateway config: the values
// in camelCase become the gateway's keys, files are named where the pod
// mounts them, and secrets appear only as environment variable names.
// TestGatewayAcceptsRenderedConfig runs credgate validate on the same.
func TestGatewaySettingsConfig(t *testing.T) {
	tests := []struct {
		variant string
		want    string // YAML of those keys of the config; absent keys are omitted
	}{
		{"default", `
session_tickets: {enabled: true, rotation: 1h}
audit: {output: stdout, chain: true, on_stall: block, buffer_bytes: 4194304, stall_timeout: 1s}
admin: {read_header_timeout: 5s, read_timeout: 30s, write_timeout: 30s, idle_timeout: 60s, max_header_bytes: 16384, max_connections: 256, max_switches: 4096}
upstream_http2: match`},
		{"gateway-settings", `
session_tickets: {enabled: false, rotation: 30m}
audit:
  output: /var/log/credgate/audit.log
  replica: egress-gw
  chain: true
  checkpoint: {key_file: audit-checkpoint/checkpoint.pem, lines: 500, every: 5s}
  rotate: {max_bytes: 104857600, every: 24h}
  on_stall: fail_closed
  buffer_bytes: 1048576
  stall_timeout: 2s
  fingerprint_key_file: audit-fingerprint/fingerprint
  otlp:
    endpoint: otel-collector.monitoring.svc:4317
    protocol: grpc
    insecure: false
    ca: audit-otlp-ca/ca.crt
    headers: {authorization: {file: audit-otlp-header-0/audit}}
    service_name: credgate-audit
tracing:
  enabled: true
  endpoint: otel-collector.monitoring.svc:4318
  protocol: http
  insecure: false
  ca: tracing-ca/roots.pem
  headers: {x-api-key: {file: tracing-header-0/traces}, x-tenant: {file: tracing-header-1/id}}
  sampling_ratio: 0.25
  client_sampling: ratio
  service_name: egress-gateway
run_tokens:
  workloads: [agent, batch]
  issuer: https://credgate.example.org/run
  audience: credgate-run
  ttl: 10m
  max_ttl: 2h
  algorithm: EdDSA
  key_file: run-tokens/signing.pem
  rotate_interval: 12h
admin:
  token_file: admin-token/token
  state_file: /var/lib/credgate/switches.json
  # admin.limits in camelCase
  read_header_timeout: 3s
  read_timeout: 20s
  write_timeout: 25s
  idle_timeout: 45s
  max_header_bytes: 8192
  max_connections: 32
  max_switches: 512
upstream_http2: never`},
		{"redis", `
session_tickets: {enabled: true, rotation: 1h}
audit: {output: stdout, chain: true, on_stall: block, buffer_bytes: 4194304, stall_timeout: 1s}
admin: {token_file: admin-token/token, resync_interval: 5s, read_header_timeout: 5s, read_timeout: 30s, write_timeout: 30s, idle_timeout: 60s, max_header_bytes: 16384, max_connections: 256, max_switches: 4096}
upstream_http2: match`},
		{"audit-vault-transit", `
session_tickets: {enabled: true, rotation: 1h}
audit:
  output: stdout
  replica: egress-gw
  chain: true
  checkpoint:
    signer:
      vault_transit:
        server:
          address: https://vault.vault.svc:8200
          namespace: platform
          ca_cert: /run/credgate/vault/ca.pem
          auth: {method: jwt, mount: k8s-egress, role: credgate, token_file: /var/run/secrets/credgate/serviceaccount/token}
        mount: transit
        key: credgate-audit
    lines: 1000
    every: 30s
  on_stall: block
  buffer_bytes: 4194304
  stall_timeout: 1s
admin: {read_header_timeout: 5s, read_timeout: 30s, write_timeout: 30s, idle_timeout: 60s, max_header_bytes: 16384, max_connections: 256, max_switches: 4096}
upstream_http2: match`},
	}
	for _, tt := range tests {
		t.Run(tt.variant, func(t *testing.T) {
			t.Parallel()
			cfg := gatewayConfig(t, parse(t, render(t, variantByName(t, tt.variant))))
			got := map[string]any{}
			for _, k := range []string{"session_tickets", "audit", "tracing", "run_tokens", "admin"} {
				if v, ok := cfg[k]; ok {
					got[k] = v
				}
			}
			if up, ok := cfg["upstream"].(map[string]any); ok {
				got["upstream_http2"] = up["http2"]
			}
			var want map[string]any
			if err := yaml.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatalf("bad want: %v", err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("gateway config (-want +got):\n%s", diff)
			}
		})
	}
}

// TestGatewayServesGatewaySettings starts the real gateway on the
// gateway-settings variant with the files and environment the pod would
// have, and checks that what came from Secrets and ConfigMaps works: the
// run-token key from its Secret signs (its public key is the JWKS, a token
// issued with the admin token verifies with it), the trace and audit
// exports reach an OTLP receiver over TLS verified with the CA from the
// ConfigMap, carrying the header values from the Secrets, and the audit
// file on the writable volume is a chain whose checkpoints
// `credgate audit verify` accepts with the public half of the checkpoint
// key from its Secret.
func TestGatewayServesGatewaySettings(t *testing.T) {
	fx := fixtures(t)
	rcv := startOTLPReceiver(t)
	fx.configMaps["otel-ca"] = map[string]string{"roots.pem": rcv.caPEM, "ca.crt": rcv.caPEM}
	// The receiver is on 127.0.0.1; every new trace is recorded; a slow
	// machine must not make the test's requests refused (fail_closed is
	// covered by the audit package's tests).
	extra := fmt.Sprintf(`
proxyPort: %d
adminPort: %d
config:
  tracing: {endpoint: %q, samplingRatio: 1}
  audit:
    onStall: block
    otlp: {endpoint: %q, protocol: http}
`, freeport.Get(t), freeport.Get(t), rcv.addr, rcv.addr)
	args := append(valuesArgs(t, variantByName(t, "gateway-settings")), valuesArgs(t, variant{name: "serve", values: extra})...)
	objs := parse(t, run(t, helmBin, templateArgs(args...)...))
	p := newPod(t, objs, fx)
	g := startGateway(t, p)
	g.checkAdminEndpoints(t)

	// The run-token JWKS is the public half of the Secret's key.
	body, err := g.adminGet("/admin/v1/run-tokens/jwks.json")
	if err != nil {
		t.Fatalf("run-token JWKS: %v", err)
	}
	var jwks jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(body), &jwks); err != nil {
		t.Fatalf("run-token JWKS: %v: %s", err, body)
	}
	want := ed25519Public(t, fx.secrets["credgate-run-tokens"]["signing.pem"])
	if len(jwks.Keys) != 1 || !want.Equal(jwks.Keys[0].Key) {
		t.Fatalf("run-token JWKS = %s, want the one key of the Secret credgate-run-tokens", body)
	}
	// A token asked for with the admin token from its Secret is signed
	// by that key, for the configured issuer and audience.
	token := g.issueRunToken(t, fx.secrets["credgate-admin"]["token"], "agent")
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatalf("run token: %v", err)
	}
	var claims jwt.Claims
	if err := parsed.Claims(want, &claims); err != nil {
		t.Fatalf("run token does not verify with the Secret's key: %v", err)
	}
	if claims.Issuer != "https://credgate.example.org/run" || !claims.Audience.Contains("credgate-run") || claims.Subject != "agent" {
		t.Errorf("run token claims iss %q aud %v sub %q, want the chart's issuer, audience and the workload", claims.Issuer, claims.Audience, claims.Subject)
	}
	// A switch taken through the admin API is kept in the state file on
	// the writable volume (admin.stateFile).
	g.adminPost(t, fx.secrets["credgate-admin"]["token"], "/admin/v1/disable", `{"kind":"credential","name":"e2e-helm","by":"e2e/helm","reason":"state file"}`)
	state, err := os.ReadFile(p.path("/var/lib/credgate/switches.json"))
	if err != nil || !strings.Contains(string(state), `"e2e-helm"`) {
		t.Errorf("kill switch state file on the writable volume: %v: %s, want the disabled credential e2e-helm", err, state)
	}
	// Requests, refused (the default policy admits 10.0.0.0/8 only): a
	// CONNECT, and a plain-HTTP request, which is traced.
	if status, reason := g.connect(t, "api.github.com:443", ""); status != http.StatusForbidden {
		t.Errorf("CONNECT from 127.0.0.1: %d %s, want 403", status, reason)
	}
	proxyURL, err := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", g.proxyPort))
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 15 * time.Second}
	resp, err := client.Get("http://api.github.com/zen")
	if err != nil {
		t.Fatalf("GET through the proxy: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET http://api.github.com/zen from 127.0.0.1: %s, want 403", resp.Status)
	}
	// SIGTERM flushes the exporters and writes the final checkpoint.
	g.stop(t)

	for _, c := range []struct{ path, header, want string }{
		{"/v1/traces", "X-Api-Key", fx.secrets["otel-auth"]["traces"]},
		{"/v1/traces", "X-Tenant", fx.secrets["otel-tenant"]["id"]},
		{"/v1/logs", "Authorization", fx.secrets["otel-auth"]["audit"]},
	} {
		h := rcv.header(c.path)
		if h == nil {
			t.Errorf("the OTLP receiver got no %s export\ngateway stderr:\n%s", c.path, g.stderr.String())
			continue
		}
		if got := h.Get(c.header); got != c.want {
			t.Errorf("%s export: %s = %q, want the Secret's value", c.path, c.header, got)
		}
	}

	// The audit file: lines of replica egress-gw-*, checkpoints that
	// verify with the public half of the Secret's key.
	logFile := p.path("/var/log/credgate/audit.log")
	raw, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatalf("audit log on the writable volume: %v", err)
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	var first, last map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("audit line 1: %v", err)
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("last audit line: %v", err)
	}
	if r, _ := first["replica"].(string); !strings.HasPrefix(r, "egress-gw-") {
		t.Errorf("replica = %q, want egress-gw-<suffix>", r)
	}
	if last["type"] != "checkpoint" || last["final"] != true {
		t.Errorf("last audit line = %s, want the final checkpoint", lines[len(lines)-1])
	}
	bin := credgateBin(t)
	pub := run(t, bin, "audit", "pubkey", "--key", p.path("/etc/credgate/audit-checkpoint/checkpoint.pem"))
	pubFile := filepath.Join(t.TempDir(), "audit.pub")
	write(t, pubFile, string(pub))
	out := run(t, bin, "audit", "verify", "--pubkey", pubFile, "--require-signed-tail", logFile)
	t.Logf("credgate audit verify: %s", out)
}

// adminPost posts the JSON body to the admin API with the admin token and
// returns the answer's body; any status but 200 fails the test.
func (g *gatewayProcess) adminPost(t *testing.T, adminToken, path, body string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("%s://127.0.0.1:%d%s", g.scheme, g.adminPort, path), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s: %s", path, resp.Status, answer)
	}
	return answer
}

// issueRunToken asks the admin API for a run token for workload.
func (g *gatewayProcess) issueRunToken(t *testing.T, adminToken, workload string) string {
	t.Helper()
	body := g.adminPost(t, adminToken, "/admin/v1/run-tokens", fmt.Sprintf(`{"workload":%q,"by":"e2e/helm"}`, workload))
	var r struct{ Token string }
	if err := json.Unmarshal(body, &r); err != nil || r.Token == "" {
		t.Fatalf("POST /admin/v1/run-tokens: %v: %s", err, body)
	}
	return r.Token
}

// ed25519Public returns the public half of a PEM PKCS#8 Ed25519 key.
func ed25519Public(t *testing.T, keyPEM string) ed25519.PublicKey {
	t.Helper()
	b, _ := pem.Decode([]byte(keyPEM))
	if b == nil {
		t.Fatal("no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(ed25519.PrivateKey).Public().(ed25519.PublicKey)
}

// otlpReceiver is an OTLP/HTTP receiver over TLS on 127.0.0.1 that
// remembers the headers of the last export to each path.
type otlpReceiver struct {
	addr  string // host:port
	caPEM string // the root its certificate verifies against
	mu    sync.Mutex
	got   map[string]http.Header
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{got: map[string]http.Header{}}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		r.mu.Lock()
		r.got[req.URL.Path] = req.Header.Clone()
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK) // an empty Export*ServiceResponse
	}))
	t.Cleanup(srv.Close)
	r.addr = srv.Listener.Addr().String()
	r.caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	return r
}

// header returns the headers of the last export to path, or nil.
func (r *otlpReceiver) header(path string) http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[path]
}
