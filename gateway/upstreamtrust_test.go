package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
)

// trustPolicy injects the test credential for a, b and c.origin.test.
const trustPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  a: {hosts: [a.origin.test], allow_private: true}
  b: {hosts: [b.origin.test], allow_private: true}
  c: {hosts: [c.origin.test], allow_private: true}
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
rules:
  - {name: a, from: local, to: a, inject: {credential: token, as: bearer}}
  - {name: b, from: local, to: b, inject: {credential: token, as: bearer}}
  - {name: c, from: local, to: c, inject: {credential: token, as: bearer}}
default: deny
`

// caBundle is the CA certificates of pkis, one PEM file.
func caBundle(pkis ...*testPKI) []byte {
	var b []byte
	for _, p := range pkis {
		b = append(b, p.caPEM...)
	}
	return b
}

// TestReloadUpstreamCABundle: upstream.ca_bundle is applied by a config
// reload (ReloadConfig, on SIGHUP), here with new content at the same
// path. Three TLS origins on 127.0.0.1, each signed by a CA of its own:
// the bundle trusts A and C, then B and C. After the reload A's origin is
// refused and B's accepted; the idle pooled connection to A, verified
// under the old trust, carries no credential (invariant 1): A receives
// nothing more. A request to A in flight across the reload finishes on
// its connection, which is closed once it is done (the retired pool
// closes when drained); requests to C, trusted before and after, sent
// without pause through the reload, all succeed. A bundle that does not
// load keeps the last good one (invariant 9), with an error in the log,
// the returned error, /readyz's detail and
// credgate_config_reloads_total{result="error"}.
func TestReloadUpstreamCABundle(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%t", h2), func(t *testing.T) {
			pkiA, pkiB, pkiC := newTestPKI(t, "a.origin.test"), newTestPKI(t, "b.origin.test"), newTestPKI(t, "c.origin.test")
			oA, oB, oC := startCountingOrigin(t, pkiA), startCountingOrigin(t, pkiB), startCountingOrigin(t, pkiC)
			tg := newTestGateway(t, pkiC, nil)
			bundle := writeFile(t, tg.dir, "origin-ca.pem", caBundle(pkiA, pkiC))
			writeFile(t, tg.dir, "policy.yaml", []byte(trustPolicy))
			const token = "trust-reload-token-0123456789"
			tokFile := writeFile(t, tg.dir, "admin.token", []byte(token))
			tg.run(t, fmt.Sprintf("resolve:\n  \"a.origin.test:443\": %q\n  \"b.origin.test:443\": %q\n  \"c.origin.test:443\": %q\nadmin:\n  token_file: %s\n",
				oA.addr, oB.addr, oC.addr, tokFile))
			c := tg.client(t, h2)
			get := func(host, path string) (int, string) {
				resp, err := c.Get("https://" + host + path)
				if err != nil {
					return 0, err.Error()
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			want := func(host, path string, status int) {
				t.Helper()
				if st, body := get(host, path); st != status {
					t.Fatalf("GET https://%s%s: %d %q, want %d", host, path, st, body, status)
				}
			}
			reload := func() error {
				t.Helper()
				next, err := LoadConfig(tg.gw.cfg.File())
				if err != nil {
					t.Fatal(err)
				}
				keys, err := tg.gw.ReloadConfig(next)
				if len(keys) > 0 {
					t.Errorf("ReloadConfig named %v as waiting for a restart, want none", keys)
				}
				return err
			}

			// Trust A and C: A answers (and its connection stays pooled),
			// B is refused before anything is sent.
			want("a.origin.test", "/x", http.StatusOK)
			want("b.origin.test", "/x", http.StatusBadGateway)
			if oA.creds.Load() != 1 || oB.creds.Load() != 0 || oA.open.Load() != 1 {
				t.Fatalf("before the reload: A got %d credentials on %d open connections, B %d; want 1, 1, 0", oA.creds.Load(), oA.open.Load(), oB.creds.Load())
			}

			// Requests to C without pause, through the reload.
			var sent, failed atomic.Int64
			var firstErr atomic.Value
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						sent.Add(1)
						if st, body := get("c.origin.test", "/c"); st != http.StatusOK || body != "ok /c" {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %q", st, body))
						}
					}
				})
			}
			poll.True(t, 10*time.Second, "requests to C under way", func() bool { return sent.Load() > 8 })

			// A request to A in flight across the reload.
			slow := make(chan string, 1)
			go func() {
				st, body := get("a.origin.test", "/slow")
				slow <- fmt.Sprint(st, " ", body)
			}()
			<-oA.arrived

			writeFile(t, tg.dir, "origin-ca.pem", caBundle(pkiB, pkiC))
			if err := reload(); err != nil {
				t.Fatalf("ReloadConfig: %v", err)
			}
			close(oA.release)
			if got := <-slow; got != "200 ok /slow" {
				t.Errorf("the request in flight across the reload: %s, want 200 ok /slow", got)
			}
			atReload := sent.Load()
			poll.True(t, 10*time.Second, "requests to C after the reload", func() bool { return sent.Load() > atReload+8 })
			close(stop)
			wg.Wait()
			if n := failed.Load(); n > 0 {
				t.Errorf("%d of %d requests to C failed across the reload (first: %v)", n, sent.Load(), firstErr.Load())
			}

			// Trust B and C: A is refused, and the connection to A pooled
			// under the old trust carries nothing; B answers.
			credsA := oA.creds.Load()
			want("a.origin.test", "/y", http.StatusBadGateway)
			if got := oA.creds.Load(); got != credsA {
				t.Errorf("A, no longer trusted, received %d more requests with the credential after the reload", got-credsA)
			}
			want("b.origin.test", "/y", http.StatusOK)
			poll.True(t, 10*time.Second, "the retired pool's connections to A closed", func() bool { return oA.open.Load() == 0 })

			// A broken bundle: refused, B and C still trusted, A not.
			writeFile(t, tg.dir, "origin-ca.pem", append(caBundle(pkiB), "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"...))
			tg.logs.Reset()
			err := reload()
			if err == nil || !strings.Contains(err.Error(), "upstream.ca_bundle") || !strings.Contains(err.Error(), filepath.Base(bundle)) {
				t.Errorf("ReloadConfig of a broken bundle: %v, want an error naming upstream.ca_bundle and the file", err)
			}
			if !strings.Contains(tg.logs.String(), "the last good bundle stays in force") {
				t.Errorf("no error logged for the broken bundle:\n%s", tg.logs.String())
			}
			want("b.origin.test", "/z", http.StatusOK)
			want("c.origin.test", "/z", http.StatusOK)
			want("a.origin.test", "/z", http.StatusBadGateway)
			if got := counterValue(t, tg.gw.metrics.configReloads.WithLabelValues("error")); got != 1 {
				t.Errorf(`credgate_config_reloads_total{result="error"} = %v, want 1`, got)
			}
			readyzErr := func() string {
				_, body, err := adminGetStatus(t, tg, "/readyz", token)
				var d readyzDetail
				if err == nil {
					err = json.Unmarshal([]byte(body), &d)
				}
				if err != nil {
					t.Fatalf("/readyz: %v %s", err, body)
				}
				if d.Config == nil {
					return ""
				}
				return d.Config.Error
			}
			if e := readyzErr(); !strings.Contains(e, "upstream.ca_bundle") {
				t.Errorf("/readyz detail config.error = %q, want the bundle's error", e)
			}
			// As credgate serve's SIGHUP finds it first: the config does
			// not load (CheckFiles), nothing of it is applied.
			broken, err := LoadConfig(tg.gw.cfg.File())
			if err != nil {
				t.Fatal(err)
			}
			if err := broken.CheckFiles(); err == nil {
				t.Error("CheckFiles accepts the broken bundle")
			} else {
				tg.gw.ConfigReloadFailed(err)
			}
			if e := readyzErr(); !strings.Contains(e, "upstream.ca_bundle") {
				t.Errorf("/readyz detail config.error = %q after a config that does not load, want the bundle's error", e)
			}
			if got := counterValue(t, tg.gw.metrics.configReloads.WithLabelValues("error")); got != 2 {
				t.Errorf(`credgate_config_reloads_total{result="error"} = %v, want 2`, got)
			}
			want("b.origin.test", "/z2", http.StatusOK)

			// Fixed: A and C again, the error gone.
			writeFile(t, tg.dir, "origin-ca.pem", caBundle(pkiA, pkiC))
			if err := reload(); err != nil {
				t.Fatalf("ReloadConfig: %v", err)
			}
			want("a.origin.test", "/w", http.StatusOK)
			want("b.origin.test", "/w", http.StatusBadGateway)
			if e := readyzErr(); e != "" {
				t.Errorf("/readyz detail config.error = %q after a good reload, want none", e)
			}
		})
	}
}

// TestTrustGenerationRetires: retiring a trust generation hands every
// pool of it — public, oneShot, the private one of the policy in force
// and a private one a policy reload retired before — to the new
// generation's pool of the same kind (a private one to oneShot, which
// keeps nothing), and a request choosing from the old generation after
// the swap gets the new one's. The public pool cannot be reached end to
// end from 127.0.0.1 (TestReloadUpstreamCABundle goes through the
// private ones), so it is checked here.
func TestTrustGenerationRetires(t *testing.T) {
	tg, o := startPoolGateway(t, "")
	g := tg.gw
	pol := g.store.Current()
	addrs := []netip.AddrPort{o.addr}
	old := g.pools.Load()
	priv := old.forRequest(pol, true, addrs)
	if priv == old.public || priv == old.oneShot {
		t.Fatal("a private request did not get the private pool")
	}
	old.reload() // a policy reload retires priv to old.oneShot
	priv2 := old.forRequest(pol, true, addrs)
	if priv2 == priv {
		t.Fatal("the private pool was not replaced by the policy reload")
	}

	next := g.newUpstreamGeneration(&upstreamTrust{bundle: "next"})
	g.pools.Store(next)
	old.retireTo(next)
	for _, c := range []struct {
		name     string
		from, to *upstreamPool
	}{
		{"public", old.public, next.public},
		{"oneShot", old.oneShot, next.oneShot},
		{"private in force", priv2, next.oneShot},
		{"private retired before", priv, next.oneShot},
	} {
		if got := c.from.current(); got != c.to {
			t.Errorf("%s pool of the retired generation serves through %p, want the new generation's %p", c.name, got, c.to)
		}
	}
	if got := old.forRequest(pol, false, addrs); got.current() != next.public {
		t.Error("a public request choosing from the retired generation does not get the new public pool")
	}
	if got := old.forRequest(pol, true, addrs); got.current() == got && (got == old.public || got == old.oneShot || got == priv || got == priv2) {
		t.Error("a private request choosing from the retired generation got one of its pools")
	}
	old.mu.Lock()
	defer old.mu.Unlock()
	if old.priv != nil {
		t.Error("the retired generation made a private pool after its retirement")
	}
}

// TestReissueAfterTrustReload: a request whose credential the upstream
// answers 401 is sent again with a new credential (reissue); when
// upstream.ca_bundle stopped trusting that upstream while the first
// attempt was in flight, the second one goes out under the new trust —
// refused — not over the connection the old trust verified (invariant 1).
func TestReissueAfterTrustReload(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%t", h2), func(t *testing.T) {
			pkiA, pkiB := newTestPKI(t, "a.origin.test"), newTestPKI(t, "b.origin.test")
			oA := startCountingOrigin(t, pkiA)
			tg := newTestGateway(t, pkiA, nil)
			t.Setenv("CREDGATE_GATEWAY_TEST_REISSUABLE", "reissued-"+tg.token)
			writeFile(t, tg.dir, "origin-ca.pem", caBundle(pkiA))
			writeFile(t, tg.dir, "policy.yaml", []byte(strings.Replace(trustPolicy, "credentials:\n", "credentials:\n  reissuable:\n    provider: gwtest-reissuable\n    env: CREDGATE_GATEWAY_TEST_REISSUABLE\n", 1)+
				"\n"))
			pol := strings.Replace(string(mustRead(t, filepath.Join(tg.dir, "policy.yaml"))), "to: a, inject: {credential: token", "to: a, inject: {credential: reissuable", 1)
			writeFile(t, tg.dir, "policy.yaml", []byte(pol))
			tg.run(t, fmt.Sprintf("resolve:\n  \"a.origin.test:443\": %q\n", oA.addr))
			c := tg.client(t, h2)
			// The credential cached (a fresh one is not reissued), and a
			// connection to A pooled.
			if resp, err := c.Get("https://a.origin.test/warm"); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("warm-up: %v %v", resp, err)
			} else {
				resp.Body.Close()
			}

			done := make(chan int, 1)
			go func() {
				resp, err := c.Get("https://a.origin.test/slow401")
				if err != nil {
					done <- 0
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				done <- resp.StatusCode
			}()
			<-oA.arrived
			writeFile(t, tg.dir, "origin-ca.pem", caBundle(pkiB))
			next, err := LoadConfig(tg.gw.cfg.File())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tg.gw.ReloadConfig(next); err != nil {
				t.Fatal(err)
			}
			close(oA.release)
			st := <-done
			if got := oA.creds.Load(); got != 2 {
				t.Errorf("A, no longer trusted, received %d requests with a credential, want 2 (the warm-up and the attempt before the reload); the answer was %d", got, st)
			}
			if st != http.StatusBadGateway {
				t.Errorf("the reissued request to an upstream no longer trusted: %d, want 502", st)
			}
		})
	}
}

// TestRetiredPoolHandshakesUnderNewTrust: a pool of a retired trust
// generation that still makes a handshake (a transport's own retry of a
// request in flight at the reload, a new HTTP/2 connection for it) is
// held to the trust in force as well as its own: after the bundle went
// from A and C to B and C, its handshake with A's origin fails and with
// C's succeeds. Real TLS origins on 127.0.0.1.
func TestRetiredPoolHandshakesUnderNewTrust(t *testing.T) {
	pkiA, pkiB, pkiC := newTestPKI(t, "a.origin.test"), newTestPKI(t, "b.origin.test"), newTestPKI(t, "c.origin.test")
	oA, oC := startCountingOrigin(t, pkiA), startCountingOrigin(t, pkiC)
	tg := newTestGateway(t, pkiC, nil)
	writeFile(t, tg.dir, "origin-ca.pem", caBundle(pkiA, pkiC))
	writeFile(t, tg.dir, "policy.yaml", []byte(trustPolicy))
	tg.run(t, "")
	old := tg.gw.pools.Load().oneShot // a private pool: it may dial 127.0.0.1
	handshake := func(host string, o *countingOrigin) error {
		ctx := context.WithValue(t.Context(), stateKey, &reqState{addrs: []netip.AddrPort{o.addr}})
		c, err := old.dialTLS(ctx, "tcp", host+":443", alpnH1)
		if err == nil {
			c.Close()
		}
		return err
	}
	for _, o := range []struct {
		host string
		o    *countingOrigin
	}{{"a.origin.test", oA}, {"c.origin.test", oC}} {
		if err := handshake(o.host, o.o); err != nil {
			t.Fatalf("before the reload, %s: %v", o.host, err)
		}
	}
	writeFile(t, tg.dir, "origin-ca.pem", caBundle(pkiB, pkiC))
	next, err := LoadConfig(tg.gw.cfg.File())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tg.gw.ReloadConfig(next); err != nil {
		t.Fatal(err)
	}
	if err := handshake("a.origin.test", oA); err == nil || !strings.Contains(err.Error(), "upstream.ca_bundle was reloaded") {
		t.Errorf("the retired pool's handshake with A, no longer trusted: %v, want refused", err)
	}
	if err := handshake("c.origin.test", oC); err != nil {
		t.Errorf("the retired pool's handshake with C, trusted by both: %v", err)
	}
}
