package gateway

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
