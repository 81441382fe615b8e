package helm_test

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
)

// podSecurityVariants are value sets beyond variants() that change what
// the pod runs with: one replica with a PersistentVolumeClaim for the
// kill switch state, Redis with an audit file on an emptyDir and admin
// TLS, extra Secret and CSI volumes, and the TLS listener with SPIRE on
// a hostPath socket.
func podSecurityVariants() []variant {
	return append(variants(),
		variant{name: "one-replica-pvc", values: `
replicaCount: 1
podDisruptionBudget: {enabled: false}
admin:
  stateFile: /var/lib/credgate/switches.json
extraVolumes:
  - {name: state, persistentVolumeClaim: {claimName: credgate-state}}
extraVolumeMounts:
  - {name: state, mountPath: /var/lib/credgate}
`},
		variant{name: "redis-audit-file-admin-tls", values: `
replicaCount: 4
redis:
  enabled: true
  address: redis:6379
  passwordSecret: {name: redis-auth}
  encryptionKeys: [{id: k1, secretName: redis-keys, secretKey: k1}]
admin:
  tokenSecret: {name: credgate-admin}
  tls: {enabled: true, existingSecret: admin-tls, clientCAConfigMap: ops-ca}
config:
  auditOutput: /var/log/credgate/audit.log
  audit:
    rotate: {maxBytes: 1048576}
extraVolumes:
  - {name: audit, emptyDir: {sizeLimit: 512Mi}}
  - {name: vault-approle, secret: {secretName: vault-approle, defaultMode: 0400}}
  - {name: spiffe, csi: {driver: csi.spiffe.io, readOnly: true}}
extraVolumeMounts:
  - {name: audit, mountPath: /var/log/credgate}
  - {name: vault-approle, mountPath: /run/credgate/vault, readOnly: true}
  - {name: spiffe, mountPath: /run/spiffe, readOnly: true}
`},
		variant{name: "spire-hostpath-svid", values: `
tls:
  enabled: true
spire:
  enabled: true
  agentSocket: {volume: hostPath}
`},
	)
}

// restrictedVolumes are the volume types the Pod Security Standard
// "restricted" admits
// (https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted).
var restrictedVolumes = []string{"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}

// TestPodSecurityRestricted renders every value set and checks every pod
// the chart renders (any object with a pod template) against the Pod
// Security Standard "restricted" and the chart's own rules beyond it:
// a read-only root filesystem with /tmp an emptyDir, no API token
// mounted by default, Secret-bearing volumes at mode 0440 or tighter,
// and no hostPath but the SPIRE agent's socket directory, mounted
// read-only.
func TestPodSecurityRestricted(t *testing.T) {
	for _, v := range podSecurityVariants() {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			pods := 0
			for _, o := range parse(t, render(t, v)) {
				spec, ok := podSpecOf(o)
				if !ok {
					continue
				}
				pods++
				for _, p := range restrictedViolations(spec) {
					t.Errorf("%s/%s: %s", o.kind(), o.name(), p)
				}
			}
			if pods == 0 {
				t.Fatal("no pod template rendered")
			}
		})
	}
}

// TestPodSecurityCheckerCatches feeds restrictedViolations pod specs that
// each break one rule, so that a passing TestPodSecurityRestricted means
// something.
func TestPodSecurityCheckerCatches(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{
			"automountServiceAccountToken": false,
			"securityContext":              map[string]any{"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": map[string]any{"type": "RuntimeDefault"}},
			"containers": []any{map[string]any{
				"name": "c",
				"securityContext": map[string]any{"runAsNonRoot": true, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
					"capabilities": map[string]any{"drop": []any{"ALL"}}, "seccompProfile": map[string]any{"type": "RuntimeDefault"}},
				"volumeMounts": []any{map[string]any{"name": "tmp", "mountPath": "/tmp"}},
			}},
			"volumes": []any{map[string]any{"name": "tmp", "emptyDir": map[string]any{}}},
		}
	}
	if p := restrictedViolations(base()); len(p) != 0 {
		t.Fatalf("the base pod is refused: %v", p)
	}
	ctr := func(s map[string]any) map[string]any { return s["containers"].([]any)[0].(map[string]any) }
	csc := func(s map[string]any) map[string]any { return ctr(s)["securityContext"].(map[string]any) }
	tests := []struct {
		name   string
		break_ func(map[string]any)
		want   string
	}{
		{"hostNetwork", func(s map[string]any) { s["hostNetwork"] = true }, "hostNetwork"},
		{"hostPID", func(s map[string]any) { s["hostPID"] = true }, "hostPID"},
		{"hostIPC", func(s map[string]any) { s["hostIPC"] = true }, "hostIPC"},
		{"root user", func(s map[string]any) { csc(s)["runAsUser"] = 0 }, "runAsUser"},
		{"runAsNonRoot false", func(s map[string]any) { csc(s)["runAsNonRoot"] = false }, "runAsNonRoot"},
		{"runAsNonRoot unset", func(s map[string]any) {
			delete(s["securityContext"].(map[string]any), "runAsNonRoot")
			delete(csc(s), "runAsNonRoot")
		}, "runAsNonRoot"},
		{"privilege escalation", func(s map[string]any) { delete(csc(s), "allowPrivilegeEscalation") }, "allowPrivilegeEscalation"},
		{"privileged", func(s map[string]any) { csc(s)["privileged"] = true }, "privileged"},
		{"capabilities kept", func(s map[string]any) { csc(s)["capabilities"] = map[string]any{"drop": []any{"NET_RAW"}} }, "drop ALL"},
		{"capability added", func(s map[string]any) {
			csc(s)["capabilities"] = map[string]any{"drop": []any{"ALL"}, "add": []any{"NET_ADMIN"}}
		}, "adds"},
		{"seccomp unconfined", func(s map[string]any) {
			csc(s)["seccompProfile"] = map[string]any{"type": "Unconfined"}
		}, "seccompProfile"},
		{"seccomp unset", func(s map[string]any) {
			delete(csc(s), "seccompProfile")
			delete(s["securityContext"].(map[string]any), "seccompProfile")
		}, "seccompProfile"},
		{"writable root", func(s map[string]any) { delete(csc(s), "readOnlyRootFilesystem") }, "readOnlyRootFilesystem"},
		{"host port", func(s map[string]any) {
			ctr(s)["ports"] = []any{map[string]any{"containerPort": 3128, "hostPort": 3128}}
		}, "hostPort"},
		{"no /tmp", func(s map[string]any) { ctr(s)["volumeMounts"] = []any{} }, "/tmp"},
		{"API token automounted", func(s map[string]any) { delete(s, "automountServiceAccountToken") }, "automountServiceAccountToken"},
		{"hostPath", func(s map[string]any) {
			s["volumes"] = append(s["volumes"].([]any), map[string]any{"name": "logs", "hostPath": map[string]any{"path": "/var/log"}})
		}, "hostPath"},
		{"agent socket writable", func(s map[string]any) {
			s["volumes"] = append(s["volumes"].([]any), map[string]any{"name": "spire-agent-socket", "hostPath": map[string]any{"path": "/run/spire", "type": "Directory"}})
			ctr(s)["volumeMounts"] = append(ctr(s)["volumeMounts"].([]any), map[string]any{"name": "spire-agent-socket", "mountPath": "/spire"})
		}, "read-only"},
		{"nfs", func(s map[string]any) {
			s["volumes"] = append(s["volumes"].([]any), map[string]any{"name": "n", "nfs": map[string]any{"server": "x", "path": "/"}})
		}, "nfs"},
		{"world-readable Secret", func(s map[string]any) {
			s["volumes"] = append(s["volumes"].([]any), map[string]any{"name": "k", "secret": map[string]any{"secretName": "k"}})
		}, "defaultMode"},
		{"group-writable token", func(s map[string]any) {
			s["volumes"] = append(s["volumes"].([]any), map[string]any{"name": "k", "projected": map[string]any{
				"defaultMode": 0o660, "sources": []any{map[string]any{"serviceAccountToken": map[string]any{"path": "token"}}}}})
		}, "defaultMode"},
		{"Secret item world-readable", func(s map[string]any) {
			s["volumes"] = append(s["volumes"].([]any), map[string]any{"name": "k", "secret": map[string]any{"secretName": "k", "defaultMode": 0o440,
				"items": []any{map[string]any{"key": "a", "path": "a", "mode": 0o644}}}})
		}, "mode"},
		{"init container as root", func(s map[string]any) {
			s["initContainers"] = []any{map[string]any{"name": "init", "securityContext": map[string]any{"runAsUser": 0}}}
		}, "init"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base()
			tt.break_(s)
			p := restrictedViolations(s)
			if !slices.ContainsFunc(p, func(s string) bool { return strings.Contains(s, tt.want) }) {
				t.Errorf("violations %q, want one mentioning %q", p, tt.want)
			}
		})
	}
}

// podSpecOf returns the pod spec of an object that runs pods.
func podSpecOf(o object) (map[string]any, bool) {
	var path string
	switch o.kind() {
	case "Pod":
		path = "spec"
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job":
		path = "spec.template.spec"
	case "CronJob":
		path = "spec.jobTemplate.spec.template.spec"
	default:
		return nil, false
	}
	spec, ok := get(o, path).(map[string]any)
	return spec, ok
}

// restrictedViolations lists what in a pod spec breaks the restricted
// Pod Security Standard or the chart's rules beyond it.
func restrictedViolations(spec map[string]any) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	for _, k := range []string{"hostNetwork", "hostPID", "hostIPC"} {
		if spec[k] == true {
			bad("%s: true", k)
		}
	}
	if spec["automountServiceAccountToken"] != false {
		bad("automountServiceAccountToken is %v, want false (the tokens the gateway needs are mounted explicitly)", spec["automountServiceAccountToken"])
	}
	psc, _ := spec["securityContext"].(map[string]any)
	if get(psc, "windowsOptions.hostProcess") == true {
		bad("securityContext.windowsOptions.hostProcess")
	}
	for _, s := range asList(get(psc, "sysctls")) {
		bad("securityContext.sysctls %v: the chart sets none", get(s, "name"))
	}

	volumes := map[string]map[string]any{}
	for _, v := range asList(spec["volumes"]) {
		vm, _ := v.(map[string]any)
		name, _ := vm["name"].(string)
		volumes[name] = vm
		checkVolume(name, vm, bad)
	}

	var ctrs []map[string]any
	for _, kind := range []string{"initContainers", "containers", "ephemeralContainers"} {
		for _, c := range asList(spec[kind]) {
			cm, _ := c.(map[string]any)
			cm = mapsClone(cm)
			cm["_kind"] = strings.TrimSuffix(kind, "s")
			ctrs = append(ctrs, cm)
		}
	}
	if len(asList(spec["containers"])) == 0 {
		bad("no containers")
	}
	for _, c := range ctrs {
		id := fmt.Sprintf("%s %v", c["_kind"], c["name"])
		csc, _ := c["securityContext"].(map[string]any)
		// Effective settings: the container's, else the pod's.
		eff := func(k string) any {
			if v, ok := csc[k]; ok {
				return v
			}
			return psc[k]
		}
		if eff("runAsNonRoot") != true {
			bad("%s: runAsNonRoot is %v, want true", id, eff("runAsNonRoot"))
		}
		if u, ok := eff("runAsUser").(int); !ok || u == 0 {
			bad("%s: runAsUser is %v, want a non-zero UID (the image's 65532)", id, eff("runAsUser"))
		}
		if csc["allowPrivilegeEscalation"] != false {
			bad("%s: allowPrivilegeEscalation is %v, want false", id, csc["allowPrivilegeEscalation"])
		}
		if csc["privileged"] == true {
			bad("%s: privileged", id)
		}
		if !slices.Contains(asList(get(csc, "capabilities.drop")), any("ALL")) {
			bad("%s: capabilities do not drop ALL (%v)", id, get(csc, "capabilities.drop"))
		}
		if add := asList(get(csc, "capabilities.add")); len(add) > 0 {
			bad("%s: capabilities adds %v (the gateway binds no port below 1024 and needs none)", id, add)
		}
		if typ := get(eff("seccompProfile"), "type"); typ != "RuntimeDefault" {
			bad("%s: seccompProfile type %v, want RuntimeDefault", id, typ)
		}
		if get(eff("appArmorProfile"), "type") == "Unconfined" {
			bad("%s: appArmorProfile Unconfined", id)
		}
		if pm, ok := csc["procMount"]; ok && pm != "Default" {
			bad("%s: procMount %v", id, pm)
		}
		if csc["readOnlyRootFilesystem"] != true {
			bad("%s: readOnlyRootFilesystem is %v, want true", id, csc["readOnlyRootFilesystem"])
		}
		for _, p := range asList(c["ports"]) {
			if hp := get(p, "hostPort"); hp != nil && hp != 0 {
				bad("%s: port %v has hostPort %v", id, get(p, "name"), hp)
			}
		}
		tmp := false
		for _, m := range asList(c["volumeMounts"]) {
			name, _ := get(m, "name").(string)
			vol := volumes[name]
			if vol == nil {
				bad("%s: volumeMount %s has no volume", id, name)
				continue
			}
			if vol["hostPath"] != nil && get(m, "readOnly") != true {
				bad("%s: hostPath volume %s mounted at %v is not read-only", id, name, get(m, "mountPath"))
			}
			if get(m, "mountPath") == "/tmp" && vol["emptyDir"] != nil && get(m, "readOnly") != true {
				tmp = true
			}
		}
		if c["_kind"] == "container" && !tmp {
			bad("%s: /tmp is not a writable emptyDir (the root filesystem is read-only)", id)
		}
	}
	sort.Strings(out)
	return out
}

// checkVolume reports a volume the restricted standard refuses (hostPath
// but the SPIRE agent's socket directory, which the chart documents as
// needing a namespace that admits it), and a Secret-bearing volume whose
// files are more than owner- and group-readable.
func checkVolume(name string, vm map[string]any, bad func(string, ...any)) {
	for k := range vm {
		switch {
		case k == "name":
		case k == "hostPath":
			if name != "spire-agent-socket" || get(vm, "hostPath.type") != "Directory" {
				bad("volume %s: hostPath %v (only spire.agentSocket.volume=hostPath mounts one, the agent's socket directory)", name, get(vm, "hostPath.path"))
			}
		case !slices.Contains(restrictedVolumes, k):
			bad("volume %s: type %s, which the restricted Pod Security Standard refuses", name, k)
		}
	}
	var modes []any
	switch {
	case vm["secret"] != nil:
		modes = append(modes, get(vm, "secret.defaultMode"))
		for _, it := range asList(get(vm, "secret.items")) {
			if m := get(it, "mode"); m != nil {
				modes = append(modes, m)
			}
		}
	case vm["projected"] != nil:
		secretish := false
		for _, src := range asList(get(vm, "projected.sources")) {
			if get(src, "secret") != nil || get(src, "serviceAccountToken") != nil {
				secretish = true
			}
			for _, it := range asList(get(src, "secret.items")) {
				if m := get(it, "mode"); m != nil {
					modes = append(modes, m)
				}
			}
		}
		if secretish {
			modes = append(modes, get(vm, "projected.defaultMode"))
		}
	}
	for _, m := range modes {
		n, ok := m.(int)
		if !ok || n&^0o440 != 0 {
			bad("volume %s: mode %v (defaultMode or an item's mode), want 0440 or tighter: the files hold secrets", name, m)
		}
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func mapsClone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestExtraVolumesRestricted renders extraVolumes of every volume type the
// pod API has: those the restricted standard admits (restrictedVolumes,
// which TestPodSecurityRestricted checks rendered pods against) render,
// every other one fails the render naming the volume and the admitted
// types, and hostPath names the SPIRE setting.
func TestExtraVolumesRestricted(t *testing.T) {
	all := []string{"awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "configMap", "csi", "downwardAPI",
		"emptyDir", "ephemeral", "fc", "flexVolume", "flocker", "gcePersistentDisk", "gitRepo", "glusterfs", "hostPath", "image",
		"iscsi", "nfs", "persistentVolumeClaim", "photonPersistentDisk", "portworxVolume", "projected", "quobyte", "rbd",
		"scaleIO", "secret", "storageos", "vsphereVolume"}
	for _, typ := range all {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			_, err := runErr(helmBin, templateArgs("--set-json", fmt.Sprintf(`extraVolumes=[{"name":"extra","%s":{}}]`, typ))...)
			if slices.Contains(restrictedVolumes, typ) {
				if err != nil {
					t.Fatalf("a %s volume is refused: %v", typ, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("a %s volume renders; the restricted Pod Security Standard refuses it", typ)
			}
			for _, w := range []string{"extraVolumes extra", typ, "restricted"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q: %v", w, err)
				}
			}
			if typ == "hostPath" && !strings.Contains(err.Error(), "spire.agentSocket.volume") {
				t.Errorf("hostPath error does not name spire.agentSocket.volume: %v", err)
			}
		})
	}
}
