package registrytest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/credgate/credgate/internal/registrytest"
)

// TestFakeRefusesWhatRegistriesRefuse: each registry of the fake serves
// its protocol with the right credential where the registry documents it
// (npm Bearer, Basic for the Python index and the module proxy) and
// refuses a missing, wrong or misplaced one with 401 and the registry's
// own answer; PEP 691 JSON and PEP 503 HTML are chosen by Accept, and a
// non-normalised project name is redirected.
func TestFakeRefusesWhatRegistriesRefuse(t *testing.T) {
	f, err := registrytest.New(registrytest.Options{
		NPMHost: "npm.test", NPMToken: "npm-right",
		PyPIHost: "pypi.test", PyPIUser: "u", PyPIPassword: "py-right",
		GoProxyHost: "goproxy.test", GoProxyUser: "u", GoProxyPassword: "go-right",
		MavenHost: "maven.test", MavenUser: "u", MavenPassword: "mvn-right",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	client := f.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	type h = map[string]string
	pomPath, jarPath := registrytest.MavenPaths()
	bearer := func(tok string) h { return h{"Authorization": "Bearer " + tok} }
	const json691 = "application/vnd.pypi.simple.v1+json"
	tests := []struct {
		name, host, method, path string
		header                   h
		basic                    [2]string
		want                     int
		wantBody                 string
	}{
		{"npm packument", "npm.test", "GET", "/acme-widget", bearer("npm-right"), [2]string{}, 200, f.NPMIntegrity(registrytest.NPMPackage)},
		{"npm scoped packument", "npm.test", "GET", "/@acme%2fgadget", bearer("npm-right"), [2]string{}, 200, f.NPMIntegrity(registrytest.NPMScopedPackage)},
		{"npm scoped tarball", "npm.test", "GET", "/@acme/gadget/-/gadget-1.0.0.tgz", bearer("npm-right"), [2]string{}, 200, ""},
		{"npm scoped no token", "npm.test", "GET", "/@acme%2fgadget", nil, [2]string{}, 401, `"error"`},
		{"npm tarball", "npm.test", "GET", "/acme-widget/-/acme-widget-1.0.0.tgz", bearer("npm-right"), [2]string{}, 200, ""},
		{"npm no token", "npm.test", "GET", "/acme-widget", nil, [2]string{}, 401, `"error"`},
		{"npm wrong token", "npm.test", "GET", "/acme-widget", bearer("npm-wrong"), [2]string{}, 401, `"error"`},
		{"npm token as Basic", "npm.test", "GET", "/acme-widget", nil, [2]string{"u", "npm-right"}, 401, `"error"`},
		{"npm empty token", "npm.test", "GET", "/acme-widget", bearer(""), [2]string{}, 401, `"error"`},
		{"npm unknown package", "npm.test", "GET", "/left-pad", bearer("npm-right"), [2]string{}, 404, ""},
		{"npm publish with token", "npm.test", "PUT", "/acme-widget", bearer("npm-right"), [2]string{}, 201, ""},
		{"pypi JSON", "pypi.test", "GET", "/simple/acme-widget/", h{"Accept": json691}, [2]string{"u", "py-right"}, 200, f.WheelSHA256()},
		{"pypi HTML", "pypi.test", "GET", "/simple/acme-widget/", h{"Accept": "text/html"}, [2]string{"u", "py-right"}, 200, "#sha256=" + f.WheelSHA256()},
		{"pypi root", "pypi.test", "GET", "/simple/", nil, [2]string{"u", "py-right"}, 200, "acme-widget"},
		{"pypi non-normalised name", "pypi.test", "GET", "/simple/Acme_Widget/", nil, [2]string{"u", "py-right"}, 301, ""},
		{"pypi wheel", "pypi.test", "GET", "/packages/acme_widget-1.0.0-py3-none-any.whl", nil, [2]string{"u", "py-right"}, 200, ""},
		{"pypi no credentials", "pypi.test", "GET", "/simple/acme-widget/", nil, [2]string{}, 401, ""},
		{"pypi wrong password", "pypi.test", "GET", "/simple/acme-widget/", nil, [2]string{"u", "py-wrong"}, 401, ""},
		{"pypi wrong user", "pypi.test", "GET", "/simple/acme-widget/", nil, [2]string{"x", "py-right"}, 401, ""},
		{"pypi password as Bearer", "pypi.test", "GET", "/simple/acme-widget/", bearer("py-right"), [2]string{}, 401, ""},
		{"goproxy list", "goproxy.test", "GET", "/acme.internal.test/widget/@v/list", nil, [2]string{"u", "go-right"}, 200, "v1.0.0"},
		{"goproxy info", "goproxy.test", "GET", "/acme.internal.test/widget/@v/v1.0.0.info", nil, [2]string{"u", "go-right"}, 200, `"Version":"v1.0.0"`},
		{"goproxy mod", "goproxy.test", "GET", "/acme.internal.test/widget/@v/v1.0.0.mod", nil, [2]string{"u", "go-right"}, 200, "module acme.internal.test/widget"},
		{"goproxy zip", "goproxy.test", "GET", "/acme.internal.test/widget/@v/v1.0.0.zip", nil, [2]string{"u", "go-right"}, 200, "acme.internal.test/widget@v1.0.0/go.mod"},
		{"goproxy unknown version", "goproxy.test", "GET", "/acme.internal.test/widget/@v/v9.9.9.info", nil, [2]string{"u", "go-right"}, 404, "not found"},
		{"goproxy no credentials", "goproxy.test", "GET", "/acme.internal.test/widget/@v/list", nil, [2]string{}, 401, ""},
		{"goproxy wrong password", "goproxy.test", "GET", "/acme.internal.test/widget/@v/list", nil, [2]string{"u", "go-wrong"}, 401, ""},
		{"maven pom", "maven.test", "GET", pomPath, nil, [2]string{"u", "mvn-right"}, 200, "<artifactId>widget</artifactId>"},
		{"maven jar", "maven.test", "GET", jarPath, nil, [2]string{"u", "mvn-right"}, 200, "META-INF/MANIFEST.MF"},
		{"maven jar sha1", "maven.test", "GET", jarPath + ".sha1", nil, [2]string{"u", "mvn-right"}, 200, ""},
		{"maven metadata", "maven.test", "GET", "/releases/com/acme/widget/maven-metadata.xml", nil, [2]string{"u", "mvn-right"}, 200, "<release>1.0.0</release>"},
		{"maven unknown", "maven.test", "GET", "/releases/com/acme/other/1.0/other-1.0.pom", nil, [2]string{"u", "mvn-right"}, 404, ""},
		{"maven no credentials", "maven.test", "GET", pomPath, nil, [2]string{}, 401, ""},
		{"maven wrong password", "maven.test", "GET", pomPath, nil, [2]string{"u", "mvn-wrong"}, 401, ""},
		{"unknown host", "other.test", "GET", "/", nil, [2]string{}, 421, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, f.URL+tc.path, strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tc.host
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			if tc.basic != [2]string{} {
				req.SetBasicAuth(tc.basic[0], tc.basic[1])
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d %q, want %d", resp.StatusCode, b, tc.want)
			}
			if tc.wantBody != "" && !strings.Contains(string(b), tc.wantBody) {
				t.Errorf("body %q does not contain %q", b, tc.wantBody)
			}
			if tc.want == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
			if tc.host == "npm.test" && tc.want == 401 {
				var e struct{ Error string }
				if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
					t.Errorf("npm 401 body %q is not npm's {\"error\":...}", b)
				}
			}
		})
	}
}
