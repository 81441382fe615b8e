package gateway

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// cardinalityPolicy has what the hostile families of
// TestMetricSeriesBoundedByFamily aim at: a JWT-identified workload, an
// inject rule limited to two methods, a deny rule, a rate-limited rule, a
// wildcard destination and a destination served by a hand-written HTTP/2
// origin.
const cardinalityPolicy = `
workloads:
  jobs: {namespace: jobs, require: [jwt]}
destinations:
  api: {hosts: [api.origin.test], allow_private: true}
  wild: {hosts: ["*.wild.origin.test"], allow_private: true}
  evil: {hosts: [evil.origin.test], allow_private: true}
credentials:
  token: {provider: static, env: CREDGATE_GATEWAY_TEST_TOKEN}
rules:
  - {name: deny-paths, from: jobs, to: api, paths: [/deny/*], action: deny}
  - {name: limited, from: jobs, to: api, paths: [/limited/*], inject: {credential: token, as: bearer}, rate_limit: {rps: 1, burst: 1}}
  - {name: api, from: jobs, to: api, methods: [GET, POST], inject: {credential: token, as: bearer}}
  - {name: wild, from: jobs, to: wild, inject: {credential: token, as: bearer}}
  - {name: evil, from: jobs, to: evil, inject: {credential: token, as: bearer}}
default: deny
`

// seriesOf scrapes the admin listener's /metrics and returns the key
// (name and labels, without the value) of every series.
func seriesOf(t *testing.T, tg *testGateway, adminToken string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for line := range strings.Lines(adminGetToken(t, tg, "/metrics", adminToken)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			out[line[:i]] = true
		}
	}
	return out
}

// TestMetricSeriesBoundedByFamily: every Prometheus series the gateway
// exports has label values from a bounded set (policy and config names,
// reason codes, fixed enums, status classes), never from what a client,
// an admin caller or an upstream chooses. For each family of hostile input
// one value is sent, /metrics is scraped, then 50 distinct values are sent
// and /metrics scraped again: the set of series must be the same. The
// families: request methods no rule names, hosts under a wildcard
// destination, paths (also of a deny rule), header fields and user
// agents, Host fields, CONNECT ports and hosts, SNIs, TLS handshakes
// (ALPN protocols, versions and cipher suites refused, bytes that are no
// ClientHello), Proxy-Authorization
// schemes, JWT subjects and service accounts of the workload (through a
// rate limit), tokens of namespaces no workload names, tokens of unknown
// issuers, kill switch names (disabled and enabled through the admin API),
// refused admin calls (bad token, kind, route, method), a client's
// HTTP/2 frames (unparsable :path, connection-specific field, RST_STREAM
// and GOAWAY codes and debug data), upstream status
// codes and HTTP/2 RST_STREAM codes from a hostile origin. No series may
// hold a value a family made up either.
func TestMetricSeriesBoundedByFamily(t *testing.T) {
	if testing.Short() {
		t.Skip("sends some 2,000 requests")
	}
	const n = 50
	pki := newTestPKI(t, apiHost, evilHost, "*.wild.origin.test", "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	evil := startH2Origin(t, pki, &h2Origin{onHeaders: func(c *h2OriginConn, f *http2.MetaHeadersFrame) {
		code, err := strconv.Atoi(strings.TrimPrefix(f.PseudoValue("path"), "/rst/"))
		if err != nil {
			c.respond(f.StreamID, "200", "ok")
			return
		}
		c.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(f.StreamID, http2.ErrCode(code)) })
	}})
	for code := 230; code < 230+n; code++ {
		tg.origin.route("/status/"+strconv.Itoa(code), func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) })
	}
	signer, pub := newSigner(t)
	writeFile(t, tg.dir, "jwks.json", jwksOf(t, jose.JSONWebKey{Key: pub, KeyID: "k1", Algorithm: "ES256", Use: "sig"}))
	otherSigner, _ := newSigner(t)
	writeFile(t, tg.dir, "policy.yaml", []byte(cardinalityPolicy))
	const adminToken = "cardinality-admin-token-0123456789"
	t.Setenv("CREDGATE_GATEWAY_TEST_ADMIN", adminToken)
	var resolve strings.Builder
	fmt.Fprintf(&resolve, "resolve:\n  %q: %q\n  %q: %q\n", apiHost+":443", tg.origin.addr, evilHost+":443", evil.addr)
	for i := range n {
		fmt.Fprintf(&resolve, "  \"qwil%d.wild.origin.test:443\": %q\n", i, tg.origin.addr)
	}
	tg.run(t, resolve.String()+`identity:
  jwt:
    issuers:
      - issuer: https://k8s.test
        profile: kubernetes
        audiences: [credgate]
        jwks_file: jwks.json
admin:
  token_env: CREDGATE_GATEWAY_TEST_ADMIN
`)

	token := func(s jose.Signer, iss, ns, sa string) string {
		tok, err := jwt.Signed(s).Claims(map[string]any{
			"iss": iss, "aud": []string{"credgate"}, "sub": "system:serviceaccount:" + ns + ":" + sa,
			"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
			"kubernetes.io": map[string]any{"namespace": ns, "serviceaccount": map[string]any{"name": sa, "uid": "u-" + sa}},
		}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	jobs := token(signer, "https://k8s.test", "jobs", "runner")
	c := bearerClient(t, tg, false, jobs)
	c2 := bearerClient(t, tg, true, jobs)
	get := func(c *http.Client, method, url string, hdr ...string) {
		t.Helper()
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			if hdr[i] == "Host" {
				req.Host = hdr[i+1]
				continue
			}
			req.Header.Set(hdr[i], hdr[i+1])
		}
		if resp, err := c.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	// raw sends a request on a new connection to the proxy listener and
	// reads the answer's head.
	raw := func(req string) {
		t.Helper()
		conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(conn, req)
		if resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect}); err == nil {
			resp.Body.Close()
		}
	}
	admin := func(method, path, tok, body string) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+tg.gw.AdminAddr().String()+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	switchBody := func(kind, name string) string {
		b, _ := json.Marshal(map[string]string{"kind": kind, "name": name, "by": "by-" + name, "reason": "reason " + name})
		return string(b)
	}
	api := "https://" + apiHost
	seriesOf(t, tg, adminToken) // the scrape's own series

	for _, fam := range []struct {
		name string
		send func(tag string, i int)
		// want are series the first value must leave (the traffic
		// arrived as planned).
		want []string
	}{
		{"methods", func(tag string, _ int) {
			get(c, "M"+strings.ToUpper(tag), api+"/v1/x")
			get(c2, "M"+strings.ToUpper(tag), api+"/v1/x")
			raw("M" + strings.ToUpper(tag) + " http://" + apiHost + "/x HTTP/1.1\r\nHost: " + apiHost + "\r\nProxy-Authorization: Bearer " + jobs + "\r\n\r\n")
		}, []string{`credgate_requests_total{decision="deny",rule="",status="403"}`, `credgate_refusals_total{code="method_not_allowed"}`}},
		{"wildcard hosts", func(tag string, _ int) {
			get(c, http.MethodGet, "https://"+tag+".wild.origin.test/v1/x")
		}, []string{`credgate_requests_total{decision="inject",rule="wild",status="200"}`, `credgate_provider_fetch_duration_seconds_count{provider="static"}`}},
		{"paths", func(tag string, _ int) {
			get(c, http.MethodGet, api+"/v1/"+tag+"/%2F..;x="+tag+"?q="+tag)
			get(c2, http.MethodGet, api+"/deny/"+tag)
		}, []string{`credgate_requests_total{decision="deny",rule="deny-paths",status="403"}`, `credgate_requests_total{decision="deny",rule="",status="400"}`, `credgate_refusals_total{code="bad_path"}`, `credgate_refusals_total{code="denied_by_rule"}`}},
		{"headers and user agents", func(tag string, _ int) {
			get(c, http.MethodGet, api+"/v1/x", "X-"+tag, tag, "User-Agent", "agent/"+tag,
				"Traceparent", fmt.Sprintf("00-%032x-00f067aa0ba902b7-01", len(tag)*7919+int(tag[len(tag)-1])))
		}, []string{`credgate_requests_total{decision="inject",rule="api",status="200"}`}},
		{"host fields", func(tag string, _ int) {
			get(c, http.MethodGet, api+"/v1/x", "Host", tag+".other.test")
			get(c2, http.MethodGet, api+"/v1/x", "Host", apiHost+":"+strconv.Itoa(2000+len(tag)*100+int(tag[len(tag)-1])))
		}, []string{`credgate_refusals_total{code="host_mismatch"}`, `credgate_requests_total{decision="deny",rule="",status="421"}`}},
		{"connect ports and hosts", func(tag string, i int) {
			raw(fmt.Sprintf("CONNECT %s:%d HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Bearer %s\r\n\r\n", apiHost, 1000+i, jobs))
			raw(fmt.Sprintf("CONNECT %s.nowhere.test:443 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Bearer %s\r\n\r\n", tag, jobs))
			raw(fmt.Sprintf("CONNECT %s.wild.origin.test:%d HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Bearer %s\r\n\r\n", tag, 8000+i, jobs))
		}, []string{`credgate_refusals_total{code="no_rule"}`}},
		{"sni", func(tag string, _ int) {
			conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\nProxy-Authorization: Bearer %s\r\n\r\n", apiHost, apiHost, jobs)
			if resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect}); err == nil && resp.StatusCode == http.StatusOK {
				_ = tls.Client(conn, &tls.Config{ServerName: tag + ".sni.test", RootCAs: tg.caPool}).Handshake()
			}
		}, []string{`credgate_refusals_total{code="sni_mismatch"}`, `credgate_requests_total{decision="deny",rule="",status="other"}`}},
		{"client TLS handshakes", func(tag string, i int) {
			// ALPN protocols no listener serves, versions and cipher
			// suites it refuses, bytes that are no ClientHello.
			hello := func(cfg *tls.Config, junk string) {
				conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(conn)
				fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\nProxy-Authorization: Bearer %s\r\n\r\n", apiHost, apiHost, jobs)
				resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
				if err != nil || resp.StatusCode != http.StatusOK {
					return // counted all the same; want says whether TLS was reached
				}
				if cfg == nil {
					_, _ = io.WriteString(conn, junk)
					_, _ = io.Copy(io.Discard, br)
					return
				}
				_ = tls.Client(conn, cfg).Handshake()
			}
			hello(&tls.Config{ServerName: apiHost, RootCAs: tg.caPool, NextProtos: []string{"x-" + tag}}, "")
			hello(&tls.Config{ServerName: apiHost, RootCAs: tg.caPool, MaxVersion: tls.VersionTLS11}, "")
			hello(&tls.Config{ServerName: apiHost, RootCAs: tg.caPool, MaxVersion: tls.VersionTLS12,
				CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}, "")
			hello(nil, fmt.Sprintf("\x16\x03\x01\x00\x05%c%s\r\n\r\n", byte(i), tag))
			hello(nil, "GET /"+tag+" HTTP/1.1\r\nHost: "+tag+"\r\n\r\n")
		}, []string{`credgate_refusals_total{code="client_tls_error"}`}},
		{"proxy-authorization schemes", func(tag string, _ int) {
			raw(fmt.Sprintf("CONNECT %s:443 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: S%s %s\r\n\r\n", apiHost, tag, tag))
		}, []string{`credgate_refusals_total{code="identity_invalid"}`}},
		{"workload subjects (rate limited)", func(tag string, _ int) {
			wc := bearerClient(t, tg, false, token(signer, "https://k8s.test", "jobs", "sa-"+tag))
			get(wc, http.MethodGet, api+"/limited/x")
			get(wc, http.MethodGet, api+"/limited/x")
			wc.CloseIdleConnections()
		}, []string{`credgate_rate_limited_total{limit="rule",rule="limited",workload="jobs"}`, `credgate_requests_total{decision="deny",rule="limited",status="429"}`, `credgate_refusals_total{code="rate_limited"}`, `credgate_requests_total{decision="inject",rule="limited",status="200"}`}},
		{"unmatched namespaces", func(tag string, _ int) {
			wc := bearerClient(t, tg, false, token(signer, "https://k8s.test", "ns-"+tag, "sa-"+tag))
			get(wc, http.MethodGet, api+"/v1/x")
			wc.CloseIdleConnections()
		}, []string{`credgate_refusals_total{code="no_rule"}`}},
		{"unknown issuers and keys", func(tag string, _ int) {
			for _, tok := range []string{token(otherSigner, "https://"+tag+".issuer.test", "jobs", "runner"), token(otherSigner, "https://k8s.test", "jobs", tag)} {
				wc := bearerClient(t, tg, false, tok)
				get(wc, http.MethodGet, api+"/v1/x")
				wc.CloseIdleConnections()
			}
		}, []string{`credgate_refusals_total{code="identity_invalid"}`}},
		{"kill switch names", func(tag string, _ int) {
			for _, kind := range []string{"rule", "workload", "source", "credential"} {
				name := kind + "-" + tag
				if kind == "source" {
					name = "127.0.0." + strconv.Itoa(2+int(tag[len(tag)-1])+10*len(tag))
				}
				admin(http.MethodPost, "/admin/v1/disable", adminToken, switchBody(kind, name))
				admin(http.MethodPost, "/admin/v1/enable", adminToken, switchBody(kind, name))
			}
		}, []string{`credgate_admin_requests_total{action="disable",result="ok"}`, `credgate_admin_requests_total{action="enable",result="ok"}`, `credgate_admin_api_requests_total{code="ok",route="POST /admin/v1/disable"}`, `credgate_admin_api_requests_total{code="ok",route="POST /admin/v1/enable"}`}},
		{"refused admin calls", func(tag string, _ int) {
			admin(http.MethodPost, "/admin/v1/disable", "t-"+tag, switchBody("rule", tag))
			admin(http.MethodPost, "/admin/v1/disable", adminToken, switchBody("kind-"+tag, tag))
			admin(http.MethodPost, "/admin/v1/enable", adminToken, "{"+tag)
			admin(http.MethodGet, "/admin/v1/"+tag, adminToken, "")
			admin("M"+strings.ToUpper(tag), "/admin/v1/disable", adminToken, "")
		}, []string{`credgate_admin_requests_total{action="disable",result="unauthorized"}`, `credgate_admin_requests_total{action="disable",result="bad_request"}`, `credgate_admin_requests_total{action="enable",result="bad_request"}`, `credgate_admin_api_requests_total{code="bad_request",route="POST /admin/v1/disable"}`, `credgate_admin_api_requests_total{code="bad_request",route="POST /admin/v1/enable"}`, `credgate_admin_api_requests_total{code="unauthorized",route="POST /admin/v1/disable"}`, `credgate_admin_api_requests_total{code="not_found",route="unmatched"}`, `credgate_admin_api_requests_total{code="method_not_allowed",route="unmatched"}`}},
		{"client HTTP/2 frames", func(tag string, i int) {
			// A :path that does not parse, a connection-specific field, a
			// stream reset and a GOAWAY with made-up codes and debug data.
			tc := h2TLSTunnelAs(t, tg, apiHost, "Bearer "+jobs)
			defer tc.Close()
			h := &h2Raw{t: t, c: tc, fr: http2.NewFramer(tc, tc), dec: hpack.NewDecoder(4096, nil)}
			h.enc = hpack.NewEncoder(&h.hbuf)
			if _, err := io.WriteString(tc, http2.ClientPreface); err != nil {
				t.Fatal(err)
			}
			_ = h.fr.WriteSettings()
			req := func(path string, extra ...[2]string) [][2]string {
				return append([][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", apiHost}, {":path", path}}, extra...)
			}
			h.headers(1, req("x"+tag), true)
			h.headers(3, req("/v1/"+tag, [2]string{"connection", "c-" + tag}), true)
			// Both streams answered (1 reset, 3 a 400) before the rest, so
			// that each value ends the same way.
			h.read(1, 3)
			_ = h.fr.WriteRSTStream(1, http2.ErrCode(0x1000+i))
			_ = h.fr.WriteGoAway(3, http2.ErrCode(0x2000+i), []byte(tag))
			// The server acknowledges the PING after handling the frames
			// before it.
			_ = h.fr.WritePing(false, [8]byte{'c', 'a', 'r', 'd'})
			for {
				f, err := h.fr.ReadFrame()
				if err != nil {
					break
				}
				if p, ok := f.(*http2.PingFrame); ok && p.IsAck() {
					break
				}
			}
		}, []string{`credgate_http2_errors_total{type="stream_PROTOCOL_ERROR_bad_path"}`, `credgate_http2_errors_total{type="stream_400_connection_specific_field"}`, `credgate_refusals_total{code="http2_refused"}`}},
		{"upstream status codes", func(_ string, i int) {
			get(c, http.MethodGet, api+"/status/"+strconv.Itoa(230+i))
		}, []string{`credgate_requests_total{decision="inject",rule="api",status="2xx"}`}},
		{"upstream RST_STREAM codes", func(_ string, i int) {
			// 0–13 are the codes RFC 9113 names, the rest made up.
			get(c, http.MethodGet, "https://"+evilHost+"/rst/"+strconv.Itoa(i*7))
			get(c2, http.MethodGet, "https://"+evilHost+"/rst/"+strconv.Itoa(i*7+1))
		}, []string{`credgate_requests_total{decision="deny",rule="evil",status="502"}`, `credgate_refusals_total{code="upstream_error"}`}},
	} {
		t.Run(fam.name, func(t *testing.T) {
			tag := func(i int) string { return fmt.Sprintf("q%s%d", strings.ReplaceAll(fam.name[:3], " ", ""), i) }
			fam.send(tag(0), 0)
			// A request is counted as its handler ends, which may be after
			// the client has the answer: wait for the series the family
			// makes.
			var first map[string]bool
			missing := func() []string {
				first = seriesOf(t, tg, adminToken)
				var m []string
				for _, w := range fam.want {
					if !first[w] {
						m = append(m, w)
					}
				}
				return m
			}
			waitFor(t, 10*time.Second, fmt.Sprintf("the first value's series %v (the family did not reach the gateway as planned)", fam.want), func() bool { return len(missing()) == 0 })
			for i := 1; i < n; i++ {
				fam.send(tag(i), i)
			}
			after := seriesOf(t, tg, adminToken)
			var grown []string
			for k := range after {
				if !first[k] {
					grown = append(grown, k)
				}
			}
			slices.Sort(grown)
			if len(grown) > 0 {
				t.Errorf("%d values added %d series after the first:\n%s", n-1, len(grown), strings.Join(grown, "\n"))
			}
			for k := range after {
				if strings.Contains(k, tag(0)) || strings.Contains(k, tag(n-1)) {
					t.Errorf("series %s holds a value the family made up", k)
				}
			}
			t.Logf("%d series", len(after))
		})
	}
}
