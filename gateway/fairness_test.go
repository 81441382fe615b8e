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
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/lograte"
	"github.com/credgate/credgate/killswitch"
)

// TestSharedStructuresBounded is the class test of the gateway's shared
// bounded structures (docs/security.md, "Shared bounded structures"):
// for each, a hostile caller puts 10× the structure's capacity of
// distinct keys in it; its size never passes its bound, and a victim
// caller's outcome — counted, never timed — stays within the documented
// bound. Rows whose structure is per-caller by construction (rate-limit
// buckets, connection admission per source) have tests of their own;
// the table in the docs names them.
func TestSharedStructuresBounded(t *testing.T) {
	const token = "fairness-admin-token-0123456789"
	dir := t.TempDir()
	writeFile(t, dir, "admin.token", []byte(token))
	const maxSwitches = 8
	tg := startSwitchGateway(t, fmt.Sprintf("admin:\n  token_file: %q\n  max_switches: %d\n", filepath.Join(dir, "admin.token"), maxSwitches))
	caCert, caKey, err := mitm.WriteCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := mitm.LoadCA(caCert, caKey)
	if err != nil {
		t.Fatal(err)
	}

	type structure struct {
		capacity int
		// victimBefore is the victim's use before the flood; hostile(i)
		// the hostile caller's i-th distinct key; size the structure's
		// size now; lost counts the victim's outcomes the flood changed
		// (evicted entries, refusals), within maxLost.
		victimBefore func(t *testing.T)
		hostile      func(t *testing.T, i int)
		size         func() int
		bound        int
		lost         func(t *testing.T) int
		maxLost      int
	}
	rows := []struct {
		name string
		make func(t *testing.T) structure
	}{
		{"leaf cache: a workload opens tunnels to many names", func(t *testing.T) structure {
			const size = 16
			is := mitm.NewIssuer(ca, mitm.IssuerOptions{CacheSize: size})
			ctx := context.Background()
			victim := []string{"api.stripe.com", "api.github.com", "api.openai.com", "hooks.slack.com"}
			return structure{
				capacity: size,
				victimBefore: func(t *testing.T) {
					for _, h := range victim {
						if _, err := is.Certificate(ctx, "billing", h); err != nil {
							t.Fatal(err)
						}
					}
				},
				hostile: func(t *testing.T, i int) {
					if _, err := is.Certificate(ctx, "crawler", fmt.Sprintf("b%d.wild.example", i)); err != nil {
						t.Fatal(err)
					}
				},
				size:  is.Len,
				bound: size,
				// The victim's leaves are all still cached: asking again
				// signs none.
				lost: func(t *testing.T) int {
					before := is.Stats().Signed
					for _, h := range victim {
						if _, err := is.Certificate(ctx, "billing", h); err != nil {
							t.Fatal(err)
						}
					}
					return int(is.Stats().Signed - before)
				},
				maxLost: 0,
			}
		}},
		{"kill switch: an admin token holder disables many names", func(t *testing.T) structure {
			return structure{
				capacity: maxSwitches,
				hostile: func(t *testing.T, i int) {
					st, code, body := adminCall(t, tg, "/admin/v1/disable", token, fmt.Sprintf(`{"kind":"credential","name":"flood-%d"}`, i))
					switch {
					case st == http.StatusOK:
					case st == http.StatusConflict && code == codeSwitchLimit:
						if r, _ := body["reason"].(string); !strings.Contains(r, "admin.max_switches") {
							t.Fatalf("409 without the setting that raises the bound: %v", body)
						}
					default:
						t.Fatalf("disable %d: %d %s %v", i, st, code, body)
					}
				},
				size:  tg.gw.switches.Snapshot().Len,
				bound: maxSwitches,
				// The operator lifts one and disables the rule of the
				// incident: taken.
				lost: func(t *testing.T) int {
					if st, code, _ := adminCall(t, tg, "/admin/v1/enable", token, `{"kind":"credential","name":"flood-0"}`); st != http.StatusOK {
						t.Fatalf("enable: %d %s", st, code)
					}
					if st, _, _ := adminCall(t, tg, "/admin/v1/disable", token, `{"kind":"rule","name":"api","reason":"INC-7"}`); st != http.StatusOK {
						return 1
					}
					return 0
				},
				maxLost: 0,
			}
		}},
		{"kill switch: anonymous callers trip tripwires from many addresses", func(t *testing.T) structure {
			const max = 8
			s, err := killswitch.New(context.Background(), killswitch.Options{MaxEntries: max})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return structure{
				capacity: max,
				hostile: func(t *testing.T, i int) {
					e, _ := quarantineSwitch(identity.Workload{Source: netip.AddrFrom4([4]byte{198, 51, byte(i / 250), byte(i%250 + 1)})})
					if _, err := s.Quarantine(context.Background(), e); err != nil && !errors.Is(err, killswitch.ErrFull) {
						t.Fatal(err)
					}
				},
				size:  s.Snapshot().Len,
				bound: max - max/4,
				// The operator's quarter is left: two disables taken.
				lost: func(t *testing.T) int {
					lost := 0
					for _, name := range []string{"api", "tunnel"} {
						if _, err := s.Disable(context.Background(), killswitch.Entry{Kind: killswitch.Rule, Name: name}); err != nil {
							lost++
						}
					}
					return lost
				},
				maxLost: 0,
			}
		}},
		{"log rate limiter: many codes", func(t *testing.T) structure {
			l := lograte.New(clientLogEvery, nil)
			return structure{
				capacity: lograte.MaxKeys,
				// The victim's kind of line was logged before the flood:
				// its key stays its own.
				victimBefore: func(t *testing.T) { l.Allow(codeConnectionLimit) },
				hostile:      func(t *testing.T, i int) { l.Allow(fmt.Sprintf("hostile-%d", i)) },
				size:         l.Len,
				bound:        lograte.MaxKeys + 1,
				lost:         func(t *testing.T) int { return 0 },
				maxLost:      0,
			}
		}},
		{"upstream ALPN memo: many upstream names", func(t *testing.T) structure {
			var a alpnMemo
			victim := alpnKey{"api.stripe.com", "443"}
			return structure{
				capacity:     maxALPNMemo,
				victimBefore: func(t *testing.T) { a.set(victim, alpnHTTP1) },
				hostile:      func(t *testing.T, i int) { a.set(alpnKey{fmt.Sprintf("b%d.wild.example", i), "443"}, alpnHTTP2Only) },
				size: func() int {
					a.mu.Lock()
					defer a.mu.Unlock()
					return len(a.m)
				},
				bound: maxALPNMemo,
				// The memo starts again empty when full: the victim's
				// upstream is learnt again by one handshake, at most once
				// per maxALPNMemo names of the flood.
				lost: func(t *testing.T) int {
					if a.get(victim) == alpnUnknown {
						return 1
					}
					return 0
				},
				maxLost: 1,
			}
		}},
		{"upstream HTTP/2 connections: many upstream names", func(t *testing.T) structure {
			// h2Conns alone, with connections that record their Close;
			// TestUpstreamHTTP2ConnBound drives it through the gateway
			// and real HTTP/2 connections.
			const max = 16
			s := newH2Conns(max, time.Hour)
			victim := &fakeConn{}
			var held *h2UpConn
			return structure{
				capacity: max,
				// The victim's connection holds a request all along.
				victimBefore: func(t *testing.T) {
					s.begin(alpnKey{"api.stripe.com", "443"})
					held, _ = s.use(victim, alpnKey{"api.stripe.com", "443"})
				},
				hostile: func(t *testing.T, i int) {
					host := alpnKey{fmt.Sprintf("b%d.wild.example", i), "443"}
					s.begin(host)
					e, _ := s.use(&fakeConn{}, host)
					s.end(host, []*h2UpConn{e})
				},
				size:  s.Len,
				bound: max,
				lost: func(t *testing.T) int {
					s.end(alpnKey{"api.stripe.com", "443"}, []*h2UpConn{held})
					if victim.closed.Load() {
						return 1
					}
					return 0
				},
				maxLost: 0,
			}
		}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			s := row.make(t)
			if s.victimBefore != nil {
				s.victimBefore(t)
			}
			for i := range 10 * s.capacity {
				s.hostile(t, i)
				if n := s.size(); n > s.bound {
					t.Fatalf("after %d hostile keys the structure holds %d, bound %d", i+1, n, s.bound)
				}
			}
			if lost := s.lost(t); lost > s.maxLost {
				t.Errorf("the victim lost %d outcomes to the flood, bound %d", lost, s.maxLost)
			}
		})
	}
}

// TestUpstreamIdleBoundEveryTransport: upstream.max_idle_conns bounds the
// idle connections of every client of an upstream pool (Go's transports
// and the gateway's HTTP/1.1 client, whose bound and eviction h1client
// TestMaxIdleConns tests with 10× its capacity of hosts, and the HTTP/2
// connections of every pool together, TestUpstreamHTTP2ConnBound), under each
// upstream.http2 mode; its default is DefaultMaxIdleConns. Before, the
// total was unbounded: a caller reaching many names under a wildcard
// destination kept an idle connection (a file descriptor) per name for
// idle_conn_timeout, taking the descriptors other callers' connections
// need.
func TestUpstreamIdleBoundEveryTransport(t *testing.T) {
	for _, mode := range []string{HTTP2Match, HTTP2Never, HTTP2Always} {
		for _, set := range []int{0, 7} {
			t.Run(fmt.Sprintf("%s/%d", mode, set), func(t *testing.T) {
				pki := newTestPKI(t, apiHost, tunnelHost)
				tg := newTestGateway(t, pki, startOrigin(t, pki))
				tg.upstreamExtra = ", http2: " + mode
				if set != 0 {
					tg.upstreamExtra += fmt.Sprintf(", max_idle_conns: %d", set)
				}
				writeFile(t, tg.dir, "policy.yaml", []byte(testPolicy))
				tg.run(t, "")
				want := set
				if want == 0 {
					want = DefaultMaxIdleConns
				}
				p := tg.gw.pools.Load().public
				for name, tr := range map[string]*http.Transport{"t": p.t, "h1": p.h1, "h1m": p.h1m, "match": p.match} {
					if tr != nil && tr.MaxIdleConns != want {
						t.Errorf("transport %s keeps %d idle connections, want %d", name, tr.MaxIdleConns, want)
					}
				}
				if p.h1c != nil && p.h1c.MaxIdleConns != want {
					t.Errorf("the HTTP/1.1 client keeps %d idle connections, want %d", p.h1c.MaxIdleConns, want)
				}
				// HTTP/2 connections, kept by net/http outside its pool:
				// TestUpstreamHTTP2ConnBound.
				if p.h2 == nil || p.h2.max != want {
					t.Errorf("the HTTP/2 connections are not bounded by %d", want)
				}
			})
		}
	}
}

// h2BoundPolicy has a wildcard destination whose names a hostile
// workload floods, beside the victim's api destination.
const h2BoundPolicy = `
workloads:
  local: {cidrs: [127.0.0.1/32]}
destinations:
  api: {hosts: [api.origin.test], allow_private: true}
  wild: {hosts: ["*.wild.origin.test"], allow_private: true}
credentials:
  token: {provider: static, env: CREDGATE_GATEWAY_TEST_TOKEN}
rules:
  - {name: api, from: local, to: api, inject: {credential: token, as: bearer}}
  - {name: wild, from: local, to: wild, inject: {credential: token, as: bearer}}
default: deny
`

// connCountingOrigin is an HTTPS origin that offers protos and counts
// the connections it accepted and those open now. /hold answers once
// release is closed, after telling held.
type connCountingOrigin struct {
	addr           string
	accepted, open atomic.Int64
	held           chan struct{}
	release        chan struct{}
}

func startConnCountingOrigin(t *testing.T, pki *testPKI, protos []string) *connCountingOrigin {
	t.Helper()
	o := &connCountingOrigin{held: make(chan struct{}, 1), release: make(chan struct{})}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			w.WriteHeader(http.StatusOK)
			fmt.Fprint(w, "first ")
			w.(http.Flusher).Flush()
			o.held <- struct{}{}
			select {
			case <-o.release:
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprint(w, "ok")
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.leaf}, NextProtos: protos}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			o.accepted.Add(1)
			o.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			o.open.Add(-1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	o.addr = srv.Listener.Addr().String()
	return o
}

// TestUpstreamHTTP2ConnBound: upstream.max_idle_conns bounds the HTTP/2
// upstream connections too, to all hosts together (h2Conns), through
// every transport that speaks HTTP/2 upstream: the default one (HTTP/2
// clients under match and always) and match's bridge (HTTP/1.1 clients
// to an upstream that speaks HTTP/2 alone). A hostile workload reaches
// 10× the bound of names over HTTP/2: after each, the connections open
// at the origin come back to at most the bound (the idle longest
// closed), the victim's connection, holding a response in flight all
// along, survives it, and requests to one host share one connection.
// Before, net/http's HTTP/2 client kept one connection per name until
// idle_conn_timeout, outside MaxIdleConns.
func TestUpstreamHTTP2ConnBound(t *testing.T) {
	const bound = 4
	for _, tc := range []struct {
		name     string
		mode     string
		clientH2 bool
		protos   []string
	}{
		{"always: HTTP/2 clients", HTTP2Always, true, []string{"h2", "http/1.1"}},
		{"match: HTTP/2 clients", HTTP2Match, true, []string{"h2", "http/1.1"}},
		{"match: HTTP/1.1 clients to an HTTP/2-only upstream", HTTP2Match, false, []string{"h2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pki := newTestPKI(t, apiHost, "*.wild.origin.test")
			o := startConnCountingOrigin(t, pki, tc.protos)
			tg := newTestGateway(t, pki, &testOrigin{addr: o.addr})
			tg.upstreamExtra = fmt.Sprintf(", http2: %s, max_idle_conns: %d", tc.mode, bound)
			writeFile(t, tg.dir, "policy.yaml", []byte(h2BoundPolicy))
			var resolve strings.Builder
			fmt.Fprintf(&resolve, "resolve:\n  %q: %q\n  \"reuse.wild.origin.test:443\": %q\n", apiHost+":443", o.addr, o.addr)
			for i := range 10 * bound {
				fmt.Fprintf(&resolve, "  \"h%d.wild.origin.test:443\": %q\n", i, o.addr)
			}
			tg.run(t, resolve.String())
			get := func(c *http.Client, url string) string {
				t.Helper()
				resp, err := c.Get(url)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("GET %s: %s %q %v", url, resp.Status, body, err)
				}
				return string(body)
			}

			// The victim's response stays in flight through the flood.
			victim := make(chan string, 1)
			vc := tg.client(t, tc.clientH2)
			go func() {
				resp, err := vc.Get("https://" + apiHost + "/hold")
				if err != nil {
					victim <- err.Error()
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					victim <- err.Error()
					return
				}
				victim <- string(b)
			}()
			select {
			case <-o.held:
			case <-time.After(10 * time.Second):
				t.Fatal("the victim's request did not reach the origin")
			}

			hostile := tg.client(t, tc.clientH2)
			for i := range 10 * bound {
				get(hostile, fmt.Sprintf("https://h%d.wild.origin.test/x", i))
				waitFor(t, 5*time.Second, fmt.Sprintf("at most %d HTTP/2 upstream connections after %d names", bound, i+1), func() bool {
					return tg.gw.h2conns.Len() <= bound && o.open.Load() <= bound
				})
			}
			if n := tg.gw.h2conns.closed.Load(); n < uint64(10*bound-bound) {
				t.Errorf("%d connections closed for the bound, want at least %d", n, 10*bound-bound)
			}

			close(o.release)
			select {
			case got := <-victim:
				if got != "first ok" {
					t.Fatalf("the victim's response: %q, want it whole", got)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the victim's response did not end")
			}

			// One host, many requests: one connection.
			get(hostile, "https://reuse.wild.origin.test/first")
			before := o.accepted.Load()
			for i := range 20 {
				get(hostile, fmt.Sprintf("https://reuse.wild.origin.test/again/%d", i))
			}
			if n := o.accepted.Load() - before; n != 0 {
				t.Errorf("20 requests to one host opened %d connections more, want 0 (reused)", n)
			}
		})
	}
}

// fakeConn is a connection of h2Conns that records its Close.
type fakeConn struct{ closed atomic.Bool }

func (c *fakeConn) Close() error {
	c.closed.Store(true)
	return nil
}
