package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/providers"
)

// attestToken is the client's Proxy-Authorization token that the
// gwtest-attest verifier accepts: the client's own secret. badToken is
// one it refuses, quoting it in its error.
const (
	attestToken = "attest-CLIENT-TOKEN-0123456789abcdef"
	badToken    = "attest-BAD-CLIENT-TOKEN-0123456789"
)

// hungFetches is released when the test that hangs fetches ends.
var hungFetches = struct {
	mu sync.Mutex
	ch chan struct{}
}{ch: make(chan struct{})}

func init() {
	providers.Register(providers.Module{Name: "gwtest-misfetch", New: func() providers.Provider { return new(misfetch) }})
	identity.Register(identity.Module{Name: "gwtest-attest", New: func() identity.Verifier { return attestVerifier{} }})
}

// attestVerifier verifies "Bearer attest-..." in Proxy-Authorization and
// keeps the token on its factor, as the jwt verifier does, for providers
// that present the caller's token onward.
type attestVerifier struct{}

func (attestVerifier) Kind() string             { return "gwtest-attest" }
func (attestVerifier) ReadsProxyAuthorization() {}
func (attestVerifier) Verify(_ context.Context, ev identity.Evidence) (*identity.Factor, error) {
	tok, ok := strings.CutPrefix(ev.ProxyAuthorization, "Bearer ")
	if !ok || !strings.HasPrefix(tok, "attest-") {
		return nil, nil
	}
	if strings.HasPrefix(tok, "attest-BAD") {
		// A verifier that quotes what it refused.
		return nil, fmt.Errorf("gwtest-attest: token %s (Proxy-Authorization %q) did not verify: %w", tok, ev.ProxyAuthorization, identity.ErrInvalid)
	}
	return &identity.Factor{Kind: "gwtest-attest", Subject: "attested", Token: identity.NewToken(tok)}, nil
}

// misfetch is a provider that misbehaves as its `do` setting says.
type misfetch struct {
	Do string `yaml:"do"`
}

func (m *misfetch) Fetch(_ context.Context, req providers.Request) (*providers.Credential, error) {
	var tok string
	for _, f := range req.Workload.Factors {
		if f.Kind == "gwtest-attest" {
			tok = f.Token.Reveal()
		}
	}
	switch m.Do {
	case "hang": // ignores its context
		hungFetches.mu.Lock()
		ch := hungFetches.ch
		hungFetches.mu.Unlock()
		<-ch
		return nil, fmt.Errorf("released")
	case "nil":
		return nil, nil
	case "empty":
		return &providers.Credential{}, nil
	case "empty-field":
		return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret("")}}, nil
	case "echo-token":
		return nil, fmt.Errorf("misfetch: the exchange of subject_token=%s (Basic %s) failed: %w", tok, tok, providers.ErrUnavailable)
	case "echo-token-error":
		return nil, fmt.Errorf("misfetch: token %q refused", url.QueryEscape(tok))
	case "panic":
		panic("subject token " + tok)
	}
	return nil, fmt.Errorf("misfetch: unknown do %q", m.Do)
}

// TestMisbehavingProviderContained checks, through the gateway, the class
// "whatever a provider plugin does, the request fails closed, in bounded
// time, audited, and the caller's secrets stay out of the log": a Fetch
// that ignores its context and never returns (while the other
// credentials are served), one returning (nil, nil), a credential with no
// value or an empty one, an error quoting the caller's verified token
// (the client's Proxy-Authorization, which providers may present onward),
// a panic with it. Each is answered 502 or 503 with its code, audited,
// and nothing reaches the origin; the log and audit output never hold the
// client's token, nor the one a verifier refused quoting it (403
// identity_invalid). Before, the hung fetch held every request for its
// credential until the client gave up (20 s here, unaudited), and the
// provider's and the verifier's errors put the token in the log (4 of 8
// cases failed).
func TestMisbehavingProviderContained(t *testing.T) {
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	cases := []struct {
		do     string
		status int
		code   string
	}{
		{"hang", http.StatusServiceUnavailable, codeCredentialUnavail},
		{"nil", http.StatusBadGateway, codeCredentialError},
		{"empty", http.StatusServiceUnavailable, codeCredentialUnavail},
		{"empty-field", http.StatusServiceUnavailable, codeCredentialUnavail},
		{"echo-token", http.StatusServiceUnavailable, codeCredentialUnavail},
		{"echo-token-error", http.StatusBadGateway, codeCredentialError},
		{"panic", http.StatusBadGateway, codeCredentialError},
	}
	var creds, rules strings.Builder
	for _, c := range cases {
		fmt.Fprintf(&creds, "  mis-%s:\n    provider: gwtest-misfetch\n    do: %s\n", c.do, c.do)
		fmt.Fprintf(&rules, "  - name: mis-%s\n    from: local\n    to: api\n    paths: [/mis/%s/*]\n    inject: {credential: mis-%s, as: bearer}\n", c.do, c.do, c.do)
	}
	pol := strings.Replace(testPolicy, "credentials:\n", "credentials:\n"+creds.String(), 1)
	pol = strings.Replace(pol, "rules:\n", "rules:\n"+rules.String(), 1)
	writeFile(t, tg.dir, "policy.yaml", []byte(pol))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n  \"tunnel.origin.test:443\": %q\ncache: {fetch_timeout: 200ms}\nidentity:\n  verifiers:\n    gwtest-attest: {}\n",
		tg.origin.addr, tg.origin.addr))
	t.Cleanup(func() {
		hungFetches.mu.Lock()
		close(hungFetches.ch)
		hungFetches.ch = make(chan struct{})
		hungFetches.mu.Unlock()
	})

	client := func() *http.Client {
		c := tg.client(t, false)
		tr := c.Transport.(*http.Transport)
		tr.ProxyConnectHeader = http.Header{"Proxy-Authorization": {"Bearer " + attestToken}}
		c.Timeout = 20 * time.Second
		return c
	}
	get := func(path string) (int, string, time.Duration) {
		start := time.Now()
		resp, err := client().Get("https://" + apiHost + path)
		if err != nil {
			t.Errorf("GET %s: %v", path, err)
			return 0, "", time.Since(start)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b), time.Since(start)
	}
	for _, c := range cases {
		t.Run(c.do, func(t *testing.T) {
			path := "/mis/" + c.do + "/x"
			var wg sync.WaitGroup
			if c.do == "hang" {
				// Another credential is served while this one hangs.
				wg.Go(func() {
					if status, body, _ := get("/plain"); status != http.StatusOK {
						t.Errorf("another credential while a fetch hangs: %d %s", status, body)
					}
				})
			}
			status, body, took := get(path)
			wg.Wait()
			if status != c.status || !strings.Contains(body, c.code) {
				t.Errorf("got %d %q, want %d %s", status, body, c.status, c.code)
			}
			if bound := 200*time.Millisecond + providers.AbandonAfter + 3*time.Second; took > bound {
				t.Errorf("answered after %s, want within %s", took, bound)
			}
			if strings.Contains(body, attestToken) {
				t.Errorf("the client's error body holds its token: %s", body)
			}
			wantAudited(t, tg, path, c.status, c.code)
			for _, s := range tg.origin.all() {
				if strings.HasPrefix(s.Path, "/mis/") {
					t.Errorf("the origin received %s %s", s.Method, s.URI)
				}
			}
		})
	}
	t.Run("verifier-quotes-token", func(t *testing.T) {
		c := client()
		c.Transport.(*http.Transport).ProxyConnectHeader = http.Header{"Proxy-Authorization": {"Bearer " + badToken}}
		_, err := c.Get("https://" + apiHost + "/plain")
		if err == nil || !strings.Contains(err.Error(), "403") && !strings.Contains(err.Error(), "Forbidden") {
			t.Errorf("GET with a token the verifier refuses: %v, want the CONNECT refused 403", err)
		}
		waitFor(t, 5*time.Second, "the identity refusal's log line", func() bool {
			return strings.Contains(tg.logs.String(), "identity did not verify")
		})
	})
	waitFor(t, 5*time.Second, "the fetch failures' log lines", func() bool {
		return strings.Count(tg.logs.String(), "credential fetch failed") >= len(cases)
	})
	if testing.Verbose() {
		t.Log(tg.logs.String())
	}
	for where, s := range map[string]string{"log": tg.logs.String(), "audit": tg.audit.String()} {
		for _, form := range []string{attestToken, url.QueryEscape(attestToken), "CLIENT-TOKEN", badToken} {
			if strings.Contains(s, form) {
				t.Errorf("the %s holds the client's token (%q):\n%s", where, form, s)
				break
			}
		}
	}
}
