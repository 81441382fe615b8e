package helm_test

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// budgetsValues stretch every time budget the chart must keep coherent: a
// long wait for the first SVID, JWKS and posture fetched over the network
// at start, a long drain, and an autoscaler with a memory target.
const budgetsValues = `
tls:
  enabled: true
spire:
  enabled: true
  startTimeout: 2m30s
identity:
  jwt:
    kubernetes:
      enabled: true
    issuers:
      - issuer: https://token.actions.githubusercontent.com
        audiences: [credgate]
        discoveryURL: https://token.actions.githubusercontent.com/.well-known/openid-configuration
        fetchTimeout: 20s
      - issuer: https://idp.example.org
        audiences: [credgate]
        jwksFile: /etc/credgate/idp/jwks.json
  posture:
    url: https://posture.example.org/v1/records
    timeout: 15s
config:
  shutdownTimeout: 2m
  tracing:
    enabled: true
    endpoint: otel-collector.monitoring.svc:4317
terminationGracePeriodSeconds: 160
preStopSleepSeconds: 10
autoscaling:
  enabled: true
  targetMemoryUtilizationPercentage: 75
extraVolumes:
  - {name: idp, configMap: {name: idp-jwks}}
extraVolumeMounts:
  - {name: idp, mountPath: /etc/credgate/idp, readOnly: true}
`

// startWait is how long the gateway the rendered config describes may
// take to open its admin listener: `credgate serve` waits for the first
// X.509-SVID (identity.mtls.workload_api.start_timeout), fetches each JWKS
// it reaches over the network (fetch_timeout each) and the posture feed's
// URL (posture.timeout), one after the other, before /healthz answers.
func startWait(t *testing.T, cfg map[string]any) time.Duration {
	t.Helper()
	dur := func(v any, def time.Duration) time.Duration {
		s, ok := v.(string)
		if !ok || s == "" {
			return def
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("rendered duration %q: %v", s, err)
		}
		return d
	}
	var wait time.Duration
	if w := get(cfg, "identity.mtls.workload_api"); w != nil {
		wait += dur(get(w, "start_timeout"), 30*time.Second)
	}
	issuers, _ := get(cfg, "identity.jwt.issuers").([]any)
	for _, is := range issuers {
		if get(is, "jwks_url") != nil || get(is, "discovery_url") != nil {
			wait += dur(get(is, "fetch_timeout"), 10*time.Second)
		}
	}
	if get(cfg, "identity.posture.url") != nil {
		wait += dur(get(cfg, "identity.posture.timeout"), 10*time.Second)
	}
	return wait
}

// startSlack is what the chart allows beyond startWait for the rest of
// the start (reading the config, the policy and the CA, opening the audit
// sink).
const startSlack = 10 * time.Second

// TestTimeBudgets checks, over every variant and one that stretches each
// budget, that the pod's clocks agree with the gateway's: the start-up
// probe gives the gateway at least its longest start (so the liveness
// probe cannot kill a gateway that is still waiting for its SVID, before
// it says why), the grace period covers the preStop sleep and the drain
// (so SIGKILL does not cut requests the gateway is draining), and every
// autoscaler utilization target has the resource request it is a share of.
func TestTimeBudgets(t *testing.T) {
	vs := append(variants(), variant{name: "budgets", values: budgetsValues})
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			objs := parse(t, render(t, v))
			d := mustFind(t, objs, "Deployment", fullname)
			pod, _ := get(d, "spec.template.spec").(map[string]any)
			ctr, _ := get(pod, "containers.[name=credgate]").(map[string]any)
			var cfg map[string]any
			raw, _ := get(mustFind(t, objs, "ConfigMap", fullname+"-config"), "data.[config.yaml]").(string)
			if err := yaml.Unmarshal([]byte(raw), &cfg); err != nil {
				t.Fatalf("config.yaml: %v", err)
			}

			// Start: a start-up probe on the liveness probe's endpoint
			// whose window covers the gateway's longest start.
			sp, _ := ctr["startupProbe"].(map[string]any)
			if sp == nil {
				t.Errorf("no startupProbe: the liveness probe (%v) runs from the start, while the gateway may wait %s before /healthz answers",
					ctr["livenessProbe"], startWait(t, cfg))
			} else {
				if got, want := fmt.Sprint(get(sp, "httpGet")), fmt.Sprint(get(ctr, "livenessProbe.httpGet")); got != want {
					t.Errorf("startupProbe.httpGet = %s, want the liveness probe's %s", got, want)
				}
				window := time.Duration(num(get(sp, "initialDelaySeconds"))+num(get(sp, "periodSeconds"))*num(get(sp, "failureThreshold"))) * time.Second
				if need := startWait(t, cfg) + startSlack; window < need {
					t.Errorf("startupProbe window %s (initialDelay + period × failureThreshold), want at least %s (the gateway's start waits plus %s)", window, need, startSlack)
				}
			}

			// Stop: preStop sleep, then SIGTERM, at most shutdown_timeout
			// of draining and the gateway's close (gatewayStopSteps,
			// read from its source), inside the grace period.
			grace := time.Duration(num(pod["terminationGracePeriodSeconds"])) * time.Second
			sleep := time.Duration(num(get(ctr, "lifecycle.preStop.sleep.seconds"))) * time.Second
			if stop := stopBudget(t, cfg); grace <= sleep+stop {
				t.Errorf("terminationGracePeriodSeconds %s is not above the preStop sleep %s + the gateway's stop %s (shutdown_timeout %v and its close): kubelet kills the gateway while it drains or writes its audit tail", grace, sleep, stop, cfg["shutdown_timeout"])
			}

			// Autoscaling: a utilization target is a share of the request.
			if hpa := find(objs, "HorizontalPodAutoscaler", fullname); hpa != nil {
				metrics, _ := get(hpa, "spec.metrics").([]any)
				for _, m := range metrics {
					if get(m, "resource.target.type") != "Utilization" {
						continue
					}
					res := fmt.Sprint(get(m, "resource.name"))
					if get(ctr, "resources.requests."+res) == nil {
						t.Errorf("the HorizontalPodAutoscaler targets %s utilization, but the container requests no %s: the autoscaler cannot compute it and never scales", res, res)
					}
				}
			}
		})
	}
}

// TestTimeBudgetsRefused checks that values breaking a budget fail the
// render with a message naming the values to change.
func TestTimeBudgetsRefused(t *testing.T) {
	spire := []string{"--set", "tls.enabled=true", "--set", "spire.enabled=true"}
	tests := []struct {
		name    string
		args    []string
		wantErr []string
	}{
		{"drain longer than the grace period", []string{"--set", "config.shutdownTimeout=60s", "--set", "terminationGracePeriodSeconds=40"},
			[]string{"terminationGracePeriodSeconds", "config.shutdownTimeout"}},
		{"drain in minutes", []string{"--set", "config.shutdownTimeout=1m30s", "--set", "terminationGracePeriodSeconds=90"},
			[]string{"terminationGracePeriodSeconds", "at least 113"}},
		{"preStop sleep eats the grace period", []string{"--set", "preStopSleepSeconds=15", "--set", "terminationGracePeriodSeconds=40"},
			[]string{"terminationGracePeriodSeconds", "preStopSleepSeconds"}},
		{"grace period covers the drain but not the audit tail", []string{"--set", "terminationGracePeriodSeconds=40"},
			[]string{"terminationGracePeriodSeconds 40", "at least 53", "audit output"}},
		{"tracing's last spans", []string{"--set", "config.tracing.enabled=true", "--set", "config.tracing.endpoint=otel:4317", "--set", "terminationGracePeriodSeconds=50"},
			[]string{"terminationGracePeriodSeconds 50", "at least 58", "config.tracing"}},
		{"start-up probe shorter than the SVID wait", append(spire, "--set", "startupProbe.failureThreshold=5"),
			[]string{"startupProbe", "spire.startTimeout"}},
		{"start-up probe shorter than the JWKS fetches", []string{"--set", "identity.jwt.kubernetes.enabled=true",
			"--set", "startupProbe.periodSeconds=1", "--set", "startupProbe.failureThreshold=10"},
			[]string{"startupProbe", "identity"}},
		{"CPU target without a CPU request", []string{"--set", "autoscaling.enabled=true", "--set", "resources.requests=null"},
			[]string{"resources.requests.cpu"}},
		{"memory target without a memory request", []string{"--set", "autoscaling.enabled=true", "--set", "autoscaling.targetMemoryUtilizationPercentage=80",
			"--set", "resources.requests.memory=null"},
			[]string{"resources.requests.memory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := runErr(helmBin, templateArgs(tt.args...)...)
			if err == nil {
				t.Fatalf("helm template %v succeeded, want an error mentioning %q", tt.args, tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("helm template %v: error does not mention %q:\n%v", tt.args, w, err)
				}
			}
		})
	}
}

// num reads a YAML number (int or float) as an int; absent is 0.
func num(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case float64:
		return int(math.Ceil(n))
	}
	return 0
}

// TestWriterFilesNotShared checks that a file a gateway process writes on
// its own (the audit log, config.auditOutput; the kill switch state,
// admin.stateFile) is refused on a PersistentVolumeClaim when the
// Deployment may run more than one replica: every replica would mount the
// same claim and write the same file (one audit log written and rotated
// by several processes; one replica's switches overwriting another's). One replica, or an emptyDir, is accepted.
func TestWriterFilesNotShared(t *testing.T) {
	pvc := []string{"--set", "extraVolumes[0].name=data", "--set", "extraVolumes[0].persistentVolumeClaim.claimName=credgate-data",
		"--set", "extraVolumeMounts[0].name=data", "--set", "extraVolumeMounts[0].mountPath=/var/lib/credgate"}
	emptyDir := []string{"--set", "extraVolumes[0].name=data", "--set", "extraVolumes[0].emptyDir.sizeLimit=1Gi",
		"--set", "extraVolumeMounts[0].name=data", "--set", "extraVolumeMounts[0].mountPath=/var/lib/credgate"}
	state := []string{"--set", "admin.stateFile=/var/lib/credgate/switches.json"}
	audit := []string{"--set", "config.auditOutput=/var/lib/credgate/audit/audit.log"}
	cat := func(parts ...[]string) []string { return slices.Concat(parts...) }
	tests := []struct {
		name    string
		args    []string
		wantErr []string // empty: the render succeeds
	}{
		{"state file on a claim, 2 replicas", cat(pvc, state), []string{"admin.stateFile", "credgate-data", "replicaCount"}},
		{"state file on a claim, autoscaled", cat(pvc, state, []string{"--set", "replicaCount=1", "--set", "autoscaling.enabled=true"}), []string{"admin.stateFile", "autoscaling"}},
		{"audit file on a claim, 2 replicas", cat(pvc, audit), []string{"config.auditOutput", "credgate-data"}},
		{"state file on a claim, 1 replica", cat(pvc, state, []string{"--set", "replicaCount=1"}), nil},
		{"audit file on a claim, 1 replica", cat(pvc, audit, []string{"--set", "replicaCount=1"}), nil},
		{"state file on an emptyDir, 2 replicas", cat(emptyDir, state), nil},
		{"audit file on an emptyDir, 2 replicas", cat(emptyDir, audit), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := runErr(helmBin, templateArgs(tt.args...)...)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("helm template %v: %v", tt.args, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("helm template %v succeeded, want an error mentioning %q", tt.args, tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("helm template %v: error does not mention %q:\n%v", tt.args, w, err)
				}
			}
		})
	}
}
