package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// recorder records the durable-write calls in order, around the real ones.
func recorder(log *[]string, failRename error) ops {
	return ops{
		syncFile: func(f *os.File) error { *log = append(*log, "sync "+filepath.Base(f.Name())); return f.Sync() },
		rename: func(o, n string) error {
			*log = append(*log, "rename "+filepath.Base(o)+" "+filepath.Base(n))
			if failRename != nil {
				return failRename
			}
			return os.Rename(o, n)
		},
		syncDir: func(d string) error { *log = append(*log, "syncdir "+d); return SyncDir(d) },
	}
}

// TestWrite: the content and mode are in place, the temporary file was
// synced before the rename and the directory after it, and nothing else
// is left in the directory; a failed write leaves the old file and no
// temporary one.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for i, data := range []string{"first\n", "second, longer\n"} {
		var log []string
		if err := write(recorder(&log, nil), path, []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != data {
			t.Fatalf("write %d: %q %v", i, b, err)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
			t.Errorf("write %d: mode %v, want 0640", i, fi.Mode().Perm())
		}
		if len(log) != 3 || !strings.HasPrefix(log[0], "sync state.json.") || !strings.HasPrefix(log[1], "rename state.json.") ||
			!strings.HasSuffix(log[1], " state.json") || log[2] != "syncdir "+dir {
			t.Errorf("write %d: calls %q, want sync the temporary file, rename it, sync the directory", i, log)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Errorf("write %d: %d entries in the directory, want 1 (a temporary file left?)", i, len(ents))
		}
	}

	var log []string
	boom := errors.New("injected rename failure")
	if err := write(recorder(&log, boom), path, []byte("third\n"), 0o600); !errors.Is(err, boom) || !strings.Contains(err.Error(), path) {
		t.Errorf("failed rename: %v, want it wrapped with the path", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "second, longer\n" {
		t.Errorf("a failed write changed the file: %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("a failed write left %d entries, want 1", len(ents))
	}

	if err := Write(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing directory: %v, want fs.ErrNotExist", err)
	}
}

// TestRename: the directories of both names are synced after the rename.
func TestRename(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(a, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var log []string
	if err := rename(recorder(&log, nil), filepath.Join(a, "f"), filepath.Join(b, "g")); err != nil {
		t.Fatal(err)
	}
	want := []string{"rename f g", "syncdir " + b, "syncdir " + a}
	if strings.Join(log, "|") != strings.Join(want, "|") {
		t.Errorf("calls %q, want %q", log, want)
	}
	if err := Rename(filepath.Join(a, "nope"), filepath.Join(a, "x")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("renaming a missing file: %v", err)
	}
	if err := SyncDir(filepath.Join(a, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("SyncDir of a missing directory: %v", err)
	}
}

// TestNoRenameOutsideAtomicfile is the class test: no Go file of the
// repository but this package's renames a file or makes a temporary one
// to rename (os.Rename, os.CreateTemp, syscall or x/sys renames): a
// rename not followed by a sync of its directory may be undone by a
// crash. Tests are exempt: they rename to play another writer.
func TestNoRenameOutsideAtomicfile(t *testing.T) {
	re := regexp.MustCompile(`\bos\.(Rename|CreateTemp)\(|\b(syscall|unix)\.Rename(at2?)?\(`)
	root := filepath.Join("..", "..")
	self := filepath.Join(root, "internal", "atomicfile")
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "testdata":
				return filepath.SkipDir
			}
			if path == self {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		n++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if re.MatchString(line) {
				t.Errorf("%s:%d: %s: use atomicfile.Write or atomicfile.Rename (they sync the file and its directory)", path, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 100 {
		t.Fatalf("scanned %d Go files; the walk did not reach the repository", n)
	}
}
