package gateway

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCredentialFaultEvicts: an error that is the credential value's
// fault drops it from the cache, and the next request after the error
// backoff (50ms) gets the value the source holds now; an error that is
// the request's fault keeps it. Value faults: a placeholder's secret that
// cannot be placed (placeholder_unsafe: a whole ".." path segment) and an
// httpsig key that does not parse; request faults: a body over the hmac and
// httpsig injectors' max_body (413) from the same credential as a good
// request.
func TestCredentialFaultEvicts(t *testing.T) {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	edPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	badPEM := "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"

	pki := newTestPKI(t, apiHost)
	o := startOrigin(t, pki)
	tg := newTestGateway(t, pki, o)
	file := func(name string) string { return filepath.Join(tg.dir, name) }
	for name, v := range map[string]string{"ph": "..", "sig": badPEM, "hmac-secret": "s3cr3t", "hmac-key": "old-key", "hsig": edPEM, "hsig-id": "old-id"} {
		writeFile(t, tg.dir, name, []byte(v))
	}
	writeFile(t, tg.dir, "policy.yaml", []byte(fmt.Sprintf(`workloads:
  local: {cidrs: [127.0.0.1/32]}
destinations:
  api: {hosts: [api.origin.test], allow_private: true}
credentials:
  ph: {provider: static, file: %q, placeholder: CREDGATE_PH_fault}
  sig: {provider: static, fields: {private_key: {file: %q}}}
  hm: {provider: static, fields: {secret: {file: %q}, api_key: {file: %q}}}
  hs: {provider: static, fields: {private_key: {file: %q}, kid: {file: %q}}}
rules:
  - {name: ph, from: local, to: api, paths: [/ph/*], inject: {credential: ph, as: placeholder}}
  - {name: sig, from: local, to: api, paths: [/sig/*], inject: {credential: sig, as: httpsig, key_id: k}}
  - name: hm
    from: local
    to: api
    paths: [/hm/*]
    inject: {credential: hm, as: hmac, string_to_sign: "{{.body_sha256}}", signature: {header: X-Sig}, max_body: 8, headers: {X-Key: "{{.api_key}}"}}
  - {name: hs, from: local, to: api, paths: [/hs/*], inject: {credential: hs, as: httpsig, key_id_field: kid, max_body: 8}}
default: deny
`, file("ph"), file("sig"), file("hmac-secret"), file("hmac-key"), file("hsig"), file("hsig-id"))))
	tg.run(t, fmt.Sprintf("cache: {error_backoff: 50ms, default_ttl: 5m}\nresolve: {%q: %q}\n", apiHost+":443", o.addr))
	c := tg.client(t, false)
	send := func(t *testing.T, method, path, body string) (*http.Response, *seen) {
		t.Helper()
		resp, _ := do(t, c, method, "https://"+apiHost+path, nil, strings.NewReader(body))
		for _, s := range o.all() {
			if s.Path == path || strings.HasPrefix(path, "/ph/") && strings.HasSuffix(s.Path, "/evict") {
				return resp, &s
			}
		}
		return resp, nil
	}

	failed, total := 0, 0
	t.Run("value", func(t *testing.T) {
		for _, tc := range []struct {
			name, path, code string
			fix              func()
			// fixed reports whether what the origin saw is the fixed value.
			fixed func(s *seen) bool
		}{
			{"placeholder_unsafe", "/ph/CREDGATE_PH_fault/evict", codePlaceholderUnsafe,
				func() { writeFile(t, tg.dir, "ph", []byte("good-segment")) },
				func(s *seen) bool { return s.Path == "/ph/good-segment/evict" }},
			{"httpsig key", "/sig/evict", codeInjectFailed,
				func() { writeFile(t, tg.dir, "sig", []byte(edPEM)) },
				func(s *seen) bool { return strings.Contains(s.Header.Get("Signature-Input"), `keyid="k"`) }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				total++
				if resp, _ := send(t, http.MethodGet, tc.path, ""); resp.StatusCode == http.StatusOK || resp.Header.Get(ReasonHeader) != tc.code {
					t.Fatalf("the unusable value: %s %s, want %s", resp.Status, resp.Header.Get(ReasonHeader), tc.code)
				}
				tc.fix()
				deadline := time.Now().Add(3 * time.Second)
				for {
					resp, s := send(t, http.MethodGet, tc.path, "")
					if resp.StatusCode == http.StatusOK && s != nil && tc.fixed(s) {
						return
					}
					if time.Now().After(deadline) {
						failed++
						t.Errorf("after the source was fixed: %s %s; want 200 with the source's new value after the error backoff (the unusable value was kept)", resp.Status, resp.Header.Get(ReasonHeader))
						return
					}
					<-time.After(10 * time.Millisecond) // poll until the backoff has passed
				}
			})
		}
	})
	t.Run("request", func(t *testing.T) {
		for _, tc := range []struct {
			name, prefix, file, header, old string
		}{
			{"hmac body over max_body", "/hm/", "hmac-key", "X-Key", "old-key"},
			{"httpsig body over max_body", "/hs/", "hsig-id", "Signature-Input", `keyid="old-id"`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				total++
				check := func(what string) {
					t.Helper()
					resp, s := send(t, http.MethodGet, tc.prefix+what, "")
					if resp.StatusCode != http.StatusOK || s == nil || !strings.Contains(s.Header.Get(tc.header), tc.old) {
						failed++
						t.Errorf("%s: %s %s, origin saw %v; want 200 with the cached credential (%s)", what, resp.Status, resp.Header.Get(ReasonHeader), s != nil, tc.old)
					}
				}
				check("first")
				if resp, _ := send(t, http.MethodPost, tc.prefix+"big", "0123456789abcdef"); resp.StatusCode != http.StatusRequestEntityTooLarge {
					t.Fatalf("a body over max_body: %s, want 413", resp.Status)
				}
				// The source changes: a kept credential is still the old one.
				writeFile(t, tg.dir, tc.file, []byte("new-value"))
				check("after")
			})
		}
	})
	t.Logf("%d of %d cases failed", failed, total)
}
