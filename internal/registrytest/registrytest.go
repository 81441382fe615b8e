// Package registrytest is a fake of four private package registries on
// one TLS server on 127.0.0.1, telling them apart by the Host of each
// request, each implementing the protocol its client speaks and checking
// credentials where the registry documents them:
//
//   - npm (Options.NPMHost): the registry API's packument
//     (GET /NAME, or /@SCOPE%2fNAME for a scoped package) and the
//     tarball (GET /NAME/-/NAME-VERSION.tgz) whose dist.integrity is the
//     sha512 the fake computed; every request needs
//     "Authorization: Bearer TOKEN" (npm's _authToken) and is answered
//     401 {"error":...} otherwise, as registry.npmjs.org does. A publish
//     (PUT /NAME) is accepted with the token and recorded;
//   - Python (Options.PyPIHost): the simple repository API, PEP 691 JSON
//     or PEP 503 HTML by the Accept header, at /simple/ and
//     /simple/NAME/ (PEP 503-normalised names, other spellings
//     redirected as PyPI does), each file with its sha256, and the wheel
//     under /packages/; HTTP Basic USER:PASSWORD, 401 with
//     WWW-Authenticate: Basic otherwise (as devpi, Artifactory and
//     Nexus do). A twine upload (POST /legacy/) is accepted and recorded;
//   - Go modules (Options.GoProxyHost): the GOPROXY protocol
//     ($module/@v/list, $version.info, .mod, .zip, @latest) for one
//     module whose zip is laid out as golang.org/x/mod/zip lays it out
//     (every file under "module@version/"); HTTP Basic (the go command's
//     GOAUTH / .netrc), 401 otherwise;
//   - Maven (Options.MavenHost): a Maven 2 repository layout under
//     /releases/ (GROUP/ARTIFACT/maven-metadata.xml, VERSION/ARTIFACT-VERSION.pom
//     and .jar, each with its .sha1) for one artifact; HTTP Basic (what
//     a settings.xml <server> would send), 401 with WWW-Authenticate:
//     Basic otherwise, as Nexus and Artifactory answer.
//
// It exists so that the e2e tests drive the real clients (npm, pip, the
// go command, Maven) through the gateway against a peer that verifies
// them.
package registrytest

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"

	"github.com/credgate/credgate/internal/fakekit"
)

// The package each registry serves.
const (
	// NPMPackage is an npm package name, at NPMVersion;
	// NPMScopedPackage a scoped one at the same version, which npm
	// requests as /@acme%2fgadget (the "/" escaped).
	NPMPackage, NPMScopedPackage, NPMVersion = "acme-widget", "@acme/gadget", "1.0.0"
	// PyPIProject is the Python project (PEP 503-normalised), at
	// PyPIVersion, as one wheel.
	PyPIProject, PyPIVersion = "acme-widget", "1.0.0"
	// GoModule is the module path, at GoVersion.
	GoModule, GoVersion = "acme.internal.test/widget", "v1.0.0"
	// MavenGroup, MavenArtifact and MavenVersion name the Maven artifact
	// (a jar), under MavenRepoPath.
	MavenGroup, MavenArtifact, MavenVersion, MavenRepoPath = "com.acme", "widget", "1.0.0", "/releases"
)

// Options configure the fake's hosts and credentials.
type Options struct {
	// Certificate is the server certificate (for the hosts below);
	// nil serves httptest's own.
	Certificate *tls.Certificate

	// NPMHost is the npm registry's host; NPMToken the token it takes
	// as Bearer.
	NPMHost, NPMToken string
	// PyPIHost is the Python index's host; PyPIUser and PyPIPassword
	// the Basic credentials it takes.
	PyPIHost, PyPIUser, PyPIPassword string
	// GoProxyHost is the module proxy's host; GoProxyUser and
	// GoProxyPassword the Basic credentials it takes.
	GoProxyHost, GoProxyUser, GoProxyPassword string
	// MavenHost is the Maven repository's host; MavenUser and
	// MavenPassword the Basic credentials it takes.
	MavenHost, MavenUser, MavenPassword string
}

// Seen is one request as the fake saw it.
type Seen struct {
	Registry string // npm, pypi, goproxy, maven
	Method   string
	Path     string // as received, escaped
	OK       bool   // the credentials were accepted
	// Header is a copy of the request's header.
	Header http.Header
}

// Fake is the running fake.
type Fake struct {
	// URL is the server's base URL; Addr its host:port.
	URL, Addr string

	opts Options
	srv  *httptest.Server

	npmTarballs  map[string][]byte // by package name
	wheel, goZip []byte
	maven        map[string][]byte // repository files by path

	mu   sync.Mutex
	seen []Seen
}

// New starts the fake on 127.0.0.1.
func New(opts Options) (*Fake, error) {
	f := &Fake{opts: opts}
	var err error
	f.npmTarballs = map[string][]byte{}
	for _, name := range []string{NPMPackage, NPMScopedPackage} {
		if f.npmTarballs[name], err = npmTarball(name); err != nil {
			return nil, fmt.Errorf("registrytest: npm tarball: %w", err)
		}
	}
	if f.wheel, err = wheel(); err != nil {
		return nil, fmt.Errorf("registrytest: wheel: %w", err)
	}
	if f.goZip, err = goZip(); err != nil {
		return nil, fmt.Errorf("registrytest: module zip: %w", err)
	}
	if f.maven, err = mavenFiles(); err != nil {
		return nil, fmt.Errorf("registrytest: maven jar: %w", err)
	}
	f.srv = fakekit.StartTLS(http.HandlerFunc(f.serve), opts.Certificate)
	f.URL = f.srv.URL
	f.Addr = f.srv.Listener.Addr().String()
	return f, nil
}

// CAFile writes the server's certificate as PEM to a file in dir and
// returns its path.
func (f *Fake) CAFile(dir string) (string, error) {
	return fakekit.WriteCAFile(f.srv, dir, "registrytest-ca.pem")
}

// Close stops the server.
func (f *Fake) Close() { f.srv.Close() }

// Client returns an HTTP client that trusts the server's certificate.
func (f *Fake) Client() *http.Client { return f.srv.Client() }

// Requests returns the requests seen so far.
func (f *Fake) Requests() []Seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Seen(nil), f.seen...)
}

// NPMIntegrity is the dist.integrity (sha512, SRI form) of the package
// name's tarball.
func (f *Fake) NPMIntegrity(name string) string {
	s := sha512.Sum512(f.npmTarballs[name])
	return "sha512-" + base64.StdEncoding.EncodeToString(s[:])
}

// WheelSHA256 is the wheel's sha256, hex.
func (f *Fake) WheelSHA256() string {
	s := sha256.Sum256(f.wheel)
	return hex.EncodeToString(s[:])
}

func (f *Fake) record(r *http.Request, registry string, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, Seen{Registry: registry, Method: r.Method, Path: r.URL.EscapedPath(), OK: ok, Header: r.Header.Clone()})
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	host := strings.ToLower(r.Host)
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	switch {
	case host != "" && host == f.opts.NPMHost:
		f.npm(w, r)
	case host != "" && host == f.opts.PyPIHost:
		f.pypi(w, r)
	case host != "" && host == f.opts.GoProxyHost:
		f.goproxy(w, r)
	case host != "" && host == f.opts.MavenHost:
		f.mavenRepo(w, r)
	default:
		http.Error(w, "registrytest: unknown host "+host, http.StatusMisdirectedRequest)
	}
}

// equal compares secrets in constant time; an empty want never matches.
func equal(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func basicOK(r *http.Request, user, password string) bool {
	u, p, ok := r.BasicAuth()
	return ok && equal(u, user) && equal(p, password)
}

// ---------------------------------------------------------------------------
// npm

func (f *Fake) npm(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	ok = ok && equal(tok, f.opts.NPMToken)
	f.record(r, "npm", ok)
	if !ok {
		// registry.npmjs.org's shape for a private package without (or
		// with a wrong) token.
		w.Header().Set("WWW-Authenticate", `Bearer realm="npm"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "Unable to authenticate, need: Bearer"})
		return
	}
	// The registry's package path: /NAME, or /@SCOPE%2fNAME for a
	// scoped package (npm escapes the "/"; either case of the escape).
	escaped := strings.Replace(r.URL.EscapedPath(), "%2F", "%2f", 1)
	for name, tarball := range f.npmTarballs {
		pkgPath := "/" + strings.Replace(name, "/", "%2f", 1)
		_, base, _ := strings.Cut(name, "/")
		if base == "" {
			base = name
		}
		tarPath := "/" + name + "/-/" + base + "-" + NPMVersion + ".tgz"
		switch {
		case r.Method == http.MethodGet && escaped == pkgPath:
			sha := sha1.Sum(tarball)
			version := map[string]any{
				"name": name, "version": NPMVersion,
				"dist": map[string]any{"tarball": "https://" + f.opts.NPMHost + tarPath, "integrity": f.NPMIntegrity(name), "shasum": hex.EncodeToString(sha[:])},
			}
			writeJSON(w, http.StatusOK, map[string]any{
				"name": name, "dist-tags": map[string]string{"latest": NPMVersion},
				"versions": map[string]any{NPMVersion: version}, "modified": "2026-12-01T00:00:00.000Z",
			})
			return
		case r.Method == http.MethodGet && r.URL.Path == tarPath:
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write(tarball)
			return
		case r.Method == http.MethodPut && escaped == pkgPath:
			_, _ = io.Copy(io.Discard, r.Body)
			writeJSON(w, http.StatusCreated, map[string]any{"ok": true})
			return
		}
	}
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "Not found"})
}

func npmTarball(name string) ([]byte, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	pkg := fmt.Sprintf(`{"name":%q,"version":%q,"main":"index.js","license":"MIT"}`, name, NPMVersion)
	files := []struct{ name, body string }{
		{"package/package.json", pkg},
		{"package/index.js", fmt.Sprintf("module.exports = '%s from registrytest';\n", name)},
	}
	for _, fl := range files {
		if err := tw.WriteHeader(&tar.Header{Name: fl.name, Mode: 0o644, Size: int64(len(fl.body)), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write([]byte(fl.body)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ---------------------------------------------------------------------------
// Python simple repository API

// pep503Normalize is PEP 503's name normalisation.
var pep503Run = regexp.MustCompile(`[-_.]+`)

func pep503Normalize(name string) string {
	return strings.ToLower(pep503Run.ReplaceAllString(name, "-"))
}

const pep691JSON = "application/vnd.pypi.simple.v1+json"

func (f *Fake) wheelName() string {
	return strings.ReplaceAll(PyPIProject, "-", "_") + "-" + PyPIVersion + "-py3-none-any.whl"
}

func (f *Fake) pypi(w http.ResponseWriter, r *http.Request) {
	ok := basicOK(r, f.opts.PyPIUser, f.opts.PyPIPassword)
	f.record(r, "pypi", ok)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="pypi"`)
		http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
		return
	}
	wantJSON := strings.Contains(r.Header.Get("Accept"), pep691JSON)
	wheelURL := "https://" + f.opts.PyPIHost + "/packages/" + f.wheelName()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/simple/":
		if wantJSON {
			writeJSONType(w, pep691JSON, map[string]any{"meta": map[string]string{"api-version": "1.0"},
				"projects": []map[string]string{{"name": PyPIProject}}})
			return
		}
		writeHTML(w, fmt.Sprintf(`<a href="/simple/%s/">%s</a>`, PyPIProject, PyPIProject))
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/simple/"):
		name := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/simple/"), "/")
		if norm := pep503Normalize(name); norm != name || !strings.HasSuffix(r.URL.Path, "/") {
			http.Redirect(w, r, "/simple/"+norm+"/", http.StatusMovedPermanently)
			return
		}
		if name != PyPIProject {
			http.Error(w, "404 Not Found", http.StatusNotFound)
			return
		}
		sum := f.WheelSHA256()
		if wantJSON {
			writeJSONType(w, pep691JSON, map[string]any{"meta": map[string]string{"api-version": "1.0"}, "name": PyPIProject,
				"files": []map[string]any{{"filename": f.wheelName(), "url": wheelURL, "hashes": map[string]string{"sha256": sum}}}})
			return
		}
		writeHTML(w, fmt.Sprintf(`<a href="%s#sha256=%s">%s</a>`, html.EscapeString(wheelURL), sum, f.wheelName()))
	case r.Method == http.MethodGet && r.URL.Path == "/packages/"+f.wheelName():
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(f.wheel)
	case r.Method == http.MethodPost && r.URL.Path == "/legacy/":
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	default:
		http.Error(w, "404 Not Found", http.StatusNotFound)
	}
}

func writeHTML(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "text/html")
	fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><meta name=\"pypi:repository-version\" content=\"1.0\"></head><body>\n%s\n</body></html>\n", body)
}

func wheel() ([]byte, error) {
	mod := strings.ReplaceAll(PyPIProject, "-", "_")
	info := mod + "-" + PyPIVersion + ".dist-info/"
	files := []struct{ name, body string }{
		{mod + "/__init__.py", "NAME = 'acme-widget from registrytest'\n"},
		{info + "METADATA", "Metadata-Version: 2.1\nName: " + PyPIProject + "\nVersion: " + PyPIVersion + "\n"},
		{info + "WHEEL", "Wheel-Version: 1.0\nGenerator: registrytest\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
	}
	var record strings.Builder
	for _, fl := range files {
		s := sha256.Sum256([]byte(fl.body))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", fl.name, base64.RawURLEncoding.EncodeToString(s[:]), len(fl.body))
	}
	record.WriteString(info + "RECORD,,\n")
	files = append(files, struct{ name, body string }{info + "RECORD", record.String()})
	return zipOf(files)
}

func zipOf(files []struct{ name, body string }) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, fl := range files {
		fw, err := zw.Create(fl.name)
		if err != nil {
			return nil, err
		}
		if _, err := io.WriteString(fw, fl.body); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ---------------------------------------------------------------------------
// GOPROXY protocol (go.dev/ref/mod#goproxy-protocol)

const goMod = "module " + GoModule + "\n\ngo 1.21\n"

func (f *Fake) goproxy(w http.ResponseWriter, r *http.Request) {
	ok := basicOK(r, f.opts.GoProxyUser, f.opts.GoProxyPassword)
	f.record(r, "goproxy", ok)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="goproxy"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// Module paths are lower case here, so no "!x" case-encoding.
	prefix := "/" + GoModule + "/@"
	rest, found := strings.CutPrefix(r.URL.Path, prefix)
	if !found {
		// The protocol's "not found": 404 or 410 with a plain-text reason.
		http.Error(w, "not found: unknown module", http.StatusNotFound)
		return
	}
	info := map[string]string{"Version": GoVersion, "Time": "2026-12-01T00:00:00Z"}
	switch rest {
	case "v/list":
		fmt.Fprintln(w, GoVersion)
	case "latest", "v/" + GoVersion + ".info":
		writeJSON(w, http.StatusOK, info)
	case "v/" + GoVersion + ".mod":
		_, _ = io.WriteString(w, goMod)
	case "v/" + GoVersion + ".zip":
		w.Header().Set("Content-Type", "application/zip")
		_, _ = w.Write(f.goZip)
	default:
		http.Error(w, "not found: unknown revision", http.StatusNotFound)
	}
}

// goZip lays the module out as golang.org/x/mod/zip does: every file
// under "module@version/", go.mod included, no directories entries.
func goZip() ([]byte, error) {
	p := GoModule + "@" + GoVersion + "/"
	return zipOf([]struct{ name, body string }{
		{p + "go.mod", goMod},
		{p + "widget.go", "// Package widget is registrytest's module.\npackage widget\n\n// Name names it.\nconst Name = \"acme widget\"\n"},
	})
}

// ---------------------------------------------------------------------------
// Maven repository layout (maven.apache.org/repository/layout.html)

// MavenPaths returns the repository paths of the artifact's pom and jar.
func MavenPaths() (pom, jar string) {
	return mavenPaths(MavenGroup, MavenArtifact, MavenVersion)
}

func mavenPaths(group, artifact, version string) (pom, jar string) {
	base := MavenRepoPath + "/" + strings.ReplaceAll(group, ".", "/") + "/" + artifact + "/" + version + "/" + artifact + "-" + version
	return base + ".pom", base + ".jar"
}

// mavenFiles lays out the artifact, and a stand-in for
// org.codehaus.plexus:plexus-utils:1.1, which Maven adds to every build
// extension and plugin that does not depend on plexus-utils (a private
// repository proxying Maven Central serves it; the stand-in is an empty
// jar, as nothing loads a class from it).
func mavenFiles() (map[string][]byte, error) {
	jar, err := zipOf([]struct{ name, body string }{
		{"META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\nCreated-By: registrytest\r\n\r\n"},
	})
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, a := range [][3]string{{MavenGroup, MavenArtifact, MavenVersion}, {"org.codehaus.plexus", "plexus-utils", "1.1"}} {
		pomPath, jarPath := mavenPaths(a[0], a[1], a[2])
		files[pomPath] = []byte(fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>%s</groupId>
  <artifactId>%s</artifactId>
  <version>%s</version>
  <packaging>jar</packaging>
</project>
`, a[0], a[1], a[2]))
		files[jarPath] = jar
	}
	meta := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<metadata>
  <groupId>%s</groupId>
  <artifactId>%s</artifactId>
  <versioning>
    <latest>%s</latest>
    <release>%s</release>
    <versions><version>%s</version></versions>
    <lastUpdated>20261201000000</lastUpdated>
  </versioning>
</metadata>
`, MavenGroup, MavenArtifact, MavenVersion, MavenVersion, MavenVersion)
	files[MavenRepoPath+"/"+strings.ReplaceAll(MavenGroup, ".", "/")+"/"+MavenArtifact+"/maven-metadata.xml"] = []byte(meta)
	for p, b := range files {
		sum := sha1.Sum(b)
		files[p+".sha1"] = []byte(hex.EncodeToString(sum[:]))
	}
	return files, nil
}

func (f *Fake) mavenRepo(w http.ResponseWriter, r *http.Request) {
	ok := basicOK(r, f.opts.MavenUser, f.opts.MavenPassword)
	f.record(r, "maven", ok)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="Sonatype Nexus Repository Manager"`)
		http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
		return
	}
	b, found := f.maven[r.URL.Path]
	switch {
	case r.Method == http.MethodPut:
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		http.Error(w, "405 Method Not Allowed", http.StatusMethodNotAllowed)
	case !found:
		http.Error(w, "404 Not Found", http.StatusNotFound)
	default:
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(b)
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeJSONType(w http.ResponseWriter, ctype string, v any) {
	w.Header().Set("Content-Type", ctype)
	_ = json.NewEncoder(w).Encode(v)
}
