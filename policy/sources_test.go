package policy

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/credgate/credgate/providers"
)

// srcProvider reads its value from the variable env and its sub-mapping's
// variable at fetch time, like a static credential.
type srcProvider struct {
	testProvider `yaml:",inline"`
	Env          string `yaml:"env"`
	Sub          struct {
		Env string `yaml:"env"`
	} `yaml:"sub"`
}

func (p *srcProvider) CheckSources() []providers.SourceProblem {
	var out []providers.SourceProblem
	if err := providers.CheckEnv("env", p.Env); err != nil {
		out = append(out, providers.SourceProblem{Setting: "env", Err: err})
	}
	if p.Sub.Env != "" {
		if err := providers.CheckEnv("sub.env", p.Sub.Env); err != nil {
			out = append(out, providers.SourceProblem{Setting: "sub.env", Err: err})
		}
	}
	if p.Value == "default" { // a setting with no line of its own
		out = append(out, providers.SourceProblem{Setting: "nowhere", Err: providers.ErrNotConfigured})
	}
	return out
}

func init() {
	providers.Register(providers.Module{Name: "policytest-src", New: func() providers.Provider { return &srcProvider{} }})
}

func srcPolicy(creds string) string {
	return "destinations:\n  d: {hosts: [d.test]}\ncredentials:\n" + creds +
		"rules:\n  - {name: r, from: \"*\", to: d, inject: {credential: c, as: policytest-inj}}\ndefault: deny\n"
}

// TestSourceProblems: each source a credential cannot read is reported at
// its setting's line (or the credential's name), sorted, and the policy
// still parses.
func TestSourceProblems(t *testing.T) {
	t.Setenv("POLICYTEST_SRC_SET", "x")
	os.Unsetenv("POLICYTEST_SRC_UNSET")
	tests := []struct {
		name, creds string
		want        []string
	}{
		{"set", "  c: {provider: policytest-src, env: POLICYTEST_SRC_SET}\n", nil},
		{"no checker", "  c: {provider: policytest, value: x}\n", nil},
		{"unset", "  c: {provider: policytest-src, env: POLICYTEST_SRC_UNSET}\n",
			[]string{`p.yaml:4:38: credential "c": env: environment variable POLICYTEST_SRC_UNSET is not set or empty`}},
		{"nested and sorted", "  e:\n    provider: policytest-src\n    env: POLICYTEST_SRC_UNSET\n  c:\n    provider: policytest-src\n    env: POLICYTEST_SRC_SET\n    sub: {env: POLICYTEST_SRC_UNSET}\n",
			[]string{
				`p.yaml:6:10: credential "e": env: environment variable POLICYTEST_SRC_UNSET is not set or empty`,
				`p.yaml:10:16: credential "c": sub.env: environment variable POLICYTEST_SRC_UNSET is not set or empty`,
			}},
		{"no line of its own", "  c: {provider: policytest-src, env: POLICYTEST_SRC_SET, value: default}\n",
			[]string{`p.yaml:4:3: credential "c": credential source not configured`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(context.Background(), "p.yaml", []byte(srcPolicy(tt.creds)))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			var got []string
			for _, e := range p.SourceProblems() {
				got = append(got, e.Error())
			}
			if len(got) != len(tt.want) {
				t.Fatalf("SourceProblems = %q, want %q", got, tt.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("problem %d = %q, want it to start with %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// syncBuf is a bytes.Buffer safe for a logger and a test.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStoreWarnsSourceProblems: a policy whose credential cannot read its
// source is put in force (at start and on reload) and logged as a warning
// naming the position; once the source is there, a reload logs nothing.
func TestStoreWarnsSourceProblems(t *testing.T) {
	os.Unsetenv("POLICYTEST_SRC_LATER")
	path := filepath.Join(t.TempDir(), "policy.yaml")
	pol := srcPolicy("  c: {provider: policytest-src, env: POLICYTEST_SRC_LATER}\n")
	writeFile(t, path, pol)
	var log syncBuf
	s := newTestStore(t, path, StoreOptions{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	const warn = "credential source not available"
	if n := strings.Count(log.String(), warn); n != 1 {
		t.Fatalf("start: %d warnings, want 1:\n%s", n, log.String())
	}
	if !strings.Contains(log.String(), "at="+path+":4:38") {
		t.Errorf("start: the warning does not name %s:4:38:\n%s", path, log.String())
	}
	if err := s.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(log.String(), warn); n != 2 {
		t.Fatalf("reload: %d warnings, want 2:\n%s", n, log.String())
	}
	t.Setenv("POLICYTEST_SRC_LATER", "x")
	if err := s.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(log.String(), warn); n != 2 {
		t.Fatalf("reload with the variable set: %d warnings, want still 2:\n%s", n, log.String())
	}
}
