package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckAuditOutputWording: each refusal of audit.output names the
// path, the cause and the fix; a file that exists, or one that can be
// created, is accepted.
func TestCheckAuditOutputWording(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "audit.log")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want []string // in the error; none for no error
	}{
		{"new file", filepath.Join(root, "new.log"), nil},
		{"existing file", file, nil},
		{"missing directory", filepath.Join(root, "absent", "audit.log"),
			[]string{"audit.output", filepath.Join(root, "absent"), "does not exist", "create it"}},
		{"directory is a file", filepath.Join(file, "audit.log"),
			[]string{"audit.output", file, "is not a directory", "name a file in a directory"}},
		{"file is a directory", root,
			[]string{"audit.output", root, "is a directory", "name a file in it"}},
	}
	for _, tt := range tests {
		for _, rotates := range []bool{false, true} {
			err := checkAuditOutput(tt.path, rotates)
			if tt.want == nil {
				if err != nil {
					t.Errorf("%s: checkAuditOutput(%s, %v): %v", tt.name, tt.path, rotates, err)
				}
				continue
			}
			if err == nil {
				t.Errorf("%s: checkAuditOutput(%s, %v): nil, want an error", tt.name, tt.path, rotates)
				continue
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: checkAuditOutput(%s, %v): %v, want it to say %q", tt.name, tt.path, rotates, err, w)
				}
			}
		}
	}
}
