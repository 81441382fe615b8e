package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// dialWebSocket opens a WebSocket to wss://api.origin.test/ws through the
// gateway with a real WebSocket client (golang.org/x/net/websocket), as an
// application behind HTTPS_PROXY does: CONNECT, TLS trusting the gateway
// CA, then the client's own handshake.
func dialWebSocket(t *testing.T, e *env) *websocket.Conn {
	t.Helper()
	c, resp := rawConnect(t, e, apiHost+":443")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	tc := tls.Client(c, &tls.Config{ServerName: apiHost, RootCAs: gwCAPool, NextProtos: []string{"http/1.1"}})
	cfg, err := websocket.NewConfig("wss://"+apiHost+"/ws", "https://app.example")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.NewClient(cfg, tc)
	if err != nil {
		t.Fatalf("WebSocket handshake through the gateway: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// TestWebSocketKillSwitch: a WebSocket through an allowed rule works and
// carries the injected credential; disabling that credential with the
// admin CLI closes it (invariant 12), says so in the audit line and the
// metrics, and a new upgrade is refused.
func TestWebSocketKillSwitch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokFile, token := writeAdminToken(t, dir)
	e := startEnv(t, envOptions{ExtraConfig: fmt.Sprintf("admin:\n  token_file: %q\n", tokFile)})
	e.secrets = append(e.secrets, token)

	ws := dialWebSocket(t, e)
	if err := websocket.Message.Send(ws, "hello"); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := websocket.Message.Receive(ws, &got); err != nil || got != "hello" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	if h := e.origin.one(t, "/ws").Header; h.Get("Authorization") != "Bearer "+e.token || !strings.EqualFold(h.Get("Upgrade"), "websocket") {
		t.Errorf("the origin's upgrade request: credential injected %v, Upgrade %q", h.Get("Authorization") != "", h.Get("Upgrade"))
	}
	if v := e.metric(t, `credgate_long_lived_connections{kind="websocket"}`); v != 1 {
		t.Errorf("credgate_long_lived_connections{kind=websocket} = %v, want 1", v)
	}

	if out, code := adminCLI(t, e, "--token-file", tokFile, "disable", "credential", "api-token", "--reason", "leaked"); code != 0 {
		t.Fatalf("disable: exit %d\n%s", code, out)
	}
	// The gateway closes the WebSocket: the client's next read ends.
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	err := websocket.Message.Receive(ws, &got)
	var ne interface{ Timeout() bool }
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("the WebSocket of a disabled credential is still open: %v", err)
	}
	waitFor(t, 5*time.Second, "the WebSocket's audit line", func() error {
		for _, ev := range e.audit() {
			if ev.Path == "/ws" && ev.Status == http.StatusSwitchingProtocols {
				if ev.Closed != "kill_switch" || ev.Credential != "api-token" || ev.Rule != "api-inject" {
					return fmt.Errorf("audit line %+v", ev)
				}
				return nil
			}
		}
		return errors.New("none yet")
	})
	if v := e.metric(t, `credgate_long_lived_closed_total{kind="websocket",reason="kill_switch"}`); v != 1 {
		t.Errorf("credgate_long_lived_closed_total{kind=websocket,reason=kill_switch} = %v, want 1", v)
	}

	// A new upgrade is decided like any request: refused while disabled.
	c, _ := rawConnect(t, e, apiHost+":443")
	tc := tls.Client(c, &tls.Config{ServerName: apiHost, RootCAs: gwCAPool, NextProtos: []string{"http/1.1"}})
	cfg, _ := websocket.NewConfig("wss://"+apiHost+"/ws", "https://app.example")
	if _, err := websocket.NewClient(cfg, tc); err == nil || !strings.Contains(err.Error(), "bad status") {
		t.Errorf("a new WebSocket of the disabled credential: %v, want a refused handshake", err)
	}
}

// TestH2CUpgradeRefused: curl asking for an h2c upgrade through the
// gateway (over HTTP/1.1: over HTTP/2 curl drops the Upgrade field itself)
// gets 400 upgrade_not_allowed naming h2c; the origin sees nothing.
func TestH2CUpgradeRefused(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", "-sS", "--max-time", "20", "--http1.1", "--cacert", gwCACert, "-D", "-",
		"-H", "Upgrade: h2c", "-H", "Connection: Upgrade, HTTP2-Settings", "-H", "HTTP2-Settings: AAMAAABkAAQAAP__",
		"https://"+apiHost+"/v1/h2c")
	cmd.Env = clientEnv(e.proxyURL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	// The dump holds the CONNECT answer, then the refusal.
	for _, want := range []string{"HTTP/1.1 400", "X-Credgate-Reason: upgrade_not_allowed", `\"h2c\"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("curl's output lacks %s:\n%s", want, out)
		}
	}
	if n := len(e.origin.byPath("/v1/h2c")); n != 0 {
		t.Errorf("the origin saw %d requests", n)
	}
}
