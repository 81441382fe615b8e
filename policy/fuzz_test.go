package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that no input makes Parse panic, that every rejection
// is a non-empty ErrorList of errors each at a line (1 or more), and that an accepted
// policy decides without panicking.
func FuzzParse(f *testing.F) {
	f.Add([]byte(decidePolicy))
	f.Add([]byte(storePolicy(2)))
	f.Add([]byte(brokenPolicy))
	f.Add([]byte("default: deny\n"))
	f.Add([]byte("rules: [\n"))
	f.Add([]byte("a: &a [*a]\nrules: *a\n"))
	f.Add([]byte("destinations:\n  d: {hosts: [\"*.x.test\", \"[::1]\", 10.0.0.1], ports: [443]}\n"))
	f.Add([]byte("workloads:\n\tw: {}\n"))
	f.Add([]byte("destinations:\n  d: {hosts: [d.test], ports: [0443, 0o673, 0x1bb]}\n"))
	f.Add([]byte("rules:\n  - <<: {from: \"*\"}\n    name: \"\xff\x01\"\n"))
	// The shipped examples (policies, the gateway config too: refused,
	// at a position).
	examples, _ := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	for _, name := range examples {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	if files, _ := filepath.Glob(filepath.Join("testdata", "*.yaml")); len(files) > 0 {
		for _, name := range files {
			if data, err := os.ReadFile(name); err == nil {
				f.Add(data)
			}
		}
	}
	queries := []Query{
		connect("w", "d.test", 443),
		connect("", "x.x.test", 443),
		connect("billing", "::1", 443),
		request("w", "GET", "https", "d.test", 443, "/"),
		request("", "POST", "http", "a.b.c", 80, "/v1/x"),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(context.Background(), "fuzz.yaml", data)
		if err != nil {
			var el ErrorList
			if !errors.As(err, &el) || len(el) == 0 {
				t.Fatalf("error %T %v is not a non-empty ErrorList", err, err)
			}
			for _, e := range el {
				if e.Msg == "" || e.Line < 1 || e.Col < 0 || !strings.HasPrefix(e.Error(), "fuzz.yaml:") {
					t.Fatalf("bad error %q", e.Error())
				}
			}
			return
		}
		for _, q := range queries {
			p.Decide(q)
		}
		_ = p.Workloads()
		_ = p.Close()
	})
}
