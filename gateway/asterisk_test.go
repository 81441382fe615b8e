package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestAsteriskFormRefused: OPTIONS * (the asterisk-form, RFC 9112 3.2.4)
// asks a server about itself, which no rule names: the gateway refuses
// it with 400 and a reason, and audits it, on the plain proxy listener,
// in an HTTP/1.1 tunnel and over HTTP/2 in a tunnel — net/http's servers
// would otherwise answer it 200 on their own, unaudited.
func TestAsteriskFormRefused(t *testing.T) {
	tg := startCanonGateway(t)
	check := func(t *testing.T, status int, reason string) {
		t.Helper()
		if status != http.StatusBadRequest || reason == "" {
			t.Errorf("OPTIONS * answered %d with reason %q, want 400 with a reason", status, reason)
		}
	}
	t.Run("proxy listener", func(t *testing.T) {
		c, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "OPTIONS * HTTP/1.1\r\nHost: "+apiHost+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		check(t, resp.StatusCode, resp.Header.Get(ReasonHeader))
	})
	t.Run("HTTP/1.1 tunnel", func(t *testing.T) {
		status, reason := rawRequest(t, tg, apiHost, "OPTIONS * HTTP/1.1\r\nHost: "+apiHost+"\r\n\r\n")
		check(t, status, reason)
	})
	t.Run("HTTP/2 tunnel", func(t *testing.T) {
		req := &http.Request{Method: http.MethodOptions, URL: &url.URL{Scheme: "https", Host: apiHost, Opaque: "*"}, Host: apiHost, Header: http.Header{}}
		resp, err := tg.client(t, true).Do(req.WithContext(t.Context()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("spoke %s, want HTTP/2", resp.Proto)
		}
		check(t, resp.StatusCode, resp.Header.Get(ReasonHeader))
	})
	if n := len(tg.origin.all()); n != 0 {
		t.Errorf("the origin received %d request(s)", n)
	}
	waitFor(t, 5*time.Second, "three audit lines of OPTIONS refused with 400", func() bool {
		n := 0
		for l := range strings.SplitSeq(tg.audit.String(), "\n") {
			if strings.Contains(l, `"method":"OPTIONS"`) && strings.Contains(l, `"status":400`) {
				n++
			}
		}
		return n == 3
	})
}
