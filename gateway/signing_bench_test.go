package gateway

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// signingPolicy is testPolicy with rules that sign the body: hmac over
// its SHA-256, and httpsig with a Content-Digest (hmac-sha256, so that
// the figure is the body's hashing, not an asymmetric signature).
var signingPolicy = strings.Replace(testPolicy, "  - name: api\n", `  - name: hmac-upload
    from: local
    to: api
    paths: [/hmac/*]
    inject:
      credential: token
      as: hmac
      key_field: token
      string_to_sign: "{{.method}}{{.path}}{{.body_sha256}}"
      signature: {header: X-Signature}
      max_body: 2097152
  - name: httpsig-upload
    from: local
    to: api
    paths: [/httpsig/*]
    inject: {credential: token, as: httpsig, algorithm: hmac-sha256, key_field: token, key_id: bench, max_body: 2097152}
  - name: api
`, 1)

// BenchmarkSignedUpload sends 1 MiB POSTs through the gateway with a
// plain bearer rule (the body streams through) and with rules that must
// hash the whole body before the headers go out (hmac, httpsig's
// Content-Digest). The MB/s of the three is the cost of the hashing
// (issue 16: at least 0.9x the unsigned upload). cpu-ns/op is the
// process's CPU time per upload, the steadier figure on a shared machine.
func BenchmarkSignedUpload(b *testing.B) {
	pki := newTestPKI(b, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(b, pki, startOrigin(b, pki))
	writeFile(b, tg.dir, "policy.yaml", []byte(signingPolicy))
	tg.run(b, "resolve: {\"api.origin.test:443\": \""+tg.origin.addr+"\"}\n")
	drain := func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if n != 1<<20 {
			http.Error(w, "short body", http.StatusBadRequest)
		}
	}
	for _, p := range []string{"/plain/up", "/hmac/up", "/httpsig/up"} {
		tg.origin.route(p, drain)
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	for _, bc := range []struct{ name, path string }{{"bearer", "/plain/up"}, {"hmac", "/hmac/up"}, {"httpsig", "/httpsig/up"}} {
		b.Run(bc.name, func(b *testing.B) {
			c := tg.client(b, false)
			url := "https://" + apiHost + bc.path
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			defer func() {
				// Client, origin and gateway share the process; the
				// difference between the variants is the gateway's.
				b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			}()
			for i := 0; i < b.N; i++ {
				resp, err := c.Post(url, "application/octet-stream", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %s", resp.Status)
				}
			}
		})
	}
}
