package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestStartFailures: each bad start of `credgate serve` fails fast — a
// non-zero exit within its bound (the SPIFFE Workload API's start_timeout
// for a missing agent), with a message naming the cause and the fix —
// and never says it serves first. (Class: process start-up, docs/deploy.md
// "Start-up and shutdown".)
func TestStartFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, origin: startOrigin(t), token: randomToken(t),
		configPath: filepath.Join(dir, "credgate.yaml"), policyPath: filepath.Join(dir, "policy.yaml")}
	e.writeConfig(envOptions{})
	goodConfig, err := os.ReadFile(e.configPath)
	if err != nil {
		t.Fatal(err)
	}
	policy := e.policyText("", envOptions{})
	gwEnv := gatewayEnv(e.token)

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	notPEM := filepath.Join(dir, "not-a-key.pem")
	halfState := filepath.Join(dir, "half.json")
	emptyState := filepath.Join(dir, "empty.json")
	for path, content := range map[string]string{
		notPEM:     "hello\n",
		halfState:  `{"version":1,"generation":3,"switches":[{"kind":"rule","name":"api-inj`,
		emptyState: "",
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	replace := func(re, with string) func(string) string {
		return func(s string) string {
			rx := regexp.MustCompile(re)
			if !rx.MatchString(s) {
				t.Fatalf("config has no %s", re)
			}
			return rx.ReplaceAllLiteralString(s, with)
		}
	}
	add := func(extra string) func(string) string { return func(s string) string { return s + extra } }
	stateFile := func(path string) func(string) string {
		return add("admin:\n  state_file: \"" + path + "\"\n")
	}

	cases := []struct {
		name   string
		edit   func(string) string
		within time.Duration
		want   string // a regexp the output must match
	}{
		{"listen port in use", replace(`(?m)^listen: .*$`, "listen: "+busy.Addr().String()), 10 * time.Second,
			`listen ` + regexp.QuoteMeta(busy.Addr().String()) + `: address already in use: .*stop it or set another address`},
		{"admin port in use", replace(`(?m)^admin_listen: .*$`, "admin_listen: "+busy.Addr().String()), 10 * time.Second,
			`admin_listen .*address already in use: .*set another address`},
		{"CA cert missing", replace(`(?m)^  cert: .*$`, "  cert: "+filepath.Join(dir, "no-such-ca.pem")), 10 * time.Second,
			`ca\.cert: .*no-such-ca\.pem does not exist \(write it with: credgate ca init`},
		{"CA key missing", replace(`(?m)^  key: .*$`, "  key: "+filepath.Join(dir, "no-such-key.pem")), 10 * time.Second,
			`ca\.key: .*no-such-key\.pem does not exist`},
		{"CA key not a key", replace(`(?m)^  key: .*$`, "  key: "+notPEM), 10 * time.Second,
			`ca\.cert/ca\.key: .*not-a-key\.pem: .*PEM data in key input \(a CA certificate and its own key`},
		{"audit file in a missing directory", replace(`(?m)^  output: stdout$`, "  output: "+filepath.Join(dir, "no-such-dir", "audit.log")), 10 * time.Second,
			`audit\.output: directory .*no-such-dir does not exist; create it`},
		{"audit file is a directory", replace(`(?m)^  output: stdout$`, "  output: "+dir), 10 * time.Second,
			`audit\.output: .* is a directory`},
		{"SPIRE agent socket missing", add("identity:\n  mtls:\n    workload_api: {socket: \"unix://" + filepath.Join(dir, "no-agent.sock") + "\", start_timeout: 2s}\n"), 15 * time.Second,
			`no X\.509-SVID .* within start_timeout 2s: cannot reach the agent.*is the SPIRE agent running`},
		{"kill switch state file half written", stateFile(halfState), 10 * time.Second,
			`state file .*half\.json is not valid JSON .*fix or remove it`},
		{"kill switch state file empty", stateFile(emptyState), 10 * time.Second,
			`state file .*empty\.json is not valid JSON .*fix or remove it`},
		{"kill switch state directory missing", stateFile(filepath.Join(dir, "no-such-state-dir", "s.json")), 10 * time.Second,
			`no-such-state-dir does not exist; create it`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := t.TempDir()
			cfgPath := filepath.Join(d, "credgate.yaml")
			writeAtomic(t, cfgPath, tc.edit(string(goodConfig)))
			writeAtomic(t, filepath.Join(d, "policy.yaml"), policy)
			ctx, cancel := context.WithTimeout(context.Background(), tc.within)
			defer cancel()
			cmd := exec.CommandContext(ctx, binPath, "serve", "-c", cfgPath)
			cmd.Dir = d
			cmd.Env = gwEnv
			start := time.Now()
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("serve still running after %s (a bad start must fail fast):\n%s", tc.within, tail(string(out), 10))
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Errorf("serve: %v, want a non-zero exit status", err)
			}
			if servingLine.Match(out) {
				t.Errorf("serve said it was serving before it failed:\n%s", tail(string(out), 10))
			}
			if !regexp.MustCompile(tc.want).Match(out) {
				t.Errorf("serve's output does not match %s:\n%s", tc.want, tail(string(out), 10))
			}
			t.Logf("exit after %s", time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestStartDegraded: a peer that is down at start does not stop `serve`;
// it starts degraded as documented, and /readyz says whether it can serve:
// an issuer whose key set cannot be fetched leaves it ready (that
// issuer's tokens are refused identity_unavailable until a fetch
// succeeds); Redis down leaves it not ready (kill_switch_unverified)
// unless admin.state_file holds the switches it last knew.
func TestStartDegraded(t *testing.T) {
	t.Parallel()
	closed := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	cases := []struct {
		name string
		opts func(t *testing.T, dir string) envOptions
		// ready is /readyz's status and word once started.
		ready int
		word  string
		log   string
	}{
		{"JWKS unreachable", func(t *testing.T, dir string) envOptions {
			return envOptions{ExtraConfig: "identity:\n  jwt:\n    issuers:\n      - issuer: https://idp.e2e.test\n        audiences: [credgate]\n        jwks_url: https://" + closed(t) + "/keys\n"}
		}, http.StatusOK, "ready", "cannot fetch the JWKS yet; will retry"},
		{"Redis down, no state file", func(t *testing.T, dir string) envOptions {
			return envOptions{CacheConfig: redisConfig(closed(t), [2]string{"k1", writeRedisKey(t, dir, "k1.key")})}
		}, http.StatusServiceUnavailable, "kill_switch_unverified", "cannot tell what the fleet disabled"},
		{"Redis down, state file with a switch", func(t *testing.T, dir string) envOptions {
			// As a replica that knew the fleet's state (generation 2) left it.
			state := filepath.Join(dir, "switches.json")
			if err := os.WriteFile(state, []byte(`{"version":1,"generation":2,"switches":[{"kind":"rule","name":"api-inject","since":"2026-12-01T00:00:00Z"}]}`), 0o600); err != nil {
				t.Fatal(err)
			}
			return envOptions{CacheConfig: redisConfig(closed(t), [2]string{"k1", writeRedisKey(t, dir, "k1.key")}),
				ExtraConfig: "admin:\n  state_file: \"" + state + "\"\n"}
		}, http.StatusOK, "ready", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := &env{t: t, dir: t.TempDir(), origin: startOrigin(t), token: randomToken(t)}
			e.configPath = filepath.Join(e.dir, "credgate.yaml")
			e.policyPath = filepath.Join(e.dir, "policy.yaml")
			opts := tc.opts(t, e.dir)
			e.writePolicy("", opts)
			e.writeConfig(opts)
			e.launch()
			waitFor(t, 10*time.Second, "/readyz "+tc.word, func() error {
				resp, err := http.Get("http://" + e.adminAddr + "/readyz")
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				var v struct{ Status string }
				_ = json.NewDecoder(resp.Body).Decode(&v)
				if resp.StatusCode != tc.ready || v.Status != tc.word {
					return errors.New("/readyz " + resp.Status + " " + v.Status)
				}
				return nil
			})
			if tc.log != "" && !strings.Contains(e.stderr.String(), tc.log) {
				t.Errorf("the log does not say %q:\n%s", tc.log, tail(e.stderr.String(), 10))
			}
			if strings.Contains(tc.name, "with a switch") {
				// The switch it last knew is in force from the start.
				c := newGoClient(t, e.proxyURL, gwCACert, false)
				if st, h, _ := get(t, c, "GET", "https://"+apiHost+"/v1/degraded", ""); st != http.StatusForbidden || h.Get("X-Credgate-Reason") != "disabled" {
					t.Errorf("a rule disabled in the state file: %d %q, want 403 disabled", st, h.Get("X-Credgate-Reason"))
				}
			}
		})
	}
}
