package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fieldSpacePolicy lets a request through with the credential unless its
// X-Act-As starts with "admin".
const fieldSpacePolicy = `
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
  - name: not-admin
    from: local
    to: api
    when: '!("x-act-as" in request.headers) || !request.headers["x-act-as"].startsWith("admin")'
    inject: {credential: token, as: bearer}
default: deny
`

// TestFieldValueWhitespace is the class "a request field value that
// begins or ends with white space" (RFC 9113 §8.2.1: a malformed HTTP/2
// request). HTTP/1.1's parser removes it, so a condition judges the value
// the upstream gets; Go's HTTP/2 server passed it on, so a condition
// judged " admin" while the upstream — through the gateway's HTTP/1.1
// client, which writes values trimmed, or an HTTP/2 one, whose server
// may trim — acted on "admin": X-Act-As: " admin" passed
// !startsWith("admin") with the credential. Now every such HTTP/2
// request is refused 400 malformed_request with nothing sent, whichever
// field and whichever protocol the upstream speaks, and the HTTP/1.1
// spellings are judged as the upstream reads them. Before, all 14
// refusal cases were forwarded with the credential.
func TestFieldValueWhitespace(t *testing.T) {
	origin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%q %q", r.Header.Values("X-Act-As"), r.Header.Values("X-Note"))
	})
	h1Only := func(srv *httptest.Server) {
		srv.EnableHTTP2 = false
		srv.TLS.NextProtos = []string{"http/1.1"}
	}
	type want struct {
		status int
		code   string
		origin string // what the origin read, for 200
	}
	refused := want{http.StatusBadRequest, codeMalformedRequest, ""}
	h2Cases := []struct {
		field, value string
		want         want
	}{
		{"x-act-as", " admin", refused},
		{"x-act-as", "admin ", refused},
		{"x-act-as", "\tadmin", refused},
		{"x-act-as", "admin\t", refused},
		{"x-act-as", " bob", refused},
		{"x-act-as", " ", refused},
		{"x-note", " hello", refused},
		{"x-act-as", "admin", want{http.StatusForbidden, "condition_not_met", ""}},
		{"x-act-as", "bob", want{http.StatusOK, "", `["bob"] []`}},
		{"x-act-as", "ad min", want{http.StatusOK, "", `["ad min"] []`}},
		{"x-note", "a\tb", want{http.StatusOK, "", `[] ["a\tb"]`}},
		{"x-note", "", want{http.StatusOK, "", `[] [""]`}},
	}
	h1Cases := []struct {
		line string
		want want
	}{
		{"X-Act-As:  admin \r\n", want{http.StatusForbidden, "condition_not_met", ""}},
		{"X-Act-As:\tadmin\t\r\n", want{http.StatusForbidden, "condition_not_met", ""}},
		{"X-Act-As: \t bob \t\r\n", want{http.StatusOK, "", `["bob"] []`}},
		{"X-Note:  hello \r\n", want{http.StatusOK, "", `[] ["hello"]`}},
	}
	for _, up := range []struct {
		name      string
		configure func(*httptest.Server)
	}{{"h2 upstream", nil}, {"h1 upstream", h1Only}} {
		t.Run(up.name, func(t *testing.T) {
			tg := startEdgeGatewayPolicy(t, origin, up.configure, fieldSpacePolicy)
			for i, tc := range h2Cases {
				h := h2RawTunnel(t, tg, apiHost)
				h.headers(1, reqFields(fmt.Sprintf("/v1/h2/%d", i), [2]string{tc.field, tc.value}), true)
				a := h.read(1)[1]
				h.c.Close()
				if a.Status != fmt.Sprint(tc.want.status) || a.Field(ReasonHeader) != tc.want.code || (tc.want.status == http.StatusOK && string(a.Body) != tc.want.origin) {
					t.Errorf("HTTP/2 %s: %q: %s %s %q; want %d %s %q", tc.field, tc.value, a.Status, a.Field(ReasonHeader), a.Body, tc.want.status, tc.want.code, tc.want.origin)
				}
				if tc.want.status == http.StatusBadRequest && strings.Contains(string(a.Body), strings.TrimSpace(tc.value)+`"`) && strings.TrimSpace(tc.value) != "" {
					t.Errorf("HTTP/2 %s: %q: the refusal echoes the value: %s", tc.field, tc.value, a.Body)
				}
			}
			for i, tc := range h1Cases {
				c, br := h1TunnelTo(t, tg, apiHost)
				if _, err := io.WriteString(c, fmt.Sprintf("GET /v1/h1/%d HTTP/1.1\r\nHost: %s\r\n%s\r\n", i, apiHost, tc.line)); err != nil {
					t.Fatal(err)
				}
				resp, body := readResp(t, br, "GET")
				c.Close()
				if resp.StatusCode != tc.want.status || resp.Header.Get(ReasonHeader) != tc.want.code || (tc.want.status == http.StatusOK && body != tc.want.origin) {
					t.Errorf("HTTP/1.1 %q: %s %s %q; want %d %s %q", tc.line, resp.Status, resp.Header.Get(ReasonHeader), body, tc.want.status, tc.want.code, tc.want.origin)
				}
			}
		})
	}
}
