package helm_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// renderNotes renders NOTES.txt, which `helm template` does not print: it
// copies the chart, turns NOTES.txt into a named template and shows it
// through a ConfigMap.
func renderNotes(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "credgate")
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	notes, err := os.ReadFile(filepath.Join(dir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "templates", "_test_notes.tpl"), `{{- define "test.notes" -}}`+string(notes)+`{{- end }}`)
	write(t, filepath.Join(dir, "templates", "test-notes.yaml"),
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  NOTES.txt: {{ include \"test.notes\" . | quote }}\n")
	if err := os.Remove(filepath.Join(dir, "templates", "NOTES.txt")); err != nil {
		t.Fatal(err)
	}
	base := []string{"template", releaseName, dir, "--namespace", namespace, "--kube-version", k8sVersion,
		"--show-only", "templates/test-notes.yaml"}
	objs := parse(t, run(t, helmBin, append(base, args...)...))
	s, _ := get(objs[0], "data.[NOTES.txt]").(string)
	return s
}

func TestNotes(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    []string
		wantNot []string
	}{
		{"default", nil, []string{
			"HTTPS_PROXY, value: \"http://cg-credgate.egress.svc:3128\"",
			"kubectl -n egress create secret tls cg-credgate-ca-keypair",
			"curl:", "Python:", "Node:", "Java:", "Go:",
			"Each replica keeps its own in-memory credential cache; to share one, see Redis in the chart README.",
			"identified by their source address only",
			"give such clients a bundle of the system roots plus ca.crt",
		}, []string{"configmap cg-credgate-ca", "redis", "Proxy-Authorization", "One replica"}},
		{"admin over TLS", []string{"--set", "admin.tls.enabled=true", "--set", "admin.tls.existingSecret=a"}, []string{
			"Admin:  https://cg-credgate-admin.egress.svc:9090",
		}, []string{"Admin:  http://"}},
		{"one replica", []string{"--set", "replicaCount=1"}, []string{"One replica: every node drain"}, []string{"Each replica"}},
		{"autoscaled", []string{"--set", "replicaCount=1", "--set", "autoscaling.enabled=true"}, []string{"Each replica"}, []string{"One replica"}},
		{"service-account tokens", []string{"--set", "identity.jwt.kubernetes.enabled=true", "--set", "identity.tokenReview.enabled=true"}, []string{
			`a service-account token for the audience "credgate"`,
			"(jwt factor, kubernetes factor via TokenReview)",
			"serviceAccountToken: {audience: credgate, expirationSeconds: 3600, path: token}",
			"HTTPS_PROXY=http://workload:$(cat /var/run/secrets/credgate/token)@cg-credgate.egress.svc:3128",
		}, []string{"source address only"}},
		{"token review only", []string{"--set", "identity.tokenReview.enabled=true", "--set", "identity.tokenReview.audiences[0]=egress"}, []string{
			`for the audience "egress"`, "(kubernetes factor via TokenReview)",
		}, nil},
		{"existing CA with certificate", []string{"--set", "ca.existingSecret=corp-ca", "--set-string", "ca.certificate=" + testCACert}, []string{
			"get configmap cg-credgate-ca -o jsonpath='{.data.ca\\.crt}'",
		}, []string{"create secret tls"}},
		{"cert-manager", []string{"--set", "ca.certManager.enabled=true"}, []string{
			"run `helm upgrade` again", "secret cg-credgate-ca-keypair -o jsonpath='{.data.tls\\.crt}'",
		}, []string{"tls\\.key"}},
		{"spire", []string{"--set", "tls.enabled=true", "--set", "spire.enabled=true", "--set", "spire.spiffeID=" + gatewayID}, []string{
			"its X.509-SVID (" + gatewayID + "), served on the TLS listener, and the bundles that verify client SVIDs from the agent's Workload API at unix:///spiffe-workload-api/spire-agent.sock",
			"(namespace egress, service account cg-credgate)",
			"Callers present their SVIDs to https://cg-credgate.egress.svc:3129",
		}, []string{"source address only"}},
		{"spire bundles only", []string{"--set", "tls.enabled=true", "--set", "tls.existingSecret=gw", "--set", "spire.enabled=true", "--set", "spire.svidListener=false"}, []string{
			"SPIRE: the gateway takes the bundles that verify client SVIDs",
		}, []string{"its X.509-SVID"}},
		{"audit file", []string{"--set", "config.auditOutput=/var/log/credgate/audit.log", "--set", "config.audit.rotate.every=24h",
			"--set", "extraVolumes[0].name=logs", "--set", "extraVolumes[0].emptyDir.sizeLimit=1Gi",
			"--set", "extraVolumeMounts[0].name=logs", "--set", "extraVolumeMounts[0].mountPath=/var/log/credgate"}, []string{
			"Audit lines go to /var/log/credgate/audit.log on the pod's volume, not to kubectl logs: ship and remove the rotated files",
		}, nil},
		{"run tokens", []string{"--set", "config.runTokens.enabled=true", "--set", "config.runTokens.workloads[0]=agent",
			"--set", "config.runTokens.keySecret.name=rt", "--set", "admin.tokenSecret.name=credgate-admin"}, []string{
			"credgate run --workload agent", "the Secret credgate-admin", "port-forward deploy/cg-credgate 9090:9090",
			`claims: {iss: "urn:credgate:run", sub: NAME}`,
		}, []string{"Audit lines go to"}},
		// With Redis the replicas share one cache.
		{"redis", []string{"--set", "redis.enabled=true", "--set", "redis.address=r:6379",
			"--set", "redis.encryptionKeys[0].id=k1", "--set", "redis.encryptionKeys[0].secretName=s", "--set", "redis.encryptionKeys[0].secretKey=k"}, []string{
			"Replicas share an encrypted credential cache in Redis at r:6379",
		}, []string{"Each replica keeps its own"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			notes := renderNotes(t, tt.args...)
			for _, w := range tt.want {
				if !strings.Contains(notes, w) {
					t.Errorf("NOTES.txt lacks %q:\n%s", w, notes)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(notes, w) {
					t.Errorf("NOTES.txt contains %q:\n%s", w, notes)
				}
			}
		})
	}
}
