package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSemver checks the toolchain-version mapping over every spelling a
// released toolchain prints, and the refusal of development toolchains.
func TestSemver(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "go1.26.8", want: "v1.26.8"},
		{in: "go1.26.10", want: "v1.26.10"},
		{in: "go1.20", want: "v1.20.0"},
		{in: "go1.26rc1", want: "v1.26.0-rc.1"},
		{in: "go1.26beta2", want: "v1.26.0-beta.2"},
		{in: "go1.26.8 X:boringcrypto", want: "v1.26.8"},
		{in: "devel go1.27-abcdef Tue Dec 1 2026", err: "is not a Go release"},
		{in: "", err: "is not a Go release"},
		{in: "go1", err: "is not a Go release"},
	} {
		got, err := semver(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("semver(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("semver(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestWithStdlib checks, over SBOM shapes (with and without a dependency
// entry for the main component, already holding a stdlib at another
// version), that exactly one stdlib component and dependency result, that
// the main component depends on it, and that refused inputs say why.
func TestWithStdlib(t *testing.T) {
	const mainRef = "pkg:golang/example.org/app@1.0.0?type=module"
	const mod = `{"bom-ref": "pkg:golang/example.org/lib@v1.2.3?type=module", "type": "library", "name": "example.org/lib", "version": "v1.2.3"}`
	doc := func(comps, deps string) string {
		return `{"bomFormat": "CycloneDX", "specVersion": "1.6", "metadata": {"component": {"bom-ref": "` + mainRef + `", "name": "example.org/app"}}, "components": [` + comps + `], "dependencies": [` + deps + `]}`
	}
	wantStd := map[string]any{"bom-ref": "pkg:golang/stdlib@v1.26.8", "type": "library", "name": "stdlib", "version": "v1.26.8", "scope": "required",
		"purl": "pkg:golang/stdlib@v1.26.8", "cpe": "cpe:2.3:a:golang:go:1.26.8:*:*:*:*:*:*:*"}
	for _, tc := range []struct {
		name, in  string
		wantOn    []any
		wantComps int
		err       string
	}{
		{name: "modules", in: doc(mod, `{"ref": "`+mainRef+`", "dependsOn": ["pkg:golang/example.org/lib@v1.2.3?type=module"]}`),
			wantOn: []any{"pkg:golang/example.org/lib@v1.2.3?type=module", "pkg:golang/stdlib@v1.26.8"}, wantComps: 2},
		{name: "no-dependency-entry", in: doc(mod, ""), wantOn: []any{"pkg:golang/stdlib@v1.26.8"}, wantComps: 2},
		{name: "no-modules", in: doc("", `{"ref": "`+mainRef+`"}`), wantOn: []any{"pkg:golang/stdlib@v1.26.8"}, wantComps: 1},
		{name: "old-stdlib-replaced", in: doc(mod+`, {"bom-ref": "pkg:golang/stdlib@v1.25.0", "name": "stdlib", "version": "v1.25.0"}`,
			`{"ref": "`+mainRef+`", "dependsOn": ["pkg:golang/stdlib@v1.25.0"]}, {"ref": "pkg:golang/stdlib@v1.25.0"}`),
			wantOn: []any{"pkg:golang/stdlib@v1.26.8"}, wantComps: 2},
		{name: "not-json", in: "{", err: "not JSON"},
		{name: "not-cyclonedx", in: `{"spdxVersion": "SPDX-2.3"}`, err: "not a CycloneDX SBOM"},
		{name: "no-main-component", in: `{"bomFormat": "CycloneDX"}`, err: "no metadata.component.bom-ref"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := withStdlib([]byte(tc.in), "v1.26.8")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			again, err := withStdlib(out, "v1.26.8")
			if err != nil || string(again) != string(out) {
				t.Errorf("a second run changed the SBOM (err %v):\n%s\n---\n%s", err, out, again)
			}
			var got struct {
				Components   []map[string]any
				Dependencies []struct {
					Ref       string
					DependsOn []any
				}
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			if len(got.Components) != tc.wantComps {
				t.Errorf("%d components, want %d", len(got.Components), tc.wantComps)
			}
			var std []map[string]any
			for _, c := range got.Components {
				if c["name"] == "stdlib" {
					std = append(std, c)
				}
			}
			if diff := cmp.Diff([]map[string]any{wantStd}, std); diff != "" {
				t.Errorf("stdlib components (-want +got):\n%s", diff)
			}
			refs := map[string][]any{}
			for _, d := range got.Dependencies {
				if _, dup := refs[d.Ref]; dup {
					t.Errorf("dependency %s listed twice", d.Ref)
				}
				refs[d.Ref] = d.DependsOn
			}
			if diff := cmp.Diff(tc.wantOn, refs[mainRef]); diff != "" {
				t.Errorf("main component dependsOn (-want +got):\n%s", diff)
			}
			if on, ok := refs["pkg:golang/stdlib@v1.26.8"]; !ok || len(on) != 0 {
				t.Errorf("stdlib dependency entry %v, %v; want present and empty", on, ok)
			}
		})
	}
}
