package cli

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/gateway"
	"github.com/credgate/credgate/policy"
)

// docsPolicyKeys are the top-level keys of a policy: those that tell
// validate it is one (policyKeys), and those it may also have.
var docsPolicyKeys = append(slices.Clone(policyKeys), "mode", "placeholders")

// docsExampleExpected are the problems a documented example has on
// purpose, by what the message says.
var docsExampleExpected = []string{
	// identity.verifiers shows a third-party plugin that this build has
	// not compiled in.
	`no verifier plugin "build-attestation" is compiled in`,
}

var yamlBlockRE = regexp.MustCompile("(?ms)^```ya?ml[^\\n]*\\n(.*?)^```")

// TestDocsExamples is the class test of "an example in the documentation
// that the gateway refuses": every ```yaml block of README.md and docs/
// whose top-level keys are those of a policy or of a gateway config is
// loaded as validate loads it. Most blocks show one part (a rule, a
// credential, cache.redis); the rest is filled in before loading: a
// workload, destination or credential a rule names but the block does not
// define (taken from another block of the same page when one defines it,
// else a stand-in), default: deny, and for a config the policy and ca
// keys, and an encryption key for cache.redis. Files the examples name are
// not read (the paths are the reader's). A block that is not a YAML
// mapping of such keys (a Kubernetes manifest, an inject: block alone,
// one that continues an earlier block through an alias) is not checked.
func TestDocsExamples(t *testing.T) {
	pages := []string{filepath.Join("..", "README.md")}
	err := filepath.WalkDir(filepath.Join("..", "docs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".md") {
			pages = append(pages, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// The examples leave Vault's address to VAULT_ADDR, as providers.md
	// allows.
	t.Setenv("VAULT_ADDR", "https://vault.docs.test:8200")
	checked := 0
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		doc := string(b)
		type block struct {
			line int
			m    map[string]any
		}
		var blocks []block
		pageCreds := map[string]any{}
		for _, loc := range yamlBlockRE.FindAllStringSubmatchIndex(doc, -1) {
			var m map[string]any
			if yaml.Unmarshal([]byte(doc[loc[2]:loc[3]]), &m) != nil || len(m) == 0 {
				continue
			}
			blocks = append(blocks, block{line: strings.Count(doc[:loc[0]], "\n") + 1, m: m})
			if cs, ok := m["credentials"].(map[string]any); ok {
				for k, v := range cs {
					pageCreds[k] = v
				}
			}
		}
		for _, bl := range blocks {
			name := fmt.Sprintf("%s:%d", strings.TrimPrefix(page, "../"), bl.line)
			var err error
			var filled []byte
			switch {
			case onlyKeys(bl.m, docsPolicyKeys):
				filled, err = loadDocsPolicy(t, bl.m, pageCreds)
			case onlyKeys(bl.m, configKeys):
				filled, err = loadDocsConfig(t, bl.m)
			default:
				continue
			}
			checked++
			if err == nil {
				continue
			}
			for _, l := range strings.Split(err.Error(), "\n") {
				if !slices.ContainsFunc(docsExampleExpected, func(e string) bool { return strings.Contains(l, e) }) {
					t.Errorf("%s: the example is refused: %s\n(as filled in:\n%s)", name, l, filled)
				}
			}
		}
	}
	if checked < 40 {
		t.Errorf("checked %d examples; the block format changed?", checked)
	}
	t.Logf("checked %d examples", checked)
}

func onlyKeys(m map[string]any, keys []string) bool {
	for k := range m {
		if !slices.Contains(keys, k) {
			return false
		}
	}
	return true
}

// loadDocsPolicy fills in what a policy example leaves out and parses it;
// it returns the policy as filled in and the problems, one per line.
func loadDocsPolicy(t *testing.T, m map[string]any, pageCreds map[string]any) ([]byte, error) {
	t.Helper()
	section := func(k string) map[string]any {
		s, _ := m[k].(map[string]any)
		if s == nil {
			s = map[string]any{}
			m[k] = s
		}
		return s
	}
	workloads, dests, creds := section("workloads"), section("destinations"), section("credentials")
	if _, ok := m["default"]; !ok {
		m["default"] = "deny"
	}
	rules, _ := m["rules"].([]any)
	if len(rules) == 0 {
		dests["docs-example"] = map[string]any{"hosts": []any{"docs-example.test"}}
		m["rules"] = []any{map[string]any{"name": "docs-example", "from": "*", "to": "docs-example", "action": "deny"}}
	}
	names := func(v any) []string {
		switch v := v.(type) {
		case string:
			return []string{v}
		case []any:
			var out []string
			for _, x := range v {
				if s, ok := x.(string); ok {
					out = append(out, s)
				}
			}
			return out
		}
		return nil
	}
	for _, r := range rules {
		r, _ := r.(map[string]any)
		for _, w := range names(r["from"]) {
			if _, ok := workloads[w]; !ok && w != "*" && w != "anonymous" {
				workloads[w] = map[string]any{"cidrs": []any{"10.0.0.0/8"}}
			}
		}
		for _, d := range names(r["to"]) {
			if _, ok := dests[d]; !ok {
				dests[d] = map[string]any{"hosts": []any{"api.example.com"}}
			}
		}
		if inj, ok := r["inject"].(map[string]any); ok {
			for _, c := range names(inj["credential"]) {
				if _, ok := creds[c]; !ok {
					creds[c] = map[string]any{"provider": "static", "env": "CREDGATE_DOCS_EXAMPLE"}
				}
			}
		}
	}
	// Credentials a credential reads (a key in Vault for a signing
	// provider: "key: {credential: NAME}") are often defined in another
	// block of the page, or only named.
	for k, v := range pageCreds {
		if _, ok := creds[k]; !ok {
			creds[k] = v
		}
	}
	var reads func(v any)
	reads = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if c, ok := v["credential"].(string); ok {
				if _, ok := creds[c]; !ok {
					creds[c] = map[string]any{"provider": "static", "env": "CREDGATE_DOCS_EXAMPLE"}
				}
			}
			for _, x := range v {
				reads(x)
			}
		case []any:
			for _, x := range v {
				reads(x)
			}
		}
	}
	for _, c := range slices.Collect(maps.Values(creds)) {
		reads(c)
	}
	data, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse(context.Background(), "example.yaml", data)
	if err == nil {
		p.Close()
	}
	return data, err
}

// loadDocsConfig fills in what a gateway config example leaves out and
// parses it (files are not read).
func loadDocsConfig(t *testing.T, m map[string]any) ([]byte, error) {
	t.Helper()
	if _, ok := m["policy"]; !ok {
		m["policy"] = "policy.yaml"
	}
	if _, ok := m["ca"]; !ok {
		m["ca"] = map[string]any{"cert": "ca.pem", "key": "ca-key.pem"}
	}
	if c, ok := m["cache"].(map[string]any); ok {
		if r, ok := c["redis"].(map[string]any); ok && r["addrs"] != nil && r["encryption_keys"] == nil {
			r["encryption_keys"] = []any{map[string]any{"id": "docs", "env": "CREDGATE_DOCS_EXAMPLE"}}
		}
	}
	data, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	_, err = gateway.ParseConfig(filepath.Join(t.TempDir(), "credgate.yaml"), data)
	return data, err
}
