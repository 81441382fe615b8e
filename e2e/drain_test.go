package e2e

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/oauth2test"
)

// checkpointKey writes an Ed25519 audit checkpoint key (PEM PKCS#8, as
// openssl genpkey writes it) into dir and returns its path.
func checkpointKey(t *testing.T, dir string) string {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "audit-checkpoint.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// readyzStatus is /readyz's status code, 0 when the admin listener does
// not answer.
func (e *env) readyzStatus() int {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + e.adminAddr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitNotReady waits (briefly: the signal is asynchronous) for /readyz to
// answer 503, or for the gateway to have exited.
func (e *env) waitNotReady(t *testing.T) {
	t.Helper()
	waitFor(t, time.Second, "/readyz 503 after SIGTERM", func() error {
		st := e.readyzStatus()
		if st == http.StatusServiceUnavailable {
			return nil
		}
		if exited, _ := e.wait(0); exited {
			return nil
		}
		return fmt.Errorf("/readyz %d", st)
	})
}

// tunnelTLS opens CONNECT target and a TLS session inside it with sni,
// trusting pool.
func tunnelTLS(t *testing.T, e *env, target, sni string, pool *x509.CertPool) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	c, resp := rawConnect(t, e, target)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s: %s", target, resp.Status)
	}
	tc := tls.Client(c, &tls.Config{ServerName: sni, RootCAs: pool, NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS in CONNECT %s: %v", target, err)
	}
	return tc, bufio.NewReader(tc)
}

// roundTrip writes raw on w and reads one answer to method from br.
func roundTrip(w io.Writer, br *bufio.Reader, method, raw string) (int, string, error) {
	if _, err := io.WriteString(w, raw); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return 0, "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body), err
}

// drainCase is one kind of work open at SIGTERM.
type drainCase struct {
	name string
	// open starts the work and returns once it is in flight (the gateway
	// has it); finish, called after SIGTERM, checks how it ended.
	open func(t *testing.T, e *env) (finish func(t *testing.T))
	// cut: the work outlasts shutdown_timeout and is cut then; else the
	// gateway must exit well before shutdown_timeout.
	cut bool
	// closed is the audit "closed" reason the work's line must carry ("" =
	// no long-lived line).
	closed string
	// extra, when set, returns more gateway config (top-level keys).
	extra func(t *testing.T, dir string) string
}

// tlsListenConfig serves tls_listen with a leaf of the origin CA for
// 127.0.0.1.
func tlsListenConfig(t *testing.T, dir string) string {
	t.Helper()
	leaf, err := originCA.Leaf("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, keyFile := filepath.Join(dir, "listener.pem"), filepath.Join(dir, "listener-key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("tls_listen: 127.0.0.1:0\ntls:\n  cert: %q\n  key: %q\n", cert, keyFile)
}

// TestShutdownDrainKinds: SIGTERM with one kind of work open at a time.
// For every kind: /readyz turns 503 at once, new connections are refused,
// what is in flight completes (or, outliving shutdown_timeout, is cut
// with an audit line saying so), idle connections close at once, the
// gateway exits 0 and its audit chain ends with a signed final
// checkpoint (audit verify --require-final).
func TestShutdownDrainKinds(t *testing.T) {
	t.Parallel()
	const timeout = 6 * time.Second
	inflight := func(path string) string { return path + "?ms=1500" }
	cases := []drainCase{
		{name: "h1 idle keep-alive", open: func(t *testing.T, e *env) func(*testing.T) {
			tc, br := tunnelTLS(t, e, apiHost+":443", apiHost, gwCAPool)
			st, _, err := roundTrip(tc, br, "GET", "GET /v1/one HTTP/1.1\r\nHost: "+apiHost+"\r\n\r\n")
			if err != nil || st != 200 {
				t.Fatalf("first request: %d %v", st, err)
			}
			return func(t *testing.T) {
				_ = tc.SetReadDeadline(time.Now().Add(timeout))
				if _, err := br.ReadByte(); err == nil {
					t.Errorf("idle keep-alive connection: read a byte, want it closed")
				}
			}
		}},
		{name: "h1 request mid-body", open: func(t *testing.T, e *env) func(*testing.T) {
			tc, br := tunnelTLS(t, e, apiHost+":443", apiHost, gwCAPool)
			half := strings.Repeat("a", 64<<10)
			if _, err := io.WriteString(tc, "POST /v1/upload HTTP/1.1\r\nHost: "+apiHost+"\r\nContent-Length: "+fmt.Sprint(2*len(half))+"\r\n\r\n"+half); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the origin to see the upload", func() error {
				if len(e.origin.byPath("/v1/upload")) == 0 {
					return fmt.Errorf("not yet")
				}
				return nil
			})
			return func(t *testing.T) {
				st, body, err := roundTrip(tc, br, "POST", half)
				if err != nil || st != 200 {
					t.Errorf("upload finished after SIGTERM: %d %q %v, want 200", st, body, err)
				}
			}
		}},
		{name: "h1 request waiting on the origin", open: func(t *testing.T, e *env) func(*testing.T) {
			return goGet(t, e, "https://"+apiHost+inflight("/slow"), false)
		}},
		{name: "h2 stream", open: func(t *testing.T, e *env) func(*testing.T) {
			return goGet(t, e, "https://"+apiHost+inflight("/slow"), true)
		}},
		{name: "plain http request", open: func(t *testing.T, e *env) func(*testing.T) {
			return goGet(t, e, "http://"+plainHost+inflight("/slow"), false)
		}},
		{name: "h1 request outliving the drain", open: func(t *testing.T, e *env) func(*testing.T) {
			return goGetCut(t, e, "https://"+apiHost+"/slow?ms=60000", false)
		}, cut: true},
		{name: "h2 stream outliving the drain", open: func(t *testing.T, e *env) func(*testing.T) {
			return goGetCut(t, e, "https://"+apiHost+"/slow?ms=60000", true)
		}, cut: true},
		{name: "plain http request outliving the drain", open: func(t *testing.T, e *env) func(*testing.T) {
			return goGetCut(t, e, "http://"+plainHost+"/slow?ms=60000", false)
		}, cut: true},
		{name: "tls_listen request waiting on the origin", extra: tlsListenConfig, open: func(t *testing.T, e *env) func(*testing.T) {
			// The client speaks TLS to the proxy (HTTPS_PROXY=https://…),
			// trusting the origin CA for it and the gateway CA inside.
			pool := gwCAPool.Clone()
			pool.AddCert(originCA.Cert)
			tr := &http.Transport{
				Proxy:             http.ProxyURL(&url.URL{Scheme: "https", Host: e.tlsProxyAddr}),
				TLSClientConfig:   &tls.Config{RootCAs: pool},
				ForceAttemptHTTP2: true,
			}
			t.Cleanup(tr.CloseIdleConnections)
			return goGetWith(t, e, &http.Client{Transport: tr}, "https://"+apiHost+inflight("/slow"), false)
		}},
		{name: "h2 idle connection", open: func(t *testing.T, e *env) func(*testing.T) {
			c := newGoClient(t, e.proxyURL, gwCACert, false)
			resp, err := c.Get("https://" + apiHost + "/v1/h2")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Fatalf("inner protocol %s, want HTTP/2", resp.Proto)
			}
			return func(*testing.T) {}
		}},
		{name: "tunnel with a request in flight", open: func(t *testing.T, e *env) func(*testing.T) {
			tc, br := tunnelTLS(t, e, tunnelHost+":443", tunnelHost, originCAPool)
			done := make(chan error, 1)
			go func() {
				st, _, err := roundTrip(tc, br, "GET", "GET /slow?ms=1500 HTTP/1.1\r\nHost: "+tunnelHost+"\r\nConnection: close\r\n\r\n")
				tc.Close() // as clients do after Connection: close
				if err == nil && st != 200 {
					err = fmt.Errorf("status %d", st)
				}
				done <- err
			}()
			waitFor(t, 5*time.Second, "the origin to see the tunnelled request", func() error {
				for _, r := range e.origin.byPath("/slow") {
					if r.Host == tunnelHost {
						return nil
					}
				}
				return fmt.Errorf("not yet")
			})
			return func(t *testing.T) {
				if err := <-done; err != nil {
					t.Errorf("request in the tunnel after SIGTERM: %v, want 200", err)
				}
			}
		}, closed: "ended"},
		{name: "tunnel outliving the drain", open: func(t *testing.T, e *env) func(*testing.T) {
			tc, br := tunnelTLS(t, e, tunnelHost+":443", tunnelHost, originCAPool)
			return func(t *testing.T) {
				_ = tc.SetReadDeadline(time.Now().Add(2 * timeout))
				if _, err := br.ReadByte(); err == nil {
					t.Errorf("tunnel: read a byte, want it closed at the end of the drain")
				}
			}
		}, cut: true, closed: "shutdown"},
		{name: "WebSocket outliving the drain", open: func(t *testing.T, e *env) func(*testing.T) {
			ws := dialWebSocket(t, e)
			return func(t *testing.T) {
				_ = ws.SetReadDeadline(time.Now().Add(2 * timeout))
				if _, err := ws.Read(make([]byte, 1)); err == nil {
					t.Errorf("WebSocket: read a byte, want it closed at the end of the drain")
				}
			}
		}, cut: true, closed: "shutdown"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var extra string
			if tc.extra != nil {
				extra = tc.extra(t, t.TempDir())
			}
			e := startDrainEnvWith(t, timeout, extra)
			finish := tc.open(t, e)
			start := time.Now()
			e.signal(syscall.SIGTERM)
			e.waitNotReady(t)
			// The listener closes right after /readyz turns (a connection
			// the kernel took in between is reset).
			waitFor(t, 2*time.Second, "new connections to be refused", func() error {
				c, err := net.DialTimeout("tcp", e.proxyAddr, time.Second)
				if err != nil {
					return nil
				}
				c.Close()
				return errors.New("a new connection to the proxy listener was accepted during the drain")
			})
			finish(t)
			e.checkExit(t, start, timeout, tc.cut)
			if tc.closed != "" {
				e.wantAuditClosed(t, tc.closed)
			}
		})
	}
}

// goGetCut starts GET u, which outlives the drain; finish checks that it
// was answered 503 shutting_down when the drain ended, and audited so.
func goGetCut(t *testing.T, e *env, u string, h2 bool) func(*testing.T) {
	t.Helper()
	finish := goGetStatus(t, e, nil, u, h2)
	return func(t *testing.T) {
		status, reason, err := finish()
		if err != nil || status != http.StatusServiceUnavailable || reason != "shutting_down" {
			t.Errorf("GET %s outliving the drain: %d %q %v, want 503 shutting_down", u, status, reason, err)
		}
		e.waitAuditCode(t, "shutting_down")
	}
}

// waitAuditCode waits for an audit line with code.
func (e *env) waitAuditCode(t *testing.T, code string) {
	t.Helper()
	waitFor(t, 10*time.Second, "an audit line with code "+code, func() error {
		for _, ev := range e.audit() {
			if ev.Code == code {
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})
}

// goGet starts GET u through the gateway (h2 inside the tunnel when h2)
// and returns once the origin has it; finish checks it ended 200.
func goGet(t *testing.T, e *env, u string, h2 bool) func(*testing.T) {
	t.Helper()
	return goGetWith(t, e, nil, u, h2)
}

// goGetWith is goGet with client c (nil: a client of the proxy listener).
func goGetWith(t *testing.T, e *env, c *http.Client, u string, h2 bool) func(*testing.T) {
	t.Helper()
	finish := goGetStatus(t, e, c, u, h2)
	return func(t *testing.T) {
		status, _, err := finish()
		if err != nil || status != 200 {
			t.Errorf("GET %s in flight at SIGTERM: %d %v, want 200", u, status, err)
		}
	}
}

// goGetStatus starts GET u through the gateway with c (nil: a client of
// the proxy listener; h2 inside the tunnel when h2, else HTTP/1.1) and returns once the origin has it; finish waits for
// the answer.
func goGetStatus(t *testing.T, e *env, c *http.Client, u string, h2 bool) (finish func() (status int, reason string, err error)) {
	t.Helper()
	if c == nil {
		c = newGoClient(t, e.proxyURL, gwCACert, false)
		c.Timeout = 0
	}
	if !h2 {
		c.Transport.(*http.Transport).ForceAttemptHTTP2 = false
		c.Transport.(*http.Transport).TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	type result struct {
		status int
		reason string
		err    error
	}
	done := make(chan result, 1)
	before := len(e.origin.byPath("/slow"))
	go func() {
		resp, err := c.Get(u)
		if err != nil {
			done <- result{err: err}
			return
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && h2 && resp.ProtoMajor != 2 {
			err = fmt.Errorf("answered over %s, want HTTP/2", resp.Proto)
		}
		done <- result{resp.StatusCode, resp.Header.Get("X-Credgate-Reason"), err}
	}()
	waitFor(t, 5*time.Second, "the origin to see "+u, func() error {
		if len(e.origin.byPath("/slow")) == before {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	return func() (int, string, error) {
		select {
		case r := <-done:
			return r.status, r.reason, r.err
		case <-time.After(30 * time.Second):
			return 0, "", fmt.Errorf("no answer within 30s")
		}
	}
}

// startDrainEnv starts a gateway whose audit chain is signed, so that
// its final checkpoint can be checked.
func startDrainEnv(t *testing.T, timeout time.Duration) *env {
	t.Helper()
	return startDrainEnvWith(t, timeout, "")
}

// startDrainEnvWith is startDrainEnv with extra gateway config.
func startDrainEnvWith(t *testing.T, timeout time.Duration, extra string) *env {
	t.Helper()
	key := checkpointKey(t, t.TempDir())
	e := startEnv(t, envOptions{ShutdownTimeout: timeout, ExtraConfig: extra,
		AuditConfig: fmt.Sprintf("  checkpoint:\n    key_file: %q\n", key)})
	e.auditKey = key
	return e
}

// checkExit waits for the gateway to exit after a SIGTERM sent at start:
// status 0, within shutdown_timeout (+ slack) when cut, well before it
// otherwise; and its audit chain verifies up to a final checkpoint.
func (e *env) checkExit(t *testing.T, start time.Time, timeout time.Duration, cut bool) {
	t.Helper()
	exited, err := e.wait(timeout + 10*time.Second)
	took := time.Since(start)
	if !exited {
		t.Fatalf("gateway still running %s after SIGTERM", took)
	}
	if err != nil {
		t.Errorf("gateway exit: %v, want status 0", err)
	}
	if !cut && took > timeout-time.Second {
		t.Errorf("gateway exited %s after SIGTERM with nothing left in flight; want well before shutdown_timeout (%s)", took.Round(time.Millisecond), timeout)
	}
	e.verifyFinal(t)
}

// verifyFinal runs `credgate audit verify --require-final` over the
// gateway's audit lines.
func (e *env) verifyFinal(t *testing.T) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(e.stdout.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(t.TempDir(), "audit.pub")
	out, code := runCLI(t, 30*time.Second, nil, "audit", "pubkey", "--key", e.auditKey)
	if code != 0 {
		t.Fatalf("audit pubkey: exit %d\n%s", code, out)
	}
	if err := os.WriteFile(pub, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = runCLI(t, 30*time.Second, nil, "audit", "verify", "--require-final", "--pubkey", pub, path)
	if code != 0 {
		t.Errorf("audit verify --require-final: exit %d\n%s", code, tail(out, 20))
	}
}

// wantAuditClosed checks that a long-lived connection's audit line says
// it closed for reason.
func (e *env) wantAuditClosed(t *testing.T, reason string) {
	t.Helper()
	for _, line := range strings.Split(e.stdout.String(), "\n") {
		var v struct {
			Closed string `json:"closed"`
		}
		if json.Unmarshal([]byte(line), &v) == nil && v.Closed == reason {
			return
		}
	}
	t.Errorf("no audit line with \"closed\":%q\n%s", reason, tail(e.stdout.String(), 10))
}

// TestShutdownSignalsDuringDrain: signals that arrive while the gateway
// drains (a tunnel open, so the drain lasts): a second SIGTERM or SIGINT
// ends the drain at once — what is open is cut with its audit line, the
// chain ends with its final checkpoint and the exit status is 0 — rather
// than killing the process with its audit lines; SIGHUP (a reload) during
// the drain neither kills it nor stops the drain.
func TestShutdownSignalsDuringDrain(t *testing.T) {
	t.Parallel()
	const timeout = 8 * time.Second
	cases := []struct {
		name  string
		first os.Signal
		then  []os.Signal
		// cut: the later signals end the drain before shutdown_timeout.
		cut bool
		// policy, when set, is written before the later signals: a
		// reload during the drain puts it in force.
		policy string
		// closed is the tunnel's audit "closed" reason.
		closed string
		// log must be in the gateway's log.
		log string
	}{
		{"SIGTERM twice", syscall.SIGTERM, []os.Signal{syscall.SIGTERM}, true, "", "shutdown", "second signal"},
		{"SIGINT twice", syscall.SIGINT, []os.Signal{syscall.SIGINT}, true, "", "shutdown", "second signal"},
		{"SIGTERM then SIGINT", syscall.SIGTERM, []os.Signal{syscall.SIGINT}, true, "", "shutdown", "second signal"},
		{"SIGHUP during the drain", syscall.SIGTERM, []os.Signal{syscall.SIGHUP, syscall.SIGHUP}, false, "", "shutdown", "policy reloaded on SIGHUP"},
		// A policy that no longer admits the tunnel, put in force during
		// the drain, closes it then (invariant 12), not at the drain's end.
		{"reload revoking a tunnel during the drain", syscall.SIGTERM, []os.Signal{syscall.SIGHUP}, true,
			strings.Replace(basePolicy, "    to: tunnel\n    action: tunnel\n", "    to: tunnel\n    action: deny\n", 1), "policy_changed", "policy reloaded on SIGHUP"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := startDrainEnv(t, timeout)
			conn, br := tunnelTLS(t, e, tunnelHost+":443", tunnelHost, originCAPool)
			start := time.Now()
			e.signal(tc.first)
			e.waitNotReady(t)
			if tc.policy != "" {
				e.writePolicy(tc.policy, envOptions{})
			}
			for _, s := range tc.then {
				e.signal(s)
			}
			waitFor(t, 5*time.Second, "the log to say "+tc.log, func() error {
				if !strings.Contains(e.stderr.String(), tc.log) {
					return fmt.Errorf("not in the log yet")
				}
				return nil
			})
			if !tc.cut {
				// Still draining: the tunnel is open, /readyz 503.
				if exited, err := e.wait(0); exited {
					t.Fatalf("gateway exited on SIGHUP during the drain: %v", err)
				}
			}
			_ = conn.SetReadDeadline(time.Now().Add(2 * timeout))
			if _, err := br.ReadByte(); err == nil {
				t.Errorf("tunnel: read a byte, want it closed")
			}
			exited, err := e.wait(timeout + 10*time.Second)
			took := time.Since(start)
			if !exited {
				t.Fatalf("gateway still running %s after the signals", took)
			}
			if err != nil {
				t.Errorf("gateway exit: %v, want status 0", err)
			}
			if tc.cut && took > timeout-2*time.Second {
				t.Errorf("exited %s after the first signal; the second should end the drain at once", took.Round(time.Millisecond))
			}
			if !tc.cut && took < timeout-time.Second {
				t.Errorf("exited %s after SIGTERM, before shutdown_timeout (%s), with a tunnel open", took.Round(time.Millisecond), timeout)
			}
			e.wantAuditClosed(t, tc.closed)
			e.verifyFinal(t)
		})
	}
}

// TestShutdownRacesReload: SIGHUP and SIGTERM sent together, in both
// orders, while requests flow: the gateway exits 0 with its final
// checkpoint, never a panic or a hang.
func TestShutdownRacesReload(t *testing.T) {
	t.Parallel()
	for i, order := range [][]os.Signal{
		{syscall.SIGHUP, syscall.SIGTERM},
		{syscall.SIGTERM, syscall.SIGHUP},
		{syscall.SIGHUP, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGHUP},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			e := startDrainEnv(t, 5*time.Second)
			c := newGoClient(t, e.proxyURL, gwCACert, false)
			resp, err := c.Get("https://" + apiHost + "/v1/before")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			c.CloseIdleConnections()
			start := time.Now()
			for _, s := range order {
				e.signal(s)
			}
			e.checkExit(t, start, 5*time.Second, false)
		})
	}
}

// drainFetchPolicy injects a credential of an OAuth2 token endpoint the
// test holds.
const drainFetchPolicy = `workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  saas:
    hosts: [other.origin.test]
    allow_private: true
credentials:
  client-secret:
    provider: static
    env: CREDGATE_E2E_OAUTH2_SECRET
  held:
    provider: oauth2
    token_url: TOKEN_URL
    client_id: gateway
    client_secret: {credential: client-secret}
rules:
  - {name: held, from: local, to: saas, inject: {credential: held, as: bearer}}
default: deny
`

// TestShutdownDrainsProviderFetch: SIGTERM while a request waits for its
// credential from a slow token endpoint. Released within
// shutdown_timeout, the request completes with the credential; held past
// it, the request is answered 503 shutting_down (fail closed) with its
// audit line before the gateway exits 0, and nothing is forwarded without
// the credential. And a client that leaves while its credential is being
// fetched is audited (499 client_aborted); before, neither was.
func TestShutdownDrainsProviderFetch(t *testing.T) {
	t.Parallel()
	const timeout = 4 * time.Second
	for _, mode := range []string{"released during the drain", "held past the drain", "client leaves"} {
		release := mode == "released during the drain"
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			as := oauth2test.New(oauth2test.Options{})
			t.Cleanup(as.Close)
			secret := randomToken(t)
			as.AddSecretClient("gateway", secret)
			o := startAuthOrigin(t, map[string]introspector{"v1": fromServer(as)})
			key := checkpointKey(t, t.TempDir())
			e := startEnv(t, envOptions{
				Policy:          strings.Replace(drainFetchPolicy, "TOKEN_URL", as.TokenURL(), 1),
				Resolve:         map[string]string{otherHost + ":443": o.addr},
				Env:             []string{"CREDGATE_E2E_OAUTH2_SECRET=" + secret},
				ShutdownTimeout: timeout,
				AuditConfig:     fmt.Sprintf("  checkpoint:\n    key_file: %q\n", key),
			})
			e.auditKey = key
			e.secrets = append(e.secrets, secret)
			t.Cleanup(func() { e.secrets = append(e.secrets, o.tokens()...) })
			as.Hold()
			t.Cleanup(as.Release)
			c := newGoClient(t, e.proxyURL, gwCACert, false)
			type result struct {
				status int
				reason string
				err    error
			}
			done := make(chan result, 1)
			ctx, leave := context.WithCancel(context.Background())
			defer leave()
			go func() {
				req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+otherHost+"/v1/held", nil)
				resp, err := c.Do(req)
				if err != nil {
					done <- result{err: err}
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				done <- result{resp.StatusCode, resp.Header.Get("X-Credgate-Reason"), nil}
			}()
			waitFor(t, 5*time.Second, "the token request to be held", func() error {
				if as.Held() == 0 {
					return fmt.Errorf("none held")
				}
				return nil
			})
			if mode == "client leaves" {
				leave()
				<-done
				e.waitAuditCode(t, "client_aborted")
				return
			}
			start := time.Now()
			e.signal(syscall.SIGTERM)
			e.waitNotReady(t)
			if release {
				as.Release()
			}
			r := <-done
			switch {
			case release && (r.err != nil || r.status != 200):
				t.Errorf("request whose credential came during the drain: %d %s %v, want 200", r.status, r.reason, r.err)
			case !release && (r.err != nil || r.status != http.StatusServiceUnavailable || r.reason != "shutting_down"):
				t.Errorf("request whose credential never came: %d %s %v, want 503 shutting_down", r.status, r.reason, r.err)
			}
			if !release {
				if got := o.byPath("/v1/held"); len(got) != 0 {
					t.Errorf("the origin got %d requests without their credential", len(got))
				}
			}
			t.Logf("answer: %d %s %v", r.status, r.reason, r.err)
			e.checkExit(t, start, timeout, !release)
			var found bool
			for _, ev := range e.audit() {
				if ev.Path == "/v1/held" {
					found = true
				}
			}
			if !found {
				t.Errorf("no audit line for the request\n%s", tail(e.stdout.String(), 5))
			}
		})
	}
}
