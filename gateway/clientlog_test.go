package gateway

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
)

// TestClientCannotFloodTheLog: a refusal a client can cause on every
// request — a forged token, a token of another workload than its
// certificate, an SNI other than the CONNECT target — is audited every
// time and logged at most once per reason code per clientLogEvery, the
// line saying how many it stands for; before, each was one info line,
// so a client (anonymous included) wrote to the log at will.
func TestClientCannotFloodTheLog(t *testing.T) {
	e := startIdentityGateway(t)
	billingCert := e.clientCert(t, "spiffe://test.example/ns/billing/sa/api")
	plain := startGateway(t) // its policy lets 127.0.0.1 CONNECT
	const n = 12
	cases := []struct {
		name, msg, code string
		tg              *testGateway
		send            func(t *testing.T, i int)
	}{
		{"forged-token", "identity did not verify", codeIdentityInvalid, e.testGateway, func(t *testing.T, i int) {
			e.get(t, &billingCert, e.token(t, "billing", true), fmt.Sprintf("/v1/forged-%d", i))
		}},
		{"conflicting-token", "identity did not verify", codeFactorConflict, e.testGateway, func(t *testing.T, i int) {
			e.get(t, &billingCert, e.token(t, "web", false), fmt.Sprintf("/v1/conflict-%d", i))
		}},
		{"sni-mismatch", "refused TLS handshake: SNI differs from the CONNECT target", codeSNIMismatch, plain, func(t *testing.T, i int) {
			conn, err := net.Dial("tcp", plain.gw.ProxyAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
			if resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			_ = tls.Client(conn, &tls.Config{ServerName: fmt.Sprintf("other-%d.test", i), RootCAs: plain.caPool}).Handshake()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			auditCode := `"code":"` + tc.code + `"`
			before := strings.Count(tc.tg.audit.String(), auditCode)
			logged := func() int { return strings.Count(tc.tg.logs.String(), `"msg":"`+tc.msg+`"`) }
			logBefore := logged()
			for i := range n {
				tc.send(t, i)
			}
			poll.True(t, 5*time.Second, "an audit line per refusal", func() bool {
				return strings.Count(tc.tg.audit.String(), auditCode)-before >= n
			})
			lines := logged() - logBefore
			if lines != 1 {
				t.Errorf("%d %q lines for %d refusals (%s), want 1", lines, tc.msg, n, tc.code)
			}
		})
	}
}
