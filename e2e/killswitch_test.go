package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/redistest"
)

// writeAdminToken writes a random admin token to dir/admin.token.
func writeAdminToken(t *testing.T, dir string) (path, token string) {
	t.Helper()
	token = "admin-" + randomToken(t)
	path = filepath.Join(dir, "admin.token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, token
}

// adminCLI runs `credgate admin --admin <e's admin URL> args...`.
func adminCLI(t *testing.T, e *env, args ...string) (string, int) {
	t.Helper()
	return runCLI(t, 20*time.Second, cliEnv(), append([]string{"admin", "--admin", "http://" + e.adminAddr}, args...)...)
}

// cliEnv is the CLI's environment: no admin token or URL from the
// developer's shell.
func cliEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CREDGATE_ADMIN_") {
			out = append(out, kv)
		}
	}
	return out
}

// restart stops the gateway (SIGTERM) and starts it again on the same
// config, checking the first run's output for secrets first.
func (e *env) restart(t *testing.T) {
	t.Helper()
	e.signal(syscall.SIGTERM)
	if exited, _ := e.wait(15 * time.Second); !exited {
		t.Fatal("gateway did not stop within 15s of SIGTERM")
	}
	e.assertNoSecret(t, "stdout (audit) before the restart", e.stdout.String())
	e.assertNoSecret(t, "stderr (logs) before the restart", e.stderr.String())
	e.start()
}

// refusalPoller records when a GET was first refused with a code.
type refusalPoller struct {
	done chan struct{}
	at   time.Time
	err  error
	n    int
	cut  int // requests cut in flight by the switch
}

// pollUntilRefused sends GETs of url-1, url-2... through c, one after the
// other, until one is refused with code; the caller starts it before the
// change it waits for and reads the result after done is closed.
func pollUntilRefused(c *http.Client, url, code string, timeout time.Duration) *refusalPoller {
	p := &refusalPoller{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		deadline := time.Now().Add(timeout)
		for time.Now().Before(deadline) {
			p.n++
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s-%d", url, p.n), nil)
			resp, err := c.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			timedOut := ctx.Err() != nil
			cancel()
			if err != nil {
				// A request in flight when the switch came is cut (the
				// kill switch cancels it, inflight.go): after its
				// response began, the client sees the stream reset or
				// the connection end. The next one is refused. More
				// than one such cut, or a request that timed out, is
				// not the switch's doing.
				if p.cut++; p.cut > 1 || timedOut {
					p.err = err
					return
				}
				continue
			}
			if resp.StatusCode == http.StatusForbidden && resp.Header.Get("X-Credgate-Reason") == code {
				p.at = time.Now()
				return
			}
			if resp.StatusCode == http.StatusBadGateway && resp.Header.Get("X-Credgate-Reason") == "disabled_in_flight" {
				// In flight when the switch came: it had reached the
				// origin and was cut. The next one is refused.
				continue
			}
			if resp.StatusCode != http.StatusOK {
				p.err = fmt.Errorf("unexpected %s (%s)", resp.Status, resp.Header.Get("X-Credgate-Reason"))
				return
			}
		}
		p.err = fmt.Errorf("not refused with %s within %s (%d requests)", code, timeout, p.n)
	}()
	return p
}

// pollUntilAllowed polls until a GET gets 200 and returns when.
func pollUntilAllowed(t *testing.T, c *http.Client, url string, timeout time.Duration) time.Time {
	t.Helper()
	var at time.Time
	i := 0
	waitFor(t, timeout, url+" allowed again", func() error {
		i++
		st, _, _ := get(t, c, "GET", fmt.Sprintf("%s-%d", url, i), "")
		if st != http.StatusOK {
			return fmt.Errorf("status %d", st)
		}
		at = time.Now()
		return nil
	})
	return at
}

// TestKillSwitchFleet: two gateway processes share a real redis-server; a
// rule disabled through the CLI on replica A is refused by replica B
// within a second, survives B's restart, and is lifted by enable. A
// disabled workload cannot CONNECT and its open tunnels are closed. The
// admin API refuses a missing or wrong token and logs and audits that
// without the token.
func TestKillSwitchFleet(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	tokFile, token := writeAdminToken(t, dir)
	key := writeRedisKey(t, dir, "k1.key")
	opts := envOptions{
		CacheConfig: redisConfig(srv.Addr(), [2]string{"k1", key}),
		// A minute between periodic reads: every change, and the recovery
		// from a Redis outage, must travel by messages and
		// resubscriptions, which the timings below then measure.
		ExtraConfig: fmt.Sprintf("admin:\n  token_file: %q\n  resync_interval: 1m\n", tokFile),
	}
	a, b := startEnv(t, opts), startEnv(t, opts)
	wrong := "admin-" + randomToken(t)
	for _, e := range []*env{a, b} {
		e.secrets = append(e.secrets, token, wrong)
	}
	ca, cb := newGoClient(t, a.proxyURL, gwCACert, false), newGoClient(t, b.proxyURL, gwCACert, false)
	base := "https://" + apiHost + "/v1/ks"
	if st, _, _ := get(t, cb, "GET", base+"-before", ""); st != http.StatusOK {
		t.Fatalf("before: %d", st)
	}

	t.Run("disable on A through the CLI: B refuses within 1s", func(t *testing.T) {
		p := pollUntilRefused(cb, base+"-poll", "disabled", 10*time.Second)
		t0 := time.Now()
		out, code := adminCLI(t, a, "--token-file", tokFile, "disable", "rule", "api-inject", "--by", "e2e", "--reason", "INC-7 drill")
		t1 := time.Now()
		if code != 0 || !strings.Contains(out, `disabled rule "api-inject" on every replica (by e2e, reason: INC-7 drill)`) {
			t.Fatalf("credgate admin disable: exit %d\n%s", code, out)
		}
		<-p.done
		if p.err != nil {
			t.Fatalf("polling B: %v", p.err)
		}
		fromStart, fromReturn := p.at.Sub(t0), p.at.Sub(t1)
		reportPeer(t, "kill switch: replica B refused %s after `credgate admin disable` started on replica A (%s after the CLI returned; the CLI took %s; %d polling requests)",
			fromStart.Round(time.Millisecond), fromReturn.Round(time.Millisecond), t1.Sub(t0).Round(time.Millisecond), p.n)
		if fromStart >= time.Second {
			t.Errorf("B refused %s after the flip, want < 1s", fromStart)
		}
		// A refuses at once; other rules still work.
		st, h, _ := get(t, ca, "GET", base+"-on-a", "")
		if st != http.StatusForbidden || h.Get("X-Credgate-Reason") != "disabled" {
			t.Errorf("A: %d %q, want 403 disabled", st, h.Get("X-Credgate-Reason"))
		}
		tunnel := newGoClient(t, b.proxyURL, originCACert, false)
		if st, _, _ := get(t, tunnel, "GET", "https://"+tunnelHost+"/still-open", ""); st != http.StatusOK {
			t.Errorf("a tunnel rule through B: %d, want 200 (only api-inject is disabled)", st)
		}
		// An idle spliced tunnel would hold B's restart for its
		// shutdown_timeout.
		tunnel.Transport.(*http.Transport).CloseIdleConnections()
		// The refused request never reached the origin.
		if got := b.origin.byPath(fmt.Sprintf("/v1/ks-poll-%d", p.n)); len(got) != 0 {
			t.Error("the origin saw the refused request")
		}
		waitFor(t, 5*time.Second, "B's audit line of the refusal", func() error {
			for _, line := range strings.Split(b.stdout.String(), "\n") {
				if strings.Contains(line, `"code":"disabled"`) && strings.Contains(line, `"rule":"api-inject"`) && strings.Contains(line, `"switch":"rule:api-inject"`) {
					return nil
				}
			}
			return errors.New("no audit line with code disabled and switch rule:api-inject")
		})
		if v := b.metric(t, `credgate_switches_disabled{kind="rule"}`); v != 1 {
			t.Errorf("B credgate_switches_disabled{kind=rule} = %v", v)
		}
		if v := b.metric(t, `credgate_switch_refusals_total{kind="rule"}`); v < 1 {
			t.Errorf("B credgate_switch_refusals_total{kind=rule} = %v", v)
		}
		if v := b.metric(t, "credgate_switch_last_sync_timestamp_seconds"); v == 0 {
			t.Error("B never synced the switch state")
		}
		ready := httpGetToken(t, "http://"+b.adminAddr+"/readyz", token)
		if !strings.Contains(ready, `"status":"ready"`) || !strings.Contains(ready, `"kill_switch":{"backend":"redis","redis":"up"`) ||
			!strings.Contains(ready, `{"kind":"rule","name":"api-inject","by":"e2e","reason":"INC-7 drill"`) {
			t.Errorf("B /readyz: %s", ready)
		}
		out, code = adminCLI(t, b, "--token-file", tokFile, "list")
		if code != 0 || !strings.Contains(out, "rule  api-inject") || !strings.Contains(out, "state: redis (up") {
			t.Errorf("credgate admin list on B: exit %d\n%s", code, out)
		}
	})

	t.Run("the switch survives B's restart", func(t *testing.T) {
		b.restart(t)
		cb2 := newGoClient(t, b.proxyURL, gwCACert, false)
		st, h, _ := get(t, cb2, "GET", base+"-after-restart", "")
		if st != http.StatusForbidden || h.Get("X-Credgate-Reason") != "disabled" {
			t.Errorf("first request after B's restart: %d %q, want 403 disabled", st, h.Get("X-Credgate-Reason"))
		}
		cb = cb2
	})

	t.Run("enable on B through the CLI: A allows again", func(t *testing.T) {
		t0 := time.Now()
		out, code := adminCLI(t, b, "--token-file", tokFile, "enable", "rule", "api-inject", "--by", "e2e")
		if code != 0 || !strings.Contains(out, `enabled rule "api-inject" on every replica`) {
			t.Fatalf("credgate admin enable: exit %d\n%s", code, out)
		}
		at := pollUntilAllowed(t, ca, base+"-enabled", 5*time.Second)
		reportPeer(t, "kill switch: replica A allowed again %s after `credgate admin enable` started on replica B", at.Sub(t0).Round(time.Millisecond))
		if at.Sub(t0) >= time.Second {
			t.Errorf("A allowed again %s after the enable, want < 1s", at.Sub(t0))
		}
		if v := a.metric(t, `credgate_switches_disabled{kind="rule"}`); v != 0 {
			t.Errorf("A credgate_switches_disabled{kind=rule} = %v after enable", v)
		}
	})

	t.Run("a disabled workload cannot CONNECT and its open tunnels close", func(t *testing.T) {
		c, resp := rawConnect(t, b, tunnelHost+":443")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT before: %s", resp.Status)
		}
		tc := tls.Client(c, &tls.Config{ServerName: tunnelHost, RootCAs: originCAPool, NextProtos: []string{"http/1.1"}})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS through the tunnel: %v", err)
		}
		t0 := time.Now()
		out, code := adminCLI(t, a, "--token-file", tokFile, "disable", "workload", "local", "--reason", "compromised")
		if code != 0 {
			t.Fatalf("disable workload: exit %d\n%s", code, out)
		}
		_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := tc.Read(make([]byte, 1))
		var ne interface{ Timeout() bool }
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("B did not close the open tunnel of the disabled workload: %v", err)
		}
		reportPeer(t, "kill switch: replica B closed an open tunnel %s after the workload was disabled on replica A", time.Since(t0).Round(time.Millisecond))
		_, resp = rawConnect(t, b, tunnelHost+":443")
		body, _ := io.ReadAll(resp.Body)
		checkDenial(t, resp.StatusCode, resp.Header, string(body), http.StatusForbidden, "disabled", "tunnel-pass")
		if !strings.Contains(string(body), `workload \"local\" is disabled by an operator (kill switch)`) || !strings.Contains(string(body), "compromised") {
			t.Errorf("CONNECT refusal body: %s", body)
		}
		if out, code := adminCLI(t, b, "--token-file", tokFile, "enable", "workload", "local"); code != 0 {
			t.Fatalf("enable workload: exit %d\n%s", code, out)
		}
		pollUntilAllowed(t, cb, base+"-workload-back", 5*time.Second)
	})

	t.Run("a missing or wrong token is refused, logged and audited without the token", func(t *testing.T) {
		wrongFile := filepath.Join(dir, "wrong.token")
		if err := os.WriteFile(wrongFile, []byte(wrong), 0o600); err != nil {
			t.Fatal(err)
		}
		out, code := adminCLI(t, a, "--token-file", wrongFile, "disable", "rule", "api-inject")
		if code != 1 || !strings.Contains(out, "401 unauthorized") {
			t.Errorf("wrong token: exit %d\n%s", code, out)
		}
		out, code = adminCLI(t, a, "disable", "rule", "api-inject")
		if code != 1 || !strings.Contains(out, "no admin token") {
			t.Errorf("no token in the CLI: exit %d\n%s", code, out)
		}
		// Without the CLI's own check: no Authorization header at all.
		req, _ := http.NewRequest(http.MethodPost, "http://"+a.adminAddr+"/admin/v1/disable", strings.NewReader(`{"kind":"rule","name":"api-inject"}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("X-Credgate-Reason") != "unauthorized" {
			t.Errorf("POST without a token: %s %q", resp.Status, resp.Header.Get("X-Credgate-Reason"))
		}
		if st, _, _ := get(t, ca, "GET", base+"-after-bad-tokens", ""); st != http.StatusOK {
			t.Errorf("a refused admin call disabled something: %d", st)
		}
		for _, why := range []string{"the bearer token does not match", "no bearer token"} {
			a.waitLog(t, why)
		}
		waitFor(t, 5*time.Second, "audit lines of the refused admin calls", func() error {
			n := 0
			for _, ev := range a.audit() {
				if ev.Path == "/admin/v1/disable" && ev.Code == "unauthorized" && ev.Status == 401 {
					n++
				}
			}
			if n != 2 {
				return fmt.Errorf("%d audit lines with code unauthorized, want 2", n)
			}
			return nil
		})
		if v := a.metric(t, `credgate_admin_requests_total{action="disable",result="unauthorized"}`); v != 2 {
			t.Errorf("credgate_admin_requests_total{unauthorized} = %v, want 2", v)
		}
		// The harness checks at cleanup that neither token appears in any
		// output (e.secrets).
	})

	t.Run("Redis down: switches stay in force; a disable holds on its replica until Redis is back", func(t *testing.T) {
		if out, code := adminCLI(t, a, "--token-file", tokFile, "disable", "rule", "api-inject"); code != 0 {
			t.Fatalf("disable: exit %d\n%s", code, out)
		}
		waitFor(t, 2*time.Second, "B to refuse", func() error {
			if st, _, _ := get(t, cb, "GET", base+"-pre-outage", ""); st != http.StatusForbidden {
				return fmt.Errorf("status %d", st)
			}
			return nil
		})
		srv.Stop()
		for _, e := range []*env{a, b} {
			// The kill switch itself notices at its next read (a minute
			// here); the shared cache pings every second.
			waitFor(t, 5*time.Second, "/readyz to show Redis down", func() error {
				if r := httpGetToken(t, "http://"+e.adminAddr+"/readyz", token); !strings.Contains(r, `"redis":"down","kill_switch":{"backend":"redis"`) || !strings.Contains(r, `"name":"api-inject"`) {
					return fmt.Errorf("/readyz: %s", r)
				}
				return nil
			})
		}
		if st, h, _ := get(t, cb, "GET", base+"-outage", ""); st != http.StatusForbidden || h.Get("X-Credgate-Reason") != "disabled" {
			t.Errorf("B during the outage: %d, want the switch still in force", st)
		}
		out, code := adminCLI(t, b, "--token-file", tokFile, "enable", "rule", "api-inject")
		if code != 1 || !strings.Contains(out, "503 switch_unavailable") {
			t.Errorf("enable during the outage: exit %d\n%s", code, out)
		}
		out, code = adminCLI(t, a, "--token-file", tokFile, "disable", "rule", "tunnel-pass")
		if code != 0 || !strings.Contains(out, "on this replica; Redis is unavailable") {
			t.Errorf("disable during the outage: exit %d\n%s", code, out)
		}
		if _, resp := rawConnect(t, a, tunnelHost+":443"); resp.StatusCode != http.StatusForbidden {
			t.Errorf("A's tunnel during the outage: %s, want 403", resp.Status)
		}
		if _, resp := rawConnect(t, b, tunnelHost+":443"); resp.StatusCode != http.StatusOK {
			t.Errorf("B's tunnel during the outage: %s, want 200 (A could not tell B)", resp.Status)
		}

		// Redis comes back empty, and refusing reads at first (as one
		// loading its data answers LOADING): the re-read each replica's
		// resubscription triggers fails. Once reads are allowed, every
		// replica refuses both switches within 1s: the failed re-reads
		// are retried with backoff (the periodic read is a minute away),
		// the replicas write back what they had and A what it held, and
		// A's write-back reaches B by its message.
		readErrs := func(e *env) float64 { return e.metric(t, `credgate_switch_sync_errors_total{op="read"}`) }
		errsA, errsB := readErrs(a), readErrs(b)
		t0 := time.Now()
		srv.RestartWith("--user", "default", "on", "nopass", "~*", "&*", "+@all", "-hgetall")
		up := time.Since(t0)
		waitFor(t, 5*time.Second, "both replicas' re-read after resubscribing to fail", func() error {
			if na, nb := readErrs(a), readErrs(b); na == errsA || nb == errsB {
				return fmt.Errorf("failed reads: A %v -> %v, B %v -> %v", errsA, na, errsB, nb)
			}
			return nil
		})
		rc := srv.Client()
		if err := rc.Do(context.Background(), "ACL", "SETUSER", "default", "+hgetall").Err(); err != nil {
			t.Fatalf("allow HGETALL again: %v", err)
		}
		t1 := time.Now()
		var inRedis time.Duration
		n := 0
		waitFor(t, 10*time.Second, "B to refuse the switch A made during the outage", func() error {
			if inRedis == 0 {
				if ok, _ := rc.HExists(context.Background(), "e2e:switches", "rule:tunnel-pass").Result(); ok {
					inRedis = time.Since(t1)
				}
			}
			n++
			c, resp := rawConnect(t, b, tunnelHost+":443")
			c.Close()
			if resp.StatusCode != http.StatusForbidden {
				return fmt.Errorf("B's CONNECT: %s", resp.Status)
			}
			return nil
		})
		took := time.Since(t1)
		if inRedis == 0 {
			inRedis = took
		}
		reportPeer(t, "kill switch: %s after Redis answered reads again (%s after it was restarted empty; it answered PING after %s and refused reads meanwhile), replica B refused the switch replica A made during the outage (written back to Redis by %s; %d CONNECTs polled)",
			took.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), up.Round(time.Millisecond), inRedis.Round(time.Millisecond), n)
		if took >= time.Second {
			t.Errorf("B refused the switch A made during the outage %s after Redis answered reads again, want < 1s", took)
		}
		for _, e := range []*env{a, b} {
			c := newGoClient(t, e.proxyURL, gwCACert, false)
			if st, _, _ := get(t, c, "GET", base+"-post-outage", ""); st != http.StatusForbidden {
				t.Errorf("%s after the outage: %d, want api-inject still disabled", e.adminAddr, st)
			}
			if c, resp := rawConnect(t, e, tunnelHost+":443"); resp.StatusCode != http.StatusForbidden {
				c.Close()
				t.Errorf("%s after the outage: CONNECT %s, want tunnel-pass disabled", e.adminAddr, resp.Status)
			}
		}
		all, err := rc.HGetAll(context.Background(), "e2e:switches").Result()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := all["rule:api-inject"]; !ok {
			t.Errorf("Redis after the outage: %v, want both switches written back", keysOf(all))
		}
		if _, ok := all["rule:tunnel-pass"]; !ok {
			t.Errorf("Redis after the outage: %v, want both switches written back", keysOf(all))
		}
		// A says and counts what it wrote back.
		if v := a.metric(t, `credgate_switch_written_back_total{reason="pending"}`); v != 1 {
			t.Errorf(`A credgate_switch_written_back_total{reason="pending"} = %v, want 1`, v)
		}
		a.waitLog(t, "wrote the switches disabled on this replica while it was unavailable")
		if v := a.metric(t, `credgate_switch_written_back_total{reason="restored"}`) + b.metric(t, `credgate_switch_written_back_total{reason="restored"}`); v < 1 {
			t.Errorf(`credgate_switch_written_back_total{reason="restored"} = %v on A and B together, want >= 1`, v)
		}
	})
}

// TestKillSwitchSingleReplica: without Redis the switch works on the one
// replica, survives a restart through admin.state_file, and a gateway
// without an admin token refuses every change with a clear message.
func TestKillSwitchSingleReplica(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokFile, token := writeAdminToken(t, dir)
	state := filepath.Join(dir, "switches.json")
	e := startEnv(t, envOptions{ExtraConfig: fmt.Sprintf("admin:\n  token_file: %q\n  state_file: %q\n", tokFile, state)})
	e.secrets = append(e.secrets, token)
	c := newGoClient(t, e.proxyURL, gwCACert, false)
	url := "https://" + apiHost + "/v1/single"

	out, code := adminCLI(t, e, "--token-file", tokFile, "disable", "credential", "api-token", "--reason", "rotating")
	if code != 0 || !strings.Contains(out, `disabled credential "api-token" on this replica`) || strings.Contains(out, "does not survive") {
		t.Fatalf("disable: exit %d\n%s", code, out)
	}
	st, h, _ := get(t, c, "GET", url, "")
	if st != http.StatusForbidden || h.Get("X-Credgate-Reason") != "disabled" {
		t.Fatalf("after disable: %d %q", st, h.Get("X-Credgate-Reason"))
	}
	// A tunnel rule uses no credential.
	tunnel := newGoClient(t, e.proxyURL, originCACert, false)
	if st, _, _ := get(t, tunnel, "GET", "https://"+tunnelHost+"/x", ""); st != http.StatusOK {
		t.Errorf("tunnel: %d", st)
	}
	tunnel.Transport.(*http.Transport).CloseIdleConnections()
	if v := e.metric(t, `credgate_switch_refusals_total{kind="credential"}`); v != 1 {
		t.Errorf("credgate_switch_refusals_total{kind=credential} = %v", v)
	}

	e.restart(t)
	c = newGoClient(t, e.proxyURL, gwCACert, false)
	if st, h, _ := get(t, c, "GET", url+"-restarted", ""); st != http.StatusForbidden || h.Get("X-Credgate-Reason") != "disabled" {
		t.Errorf("after restart: %d %q, want the state file's switch in force", st, h.Get("X-Credgate-Reason"))
	}
	if out, code := adminCLI(t, e, "--token-file", tokFile, "enable", "credential", "api-token"); code != 0 {
		t.Fatalf("enable: exit %d\n%s", code, out)
	}
	if st, _, _ := get(t, c, "GET", url+"-enabled", ""); st != http.StatusOK {
		t.Errorf("after enable: %d", st)
	}

	// A gateway without admin.token_file: the switch cannot be changed.
	off := startEnv(t, envOptions{})
	out, code = adminCLI(t, off, "--token-file", tokFile, "disable", "rule", "api-inject")
	if code != 1 || !strings.Contains(out, "403 admin_api_off: the admin API is off: set admin.token_file or admin.token_env") {
		t.Errorf("gateway without a token: exit %d\n%s", code, out)
	}
	if out, code := adminCLI(t, off, "--token-file", tokFile, "list"); code != 1 || !strings.Contains(out, "403 admin_api_off") {
		t.Errorf("list on a gateway without a token: exit %d\n%s", code, out)
	}
}
