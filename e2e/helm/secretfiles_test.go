package helm_test

import (
	"fmt"
	"path"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestSecretsAreFiles checks, over every variant, how secrets reach the
// gateway: never in a ConfigMap, and never through the environment (a
// variable is readable in /proc/PID/environ, inherited by child processes
// and copied into crash reports) when the gateway reads the same setting
// from a file. Every secret the gateway config names (the Redis password
// and encryption keys, OTLP export headers, the admin token, the
// checkpoint, fingerprint and run-token keys) is a file on a Secret
// volume; the container's env has no secretKeyRef of the chart's own
// (values.env is the user's).
func TestSecretsAreFiles(t *testing.T) {
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			objs := parse(t, render(t, v))
			d := mustFind(t, objs, "Deployment", fullname)
			pod, _ := get(d, "spec.template.spec").(map[string]any)
			ctr, _ := get(pod, "containers.[name=credgate]").(map[string]any)
			var values map[string]any
			if err := yaml.Unmarshal([]byte(v.values), &values); err != nil {
				t.Fatal(err)
			}
			userEnv, _ := values["env"].([]any)
			env, _ := ctr["env"].([]any)
			for _, e := range env {
				if get(e, "valueFrom.secretKeyRef") == nil || containsName(userEnv, get(e, "name")) {
					continue
				}
				t.Errorf("env %v takes Secret %v key %v: the gateway reads this secret from a file; mount the Secret instead",
					get(e, "name"), get(e, "valueFrom.secretKeyRef.name"), get(e, "valueFrom.secretKeyRef.key"))
			}
			var cfg map[string]any
			raw, _ := get(mustFind(t, objs, "ConfigMap", fullname+"-config"), "data.[config.yaml]").(string)
			if err := yaml.Unmarshal([]byte(raw), &cfg); err != nil {
				t.Fatalf("config.yaml: %v", err)
			}
			for key, file := range secretFiles(cfg) {
				p, _ := file.(string)
				if !path.IsAbs(p) {
					p = path.Join("/etc/credgate", p)
				}
				if !secretMounted(pod, ctr, p) {
					t.Errorf("config %s = %v: not a file of a Secret volume", key, file)
				}
			}
			for key, v := range secretEnvOrValue(cfg) {
				t.Errorf("config %s = %v: a secret by env or inline value; the chart passes secrets as files", key, v)
			}
		})
	}
}

// secretFiles returns the config keys that name a file holding a secret.
func secretFiles(cfg map[string]any) map[string]any {
	out := map[string]any{}
	for _, k := range []string{"admin.token_file", "audit.checkpoint.key_file", "audit.fingerprint_key_file", "run_tokens.key_file", "cache.redis.password_file"} {
		if v := get(cfg, k); v != nil {
			out[k] = v
		}
	}
	keys, _ := get(cfg, "cache.redis.encryption_keys").([]any)
	for i, k := range keys {
		out[fmt.Sprintf("cache.redis.encryption_keys.%d.file", i)] = get(k, "file")
	}
	for _, sec := range []string{"tracing.headers", "audit.otlp.headers"} {
		hs, _ := get(cfg, sec).(map[string]any)
		for name, h := range hs {
			out[sec+"."+name+".file"] = get(h, "file")
		}
	}
	return out
}

// secretEnvOrValue returns the config keys that pass a secret by
// environment variable or inline.
func secretEnvOrValue(cfg map[string]any) map[string]any {
	out := map[string]any{}
	for _, k := range []string{"admin.token_env", "cache.redis.password_env", "cache.redis.password"} {
		if v := get(cfg, k); v != nil {
			out[k] = v
		}
	}
	keys, _ := get(cfg, "cache.redis.encryption_keys").([]any)
	for i, k := range keys {
		for _, f := range []string{"env", "value"} {
			if v := get(k, f); v != nil {
				out[fmt.Sprintf("cache.redis.encryption_keys.%d.%s", i, f)] = v
			}
		}
	}
	for _, sec := range []string{"tracing.headers", "audit.otlp.headers"} {
		hs, _ := get(cfg, sec).(map[string]any)
		for name, h := range hs {
			for _, f := range []string{"env", "value"} {
				if v := get(h, f); v != nil {
					out[sec+"."+name+"."+f] = v
				}
			}
		}
	}
	return out
}

// secretMounted reports whether the container sees p as a key of a
// Secret volume mounted as a directory (no subPath: an updated Secret
// reaches the pod).
func secretMounted(pod, ctr map[string]any, p string) bool {
	for _, m := range ctr["volumeMounts"].([]any) {
		mountPath, _ := get(m, "mountPath").(string)
		rel, ok := strings.CutPrefix(p, mountPath+"/")
		if !ok || get(m, "subPath") != nil {
			continue
		}
		src, _ := get(pod, fmt.Sprintf("volumes.[name=%v].secret", get(m, "name"))).(map[string]any)
		if src != nil && hasItemPath(src, rel) {
			return true
		}
	}
	return false
}

// containsName reports whether a list of env entries has one named name.
func containsName(list []any, name any) bool {
	for _, e := range list {
		if get(e, "name") == name {
			return true
		}
	}
	return false
}
