package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/providers"
)

func init() {
	providers.Register(providers.Module{Name: "gwtest-pinned", New: func() providers.Provider { return new(pinned) }})
}

// pinned is a reissuable token valid on one host only, read from
// environment variables at every fetch, like a Salesforce access token
// and its instance_url.
type pinned struct {
	Env     string `yaml:"env"`
	HostEnv string `yaml:"host_env"`
}

func (p *pinned) Fetch(context.Context, providers.Request) (*providers.Credential, error) {
	v, h := os.Getenv(p.Env), os.Getenv(p.HostEnv)
	if v == "" || h == "" {
		return nil, fmt.Errorf("gwtest-pinned: %s or %s unset: %w", p.Env, p.HostEnv, providers.ErrUnavailable)
	}
	return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(v)}, Hosts: []string{h}}, nil
}

func (*pinned) ReissueOnUnauthorized() bool { return true }

var _ providers.Reissuer = (*pinned)(nil)

// TestCredentialHosts: a credential whose Hosts name another host than
// the destination is never sent there, even though the rule matched: 403
// credential_host_mismatch, audited, nothing reaches the origin. A 401
// whose new credential is for another host is returned as it came, not
// retried with it.
func TestCredentialHosts(t *testing.T) {
	tg := startGateway(t)
	c := tg.client(t, false)
	secrets := []string{"pinned-one-" + tg.token, "pinned-two-" + tg.token}
	set := func(i int, host string) {
		t.Setenv("CREDGATE_GATEWAY_TEST_REISSUABLE", secrets[i])
		t.Setenv("CREDGATE_GATEWAY_TEST_PINNED_HOST", host)
		tg.origin.mu.Lock()
		tg.origin.accept = secrets[i]
		tg.origin.mu.Unlock()
	}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := c.Get("https://" + apiHost + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	seen := func(path string) int {
		n := 0
		for _, s := range tg.origin.all() {
			if s.Path == path {
				n++
			}
		}
		return n
	}

	set(0, apiHost)
	if st, body := get("/auth/pinned/a"); st != http.StatusOK {
		t.Fatalf("token for %s: status %d (%s), want 200", apiHost, st, body)
	}
	// The service moved the account to another host and revoked the token
	// here: the 401 drops it, the new token is for the other host, so the
	// request is not retried with it.
	set(1, "moved.origin.test")
	if st, _ := get("/auth/pinned/b"); st != http.StatusUnauthorized {
		t.Errorf("after the move: status %d, want the origin's 401", st)
	}
	if n := seen("/auth/pinned/b"); n != 1 {
		t.Errorf("origin saw %d attempts, want 1: the new token is not for this host", n)
	}
	st, body := get("/auth/pinned/c")
	if st != http.StatusForbidden || !strings.Contains(body, codeCredentialHostMismatch) || !strings.Contains(body, "valid only on moved.origin.test, not on "+apiHost) {
		t.Errorf("request to the old host: status %d body %s, want 403 %s naming both hosts", st, body, codeCredentialHostMismatch)
	}
	if n := seen("/auth/pinned/c"); n != 0 {
		t.Errorf("origin saw %d requests with a token for another host", n)
	}
	waitFor(t, 5*time.Second, "the refusal's audit line", func() bool { return strings.Contains(tg.audit.String(), `"code":"`+codeCredentialHostMismatch+`"`) })
	for _, s := range secrets {
		if strings.Contains(tg.audit.String(), s) || strings.Contains(tg.logs.String(), s) {
			t.Errorf("a token appears in the audit or log output")
		}
	}
}
