//go:build !windows

package policy

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credgate/credgate/providers"
)

// fileProvider reads its credential from file at fetch time, like a
// static credential's file:, and checks it with providers.CheckSecretFile.
type fileProvider struct {
	testProvider `yaml:",inline"`
	File         string `yaml:"file"`
}

func (p *fileProvider) CheckSources() []providers.SourceProblem {
	return providers.CheckSecretFile("policytest-file", "file", p.File, "the credential")
}

func init() {
	providers.Register(providers.Module{Name: "policytest-file", New: func() providers.Provider { return &fileProvider{} }})
}

// TestSourceWarnings: a credential file of loose mode is a warning of
// CheckSources, at its setting's line, not a problem (SourceProblems has
// none: validate does not fail on it), naming the credential, the setting,
// the file and its mode; a missing file is a problem and no warning.
func TestSourceWarnings(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "cred")
	if err := os.WriteFile(file, []byte("file-content-never-reported\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode  os.FileMode
		file  string
		probs int
		warn  string
	}{
		{0o600, file, 0, ""},
		{0o640, file, 0, ""},
		{0o644, file, 0, `p.yaml:4:40: credential "c": policytest-file: file: ` + file + " has mode 0644 (readable by others)"},
		{0o620, file, 0, `p.yaml:4:40: credential "c": policytest-file: file: ` + file + " has mode 0620 (writable by group)"},
		{0o644, filepath.Join(dir, "missing"), 1, ""},
	} {
		if err := os.Chmod(file, tc.mode); err != nil {
			t.Fatal(err)
		}
		p, err := Parse(context.Background(), "p.yaml", []byte(srcPolicy("  c: {provider: policytest-file, file: "+tc.file+"}\n")))
		if err != nil {
			t.Fatal(err)
		}
		probs, warns := p.CheckSources()
		p.Close()
		if len(probs) != tc.probs || len(p.SourceProblems()) != tc.probs {
			t.Errorf("%04o %s: problems %v, want %d", uint32(tc.mode), tc.file, probs, tc.probs)
		}
		if tc.warn == "" {
			if len(warns) != 0 {
				t.Errorf("%04o %s: warnings %v, want none", uint32(tc.mode), tc.file, warns)
			}
			continue
		}
		if len(warns) != 1 || !strings.HasPrefix(warns[0].Error(), tc.warn) || !errors.Is(warns[0], providers.ErrLooseMode) {
			t.Errorf("%04o: warnings %v, want one starting %q", uint32(tc.mode), warns, tc.warn)
		}
		if strings.Contains(warns.Error(), "file-content-never-reported") {
			t.Errorf("the warning holds the file's content")
		}
	}
}

// TestStoreLogsLooseCredentialFileOncePerLoad: the store logs a
// credential file of loose mode once per load of a policy (at start, at
// each reload), at its position, and LooseSecretFiles counts the policy
// in force's such files; a chmod shows at the next load, and a rejected
// reload leaves the count of the policy still in force.
func TestStoreLogsLooseCredentialFileOncePerLoad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "cred")
	if err := os.WriteFile(file, []byte("file-content-never-logged\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.yaml")
	pol := srcPolicy("  c: {provider: policytest-file, file: " + file + "}\n")
	writeFile(t, path, pol)
	var log syncBuf
	s := newTestStore(t, path, StoreOptions{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	const warn = "credential file readable or writable by others"
	check := func(when string, logs, loose int) {
		t.Helper()
		if n := strings.Count(log.String(), warn); n != logs {
			t.Errorf("%s: %d warnings, want %d:\n%s", when, n, logs, log.String())
		}
		if got := s.LooseSecretFiles(); got != loose {
			t.Errorf("%s: LooseSecretFiles = %d, want %d", when, got, loose)
		}
	}
	check("start", 1, 1)
	if !strings.Contains(log.String(), "at="+path+":4:40") {
		t.Errorf("the warning does not name %s:4:40:\n%s", path, log.String())
	}
	if err := s.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("reload", 2, 1)
	writeFile(t, path, pol+"nonsense: [\n")
	if err := s.Reload(context.Background()); err == nil {
		t.Fatal("a bad policy reloaded")
	}
	check("rejected reload", 2, 1)
	if err := os.Chmod(file, 0o400); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, pol)
	if err := s.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("reload after chmod 0400", 2, 0)
	if strings.Contains(log.String(), "file-content-never-logged") {
		t.Errorf("the log holds the file's content")
	}
}
