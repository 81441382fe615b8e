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

// TestProxyAuthorizationOnce: a CONNECT or absolute-URI request carrying
// Proxy-Authorization more than once is refused (403 identity_invalid):
// only one could be verified, and a factor presented but not verified
// must never be ignored.
func TestProxyAuthorizationOnce(t *testing.T) {
	tg := startGateway(t)
	for _, req := range []string{
		"CONNECT " + apiHost + ":443 HTTP/1.1\r\nHost: " + apiHost + ":443\r\nProxy-Authorization: Bearer a.b.c\r\nProxy-Authorization: Bearer d.e.f\r\n\r\n",
		"GET http://" + apiHost + "/x HTTP/1.1\r\nHost: " + apiHost + "\r\nProxy-Authorization: Basic dTpw\r\nproxy-authorization: Basic dTpx\r\n\r\n",
	} {
		c, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
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
			t.Errorf("%q: %s %q, want 403 identity_invalid", req[:20], resp.Status, resp.Header.Get(ReasonHeader))
		}
	}
	// The audit lines say what was presented, although the source factor
	// verified.
	waitFor(t, 5*time.Second, "the audit lines naming the presented schemes", func() bool {
		a := tg.audit.String()
		return strings.Contains(a, `"proxy_authorization:bearer"`) && strings.Contains(a, `"proxy_authorization:basic"`)
	})
}
