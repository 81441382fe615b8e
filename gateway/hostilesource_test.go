package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestHostileCredentialEndpoint is what a client gets when the credential
// endpoint behind its rule is broken or hostile, through the whole
// gateway, for an OAuth2 token endpoint and a Vault server: a redirect to
// another host, endless and slow answers, an echo of the request, junk.
// Each request is answered 502 or 503 with a credential code within the
// fetch timeout plus a margin, audited with that code, never forwarded to
// the origin; no other host is contacted; and the client secret and Vault
// token sent to the endpoint appear in no response, log or audit line.
func TestHostileCredentialEndpoint(t *testing.T) {
	const clientSecret = "NO_LEAK_oauth2_client_secret_4711"
	const vaultToken = "hvs.NO_LEAK_vault_token_0815"
	t.Setenv("CREDGATE_GATEWAY_TEST_CLIENT_SECRET", clientSecret)
	t.Setenv("CREDGATE_GATEWAY_TEST_VAULT_TOKEN", vaultToken)

	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		elsewhere.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(other.Close)

	var mu sync.Mutex
	var serve http.HandlerFunc
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		h := serve
		mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(hostile.Close)

	echo := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			var dump strings.Builder
			_ = r.Header.Write(&dump)
			dump.Write(body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"error":"invalid_client","error_description":%q,"errors":[%q]}`, dump.String(), dump.String())
		}
	}
	endless := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"`)
		chunk := []byte(strings.Repeat("a", 32<<10))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
	slow := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"`)
		rc := http.NewResponseController(w)
		for {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := w.Write([]byte("a")); err != nil {
				return
			}
			_ = rc.Flush()
		}
	}
	cases := []struct {
		name  string
		serve http.HandlerFunc
	}{
		{"redirect-307", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
		}},
		{"redirect-302", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusFound)
		}},
		{"endless", endless},
		{"slow", slow},
		{"echo-400", echo(http.StatusBadRequest)},
		{"echo-500", echo(http.StatusInternalServerError)},
		{"echo-200", echo(http.StatusOK)},
		{"html-200", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, "<html>sign in</html>")
		}},
	}

	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(fmt.Sprintf(`
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
credentials:
  oauth:
    provider: oauth2
    token_url: %[1]s/token
    client_id: gateway
    client_secret: {credential: oauth-secret}
    retries: 0
  oauth-secret:
    provider: static
    env: CREDGATE_GATEWAY_TEST_CLIENT_SECRET
  vault:
    provider: vault
    server: {address: %[1]s, retries: 0, auth: {method: token, token_env: CREDGATE_GATEWAY_TEST_VAULT_TOKEN}}
    path: secret/data/stripe
    field: key
rules:
  - name: oauth
    from: local
    to: api
    paths: [/oauth/*]
    inject: {credential: oauth, as: bearer}
  - name: vault
    from: local
    to: api
    paths: [/vault/*]
    inject: {credential: vault, as: bearer}
default: deny
`, hostile.URL)))
	const fetchTimeout = 2 * time.Second
	tg.run(t, fmt.Sprintf("cache: {fetch_timeout: %s, error_backoff: 1ms}\nresolve:\n  \"api.origin.test:443\": %q\n", fetchTimeout, tg.origin.addr))
	t.Cleanup(func() {
		for where, s := range map[string]string{"audit": tg.audit.String(), "log": tg.logs.String()} {
			for _, secret := range []string{clientSecret, vaultToken} {
				if strings.Contains(s, secret) {
					t.Errorf("a secret sent to the credential endpoint appears in the %s output", where)
				}
			}
		}
	})
	c := tg.client(t, false)
	for _, tc := range cases {
		for _, cred := range []string{"oauth", "vault"} {
			t.Run(tc.name+"/"+cred, func(t *testing.T) {
				mu.Lock()
				serve = tc.serve
				mu.Unlock()
				elsewhere.Store(0)
				path := fmt.Sprintf("/%s/%s", cred, tc.name)
				start := time.Now()
				resp, err := c.Get("https://" + apiHost + path)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if took := time.Since(start); took > fetchTimeout+3*time.Second {
					t.Errorf("answered after %v, want within the fetch timeout (%v) and a margin", took.Round(time.Millisecond), fetchTimeout)
				}
				code := resp.Header.Get(ReasonHeader)
				if (resp.StatusCode != http.StatusBadGateway && resp.StatusCode != http.StatusServiceUnavailable) ||
					(code != codeCredentialError && code != codeCredentialUnavail) {
					t.Errorf("got %s %q, want 502 %s or 503 %s", resp.Status, code, codeCredentialError, codeCredentialUnavail)
				}
				for _, secret := range []string{clientSecret, vaultToken} {
					if strings.Contains(string(body), secret) {
						t.Errorf("the answer holds a secret sent to the credential endpoint: %s", body)
					}
				}
				for _, r := range tg.origin.all() {
					if strings.HasPrefix(r.Path, path) {
						t.Errorf("the origin got %s without its credential", r.Path)
					}
				}
				if n := elsewhere.Load(); n > 0 {
					t.Errorf("another host got %d request(s) through a redirect", n)
				}
				waitFor(t, 5*time.Second, "an audit line with the code", func() bool {
					for _, line := range strings.Split(tg.audit.String(), "\n") {
						if strings.Contains(line, `"path":"`+path+`"`) && strings.Contains(line, `"code":"`+code+`"`) {
							return true
						}
					}
					return false
				})
			})
		}
	}
}
