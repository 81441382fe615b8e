package gateway

import (
	"fmt"
	"golang.org/x/net/http2"
	"strings"
	"testing"
	"time"
)

// authorityPolicy denies a request whose header map, as conditions see
// it, has a Host field, under /v1/judged/: HTTP/1.1's server moves Host
// into the request's authority and out of the header map, so no request
// on any protocol may reach the inject rule there with one. /v1/plain/
// has no condition: what a Host field changes there is only whether the
// request is forwarded with the credential.
const authorityPolicy = `
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
  - name: host-field-judged
    from: local
    to: api
    paths: [/v1/judged/*]
    when: '"host" in request.headers'
    action: deny
  - name: v1
    from: local
    to: api
    paths: [/v1/*]
    inject: {credential: token, as: bearer}
default: deny
`

// TestRequestAuthorityAgrees is the class of "a request names another
// authority than the tunnel's, or carries a Host field the policy sees
// but the upstream does not": inside an intercepted tunnel, over
// HTTP/1.1 (written byte for byte) and HTTP/2 (frames written by hand:
// :authority and any Host fields), every name the request gives its
// authority must be the tunnel's destination, and what the policy's
// conditions see is the same on both protocols. A Host field that
// disagrees with the tunnel (another host, another port), or a second
// one, is refused (over HTTP/2 the server resets the stream itself for
// any Host field but one equal to :authority, audited http2_refused; 400
// malformed_request for two Host fields over HTTP/1.1, whose server
// refuses them, 421 host_mismatch for one that disagrees), audited, and
// never reaches the origin; one that agrees is no header of the request
// for conditions and injectors, as over HTTP/1.1. Before, HTTP/2 forwarded the request with the credential
// whatever Host fields it carried, and conditions judged them.
func TestRequestAuthorityAgrees(t *testing.T) {
	pki := newTestPKI(t, apiHost)
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(authorityPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", tg.origin.addr))
	cases := []struct {
		name  string
		hosts []string // Host fields; over HTTP/2 also beside :authority
		// noAuthority: the HTTP/2 request has no :authority (only
		// Host fields); ignored over HTTP/1.1.
		noAuthority bool
		h1Status    int
		h1Code      string
		h2Status    int
		h2Code      string
		// h2Reset: the HTTP/2 server resets the stream itself
		// (golang.org/x/net/http2), with this class in the audit line.
		h2Reset string
	}{
		{name: "authority-only", hosts: nil, h1Status: 400, h1Code: "malformed_request", h2Status: 200},
		{name: "same", hosts: []string{apiHost}, h1Status: 200, h2Status: 200},
		{name: "same-port", hosts: []string{apiHost + ":443"}, h1Status: 200, h2Reset: "stream_PROTOCOL_ERROR_authority_host_mismatch"},
		{name: "same-case", hosts: []string{"API.Origin.Test"}, h1Status: 200, h2Reset: "stream_PROTOCOL_ERROR_authority_host_mismatch"},
		{name: "host-only", hosts: []string{apiHost}, noAuthority: true, h1Status: 200, h2Status: 200},
		{name: "other-host", hosts: []string{"evil.example"}, h1Status: 421, h1Code: codeHostMismatch, h2Reset: "stream_PROTOCOL_ERROR_authority_host_mismatch"},
		{name: "other-port", hosts: []string{apiHost + ":8443"}, h1Status: 421, h1Code: codeHostMismatch, h2Reset: "stream_PROTOCOL_ERROR_authority_host_mismatch"},
		{name: "twice-same", hosts: []string{apiHost, apiHost}, h1Status: 400, h1Code: "malformed_request", h2Reset: "stream_PROTOCOL_ERROR_multiple_host_headers"},
		{name: "twice-other", hosts: []string{apiHost, "evil.example"}, h1Status: 400, h1Code: "malformed_request", h2Reset: "stream_PROTOCOL_ERROR_multiple_host_headers"},
		{name: "twice-other-first", hosts: []string{"evil.example", apiHost}, h1Status: 400, h1Code: "malformed_request", h2Reset: "stream_PROTOCOL_ERROR_multiple_host_headers"},
		{name: "empty", hosts: []string{""}, h1Status: 400, h1Code: "malformed_request", h2Reset: "stream_PROTOCOL_ERROR_authority_host_mismatch"},
	}
	for _, proto := range []string{"h1", "h2"} {
		for _, under := range []string{"judged", "plain"} {
			for i, tc := range cases {
				if proto == "h1" && tc.noAuthority {
					continue
				}
				t.Run(proto+"/"+under+"/"+tc.name, func(t *testing.T) {
					path := fmt.Sprintf("/v1/%s/%s/%d", under, proto, i)
					var status int
					var code string
					want, wantCode := tc.h2Status, tc.h2Code
					if proto == "h1" {
						want, wantCode = tc.h1Status, tc.h1Code
						var b strings.Builder
						fmt.Fprintf(&b, "GET %s HTTP/1.1\r\n", path)
						for _, h := range tc.hosts {
							fmt.Fprintf(&b, "Host: %s\r\n", h)
						}
						b.WriteString("\r\n")
						status, code = rawRequest(t, tg, apiHost, b.String())
					} else {
						h := h2RawTunnel(t, tg, apiHost)
						fields := [][2]string{{":method", "GET"}, {":scheme", "https"}}
						if !tc.noAuthority {
							fields = append(fields, [2]string{":authority", apiHost})
						}
						fields = append(fields, [2]string{":path", path})
						for _, v := range tc.hosts {
							fields = append(fields, [2]string{"host", v})
						}
						before := strings.Count(tg.audit.String(), `"http2_error":"`+tc.h2Reset+`"`)
						h.headers(1, fields, true)
						a := h.read(1)[1]
						if tc.h2Reset != "" {
							if !a.Reset || a.ErrCode != http2.ErrCodeProtocol {
								t.Fatalf("answered %q (reset %v %v), want the stream reset PROTOCOL_ERROR", a.Status, a.Reset, a.ErrCode)
							}
							waitFor(t, 5*time.Second, "the audit line of the reset", func() bool {
								return strings.Count(tg.audit.String(), `"http2_error":"`+tc.h2Reset+`"`) > before
							})
							for _, s := range tg.origin.all() {
								if s.Path == path {
									t.Errorf("reset, but the origin received %+v", s)
								}
							}
							return
						}
						if a.Reset {
							t.Fatalf("stream reset %v, want an answer", a.ErrCode)
						}
						fmt.Sscan(a.Status, &status)
						code = a.Field(ReasonHeader)
					}
					if status != want || code != wantCode {
						t.Errorf("answered %d %q, want %d %q", status, code, want, wantCode)
					}
					var forwarded []seen
					for _, s := range tg.origin.all() {
						if s.Path == path {
							forwarded = append(forwarded, s)
						}
					}
					switch {
					case want != 200 && len(forwarded) != 0:
						t.Errorf("refused, but the origin received %+v", forwarded)
					case want == 200 && (len(forwarded) != 1 || forwarded[0].Host != apiHost):
						t.Errorf("the origin received %+v, want one request for %s", forwarded, apiHost)
					}
					waitFor(t, 5*time.Second, "the audit line of "+path, func() bool {
						return strings.Contains(tg.audit.String(), `"path":"`+path+`"`) || (wantCode == "malformed_request" && strings.Contains(tg.audit.String(), `"code":"malformed_request"`))
					})
				})
			}
		}
	}
}

// TestHTTP2AuthoritySpellings: the :authority of an HTTP/2 request in an
// intercepted tunnel is read as the CONNECT target is. Its spellings of
// the tunnel's destination (case, a trailing dot, the default port
// written out, with leading zeros) are served, and the origin receives
// the one canonical Host and SNI; one naming another host or port, no
// host, or a host that ends in a number is refused 421 host_mismatch; one
// with userinfo is reset by the HTTP/2 server (RFC 9113 §8.3.1). Nothing
// refused reaches the origin. (All passed when written: kept beside
// TestRequestAuthorityAgrees, which varies the Host fields instead.)
func TestHTTP2AuthoritySpellings(t *testing.T) {
	pki := newTestPKI(t, apiHost)
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(authorityPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", tg.origin.addr))
	for i, tc := range []struct {
		authority string
		status    string // "" for a stream reset
		code      string
	}{
		{"API.ORIGIN.TEST", "200", ""},
		{"api.origin.test.", "200", ""},
		{"api.origin.test:443", "200", ""},
		{"api.origin.test:0443", "200", ""},
		{"evil.example", "421", codeHostMismatch},
		{"api.origin.test:8443", "421", codeHostMismatch},
		{"api.origin.test:443:443", "421", codeHostMismatch},
		{"[::1]", "421", codeHostMismatch},
		{"127.1", "421", codeHostMismatch},
		{"", "421", codeHostMismatch},
		{"u@api.origin.test", "", ""},
		{"api.origin.test@evil.example", "", ""},
	} {
		t.Run(tc.authority, func(t *testing.T) {
			h := h2RawTunnel(t, tg, apiHost)
			path := fmt.Sprintf("/v1/plain/authority/%d", i)
			h.headers(1, [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", tc.authority}, {":path", path}}, true)
			a := h.read(1)[1]
			if tc.status == "" {
				if !a.Reset || a.ErrCode != http2.ErrCodeProtocol {
					t.Fatalf("answered %q (reset %v %v), want the stream reset PROTOCOL_ERROR", a.Status, a.Reset, a.ErrCode)
				}
			} else if a.Status != tc.status || a.Field(ReasonHeader) != tc.code {
				t.Fatalf("answered %q %q (reset %v), want %s %q", a.Status, a.Field(ReasonHeader), a.Reset, tc.status, tc.code)
			}
			if tc.status != "200" {
				for _, s := range tg.origin.all() {
					if s.Path == path {
						t.Errorf("refused, but the origin received %+v", s)
					}
				}
				return
			}
			var got []seen
			for _, s := range tg.origin.all() {
				if s.Path == path {
					got = append(got, s)
				}
			}
			if len(got) != 1 || got[0].Host != apiHost || got[0].SNI != apiHost || got[0].Header.Get("Authorization") != "Bearer "+tg.token {
				t.Errorf("the origin received %+v, want one request with Host and SNI %s and the credential", got, apiHost)
			}
		})
	}
}

// TestAbsoluteFormInTunnel: an HTTP/1.1 request in an intercepted tunnel
// whose request line is in absolute form names its authority there (RFC
// 9112 §3.2.2: the Host field is then ignored); that authority must be
// the tunnel's destination, read as the CONNECT target is, and the origin
// receives the one canonical Host. Another host or port is 421
// host_mismatch, "//host/path" is a path (400 bad_path), and nothing
// refused reaches the origin. (All passed when written.)
func TestAbsoluteFormInTunnel(t *testing.T) {
	pki := newTestPKI(t, apiHost)
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(authorityPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", tg.origin.addr))
	for i, tc := range []struct {
		prefix, host string // request target is prefix+path; Host field
		status       int
		code         string
	}{
		{"https://api.origin.test", apiHost, 200, ""},
		{"https://API.ORIGIN.TEST.", apiHost, 200, ""},
		{"https://api.origin.test:443", apiHost, 200, ""},
		{"https://api.origin.test", "evil.example", 200, ""},
		{"http://api.origin.test:443", apiHost, 200, ""},
		{"https://evil.example", apiHost, 421, codeHostMismatch},
		{"https://api.origin.test:8443", apiHost, 421, codeHostMismatch},
		// The tunnel is https: the scheme changes nothing, the port
		// left out is the tunnel's 443.
		{"http://api.origin.test", apiHost, 200, ""},
		{"https://127.1", apiHost, 421, codeHostMismatch},
		{"//evil.example", apiHost, 400, codeBadPath},
	} {
		path := fmt.Sprintf("/v1/plain/absolute/%d", i)
		status, code := rawRequest(t, tg, apiHost, "GET "+tc.prefix+path+" HTTP/1.1\r\nHost: "+tc.host+"\r\n\r\n")
		if status != tc.status || code != tc.code {
			t.Errorf("GET %s%s (Host %s): %d %q, want %d %q", tc.prefix, path, tc.host, status, code, tc.status, tc.code)
		}
		var got []seen
		for _, s := range tg.origin.all() {
			if strings.HasSuffix(s.Path, path) {
				got = append(got, s)
			}
		}
		switch {
		case tc.status != 200 && len(got) != 0:
			t.Errorf("GET %s%s: refused, but the origin received %+v", tc.prefix, path, got)
		case tc.status == 200 && (len(got) != 1 || got[0].Host != apiHost || got[0].URI != path):
			t.Errorf("GET %s%s: the origin received %+v, want one request for %s%s", tc.prefix, path, got, apiHost, path)
		}
	}
}
