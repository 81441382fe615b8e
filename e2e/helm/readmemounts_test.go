package helm_test

import (
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestReadmeListsEveryMount checks, over every variant, that each path the
// chart mounts into the gateway's container (but extraVolumeMounts, the
// user's own) has a row in the README's "Files in the pod" table, which
// says where it comes from and whether a change is re-read or needs a
// restart: a Secret or ConfigMap the chart mounts without saying so
// leaves operators guessing whether a rotation took effect.
func TestReadmeListsEveryMount(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	start := strings.Index(text, "### Files in the pod")
	end := strings.Index(text, "### What reloads, what restarts")
	if start < 0 || end < start {
		t.Fatal(`README has no "### Files in the pod" table before "### What reloads, what restarts"`)
	}
	var documented []*regexp.Regexp
	code := regexp.MustCompile("`(/[^`]*)`")
	for _, line := range strings.Split(text[start:end], "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range code.FindAllStringSubmatch(cells[1], -1) {
			// A row documents its path and the directory it is in (the
			// mount of a file's Secret or ConfigMap); <placeholders>
			// stand for one path segment.
			p := strings.TrimSuffix(m[1], "/")
			for _, q := range []string{p, path.Dir(p)} {
				re := regexp.MustCompile(`<[^>]*>`).ReplaceAllString(regexp.QuoteMeta(q), `[^/]+`)
				documented = append(documented, regexp.MustCompile("^"+re+"$"))
			}
		}
	}
	if len(documented) == 0 {
		t.Fatal("no paths in the README's Files in the pod table")
	}
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			objs := parse(t, render(t, v))
			ctr, _ := get(mustFind(t, objs, "Deployment", fullname), "spec.template.spec.containers.[name=credgate]").(map[string]any)
			user := map[string]bool{}
			for _, m := range asList(get(objects(t, v.values), "extraVolumeMounts")) {
				if p, ok := get(m, "mountPath").(string); ok {
					user[p] = true
				}
			}
			for _, m := range asList(ctr["volumeMounts"]) {
				p, _ := get(m, "mountPath").(string)
				// The SPIRE agent's socket directory is where
				// spire.agentSocket.mountPath says (its row names the default).
				if user[p] || get(m, "name") == "spire-agent-socket" {
					continue
				}
				ok := false
				for _, re := range documented {
					if re.MatchString(p) {
						ok = true
						break
					}
				}
				if !ok {
					t.Errorf("the chart mounts %s (volume %v), which the README's Files in the pod table does not list", p, get(m, "name"))
				}
			}
		})
	}
}

// objects parses a variant's values YAML (empty: no values).
func objects(t *testing.T, values string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(values), &m); err != nil {
		t.Fatal(err)
	}
	return m
}
