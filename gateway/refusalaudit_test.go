package gateway

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/freeport"
	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/internal/testpki"
	"github.com/credgate/credgate/policy"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestEveryRefusalAuditedOnce is the class "every request or connection
// the gateway refuses or cuts leaves exactly one audit line with its
// reason code": through a real gateway, a malformed CONNECT, a CONNECT no
// rule allows, a request in origin form, an unreadable request, an
// absolute URI of another scheme or host, a path, a method or a Host the
// gateway will not forward inside a tunnel, a credential that is not
// configured, an SNI naming another host, and TLS handshakes with the
// gateway that fail — a client that sends no TLS inside a tunnel or on
// tls_listen, one that does not trust the interception CA, and an
// untrusted client certificate on tls_listen (identity_invalid) — each
// leave one line, with the code, and (checked at cleanup) no secret.
// Before, the 4 failed handshakes left none: a debug log line only.
// What Go's HTTP/2 server refuses before a handler runs is
// TestEveryHTTP2RefusalAuditedOnce's.
func TestEveryRefusalAuditedOnce(t *testing.T) {
	tg := startGateway(t)
	untrusted, err := testpki.NewAuthority("untrusted client CA")
	if err != nil {
		t.Fatal(err)
	}
	badClient, err := untrusted.ClientLeaf("intruder")
	if err != nil {
		t.Fatal(err)
	}
	dial := func(t *testing.T, listener string) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", tg.listenerAddr(listener))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		return c
	}
	// raw sends s on a proxy listener connection and reads the answer.
	raw := func(t *testing.T, s string) {
		c := dial(t, "listen")
		fmt.Fprint(c, s)
		_, _ = http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
	}
	// connect opens a CONNECT tunnel to host and returns the connection
	// after the gateway's 200.
	connect := func(t *testing.T, host string) net.Conn {
		c := dial(t, "listen")
		fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", host, host)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusOK || br.Buffered() > 0 {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
		return c
	}
	inTunnel := func(t *testing.T, s string) {
		tc, br := h1Tunnel(t, tg)
		fmt.Fprint(tc, s)
		_, _ = http.ReadResponse(br, nil)
		tc.Close()
	}
	cases := []refusalCase{
		{"CONNECT without a port", codeBadConnectTarget, func(t *testing.T, m string) {
			raw(t, "CONNECT "+m+".test HTTP/1.1\r\nHost: x\r\n\r\n")
		}},
		{"CONNECT no rule allows", "no_rule", func(t *testing.T, m string) {
			raw(t, "CONNECT "+m+".test:443 HTTP/1.1\r\nHost: "+m+".test:443\r\n\r\n")
		}},
		{"origin form on the proxy listener", codeNotProxyRequest, func(t *testing.T, m string) {
			raw(t, "GET /"+m+" HTTP/1.1\r\nHost: x\r\n\r\n")
		}},
		{"request line that does not parse", codeMalformedRequest, func(t *testing.T, m string) {
			raw(t, "GET http://"+apiHost+"/"+m+"%zz HTTP/1.1\r\nHost: "+apiHost+"\r\n\r\n")
		}},
		{"absolute URI of another scheme", codeBadRequest, func(t *testing.T, m string) {
			raw(t, "GET ftp://"+apiHost+"/"+m+" HTTP/1.1\r\nHost: "+apiHost+"\r\n\r\n")
		}},
		{"absolute URI no rule allows", "no_rule", func(t *testing.T, m string) {
			raw(t, "GET http://"+m+".test/x HTTP/1.1\r\nHost: "+m+".test\r\n\r\n")
		}},
		{"tunnel: empty path segment", codeBadPath, func(t *testing.T, m string) {
			inTunnel(t, "GET /v1/"+m+"//x HTTP/1.1\r\nHost: "+apiHost+"\r\n\r\n")
		}},
		{"tunnel: lower-case method", policy.CodeBadMethod, func(t *testing.T, m string) {
			inTunnel(t, "get /v1/"+m+" HTTP/1.1\r\nHost: "+apiHost+"\r\n\r\n")
		}},
		{"tunnel: Host of another destination", codeHostMismatch, func(t *testing.T, m string) {
			inTunnel(t, "GET /v1/"+m+" HTTP/1.1\r\nHost: "+tunnelHost+"\r\n\r\n")
		}},
		{"tunnel: credential not configured", codeCredentialNotConfigured, func(t *testing.T, m string) {
			inTunnel(t, "GET /unavailable/"+m+" HTTP/1.1\r\nHost: "+apiHost+"\r\n\r\n")
		}},
		{"tunnel: SNI of another host", codeSNIMismatch, func(t *testing.T, _ string) {
			c := connect(t, apiHost)
			_ = tls.Client(c, &tls.Config{ServerName: tunnelHost, RootCAs: tg.caPool}).Handshake()
			c.Close()
		}},
		{"tunnel: no TLS from the client", codeClientTLSError, func(t *testing.T, _ string) {
			c := connect(t, apiHost)
			fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: "+apiHost+"\r\n\r\n")
			_, _ = c.Read(make([]byte, 512))
			c.Close()
		}},
		{"tunnel: the client does not trust the interception CA", codeClientTLSError, func(t *testing.T, _ string) {
			c := connect(t, apiHost)
			_ = tls.Client(c, &tls.Config{ServerName: apiHost}).Handshake()
			c.Close()
		}},
		{"tls_listen: an untrusted client certificate", codeIdentityInvalid, func(t *testing.T, _ string) {
			c := dial(t, "tls_listen")
			// Presented whatever CAs the gateway asks for (a client
			// given Certificates sends none that no such CA signed).
			tc := tls.Client(c, &tls.Config{ServerName: "credgate.test", RootCAs: tg.pki.pool,
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &badClient, nil }})
			if err := tc.Handshake(); err == nil {
				// TLS 1.3: the client learns of the refusal on its first read.
				_, _ = tc.Read(make([]byte, 1))
			}
			c.Close()
		}},
		// A request the client started and left unfinished: one line,
		// client_aborted, wherever the cut falls and however the
		// connection ends (before, a cut inside the request line or a
		// field name, or a TLS end without close_notify, was audited as
		// malformed_request 400, any other cut not at all;
		// TestRequestCutShortAudited has the timeouts).
		{"request cut in its request line", codeRequestBodyAborted, func(t *testing.T, m string) {
			c := dial(t, "listen")
			fmt.Fprint(c, "GET http://"+apiHost+"/v1/"+m+" HT")
			c.Close()
		}},
		{"request cut after a field", codeRequestBodyAborted, func(t *testing.T, m string) {
			c := dial(t, "listen")
			fmt.Fprint(c, "GET http://"+apiHost+"/v1/"+m+" HTTP/1.1\r\nHost: "+apiHost+"\r\n")
			c.Close()
		}},
		{"CONNECT cut in a field name", codeRequestBodyAborted, func(t *testing.T, m string) {
			c := dial(t, "listen")
			fmt.Fprint(c, "CONNECT "+apiHost+":443 HTTP/1.1\r\nHo")
			c.Close()
		}},
		{"tunnel: request cut, TLS close_notify", codeRequestBodyAborted, func(t *testing.T, m string) {
			tc, _ := h1Tunnel(t, tg)
			fmt.Fprint(tc, "GET /v1/"+m+" HTTP/1.1\r\nHost: "+apiHost+"\r\n")
			tc.Close()
		}},
		{"tunnel: request cut, no close_notify", codeRequestBodyAborted, func(t *testing.T, m string) {
			tc, _ := h1Tunnel(t, tg)
			fmt.Fprint(tc, "GET /v1/"+m+" HTTP/1.1\r\nHost: "+apiHost+"\r\n")
			tc.NetConn().Close()
		}},
		// The same over HTTP/2 inside a tunnel (before, no line).
		{"tunnel h2: connection preface cut", codeRequestBodyAborted, func(t *testing.T, _ string) {
			c := h2TLSTunnel(t, tg, apiHost)
			_, _ = io.WriteString(c, http2.ClientPreface[:10])
			c.Close()
		}},
		{"tunnel h2: header block without END_HEADERS", codeRequestBodyAborted, func(t *testing.T, m string) {
			h := h2RawTunnel(t, tg, apiHost)
			h.hbuf.Reset()
			for _, f := range reqFields("/v1/" + m) {
				_ = h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			_ = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.hbuf.Bytes(), EndHeaders: false})
			h.c.Close()
		}},
		{"tunnel h2: HEADERS frame cut in its payload", codeRequestBodyAborted, func(t *testing.T, _ string) {
			h := h2RawTunnel(t, tg, apiHost)
			// A HEADERS frame header of stream 1 announcing 40 bytes, and 5.
			_, _ = h.c.Write([]byte{0, 0, 40, byte(http2.FrameHeaders), byte(http2.FlagHeadersEndHeaders), 0, 0, 0, 1, 0x82, 0x87, 0x84, 0x41, 0x01})
			h.c.Close()
		}},
		{"tls_listen: no TLS from the client", codeClientTLSError, func(t *testing.T, _ string) {
			c := dial(t, "tls_listen")
			fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			_, _ = c.Read(make([]byte, 512))
			c.Close()
		}},
	}
	checkOneAuditLineEach(t, tg, cases)
}

// refusalCase is one way to be refused: send provokes it, with marker in
// the request's path or host where it has one.
type refusalCase struct {
	name, code string
	send       func(t *testing.T, marker string)
}

// sendRaw sends s on a new connection to the plain proxy listener and
// reads the answer.
func sendRaw(t *testing.T, tg *testGateway, s string) {
	t.Helper()
	c, err := net.Dial("tcp", tg.listenerAddr("listen"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprint(c, s)
	_, _ = http.ReadResponse(bufio.NewReader(c), nil)
}

// auditLines returns the audit lines the gateway wrote so far, parsed.
func auditLines(tg *testGateway) []map[string]any {
	var out []map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(tg.audit.String()), "\n") {
		var ev map[string]any
		if l != "" && json.Unmarshal([]byte(l), &ev) == nil {
			out = append(out, ev)
		}
	}
	return out
}

// linesBeforeSentinel sends a refusal to the host sentinel+".test" and
// returns the audit lines from the from'th up to the sentinel's: once
// the sentinel's line is written, every line of what came before it is.
func linesBeforeSentinel(t *testing.T, tg *testGateway, from int, sentinel string) []map[string]any {
	t.Helper()
	sendRaw(t, tg, "GET http://"+sentinel+".test/x HTTP/1.1\r\nHost: "+sentinel+".test\r\n\r\n")
	var got []map[string]any
	waitFor(t, 10*time.Second, "the sentinel's audit line", func() bool {
		all := auditLines(tg)
		for j := from; j < len(all); j++ {
			if all[j]["host"] == sentinel+".test" {
				got = all[from:j]
				return true
			}
		}
		return false
	})
	return got
}

// checkOneAuditLineEach runs the cases one after the other and checks
// that each left exactly one audit line, with its code: the lines
// between the case and a sentinel refusal sent after it (once the
// sentinel's line is written, every line of the case is).
func checkOneAuditLineEach(t *testing.T, tg *testGateway, cases []refusalCase) {
	t.Helper()
	lines := func() []map[string]any { return auditLines(tg) }
	missing := 0
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			from := len(lines())
			marker := fmt.Sprintf("refusal-%d", i)
			c.send(t, marker)
			// The gateway may see the client's end of a handshake after
			// the client returned: wait (boundedly) for the case's line.
			_ = poll.Within(5*time.Second, func() bool {
				for _, ev := range lines()[from:] {
					if ev["code"] == c.code {
						return true
					}
				}
				return false
			})
			// A sentinel refusal after the case: once its line is
			// written, every line of the case is too.
			sentinel := fmt.Sprintf("sentinel-%d", i)
			got := linesBeforeSentinel(t, tg, from, sentinel)
			if len(got) != 1 || got[0]["code"] != c.code {
				missing++
				t.Errorf("%d audit lines, want exactly one with code %s: %v\n%s", len(got), c.code, got, tg.logs.String())
				return
			}
			if c.code == codeIdentityInvalid {
				if p, _ := got[0]["presented"].([]any); len(p) != 2 || p[1] != "client_certificate" {
					t.Errorf("presented %v, want [source client_certificate]", got[0]["presented"])
				}
			}
		})
	}
	t.Logf("%d of %d refusals without exactly one audit line", missing, len(cases))
}

const refusalPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
  dead:
    hosts: [dead.origin.test]
    allow_private: true
  private:
    hosts: [tunnel.origin.test]
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
rules:
  - name: no-admin
    from: local
    to: api
    paths: [/v1/admin/*]
    action: deny
  - name: limited
    from: local
    to: api
    methods: [GET]
    paths: [/limited/*]
    rate_limit: {rps: 0.001, burst: 1}
    inject: {credential: token, as: bearer}
  - name: reads
    from: local
    to: api
    methods: [GET]
    paths: [/v1/*]
    inject: {credential: token, as: bearer}
  - name: dead
    from: local
    to: dead
    inject: {credential: token, as: bearer}
  - name: private
    from: local
    to: private
    inject: {credential: token, as: bearer}
default: deny
`

// TestEveryPolicyRefusalAuditedOnce is TestEveryRefusalAuditedOnce for
// what the policy, its limits and the upstream refuse: a deny rule, a
// method and a path no rule admits, a rate limit, a destination that
// resolves to a private address, an upstream that refuses connections and
// a header block over limits.max_header_bytes.
func TestEveryPolicyRefusalAuditedOnce(t *testing.T) {
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(refusalPolicy))
	deadAddr := freeport.Addr(t) // nothing listens there
	tg.run(t, fmt.Sprintf("limits: {max_header_bytes: 4096}\nresolve:\n  \"api.origin.test:443\": %q\n  \"tunnel.origin.test:443\": %q\n  \"dead.origin.test:443\": %q\n",
		tg.origin.addr, tg.origin.addr, deadAddr))
	get := func(host, path string, extra ...string) func(*testing.T, string) {
		return func(t *testing.T, m string) {
			tc, br := h1TunnelTo(t, tg, host)
			fmt.Fprintf(tc, "%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", "GET", strings.ReplaceAll(path, "MARK", m), host, strings.Join(extra, ""))
			_, _ = http.ReadResponse(br, nil)
			tc.Close()
		}
	}
	method := func(meth string) func(*testing.T, string) {
		return func(t *testing.T, m string) {
			tc, br := h1TunnelTo(t, tg, apiHost)
			fmt.Fprintf(tc, "%s /v1/%s HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n\r\n", meth, m, apiHost)
			_, _ = http.ReadResponse(br, nil)
			tc.Close()
		}
	}
	checkOneAuditLineEach(t, tg, []refusalCase{
		{"a deny rule", "denied_by_rule", get(apiHost, "/v1/admin/MARK")},
		{"a method no rule admits", "method_not_allowed", method(http.MethodPut)},
		{"a path no rule admits", "path_not_allowed", get(apiHost, "/other/MARK")},
		{"the first request under a rate limit passes", "", get(apiHost, "/limited/MARK")},
		{"the second is over it", codeRateLimited, get(apiHost, "/limited/MARK")},
		{"a destination at a private address", codePrivateAddress, func(t *testing.T, m string) {
			sendRaw(t, tg, "CONNECT "+tunnelHost+":443 HTTP/1.1\r\nHost: "+tunnelHost+":443\r\n\r\n")
		}},
		{"an upstream that refuses connections", codeUpstreamUnreach, get("dead.origin.test", "/v1/MARK")},
		{"a header block over max_header_bytes", codeMalformedRequest, get(apiHost, "/v1/MARK", "X-Big: "+strings.Repeat("a", 8192)+"\r\n")},
	})
}

// TestRequestCutShortAudited: a request whose header block the client
// started and then let stall past limits.read_header_timeout is audited
// once, header_timeout with status 408 and nothing answered, on the proxy
// listener and inside a tunnel; a connection that sends nothing, or
// nothing after a served request, is not (nothing was asked). Before, a
// stalled request left no line.
func TestRequestCutShortAudited(t *testing.T) {
	tg := startLimitedGateway(t, "  read_header_timeout: 300ms\n  idle_timeout: 300ms\n")
	lines := func() []map[string]any { return auditLines(tg) }
	for _, tc := range []struct {
		name string
		open func(t *testing.T) (net.Conn, *bufio.Reader)
		send string
		want string // the code of the one line; "" for none
	}{
		{"proxy listener: stalled in a field", dialListen(tg), "GET http://" + apiHost + "/v1/stall HTTP/1.1\r\nHost: a", codeHeaderTimeout},
		{"proxy listener: stalled in the request line", dialListen(tg), "GET http://" + apiHost + "/v1/st", codeHeaderTimeout},
		{"tunnel: stalled after a field", func(t *testing.T) (net.Conn, *bufio.Reader) {
			c, br := h1Tunnel(t, tg)
			return c, br
		}, "GET /v1/stall HTTP/1.1\r\nHost: " + apiHost + "\r\n", codeHeaderTimeout},
		{"proxy listener: nothing sent", dialListen(tg), "", ""},
		{"tunnel: nothing sent", func(t *testing.T) (net.Conn, *bufio.Reader) {
			c, br := h1Tunnel(t, tg)
			return c, br
		}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := len(lines())
			c, br := tc.open(t)
			fmt.Fprint(c, tc.send)
			// The gateway ends the connection without an answer.
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if b, err := br.ReadByte(); err == nil {
				t.Fatalf("the gateway answered (first byte %q)", b)
			}
			c.Close()
			sentinel := "sentinel-" + strings.ReplaceAll(tc.name, " ", "-")
			sentinel = strings.NewReplacer(":", "", ",", "").Replace(sentinel)
			got := linesBeforeSentinel(t, tg, from, sentinel)
			switch {
			case tc.want == "" && len(got) != 0:
				t.Fatalf("%d audit lines for a connection that asked nothing: %v", len(got), got)
			case tc.want != "" && (len(got) != 1 || got[0]["code"] != tc.want || got[0]["status"] != float64(http.StatusRequestTimeout) || got[0]["path"] != ""):
				t.Fatalf("audit lines %v, want one with code %s, status 408 and no path", got, tc.want)
			}
		})
	}
	// HTTP/2 in a tunnel: the server ends the connection at its idle
	// timeout (a GOAWAY) with the header block unfinished; with no
	// request begun, the same end leaves no line.
	for _, tc := range []struct {
		name  string
		block bool
	}{{"tunnel h2: header block stalled", true}, {"tunnel h2: nothing asked", false}} {
		t.Run(tc.name, func(t *testing.T) {
			from := len(lines())
			h := h2RawTunnel(t, tg, apiHost)
			if tc.block {
				h.hbuf.Reset()
				for _, f := range reqFields("/v1/stall") {
					_ = h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
				}
				if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.hbuf.Bytes(), EndHeaders: false}); err != nil {
					t.Fatal(err)
				}
			}
			_ = h.c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.Copy(io.Discard, h.c); err != nil {
				t.Fatalf("the gateway did not end the connection: %v", err)
			}
			h.c.Close()
			// The server audits when the connection's serving ends,
			// which may be after the client saw the end: wait
			// (boundedly) for the line before the sentinel.
			_ = poll.Within(5*time.Second, func() bool {
				for _, ev := range lines()[from:] {
					if ev["code"] == codeHeaderTimeout {
						return true
					}
				}
				return !tc.block
			})
			sentinel := "sentinel-h2-" + strconv.FormatBool(tc.block)
			got := linesBeforeSentinel(t, tg, from, sentinel)
			switch {
			case !tc.block && len(got) != 0:
				t.Fatalf("%d audit lines for a connection that asked nothing: %v", len(got), got)
			case tc.block && (len(got) != 1 || got[0]["code"] != codeHeaderTimeout || got[0]["status"] != float64(http.StatusRequestTimeout) || got[0]["host"] != apiHost):
				t.Fatalf("audit lines %v, want one with code %s, status 408 and the tunnel's host", got, codeHeaderTimeout)
			}
		})
	}
}

// dialListen returns a dialer of tg's proxy listener.
func dialListen(tg *testGateway) func(t *testing.T) (net.Conn, *bufio.Reader) {
	return func(t *testing.T) (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", tg.listenerAddr("listen"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
}
