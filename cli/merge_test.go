package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMergeKeysRefusedInBothFiles is the class test of YAML merge keys
// (<<) in the two files credgate reads: wherever one is written (the top
// level, a section, a rule, a provider's or an injector's settings, a
// list of merged aliases), validate refuses it at the key with the same
// message and fix for either file. An alias standing for a whole value
// stays allowed in both.
func TestMergeKeysRefusedInBothFiles(t *testing.T) {
	t.Setenv("CREDGATE_TEST_MERGE", "value-not-a-secret")
	const policy = `workloads:
  w: &wl {cidrs: [10.0.0.0/8]}
  w2: WL2
destinations:
  d: {hosts: [d.test]}
credentials:
  c: CRED
rules:
  - RULE
default: deny
`
	const config = `listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
policy: policy.yaml
ca: CA
limits: LIMITS
`
	okPolicy := map[string]string{"WL2": "*wl", "CRED": "{provider: static, env: CREDGATE_TEST_MERGE}", "RULE": "{name: r, from: w, to: d, inject: {credential: c, as: bearer}}"}
	okConfig := map[string]string{"CA": "{cert: ca/ca.pem, key: ca/ca-key.pem}", "LIMITS": "{max_header_bytes: 65536}"}
	tests := []struct {
		name   string
		config bool
		set    map[string]string // replaces placeholders of the ok file
		at     string            // LINE:COL of the merge key; "" = valid
	}{
		{name: "policy: an alias to a whole value", set: map[string]string{}},
		{name: "policy: in a workload", set: map[string]string{"WL2": "{<<: *wl, require: [source]}"}, at: "3:8"},
		{name: "policy: in credential settings", set: map[string]string{"CRED": "{provider: static, <<: {env: CREDGATE_TEST_MERGE}}"}, at: "7:25"},
		{name: "policy: in a rule", set: map[string]string{"RULE": "{<<: {from: w}, name: r, to: d, inject: {credential: c, as: bearer}}"}, at: "9:6"},
		{name: "policy: in injector settings", set: map[string]string{"RULE": "{name: r, from: w, to: d, inject: {credential: c, <<: {as: bearer}}}"}, at: "9:55"},
		{name: "policy: a list of aliases", set: map[string]string{"WL2": "{<<: [*wl], require: [source]}"}, at: "3:8"},
		{name: "config: an alias to a whole value", config: true, set: map[string]string{"LIMITS": "{max_header_bytes: 65536}"}},
		{name: "config: in a section", config: true, set: map[string]string{"CA": "{<<: {cert: ca/ca.pem}, key: ca/ca-key.pem}"}, at: "4:6"},
		{name: "config: in limits", config: true, set: map[string]string{"LIMITS": "{<<: {max_header_bytes: 65536}}"}, at: "5:10"},
		{name: "config: a list of maps", config: true, set: map[string]string{"LIMITS": "{<<: [{max_header_bytes: 65536}]}"}, at: "5:10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := gatewayDir(t)
			dir := filepath.Dir(path)
			fill := func(src string, ok map[string]string) string {
				for k, v := range ok {
					if s, set := tt.set[k]; set && (tt.config == (ok["CA"] != "")) {
						v = s
					}
					src = strings.ReplaceAll(src, k, v)
				}
				return src
			}
			pol, cfg := fill(policy, okPolicy), fill(config, okConfig)
			polPath := filepath.Join(dir, "policy.yaml")
			if err := os.WriteFile(polPath, []byte(pol), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			file, kind := polPath, "policy"
			if tt.config {
				file, kind = path, "gateway config"
			}
			r := runCLI(t, "validate", "-c", file)
			if tt.at == "" {
				if r.code != 0 {
					t.Fatalf("validate: exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
				}
				return
			}
			want := file + ":" + tt.at + ": YAML merge keys (<<) are not supported in a " + kind + "; write the fields out (an alias such as *name may stand for a whole value)"
			if r.code != exitError || !strings.Contains(r.stdout+r.stderr, want) {
				t.Errorf("validate: exit %d, output:\n%s%s\nwant exit 1 and the line\n%s", r.code, r.stdout, r.stderr, want)
			}
		})
	}
}
