package helm_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// secretishName matches a values key that sounds like it holds secret
// material (a password, token, key, credential).
var secretishName = regexp.MustCompile(`(?i)(password|passwd|token|secret|apikey|api_key|privatekey|private_key|credential|accesskey|access_key)s?$`)

// secretishValues are the values.schema.json paths secretishName matches,
// each with why it holds no secret: the chart takes Secrets by reference
// (a Secret's name and key, mounted as a file of mode 0440), never their
// content, so no secret value can reach a ConfigMap, an annotation, a
// label, the environment or NOTES.txt from the chart's values. A new
// value named like a secret fails TestValuesTakeNoSecrets until it is
// listed here with its reason.
var secretishValues = map[string]string{
	"/admin/tls/existingSecret":                   "a Secret's name",
	"/admin/tokenSecret":                          "{name, key} of a Secret, mounted as a file",
	"/ca/existingSecret":                          "a Secret's name",
	"/tls/existingSecret":                         "a Secret's name",
	"/config/audit/checkpoint/keySecret":          "{name, key} of a Secret, mounted as a file",
	"/config/audit/fingerprintKeySecret":          "{name, key} of a Secret, mounted as a file",
	"/config/runTokens/keySecret":                 "{name, key} of a Secret, mounted as a file",
	"/redis/passwordSecret":                       "{name, key} of a Secret, mounted as a file",
	"/imagePullSecrets":                           "names of docker-registry Secrets",
	"/serviceAccountToken":                        "settings of the projected token (audience, lifetime, path)",
	"/config/runTokens":                           "settings of the run tokens the gateway issues; their signing key is keySecret",
	"/metrics/serviceMonitor/tlsConfig/keySecret": "a ServiceMonitor's reference to a Secret key (prometheus-operator reads it)",
}

// TestValuesTakeNoSecrets walks values.schema.json: every key named like
// a secret is a reference (secretishValues says why), and the objects
// that reference Secrets take a name and a key, nothing that could hold
// the value itself.
func TestValuesTakeNoSecrets(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	defs, _ := schema["definitions"].(map[string]any)
	found := map[string]map[string]any{}
	var walk func(n any, path string, depth int)
	walk = func(n any, path string, depth int) {
		m, ok := n.(map[string]any)
		if !ok || depth > 40 {
			return
		}
		if ref, ok := m["$ref"].(string); ok {
			walk(defs[strings.TrimPrefix(ref, "#/definitions/")], path, depth+1)
		}
		props, _ := m["properties"].(map[string]any)
		for k, v := range props {
			p := path + "/" + k
			if secretishName.MatchString(k) {
				vm, _ := v.(map[string]any)
				found[p] = vm
			}
			walk(v, p, depth+1)
		}
		for _, k := range []string{"items", "additionalProperties"} {
			walk(m[k], path+"/"+k, depth+1)
		}
		for _, k := range []string{"oneOf", "anyOf", "allOf"} {
			list, _ := m[k].([]any)
			for _, e := range list {
				walk(e, path, depth+1)
			}
		}
	}
	walk(schema, "", 0)
	var paths []string
	for p := range found {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if _, ok := secretishValues[p]; !ok {
			t.Errorf("values %s is named like a secret: take a Secret by reference ({name, key}, mounted as a file of mode 0440) and list it in secretishValues with why it holds no secret", p)
		}
	}
	for p := range secretishValues {
		if _, ok := found[p]; !ok {
			t.Errorf("secretishValues lists %s, which values.schema.json no longer has", p)
		}
	}
	// A reference object ({name, key} in secretishValues) takes a name
	// and a key, and nothing that could be the value
	// (additionalProperties: false).
	for _, p := range paths {
		s := found[p]
		if ref, ok := s["$ref"].(string); ok {
			s, _ = defs[strings.TrimPrefix(ref, "#/definitions/")].(map[string]any)
		}
		if !strings.HasPrefix(secretishValues[p], "{name, key}") {
			continue
		}
		if s["additionalProperties"] != false {
			t.Errorf("values %s: a Secret reference must refuse other keys (additionalProperties: false), or a value could be set inline", p)
		}
		props, _ := s["properties"].(map[string]any)
		for k := range props {
			if !slices.Contains([]string{"name", "key", "optional"}, k) {
				t.Errorf("values %s takes %q; a Secret reference takes name and key only", p, k)
			}
		}
	}
}

// TestNoSecretInManifests renders every variant and NOTES.txt and looks
// for the secret values the pod's Secrets hold in the tests (fixtures)
// and for private keys: the chart never reads a Secret's content, so none
// may appear — not in a ConfigMap, an annotation, a label, an env value
// or the notes — and it renders no Secret of its own.
func TestNoSecretInManifests(t *testing.T) {
	var needles []string
	for _, data := range fixtures(t).secrets {
		for k, v := range data {
			if k == "tls.crt" || len(v) < 16 {
				continue // certificates are public; a tenant id ("egress") is no secret
			}
			needles = append(needles, strings.TrimSpace(v))
		}
	}
	needles = append(needles, "PRIVATE KEY")
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			out := string(render(t, v))
			notes := renderNotes(t, valuesArgs(t, v)...)
			for _, n := range needles {
				if strings.Contains(out, n) || strings.Contains(notes, n) {
					t.Errorf("a secret value (%.12s...) is in the rendered chart or NOTES.txt", n)
				}
			}
			for _, o := range parse(t, []byte(out)) {
				if o.kind() == "Secret" {
					t.Errorf("the chart renders Secret %s: it takes Secrets by reference only", o.name())
				}
			}
		})
	}
}
