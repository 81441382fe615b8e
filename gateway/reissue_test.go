package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/credgate/credgate/providers"
)

func init() {
	providers.Register(providers.Module{Name: "gwtest-reissuable", New: func() providers.Provider { return new(reissuable) }})
}

// reissuable reads its token from an environment variable at every fetch
// and asks for a new one on 401, like an OAuth2 access token.
type reissuable struct {
	Env string `yaml:"env"`
}

func (p *reissuable) Fetch(context.Context, providers.Request) (*providers.Credential, error) {
	v := os.Getenv(p.Env)
	if v == "" {
		return nil, fmt.Errorf("gwtest-reissuable: %s unset: %w", p.Env, providers.ErrUnavailable)
	}
	return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(v)}}, nil
}

func (*reissuable) ReissueOnUnauthorized() bool { return true }

var _ providers.Reissuer = (*reissuable)(nil)

// TestUnauthorizedReissue: a 401 to a request that carried a cached
// credential drops it; a GET without a body is rebuilt with a new
// credential and sent once more; a POST with a body is never resent (its
// body was consumed); an upstream that rejects every token sees exactly
// two attempts per request.
func TestUnauthorizedReissue(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) { testUnauthorizedReissue(t, h2) })
	}
}

func testUnauthorizedReissue(t *testing.T, h2 bool) {
	tg := startGateway(t)
	c := tg.client(t, h2)
	secrets := []string{"reissue-one-" + tg.token, "reissue-two-" + tg.token, "reissue-three-" + tg.token}
	rotate := func(i int) {
		t.Setenv("CREDGATE_GATEWAY_TEST_REISSUABLE", secrets[i])
		tg.origin.mu.Lock()
		tg.origin.accept = secrets[i]
		tg.origin.mu.Unlock()
	}
	do := func(method, path, body string) int {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, "https://"+apiHost+path, rd)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	sent := func(path string) []string {
		var toks []string
		for _, s := range tg.origin.all() {
			if s.Path == path {
				toks = append(toks, strings.TrimPrefix(s.Header.Get("Authorization"), "Bearer "))
			}
		}
		return toks
	}

	rotate(0)
	if st := do("GET", "/auth/warm", ""); st != http.StatusOK {
		t.Fatalf("warm-up: status %d", st)
	}
	// The authorization server revoked the cached token.
	rotate(1)
	if st := do("GET", "/auth/get", ""); st != http.StatusOK {
		t.Errorf("GET with a revoked cached token: status %d, want 200 after one retry", st)
	}
	if got := sent("/auth/get"); len(got) != 2 || got[0] != secrets[0] || got[1] != secrets[1] {
		t.Errorf("origin saw %d attempts for /auth/get; want the old token, then the new one", len(got))
	}

	// Revoked again: a POST with a body gets the 401 and is not resent.
	rotate(2)
	if st := do("POST", "/auth/post", "payload"); st != http.StatusUnauthorized {
		t.Errorf("POST with a body: status %d, want the upstream's 401", st)
	}
	if got := sent("/auth/post"); len(got) != 1 {
		t.Errorf("origin saw %d POSTs; a request with a consumed body must never be resent", len(got))
	}
	// ...but the rejected token was dropped: the next request fetches.
	if st := do("GET", "/auth/after-post", ""); st != http.StatusOK {
		t.Errorf("GET after the POST's 401: status %d, want 200 with a new token", st)
	}
	if got := sent("/auth/after-post"); len(got) != 1 || got[0] != secrets[2] {
		t.Errorf("the GET after the POST was not sent once with the new token")
	}

	// The upstream rejects everything: one retry, then its 401 as it came.
	tg.origin.mu.Lock()
	tg.origin.accept = "nothing-matches"
	tg.origin.mu.Unlock()
	if st := do("GET", "/auth/rejected", ""); st != http.StatusUnauthorized {
		t.Errorf("rejected everywhere: status %d, want 401", st)
	}
	if got := sent("/auth/rejected"); len(got) != 2 {
		t.Errorf("origin saw %d attempts, want exactly 2 (one retry)", len(got))
	}
	// Each later request is still tried at most twice.
	if st := do("GET", "/auth/rejected-again", ""); st != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", st)
	}
	if got := sent("/auth/rejected-again"); len(got) != 2 {
		t.Errorf("origin saw %d attempts for the second rejected GET, want 2", len(got))
	}
	for _, s := range secrets {
		if strings.Contains(tg.audit.String(), s) || strings.Contains(tg.logs.String(), s) {
			t.Errorf("a token appears in the audit or log output")
		}
	}
}

// TestEveryInjectedCredentialScrubbable: every credential value the
// gateway sends an upstream is in the table of every held credential
// before it is sent, whichever way it was obtained — the first injection
// of a credential, and the new value a 401 had reissued mid-request —
// and whether or not the rule that sent it scrubs its own responses: an
// upstream that keeps the value may send it back through any scrubbing
// rule, on a stream already open too (TestStreamScrubsCredentialInjectedLater,
// TestWebSocketLongPayloadScrubsCredentialInjectedLater). Before, a value
// reissued under a rule with scrubbing off was never in the table.
func TestEveryInjectedCredentialScrubbable(t *testing.T) {
	for _, scrub := range []string{"", "\n    scrub: {enabled: false}"} {
		t.Run(fmt.Sprintf("scrub-off=%v", scrub != ""), func(t *testing.T) {
			pki := newTestPKI(t, apiHost)
			o := startOrigin(t, pki)
			tg := newTestGateway(t, pki, o)
			policy := strings.Replace(testPolicy, "inject: {credential: reissuable, as: bearer}", "inject: {credential: reissuable, as: bearer}"+scrub, 1)
			writeFile(t, tg.dir, "policy.yaml", []byte(policy))
			tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", o.addr))
			c := tg.client(t, false)
			scrubbable := func(v string) bool {
				b := []byte(v)
				for _, s := range tg.gw.scrubbers.current().appendTo(nil) {
					b, _ = s.Bytes(b)
				}
				return !strings.Contains(string(b), v)
			}
			for i, way := range []string{"first injection", "reissued after a 401"} {
				v := fmt.Sprintf("scrubbable-%d-%s", i, tg.token)
				t.Setenv("CREDGATE_GATEWAY_TEST_REISSUABLE", v)
				o.mu.Lock()
				o.accept = v
				o.mu.Unlock()
				resp, err := c.Get("https://" + apiHost + fmt.Sprintf("/auth/%d", i))
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: status %d", way, resp.StatusCode)
				}
				if !scrubbable(v) {
					t.Errorf("%s: the value sent is not in the table of every held credential", way)
				}
			}
		})
	}
}
