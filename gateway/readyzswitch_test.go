package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/redistest"
	"github.com/credgate/credgate/killswitch"
)

// TestReadyzFailsClosedWithoutVerifiedSwitchState: a replica that starts
// without admin.state_file while Redis holds a switch state signed under
// a key it does not hold (a rotation of cache.redis.encryption_keys in
// progress) enforces nothing of what the fleet disabled, so it reports
// not ready (503 kill_switch_unverified, and a log line saying why and
// what to do) until a change through the admin API writes a state it
// verifies.
func TestReadyzFailsClosedWithoutVerifiedSwitchState(t *testing.T) {
	srv := redistest.Start(t)
	next := make([]byte, 32)
	if _, err := rand.Read(next); err != nil {
		t.Fatal(err)
	}
	// Another replica, already on the new key, disabled a rule.
	other, err := killswitch.New(context.Background(), killswitch.Options{Client: srv.Client(), Namespace: "t",
		Keys: []killswitch.Key{{ID: "k2", Secret: next}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Disable(context.Background(), killswitch.Entry{Kind: killswitch.Rule, Name: "api", By: "alice"}); err != nil {
		t.Fatal(err)
	}
	_ = other.Close()

	const admin = "readyz-fail-closed-token-0123456789"
	tokFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokFile, []byte(admin), 0o600); err != nil {
		t.Fatal(err)
	}
	testRedisKeyEnv(t)
	tg := startSwitchGateway(t, fmt.Sprintf("admin:\n  token_file: %q\ncache:\n  redis:\n    addrs: [%q]\n    namespace: t\n    encryption_keys: [{id: k1, env: CREDGATE_TEST_REDIS_KEY}]\n",
		tokFile, srv.Addr()))

	readyz := func(token string) (int, string) {
		st, body, err := adminGetStatus(t, tg, "/readyz", token)
		if err != nil {
			t.Fatal(err)
		}
		return st, body
	}
	if st, body := readyz(""); st != http.StatusServiceUnavailable || !strings.Contains(body, `"status":"kill_switch_unverified"`) {
		t.Errorf("/readyz with an unverifiable switch state and none of its own: %d %s, want 503 kill_switch_unverified", st, body)
	}
	if st, body := readyz(admin); st != http.StatusServiceUnavailable || !strings.Contains(body, `"state":"unverified"`) || !strings.Contains(body, "unknown_key") {
		t.Errorf("/readyz detail: %d %s, want the unverified state and why", st, body)
	}
	if !strings.Contains(tg.logs.String(), "holds no verified switch state") {
		t.Error("no log line says why the replica is not ready")
	}

	// A change through the admin API writes a state this replica signs.
	if st, _, body := adminCall(t, tg, "/admin/v1/disable", admin, `{"kind":"rule","name":"other","by":"bob"}`); st != http.StatusOK {
		t.Fatalf("disable: %d %v", st, body)
	}
	if st, body := readyz(""); st != http.StatusOK {
		t.Errorf("/readyz after the admin change: %d %s, want 200", st, body)
	}
}

// TestSwitchStateUnknownFailsClosed: a replica with Redis-held switches
// that cannot know the fleet's switch state — started while Redis is down,
// without admin.state_file — neither reports ready nor serves: /readyz is
// 503 kill_switch_unverified and every request is refused 503
// kill_switch_unverified (audited, never forwarded), until Redis answers;
// then the fleet's disable is enforced. A replica that kept the state in
// its state file, or that read it from Redis, is ready and enforces it.
// Before, the first replica reported ready and forwarded the requests of
// the rule the fleet had disabled.
func TestSwitchStateUnknownFailsClosed(t *testing.T) {
	key := testRedisKeyEnv(t)
	secret, err := base64.StdEncoding.DecodeString(os.Getenv(key.Env))
	if err != nil {
		t.Fatal(err)
	}
	const admin = "switch-unknown-token-0123456789"
	for _, tc := range []struct {
		name string
		// stateFile: the replica has admin.state_file, written by an
		// earlier run that saw the disable.
		stateFile bool
		redisDown bool
		// unknown: the replica cannot know the switches until Redis answers.
		unknown bool
	}{
		{name: "redis down, no state file", redisDown: true, unknown: true},
		{name: "redis down, state file", redisDown: true, stateFile: true},
		{name: "redis up, no state file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			dir := t.TempDir()
			state := filepath.Join(dir, "switches.json")
			// Another replica (of the same keys) disabled the rule; with a
			// state file, this replica's earlier run saw it.
			opts := killswitch.Options{Client: srv.Client(), Namespace: "t", Keys: []killswitch.Key{{ID: key.ID, Secret: secret}}}
			if tc.stateFile {
				opts.StateFile = state
			}
			other, err := killswitch.New(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = other.Close() })
			if _, err := other.Disable(context.Background(), killswitch.Entry{Kind: killswitch.Rule, Name: "api", By: "alice"}); err != nil {
				t.Fatal(err)
			}
			if tc.redisDown {
				srv.Stop()
			}
			tokFile := filepath.Join(dir, "admin.token")
			if err := os.WriteFile(tokFile, []byte(admin), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := fmt.Sprintf("admin:\n  token_file: %q\ncache:\n  redis:\n    addrs: [%q]\n    namespace: t\n    timeout: 500ms\n    encryption_keys: [{id: k1, env: CREDGATE_TEST_REDIS_KEY}]\n",
				tokFile, srv.Addr())
			if tc.stateFile {
				cfg = strings.Replace(cfg, "admin:\n", fmt.Sprintf("admin:\n  state_file: %q\n", state), 1)
			}
			tg := startSwitchGateway(t, cfg)
			c := tg.client(t, false)
			get := func(path string) (int, string) {
				t.Helper()
				resp, err := c.Get("https://" + apiHost + path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode, resp.Header.Get(ReasonHeader)
			}
			connect := func(host string) (int, string) {
				t.Helper()
				conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", host, host)
				resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode, resp.Header.Get(ReasonHeader)
			}
			readyz := func() (int, string) {
				st, body, err := adminGetStatus(t, tg, "/readyz", "")
				if err != nil {
					t.Fatal(err)
				}
				return st, body
			}
			if tc.unknown {
				if st, body := readyz(); st != http.StatusServiceUnavailable || !strings.Contains(body, `"status":"kill_switch_unverified"`) {
					t.Errorf("/readyz: %d %s, want 503 kill_switch_unverified", st, body)
				}
				// Refused at the CONNECT already: the intercepted one of
				// the rule the fleet disabled, and a tunnel.
				for _, host := range []string{apiHost, tunnelHost} {
					if st, code := connect(host); st != http.StatusServiceUnavailable || code != codeSwitchUnverified {
						t.Errorf("CONNECT %s: %d %s, want 503 %s", host, st, code, codeSwitchUnverified)
					}
				}
				if n := len(tg.origin.all()); n != 0 {
					t.Errorf("the origin saw %d requests, want none", n)
				}
				waitFor(t, 5*time.Second, "the refusals' audit lines", func() bool {
					return strings.Count(tg.audit.String(), `"code":"kill_switch_unverified"`) == 2
				})
				if !strings.Contains(tg.logs.String(), "holds no switch state of its own") {
					t.Error("no log line says why the replica refuses")
				}
				// Redis comes back (empty); the other replica writes back
				// the state it holds, and this one enforces it.
				srv.Restart()
			}
			waitFor(t, 20*time.Second, "/readyz 200", func() bool { st, _ := readyz(); return st == http.StatusOK })
			waitFor(t, 20*time.Second, "the fleet's disable enforced", func() bool {
				st, code := get("/v1/charges")
				return st == http.StatusForbidden && code == codeDisabled
			})
		})
	}
}
