// Command sbomstd adds the Go standard library to a CycloneDX SBOM that
// `cyclonedx-gomod bin` wrote for a Go binary. That SBOM lists the modules
// the binary links and names the toolchain only in a GOVERSION property,
// which vulnerability scanners do not read, so the standard library's CVEs
// (most of Go's) went unreported. sbomstd reads the toolchain version from
// the binary itself (debug/buildinfo) and adds the component scanners match
// (grype, trivy): name stdlib, version vX.Y.Z, purl pkg:golang/stdlib@vX.Y.Z,
// cpe cpe:2.3:a:golang:go:X.Y.Z, as a dependency of the main component.
// Running it twice changes nothing; the output depends on its input only.
//
// Usage:
//
//	go run ./scripts/sbomstd BINARY SBOM.cdx.json
//
// (cyclonedx-gomod's `app -std` adds a component named std with the purl
// pkg:golang/std@go1.X.Y, which scanners do not recognise, and `bin` has
// no such option.)
package main

import (
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: sbomstd BINARY SBOM.cdx.json")
		os.Exit(2)
	}
	if err := addStdlib(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "sbomstd:", err)
		os.Exit(1)
	}
}

// goVersionRE matches a release toolchain's runtime.Version: go1.26.8,
// go1.26 (before Go 1.21, the first release of a minor), go1.26rc1,
// go1.26beta2; anything after a space (experiments) is dropped first.
var goVersionRE = regexp.MustCompile(`^go(\d+)\.(\d+)(?:\.(\d+))?(?:(rc|beta)(\d+))?$`)

// semver maps a toolchain version to the semantic version the Go
// vulnerability database (and so scanners) uses for the standard library:
// go1.26.8 → v1.26.8, go1.20 → v1.20.0, go1.26rc1 → v1.26.0-rc.1. A
// development toolchain has no such version and is refused.
func semver(goVersion string) (string, error) {
	v, _, _ := strings.Cut(goVersion, " ")
	m := goVersionRE.FindStringSubmatch(v)
	if m == nil {
		return "", fmt.Errorf("toolchain %q is not a Go release (go1.X.Y): build releases with a released Go", goVersion)
	}
	patch := m[3]
	if patch == "" {
		patch = "0"
	}
	out := "v" + m[1] + "." + m[2] + "." + patch
	if m[4] != "" {
		out += "-" + m[4] + "." + m[5]
	}
	return out, nil
}

// addStdlib adds the standard library component to the SBOM at sbomPath
// for the binary at binPath, rewriting the file.
func addStdlib(binPath, sbomPath string) error {
	info, err := buildinfo.ReadFile(binPath)
	if err != nil {
		return fmt.Errorf("read build info of %s: %w", binPath, err)
	}
	ver, err := semver(info.GoVersion)
	if err != nil {
		return fmt.Errorf("%s: %w", binPath, err)
	}
	raw, err := os.ReadFile(sbomPath)
	if err != nil {
		return fmt.Errorf("read SBOM: %w", err)
	}
	out, err := withStdlib(raw, ver)
	if err != nil {
		return fmt.Errorf("%s: %w", sbomPath, err)
	}
	if err := os.WriteFile(sbomPath, out, 0o644); err != nil {
		return fmt.Errorf("write SBOM: %w", err)
	}
	return nil
}

// withStdlib returns the CycloneDX JSON document raw with a stdlib
// component at version ver (vX.Y.Z) and a dependency on it from the
// document's main component. Fields it does not touch keep their values.
func withStdlib(raw []byte, ver string) ([]byte, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if doc["bomFormat"] != "CycloneDX" {
		return nil, fmt.Errorf("not a CycloneDX SBOM (bomFormat %v)", doc["bomFormat"])
	}
	mainRef, _ := dig(doc, "metadata", "component", "bom-ref").(string)
	if mainRef == "" {
		return nil, fmt.Errorf("no metadata.component.bom-ref: not an SBOM of a binary from cyclonedx-gomod")
	}
	ref := "pkg:golang/stdlib@" + ver
	comps, _ := doc["components"].([]any)
	comps = slices.DeleteFunc(comps, func(c any) bool { return dig(c, "name") == "stdlib" })
	doc["components"] = append(comps, map[string]any{
		"bom-ref": ref,
		"type":    "library",
		"name":    "stdlib",
		"version": ver,
		"scope":   "required",
		"purl":    ref,
		"cpe":     "cpe:2.3:a:golang:go:" + strings.TrimPrefix(ver, "v") + ":*:*:*:*:*:*:*",
	})
	deps, _ := doc["dependencies"].([]any)
	deps = slices.DeleteFunc(deps, func(d any) bool {
		r, _ := dig(d, "ref").(string)
		return strings.HasPrefix(r, "pkg:golang/stdlib@")
	})
	found := false
	for _, d := range deps {
		m, ok := d.(map[string]any)
		if !ok || m["ref"] != mainRef {
			continue
		}
		on, _ := m["dependsOn"].([]any)
		on = slices.DeleteFunc(on, func(r any) bool { s, _ := r.(string); return strings.HasPrefix(s, "pkg:golang/stdlib@") })
		m["dependsOn"] = append(on, ref)
		found = true
	}
	if !found {
		deps = append(deps, map[string]any{"ref": mainRef, "dependsOn": []any{ref}})
	}
	doc["dependencies"] = append(deps, map[string]any{"ref": ref})
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return buf.Bytes(), nil
}

// dig returns the value at a path of object keys, or nil.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}
