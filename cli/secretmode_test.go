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
// Secret volume with fsGroup gives (0440, 0640) or 0400/0600. No file's
// content is in the output.
func TestValidateWarnsOnLooseSecretMode(t *testing.T) {
	setEnv(t)
	good := filesContent(t)
	secrets := []struct {
		file string
		keys []string
	}{
		{"ca/ca-key.pem", []string{"ca", "key"}},
		{"tls-key.pem", []string{"tls", "key"}},
		{"admin.token", []string{"admin", "token_file"}},
		{"admin-tls-key.pem", []string{"admin", "tls", "key"}},
		{"checkpoint.key", []string{"audit", "checkpoint", "key_file"}},
		{"fp.key", []string{"audit", "fingerprint_key_file"}},
		{"run.key", []string{"run_tokens", "key_file"}},
	}
	dir := t.TempDir()
	for name, b := range good {
		writeFile(t, filepath.Join(dir, name), b)
	}
	var cfg []string
	for _, s := range filesConfig {
		cfg = append(cfg, s.yaml)
	}
	text := strings.Join(cfg, "\n") + "\n"
	path := filepath.Join(dir, "credgate.yaml")
	writeFile(t, path, []byte(text))

	for _, s := range secrets {
		for _, tc := range []struct {
			mode os.FileMode
			warn bool
		}{{0o400, false}, {0o440, false}, {0o600, false}, {0o640, false}, {0o644, true}, {0o666, true}, {0o604, true}} {
			t.Run(fmt.Sprintf("%s/%04o", s.file, uint32(tc.mode)), func(t *testing.T) {
				file := filepath.Join(dir, s.file)
				if err := os.Chmod(file, tc.mode); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = os.Chmod(file, 0o600) })
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
