package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

// countingOrigin is a TLS origin on 127.0.0.1 that counts the
// connections it accepted and answers "ok PATH". A request for /slow
// signals arrived and answers once release is closed; /slow401 does the
// same and answers 401.
type countingOrigin struct {
	addr  netip.AddrPort
	conns atomic.Int64
	// open counts the connections not yet closed; creds the requests
	// that arrived with an Authorization field.
	open, creds atomic.Int64
	arrived     chan struct{}
	release     chan struct{}
}

func startCountingOrigin(t *testing.T, pki *testPKI) *countingOrigin {
	t.Helper()
	o := &countingOrigin{arrived: make(chan struct{}, 1), release: make(chan struct{})}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			o.creds.Add(1)
		}
		if r.URL.Path == "/slow" || r.URL.Path == "/slow401" {
			o.arrived <- struct{}{}
			select {
			case <-o.release:
			case <-r.Context().Done():
				return
			}
			if r.URL.Path == "/slow401" {
				http.Error(w, "token rejected", http.StatusUnauthorized)
				return
			}
		}
		fmt.Fprintf(w, "ok %s", r.URL.Path)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.leaf}, NextProtos: []string{"h2", "http/1.1"}} // as real servers offer
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			o.conns.Add(1)
			o.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			o.open.Add(-1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	o.addr = netip.MustParseAddrPort(srv.Listener.Addr().String())
	return o
}

// poolPolicy has two destinations for one name: private allows private
// addresses (when allowPrivate), public does not.
func poolPolicy(allowPrivate bool) string {
	return fmt.Sprintf(`
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  private:
    hosts: [api.origin.test]
    allow_private: %t
  public:
    hosts: [api.origin.test]
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
rules:
  - name: private
    from: local
    to: private
    paths: [/private/*]
    inject: {credential: token, as: bearer}
  - name: public
    from: local
    to: public
    paths: [/public/*]
    inject: {credential: token, as: bearer}
default: deny
`, allowPrivate)
}

// startPoolGateway runs a gateway with poolPolicy(true) in front of a
// counting origin that api.origin.test:443 resolves to.
func startPoolGateway(t *testing.T, upstreamExtra string) (*testGateway, *countingOrigin) {
	t.Helper()
	pki := newTestPKI(t, apiHost)
	o := startCountingOrigin(t, pki)
	tg := newTestGateway(t, pki, nil)
	tg.upstreamExtra = upstreamExtra
	writeFile(t, tg.dir, "policy.yaml", []byte(poolPolicy(true)))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", o.addr))
	return tg, o
}

// TestPooledPrivateConnections: a connection dialled to a private address
// under allow_private is handed to no request whose decision does not
// allow it, and to no request of a later policy generation, whatever the
// transport (HTTP/2, HTTP/1.1, client certificate). The requests go
// straight to the gateway's upstream round tripper with the state
// handle would give them, so that the second one meets the pool even
// though its checked addresses would not allow the dial.
func TestPooledPrivateConnections(t *testing.T) {
	tests := []struct {
		name     string
		upstream string // upstream config extra
		http1    bool
		cert     bool
		// second request: whether its decision allows private
		// addresses, and whether the policy is reloaded before it;
		// busy: while the first request is still in flight.
		allowPrivate, reload, busy bool
		wantConns                  int64
		wantRefused                bool
	}{
		{name: "same generation, allowed: reused", allowPrivate: true, wantConns: 1},
		{name: "not allowed: refused, not reused", allowPrivate: false, wantConns: 1, wantRefused: true},
		{name: "not allowed, HTTP/1.1", http1: true, allowPrivate: false, wantConns: 1, wantRefused: true},
		{name: "not allowed, http2 never", upstream: ", http2: never", allowPrivate: false, wantConns: 1, wantRefused: true},
		{name: "not allowed, client certificate", cert: true, allowPrivate: false, wantConns: 1, wantRefused: true},
		{name: "after a reload: dialled afresh", allowPrivate: true, reload: true, wantConns: 2},
		{name: "after a reload, HTTP/1.1", http1: true, allowPrivate: true, reload: true, wantConns: 2},
		{name: "after a reload, client certificate", cert: true, allowPrivate: true, reload: true, wantConns: 2},
		{name: "busy across a reload", allowPrivate: true, reload: true, busy: true, wantConns: 2},
		{name: "busy across a reload, HTTP/1.1", http1: true, allowPrivate: true, reload: true, busy: true, wantConns: 2},
		{name: "busy across a reload, then a decision without allow_private", allowPrivate: false, reload: true, busy: true, wantConns: 1, wantRefused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, o := startPoolGateway(t, tt.upstream)
			g := tg.gw
			addrs := []netip.AddrPort{o.addr}
			var cert *tls.Certificate
			if tt.cert {
				c, err := tg.pki.ca.ClientLeaf("client")
				if err != nil {
					t.Fatal(err)
				}
				cert = &c
			}
			send := func(allowPrivate bool, path string) (string, error) {
				st := &reqState{addrs: addrs, pool: g.pools.Load().forRequest(g.store.Current(), allowPrivate, addrs), http1: tt.http1, cert: cert}
				ctx := context.WithValue(t.Context(), stateKey, st)
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+apiHost+path, nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := g.upstream.RoundTrip(req)
				if err != nil {
					return "", err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				return string(b), err
			}
			reload := func() {
				if err := g.ReloadPolicy(t.Context()); err != nil {
					t.Error(err)
				}
			}
			if tt.busy {
				// The first request holds its connection while the
				// policy is reloaded, and gives it back after.
				done := make(chan error, 1)
				go func() {
					body, err := send(true, "/slow")
					if err == nil && body != "ok /slow" {
						err = fmt.Errorf("body %q", body)
					}
					done <- err
				}()
				<-o.arrived
				reload()
				close(o.release)
				if err := <-done; err != nil {
					t.Fatalf("first request: %v", err)
				}
			} else {
				if body, err := send(true, "/private/x"); err != nil || body != "ok /private/x" {
					t.Fatalf("first request: %q %v", body, err)
				}
				if (tt.http1 || strings.Contains(tt.upstream, "never")) && !tt.cert {
					// An HTTP/1.1 GET: the private pool's h1client
					// sent it and keeps its connection.
					g.pools.Load().mu.Lock()
					p := g.pools.Load().priv
					g.pools.Load().mu.Unlock()
					if p == nil || p.h1c.Idle() != 1 {
						t.Fatal("the first request's connection is not idle in the private pool's h1client")
					}
				}
				if tt.reload {
					reload()
				}
			}
			body, err := send(tt.allowPrivate, "/private/x")
			switch {
			case tt.wantRefused && !errors.Is(err, errPrivateAddress):
				t.Errorf("second request: %q %v, want a refused dial (errPrivateAddress)", body, err)
			case !tt.wantRefused && (err != nil || body != "ok /private/x"):
				t.Errorf("second request: %q %v", body, err)
			}
			if got := o.conns.Load(); got != tt.wantConns {
				t.Errorf("origin accepted %d connections, want %d", got, tt.wantConns)
			}
		})
	}
}

// TestPrivateConnectionsThroughGateway drives a keep-alive client
// through the gateway: two rules reach one name (on 127.0.0.1), one
// with allow_private. The allowed requests share one upstream
// connection; the other rule's request is refused; a reload that keeps
// allow_private dials afresh; a reload that drops it refuses.
func TestPrivateConnectionsThroughGateway(t *testing.T) {
	tg, o := startPoolGateway(t, "")
	c := tg.client(t, false)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := c.Get("https://" + apiHost + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	steps := []struct {
		name      string
		reload    string // policy to load before the request, "" = none
		path      string
		wantCode  int
		wantBody  string
		wantConns int64
	}{
		{name: "allow_private rule", path: "/private/a", wantCode: 200, wantBody: "ok /private/a", wantConns: 1},
		{name: "allow_private rule again: connection reused", path: "/private/b", wantCode: 200, wantBody: "ok /private/b", wantConns: 1},
		{name: "rule without allow_private: refused", path: "/public/a", wantCode: 403, wantBody: "Loopback 127.0.0.0/8", wantConns: 1},
		{name: "reload keeping allow_private: new connection", reload: poolPolicy(true) + "# generation 2\n", path: "/private/c", wantCode: 200, wantBody: "ok /private/c", wantConns: 2},
		{name: "reload dropping allow_private: refused", reload: poolPolicy(false), path: "/private/d", wantCode: 403, wantBody: "allow_private", wantConns: 2},
	}
	for _, s := range steps {
		if s.reload != "" {
			writeFile(t, tg.dir, "policy.yaml", []byte(s.reload))
			if err := tg.gw.ReloadPolicy(t.Context()); err != nil {
				t.Fatalf("%s: reload: %v", s.name, err)
			}
		}
		code, body := get(s.path)
		if code != s.wantCode || !strings.Contains(body, s.wantBody) {
			t.Errorf("%s: %d %q, want %d and %q", s.name, code, body, s.wantCode, s.wantBody)
		}
		if got := o.conns.Load(); got != s.wantConns {
			t.Errorf("%s: origin accepted %d connections, want %d", s.name, got, s.wantConns)
		}
	}
}
