package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

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
// TestMaxIdleConns tests with 10× its capacity of hosts), under each
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
			})
		}
	}
}
