package killswitch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckStateDirWording: each refusal of the state file's directory
// names the directory, the cause and the fix.
func TestCheckStateDirWording(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want []string // in the error; none for no error
	}{
		{"good", filepath.Join(root, "state.json"), nil},
		{"missing directory", filepath.Join(root, "absent", "state.json"),
			[]string{filepath.Join(root, "absent"), "does not exist", "create it"}},
		// readStateFile's open refuses it first, in the OS's words.
		{"directory is a file", filepath.Join(file, "state.json"),
			[]string{file, "not a directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckStateFile(tt.path)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("CheckStateFile(%s): %v", tt.path, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckStateFile(%s): nil, want an error", tt.path)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("CheckStateFile(%s): %v, want it to say %q", tt.path, err, w)
				}
			}
		})
	}
}
