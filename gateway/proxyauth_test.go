package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestProxyAuthorizationOnce: where a verifier reads Proxy-Authorization
// (a jwt issuer here), a CONNECT or absolute-URI request carrying it more
// than once is refused (403 identity_invalid), whichever comes first: only
// one could be verified, and a factor presented but not verified must
// never be ignored. The audit line names what was presented. A gateway
// that verifies no token ignores the field (e2e
// TestGatewayHeadersNotForwarded sends it twice through curl and Go).
func TestProxyAuthorizationOnce(t *testing.T) {
	e := startIdentityGateway(t)
	good, forged := e.token(t, "jobs", false), e.token(t, "jobs", true)
	for _, req := range []string{
		"CONNECT " + apiHost + ":443 HTTP/1.1\r\nHost: " + apiHost + ":443\r\nProxy-Authorization: Bearer " + good + "\r\nProxy-Authorization: Bearer " + forged + "\r\n\r\n",
		"CONNECT " + apiHost + ":443 HTTP/1.1\r\nHost: " + apiHost + ":443\r\nProxy-Authorization: Bearer " + good + "\r\nproxy-authorization: Bearer " + good + "\r\n\r\n",
		"GET http://" + apiHost + "/x HTTP/1.1\r\nHost: " + apiHost + "\r\nProxy-Authorization: Bearer " + good + "\r\nProxy-Authorization: Basic dTpx\r\n\r\n",
	} {
		c, err := net.Dial("tcp", e.gw.ProxyAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		c.Close()
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get(ReasonHeader) != "identity_invalid" {
			t.Errorf("%q: %s %q, want 403 identity_invalid", req[:30], resp.Status, resp.Header.Get(ReasonHeader))
		}
	}
	// The audit lines say what was presented, although the source factor
	// verified.
	waitFor(t, 5*time.Second, "the audit lines naming the presented scheme", func() bool {
		return strings.Count(e.audit.String(), `"proxy_authorization:bearer"`) >= 3
	})
}
