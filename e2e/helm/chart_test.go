package helm_test

import (
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

func TestLint(t *testing.T) {
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"lint", "--strict", chartDir, "--namespace", namespace, "--kube-version", k8sVersion}, valuesArgs(t, v)...)
			run(t, helmBin, args...)
		})
	}
}

// TestKubeconform validates every rendered object of every variant against
// the Kubernetes 1.34 schemas in strict mode (unknown fields are errors). A
// kind without a schema is an error too, except the listed CRDs.
func TestKubeconform(t *testing.T) {
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			manifest := render(t, v)
			file := filepath.Join(t.TempDir(), v.name+".yaml")
			if err := os.WriteFile(file, manifest, 0o644); err != nil {
				t.Fatal(err)
			}
			results, err := kubeconformRun(file)
			if err != nil {
				t.Errorf("kubeconform: %v", err)
			}
			objs := parse(t, manifest)
			if len(results) != len(objs) {
				t.Errorf("kubeconform reported %d resources, helm rendered %d", len(results), len(objs))
			}
			for _, r := range results {
				gvk := r.Version + "/" + r.Kind
				switch {
				case r.Status == "statusSkipped" && slices.Contains(skippedKinds, gvk):
				case r.Status == "statusValid":
				default:
					t.Errorf("%s %s: %s %s", gvk, r.Name, r.Status, r.Msg)
				}
			}
		})
	}
}

// TestKubeconformIsStrict proves the generated schemas reject an unknown
// field and a kind without a schema, so a passing TestKubeconform means
// something.
func TestKubeconformIsStrict(t *testing.T) {
	tests := []struct {
		name, manifest string
	}{
		{"unknown field", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: x
          image: x
          imagePullPolcy: Always
`},
		{"wrong type", `
apiVersion: v1
kind: Service
metadata: {name: x}
spec:
  ports: [{port: "not-a-number"}]
`},
		{"kind without schema", `
apiVersion: example.com/v1
kind: Widget
metadata: {name: x}
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "m.yaml")
			if err := os.WriteFile(file, []byte(tt.manifest), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := kubeconformRun(file); err == nil {
				t.Fatal("kubeconform accepted an invalid manifest")
			}
		})
	}
}

// TestValuesSchema checks that values.schema.json rejects typos and bad
// values at template time, and that the template guards fire.
func TestValuesSchema(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string // substring of helm's error
	}{
		{"top-level typo", []string{"--set", "replicaCont=3"}, "replicaCont"},
		{"nested typo", []string{"--set", "config.cache.defaultTtl=1m"}, "defaultTtl"},
		{"bad log level", []string{"--set", "config.logLevel=verbose"}, "logLevel"},
		{"bad duration", []string{"--set", "config.shutdownTimeout=30"}, "shutdownTimeout"},
		{"bad port", []string{"--set", "proxyPort=70000"}, "proxyPort"},
		{"private key in CA ConfigMap", []string{"--set", "ca.certificate=-----BEGIN EC PRIVATE KEY-----"}, "certificate"},
		{"both CA sources", []string{"--set", "ca.existingSecret=x", "--set", "ca.certManager.enabled=true"}, "not both"},
		{"tls without secret", []string{"--set", "tls.enabled=true"}, "tls.existingSecret"},
		{"redis without address", []string{"--set", "redis.enabled=true"}, "redis.address"},
		{"redis without encryption keys", []string{"--set", "redis.enabled=true", "--set", "redis.address=r:6379"}, "redis.encryptionKeys"},
		{"identity typo", []string{"--set", "identity.jwt.kubernetes.enable=true"}, "enable"},
		{"issuer in config-file spelling", []string{"--set", "identity.jwt.issuers[0].issuer=https://idp.test",
			"--set", "identity.jwt.issuers[0].audiences[0]=credgate", "--set", "identity.jwt.issuers[0].jwks_url=https://idp.test/keys"}, "jwks_url"},
		{"issuer without keys", []string{"--set", "identity.jwt.issuers[0].issuer=https://idp.test",
			"--set", "identity.jwt.issuers[0].audiences[0]=credgate"}, "issuers/0"},
		{"issuer without audiences", []string{"--set", "identity.jwt.issuers[0].issuer=https://idp.test",
			"--set", "identity.jwt.issuers[0].jwksURL=https://idp.test/keys"}, "audiences"},
		{"plain http JWKS", []string{"--set", "identity.jwt.issuers[0].issuer=https://idp.test",
			"--set", "identity.jwt.issuers[0].audiences[0]=credgate", "--set", "identity.jwt.issuers[0].jwksURL=http://idp.test/keys"}, "jwksURL"},
		{"token review without audiences", []string{"--set", "identity.tokenReview.enabled=true", "--set-json", "identity.tokenReview.audiences=[]"}, "minItems"},
		{"bundle with file and configMap", []string{"--set", "tls.enabled=true", "--set", "tls.existingSecret=gw",
			"--set", "identity.mtls.bundles[0].file=/a.pem", "--set", "identity.mtls.bundles[0].configMap=b", "--set", "identity.mtls.bundles[0].key=c"}, "bundles/0"},
		{"bundles without TLS listener", []string{"--set", "identity.mtls.bundles[0].file=/a.pem"}, "tls.enabled"},
		{"bundles and client CA", []string{"--set", "tls.enabled=true", "--set", "tls.existingSecret=gw", "--set", "tls.clientCAConfigMap=cas",
			"--set", "identity.mtls.bundles[0].file=/a.pem"}, "not both"},
		{"posture file and url", []string{"--set", "identity.posture.file=/p.json", "--set", "identity.posture.url=https://posture.test"}, "not both"},
		{"gateway token accepted from callers", []string{"--set", "identity.tokenReview.enabled=true", "--set", "serviceAccountToken.audience=credgate"}, "serviceAccountToken.audience"},
		{"removed rbac.tokenReview", []string{"--set", "rbac.tokenReview=true"}, "tokenReview"},
		{"negative preStop sleep", []string{"--set", "preStopSleepSeconds=-1"}, "preStopSleepSeconds"},
		{"spire without TLS listener", []string{"--set", "spire.enabled=true"}, "tls.enabled"},
		{"SVID listener and certificate Secret", []string{"--set", "spire.enabled=true", "--set", "tls.enabled=true", "--set", "tls.existingSecret=gw"}, "not both"},
		{"certificate listener without Secret", []string{"--set", "spire.enabled=true", "--set", "tls.enabled=true", "--set", "spire.svidListener=false"}, "tls.existingSecret"},
		{"spire and client CA", []string{"--set", "spire.enabled=true", "--set", "tls.enabled=true", "--set", "tls.clientCAConfigMap=cas"}, "not both"},
		{"unknown socket volume", []string{"--set", "spire.enabled=true", "--set", "tls.enabled=true", "--set", "spire.agentSocket.volume=emptyDir"}, "volume"},
		{"relative socket mount", []string{"--set", "spire.enabled=true", "--set", "tls.enabled=true", "--set", "spire.agentSocket.mountPath=spire"}, "mountPath"},
		{"prometheusRule typo", []string{"--set", "metrics.prometheusRule.enable=true"}, "enable"},
		{"serviceMonitor tlsConfig typo (the CRD would prune it silently)", []string{"--set", "metrics.serviceMonitor.tlsConfig.serverNme=gw"}, "serverNme"},
		{"refusal ratio above 1", []string{"--set", "metrics.prometheusRule.refusalRatio=2"}, "refusalRatio"},
		{"dashboard label not a string", []string{"--set", "metrics.grafanaDashboard.enabled=true", "--set", "metrics.grafanaDashboard.labels.grafana_dashboard=1"}, "grafana_dashboard"},
		{"not a SPIFFE ID", []string{"--set", "spire.enabled=true", "--set", "tls.enabled=true", "--set", "spire.spiffeID=prod.example.org/credgate"}, "spiffeID"},
		{"session tickets typo", []string{"--set", "config.sessionTickets.rotate=1h"}, "rotate"},
		{"tracing without endpoint", []string{"--set", "config.tracing.enabled=true"}, "config.tracing.endpoint"},
		{"tracing endpoint as URL", []string{"--set", "config.tracing.enabled=true", "--set", "config.tracing.endpoint=https://otel:4317"}, "endpoint"},
		{"sampling ratio above 1", []string{"--set", "config.tracing.samplingRatio=1.5"}, "samplingRatio"},
		{"inline tracing header", []string{"--set", "config.tracing.headers.x-api-key.value=hunter2"}, "value"},
		{"tracing insecure with CA", []string{"--set", "config.tracing.enabled=true", "--set", "config.tracing.endpoint=otel:4317",
			"--set", "config.tracing.insecure=true", "--set", "config.tracing.caConfigMap=otel-ca"}, "caConfigMap"},
		{"audit OTLP insecure with CA", []string{"--set", "config.audit.otlp.endpoint=otel:4317",
			"--set", "config.audit.otlp.insecure=true", "--set", "config.audit.otlp.caConfigMap=otel-ca"}, "caConfigMap"},
		{"inline audit OTLP header", []string{"--set", "config.audit.otlp.headers.authorization.env=OTLP_AUTH"}, "env"},
		{"audit output relative", []string{"--set", "config.auditOutput=audit.log"}, "auditOutput"},
		{"audit file on the read-only root", []string{"--set", "config.auditOutput=/var/log/credgate/audit.log"}, "read-only"},
		{"audit file on a read-only volume", []string{"--set", "config.auditOutput=/var/log/credgate/audit.log",
			"--set", "extraVolumes[0].name=logs", "--set", "extraVolumes[0].emptyDir.medium=Memory",
			"--set", "extraVolumeMounts[0].name=logs", "--set", "extraVolumeMounts[0].mountPath=/var/log/credgate", "--set", "extraVolumeMounts[0].readOnly=true"}, "read-only"},
		{"audit rotation on stdout", []string{"--set", "config.audit.rotate.maxBytes=1048576"}, "config.audit.rotate"},
		{"bad rotation age", []string{"--set", "config.audit.rotate.every=1d"}, "every"},
		{"unknown stall policy", []string{"--set", "config.audit.onStall=retry"}, "onStall"},
		{"audit buffer too small", []string{"--set", "config.audit.bufferBytes=1024"}, "bufferBytes"},
		{"checkpoint key and Vault", []string{"--set", "config.audit.checkpoint.keySecret.name=audit-key",
			"--set", "config.audit.checkpoint.vaultTransit.key=credgate-audit", "--set", "config.audit.checkpoint.vaultTransit.auth.role=credgate"}, "not both"},
		{"checkpoint without chain", []string{"--set", "config.audit.checkpoint.keySecret.name=audit-key", "--set", "config.audit.chain=false"}, "config.audit.chain"},
		{"Vault checkpoints without role", []string{"--set", "config.audit.checkpoint.vaultTransit.key=credgate-audit"}, "auth.role"},
		{"Vault checkpoints without the projected token", []string{"--set", "config.audit.checkpoint.vaultTransit.key=credgate-audit",
			"--set", "config.audit.checkpoint.vaultTransit.auth.role=credgate", "--set", "serviceAccountToken.enabled=false"}, "serviceAccountToken.enabled"},
		{"checkpoint key file in config spelling", []string{"--set", "config.audit.checkpoint.key_file=/etc/audit.key"}, "key_file"},
		{"replica with a space", []string{"--set", "config.audit.replica=gw 0"}, "replica"},
		{"run tokens without workloads", []string{"--set", "config.runTokens.enabled=true", "--set", "admin.tokenSecret.name=adm",
			"--set", "config.runTokens.keySecret.name=rt"}, "config.runTokens.workloads"},
		{"run tokens without the admin token", []string{"--set", "config.runTokens.enabled=true", "--set", "config.runTokens.workloads[0]=agent",
			"--set", "config.runTokens.keySecret.name=rt"}, "admin.tokenSecret"},
		{"run tokens with a key per pod", []string{"--set", "config.runTokens.enabled=true", "--set", "config.runTokens.workloads[0]=agent",
			"--set", "admin.tokenSecret.name=adm"}, "config.runTokens.keySecret"},
		{"run tokens with an unknown algorithm", []string{"--set", "config.runTokens.algorithm=RS256"}, "algorithm"},
		{"run tokens issuer not a URI", []string{"--set", "config.runTokens.issuer=credgate"}, "issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := runErr(helmBin, templateArgs(tt.args...)...)
			if err == nil {
				t.Fatalf("helm template %v succeeded, want an error mentioning %q", tt.args, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("helm template %v: error does not mention %q:\n%v", tt.args, tt.wantErr, err)
			}
		})
	}
}

// TestManifests asserts fields of the rendered objects, variant by variant.
func TestManifests(t *testing.T) {
	const (
		deploy = "Deployment"
		pod    = "spec.template.spec."
		ctr    = pod + "containers.[name=credgate]."
	)
	tests := []struct {
		variant, kind, name, path string
		want                      string // YAML; "~" means absent
	}{
		// Restricted security context.
		{"default", deploy, fullname, pod + "securityContext", `
{runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: {type: RuntimeDefault}}`},
		{"default", deploy, fullname, ctr + "securityContext", `
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}`},
		{"default", deploy, fullname, ctr + "args", `[serve, -c, /etc/credgate/config.yaml]`},
		{"default", deploy, fullname, ctr + "image", `ghcr.io/credgate/credgate:0.1.0`},
		{"default", deploy, fullname, "spec.replicas", `2`},
		// Probes on the admin port.
		{"default", deploy, fullname, ctr + "livenessProbe.httpGet", `{path: /healthz, port: admin}`},
		{"default", deploy, fullname, ctr + "readinessProbe.httpGet", `{path: /readyz, port: admin}`},
		// admin.tls: HTTPS probes and scrapes, the Secret and the client CA mounted as directories.
		{"admin-tls", deploy, fullname, ctr + "livenessProbe.httpGet", `{path: /healthz, port: admin, scheme: HTTPS}`},
		{"admin-tls", deploy, fullname, ctr + "readinessProbe.httpGet", `{path: /readyz, port: admin, scheme: HTTPS}`},
		{"admin-tls", deploy, fullname, "spec.template.metadata.annotations.[prometheus.io/scheme]", `https`},
		{"default", deploy, fullname, "spec.template.metadata.annotations.[prometheus.io/scheme]", `~`},
		{"admin-tls", deploy, fullname, ctr + "volumeMounts.[name=admin-tls]", `{name: admin-tls, mountPath: /etc/credgate/admin-tls, readOnly: true}`},
		{"admin-tls", deploy, fullname, pod + "volumes.[name=admin-tls]", `
{name: admin-tls, secret: {secretName: credgate-admin-tls, defaultMode: 0440, items: [{key: tls.crt, path: tls.crt}, {key: tls.key, path: tls.key}]}}`},
		{"admin-tls", deploy, fullname, pod + "volumes.[name=admin-client-ca]", `
{name: admin-client-ca, configMap: {name: credgate-operators, items: [{key: ca.crt, path: ca.crt}]}}`},
		{"admin-tls", "ServiceMonitor", fullname, "spec.endpoints.0", `
port: admin
path: /metrics
interval: 30s
scrapeTimeout: 10s
scheme: https
tlsConfig: {ca: {configMap: {name: credgate-admin-ca, key: ca.crt}}, serverName: cg-credgate-admin.egress.svc}`},
		{"cert-manager", "ServiceMonitor", fullname, "spec.endpoints.0.scheme", `~`},
		{"default", deploy, fullname, ctr + "ports", `
- {name: proxy, containerPort: 3128, protocol: TCP}
- {name: admin, containerPort: 9090, protocol: TCP}`},
		// Services: proxy ports and a separate admin Service.
		{"default", "Service", fullname, "spec.ports", `[{name: proxy, port: 3128, targetPort: proxy, protocol: TCP}]`},
		{"default", "Service", fullname + "-admin", "spec.ports", `[{name: admin, port: 9090, targetPort: admin, protocol: TCP}]`},
		{"networkpolicy", "Service", fullname, "spec.ports", `
- {name: proxy, port: 3128, targetPort: proxy, protocol: TCP}
- {name: proxy-tls, port: 3129, targetPort: proxy-tls, protocol: TCP}`},
		// Policy ConfigMap mounted as a directory (no subPath), reloadable.
		{"default", deploy, fullname, ctr + "volumeMounts.[name=policy]", `{name: policy, mountPath: /etc/credgate/policy, readOnly: true}`},
		{"default", deploy, fullname, pod + "volumes.[name=policy]", `
{name: policy, configMap: {name: cg-credgate-policy, items: [{key: policy.yaml, path: policy.yaml}]}}`},
		{"existing-secret-ca", deploy, fullname, pod + "volumes.[name=policy]", `
{name: policy, configMap: {name: corp-policy, items: [{key: egress.yaml, path: egress.yaml}]}}`},
		{"existing-secret-ca", "ConfigMap", fullname + "-policy", "", `~`},
		// Interception CA key pair: from the chart's Secret name, an existing Secret, or cert-manager.
		{"default", deploy, fullname, pod + "volumes.[name=ca].secret.secretName", `cg-credgate-ca-keypair`},
		{"existing-secret-ca", deploy, fullname, pod + "volumes.[name=ca].secret.secretName", `corp-ca`},
		{"cert-manager", "Certificate", fullname + "-ca", "spec", `
isCA: true
commonName: credgate interception CA
secretName: cg-credgate-ca-keypair
duration: 8760h
renewBefore: 720h
privateKey: {algorithm: ECDSA, size: 256, rotationPolicy: Always}
usages: [cert sign, crl sign, digital signature]
issuerRef: {name: cg-credgate-selfsigned, kind: Issuer, group: cert-manager.io}`},
		{"cert-manager", "Issuer", fullname + "-selfsigned", "spec", `{selfSigned: {}}`},
		{"cert-manager", "ServiceMonitor", fullname, "spec.endpoints", `[{port: admin, path: /metrics, interval: 30s, scrapeTimeout: 10s}]`},
		// The CA ConfigMap holds only the certificate.
		{"default", "ConfigMap", fullname + "-ca", "", `~`},
		// Projected service-account token with an audience (the vault
		// provider's default token_file); no default API token.
		{"default", deploy, fullname, pod + "volumes.[name=sa-token].projected.sources", `
[{serviceAccountToken: {audience: vault, expirationSeconds: 3600, path: token}}]`},
		{"default", deploy, fullname, ctr + "volumeMounts.[name=sa-token]", `
{name: sa-token, mountPath: /var/run/secrets/credgate/serviceaccount, readOnly: true}`},
		{"default", deploy, fullname, pod + "automountServiceAccountToken", `false`},
		{"existing-secret-ca", deploy, fullname, pod + "volumes.[name=sa-token].projected.sources.0.serviceAccountToken", `
{audience: sts.amazonaws.com, expirationSeconds: 7200, path: token}`},
		{"existing-secret-ca", deploy, fullname, pod + "automountServiceAccountToken", `false`},
		// The API token, cluster CA and namespace only when identity needs the API server.
		{"default", deploy, fullname, pod + "volumes.[name=kube-api]", `~`},
		{"default", deploy, fullname, ctr + "volumeMounts.[name=kube-api]", `~`},
		{"existing-secret-ca", deploy, fullname, ctr + "volumeMounts.[name=kube-api]", `
{name: kube-api, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}`},
		{"identity", deploy, fullname, pod + "volumes.[name=kube-api]", `
name: kube-api
projected:
  defaultMode: 0440
  sources:
    - serviceAccountToken: {expirationSeconds: 3600, path: token}
    - configMap: {name: kube-root-ca.crt, items: [{key: ca.crt, path: ca.crt}]}
    - downwardAPI: {items: [{path: namespace, fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}}]}`},
		// Trust bundles from a ConfigMap: a directory mount, so updates reach the pod.
		{"identity", deploy, fullname, pod + "volumes.[name=mtls-bundle-0]", `
{name: mtls-bundle-0, configMap: {name: spire-bundle, items: [{key: bundle.crt, path: bundle.crt}]}}`},
		{"identity", deploy, fullname, ctr + "volumeMounts.[name=mtls-bundle-0]", `
{name: mtls-bundle-0, mountPath: /etc/credgate/identity/bundles/0, readOnly: true}`},
		{"identity", deploy, fullname, ctr + "volumeMounts.[name=posture]", `
{name: posture, mountPath: /run/credgate/posture, readOnly: true}`},
		{"identity", deploy, fullname, pod + "volumes.[name=posture]", `{name: posture, configMap: {name: posture}}`},
		// Egress to the API server for the JWKS and TokenReview.
		{"identity", "NetworkPolicy", fullname, "spec.egress.2", `
ports: [{port: 443, protocol: TCP}, {port: 6443, protocol: TCP}]
to: [{ipBlock: {cidr: 192.0.2.10/32}}]`},
		{"default", deploy, fullname, ctr + "lifecycle", `{preStop: {sleep: {seconds: 5}}}`},
		{"existing-secret-ca", "ClusterRole", fullname + "-egress-tokenreview", "", `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: cg-credgate-egress-tokenreview
  labels: {helm.sh/chart: credgate-0.1.0, app.kubernetes.io/name: credgate, app.kubernetes.io/instance: cg, app.kubernetes.io/version: "0.1.0", app.kubernetes.io/managed-by: Helm}
rules: [{apiGroups: [authentication.k8s.io], resources: [tokenreviews], verbs: [create]}]`},
		{"existing-secret-ca", "ClusterRoleBinding", fullname + "-egress-tokenreview", "", `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: cg-credgate-egress-tokenreview
  labels: {helm.sh/chart: credgate-0.1.0, app.kubernetes.io/name: credgate, app.kubernetes.io/instance: cg, app.kubernetes.io/version: "0.1.0", app.kubernetes.io/managed-by: Helm}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cg-credgate-egress-tokenreview}
subjects: [{kind: ServiceAccount, name: cg-credgate, namespace: egress}]`},
		{"default", "ClusterRoleBinding", fullname + "-egress-tokenreview", "", `~`},
		// PDB and topology spread.
		{"default", "PodDisruptionBudget", fullname, "spec", `
{maxUnavailable: 1, selector: {matchLabels: {app.kubernetes.io/name: credgate, app.kubernetes.io/instance: cg}}}`},
		{"default", deploy, fullname, pod + "topologySpreadConstraints", `
- {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway,
   labelSelector: {matchLabels: {app.kubernetes.io/name: credgate, app.kubernetes.io/instance: cg}}}
- {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway,
   labelSelector: {matchLabels: {app.kubernetes.io/name: credgate, app.kubernetes.io/instance: cg}}}`},
		// HPA replaces the fixed replica count.
		{"hpa", deploy, fullname, "spec.replicas", `~`},
		{"hpa", "HorizontalPodAutoscaler", fullname, "spec", `
scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: cg-credgate}
minReplicas: 3
maxReplicas: 12
metrics:
  - {type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}}
  - {type: Resource, resource: {name: memory, target: {type: Utilization, averageUtilization: 80}}}`},
		{"default", "HorizontalPodAutoscaler", fullname, "", `~`},
		// Prometheus scrape annotations.
		{"default", deploy, fullname, "spec.template.metadata.annotations.[prometheus.io/port]", `"9090"`},
		{"default", deploy, fullname, "spec.template.metadata.annotations.[prometheus.io/scrape]", `"true"`},
		// Redis: keys and password from Secrets as env, cache.redis in the
		// config, opened in the gateway NetworkPolicy.
		{"redis", deploy, fullname, ctr + "env", `~`},
		{"redis", deploy, fullname, pod + "volumes.[name=redis-key-0]", `
{name: redis-key-0, secret: {secretName: redis-keys, defaultMode: 0440, items: [{key: k2, path: k2}]}}`},
		{"redis", deploy, fullname, pod + "volumes.[name=redis-key-1]", `
{name: redis-key-1, secret: {secretName: redis-keys, defaultMode: 0440, items: [{key: k1, path: k1}]}}`},
		{"redis", deploy, fullname, pod + "volumes.[name=redis-password]", `
{name: redis-password, secret: {secretName: redis-auth, defaultMode: 0440, items: [{key: password, path: password}]}}`},
		{"redis", deploy, fullname, ctr + "volumeMounts.[name=redis-password]", `
{name: redis-password, mountPath: /etc/credgate/redis-password, readOnly: true}`},
		{"redis", "NetworkPolicy", fullname, "spec.egress.2", `{ports: [{port: 6380, protocol: TCP}]}`},
		// The gateway's NetworkPolicy lets it reach the OTLP receivers and Vault.
		{"gateway-settings", "NetworkPolicy", fullname, "spec.egress.2", `{ports: [{port: 4318, protocol: TCP}, {port: 4317, protocol: TCP}]}`},
		{"audit-vault-transit", "NetworkPolicy", fullname, "spec.egress.2", `{ports: [{port: 8200, protocol: TCP}]}`},
		{"networkpolicy", "NetworkPolicy", fullname, "spec.egress.4", `~`},
		{"default", deploy, fullname, ctr + "env", `~`},
		// NetworkPolicy for application namespaces: only the gateway and DNS
		// (the cluster's and NodeLocal DNSCache's).
		{"networkpolicy", "NetworkPolicy", fullname + "-egress-via-gateway", "", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: cg-credgate-egress-via-gateway
  namespace: shop
  labels: {helm.sh/chart: credgate-0.1.0, app.kubernetes.io/name: credgate, app.kubernetes.io/instance: cg, app.kubernetes.io/version: "0.1.0", app.kubernetes.io/managed-by: Helm}
spec:
  podSelector: {matchLabels: {egress: credgate}}
  policyTypes: [Egress]
  egress:
    - to:
        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: egress}}
          podSelector: {matchLabels: {app.kubernetes.io/name: credgate, app.kubernetes.io/instance: cg}}
      ports: [{port: 3128, protocol: TCP}, {port: 3129, protocol: TCP}]
    - to:
        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
          podSelector: {matchLabels: {k8s-app: kube-dns}}
      ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]
    - to: [{ipBlock: {cidr: 169.254.20.10/32}}]
      ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]`},
		{"networkpolicy", "NetworkPolicy", fullname, "spec.ingress.0.ports", `[{port: 3128, protocol: TCP}, {port: 3129, protocol: TCP}]`},
		{"networkpolicy", "NetworkPolicy", fullname, "spec.ingress.1.ports", `[{port: 9090, protocol: TCP}]`},
		{"default", "NetworkPolicy", fullname, "", `~`},
		// SPIRE: the agent's socket directory from the SPIFFE CSI driver or
		// the node, SPIFFE_ENDPOINT_SOCKET into it, and no certificate
		// Secret when the listener serves the SVID.
		{"spire", deploy, fullname, pod + "volumes.[name=spire-agent-socket]", `
{name: spire-agent-socket, csi: {driver: csi.spiffe.io, readOnly: true}}`},
		{"spire", deploy, fullname, ctr + "volumeMounts.[name=spire-agent-socket]", `
{name: spire-agent-socket, mountPath: /spiffe-workload-api, readOnly: true}`},
		{"spire", deploy, fullname, ctr + "env", `
[{name: SPIFFE_ENDPOINT_SOCKET, value: "unix:///spiffe-workload-api/spire-agent.sock"}]`},
		{"spire", deploy, fullname, pod + "volumes.[name=tls]", `~`},
		{"spire", deploy, fullname, ctr + "volumeMounts.[name=tls]", `~`},
		{"spire", deploy, fullname, ctr + "ports.[name=proxy-tls]", `{name: proxy-tls, containerPort: 3129, protocol: TCP}`},
		{"spire", deploy, fullname, ctr + "readinessProbe.httpGet", `{path: /readyz, port: admin}`},
		{"spire-hostpath", deploy, fullname, pod + "volumes.[name=spire-agent-socket]", `
{name: spire-agent-socket, hostPath: {path: /run/spire/sockets, type: Directory}}`},
		{"spire-hostpath", deploy, fullname, ctr + "env.[name=SPIFFE_ENDPOINT_SOCKET]", `
{name: SPIFFE_ENDPOINT_SOCKET, value: "unix:///run/spire/sockets/agent.sock"}`},
		{"spire-hostpath", deploy, fullname, pod + "volumes.[name=tls].secret.secretName", `gw-tls`},
		{"default", deploy, fullname, pod + "volumes.[name=spire-agent-socket]", `~`},
		// TLS listener mounts.
		{"networkpolicy", deploy, fullname, pod + "volumes.[name=tls].secret", `
{secretName: gw-tls, defaultMode: 0440, items: [{key: tls.crt, path: tls.crt}, {key: tls.key, path: tls.key}]}`},
		// Gateway settings: key files from Secrets (mode 0440) and CA
		// bundles from ConfigMaps as directories, export headers from
		// Secrets through the environment.
		{"gateway-settings", deploy, fullname, pod + "volumes.[name=audit-checkpoint]", `
{name: audit-checkpoint, secret: {secretName: credgate-audit-keys, defaultMode: 0440, items: [{key: checkpoint.pem, path: checkpoint.pem}]}}`},
		{"gateway-settings", deploy, fullname, pod + "volumes.[name=audit-fingerprint]", `
{name: audit-fingerprint, secret: {secretName: credgate-audit-keys, defaultMode: 0440, items: [{key: fingerprint, path: fingerprint}]}}`},
		{"gateway-settings", deploy, fullname, pod + "volumes.[name=run-tokens]", `
{name: run-tokens, secret: {secretName: credgate-run-tokens, defaultMode: 0440, items: [{key: signing.pem, path: signing.pem}]}}`},
		{"gateway-settings", deploy, fullname, pod + "volumes.[name=tracing-ca]", `
{name: tracing-ca, configMap: {name: otel-ca, items: [{key: roots.pem, path: roots.pem}]}}`},
		{"gateway-settings", deploy, fullname, pod + "volumes.[name=audit-otlp-ca]", `
{name: audit-otlp-ca, configMap: {name: otel-ca, items: [{key: ca.crt, path: ca.crt}]}}`},
		{"gateway-settings", deploy, fullname, ctr + "volumeMounts.[name=run-tokens]", `
{name: run-tokens, mountPath: /etc/credgate/run-tokens, readOnly: true}`},
		{"gateway-settings", deploy, fullname, ctr + "env", `~`},
		{"gateway-settings", deploy, fullname, pod + "volumes.[name=tracing-header-1]", `
{name: tracing-header-1, secret: {secretName: otel-tenant, defaultMode: 0440, items: [{key: id, path: id}]}}`},
		{"gateway-settings", deploy, fullname, pod + "volumes.[name=audit-otlp-header-0]", `
{name: audit-otlp-header-0, secret: {secretName: otel-auth, defaultMode: 0440, items: [{key: audit, path: audit}]}}`},
		// The gateway's NetworkPolicy lets it reach the OTLP receivers and Vault.
		{"gateway-settings", "NetworkPolicy", fullname, "spec.egress.2", `{ports: [{port: 4318, protocol: TCP}, {port: 4317, protocol: TCP}]}`},
		{"audit-vault-transit", "NetworkPolicy", fullname, "spec.egress.2", `{ports: [{port: 8200, protocol: TCP}]}`},
		{"networkpolicy", "NetworkPolicy", fullname, "spec.egress.4", `~`},
		{"default", deploy, fullname, ctr + "env", `~`},
		{"default", deploy, fullname, pod + "volumes.[name=audit-checkpoint]", `~`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s/%s/%s", tt.variant, tt.kind, tt.name, tt.path), func(t *testing.T) {
			t.Parallel()
			objs := parse(t, render(t, variantByName(t, tt.variant)))
			var want any
			if err := yaml.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatalf("bad want: %v", err)
			}
			o := find(objs, tt.kind, tt.name)
			var got any
			if o != nil {
				got = map[string]any(o)
				if tt.path != "" {
					got = get(o, tt.path)
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tt.path, diff)
			}
		})
	}
}

// gatewayConfig returns the rendered gateway config file of a variant.
func gatewayConfig(t *testing.T, objs []object) map[string]any {
	t.Helper()
	cm := mustFind(t, objs, "ConfigMap", fullname+"-config")
	text, _ := get(cm, "data.[config.yaml]").(string)
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	return cfg
}

// TestConfigMatchesPod checks that every path and port in the gateway config
// points at something the pod actually mounts or exposes.
func TestConfigMatchesPod(t *testing.T) {
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			objs := parse(t, render(t, v))
			cfg := gatewayConfig(t, objs)
			d := mustFind(t, objs, "Deployment", fullname)
			podSpec, _ := get(d, "spec.template.spec").(map[string]any)
			ctr, _ := get(podSpec, "containers.[name=credgate]").(map[string]any)

			// Config file location and the directory relative paths resolve against.
			args, _ := ctr["args"].([]any)
			if len(args) != 3 || args[2] != "/etc/credgate/config.yaml" {
				t.Fatalf("args = %v", args)
			}
			confDir := "/etc/credgate"
			files := configFiles("", cfg)
			for _, k := range []string{"policy", "ca.cert", "ca.key"} {
				if _, ok := files[k]; !ok {
					t.Errorf("config has no %s", k)
				}
			}
			for k, f := range files {
				p := f
				if !path.IsAbs(p) {
					p = path.Join(confDir, p)
				}
				if !mountedFile(podSpec, ctr, p) {
					t.Errorf("config %s refers to %s (%s), which no volume provides", k, f, p)
				}
			}
			// The policy is not mounted with subPath (so updates reach the pod).
			for _, m := range ctr["volumeMounts"].([]any) {
				mm := m.(map[string]any)
				if mm["name"] == "policy" && mm["subPath"] != nil {
					t.Errorf("policy mounted with subPath %v; updates would not reach the pod", mm["subPath"])
				}
			}
			// Listeners on all interfaces, on the container's ports.
			checkListen := func(key, port string) {
				want := fmt.Sprintf(":%v", get(ctr, "ports.[name="+port+"].containerPort"))
				if got := get(cfg, key); got != want {
					t.Errorf("%s = %v, want %s (container port %s)", key, got, want, port)
				}
			}
			checkListen("listen", "proxy")
			checkListen("admin_listen", "admin")
			// Every Service port targets a container port of the same number.
			for _, svc := range []string{fullname, fullname + "-admin"} {
				for _, sp := range get(mustFind(t, objs, "Service", svc), "spec.ports").([]any) {
					sp := sp.(map[string]any)
					cp := get(ctr, fmt.Sprintf("ports.[name=%v].containerPort", sp["targetPort"]))
					if cp == nil || cp != sp["port"] {
						t.Errorf("Service %s port %v targets %v, container port %v", svc, sp["port"], sp["targetPort"], cp)
					}
				}
			}
			// Probes and scrape annotations on the admin listener.
			for _, probe := range []string{"livenessProbe", "readinessProbe"} {
				if got := get(ctr, probe+".httpGet.port"); got != "admin" {
					t.Errorf("%s port = %v, want admin", probe, got)
				}
			}
			if got, want := get(d, "spec.template.metadata.annotations.[prometheus.io/port]"), fmt.Sprint(get(ctr, "ports.[name=admin].containerPort")); got != nil && got != want {
				t.Errorf("prometheus.io/port = %v, want %s", got, want)
			}
			if get(cfg, "tls_listen") != nil {
				checkListen("tls_listen", "proxy-tls")
			}
			// The audit log goes to stdout, or to a file on a writable
			// volume (the root filesystem is read-only).
			switch out, _ := get(cfg, "audit.output").(string); {
			case out == "stdout" || out == "stderr":
			case path.IsAbs(out) && writableDir(podSpec, ctr, path.Dir(out)):
			default:
				t.Errorf("audit.output = %q, want stdout, stderr or a file on a writable volume", out)
			}
			// The Workload API socket is in the agent's socket directory the
			// pod mounts, and SPIFFE_ENDPOINT_SOCKET names the same one.
			if sock, ok := get(cfg, "identity.mtls.workload_api.socket").(string); ok {
				file, ok := strings.CutPrefix(sock, "unix://")
				if !ok || !agentSocketMounted(podSpec, ctr, path.Dir(file)) {
					t.Errorf("identity.mtls.workload_api.socket %s is not in a mounted SPIRE agent socket directory", sock)
				}
				if env := get(ctr, "env.[name=SPIFFE_ENDPOINT_SOCKET].value"); env != sock {
					t.Errorf("SPIFFE_ENDPOINT_SOCKET = %v, want %s", env, sock)
				}
			}
			if get(cfg, "tls.svid") == true && get(podSpec, "volumes.[name=tls]") != nil {
				t.Error("the TLS listener serves the SVID, yet the pod mounts a certificate Secret")
			}
			// OTLP export headers are files of Secrets, never inline in
			// the config (TestSecretsAreFiles checks the mounts).
			for _, sec := range []string{"tracing.headers", "audit.otlp.headers"} {
				hs, _ := get(cfg, sec).(map[string]any)
				for name, h := range hs {
					if hm, _ := h.(map[string]any); len(hm) != 1 || get(h, "file") == nil {
						t.Errorf("%s.%s = %v, want only {file: PATH}", sec, name, h)
					}
				}
			}
			// Redis settings live under cache.redis, with secrets in files only.
			if _, ok := cfg["redis"]; ok {
				t.Error("gateway config has a top-level redis key; it belongs under cache.redis")
			}
			if r, ok := get(cfg, "cache.redis").(map[string]any); ok {
				if _, inline := r["password"]; inline {
					t.Error("cache.redis has an inline password")
				}
				keys, _ := r["encryption_keys"].([]any)
				if len(keys) == 0 {
					t.Error("cache.redis has no encryption_keys")
				}
				for _, k := range keys {
					if get(k, "file") == nil {
						t.Errorf("cache.redis encryption key %v: no file", get(k, "id"))
					}
				}
			}
		})
	}
}

// fileKeys are the gateway config keys (at any depth) that name files.
var fileKeys = []string{"policy", "cert", "key", "client_ca", "ca_bundle", "file", "jwks_file", "ca_file", "bearer_token_file", "token_file",
	"key_file", "fingerprint_key_file", "ca", "ca_cert"}

// notFiles are the config keys, by dotted path, that fileKeys would take
// for files but that name something else.
var notFiles = []string{
	"audit.checkpoint.signer.vault_transit.key", // a Vault transit key's name
}

// configFiles returns every file the gateway config names, by dotted key.
func configFiles(prefix string, v any) map[string]string {
	out := map[string]string{}
	switch n := v.(type) {
	case map[string]any:
		for k, e := range n {
			if s, ok := e.(string); ok && slices.Contains(fileKeys, k) && s != "" {
				if !slices.Contains(notFiles, prefix+k) {
					out[prefix+k] = s
				}
				continue
			}
			maps.Copy(out, configFiles(prefix+k+".", e))
		}
	case []any:
		for i, e := range n {
			maps.Copy(out, configFiles(fmt.Sprintf("%s%d.", prefix, i), e))
		}
	}
	return out
}

// mountedFile reports whether the container sees path through a volume
// (ConfigMap/Secret items, projected sources, or the whole config file via
// subPath).
func mountedFile(podSpec, ctr map[string]any, p string) bool {
	for _, m := range ctr["volumeMounts"].([]any) {
		mm := m.(map[string]any)
		mountPath, _ := mm["mountPath"].(string)
		vol, _ := get(podSpec, "volumes.[name="+mm["name"].(string)+"]").(map[string]any)
		var srcs []map[string]any
		for _, k := range []string{"configMap", "secret"} {
			if src, ok := vol[k].(map[string]any); ok {
				srcs = append(srcs, src)
			}
		}
		if pr, ok := get(vol, "projected.sources").([]any); ok {
			for _, s := range pr {
				for _, src := range s.(map[string]any) {
					srcs = append(srcs, src.(map[string]any))
				}
			}
		}
		for _, src := range srcs {
			if sub, ok := mm["subPath"].(string); ok {
				if mountPath == p && hasItemPath(src, sub) {
					return true
				}
				continue
			}
			if rel, ok := strings.CutPrefix(p, mountPath+"/"); ok && hasItemPath(src, rel) {
				return true
			}
		}
	}
	return false
}

// writableDir reports whether the container can write in dir: it is at or
// under a mount, not read-only, of an emptyDir or a PersistentVolumeClaim.
func writableDir(podSpec, ctr map[string]any, dir string) bool {
	for _, m := range ctr["volumeMounts"].([]any) {
		mm := m.(map[string]any)
		mountPath, _ := mm["mountPath"].(string)
		if mm["readOnly"] == true || (dir != mountPath && !strings.HasPrefix(dir, mountPath+"/")) {
			continue
		}
		vol, _ := get(podSpec, "volumes.[name="+mm["name"].(string)+"]").(map[string]any)
		if vol["emptyDir"] != nil || vol["persistentVolumeClaim"] != nil {
			return true
		}
	}
	return false
}

// agentSocketMounted reports whether the container mounts the SPIRE
// agent's socket directory (a SPIFFE CSI driver or hostPath volume) at dir.
func agentSocketMounted(podSpec, ctr map[string]any, dir string) bool {
	for _, m := range ctr["volumeMounts"].([]any) {
		mm := m.(map[string]any)
		vol, _ := get(podSpec, "volumes.[name="+mm["name"].(string)+"]").(map[string]any)
		if mm["mountPath"] == dir && agentSocketVolume(vol) {
			return true
		}
	}
	return false
}

// hasItemPath reports whether a volume source provides the file p: one of
// its items, its own path (a projected token), or any key when it lists
// none.
func hasItemPath(src map[string]any, p string) bool {
	if path, ok := src["path"].(string); ok {
		return path == p
	}
	items, ok := src["items"].([]any)
	if !ok {
		return true // whole ConfigMap/Secret: any key may be there
	}
	for _, it := range items {
		if it.(map[string]any)["path"] == p {
			return true
		}
	}
	return false
}

// TestCAConfigMap checks the ConfigMap applications mount: the certificate,
// nothing else.
func TestCAConfigMap(t *testing.T) {
	objs := parse(t, render(t, variantByName(t, "existing-secret-ca")))
	cm := mustFind(t, objs, "ConfigMap", fullname+"-ca")
	data, _ := cm["data"].(map[string]any)
	var keys []string
	for k := range data {
		keys = append(keys, k)
	}
	if diff := cmp.Diff([]string{"ca.crt"}, keys); diff != "" {
		t.Errorf("CA ConfigMap keys (-want +got):\n%s", diff)
	}
	if _, ok := cm["binaryData"]; ok {
		t.Error("CA ConfigMap has binaryData")
	}
	got, _ := data["ca.crt"].(string)
	if strings.TrimSpace(got) != strings.TrimSpace(testCACert) {
		t.Errorf("ca.crt = %q, want the configured certificate", got)
	}
	for _, o := range objs {
		if o.kind() == "ConfigMap" {
			b, _ := yaml.Marshal(o)
			if strings.Contains(string(b), "PRIVATE KEY") {
				t.Errorf("ConfigMap %s contains a private key", o.name())
			}
		}
	}
}

var checksumRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// TestChecksumAnnotation checks that a gateway config change changes the pod
// template (restart) and a policy change does not (it reloads in place).
func TestChecksumAnnotation(t *testing.T) {
	sum := func(t *testing.T, args ...string) string {
		t.Helper()
		objs := parse(t, run(t, helmBin, templateArgs(args...)...))
		s, _ := get(mustFind(t, objs, "Deployment", fullname), "spec.template.metadata.annotations.[checksum/config]").(string)
		if !checksumRE.MatchString(s) {
			t.Fatalf("checksum/config = %q, want a sha256", s)
		}
		return s
	}
	base := sum(t)
	tests := []struct {
		name        string
		args        []string
		wantChanged bool
	}{
		{"log level", []string{"--set", "config.logLevel=debug"}, true},
		{"proxy port", []string{"--set", "proxyPort=8080"}, true},
		{"policy", []string{"--set-string", "policy=default: deny"}, false},
		{"replicas", []string{"--set", "replicaCount=5"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if changed := sum(t, tt.args...) != base; changed != tt.wantChanged {
				t.Errorf("checksum changed = %v, want %v", changed, tt.wantChanged)
			}
		})
	}
}

// TestRenderedKinds lists what each variant renders, so an accidental
// object (or a missing one) shows up in review.
func TestRenderedKinds(t *testing.T) {
	tests := map[string][]string{
		"default": {"ConfigMap/cg-credgate-config", "ConfigMap/cg-credgate-policy", "Deployment/cg-credgate",
			"PodDisruptionBudget/cg-credgate", "Service/cg-credgate", "Service/cg-credgate-admin", "ServiceAccount/cg-credgate"},
		"cert-manager": {"Certificate/cg-credgate-ca", "ConfigMap/cg-credgate-config", "ConfigMap/cg-credgate-policy",
			"Deployment/cg-credgate", "Issuer/cg-credgate-selfsigned", "PodDisruptionBudget/cg-credgate",
			"Service/cg-credgate", "Service/cg-credgate-admin", "ServiceAccount/cg-credgate", "ServiceMonitor/cg-credgate"},
		"networkpolicy": {"ConfigMap/cg-credgate-config", "ConfigMap/cg-credgate-policy", "Deployment/cg-credgate",
			"NetworkPolicy/cg-credgate", "NetworkPolicy/cg-credgate-egress-via-gateway@billing", "NetworkPolicy/cg-credgate-egress-via-gateway@shop",
			"PodDisruptionBudget/cg-credgate", "Service/cg-credgate", "Service/cg-credgate-admin", "ServiceAccount/cg-credgate"},
		"existing-secret-ca": {"ClusterRole/cg-credgate-egress-tokenreview", "ClusterRoleBinding/cg-credgate-egress-tokenreview", "ConfigMap/cg-credgate-ca", "ConfigMap/cg-credgate-config",
			"Deployment/cg-credgate", "PodDisruptionBudget/cg-credgate", "Service/cg-credgate", "Service/cg-credgate-admin", "ServiceAccount/cg-credgate"},
		"identity": {"ClusterRole/cg-credgate-egress-tokenreview", "ClusterRoleBinding/cg-credgate-egress-tokenreview", "ConfigMap/cg-credgate-config", "ConfigMap/cg-credgate-policy",
			"Deployment/cg-credgate", "NetworkPolicy/cg-credgate", "PodDisruptionBudget/cg-credgate",
			"Service/cg-credgate", "Service/cg-credgate-admin", "ServiceAccount/cg-credgate"},
		"spire": {"ConfigMap/cg-credgate-config", "ConfigMap/cg-credgate-policy", "Deployment/cg-credgate",
			"NetworkPolicy/cg-credgate", "PodDisruptionBudget/cg-credgate", "Service/cg-credgate", "Service/cg-credgate-admin",
			"ServiceAccount/cg-credgate"},
		"admin-tls": {"ConfigMap/cg-credgate-config", "ConfigMap/cg-credgate-policy", "Deployment/cg-credgate",
			"PodDisruptionBudget/cg-credgate", "Service/cg-credgate", "Service/cg-credgate-admin", "ServiceAccount/cg-credgate",
			"ServiceMonitor/cg-credgate"},
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, o := range parse(t, render(t, variantByName(t, name))) {
				id := o.kind() + "/" + o.name()
				if ns := o.namespace(); ns != "" && ns != namespace {
					id += "@" + ns
				}
				got = append(got, id)
			}
			slices.Sort(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("rendered objects (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOptionalObjects checks which toggles add or remove which objects.
func TestOptionalObjects(t *testing.T) {
	const crb = "ClusterRoleBinding/" + fullname + "-egress-tokenreview"
	tests := []struct {
		name   string
		args   []string
		object string
		want   bool
	}{
		{"TokenReview binds the tokenreview role", []string{"--set", "identity.tokenReview.enabled=true"}, crb, true},
		{"RBAC managed elsewhere", []string{"--set", "identity.tokenReview.enabled=true", "--set", "rbac.create=false"}, crb, false},
		{"JWKS needs no binding", []string{"--set", "identity.jwt.kubernetes.enabled=true"}, crb, false},
		{"no PDB", []string{"--set", "podDisruptionBudget.enabled=false"}, "PodDisruptionBudget/" + fullname, false},
		{"no ServiceAccount", []string{"--set", "serviceAccount.create=false"}, "ServiceAccount/" + fullname, false},
		{"ServiceMonitor", []string{"--set", "metrics.serviceMonitor.enabled=true"}, "ServiceMonitor/" + fullname, true},
		{"HPA", []string{"--set", "autoscaling.enabled=true"}, "HorizontalPodAutoscaler/" + fullname, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			kind, name, _ := strings.Cut(tt.object, "/")
			objs := parse(t, run(t, helmBin, templateArgs(tt.args...)...))
			if got := find(objs, kind, name) != nil; got != tt.want {
				t.Errorf("%s rendered = %v, want %v", tt.object, got, tt.want)
			}
		})
	}
}
