package helm_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// freeFormMaps are the objects of values.yaml that take keys of the
// user's choosing (labels, annotations, selectors), each a map of strings.
var freeFormMaps = []string{
	"service.annotations", "adminService.annotations", "serviceAccount.annotations",
	"nodeSelector", "podAnnotations", "podLabels",
	"metrics.serviceMonitor.labels", "metrics.grafanaDashboard.labels", "metrics.grafanaDashboard.annotations",
	"metrics.prometheusRule.labels", "metrics.prometheusRule.additionalAlertLabels",
	"networkPolicy.gateway.monitoringNamespaceSelector.matchLabels", "networkPolicy.dns.podLabels",
}

// TestSchemaRefusesUnknownKeys sets an unknown key in every object of
// values.yaml (but the free-form maps) and expects values.schema.json to
// refuse it, naming the key: a typo fails the install instead of being
// ignored (or, in a CRD, pruned silently).
func TestSchemaRefusesUnknownKeys(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	var objects []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				objects = append(objects, prefix+k)
				walk(prefix+k+".", sub)
			}
		}
	}
	walk("", values)
	slices.Sort(objects)
	for _, obj := range objects {
		if slices.Contains(freeFormMaps, obj) {
			continue
		}
		t.Run(obj, func(t *testing.T) {
			t.Parallel()
			_, err := runErr(helmBin, templateArgs("--set-string", obj+".zzTypo=x")...)
			if err == nil || !strings.Contains(err.Error(), "zzTypo") {
				t.Errorf("helm template with %s.zzTypo: %v; want values.schema.json to refuse the unknown key", obj, err)
			}
		})
	}
}
