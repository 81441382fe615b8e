package helm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
)

const (
	releaseName = "cg"
	namespace   = "egress"
	fullname    = "cg-credgate"
)

// variant is one set of values the chart is rendered with.
type variant struct {
	name   string
	values string // YAML, may be empty
}

// variants returns every values set the chart is linted, rendered and
// validated with.
func variants() []variant {
	return []variant{
		{name: "default"},
		{name: "cert-manager", values: `
ca:
  certManager:
    enabled: true
metrics:
  serviceMonitor:
    enabled: true
    labels: {release: prometheus}
`},
		{name: "hpa", values: `
autoscaling:
  enabled: true
  minReplicas: 3
  maxReplicas: 12
  targetMemoryUtilizationPercentage: 80
`},
		{name: "networkpolicy", values: `
networkPolicy:
  gateway:
    enabled: true
    allowKubernetesAPI: true
  applications:
    namespaces: [shop, billing]
    podSelector:
      matchLabels: {egress: credgate}
  dns:
    nodeLocalAddresses: [169.254.20.10]
tls:
  enabled: true
  existingSecret: gw-tls
  clientCAConfigMap: clients-ca
`},
		{name: "redis", values: `
replicaCount: 3
redis:
  enabled: true
  address: redis.cache.svc:6380
  tls: true
  username: credgate
  namespace: prod-eu
  passwordSecret: {name: redis-auth, key: password}
  encryptionKeys:
    - {id: "2026-11", secretName: redis-keys, secretKey: k2}
    - {id: "2026-05", secretName: redis-keys, secretKey: k1}
admin:
  tokenSecret: {name: credgate-admin}
networkPolicy:
  gateway: {enabled: true}
`},
		{name: "existing-secret-ca", values: `
ca:
  existingSecret: corp-ca
  certificate: |
` + indent(testCACert, 4) + `
existingPolicyConfigMap: corp-policy
policyKey: egress.yaml
identity:
  tokenReview:
    enabled: true
serviceAccountToken:
  audience: sts.amazonaws.com
  expirationSeconds: 7200
config:
  logLevel: debug
  upstream:
    caBundleConfigMap: corp-roots
  resolve:
    "api.partner.test:443": "10.20.0.5:8443"
`},
		{name: "identity", values: identityValues},
		{name: "spire", values: spireValues},
		// The agent's socket directory from the node, the Workload API's
		// bundles alongside a ConfigMap bundle, and the listener keeping
		// its certificate from a Secret.
		{name: "spire-hostpath", values: `
tls:
  enabled: true
  existingSecret: gw-tls
spire:
  enabled: true
  svidListener: false
  agentSocket:
    volume: hostPath
    hostPath: /run/spire/sockets
    mountPath: /run/spire/sockets
    fileName: agent.sock
identity:
  mtls:
    bundles:
      - {configMap: corp-ca, key: ca.pem}
`},
		{name: "admin-tls", values: adminTLSValues},
		{name: "monitoring", values: monitoringValues},
		{name: "gateway-settings", values: gatewaySettingsValues},
		// Checkpoints signed by a key in Vault's transit engine, with
		// the projected service-account token as the Vault login.
		{name: "audit-vault-transit", values: `
config:
  audit:
    replica: egress-gw
    checkpoint:
      vaultTransit:
        key: credgate-audit
        address: https://vault.vault.svc:8200
        namespace: platform
        caFile: /run/credgate/vault/ca.pem
        auth: {method: jwt, mount: k8s-egress, role: credgate}
      every: 30s
extraVolumes:
  - {name: vault-ca, configMap: {name: vault-ca}}
extraVolumeMounts:
  - {name: vault-ca, mountPath: /run/credgate/vault, readOnly: true}
networkPolicy:
  gateway: {enabled: true}
`},
	}
}

// gatewaySettingsValues exercise the gateway settings under config: that
// name files and secrets: session tickets, the audit log's chain,
// checkpoints (a key from a Secret), rotation of a file output on a
// writable volume, back-pressure, the fingerprint key and an OTLP copy,
// tracing with a CA from a ConfigMap and headers from Secrets, run
// tokens with a signing key from a Secret (which needs the admin token),
// upstream.http2, and the kill switch state file on a writable volume.
const gatewaySettingsValues = `
config:
  auditOutput: /var/log/credgate/audit.log
  sessionTickets:
    enabled: false
    rotation: 30m
  audit:
    replica: egress-gw
    chain: true
    checkpoint:
      keySecret: {name: credgate-audit-keys, key: checkpoint.pem}
      lines: 500
      every: 5s
    rotate:
      maxBytes: 104857600
      every: 24h
    onStall: fail_closed
    bufferBytes: 1048576
    stallTimeout: 2s
    fingerprintKeySecret: {name: credgate-audit-keys, key: fingerprint}
    otlp:
      endpoint: otel-collector.monitoring.svc:4317
      caConfigMap: otel-ca
      headers:
        authorization: {secretName: otel-auth, secretKey: audit}
      serviceName: credgate-audit
  tracing:
    enabled: true
    endpoint: otel-collector.monitoring.svc:4318
    protocol: http
    samplingRatio: 0.25
    clientSampling: ratio
    caConfigMap: otel-ca
    caKey: roots.pem
    headers:
      x-api-key: {secretName: otel-auth, secretKey: traces}
      x-tenant: {secretName: otel-tenant, secretKey: id}
    serviceName: egress-gateway
  runTokens:
    enabled: true
    workloads: [agent, batch]
    issuer: https://credgate.example.org/run
    audience: credgate-run
    ttl: 10m
    maxTTL: 2h
    algorithm: EdDSA
    keySecret: {name: credgate-run-tokens, key: signing.pem}
    rotateInterval: 12h
  upstream:
    http2: never
admin:
  tokenSecret: {name: credgate-admin}
  stateFile: /var/lib/credgate/switches.json
  limits: {readHeaderTimeout: 3s, readTimeout: 20s, writeTimeout: 25s, idleTimeout: 45s, maxHeaderBytes: 8192, maxConnections: 32}
  maxSwitches: 512
extraVolumes:
  - {name: audit-log, emptyDir: {sizeLimit: 1Gi}}
  - {name: switch-state, emptyDir: {sizeLimit: 1Mi}}
extraVolumeMounts:
  - {name: audit-log, mountPath: /var/log/credgate}
  - {name: switch-state, mountPath: /var/lib/credgate}
networkPolicy:
  gateway:
    enabled: true
    runTokenClients:
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: agents}}
`

// spireValues take the trust bundles and the TLS listener's certificate
// (the gateway's X.509-SVID) from the SPIRE agent through the SPIFFE CSI
// driver, with no certificate Secret.
const spireValues = `
tls:
  enabled: true
spire:
  enabled: true
  spiffeID: spiffe://prod.example.org/ns/egress/sa/cg-credgate
  startTimeout: 1m
identity:
  mtls:
    trustDomains: [prod.example.org]
    requireSPIFFE: true
networkPolicy:
  gateway: {enabled: true}
`

// identityValues exercise every identity setting: the TLS listener with
// trust bundles (a ConfigMap the chart mounts and a file from
// extraVolumes), the cluster's service-account tokens verified with the API
// server's JWKS, a SPIFFE JWT issuer with a JWKS file, TokenReview and a
// posture file.
const identityValues = `
tls:
  enabled: true
  existingSecret: gw-tls
identity:
  mtls:
    bundles:
      - {configMap: spire-bundle, key: bundle.crt, trustDomain: prod.example.org}
      - {file: /run/credgate/corp/ca.pem}
    trustDomains: [prod.example.org]
  jwt:
    kubernetes:
      enabled: true
    issuers:
      - profile: spiffe
        trustDomain: prod.example.org
        audiences: [credgate]
        jwksFile: /run/credgate/spire/bundle.jwks
  tokenReview:
    enabled: true
    issuers: [https://kubernetes.default.svc.cluster.local]
  posture:
    file: /run/credgate/posture/posture.json
extraVolumes:
  - {name: corp-ca, configMap: {name: corp-ca}}
  - {name: spire-jwt, configMap: {name: spire-jwt-bundle}}
  - {name: posture, configMap: {name: posture}}
extraVolumeMounts:
  - {name: corp-ca, mountPath: /run/credgate/corp, readOnly: true}
  - {name: spire-jwt, mountPath: /run/credgate/spire, readOnly: true}
  - {name: posture, mountPath: /run/credgate/posture, readOnly: true}
networkPolicy:
  gateway:
    enabled: true
    kubernetesAPICIDRs: [192.0.2.10/32]
`

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pad + l
	}
	return strings.Join(lines, "\n")
}

func variantByName(t *testing.T, name string) variant {
	t.Helper()
	for _, v := range variants() {
		if v.name == name {
			return v
		}
	}
	t.Fatalf("no variant %q", name)
	return variant{}
}

// valuesFile writes the variant's values to a file and returns helm's -f
// arguments for it (none for the default variant).
func valuesArgs(t *testing.T, v variant) []string {
	t.Helper()
	if v.values == "" {
		return nil
	}
	path := filepath.Join(t.TempDir(), v.name+".yaml")
	if err := os.WriteFile(path, []byte(v.values), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"-f", path}
}

// run runs a tool and returns its stdout, failing with stderr on error.
func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := runErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", filepath.Base(name), strings.Join(args, " "), err)
	}
	return out
}

func runErr(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = repoRoot
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%w: %s%s", err, stderr.String(), stdout.String())
	}
	return stdout.Bytes(), nil
}

func templateArgs(extra ...string) []string {
	return append([]string{"template", releaseName, chartDir, "--namespace", namespace, "--kube-version", k8sVersion}, extra...)
}

var (
	renderMu    sync.Mutex
	renderCache = map[string][]byte{}
)

// render returns `helm template` output for a variant (cached per test binary).
func render(t *testing.T, v variant) []byte {
	t.Helper()
	renderMu.Lock()
	defer renderMu.Unlock()
	if out, ok := renderCache[v.name]; ok {
		return out
	}
	out := run(t, helmBin, templateArgs(valuesArgs(t, v)...)...)
	renderCache[v.name] = out
	return out
}

// object is one rendered Kubernetes object.
type object map[string]any

func (o object) kind() string { s, _ := o["kind"].(string); return s }
func (o object) name() string {
	md, _ := o["metadata"].(map[string]any)
	s, _ := md["name"].(string)
	return s
}
func (o object) namespace() string {
	md, _ := o["metadata"].(map[string]any)
	s, _ := md["namespace"].(string)
	return s
}

// parse splits a multi-document YAML stream into objects.
func parse(t *testing.T, manifest []byte) []object {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(manifest))
	var objs []object
	for {
		var o map[string]any // not object: yaml.v3 would give nested maps that type too
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("parse helm output: %v", err)
		}
		if o != nil {
			objs = append(objs, object(o))
		}
	}
}

// find returns the object of that kind and name, or nil.
func find(objs []object, kind, name string) object {
	for _, o := range objs {
		if o.kind() == kind && o.name() == name {
			return o
		}
	}
	return nil
}

func mustFind(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	o := find(objs, kind, name)
	if o == nil {
		var have []string
		for _, o := range objs {
			have = append(have, o.kind()+"/"+o.name())
		}
		t.Fatalf("no %s/%s in the rendered chart; have %v", kind, name, have)
	}
	return o
}

// get walks a dotted path: map keys, list indexes, and list selectors
// `name=value` that pick the element whose field has that value. It returns
// nil when the path does not exist.
func get(v any, path string) any {
	for _, seg := range splitPath(path) {
		switch n := v.(type) {
		case map[string]any:
			v = n[seg]
		case object:
			v = n[seg]
		case []any:
			if k, want, ok := strings.Cut(seg, "="); ok {
				v = nil
				for _, item := range n {
					if m, _ := item.(map[string]any); m != nil && fmt.Sprint(m[k]) == want {
						v = m
						break
					}
				}
				continue
			}
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(n) {
				return nil
			}
			v = n[i]
		default:
			return nil
		}
	}
	return v
}

// splitPath splits on dots outside [...] (so a selector such as
// [key=tls.crt] or a key such as [checksum/config] stays whole).
func splitPath(path string) []string {
	var segs []string
	var cur strings.Builder
	depth := 0
	for _, r := range path {
		switch {
		case r == '[':
			depth++
		case r == ']':
			depth--
		case r == '.' && depth == 0:
			segs = append(segs, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	return append(segs, cur.String())
}

// kubeconformResult is one resource in kubeconform's JSON output.
type kubeconformResult struct {
	Filename, Kind, Name, Version, Status, Msg string
}

// kubeconformRun validates manifests in strict mode against the generated
// schemas, skipping only the CRD kinds that have no Kubernetes schema.
func kubeconformRun(path string) ([]kubeconformResult, error) {
	out, err := runErr(kubeconform,
		"-strict", "-summary", "-verbose", "-output", "json",
		"-schema-location", schemaRoot,
		"-kubernetes-version", k8sVersion,
		"-skip", strings.Join(skippedKinds, ","),
		path)
	var res struct {
		Resources []kubeconformResult `json:"resources"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		return nil, fmt.Errorf("kubeconform output: %w (run error: %v)", jerr, err)
	}
	return res.Resources, err
}

// skippedKinds are CRDs (cert-manager, prometheus-operator) without a schema
// in the Kubernetes OpenAPI document; kubeconform skips them by GVK. The
// PrometheusRule's content is checked by promtool and by the monitoring
// tests instead (monitoring_test.go).
var skippedKinds = []string{
	"cert-manager.io/v1/Issuer",
	"cert-manager.io/v1/Certificate",
	"monitoring.coreos.com/v1/ServiceMonitor",
	"monitoring.coreos.com/v1/PrometheusRule",
}
