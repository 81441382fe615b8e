package gateway

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// labelValues returns every "family{label=value}" of the gateway's
// registry: what a scrape shows of its label values.
func labelValues(t *testing.T, g *Gateway) map[string]bool {
	t.Helper()
	mfs, err := g.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				out[mf.GetName()+"{"+lp.GetName()+"="+strconv.Quote(lp.GetValue())+"}"] = true
			}
		}
	}
	return out
}

// hostileTraffic sends one request of each kind a client (or an upstream)
// can vary at will, every name, path, method, header, SNI and status made
// of tag: CONNECTs to hosts no rule names, absolute-form requests,
// Proxy-Authorization schemes, requests in a tunnel with made-up methods,
// paths, Host fields, headers and trace contexts, a TLS handshake whose
// SNI differs from the CONNECT, an unreadable request line, and upstream
// answers with made-up status codes.
func hostileTraffic(t *testing.T, tg *testGateway, c *http.Client, tag string, code int) {
	t.Helper()
	raw := func(req string) string {
		conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(conn, req)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		return resp.Status
	}
	host := tag + ".evil.test"
	raw("CONNECT " + host + ":443 HTTP/1.1\r\nHost: " + host + ":443\r\nProxy-Authorization: S" + tag + " x\r\n\r\n")
	raw("CONNECT " + host + ":" + strconv.Itoa(1000+len(tag)) + " HTTP/1.1\r\nHost: x\r\n\r\n")
	raw("GET http://" + host + "/" + tag + " HTTP/1.1\r\nHost: " + host + "\r\nX-" + tag + ": " + tag + "\r\n\r\n")
	raw("M" + tag + " http://" + apiHost + "/" + tag + " HTTP/1.1\r\nHost: " + apiHost + "\r\n\r\n")
	raw("GET /" + tag + "\x01 HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
	raw("GET http://" + apiHost + "/" + tag + " HTTP/" + tag + "\r\n\r\n")
	for _, r := range []struct{ method, path, host string }{
		{http.MethodGet, "/v1/" + tag, ""},
		{"X" + strings.ToUpper(tag), "/v1/" + tag, ""},
		{http.MethodGet, "/v1/" + tag + "/%2F%5C..;x=" + tag, ""},
		{http.MethodGet, "/v1/" + tag, tag + ".other.test"},
		{http.MethodGet, "/status/" + strconv.Itoa(code), ""},
	} {
		req, err := http.NewRequest(r.method, "https://"+apiHost+r.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.host != "" {
			req.Host = r.host
		}
		req.Header.Set("X-"+tag, tag)
		req.Header.Set("Traceparent", "00-"+fmt.Sprintf("%032x", len(tag)*7919)+"-00f067aa0ba902b7-01")
		req.Header.Set("Proxy-Authorization", "T"+tag+" y")
		if resp, err := c.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	// SNI other than the CONNECT target.
	conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
	if resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect}); err == nil && resp.StatusCode == http.StatusOK {
		_ = tls.Client(conn, &tls.Config{ServerName: host, RootCAs: tg.caPool}).Handshake()
	}
}

// TestMetricLabelsBounded: the label values of every metric family the
// gateway registers (derived from the registry, not listed) stay within
// a set the policy and the code fix, whatever clients and upstreams vary:
// a second round of hostile traffic, each name, path, method, header,
// SNI, scheme and status new, adds no label value to any family, and no
// label value holds any of the names the traffic made up. A label taken
// from a request would grow the registry (and every scrape) without
// bound.
func TestMetricLabelsBounded(t *testing.T) {
	tg := startGateway(t)
	for _, code := range []int{299, 599, 298, 598} {
		tg.origin.route("/status/"+strconv.Itoa(code), func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) })
	}
	c := tg.client(t, false)
	var tags []string
	for i, code := range []int{299, 599} {
		tag := fmt.Sprintf("ra%d", i)
		tags = append(tags, tag)
		hostileTraffic(t, tg, c, tag, code)
	}
	first := labelValues(t, tg.gw)
	for i, code := range []int{298, 598} {
		tag := fmt.Sprintf("rb%d", i)
		tags = append(tags, tag)
		hostileTraffic(t, tg, c, tag, code)
	}
	second := labelValues(t, tg.gw)
	var grown []string
	for lv := range second {
		if !first[lv] {
			grown = append(grown, lv)
		}
	}
	slices.Sort(grown)
	if len(grown) > 0 {
		t.Errorf("a second round of hostile traffic added %d label values:\n%s", len(grown), strings.Join(grown, "\n"))
	}
	for lv := range second {
		for _, tag := range tags {
			if strings.Contains(strings.ToLower(lv), tag) {
				t.Errorf("label value %s holds %q, a name the traffic made up", lv, tag)
			}
		}
	}
	if !first[`credgate_requests_total{status="5xx"}`] || !first[`credgate_refusals_total{code="sni_mismatch"}`] {
		t.Errorf("the traffic did not reach the gateway as planned; label values:\n%s", strings.Join(slices.Sorted(maps.Keys(first)), "\n"))
	}
}
