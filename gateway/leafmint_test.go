package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLeafOnlyForInterceptableConnect: the gateway signs (and caches) a
// leaf certificate only for a CONNECT it intercepts, and one leaf per
// destination however the CONNECT spells the host. A CONNECT whose only
// rule is a deny rule with paths was intercepted and got a leaf, though
// every request inside would be refused (TestConnectInterceptsOnlyWhatMayPass
// in policy holds the decision to that); refused CONNECTs (no rule, an
// unconditional deny, a tunnel rule's false condition) and spliced
// tunnels sign none. Each row is one CONNECT; the cache size after it is
// checked, and at the end the signing counter and the CA's expiry on
// /metrics.
func TestLeafOnlyForInterceptableConnect(t *testing.T) {
	pki := newTestPKI(t, apiHost, tunnelHost)
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	pol := strings.Replace(testPolicy, "credentials:\n", `  admin:
    hosts: [admin.origin.test]
    allow_private: true
  closed:
    hosts: [closed.origin.test]
    allow_private: true
  night:
    hosts: [night.origin.test]
    allow_private: true
  wild:
    hosts: ["*.wild.origin.test"]
    allow_private: true
credentials:
`, 1)
	pol = strings.Replace(pol, "default: deny\n", `  - name: admin-paths
    from: local
    to: admin
    paths: [/admin*]
    action: deny
  - name: admin-delete
    from: local
    to: admin
    methods: [DELETE]
    action: deny
  - name: closed
    from: local
    to: closed
    action: deny
  - name: night-deny
    from: local
    to: night
    when: 'request.path.startsWith("/x")'
    action: deny
  - name: night
    from: local
    to: night
    when: 'workload.name == "nobody"'
    action: tunnel
  - name: wild
    from: local
    to: wild
    inject: {credential: token, as: bearer}
default: deny
`, 1)
	writeFile(t, tg.dir, "policy.yaml", []byte(pol))
	// Every destination is pinned: a CONNECT is resolved before a leaf is
	// signed (a name that does not resolve gets none).
	tg.run(t, fmt.Sprintf(`resolve:
  "api.origin.test:443": %[1]q
  "tunnel.origin.test:443": %[1]q
  "admin.origin.test:443": %[1]q
  "closed.origin.test:443": %[1]q
  "night.origin.test:443": %[1]q
  "a.wild.origin.test:443": %[1]q
  "b.a.wild.origin.test:443": %[1]q
  "a_b.wild.origin.test:443": %[1]q
`, tg.origin.addr))

	for _, tc := range []struct {
		authority string
		status    int
		code      string
		leaves    int // cached leaf certificates after the CONNECT
	}{
		{"admin.origin.test:443", http.StatusForbidden, "denied_by_rule", 0},
		{"closed.origin.test:443", http.StatusForbidden, "denied_by_rule", 0},
		{"night.origin.test:443", http.StatusForbidden, "condition_not_met", 0},
		{"nowhere.origin.test:443", http.StatusForbidden, "no_rule", 0},
		{"tunnel.origin.test:443", http.StatusOK, "", 0},
		{"api.origin.test:443", http.StatusOK, "", 1},
		{"API.Origin.Test.:443", http.StatusOK, "", 1},
		{"a.wild.origin.test:443", http.StatusOK, "", 2},
		{"A.WILD.origin.test:443", http.StatusOK, "", 2},
		{"a.wild.origin.test.:443", http.StatusOK, "", 2},
		{"b.a.wild.origin.test:443", http.StatusOK, "", 3},
		{"a_b.wild.origin.test:443", http.StatusOK, "", 4},
		{"wild.origin.test:443", http.StatusForbidden, "no_rule", 4},
		{"a..wild.origin.test:443", http.StatusBadRequest, codeBadConnectTarget, 4},
		{strings.Repeat("a", 64) + ".wild.origin.test:443", http.StatusBadRequest, codeBadConnectTarget, 4},
		{strings.Repeat("a.", 120) + "wild.origin.test:443", http.StatusBadRequest, codeBadConnectTarget, 4},
		{"a%20b.wild.origin.test:443", http.StatusBadRequest, codeMalformedRequest, 4},
		{"*.wild.origin.test:443", http.StatusBadRequest, codeBadConnectTarget, 4},
	} {
		conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", tc.authority, tc.authority)
		resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
		conn.Close()
		if err != nil {
			t.Fatalf("CONNECT %s: %v", tc.authority, err)
		}
		if resp.StatusCode != tc.status || resp.Header.Get(ReasonHeader) != tc.code {
			t.Errorf("CONNECT %s: %d %s, want %d %s", tc.authority, resp.StatusCode, resp.Header.Get(ReasonHeader), tc.status, tc.code)
		}
		if n := tg.gw.issuer.Len(); n != tc.leaves {
			t.Errorf("after CONNECT %s: %d cached leaf certificates, want %d", tc.authority, n, tc.leaves)
		}
		// Each leaf counts against the share of the workload whose
		// CONNECT had it signed (TestLeafCacheFairShare).
		if n := tg.gw.issuer.Held("local"); n != tc.leaves {
			t.Errorf("after CONNECT %s: workload local holds %d cached leaf certificates, want %d", tc.authority, n, tc.leaves)
		}
	}
	// Each cached leaf was signed once; the CA's end is on /metrics.
	metrics := adminGet(t, tg, "/metrics")
	for _, want := range []string{"credgate_leaf_certificates 4\n", "credgate_leaf_certificates_signed_total 4\n",
		fmt.Sprintf("credgate_interception_ca_expiry_timestamp_seconds %g\n", float64(tg.gw.issuer.CACertificate().NotAfter.Unix()))} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
