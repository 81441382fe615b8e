package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/canonical"
)

const copySourcePolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
rules:
  - name: reports
    from: local
    to: api
    paths: [/reports/*]
    inject: {credential: token, as: bearer}
  - name: mirror
    from: local
    to: api
    paths: [/mirror/*]
    inject: {credential: token, as: bearer, allow_copy_source: true}
default: deny
`

// TestCopySourceRefused is the class "a request that makes a storage
// service read or move an object its path does not name, with the
// injected credential": a request of an inject rule carrying any copy or
// rename source field (canonical.SourceHeaders: S3, Google Cloud Storage,
// Azure Storage), under any spelling of its name and with any value, over
// HTTP/1.1 and HTTP/2, is refused 403 copy_source_not_allowed, audited,
// and nothing reaches the upstream, whatever injector the rule uses (a
// bearer token to GCS or Azure reads the source as much as an S3
// signature does); a rule that sets allow_copy_source forwards it, and a
// request without such a field (companion fields such as
// x-amz-copy-source-range alone) is forwarded. Before, each was
// forwarded with the credential: all 26 refusals failed.
func TestCopySourceRefused(t *testing.T) {
	pki := newTestPKI(t, apiHost)
	o := startOrigin(t, pki)
	tg := newTestGateway(t, pki, o)
	writeFile(t, tg.dir, "policy.yaml", []byte(copySourcePolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", o.addr))

	type field struct{ name, value string }
	var fields []field
	for _, name := range canonical.SourceHeaders {
		fields = append(fields, field{name, "/payroll/salaries.csv"}, field{strings.ToLower(name), "payroll/salaries.csv?versionId=3"})
	}
	fields = append(fields, field{"X-AMZ-COPY-SOURCE", ""})
	n := 0
	for _, h2 := range []bool{false, true} {
		c := tg.client(t, h2)
		for _, f := range fields {
			for _, path := range []string{"/reports/stolen.csv", "/mirror/copy.csv"} {
				n++
				id := fmt.Sprintf("copy-%d", n)
				t.Run(fmt.Sprintf("h2=%v%s/%s=%s", h2, path, f.name, f.value), func(t *testing.T) {
					req, err := http.NewRequest("PUT", "https://"+apiHost+path, http.NoBody)
					if err != nil {
						t.Fatal(err)
					}
					req.Header[f.name] = []string{f.value}
					req.Header.Set("X-Probe-Id", id)
					resp, err := c.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					reached := false
					for _, s := range tg.origin.all() {
						reached = reached || s.Header.Get("X-Probe-Id") == id
					}
					if path == "/mirror/copy.csv" {
						if resp.StatusCode != http.StatusOK || !reached {
							t.Errorf("allow_copy_source: status %d, reached the upstream %v; want it forwarded", resp.StatusCode, reached)
						}
						return
					}
					if resp.StatusCode != http.StatusForbidden || resp.Header.Get(ReasonHeader) != codeCopySourceNotAllowed {
						t.Errorf("status %d reason %q (%.200s), want 403 %s", resp.StatusCode, resp.Header.Get(ReasonHeader), body, codeCopySourceNotAllowed)
					}
					if reached {
						t.Errorf("the request reached the upstream")
					}
					if !strings.Contains(string(body), "allow_copy_source") || strings.Contains(string(body), "payroll") {
						t.Errorf("the reason should name the setting and never the field's value: %s", body)
					}
				})
			}
		}
		// Companion fields alone name no object.
		req, _ := http.NewRequest("PUT", "https://"+apiHost+"/reports/part", http.NoBody)
		req.Header.Set("X-Amz-Copy-Source-Range", "bytes=0-9")
		req.Header.Set("X-Ms-Copy-Source-Authorization", "Bearer x")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("h2=%v: companion fields alone: status %d, want 200", h2, resp.StatusCode)
		}
	}
	waitFor(t, 5*time.Second, "the refusals' audit lines", func() bool {
		return strings.Count(tg.audit.String(), `"code":"`+codeCopySourceNotAllowed+`"`) == 2*len(fields)
	})
}
