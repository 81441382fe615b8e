package gateway

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/testpki"
)

// tunnel is an intercepted CONNECT kept open, for several requests.
type tunnel struct {
	c  net.Conn
	br *bufio.Reader
}

// openTunnel dials the TLS proxy listener at addr with proxyTLS, CONNECTs
// to host and makes the inner TLS handshake with inner.
func openTunnel(t *testing.T, addr string, proxyTLS *tls.Config, host string, inner *tls.Config) *tunnel {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
	pc := tls.Client(raw, proxyTLS)
	if err := pc.Handshake(); err != nil {
		t.Fatalf("handshake with the proxy: %v", err)
	}
	fmt.Fprintf(pc, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", host, host)
	resp, err := http.ReadResponse(bufio.NewReader(pc), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %d %s", resp.StatusCode, resp.Header.Get(ReasonHeader))
	}
	tc := tls.Client(pc, inner)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake inside the tunnel: %v", err)
	}
	return &tunnel{c: tc, br: bufio.NewReader(tc)}
}

// get sends one keep-alive GET through the tunnel and returns the status
// and reason code.
func (tn *tunnel) get(t *testing.T, host, path string) (int, string) {
	t.Helper()
	fmt.Fprintf(tn.c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host)
	resp, err := http.ReadResponse(tn.br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get(ReasonHeader)
}

// TestOpenConnectionsFollowClientCA: a client certificate chain is
// verified once, at the handshake, and an open connection carries it for
// as long as it lasts; a CA removed from the roots must stop vouching for
// the connections it verified as it stops vouching for new handshakes and
// resumed sessions (TestResumedSessionsReverifyClientCertificates). So
// every request on an open connection is judged with the roots in force:
// requests inside a tunnel intercepted before the change, on the TLS
// proxy listener whether the listener verifies the certificate
// (tls.client_ca: the chain's root must still be in the file; before,
// the tunnel went on injecting the credential for as long as the client
// kept it open) or identity does (identity.mtls.bundles: verified again
// against the bundles in force), and admin API changes on a kept-alive
// connection to the admin listener (admin.tls.client_ca; before, they
// were still allowed). A CA that stays (another added beside it) changes
// nothing.
func TestOpenConnectionsFollowClientCA(t *testing.T) {
	for _, mode := range []string{"client_ca", "bundles"} {
		for _, change := range []string{"removed", "kept"} {
			t.Run("tls_listen/"+mode+"/"+change, func(t *testing.T) {
				g := startClientCAGateway(t, mode, "session_tickets: {enabled: false}\n")
				tg, addr, inner, proxyTLS, cert := g.tg, g.addr, g.inner, g.proxyTLS, g.leaf(t)
				tn := openTunnel(t, addr, proxyTLS(cert), apiHost, inner)
				if st, code := tn.get(t, apiHost, "/v1/before"); st != http.StatusOK {
					t.Fatalf("before the change: %d %s", st, code)
				}
				g.replaceCA(t, change == "kept")
				st, code := tn.get(t, apiHost, "/v1/after")
				switch {
				case change == "kept" && st != http.StatusOK:
					t.Errorf("CA kept: a request in the open tunnel got %d %s, want 200", st, code)
				case change == "removed" && (st != http.StatusForbidden || code != codeIdentityInvalid):
					t.Errorf("CA removed: a request in a tunnel opened before got %d %q, want 403 %s", st, code, codeIdentityInvalid)
				}
				for _, s := range tg.origin.all() {
					if s.Path == "/v1/after" && change == "removed" {
						t.Errorf("the origin received a request of a certificate whose CA was removed")
					}
				}
			})
		}
	}
	for _, change := range []string{"removed", "kept"} {
		t.Run("admin/"+change, func(t *testing.T) {
			const token = "admin-roots-token-0123456789abcdef"
			dir := t.TempDir()
			writeFile(t, dir, "admin.token", []byte(token))
			ca := adminPKI(t, dir, "admin CA")
			operators, err := testpki.NewAuthority("operators CA")
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, dir, "operators.pem", operators.CertPEM)
			tg := startSwitchGateway(t, fmt.Sprintf("admin:\n  token_file: %q\n  tls: {cert: %q, key: %q, client_ca: %q, reload_interval: 50ms}\nsession_tickets: {enabled: false}\n",
				filepath.Join(dir, "admin.token"), filepath.Join(dir, "admin.pem"), filepath.Join(dir, "admin-key.pem"), filepath.Join(dir, "operators.pem")))
			base := "https://" + tg.gw.AdminAddr().String()
			alice, err := operators.ClientLeaf("alice")
			if err != nil {
				t.Fatal(err)
			}
			kept := httpsClient(t, ca.Pool(), alice)
			var reused bool
			do := func(c *http.Client, body string) (int, string) {
				req, err := http.NewRequest(http.MethodPost, base+"/admin/v1/disable", strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer "+token)
				req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}))
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("disable: %v", err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp.StatusCode, string(b)
			}
			if st, body := do(kept, `{"kind":"rule","name":"api"}`); st != http.StatusOK {
				t.Fatalf("before the change: %d %s", st, body)
			}
			newOps, err := testpki.NewAuthority("new operators CA")
			if err != nil {
				t.Fatal(err)
			}
			bob, err := newOps.ClientLeaf("bob")
			if err != nil {
				t.Fatal(err)
			}
			roots := newOps.CertPEM
			if change == "kept" {
				roots = append(append([]byte{}, newOps.CertPEM...), operators.CertPEM...)
			}
			writeFile(t, dir, "operators.pem", roots)
			waitFor(t, 5*time.Second, "the new operator roots", func() bool {
				st, _, err := adminDo(httpsClient(t, ca.Pool(), bob), http.MethodGet, base+"/admin/v1/switches", token, "")
				return err == nil && st == http.StatusOK
			})
			st, body := do(kept, `{"kind":"rule","name":"other"}`)
			if !reused {
				t.Fatal("the second change did not reuse the kept-alive connection")
			}
			switch {
			case change == "kept" && st != http.StatusOK:
				t.Errorf("CA kept: a change on the open connection got %d %s, want 200", st, body)
			case change == "removed" && (st != http.StatusForbidden || !strings.Contains(body, codeAdminClientCert)):
				t.Errorf("CA removed: a change on a connection opened before got %d %s, want 403 %s", st, body, codeAdminClientCert)
			}
		})
	}
}
