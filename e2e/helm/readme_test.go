package helm_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// documentedAsWhole are values documented by one README row rather than one
// row per nested key.
var documentedAsWhole = []string{
	"resources", "livenessProbe", "readinessProbe", "startupProbe",
	"networkPolicy.gateway.monitoringNamespaceSelector", "networkPolicy.dns.podLabels",
}

// TestReadmeListsEveryValue checks that the chart README's values table has a
// row for every key in values.yaml.
func TestReadmeListsEveryValue(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			key := prefix + k
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 && !slices.Contains(documentedAsWhole, key) {
				walk(key+".", sub)
				continue
			}
			keys = append(keys, key)
		}
	}
	walk("", values)
	slices.Sort(keys)
	for _, k := range keys {
		if !strings.Contains(string(readme), "| `"+k+"` |") {
			t.Errorf("README.md values table has no row for %s", k)
		}
	}
	// And no row for a value that does not exist (renamed or removed).
	_, table, ok := strings.Cut(string(readme), "\n## Values\n")
	if !ok {
		t.Fatal("README.md has no ## Values section")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	for _, m := range valueRow.FindAllStringSubmatch(table, -1) {
		if !slices.Contains(keys, m[1]) {
			t.Errorf("README.md values table documents %s, which values.yaml does not have", m[1])
		}
	}
}

// valueRow matches the key of a row of the values table.
var valueRow = regexp.MustCompile("(?m)^\\| `([^`]+)` \\|")
