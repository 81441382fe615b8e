package cli

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// sourcesPolicy is a policy whose credentials section is a row's; the
// rest only makes it valid. Line 4 is the first line of the section.
const sourcesPolicy = `workloads:
  local: {cidrs: [127.0.0.0/8]}
destinations:
  saas: {hosts: [api.saas.test]}
credentials:
%s
rules:
  - name: r
    from: local
    to: saas
    inject: {credential: c, as: bearer}
default: deny
`

// TestValidateCredentialSources is the class test of the variables and
// files a policy's credentials read only when they fetch: validate on a
// gateway config reports each one that is unset, empty, missing,
// unreadable or not a file, at the line of its setting, with the fix; a
// policy validated on its own (CI, no secrets there) is not checked.
func TestValidateCredentialSources(t *testing.T) {
	t.Setenv("CREDGATE_TEST_SRC_SET", "value-not-a-secret")
	t.Setenv("CREDGATE_TEST_SRC_EMPTY", "")
	os.Unsetenv("CREDGATE_TEST_SRC_UNSET")
	tests := []struct {
		name  string
		creds string
		files map[string]string // relative to the config's directory
		mode  os.FileMode       // of files, when not 0
		fifo  string            // a named pipe to make there
		want  []string          // LINE:COL: message after "policy.yaml:", with DIR for the directory
	}{
		{name: "env set", creds: "  c: {provider: static, env: CREDGATE_TEST_SRC_SET}"},
		{name: "file present", creds: "  c: {provider: static, file: DIR/tok}", files: map[string]string{"tok": "v\n"}},
		{name: "fields all present", creds: "  c:\n    provider: static\n    fields:\n      a: {env: CREDGATE_TEST_SRC_SET}\n      b: {file: DIR/tok}", files: map[string]string{"tok": "v"}},
		{name: "env unset", creds: "  c: {provider: static, env: CREDGATE_TEST_SRC_UNSET}",
			want: []string{`6:30: credential "c": static: env: environment variable CREDGATE_TEST_SRC_UNSET is not set or empty in the gateway's environment; export it before starting credgate serve: credential source not configured`}},
		{name: "env empty", creds: "  c:\n    provider: static\n    env: CREDGATE_TEST_SRC_EMPTY",
			want: []string{`8:10: credential "c": static: env: environment variable CREDGATE_TEST_SRC_EMPTY is not set or empty in the gateway's environment; export it before starting credgate serve: credential source not configured`}},
		{name: "file missing", creds: "  c: {provider: static, file: DIR/nope}",
			want: []string{`6:31: credential "c": static: file: DIR/nope does not exist; create it holding the credential, or correct the path: credential source not configured`}},
		{name: "file empty", creds: "  c: {provider: static, file: DIR/tok}", files: map[string]string{"tok": "\n"},
			want: []string{`6:31: credential "c": static: file: DIR/tok is empty; write the credential into it: credential source not configured`}},
		{name: "file is a directory", creds: "  c: {provider: static, file: DIR/sub}", files: map[string]string{"sub/x": "v"},
			want: []string{`6:31: credential "c": static: file: DIR/sub is a directory, not a regular file; point it at a file holding the credential: credential source not configured`}},
		{name: "file is a named pipe", creds: "  c: {provider: static, file: DIR/fifo}", fifo: "fifo",
			want: []string{`6:31: credential "c": static: file: DIR/fifo is a named pipe (FIFO), not a regular file; point it at a file holding the credential: credential source not configured`}},
		{name: "file unreadable", creds: "  c: {provider: static, file: DIR/tok}", files: map[string]string{"tok": "v"}, mode: 0o200,
			want: []string{`6:31: credential "c": static: file: DIR/tok cannot be read (permission denied); give the gateway's user permission to read it: credential source not configured`}},
		{name: "fields each problem at its line", creds: "  c:\n    provider: static\n    fields:\n      a: {env: CREDGATE_TEST_SRC_UNSET}\n      b: {env: CREDGATE_TEST_SRC_SET}\n      c: {file: DIR/nope}",
			want: []string{
				`9:16: credential "c": static: fields.a.env: environment variable CREDGATE_TEST_SRC_UNSET is not set or empty in the gateway's environment; export it before starting credgate serve: credential source not configured`,
				`11:17: credential "c": static: fields.c.file: DIR/nope does not exist; create it holding the credential, or correct the path: credential source not configured`,
			}},
		{name: "two credentials", creds: "  c: {provider: static, env: CREDGATE_TEST_SRC_SET}\n  d: {provider: static, env: CREDGATE_TEST_SRC_UNSET}",
			want: []string{`7:30: credential "d": static: env: environment variable CREDGATE_TEST_SRC_UNSET is not set or empty in the gateway's environment; export it before starting credgate serve: credential source not configured`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := gatewayDir(t)
			dir := filepath.Dir(path)
			for name, content := range tt.files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				if tt.mode != 0 {
					if os.Geteuid() == 0 {
						t.Skip("root reads every file")
					}
					if err := os.Chmod(p, tt.mode); err != nil {
						t.Fatal(err)
					}
				}
			}
			if tt.fifo != "" {
				if err := syscall.Mkfifo(filepath.Join(dir, tt.fifo), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			pol := strings.ReplaceAll(strings.Replace(sourcesPolicy, "%s", tt.creds, 1), "DIR", dir)
			polPath := filepath.Join(dir, "policy.yaml")
			if err := os.WriteFile(polPath, []byte(pol), 0o644); err != nil {
				t.Fatal(err)
			}
			r := runCLI(t, "validate", "-c", path)
			if len(tt.want) == 0 {
				if r.code != 0 {
					t.Fatalf("validate: exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
				}
			} else {
				if r.code != exitError {
					t.Fatalf("validate: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
				}
				var want []string
				for _, w := range tt.want {
					want = append(want, polPath+":"+strings.ReplaceAll(w, "DIR", dir))
				}
				if diff := cmp.Diff(want, strings.Split(strings.TrimSpace(r.stdout), "\n")); diff != "" {
					t.Errorf("validate output (-want +got):\n%s", diff)
				}
			}
			// The policy on its own is checked without the environment.
			if r := runCLI(t, "validate", "-c", polPath); r.code != 0 {
				t.Errorf("validate of the policy alone: exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}
