// Package release_test checks `make release` (scripts/release.sh): two
// builds of one commit, from two clones in different directories, give
// byte-identical binaries, SBOMs and checksums; the binary prints the
// version, the commit and the commit's date; the SBOM is CycloneDX and
// lists the modules linked in and the Go standard library. To stay cheap it builds one target (this
// machine's) in each clone.
package release_test

import (
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

func TestReleaseReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds credgate twice")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: the release build stamps the commit")
	}
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("git", "-C", repo, "rev-parse", "--git-dir").Run(); err != nil {
		t.Skip("not a git checkout")
	}
	head := strings.TrimSpace(run(t, repo, nil, "git", "rev-parse", "HEAD"))
	date := strings.TrimSpace(run(t, repo, []string{"TZ=UTC"}, "git", "log", "-1", "--date=format-local:%Y-%m-%dT%H:%M:%SZ", "--format=%cd", "HEAD"))
	target := runtime.GOOS + "/" + runtime.GOARCH
	env := []string{"RELEASE_TARGETS=" + target, "VERSION=9.8.7-test"}

	// Two clones of the committed tree, in directories of different
	// names and depths: the build must not depend on where it ran.
	tmp := t.TempDir()
	var outs []string
	for _, dir := range []string{filepath.Join(tmp, "a"), filepath.Join(tmp, "b", "deeper")} {
		run(t, tmp, nil, "git", "clone", "--quiet", repo, dir)
		out := filepath.Join(dir, "dist")
		run(t, dir, env, "bash", "scripts/release.sh", out)
		outs = append(outs, out)
	}

	name := "credgate_9.8.7-test_" + runtime.GOOS + "_" + runtime.GOARCH
	for _, f := range []string{name, name + ".cdx.json", "SHA256SUMS"} {
		a, err := os.ReadFile(filepath.Join(outs[0], f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(outs[1], f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds of %s", f, head[:12])
		}
	}

	// SHA256SUMS holds the sums of the files beside it.
	sums, err := os.ReadFile(filepath.Join(outs[0], "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(sums)), "\n")
	if len(lines) != 2 {
		t.Errorf("SHA256SUMS has %d lines, want 2 (binary, SBOM):\n%s", len(lines), sums)
	}
	for _, l := range lines {
		sum, file, ok := strings.Cut(l, "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", l)
		}
		b, err := os.ReadFile(filepath.Join(outs[0], file))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(b)
		if got := hex.EncodeToString(h[:]); got != sum {
			t.Errorf("SHA256SUMS says %s for %s, the file hashes to %s", sum, file, got)
		}
	}

	// The binary is stamped with the version, the commit and its date.
	v := run(t, tmp, nil, filepath.Join(outs[0], name), "version")
	for _, want := range []string{"credgate 9.8.7-test\n", "commit " + head + " " + date + "\n"} {
		if !strings.Contains(v, want) {
			t.Errorf("credgate version:\n%s\nlacks %q", v, want)
		}
	}

	// The SBOM is CycloneDX, names credgate and the modules it links.
	raw, err := os.ReadFile(filepath.Join(outs[0], name+".cdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	var bom struct {
		BOMFormat string `json:"bomFormat"`
		Metadata  struct {
			Component struct {
				Ref           string `json:"bom-ref"`
				Name, Version string
			}
		}
		Components []struct {
			Name, Version, Purl string
		}
		Dependencies []struct {
			Ref       string
			DependsOn []string
		}
	}
	if err := json.Unmarshal(raw, &bom); err != nil {
		t.Fatalf("SBOM: %v", err)
	}
	if bom.BOMFormat != "CycloneDX" || bom.Metadata.Component.Name != "github.com/credgate/credgate" || bom.Metadata.Component.Version != "9.8.7-test" {
		t.Errorf("SBOM format %q, component %+v; want CycloneDX for github.com/credgate/credgate 9.8.7-test", bom.BOMFormat, bom.Metadata.Component)
	}
	var names []string
	for _, c := range bom.Components {
		names = append(names, c.Name)
	}
	for _, want := range []string{"github.com/elazarl/goproxy", "github.com/redis/go-redis/v9"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("SBOM does not list %s (components: %v)", want, names)
		}
	}
	// The standard library is a component at the toolchain's version, in
	// the form scanners match Go's CVEs to, and the binary depends on it.
	info, err := buildinfo.ReadFile(filepath.Join(outs[0], name))
	if err != nil {
		t.Fatal(err)
	}
	goVersion, _, _ := strings.Cut(info.GoVersion, " ")
	stdVersion := "v" + strings.TrimPrefix(goVersion, "go")
	if strings.Count(stdVersion, ".") != 2 || strings.ContainsAny(stdVersion, "-+ ") {
		t.Skipf("built with %s, not a patch release of Go: the stdlib version mapping is checked in scripts/sbomstd", info.GoVersion)
	}
	stdRef := "pkg:golang/stdlib@" + stdVersion
	var std []string
	for _, c := range bom.Components {
		if c.Name == "stdlib" || strings.HasPrefix(c.Purl, "pkg:golang/stdlib@") || strings.HasPrefix(c.Purl, "pkg:golang/std@") {
			std = append(std, c.Name+" "+c.Version+" "+c.Purl)
		}
	}
	if want := "stdlib " + stdVersion + " " + stdRef; len(std) != 1 || std[0] != want {
		t.Errorf("SBOM standard library components %q, want exactly [%q] (built with %s)", std, want, info.GoVersion)
	}
	dependsOnStd := false
	for _, d := range bom.Dependencies {
		dependsOnStd = dependsOnStd || d.Ref == bom.Metadata.Component.Ref && slices.Contains(d.DependsOn, stdRef)
	}
	if !dependsOnStd {
		t.Errorf("SBOM: %s does not depend on %s", bom.Metadata.Component.Ref, stdRef)
	}
	t.Logf("two builds of %s for %s byte-identical; SBOM lists %d components, %s among them", head[:12], target, len(bom.Components), stdRef)
}

// TestStamp checks scripts/stamp.sh, which stamps the binary, the image
// and the release files: the commit's date by default, SOURCE_DATE_EPOCH
// when set (a build without git history), a refusal of one that is not a
// number, and "-dirty" after the commit when tracked files were changed.
func TestStamp(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("git", "-C", repo, "rev-parse", "--git-dir").Run(); err != nil {
		t.Skip("not a git checkout")
	}
	dir := filepath.Join(t.TempDir(), "clone")
	run(t, repo, nil, "git", "clone", "--quiet", repo, dir)
	head := strings.TrimSpace(run(t, dir, nil, "git", "rev-parse", "HEAD"))
	date := strings.TrimSpace(run(t, dir, []string{"TZ=UTC"}, "git", "log", "-1", "--date=format-local:%Y-%m-%dT%H:%M:%SZ", "--format=%cd", "HEAD"))
	// This checkout's stamp.sh (perhaps not committed yet), in an untracked
	// directory of the clone: it stamps the checkout one level up.
	script, err := os.ReadFile(filepath.Join(repo, "scripts", "stamp.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "untracked"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "untracked", "stamp.sh"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	stamp := func(env ...string) map[string]string {
		out := run(t, dir, append(env, "VERSION=", "SOURCE_DATE_EPOCH="+envValue(env, "SOURCE_DATE_EPOCH")), "bash", "untracked/stamp.sh")
		m := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			k, v, _ := strings.Cut(l, "=")
			m[k] = v
		}
		return m
	}
	if got := stamp(); got["COMMIT"] != head || got["DATE"] != date {
		t.Errorf("clean clone: COMMIT=%s DATE=%s, want %s and the commit's date %s", got["COMMIT"], got["DATE"], head, date)
	}
	if got := stamp("SOURCE_DATE_EPOCH=1700000000"); got["DATE"] != "2023-11-14T22:13:20Z" || got["SOURCE_DATE_EPOCH"] != "1700000000" {
		t.Errorf("SOURCE_DATE_EPOCH=1700000000: DATE=%s SOURCE_DATE_EPOCH=%s, want 2023-11-14T22:13:20Z", got["DATE"], got["SOURCE_DATE_EPOCH"])
	}
	cmd := exec.Command("bash", "untracked/stamp.sh")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=yesterday")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "SOURCE_DATE_EPOCH") {
		t.Errorf("SOURCE_DATE_EPOCH=yesterday: err %v, output %q; want a refusal naming it", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := stamp(); got["COMMIT"] != head+"-dirty" {
		t.Errorf("changed tracked file: COMMIT=%s, want %s-dirty", got["COMMIT"], head)
	}
}

// envValue returns the value of key in a KEY=VALUE list, or "".
func envValue(env []string, key string) string {
	for _, e := range env {
		if k, v, ok := strings.Cut(e, "="); ok && k == key {
			return v
		}
	}
	return ""
}
