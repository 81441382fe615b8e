package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/freeport"
)

// crash kills the gateway with SIGKILL, as the OOM killer or a node
// failure does.
func (e *env) crash(t *testing.T) {
	t.Helper()
	if err := e.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if exited, _ := e.wait(10 * time.Second); !exited {
		t.Fatal("gateway did not die of SIGKILL")
	}
}

// TestCrashRestart: kill -9 mid-traffic, then a restart on the same files.
// The switch set before the crash (admin.state_file) is in force from the
// restarted gateway's first request on — clients hammer its fixed address
// while it starts, and none is let through; the audit file holds the
// crashed run's chain, cut (a warning, not a break), and the new run's,
// closed by its final checkpoint: `audit verify` passes, and
// `--require-final` names the crashed chain only (not_final).
func TestCrashRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokFile, token := writeAdminToken(t, dir)
	state := filepath.Join(dir, "switches.json")
	auditFile := filepath.Join(dir, "audit.log")
	key := checkpointKey(t, dir)
	listen := freeport.Addr(t) // the restarted gateway listens where its clients already point
	e := &env{t: t, dir: dir, origin: startOrigin(t), token: randomToken(t)}
	e.configPath = filepath.Join(e.dir, "credgate.yaml")
	e.policyPath = filepath.Join(e.dir, "policy.yaml")
	e.auditKey = key
	e.writePolicy("", envOptions{})
	e.writeConfig(envOptions{
		ExtraConfig: fmt.Sprintf("admin:\n  token_file: %q\n  state_file: %q\n", tokFile, state),
		AuditConfig: fmt.Sprintf("  checkpoint:\n    key_file: %q\n    lines: 5\n", key),
		AuditOutput: auditFile,
	})
	cfg, err := os.ReadFile(e.configPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.Replace(string(cfg), "listen: 127.0.0.1:0\nadmin", "listen: "+listen+"\nadmin", 1))
	if err := os.WriteFile(e.configPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	e.secrets = append(e.secrets, token)
	e.start()

	c := newGoClient(t, e.proxyURL, gwCACert, false)
	if st, _, _ := get(t, c, "GET", "https://"+apiHost+"/v1/before", ""); st != http.StatusOK {
		t.Fatalf("before the switch: %d", st)
	}
	if out, code := adminCLI(t, e, "--token-file", tokFile, "disable", "rule", "api-inject", "--reason", "INC-1"); code != 0 {
		t.Fatalf("disable: exit %d\n%s", code, out)
	}
	// Mid-traffic: requests (refused by the switch, tunnelled) flow while
	// the gateway dies and comes back; every answer from either run must
	// be the switch's refusal.
	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		mu      sync.Mutex
		let     []string
		refused atomic.Int64
	)
	// The restart keeps the proxy's port; the workers read its URL once,
	// not from e, which the restart writes.
	proxyURL := e.proxyURL
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				hc := newGoClient(t, proxyURL, gwCACert, false)
				hc.Timeout = 5 * time.Second
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("https://%s/v1/during-%d-%d", apiHost, w, i), nil)
				resp, err := hc.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusForbidden && resp.Header.Get("X-Credgate-Reason") == "disabled" {
						refused.Add(1)
					} else {
						mu.Lock()
						let = append(let, fmt.Sprintf("%s %s", resp.Status, resp.Header.Get("X-Credgate-Reason")))
						mu.Unlock()
					}
				}
				cancel()
				hc.CloseIdleConnections()
			}
		}()
	}
	waitFor(t, 10*time.Second, "traffic before the crash", func() error {
		if refused.Load() < 8 {
			return fmt.Errorf("%d refused", refused.Load())
		}
		return nil
	})
	// Audit lines reach the file within the writer's flush interval
	// (100 ms): the refusals before the crash are on disk.
	waitFor(t, 5*time.Second, "the refusals' audit lines in the file", func() error {
		b, err := os.ReadFile(auditFile)
		if err != nil {
			return err
		}
		if n := strings.Count(string(b), `"code":"disabled"`); n < 4 {
			return fmt.Errorf("%d so far", n)
		}
		return nil
	})
	e.crash(t)
	before := refused.Load()
	e.start()
	waitFor(t, 10*time.Second, "traffic after the restart", func() error {
		if refused.Load() < before+8 {
			return fmt.Errorf("%d refused since", refused.Load()-before)
		}
		return nil
	})
	stop.Store(true)
	wg.Wait()
	if len(let) > 0 {
		t.Errorf("%d requests were not refused by the switch set before the crash: %v", len(let), let[:min(len(let), 5)])
	}
	e.signal(os.Interrupt)
	if exited, err := e.wait(15 * time.Second); !exited || err != nil {
		t.Fatalf("after the restart, SIGINT: exited %v, %v", exited, err)
	}

	pub := filepath.Join(dir, "audit.pub")
	out, code := runCLI(t, 20*time.Second, nil, "audit", "pubkey", "--key", key)
	if code != 0 {
		t.Fatal(out)
	}
	if err := os.WriteFile(pub, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = runCLI(t, 30*time.Second, nil, "audit", "verify", "--pubkey", pub, auditFile)
	if code != 0 {
		t.Errorf("audit verify after a crash and a restart: exit %d, want 0 (a crash cuts a chain, it does not break it)\n%s", code, tail(out, 20))
	}
	out, code = runCLI(t, 30*time.Second, nil, "audit", "verify", "--require-final", "--pubkey", pub, auditFile)
	if code != 1 || strings.Count(out, "not_final") != 1 {
		t.Errorf("audit verify --require-final: exit %d, want 1 with one not_final (the crashed run's chain)\n%s", code, tail(out, 20))
	}
	t.Logf("verify --require-final:\n%s", tail(out, 8))
}
