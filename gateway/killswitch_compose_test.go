package gateway

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/providers"
)

func init() {
	providers.Register(providers.Module{Name: "gwtest-compose", New: func() providers.Provider { return new(composed) }})
}

// composed is a credential made from other credentials of the policy
// (providers.Composer), like an OAuth2 token made with a client secret
// kept in Vault: its token joins its inputs' tokens.
type composed struct {
	From   []string `yaml:"from"`
	inputs map[string]providers.Provider
}

func (p *composed) Inputs() []string { return p.From }

func (p *composed) SetInputs(in map[string]providers.Provider) { p.inputs = in }

func (p *composed) Fetch(ctx context.Context, req providers.Request) (*providers.Credential, error) {
	var parts []string
	for _, name := range p.From {
		r := req
		r.Credential = name
		c, err := p.inputs[name].Fetch(ctx, r)
		if err != nil {
			return nil, fmt.Errorf("gwtest-compose: input %s: %w", name, err)
		}
		tok, _ := c.Field(providers.FieldToken)
		parts = append(parts, tok.Reveal())
	}
	return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret("made-from-" + strings.Join(parts, "+"))}}, nil
}

var _ providers.Composer = (*composed)(nil)

// composedPolicy: the catch-all rule "api" injects "nested", made from
// "composed", made from "token"; "direct" and "composed" inject the
// others.
const composedPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
  tunnel:
    hosts: [tunnel.origin.test]
    allow_private: true
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
  composed:
    provider: gwtest-compose
    from: [token]
  nested:
    provider: gwtest-compose
    from: [composed]
  unrelated:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
rules:
  - name: direct
    from: local
    to: api
    paths: [/direct/*]
    inject: {credential: token, as: bearer}
  - name: composed
    from: local
    to: api
    paths: [/composed/*]
    inject: {credential: composed, as: bearer}
  - name: api
    from: local
    to: api
    inject: {credential: nested, as: bearer}
default: deny
`

// TestKillSwitchCoversCredentialInputs is the class "a disabled
// credential is still used, through a credential made from it": a
// credential switch covers every decision that uses the credential, the
// one injected or one it is made from (recursively), on each path a
// switch is checked: a new request, a request in flight, a WebSocket.
func TestKillSwitchCoversCredentialInputs(t *testing.T) {
	const token = "admin-token-0123456789abcdef"
	t.Setenv("CREDGATE_GATEWAY_TEST_ADMIN", token)
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(composedPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n  \"tunnel.origin.test:443\": %q\nadmin:\n  token_env: CREDGATE_GATEWAY_TEST_ADMIN\n", tg.origin.addr, tg.origin.addr))
	c := tg.client(t, false)
	// uses: what each path's rule injects and what that is made from.
	paths := []struct {
		path string
		uses []string
	}{
		{"/direct/x", []string{"token"}},
		{"/composed/x", []string{"composed", "token"}},
		{"/nested/x", []string{"nested", "composed", "token"}},
	}
	covers := func(uses []string, name string) bool {
		for _, u := range uses {
			if u == name {
				return true
			}
		}
		return false
	}
	disable := func(t *testing.T, name string) {
		t.Helper()
		sw := fmt.Sprintf(`{"kind":"credential","name":%q,"reason":"test"}`, name)
		if st, _, body := adminCall(t, tg, "/admin/v1/disable", token, sw); st != 200 {
			t.Fatalf("disable: %d %v", st, body)
		}
		t.Cleanup(func() {
			if st, _, body := adminCall(t, tg, "/admin/v1/enable", token, sw); st != 200 {
				t.Errorf("enable: %d %v", st, body)
			}
		})
	}
	for _, name := range []string{"token", "composed", "nested", "unrelated"} {
		t.Run("request/"+name, func(t *testing.T) {
			disable(t, name)
			for _, p := range paths {
				resp, err := c.Get("https://" + apiHost + p.path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				refused := resp.StatusCode == http.StatusForbidden && resp.Header.Get(ReasonHeader) == codeDisabled
				if want := covers(p.uses, name); refused != want {
					t.Errorf("credential %q disabled: GET %s (injects %s) answered %s %s, want refused=%v",
						name, p.path, strings.Join(p.uses, " made from "), resp.Status, resp.Header.Get(ReasonHeader), want)
				}
			}
		})
	}
	// The streamed answer and the WebSocket are of the catch-all rule,
	// which injects nested, made from composed, made from token.
	t.Run("in_flight/token", func(t *testing.T) {
		resp, err := c.Get("https://" + apiHost + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		if first, err := br.ReadString('\n'); err != nil || first != "first\n" {
			t.Fatalf("first chunk %q, %v", first, err)
		}
		disable(t, "token")
		done := make(chan error, 1)
		go func() {
			_, err := br.ReadString('\n')
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Error("the streamed answer went on after a credential it was made from was disabled")
			}
		case <-time.After(10 * time.Second):
			t.Error("the streamed answer was not cut after a credential it was made from was disabled")
			if ack, err := tg.client(t, false).Get("https://" + apiHost + "/stream-ack"); err == nil {
				ack.Body.Close()
			}
		}
	})
	t.Run("websocket/token", func(t *testing.T) {
		lc := openLongClient(t, tg, kindWebSocket, "")
		if !lc.alive() {
			t.Fatal("the WebSocket does not work before the switch")
		}
		disable(t, "token")
		if !lc.closedByGateway(5 * time.Second) {
			t.Error("the WebSocket stayed open after a credential it was made from was disabled")
		}
	})
}
