package gateway

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

func init() {
	injectors.Register(injectors.Module{Name: "gwtest-signer", New: func() injectors.Injector { return new(recordingSigner) }})
}

// recordingSigner stands for every injector that signs the request
// (sigv4, hmac, httpsig, azure-sharedkey: each signs the method, the
// request target and header fields, and the upstream checks the
// signature against what it receives). It records the request as it
// signs it, by the client's X-Probe-Id.
type recordingSigner struct{}

// signedView is a request as an injector saw it.
type signedView struct {
	target string
	header http.Header
	length int64
}

var signedViews sync.Map // X-Probe-Id -> signedView

func (recordingSigner) Inject(r *http.Request, _ *providers.Credential) error {
	target := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	signedViews.Store(r.Header.Get("X-Probe-Id"), signedView{target: target, header: r.Header.Clone(), length: r.ContentLength})
	r.Header.Set("Authorization", "Signed probe")
	return nil
}

const signedWirePolicy = `
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
  - name: signed
    from: local
    to: api
    inject: {credential: token, as: gwtest-signer}
default: deny
`

// TestSignedIsForwarded: what a signing injector signs is exactly what
// the upstream receives — the request target byte for byte, and every
// header field the injector saw, with the values it saw. Each case is a
// request whose hop-by-hop fields or query the gateway normalises (the
// forwarder used to do that after the injector had signed: a Keep-Alive
// or TE field, or a query with ';', was signed and then removed or
// rewritten, and the upstream refused the signature).
func TestSignedIsForwarded(t *testing.T) {
	pki := newTestPKI(t, apiHost)
	o := startOrigin(t, pki)
	tg := newTestGateway(t, pki, o)
	writeFile(t, tg.dir, "policy.yaml", []byte(signedWirePolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", o.addr))

	cases := []struct {
		name   string
		target string
		fields string // header lines, each ending in \r\n
	}{
		{"plain", "/v1/x?b=2&a=1&a=0", ""},
		{"Keep-Alive", "/v1/x", "Keep-Alive: timeout=5, max=100\r\n"},
		{"TE trailers", "/v1/x", "TE: trailers\r\n"},
		{"TE trailers and a coding", "/v1/x", "TE: trailers, deflate;q=0.5\r\n"},
		{"TE a coding alone", "/v1/x", "TE: gzip\r\n"},
		{"Connection keep-alive", "/v1/x", "Connection: keep-alive\r\n"},
		{"Connection naming a field", "/v1/x", "Connection: X-Hop\r\nX-Hop: 1\r\n"},
		{"Proxy-Connection", "/v1/x", "Proxy-Connection: keep-alive\r\n"},
		{"Trailer announced", "/v1/x", "Trailer: X-Checksum\r\n"},
		{"query with ;", "/v1/x?a=1;b=2&c=3", ""},
		{"query with ; alone", "/v1/x?a=1;b=2", ""},
		{"query with ; and repeated keys", "/v1/x?z=1&a=2;x&a=1", ""},
		{"upgrade spelled otherwise", "/v1/ws", "Connection: keep-alive, UPGRADE\r\nUpgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"},
		{"many hop fields", "/v1/x?q=1;2", "Connection: close\r\nKeep-Alive: 1\r\nTE: trailers\r\nUpgrade-Insecure-Requests: 1\r\n"},
		{"GET with a body", "/v1/x", "Content-Length: 5\r\n\r\nhello"},
		{"GET with an empty body", "/v1/x", "Content-Length: 0\r\n"},
		{"GET with a chunked body", "/v1/x", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"},
		{"obs-fold", "/v1/x", "X-Folded: a\r\n b\r\n"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("probe-%d", i)
			c, br := connectTLS(t, tg, apiHost, "", tg.caPool)
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nX-Probe-Id: %s\r\n%s\r\n", tc.target, apiHost, id, tc.fields)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			v, ok := signedViews.Load(id)
			if !ok {
				t.Fatalf("the injector did not see the request (status %d %q)", resp.StatusCode, body)
			}
			signed := v.(signedView)
			var got *seen
			for _, s := range tg.origin.all() {
				if s.Header.Get("X-Probe-Id") == id {
					got = &s
				}
			}
			if got == nil {
				t.Fatalf("the request did not reach the upstream (status %d %q)", resp.StatusCode, body)
			}
			if got.URI != signed.target {
				t.Errorf("the injector signed the target %q, the upstream received %q", signed.target, got.URI)
			}
			// Signers take the body's length from ContentLength (the
			// field in the map is the client's, and the transport writes
			// its own from ContentLength).
			if cl := got.Header.Get("Content-Length"); (signed.length > 0 && cl != fmt.Sprint(signed.length)) || (signed.length <= 0 && cl != "" && cl != "0") {
				t.Errorf("the injector signed a body of length %d, the upstream received Content-Length %q", signed.length, cl)
			}
			for k, want := range signed.header {
				if k == "Content-Length" {
					continue
				}
				if have := got.Header[k]; !slices.Equal(have, want) {
					t.Errorf("the injector signed %s: %q, the upstream received %q", k, want, have)
				}
			}
			if a := got.Header.Get("Authorization"); a != "Signed probe" {
				t.Errorf("the upstream received Authorization %q, want the signer's", a)
			}
			for k := range got.Header {
				if _, ok := signed.header[k]; !ok && k != "Authorization" && k != "Content-Length" && !strings.HasPrefix(k, "Traceparent") {
					t.Errorf("the upstream received %s: %q, which the injector did not see", k, got.Header[k])
				}
			}
		})
	}
}
