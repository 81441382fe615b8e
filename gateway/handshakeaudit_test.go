package gateway

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestTunnelHandshakeRefusalNamesWorkload: a TLS handshake that fails
// inside an intercepted tunnel is audited under the workload its CONNECT
// was admitted as. Before, every such line said "anonymous" with no
// factors, so a search of the audit log by workload missed its failed
// handshakes (a client that does not trust the interception CA, an SNI
// naming another host, bytes that are not TLS).
func TestTunnelHandshakeRefusalNamesWorkload(t *testing.T) {
	tg := startGateway(t)
	for _, tc := range []struct {
		name string
		code string
		talk func(c net.Conn)
	}{
		{"client does not trust the CA", codeClientTLSError, func(c net.Conn) {
			_ = tls.Client(c, &tls.Config{ServerName: apiHost, RootCAs: x509.NewCertPool()}).Handshake()
		}},
		{"SNI names another host", codeSNIMismatch, func(c net.Conn) {
			_ = tls.Client(c, &tls.Config{ServerName: tunnelHost, RootCAs: tg.caPool}).Handshake()
		}},
		{"not TLS", codeClientTLSError, func(c net.Conn) {
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
			_, _ = c.Read(make([]byte, 1))
		}},
		{"TLS 1.1 only", codeClientTLSError, func(c net.Conn) {
			_ = tls.Client(c, &tls.Config{ServerName: apiHost, RootCAs: tg.caPool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}).Handshake()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(auditLines(tg))
			c, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			tc.talk(c)
			var line map[string]any
			waitFor(t, 5*time.Second, "the handshake's audit line", func() bool {
				for _, l := range auditLines(tg)[before:] {
					if l["code"] == tc.code {
						line = l
						return true
					}
				}
				return false
			})
			if line["workload"] != "local" || line["host"] != apiHost || line["method"] != http.MethodConnect || line["decision"] != "deny" {
				t.Errorf("audit line: workload %v host %v method %v decision %v; want local, %s, CONNECT, deny", line["workload"], line["host"], line["method"], line["decision"], apiHost)
			}
		})
	}
}
