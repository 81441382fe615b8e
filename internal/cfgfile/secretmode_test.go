//go:build !windows

package cfgfile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// secretModes are the modes every secret-mode table tries, with whether
// the gateway warns: group-readable (fsGroup, the chart's 0440) is fine,
// readable by others or writable by anyone but the owner is not.
var secretModes = []struct {
	mode os.FileMode
	warn bool
}{
	{0o400, false}, {0o440, false}, {0o600, false}, {0o640, false},
	{0o644, true}, {0o666, true}, {0o604, true}, {0o620, true}, {0o602, true}, {0o444, true},
}

// TestCheckSecretMode is the class "a secret file others may read or
// write is named", over the modes, for a file reached directly and
// through a symbolic-link chain as Kubernetes builds a Secret volume
// (key -> ..data/key, ..data -> ..2026_12_05...): the final file's mode
// is judged, not a link's. The warning names the file, its mode and the
// fix, never the content.
func TestCheckSecretMode(t *testing.T) {
	const content = "s3cr3t-value-never-printed"
	for _, tc := range secretModes {
		for _, linked := range []bool{false, true} {
			dir := t.TempDir()
			file := filepath.Join(dir, "key")
			if linked {
				ts := filepath.Join(dir, "..2026_12_05_00_00_00.000000001")
				if err := os.Mkdir(ts, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(ts, "key"), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(filepath.Join(ts, "key"), tc.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(filepath.Join("..data", "key"), file); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(file, tc.mode); err != nil {
					t.Fatal(err)
				}
			}
			lm, err := CheckSecretMode(file)
			if err != nil {
				t.Fatalf("%04o linked=%v: %v", tc.mode, linked, err)
			}
			if got := lm != nil; got != tc.warn {
				t.Errorf("%04o linked=%v: warning %v, want %v (%v)", tc.mode, linked, got, tc.warn, lm)
				continue
			}
			if lm == nil {
				continue
			}
			msg := lm.String()
			for _, want := range []string{file, fmt.Sprintf("mode %04o", uint32(tc.mode)), "chmod 0400 " + file, "defaultMode"} {
				if !strings.Contains(msg, want) {
					t.Errorf("%04o linked=%v: %q does not say %q", tc.mode, linked, msg, want)
				}
			}
			if strings.Contains(msg, content) {
				t.Errorf("%04o: the warning holds the file's content: %q", tc.mode, msg)
			}
		}
	}
}

// TestLooseness is looseness' owner rule: root and the gateway's own user
// may own a secret, another user may not (it can chmod or rewrite it);
// no owners (Windows, euid -1) judges nothing; and its token rule
// (CheckTokenMode): everything but "readable by others".
func TestLooseness(t *testing.T) {
	for _, tc := range []struct {
		mode      os.FileMode
		uid, euid int
		readOK    bool
		want      string
	}{
		{0o400, 0, 1000, false, ""},
		{0o400, 1000, 1000, false, ""},
		{0o400, 2000, 1000, false, "owned by uid 2000"},
		{0o440, 2000, 0, false, "owned by uid 2000"},
		{0o644, 1000, -1, false, ""},
		{0o622, 1000, 1000, false, "writable by group and others"},
		{0o620, 1000, 1000, false, "writable by group"},
		{0o602, 1000, 1000, false, "writable by others"},
		{0o604, 1000, 1000, false, "readable by others"},
		// CheckTokenMode: a projected token's 0644 is Kubernetes' own;
		// write and owner are judged as for any secret.
		{0o644, 0, 1000, true, ""},
		{0o444, 1000, 1000, true, ""},
		{0o666, 0, 1000, true, "writable by group and others"},
		{0o646, 0, 1000, true, "writable by others"},
		{0o664, 0, 1000, true, "writable by group"},
		{0o644, 2000, 1000, true, "owned by uid 2000"},
		{0o644, 1000, -1, true, ""},
	} {
		got := strings.Join(looseness(tc.mode, tc.uid, tc.euid, tc.readOK), ", ")
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("looseness(%04o, uid %d, euid %d, readOK %v) = %q, want %q", tc.mode, tc.uid, tc.euid, tc.readOK, got, tc.want)
		}
		if tc.readOK && strings.Contains(got, "readable") {
			t.Errorf("looseness(%04o, readOK) = %q: judged a token's read bit", tc.mode, got)
		}
	}
}
