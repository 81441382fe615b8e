package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/internal/freeport"
)

// TestProxyProtocolBehindHAProxy puts a real HAProxy (Debian's haproxy,
// installed by scripts/test-tools.sh) in front of both proxy listeners,
// sending PROXY v1 (send-proxy) and v2 (send-proxy-v2), and drives curl
// through it from two loopback addresses: each request reaches the
// origin with the credential of the workload the client's own address
// identifies (the cidrs factor judged the address HAProxy reported), and
// its audit line names that address as source and HAProxy's as via.
func TestProxyProtocolBehindHAProxy(t *testing.T) {
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		// Debian installs it in /usr/sbin, off a user's PATH.
		haproxy, err = exec.LookPath("/usr/sbin/haproxy")
	}
	if err != nil {
		t.Skip("haproxy is not installed (scripts/test-tools.sh installs Debian's): the PROXY protocol is tested with Go-written headers only")
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed (scripts/test-tools.sh installs it)")
	}
	tg := startPPGateway(t, true)
	ports := make([]int, 3)
	for i := range ports {
		ports[i] = freeport.Get(t) // haproxy binds them: claimed, not picked and released
	}
	cfg := fmt.Sprintf(`global
  maxconn 100
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend v1
  bind 127.0.0.1:%d
  default_backend gw_v1
backend gw_v1
  server gw %s send-proxy
frontend v2
  bind 127.0.0.1:%d
  default_backend gw_v2
backend gw_v2
  server gw %s send-proxy-v2
frontend tls_v2
  bind 127.0.0.1:%d
  default_backend gw_tls_v2
backend gw_tls_v2
  server gw %s send-proxy-v2
`, ports[0], tg.listenerAddr("listen"), ports[1], tg.listenerAddr("listen"), ports[2], tg.listenerAddr("tls_listen"))
	cfgPath := writeFile(t, tg.dir, "haproxy.cfg", []byte(cfg))
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, haproxy, "-db", "-f", cfgPath)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy:\n%s", out.String())
		}
	})
	for _, p := range ports {
		waitFor(t, 10*time.Second, "haproxy listening", func() bool {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	caPath := filepath.Join(tg.dir, mitm.CertFile) // the interception CA (mitm.WriteCAWith)
	listenerCA := filepath.Join(tg.dir, "origin-ca.pem")
	for _, tc := range []struct {
		name, from, proxy string
		extra             []string
		workload          string
	}{
		{"v1", ppBehind, fmt.Sprintf("http://127.0.0.1:%d", ports[0]), nil, "behind-lb"},
		{"v2", ppBehind, fmt.Sprintf("http://127.0.0.1:%d", ports[1]), nil, "behind-lb"},
		{"v2-other-client", ppDirect, fmt.Sprintf("http://127.0.0.1:%d", ports[1]), nil, "direct"},
		{"v2-tls_listen", ppBehind, fmt.Sprintf("https://credgate.test:%d", ports[2]),
			[]string{"--proxy-cacert", listenerCA, "--resolve", fmt.Sprintf("credgate.test:%d:127.0.0.1", ports[2])}, "behind-lb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/haproxy-" + tc.name
			args := append([]string{"-sS", "--fail", "--max-time", "20", "--interface", tc.from, "--proxy", tc.proxy, "--cacert", caPath}, tc.extra...)
			args = append(args, "https://"+apiHost+path)
			cmd := exec.Command(curl, args...)
			got, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, got)
			}
			if !strings.HasPrefix(string(got), "ok "+path) {
				t.Fatalf("curl got %q", got)
			}
			line := ppAuditLine(t, tg, 0, strings.TrimPrefix(path, "/"), "")
			for k, want := range map[string]string{"workload": tc.workload, "source": tc.from, "via": ppLB} {
				if got, _ := line[k].(string); got != want {
					b, _ := json.Marshal(line)
					t.Errorf("audit %s = %q, want %q (%s)", k, got, want, b)
				}
			}
			all := tg.origin.all()
			if h := all[len(all)-1].Header.Get("Authorization"); !strings.HasPrefix(h, "Bearer gw-test-secret-") {
				t.Errorf("origin got no credential")
			}
		})
	}
}
