package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/testpki"
)

// runMTLSPolicy: workload agent must present, at once, a client
// certificate with its SPIFFE ID on the TLS listener (mtls) AND a run
// token naming it (jwt).
const runMTLSPolicy = `
workloads:
  agent:
    spiffe: spiffe://e2e.test/run/agent
    claims: {iss: "urn:credgate:run", sub: agent}
    require: [mtls, jwt]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
credentials:
  api-token:
    provider: static
    env: CREDGATE_E2E_TOKEN
rules:
  - name: agent-api
    from: agent
    to: api
    inject: {credential: api-token, as: bearer}
default: deny
`

// TestCredgateRunRelayMTLS: a workload that requires the mtls factor and
// a run token together is reachable through credgate run's relay with
// --gateway-cert/--gateway-key (the relay presents the certificate on
// the gateway's tls_listen and adds the token); without the certificate
// the request is refused and credgate run names the flags; with the
// certificate and no run token, or another workload's certificate, it is
// refused too. The command's environment holds neither
// CREDGATE_GATEWAY_CERT nor CREDGATE_GATEWAY_KEY. Rotation of the files
// is runrelay's TestRelayClientCert.
func TestCredgateRunRelayMTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	adminTok := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(adminTok, []byte(randomToken(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	clientCA, err := testpki.NewAuthority("e2e run client CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "client-ca.pem")
	if err := os.WriteFile(caFile, clientCA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	writePair := func(name, spiffeID string) (string, string) {
		c, err := clientCA.ClientLeaf(name, spiffeID)
		if err != nil {
			t.Fatal(err)
		}
		certPEM, keyPEM, err := testpki.PEM(c)
		if err != nil {
			t.Fatal(err)
		}
		cert, key := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		if err := os.WriteFile(cert, certPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		return cert, key
	}
	agentCert, agentKey := writePair("agent", "spiffe://e2e.test/run/agent")
	otherCert, otherKey := writePair("other", "spiffe://e2e.test/run/other")
	e := startEnv(t, envOptions{
		Policy: runMTLSPolicy,
		ExtraConfig: strings.TrimSuffix(tlsListenConfig(t, dir), "\n") + fmt.Sprintf("\n  client_ca: %q\n", caFile) +
			fmt.Sprintf("admin:\n  token_file: %q\nrun_tokens:\n  workloads: [agent]\n  ttl: 5m\n", adminTok),
	})
	if e.tlsProxyAddr == "" {
		t.Fatal("the gateway has no tls_listen address")
	}
	gateway := "https://" + e.tlsProxyAddr
	for _, c := range []struct {
		name  string
		flags []string
		env   []string
		path  string
		ok    bool
		want  string // in credgate run's output when refused
	}{
		{name: "certificate and token", flags: []string{"--workload", "agent", "--gateway-cert", agentCert, "--gateway-key", agentKey}, path: "/mtls/both", ok: true},
		{name: "from the environment", flags: []string{"--workload", "agent"}, env: []string{"CREDGATE_GATEWAY_CERT=" + agentCert, "CREDGATE_GATEWAY_KEY=" + agentKey}, path: "/mtls/env", ok: true},
		{name: "token without certificate", flags: []string{"--workload", "agent"}, path: "/mtls/no-cert", want: "--gateway-cert FILE and --gateway-key FILE"},
		{name: "certificate without token", flags: []string{"--gateway-cert", agentCert, "--gateway-key", agentKey}, path: "/mtls/no-token"},
		{name: "another workload's certificate", flags: []string{"--workload", "agent", "--gateway-cert", otherCert, "--gateway-key", otherKey}, path: "/mtls/other"},
	} {
		t.Run(c.name, func(t *testing.T) {
			full := append([]string{"run", "--gateway", gateway, "--gateway-ca", originCACert, "--admin", "http://" + e.adminAddr, "--token-file", adminTok}, c.flags...)
			// The command gets neither file of the relay's certificate.
			cmd := exec.Command(binPath, append(full, "--", "sh", "-c", `if [ -n "$CREDGATE_GATEWAY_CERT$CREDGATE_GATEWAY_KEY" ]; then echo the command got the certificate files; exit 9; fi; exec curl -sS -f "$0"`, "https://api.origin.test"+c.path)...)
			cmd.Env = append(runEnvOf(t), c.env...)
			out, err := cmd.CombinedOutput()
			if !c.ok {
				if err == nil {
					t.Fatalf("credgate run curl: succeeded, want the gateway's refusal\n%s", out)
				}
				if !strings.Contains(string(out), c.want) {
					t.Errorf("credgate run: %s, want %q", out, c.want)
				}
				if c.want == "" && strings.Contains(string(out), "--gateway-cert FILE") {
					t.Errorf("a certificate was presented, yet credgate run asks for one: %s", out)
				}
				if n := len(e.origin.byPath(c.path)); n != 0 {
					t.Errorf("the origin saw %d requests", n)
				}
				return
			}
			if err != nil || !strings.Contains(string(out), "ok "+c.path) {
				t.Fatalf("credgate run curl: %v\n%s", err, out)
			}
			if got := e.origin.one(t, c.path); got.Header.Get("Authorization") != "Bearer "+e.token {
				t.Errorf("the origin did not receive the injected credential")
			}
			waitFor(t, 5*time.Second, "the audit line of "+c.path, func() error {
				for _, ev := range e.audit() {
					if ev.Path == c.path {
						if ev.Workload != "agent" || ev.Rule != "agent-api" {
							return fmt.Errorf("audit of %s: workload %q rule %q", c.path, ev.Workload, ev.Rule)
						}
						return nil
					}
				}
				return errors.New("no audit line")
			})
		})
	}
}
