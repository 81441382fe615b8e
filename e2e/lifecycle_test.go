package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// reloadPolicy is basePolicy with one more deny rule in front, so a
// picked-up reload is visible from outside.
var reloadPolicy = strings.Replace(basePolicy, "rules:\n", `rules:
  - name: reload-deny
    from: local
    to: api
    paths: [/v1/after-reload*]
    action: deny
`, 1)

// brokenPolicy has a YAML syntax error on line 4. (YAML syntax errors carry
// a line but no column, so tests accept FILE:4: as well as FILE:4:COL:.)
const brokenPolicy = `workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: source: x
rules: []
`

// TestPolicyReload: a broken policy written mid-run is rejected (counted in
// credgate_policy_reloads_total{result="error"}, logged with file:line,
// credgate_policy_last_reload_successful 0 while it stays)
// while traffic keeps flowing under the old policy; a good edit is then
// picked up without a restart (invariant 9).
func TestPolicyReload(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	c := newGoClient(t, e.proxyURL, gwCACert, false)
	var n atomic.Int64
	try := func(prefix string) (*http.Response, string, error) {
		path := fmt.Sprintf("%s-%d", prefix, n.Add(1))
		resp, err := c.Get("https://" + apiHost + path)
		if err != nil {
			return nil, "", fmt.Errorf("GET %s: %w", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(body), nil
	}
	get := func(prefix string) (*http.Response, string) {
		t.Helper()
		resp, body, err := try(prefix)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	if resp, _ := get("/v1/after-reload"); resp.StatusCode != http.StatusOK {
		t.Fatalf("before any reload: %s", resp.Status)
	}

	const errMetric = `credgate_policy_reloads_total{result="error"}`
	before := e.metric(t, errMetric)
	writeAtomic(t, e.policyPath, brokenPolicy)
	waitFor(t, 10*time.Second, "the broken policy to be rejected", func() error {
		if got := e.metric(t, errMetric); got <= before {
			return fmt.Errorf("%s = %v, still %v", errMetric, got, before)
		}
		return nil
	})
	// The metric can lead the log line through the stderr pipe: wait for
	// the line rather than read the log once.
	waitFor(t, 5*time.Second, "the log to say where the policy is broken (policy.yaml:4:)", func() error {
		if !regexp.MustCompile(`policy\.yaml:4(:\d+)?:`).MatchString(e.stderr.String()) {
			return fmt.Errorf("not logged yet:\n%s", tail(e.stderr.String(), 20))
		}
		return nil
	})
	// The state stays visible for as long as the bad file does.
	const okMetric = `credgate_policy_last_reload_successful`
	if got := e.metric(t, okMetric); got != 0 {
		t.Errorf("%s = %v while the broken policy is on disk, want 0", okMetric, got)
	}
	// Still the old policy: injection works, the new rule is not there.
	for i := 0; i < 5; i++ {
		if resp, body := get("/v1/after-reload"); resp.StatusCode != http.StatusOK {
			t.Fatalf("after the broken reload: %s %s", resp.Status, body)
		}
	}

	// SIGHUP with the broken file still in place: rejected again, still serving.
	before = e.metric(t, errMetric)
	e.signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "SIGHUP reload to be rejected", func() error {
		if got := e.metric(t, errMetric); got <= before {
			return fmt.Errorf("%s = %v", errMetric, got)
		}
		return nil
	})

	e.writePolicy(reloadPolicy, envOptions{})
	waitFor(t, 10*time.Second, "the good policy to be picked up", func() error {
		// A request in flight when the new policy, which denies it, takes
		// over is cut (invariant 12: policy_changed_in_flight); the next
		// one is refused.
		resp, body, err := try("/v1/after-reload")
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Credgate-Reason") != "denied_by_rule" {
			return fmt.Errorf("still %s", resp.Status)
		}
		if !strings.Contains(body, `"reload-deny"`) {
			return fmt.Errorf("denied by another rule: %s", body)
		}
		return nil
	})
	if resp, _ := get("/v1/still-injected"); resp.StatusCode != http.StatusOK {
		t.Errorf("after the good reload, other paths: %s", resp.Status)
	}
	if got := e.metric(t, okMetric); got != 1 {
		t.Errorf("%s = %v after the good reload, want 1", okMetric, got)
	}
	if exited, err := e.wait(0); exited {
		t.Fatalf("gateway exited during reloads: %v", err)
	}
}

// TestShutdownDrainsUnderLoad: SIGTERM while 8 keep-alive clients send
// requests. Every request either completes with 200 or is never accepted
// (connection refused once the listener is closed); none is cut off, and
// requests in flight at the signal complete.
func TestShutdownDrainsUnderLoad(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{ShutdownTimeout: 10 * time.Second})

	const workers = 8
	const loadFor = 3 * time.Second
	type result struct {
		id         string
		start, end time.Time
		status     int
		err        error
	}
	var (
		mu       sync.Mutex
		results  []result
		ok       atomic.Int64
		sigAt    atomic.Pointer[time.Time]
		wg       sync.WaitGroup
		deadline = time.Now().Add(loadFor)
	)
	var cs []*http.Client
	for w := 0; w < workers; w++ {
		c := newGoClient(t, e.proxyURL, gwCACert, false)
		cs = append(cs, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline) && i < 10000; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				r := result{id: id, start: time.Now()}
				resp, err := c.Get("https://" + apiHost + "/slow?ms=40&id=" + id)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					r.status = resp.StatusCode
				}
				r.err, r.end = err, time.Now()
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				if err != nil {
					return // the gateway is going away
				}
				if r.status == http.StatusOK {
					ok.Add(1)
				}
			}
		}()
	}
	waitFor(t, loadFor, "load to build up", func() error {
		if ok.Load() < 3*workers {
			return fmt.Errorf("%d requests done", ok.Load())
		}
		return nil
	})
	now := time.Now()
	sigAt.Store(&now)
	e.signal(syscall.SIGTERM)
	wg.Wait()
	// Like applications going away: a gateway may wait for idle
	// keep-alive tunnels until shutdown_timeout.
	for _, c := range cs {
		c.CloseIdleConnections()
	}
	exited, err := e.wait(15 * time.Second)
	if !exited {
		t.Fatalf("gateway did not exit within 15s of SIGTERM")
	}
	if err != nil {
		t.Errorf("gateway exit after SIGTERM: %v, want status 0", err)
	}

	seen := map[string]bool{}
	for _, r := range e.origin.byPath("/slow") {
		seen[strings.TrimPrefix(r.RawQuery, "ms=40&id=")] = true
	}
	var drained, refused int
	for _, r := range results {
		switch {
		case r.err == nil && r.status == http.StatusOK:
			if r.start.Before(*sigAt.Load()) && r.end.After(*sigAt.Load()) {
				drained++
			}
		case r.err == nil:
			t.Errorf("request %s: status %d", r.id, r.status)
		case isRefused(r.err) && !seen[r.id]:
			refused++
		default:
			t.Errorf("request %s cut off (origin saw it: %v): %v", r.id, seen[r.id], r.err)
		}
	}
	t.Logf("%d requests: %d ok, %d in flight at SIGTERM and drained, %d refused after shutdown began",
		len(results), ok.Load(), drained, refused)
	if drained == 0 {
		t.Errorf("no request was in flight at SIGTERM and completed; the drain was not exercised")
	}
}

func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "connection refused")
}

// TestBadInput: malformed proxy requests, oversized headers and garbage
// after CONNECT get a clear answer or a closed connection, never a panic,
// and the gateway keeps serving.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	big := strings.Repeat("x", 100<<10)

	cases := []struct {
		name string
		send string
		// want is the status, 0 = any 4xx or a closed connection.
		want int
	}{
		{"garbage-line", "GARBAGE\r\n\r\n", http.StatusBadRequest},
		{"bad-version", "GET http://" + plainHost + "/ HTTP/9.9\r\nHost: " + plainHost + "\r\n\r\n", http.StatusHTTPVersionNotSupported},
		{"relative-uri", "GET /relative HTTP/1.1\r\nHost: " + apiHost + "\r\n\r\n", 0},
		{"connect-no-port", "CONNECT " + apiHost + " HTTP/1.1\r\nHost: " + apiHost + "\r\n\r\n", 0},
		{"connect-empty-host", "CONNECT :443 HTTP/1.1\r\nHost: :443\r\n\r\n", 0},
		{"connect-bad-port", "CONNECT " + apiHost + ":99999 HTTP/1.1\r\nHost: " + apiHost + ":99999\r\n\r\n", 0},
		{"negative-content-length", "POST http://" + plainHost + "/v1/x HTTP/1.1\r\nHost: " + plainHost + "\r\nContent-Length: -1\r\n\r\n", http.StatusBadRequest},
		{"header-no-colon", "GET http://" + plainHost + "/ HTTP/1.1\r\nHost: " + plainHost + "\r\nNoColonHere\r\n\r\n", http.StatusBadRequest},
		{"tls-to-plain-listener", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + strings.Repeat("\x00", 64), 0},
		{"oversized-headers", "GET http://" + plainHost + "/v1/big HTTP/1.1\r\nHost: " + plainHost + "\r\nX-Big: " + big + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"dot-segments", "GET http://" + plainHost + "/v1/../admin HTTP/1.1\r\nHost: " + plainHost + "\r\n\r\n", http.StatusBadRequest},
	}
	// In parallel: some cases wait for read_header_timeout (5s).
	t.Run("raw", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				c := dialProxy(t, e)
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, tc.send); err != nil && !isReset(err) {
					t.Fatalf("write: %v", err)
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				switch {
				case err != nil && tc.want == 0 && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err)):
					// Closed without an answer: acceptable for input that is not HTTP.
				case err != nil:
					t.Errorf("reading the answer: %v", err)
				case tc.want != 0 && resp.StatusCode != tc.want:
					t.Errorf("status = %s, want %d", resp.Status, tc.want)
				case tc.want == 0 && (resp.StatusCode < 400 || resp.StatusCode > 499):
					t.Errorf("status = %s, want a 4xx", resp.Status)
				}
			})
		}
	})

	t.Run("oversized-headers-in-tunnel", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+apiHost+"/v1/big-in-tunnel", nil)
		req.Header.Set("X-Big", big)
		resp, herr := tunnelRequest(t, e, apiHost+":443", apiHost, gwCAPool, req)
		if herr != nil {
			t.Fatalf("handshake: %v", herr)
		}
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status = %s, want 431", resp.Status)
		}
	})
	t.Run("bad-path-in-tunnel", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+apiHost+"/v1/x", nil)
		req.URL.Opaque = "/v1/%2e%2e/admin"
		resp, herr := tunnelRequest(t, e, apiHost+":443", apiHost, gwCAPool, req)
		if herr != nil {
			t.Fatalf("handshake: %v", herr)
		}
		checkDenial(t, resp.StatusCode, resp.Header, readAll(t, resp), http.StatusBadRequest, "bad_path", "*")
	})
	for _, target := range []string{apiHost + ":443", tunnelHost + ":443"} {
		t.Run("garbage-after-connect-"+target, func(t *testing.T) {
			c, resp := rawConnect(t, e, target)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("CONNECT: %s", resp.Status)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, "this is not TLS\r\n\r\n"+strings.Repeat("\xff", 512)); err != nil && !isReset(err) {
				t.Fatalf("write: %v", err)
			}
			// The gateway (or, for a tunnel, the origin) must close the
			// connection: read until EOF within the deadline.
			if _, err := io.Copy(io.Discard, c); err != nil && !isReset(err) {
				t.Errorf("connection not closed after garbage: %v", err)
			}
		})
	}
	t.Run("half-open-connect", func(t *testing.T) {
		c, resp := rawConnect(t, e, apiHost+":443")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT: %s", resp.Status)
		}
		c.(*net.TCPConn).CloseWrite()
	})

	// Still serving, and nothing crashed.
	resp := goClient{}.Do(t, e, clientRequest{URL: "https://" + apiHost + "/v1/after-bad-input"})
	if resp.Err != "" || resp.Status != http.StatusOK {
		t.Fatalf("after bad input: status %d err %s", resp.Status, resp.Err)
	}
	if exited, err := e.wait(0); exited {
		t.Fatalf("gateway exited: %v", err)
	}
	if r, err := http.Get("http://" + e.adminAddr + "/healthz"); err != nil || r.StatusCode != http.StatusOK {
		t.Errorf("/healthz after bad input: %v %v", r, err)
	} else {
		r.Body.Close()
	}
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// runCLI runs the binary with a deadline and returns its combined output
// and exit code.
func runCLI(t *testing.T, timeout time.Duration, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Dir = repoRoot
	if env != nil {
		cmd.Env = env
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("credgate %s: no exit within %s\n%s", strings.Join(args, " "), timeout, out)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	default:
		t.Fatalf("credgate %s: %v", strings.Join(args, " "), err)
		return "", -1
	}
}

// TestInvalidConfigAtStart: a broken policy or config stops `serve` and
// `validate` with exit status non-zero and FILE:LINE:COL.
func TestInvalidConfigAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := startOrigin(t)
	e := &env{t: t, dir: dir, origin: o, token: randomToken(t),
		configPath: filepath.Join(dir, "credgate.yaml"), policyPath: filepath.Join(dir, "policy.yaml")}
	e.writeConfig(envOptions{})
	goodConfig, err := os.ReadFile(e.configPath)
	if err != nil {
		t.Fatal(err)
	}
	e.writePolicy("", envOptions{})
	gwEnv := gatewayEnv(e.token)

	if out, code := runCLI(t, 20*time.Second, gwEnv, "validate", "-c", e.configPath); code != 0 {
		t.Fatalf("validate on the good config: exit %d\n%s", code, out)
	}

	tests := []struct {
		name   string
		config string // "" = the good one
		policy string // "" = the good one
		want   *regexp.Regexp
	}{
		{"policy-yaml-syntax", "", brokenPolicy, regexp.MustCompile(`policy\.yaml:4(:\d+)?: `)},
		{"policy-unknown-key", "", strings.Replace(basePolicy, "  api:\n    hosts:", "  api:\n    hostz:", 1),
			regexp.MustCompile(`policy\.yaml:\d+:\d+: .*hostz`)},
		{"policy-unknown-credential", "", strings.Replace(basePolicy, "credential: api-token\n      as: bearer\n  - name: tunnel-pass",
			"credential: no-such-credential\n      as: bearer\n  - name: tunnel-pass", 1), regexp.MustCompile(`policy\.yaml:\d+:\d+: .*no-such-credential`)},
		{"config-unknown-key", strings.Replace(string(goodConfig), "admin_listen:", "admin_lisen:", 1), "",
			regexp.MustCompile(`credgate\.yaml:2:\d+: .*admin_lisen`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := t.TempDir()
			cfg := tt.config
			if cfg == "" {
				cfg = string(goodConfig)
			}
			pol := tt.policy
			if pol == "" {
				pol = e.policyText("", envOptions{})
			} else {
				pol = e.policyText(pol, envOptions{})
			}
			cfgPath := filepath.Join(d, "credgate.yaml")
			writeAtomic(t, cfgPath, cfg)
			writeAtomic(t, filepath.Join(d, "policy.yaml"), pol)

			out, code := runCLI(t, 20*time.Second, gwEnv, "serve", "-c", cfgPath)
			if code == 0 {
				t.Errorf("serve: exit 0, want non-zero")
			}
			if !tt.want.MatchString(out) {
				t.Errorf("serve output does not match %s:\n%s", tt.want, out)
			}
			out, code = runCLI(t, 20*time.Second, gwEnv, "validate", "-c", cfgPath)
			if code != 1 {
				t.Errorf("validate: exit %d, want 1", code)
			}
			if !tt.want.MatchString(out) {
				t.Errorf("validate output does not match %s:\n%s", tt.want, out)
			}
		})
	}
}

// TestDemoOnce: `credgate demo --once` sends one request through a gateway
// built on embedded defaults and exits 0 only if the credential arrived.
func TestDemoOnce(t *testing.T) {
	t.Parallel()
	out, code := runCLI(t, 60*time.Second, clientEnv(""), "demo", "--once")
	if code != 0 {
		t.Fatalf("credgate demo --once: exit %d\n%s", code, out)
	}
}

// TestValidateExamples: every example under examples/ passes validate,
// in a copy of the directory with the CA the example config names written
// by `credgate ca init` (validate checks that the files a config names
// exist).
func TestValidateExamples(t *testing.T) {
	t.Parallel()
	src, err := filepath.Glob(filepath.Join(repoRoot, "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(src) == 0 {
		t.Fatalf("no examples/*.yaml to validate")
	}
	dir := t.TempDir()
	var files []string
	for _, f := range src {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, dst)
	}
	if out, code := runCLI(t, 20*time.Second, nil, "ca", "init", "--out", filepath.Join(dir, "ca")); code != 0 {
		t.Fatalf("credgate ca init: exit %d\n%s", code, out)
	}
	// The example config's policy (stripe.yaml) reads STRIPE_SECRET_KEY,
	// which validate checks for a gateway config, as serve would need it.
	env := append(os.Environ(), "STRIPE_SECRET_KEY=sk_test_not_a_real_key_0123456789")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if out, code := runCLI(t, 20*time.Second, env, "validate", "-c", f); code != 0 {
				t.Errorf("credgate validate -c %s: exit %d\n%s", f, code, out)
			}
		})
	}
}
