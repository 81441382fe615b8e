//go:build !windows

package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestValidateWarnsOnLooseSecretMode: credgate validate prints a warning
// at the key of each secret file others may read or the group or others
// may write ("FILE:LINE:COL: warning: KEY: ... chmod 0400 ..."), exits 0
// (serve reads the file anyway), and prints no warning for the modes a
// Secret volume with fsGroup gives (0440, 0640) or 0400/0600. Identity's
// token files (a jwt issuer's and the posture feed's bearer_token_file,
// the kubernetes factor's token_file) are warned of only when the group
// or others may write them: 0644 and 0444 print nothing. No file's
// content is in the output.
func TestValidateWarnsOnLooseSecretMode(t *testing.T) {
	setEnv(t)
	good := filesContent(t)
	secrets := []struct {
		file  string
		keys  []string
		token bool // identity's service-account token: write and owner only
	}{
		{"ca/ca-key.pem", []string{"ca", "key"}, false},
		{"tls-key.pem", []string{"tls", "key"}, false},
		{"admin.token", []string{"admin", "token_file"}, false},
		{"admin-tls-key.pem", []string{"admin", "tls", "key"}, false},
		{"checkpoint.key", []string{"audit", "checkpoint", "key_file"}, false},
		{"fp.key", []string{"audit", "fingerprint_key_file"}, false},
		{"run.key", []string{"run_tokens", "key_file"}, false},
		{"jwks.bearer", []string{"identity", "jwt", "issuers", "0", "bearer_token_file"}, true},
		{"sa.token", []string{"identity", "kubernetes", "token_file"}, true},
		{"posture.bearer", []string{"identity", "posture", "bearer_token_file"}, true},
	}
	dir := t.TempDir()
	good["jwks.bearer"] = []byte("jwks-bearer-token-content\n")
	good["sa.token"] = []byte("service-account-token-content\n")
	good["posture.bearer"] = []byte("posture-bearer-token-content\n")
	for name, b := range good {
		writeFile(t, filepath.Join(dir, name), b)
	}
	// The token files are each 0644 as Kubernetes mounts them: no warning.
	for _, name := range []string{"jwks.bearer", "sa.token", "posture.bearer"} {
		if err := os.Chmod(filepath.Join(dir, name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var cfg []string
	for _, s := range filesConfig {
		cfg = append(cfg, s.yaml)
	}
	// Identity fetches nothing in validate: the URLs are never dialled.
	cfg = append(cfg, `identity:
  jwt:
    issuers:
      - issuer: https://issuer.test
        audiences: [credgate]
        jwks_url: https://127.0.0.1:1/jwks
        bearer_token_file: jwks.bearer
  kubernetes:
    api_server: https://127.0.0.1:1
    audiences: [credgate]
    token_file: sa.token
  posture:
    url: https://127.0.0.1:1/posture
    bearer_token_file: posture.bearer`)
	text := strings.Join(cfg, "\n") + "\n"
	path := filepath.Join(dir, "credgate.yaml")
	writeFile(t, path, []byte(text))

	for _, s := range secrets {
		type modeCase struct {
			mode os.FileMode
			warn bool
		}
		cases, restore := []modeCase{{0o400, false}, {0o440, false}, {0o600, false}, {0o640, false}, {0o644, true}, {0o666, true}, {0o604, true}}, os.FileMode(0o600)
		if s.token {
			cases, restore = []modeCase{{0o400, false}, {0o644, false}, {0o444, false}, {0o664, true}, {0o646, true}, {0o666, true}}, 0o644
		}
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/%04o", s.file, uint32(tc.mode)), func(t *testing.T) {
				file := filepath.Join(dir, s.file)
				if err := os.Chmod(file, tc.mode); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = os.Chmod(file, restore) })
				v := runCLI(t, "validate", "-c", path)
				if v.code != 0 {
					t.Fatalf("validate: exit %d, want 0:\n%s%s", v.code, v.stdout, v.stderr)
				}
				out := v.stdout + v.stderr
				warnings := strings.Count(out, ": warning: ")
				if !tc.warn {
					if warnings != 0 {
						t.Fatalf("validate warned:\n%s", out)
					}
					return
				}
				line, col := valueAt(t, text, s.keys...)
				want := path + ":" + strconv.Itoa(line) + ":" + strconv.Itoa(col) + ": warning: " + dottedKey(s.keys) + ": " + file + " has mode " + fmt.Sprintf("%04o", uint32(tc.mode))
				if warnings != 1 || !strings.Contains(out, want) || !strings.Contains(out, "chmod 0400 "+file) || !strings.Contains(out, "defaultMode") {
					t.Fatalf("validate output:\n%s\nwant one warning starting %q, with the fix", out, want)
				}
				if secret := strings.TrimSpace(string(good[s.file])); strings.Contains(out, secret) {
					t.Errorf("validate printed the content of %s", s.file)
				}
			})
		}
	}
}

// TestValidateWarnsOnLooseCredentialFile: validate on a gateway config
// judges the policy's credential files as the config's secret files are
// judged, printing "POLICY:LINE:COL: warning: credential "C": PROVIDER:
// SETTING: FILE has mode MODE (...); ... chmod 0400 FILE ... defaultMode"
// at each file's setting and exiting 0: a static file:, a static field's
// file, a Vault token file (method token) are secrets; a Vault
// kubernetes login's token_file is a service-account token, warned of
// only when the group or others may write it. With a credential whose
// source is missing, validate fails (exit 1) and still prints the
// warnings. No file's content is printed.
func TestValidateWarnsOnLooseCredentialFile(t *testing.T) {
	const creds = `  c:
    provider: static
    file: DIR/static.cred
  f:
    provider: static
    fields:
      api_key: {file: DIR/field.cred}
  v:
    provider: vault
    server: {address: "https://vault.test:8200", auth: {method: token, token_file: DIR/vault.token}}
    path: secret/data/x
    field: y
  k:
    provider: vault
    server: {address: "https://vault.test:8200", auth: {method: kubernetes, role: credgate, token_file: DIR/sa.token}}
    path: secret/data/x
    field: y`
	files := []struct {
		name, setting, cred string
		token               bool // a service-account token: write and owner only
	}{
		{"static.cred", "static: file", "c", false},
		{"field.cred", "static: fields.api_key.file", "f", false},
		{"vault.token", "vault: server.auth.token_file", "v", false},
		{"sa.token", "vault: server.auth.token_file", "k", true},
	}
	for _, tc := range []struct {
		mode    os.FileMode
		missing bool // a credential whose env: is unset too
	}{{0o600, false}, {0o640, false}, {0o440, false}, {0o644, false}, {0o666, false}, {0o620, false}, {0o644, true}} {
		t.Run(fmt.Sprintf("%04o/missing=%v", uint32(tc.mode), tc.missing), func(t *testing.T) {
			path := gatewayDir(t)
			dir := filepath.Dir(path)
			for _, f := range files {
				p := filepath.Join(dir, f.name)
				writeFile(t, p, []byte("content-never-printed-"+f.name+"\n"))
				if err := os.Chmod(p, tc.mode); err != nil {
					t.Fatal(err)
				}
			}
			c := creds
			if tc.missing {
				os.Unsetenv("CREDGATE_TEST_LOOSE_UNSET")
				c += "\n  m: {provider: static, env: CREDGATE_TEST_LOOSE_UNSET}"
			}
			pol := strings.ReplaceAll(strings.Replace(sourcesPolicy, "%s", c, 1), "DIR", dir)
			polPath := filepath.Join(dir, "policy.yaml")
			writeFile(t, polPath, []byte(pol))
			r := runCLI(t, "validate", "-c", path)
			out := r.stdout + r.stderr
			wantCode := 0
			if tc.missing {
				wantCode = exitError
			}
			if r.code != wantCode {
				t.Fatalf("validate: exit %d, want %d\n%s", r.code, wantCode, out)
			}
			secretWarns := tc.mode&0o026 != 0
			tokenWarns := tc.mode&0o022 != 0
			var want int
			for _, f := range files {
				file := filepath.Join(dir, f.name)
				warns := secretWarns
				if f.token {
					warns = tokenWarns
				}
				line, col := 0, 0
				for i, l := range strings.Split(pol, "\n") {
					if j := strings.Index(l, file); j >= 0 {
						line, col = i+1, j+1
					}
				}
				w := fmt.Sprintf("%s:%d:%d: warning: credential %q: %s: %s has mode %04o", polPath, line, col, f.cred, f.setting, file, uint32(tc.mode))
				if got := strings.Contains(out, w); got != warns {
					t.Errorf("%s: warning %q printed %v, want %v:\n%s", f.name, w, got, warns, out)
				}
				if warns {
					want++
					if !strings.Contains(out, "chmod 0400 "+file) {
						t.Errorf("%s: the fix is not printed:\n%s", f.name, out)
					}
				}
				if strings.Contains(out, "content-never-printed-") {
					t.Errorf("validate printed a file's content:\n%s", out)
				}
			}
			if got := strings.Count(out, ": warning: "); got != want {
				t.Errorf("%d warnings, want %d:\n%s", got, want, out)
			}
			if tc.missing && !strings.Contains(out, "CREDGATE_TEST_LOOSE_UNSET is not set") {
				t.Errorf("the missing variable is not reported:\n%s", out)
			}
		})
	}
}
