// Command k8sschema generates Kubernetes JSON schemas for kubeconform offline,
// from the OpenAPI v2 document (api/openapi-spec/swagger.json) that ships in
// the k8s.io/kubernetes module, so that CI can validate the Helm chart without
// fetching schemas from the internet.
//
// It writes one file per group/version/kind in the layout kubeconform's
// default schema-location template expects:
//
//	OUT/v<VERSION>-standalone-strict/<kind>-<group>-<version>.json
//
// (lower case; the group is its first DNS label, the core group is omitted:
// deployment-apps-v1.json, configmap-v1.json, networkpolicy-networking-v1.json).
// "standalone" means every $ref is inlined (a recursive reference becomes the
// empty schema, which accepts anything); "strict" means every object schema
// that lists properties gets additionalProperties: false. As in the community
// kubernetes-json-schema sets, int-or-string accepts a string or an integer,
// a resource.Quantity a string or a number, and scalar fields may be null.
//
// Usage:
//
//	go run ./scripts/k8sschema -swagger PATH/swagger.json -version 1.34.4 -out ~/.cache/credgate/k8s-schemas
//
// A run is skipped when OUT/v<VERSION>-standalone-strict/.complete exists.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/credgate/credgate/internal/atomicfile"
)

const (
	intOrString = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
	quantity    = "io.k8s.apimachinery.pkg.api.resource.Quantity"
	refPrefix   = "#/definitions/"
	doneMarker  = ".complete"
)

func main() {
	swagger := flag.String("swagger", "", "path to the Kubernetes swagger.json (OpenAPI v2)")
	version := flag.String("version", "", "Kubernetes version, e.g. 1.34.4 (without the leading v)")
	out := flag.String("out", "", "output directory (the kubeconform -schema-location root)")
	force := flag.Bool("force", false, "regenerate even if the output is complete")
	flag.Parse()
	if *swagger == "" || *version == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "k8sschema: -swagger, -version and -out are required")
		os.Exit(2)
	}
	n, err := run(*swagger, strings.TrimPrefix(*version, "v"), *out, *force)
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8sschema:", err)
		os.Exit(1)
	}
	if n >= 0 {
		fmt.Printf("k8sschema: wrote %d schemas\n", n)
	}
}

// run generates the schemas and returns how many it wrote, or -1 when the
// output was already complete.
func run(swaggerPath, version, out string, force bool) (int, error) {
	dir := filepath.Join(out, "v"+version+"-standalone-strict")
	if !force {
		if _, err := os.Stat(filepath.Join(dir, doneMarker)); err == nil {
			return -1, nil
		}
	}
	raw, err := os.ReadFile(swaggerPath)
	if err != nil {
		return 0, fmt.Errorf("read swagger: %w", err)
	}
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return 0, fmt.Errorf("parse swagger %s: %w", swaggerPath, err)
	}
	if len(doc.Definitions) == 0 {
		return 0, errors.New("parse swagger: no definitions")
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return 0, fmt.Errorf("clean %s: %w", tmp, err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return 0, fmt.Errorf("create %s: %w", tmp, err)
	}
	names := make([]string, 0, len(doc.Definitions))
	for name := range doc.Definitions {
		names = append(names, name)
	}
	sort.Strings(names)
	g := &generator{defs: doc.Definitions}
	written := 0
	for _, name := range names {
		def := doc.Definitions[name]
		for _, gvk := range groupVersionKinds(def) {
			file := filepath.Join(tmp, fileName(gvk))
			if _, err := os.Stat(file); err == nil {
				continue // first definition (sorted) wins, e.g. for DeleteOptions
			}
			schema, ok := g.expand(def, map[string]bool{name: true}).(map[string]any)
			if !ok {
				return 0, fmt.Errorf("definition %s is not an object", name)
			}
			pinKind(schema, gvk)
			b, err := json.MarshalIndent(schema, "", "  ")
			if err != nil {
				return 0, fmt.Errorf("encode %s: %w", name, err)
			}
			if err := os.WriteFile(file, b, 0o644); err != nil {
				return 0, fmt.Errorf("write schema: %w", err)
			}
			written++
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, doneMarker), []byte(version+"\n"), 0o644); err != nil {
		return 0, fmt.Errorf("write marker: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return 0, fmt.Errorf("replace %s: %w", dir, err)
	}
	if err := atomicfile.Rename(tmp, dir); err != nil {
		return 0, fmt.Errorf("replace %s: %w", dir, err)
	}
	return written, nil
}

// gvk is one x-kubernetes-group-version-kind entry.
type gvk struct{ Group, Version, Kind string }

func (g gvk) apiVersion() string {
	if g.Group == "" {
		return g.Version
	}
	return g.Group + "/" + g.Version
}

func groupVersionKinds(def map[string]any) []gvk {
	list, _ := def["x-kubernetes-group-version-kind"].([]any)
	var out []gvk
	for _, item := range list {
		m, _ := item.(map[string]any)
		g, _ := m["group"].(string)
		v, _ := m["version"].(string)
		k, _ := m["kind"].(string)
		if v != "" && k != "" {
			out = append(out, gvk{Group: g, Version: v, Kind: k})
		}
	}
	return out
}

// fileName mirrors kubeconform's {{ .ResourceKind }}{{ .KindSuffix }}.json.
func fileName(g gvk) string {
	parts := strings.Split(g.apiVersion(), "/")
	suffix := "-" + strings.ToLower(strings.Split(parts[0], ".")[0])
	if len(parts) > 1 {
		suffix += "-" + strings.ToLower(parts[1])
	}
	return strings.ToLower(g.Kind) + suffix + ".json"
}

// pinKind restricts apiVersion and kind to the one GVK the file is for.
func pinKind(schema map[string]any, g gvk) {
	props, _ := schema["properties"].(map[string]any)
	if props == nil {
		return
	}
	if _, ok := props["kind"]; ok {
		props["kind"] = map[string]any{"type": "string", "enum": []any{g.Kind}}
	}
	if _, ok := props["apiVersion"]; ok {
		props["apiVersion"] = map[string]any{"type": "string", "enum": []any{g.apiVersion()}}
	}
}

type generator struct {
	defs map[string]map[string]any
}

// expand returns a deep copy of node with references inlined and the strict
// and compatibility rewrites applied. seen holds the definitions on the
// current path, to cut recursion.
func (g *generator) expand(node any, seen map[string]bool) any {
	switch n := node.(type) {
	case map[string]any:
		if ref, ok := n["$ref"].(string); ok && strings.HasPrefix(ref, refPrefix) {
			name := strings.TrimPrefix(ref, refPrefix)
			switch name {
			case intOrString:
				return oneOf("string", "integer")
			case quantity:
				return oneOf("string", "number")
			}
			def, ok := g.defs[name]
			if !ok || seen[name] {
				return map[string]any{} // unknown or recursive: accept anything
			}
			seen[name] = true
			out := g.expand(def, seen)
			delete(seen, name)
			if m, ok := out.(map[string]any); ok {
				if d, ok := n["description"]; ok {
					m["description"] = d
				}
			}
			return out
		}
		if f, _ := n["format"].(string); f == "int-or-string" {
			return oneOf("string", "integer")
		}
		out := make(map[string]any, len(n)+1)
		for k, v := range n {
			if strings.HasPrefix(k, "x-") {
				continue
			}
			switch k {
			case "properties":
				props, _ := v.(map[string]any)
				cp := make(map[string]any, len(props))
				for pk, pv := range props {
					cp[pk] = g.expand(pv, seen)
				}
				out[k] = cp
			case "description", "required", "enum", "format":
				out[k] = v
			default:
				out[k] = g.expand(v, seen)
			}
		}
		if _, hasProps := out["properties"]; hasProps {
			if _, set := out["additionalProperties"]; !set {
				out["additionalProperties"] = false
			}
		}
		if t, ok := out["type"].(string); ok && t != "object" {
			out["type"] = []any{t, "null"}
		}
		return out
	case []any:
		out := make([]any, len(n))
		for i, v := range n {
			out[i] = g.expand(v, seen)
		}
		return out
	default:
		return n
	}
}

func oneOf(types ...string) map[string]any {
	alts := make([]any, len(types))
	for i, t := range types {
		alts[i] = map[string]any{"type": t}
	}
	return map[string]any{"oneOf": alts}
}
