package gateway

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// malformedAudited returns the audit lines with code malformed_request.
func malformedAudited(tg *testGateway) []map[string]any {
	var out []map[string]any
	for line := range strings.SplitSeq(tg.audit.String(), "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(line), &ev) == nil && ev["code"] == codeMalformedRequest {
			out = append(out, ev)
		}
	}
	return out
}

// TestMalformedRequestAudited is the class of "a request that the
// gateway's HTTP/1.1 server answers itself" (it cannot read it, or will
// not serve it) on each listener it serves: inside an intercepted
// tunnel, and on the proxy listeners (listen and tls_listen, where the
// request would be an absolute-form one): a request target that does not
// parse, a control byte in it, a header block over the limit, an HTTP
// version other than 1.x, no Host, an invalid header field name or
// value, an Expect other than 100-continue, garbage. Each is answered
// with its status and the code malformed_request (header and JSON body),
// counted in credgate_refusals_total and credgate_requests_total, and
// audited exactly once with the connection's workload (and, in a tunnel,
// its destination), the method and path only when they parsed, and none
// of the bytes sent. Before, they were answered in plain text with no
// code, no count and no audit line: in tunnels until the h1 server's
// Refused, on the proxy listeners until h1 served them (net/http's
// server answered there).
func TestMalformedRequestAudited(t *testing.T) {
	tg := startGateway(t)
	host := "Host: " + apiHost + "\r\n"
	// {T} in a case's request is the target's prefix: empty in a tunnel
	// (origin form), the destination on a proxy listener (absolute form).
	cases := []struct {
		name   string
		send   string
		status int
		// method and path in the audit line ("" when the request line
		// did not parse); marker is a part of send that must appear in
		// no audit line or log.
		method, path, marker string
	}{
		{"bad percent-encoding", "GET {T}/v1/%xq-mark1 HTTP/1.1\r\n" + host + "\r\n", 400, "", "", "q-mark1"},
		{"raw DEL in target", "GET {T}/v1/\x7fq-mark2 HTTP/1.1\r\n" + host + "\r\n", 400, "", "", "q-mark2"},
		{"raw NUL in target", "GET {T}/v1/\x00q-mark3 HTTP/1.1\r\n" + host + "\r\n", 400, "", "", "q-mark3"},
		{"oversized header", "GET {T}/v1/big HTTP/1.1\r\n" + host + "X-Big: q-mark4" + strings.Repeat("b", 100<<10) + "\r\n\r\n", 431, "", "", "q-mark4"},
		{"HTTP/2.0 request line", "GET {T}/v1/q-mark5 HTTP/2.0\r\n" + host + "\r\n", 505, "", "", "q-mark5"},
		{"missing Host", "GET {T}/v1/nohost HTTP/1.1\r\nX-A: q-mark6\r\n\r\n", 400, "GET", "/v1/nohost", "q-mark6"},
		{"two Hosts", "GET {T}/v1/q-mark7 HTTP/1.1\r\n" + host + host + "\r\n", 400, "", "", "q-mark7"},
		{"bad header field name", "GET {T}/v1/badname HTTP/1.1\r\n" + host + "X q-mark8: b\r\n\r\n", 400, "GET", "/v1/badname", "q-mark8"},
		{"bad header field value", "GET {T}/v1/q-mark9 HTTP/1.1\r\n" + host + "X-A: b\x01c\r\n\r\n", 400, "", "", "q-mark9"},
		{"header line without colon", "GET {T}/v1/q-mark10 HTTP/1.1\r\n" + host + "NoColon\r\n\r\n", 400, "", "", "q-mark10"},
		{"Expect other than 100-continue", "POST {T}/echo HTTP/1.1\r\n" + host + "Expect: q-mark11\r\nContent-Length: 1\r\n\r\nx", 417, "POST", "/echo", "q-mark11"},
		{"bare-LF garbage", "\x16\x03q-mark12 garbage\n\n", 400, "", "", "q-mark12"},
		{"HTTP/2 prior knowledge", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "", "", ""},
	}
	dialTLSListener := func(t *testing.T) (net.Conn, *bufio.Reader) {
		c, err := tls.Dial("tcp", tg.gw.TLSProxyAddr().String(), &tls.Config{ServerName: "credgate.test", RootCAs: tg.pki.pool, Certificates: []tls.Certificate{tg.tlsCert}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		return c, bufio.NewReader(c)
	}
	listeners := []struct {
		name   string
		dial   func(t *testing.T) (net.Conn, *bufio.Reader)
		target string
		// host and port in the audit line: the tunnel's destination; on
		// a proxy listener the request named none that was read.
		host string
		port float64
	}{
		{"tunnel", func(t *testing.T) (net.Conn, *bufio.Reader) { return h1Tunnel(t, tg) }, "", apiHost, 443},
		{"listen", func(t *testing.T) (net.Conn, *bufio.Reader) {
			c, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			_ = c.SetDeadline(time.Now().Add(15 * time.Second))
			return c, bufio.NewReader(c)
		}, "http://" + apiHost, "", 0},
		{"tls_listen", dialTLSListener, "http://" + apiHost, "", 0},
	}
	byStatus := map[int]int{}
	n := 0
	for _, l := range listeners {
		for _, tc := range cases {
			t.Run(l.name+"/"+tc.name, func(t *testing.T) {
				c, br := l.dial(t)
				send := strings.ReplaceAll(tc.send, "{T}", l.target)
				go func() { _, _ = io.WriteString(c, send) }()
				resp, body := readResp(t, br, "GET")
				var f refusal
				if err := json.Unmarshal([]byte(body), &f); err != nil {
					t.Fatalf("%s, body %q: %v", resp.Status, body, err)
				}
				if resp.StatusCode != tc.status || resp.Header.Get(ReasonHeader) != codeMalformedRequest || f.Code != codeMalformedRequest || f.Reason == "" || !resp.Close {
					t.Fatalf("%s %s=%q close=%v body %q, want %d %s and close", resp.Status, ReasonHeader, resp.Header.Get(ReasonHeader), resp.Close, body, tc.status, codeMalformedRequest)
				}
				expectClosed(t, c, br, 5*time.Second)
				byStatus[tc.status]++
				n++
				var evs []map[string]any
				waitFor(t, 10*time.Second, "the audit line", func() bool {
					evs = malformedAudited(tg)
					return len(evs) >= n
				})
				if len(evs) != n {
					t.Fatalf("%d malformed_request audit lines after %d requests, want one each", len(evs), n)
				}
				ev := evs[n-1]
				if ev["workload"] != "local" || ev["host"] != l.host || ev["port"] != l.port || ev["decision"] != "deny" ||
					ev["status"] != float64(tc.status) || ev["method"] != tc.method || ev["path"] != tc.path || ev["source"] != "127.0.0.1" {
					t.Errorf("audit line %v, want workload local, host %q port %v, deny %d, method %q path %q, source 127.0.0.1", ev, l.host, l.port, tc.status, tc.method, tc.path)
				}
				if tc.marker != "" && (strings.Contains(tg.audit.String(), tc.marker) || strings.Contains(tg.logs.String(), tc.marker)) {
					t.Errorf("the audit or log output holds bytes of the request (%q)", tc.marker)
				}
			})
		}
	}
	if got, want := metric(t, tg, `credgate_refusals_total{code="malformed_request"}`), fmt.Sprintf(`credgate_refusals_total{code="malformed_request"} %d`, n); got != want {
		t.Errorf("metric %q, want %q", got, want)
	}
	for status, n := range byStatus {
		prefix := fmt.Sprintf(`credgate_requests_total{decision="deny",rule="",status="%d"}`, status)
		if got, want := metric(t, tg, prefix), fmt.Sprintf("%s %d", prefix, n); got != want {
			t.Errorf("metric %q, want %q", got, want)
		}
	}
	// Still serving.
	c, br := h1Tunnel(t, tg)
	fmt.Fprintf(c, "GET /v1/fine HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
	if _, body := readResp(t, br, "GET"); body != "ok /v1/fine" {
		t.Fatalf("after malformed requests: %q", body)
	}
}
