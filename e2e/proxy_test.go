package e2e

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestInjectsCredential: a client holding no credential (or its own wrong
// one) reaches the origin with the gateway's credential, over HTTPS and —
// where the rule opts in with plaintext: true — over plain HTTP.
func TestInjectsCredential(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	want := "Bearer " + e.token
	for _, c := range clients {
		t.Run(c.Name(), func(t *testing.T) {
			tests := []struct {
				name   string
				url    string
				header http.Header
				tls    bool
			}{
				{name: "https", url: "https://" + apiHost + "/v1/inject-" + c.Name() + "?q=1", tls: true},
				{
					name: "https-replaces-client-authorization",
					url:  "https://" + apiHost + "/v1/replace-" + c.Name(),
					header: http.Header{
						"Authorization": {"Bearer client-chosen-value"},
						"X-App":         {"kept"},
					},
					tls: true,
				},
				{
					name:   "http-plaintext-opt-in",
					url:    "http://" + plainHost + "/v1/plain-" + c.Name(),
					header: http.Header{"Authorization": {"Basic Y2xpZW50OnNlY3JldA=="}},
				},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					resp := c.Do(t, e, clientRequest{URL: tt.url, Header: tt.header})
					if resp.Err != "" || resp.Status != http.StatusOK {
						t.Fatalf("request failed: status %d, err %s, body %q", resp.Status, resp.Err, resp.Body)
					}
					u, _ := url.Parse(tt.url)
					if !strings.HasPrefix(resp.Body, "ok "+u.Path) {
						t.Errorf("body = %q, want the origin's answer", resp.Body)
					}
					got := e.origin.one(t, u.Path)
					if diff := cmp.Diff([]string{want}, got.Header.Values("Authorization")); diff != "" {
						t.Errorf("Authorization at the origin (-want +got):\n%s", strings.ReplaceAll(diff, e.token, "<token>"))
					}
					if got.TLS != tt.tls {
						t.Errorf("origin TLS = %v, want %v", got.TLS, tt.tls)
					}
					if got.Host != u.Hostname() {
						t.Errorf("origin Host = %q, want %q", got.Host, u.Hostname())
					}
					if tt.tls && got.ServerName != u.Hostname() {
						t.Errorf("origin SNI = %q, want %q", got.ServerName, u.Hostname())
					}
					if got.RawQuery != u.RawQuery {
						t.Errorf("origin query = %q, want %q", got.RawQuery, u.RawQuery)
					}
					if v := tt.header.Get("X-App"); v != "" && got.Header.Get("X-App") != v {
						t.Errorf("X-App at origin = %q, want %q (other client headers pass)", got.Header.Get("X-App"), v)
					}
				})
			}
		})
	}

	t.Run("audit", func(t *testing.T) {
		var found *auditEvent
		waitFor(t, 5*time.Second, "audit line for /v1/inject-curl", func() error {
			for _, ev := range e.audit() {
				if ev.Path == "/v1/inject-curl" {
					found = &ev
					return nil
				}
			}
			return fmt.Errorf("not among %d audit lines", len(e.audit()))
		})
		want := auditEvent{
			Workload: "local", Method: "GET", Scheme: "https", Host: apiHost, Port: 443,
			Path: "/v1/inject-curl", Rule: "api-inject", Decision: "inject",
			Credential: "api-token", Status: 200,
		}
		if diff := cmp.Diff(want, *found); diff != "" {
			t.Errorf("audit line (-want +got):\n%s", diff)
		}
	})
}

// TestDenyInsideTunnel: requests on an intercepted host that no rule allows
// get 403 with the reason in a header and a JSON body, and never reach the
// origin.
func TestDenyInsideTunnel(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	for _, c := range clients {
		t.Run(c.Name(), func(t *testing.T) {
			path := "/admin/users-" + c.Name()
			resp := c.Do(t, e, clientRequest{URL: "https://" + apiHost + path})
			if resp.Err != "" {
				t.Fatalf("client error: %s", resp.Err)
			}
			checkDenial(t, resp.Status, resp.Header, resp.Body, http.StatusForbidden, "denied_by_rule", "api-admin-blocked")

			// A method the inject rule does not list.
			path2 := "/v1/delete-" + c.Name()
			resp = c.Do(t, e, clientRequest{Method: http.MethodDelete, URL: "https://" + apiHost + path2})
			if resp.Err != "" {
				t.Fatalf("client error: %s", resp.Err)
			}
			if resp.Status != http.StatusForbidden {
				t.Errorf("DELETE: status = %d, want 403", resp.Status)
			}
			if code := resp.Header.Get("X-Credgate-Reason"); code != "method_not_allowed" && code != "path_not_allowed" {
				t.Errorf("DELETE: X-Credgate-Reason = %q, want method_not_allowed (or path_not_allowed)", code)
			}
			for _, p := range []string{path, path2} {
				if got := e.origin.byPath(p); len(got) != 0 {
					t.Errorf("origin saw denied request %s", p)
				}
			}
		})
	}
}

// TestDenyAtConnect: a CONNECT to a host no rule names is refused before any
// TLS, with the reason in a header and a JSON body.
func TestDenyAtConnect(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})

	t.Run("raw", func(t *testing.T) {
		_, resp := rawConnect(t, e, otherHost+":443")
		body := readAll(t, resp)
		checkDenial(t, resp.StatusCode, resp.Header, body, http.StatusForbidden, "no_rule", "")
	})
	for _, c := range clients {
		t.Run(c.Name(), func(t *testing.T) {
			resp := c.Do(t, e, clientRequest{URL: "https://" + otherHost + "/v1/connect-deny-" + c.Name()})
			if resp.Err == "" {
				t.Fatalf("request to a host without a rule succeeded: status %d", resp.Status)
			}
			if resp.ConnectStatus != http.StatusForbidden {
				t.Errorf("client saw %q, want the tunnel refused with 403", resp.Err)
			}
			if resp.ConnectHeader != nil && resp.ConnectHeader.Get("X-Credgate-Reason") != "no_rule" {
				t.Errorf("X-Credgate-Reason on CONNECT = %q, want no_rule", resp.ConnectHeader.Get("X-Credgate-Reason"))
			}
		})
	}
	if got := e.origin.requests(); len(got) != 0 {
		t.Errorf("origin saw requests: %s", e.origin.summary())
	}
}

// TestTunnelNotIntercepted: a tunnel rule splices bytes: the client sees the
// origin's own certificate (trusting only the gateway CA fails, trusting
// the origin CA works) and nothing is injected.
func TestTunnelNotIntercepted(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	for _, c := range clients {
		t.Run(c.Name(), func(t *testing.T) {
			path := "/v1/tunnel-" + c.Name()
			resp := c.Do(t, e, clientRequest{URL: "https://" + tunnelHost + path + "-gwca"})
			if resp.Err == "" || !isTLSVerifyError(resp.Err) {
				t.Errorf("trusting only the gateway CA: got status %d err %q, want a certificate verification failure", resp.Status, resp.Err)
			}
			resp = c.Do(t, e, clientRequest{URL: "https://" + tunnelHost + path, CAFile: originCACert})
			if resp.Err != "" || resp.Status != http.StatusOK {
				t.Fatalf("trusting the origin CA: status %d err %s", resp.Status, resp.Err)
			}
			got := e.origin.one(t, path)
			if a := got.Header.Values("Authorization"); len(a) != 0 {
				t.Errorf("tunnelled request carried Authorization (%d values)", len(a))
			}
		})
	}
	t.Run("raw-peer-certificate", func(t *testing.T) {
		c, resp := rawConnect(t, e, tunnelHost+":443")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT: %s", resp.Status)
		}
		tc := tls.Client(c, &tls.Config{ServerName: tunnelHost, RootCAs: originCAPool})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS through tunnel: %v", err)
		}
		leaf := tc.ConnectionState().PeerCertificates[0]
		if !leaf.Equal(mustParse(t, originLeaf.Certificate[0])) {
			t.Errorf("client saw certificate %q, want the origin's own", leaf.Subject)
		}
	})
}

// TestPrivateDestinations: loopback and metadata addresses — as IP literals
// or behind a name — are refused unless the destination sets allow_private.
func TestPrivateDestinations(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	loopbackURL := fmt.Sprintf("https://127.0.0.1:%d/v1/loopback", e.origin.TLSAddr.Port)

	// privateRefused accepts the refusal at CONNECT or inside the tunnel.
	privateRefused := func(t *testing.T, resp clientResponse) {
		t.Helper()
		switch {
		case resp.Err != "":
			if resp.ConnectStatus != http.StatusForbidden {
				t.Errorf("client error %q, want 403 private_address", resp.Err)
			}
			if resp.ConnectHeader != nil && resp.ConnectHeader.Get("X-Credgate-Reason") != "private_address" {
				t.Errorf("X-Credgate-Reason = %q, want private_address", resp.ConnectHeader.Get("X-Credgate-Reason"))
			}
		default:
			checkDenial(t, resp.Status, resp.Header, resp.Body, http.StatusForbidden, "private_address", "*")
		}
	}
	cases := []struct {
		name    string
		url     string
		clients []client
	}{
		// Go's proxy logic never proxies loopback literals, so only curl
		// and Python try 127.0.0.1 through the gateway.
		{"loopback-literal", loopbackURL, []client{curlClient{}, pythonClient{}}},
		{"name-resolving-to-loopback", "https://" + privateHost + "/v1/private-name", clients},
		{"metadata-http", "http://169.254.169.254/latest/meta-data/", clients},
		{"metadata-https", "https://169.254.169.254/latest/meta-data/", []client{curlClient{}}},
	}
	for _, tc := range cases {
		for _, c := range tc.clients {
			t.Run(tc.name+"/"+c.Name(), func(t *testing.T) {
				privateRefused(t, c.Do(t, e, clientRequest{URL: tc.url}))
			})
		}
	}
	t.Run("raw-connect", func(t *testing.T) {
		for _, target := range []string{
			fmt.Sprintf("127.0.0.1:%d", e.origin.TLSAddr.Port),
			"169.254.169.254:443",
		} {
			_, resp := rawConnect(t, e, target)
			checkDenial(t, resp.StatusCode, resp.Header, readAll(t, resp), http.StatusForbidden, "private_address", "*")
		}
	})
	if got := e.origin.requests(); len(got) != 0 {
		t.Errorf("origin saw requests: %s", e.origin.summary())
	}

	t.Run("allowed", func(t *testing.T) {
		allowed := startEnv(t, envOptions{AllowLoopbackIP: true})
		url := fmt.Sprintf("https://127.0.0.1:%d/v1/loopback-allowed", allowed.origin.TLSAddr.Port)
		resp := curlClient{}.Do(t, allowed, clientRequest{URL: url})
		if resp.Err != "" || resp.Status != http.StatusOK {
			t.Fatalf("allow_private: true: status %d err %s", resp.Status, resp.Err)
		}
		got := allowed.origin.one(t, "/v1/loopback-allowed")
		if got.Header.Get("Authorization") != "Bearer "+allowed.token {
			t.Errorf("credential not injected for the allowed loopback destination")
		}
	})
}

// TestHostAndSNIMismatch: inside a tunnel to api.origin.test, a TLS SNI or
// a Host header naming another host is refused and nothing reaches the
// origin (invariant 1).
func TestHostAndSNIMismatch(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})

	for _, sni := range []string{otherHost, unrelatedHost} {
		t.Run("sni-"+sni, func(t *testing.T) {
			c, resp := rawConnect(t, e, apiHost+":443")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("CONNECT: %s", resp.Status)
			}
			// Skip verification: the question is whether the gateway
			// accepts the handshake at all, not whether we trust it.
			tc := tls.Client(c, &tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			if err := tc.Handshake(); err == nil {
				// Not refused during the handshake: it must be refused now.
				req, _ := http.NewRequest(http.MethodGet, "https://"+sni+"/v1/sni-mismatch", nil)
				if err := req.Write(tc); err == nil {
					if r, err := readResponse(tc, req); err == nil && r.StatusCode != http.StatusMisdirectedRequest {
						t.Errorf("SNI %s in a tunnel to %s: handshake accepted and request answered %s, want a refused handshake", sni, apiHost, r.Status)
					}
				}
				t.Errorf("SNI %s in a tunnel to %s: TLS handshake succeeded, want it refused", sni, apiHost)
			}
		})
	}

	t.Run("host-header-raw", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+apiHost+"/v1/host-mismatch", nil)
		req.Host = otherHost
		resp, herr := tunnelRequest(t, e, apiHost+":443", apiHost, gwCAPool, req)
		if herr != nil {
			t.Fatalf("handshake: %v", herr)
		}
		checkDenial(t, resp.StatusCode, resp.Header, readAll(t, resp), http.StatusMisdirectedRequest, "host_mismatch", "*")
	})
	for _, c := range []client{curlClient{}, goClient{}, pythonClient{}} {
		t.Run("host-header-"+c.Name(), func(t *testing.T) {
			resp := c.Do(t, e, clientRequest{
				URL:    "https://" + apiHost + "/v1/host-mismatch-" + c.Name(),
				Header: http.Header{"Host": {otherHost}},
			})
			if resp.Err != "" {
				t.Fatalf("client error: %s", resp.Err)
			}
			if resp.Status != http.StatusMisdirectedRequest || resp.Header.Get("X-Credgate-Reason") != "host_mismatch" {
				t.Errorf("status %d reason %q, want 421 host_mismatch", resp.Status, resp.Header.Get("X-Credgate-Reason"))
			}
		})
	}
	for _, r := range e.origin.requests() {
		if strings.Contains(r.Path, "mismatch") {
			t.Errorf("origin saw %s %s (Host %s, SNI %s)", r.Method, r.Path, r.Host, r.ServerName)
		}
	}
}

// TestRedirectNotFollowed: the gateway hands a redirect to another host back
// to the client (invariant 2); a client that follows it to a host without a
// rule is refused and the credential never reaches that host.
func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	for _, c := range clients {
		t.Run(c.Name(), func(t *testing.T) {
			landing := "/landing-" + c.Name()
			target := "https://" + otherHost + landing
			u := "https://" + apiHost + "/redirect?to=" + url.QueryEscape(target)

			resp := c.Do(t, e, clientRequest{URL: u})
			if resp.Err != "" || resp.Status != http.StatusFound {
				t.Fatalf("not following: status %d err %s, want 302", resp.Status, resp.Err)
			}
			if loc := resp.Header.Get("Location"); loc != target {
				t.Errorf("Location = %q, want %q", loc, target)
			}

			resp = c.Do(t, e, clientRequest{URL: u, Follow: true})
			if resp.Err == "" {
				t.Fatalf("following the redirect to %s succeeded (status %d), want the gateway to refuse it", otherHost, resp.Status)
			}
			if resp.ConnectStatus != http.StatusForbidden {
				t.Errorf("following: %q, want CONNECT refused with 403", resp.Err)
			}
			if got := e.origin.byPath(landing); len(got) != 0 {
				t.Errorf("origin saw %d requests for %s", len(got), landing)
			}
		})
	}
	for _, r := range e.origin.requests() {
		if r.Host != apiHost || r.ServerName != apiHost {
			t.Errorf("origin saw a request for Host %q SNI %q: %s", r.Host, r.ServerName, r.Path)
		}
	}
}

// TestGatewayHeadersNotForwarded: Proxy-Authorization (whether sent to the
// proxy or inside the tunnel) and other hop-by-hop proxy headers never
// reach the origin (invariant 3).
func TestGatewayHeadersNotForwarded(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	inner := http.Header{
		"Proxy-Authorization": {"Basic aW5uZXI6c2VjcmV0"},
		"Proxy-Connection":    {"keep-alive"},
	}
	for _, c := range clients {
		for _, scheme := range []string{"https", "http"} {
			t.Run(c.Name()+"-"+scheme, func(t *testing.T) {
				host := apiHost
				if scheme == "http" {
					host = plainHost
				}
				path := "/v1/proxyauth-" + c.Name() + "-" + scheme
				resp := c.Do(t, e, clientRequest{
					URL: scheme + "://" + host + path, Header: inner, ProxyUserinfo: "app:proxy-password",
				})
				if resp.Err != "" || resp.Status != http.StatusOK {
					t.Fatalf("status %d err %s", resp.Status, resp.Err)
				}
				got := e.origin.one(t, path)
				for _, h := range []string{"Proxy-Authorization", "Proxy-Connection", "Proxy-Authenticate"} {
					if v := got.Header.Values(h); len(v) != 0 {
						t.Errorf("origin received %s: %q", h, v)
					}
				}
				if got.Header.Get("Authorization") != "Bearer "+e.token {
					t.Errorf("credential not injected")
				}
			})
		}
	}
}
