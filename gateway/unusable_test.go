package gateway

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/redistest"
)

// TestUnusableCredentialNotKept is the class of credentials a source
// returns that the gateway cannot use, over providers (static file,
// static fields, an OAuth2 token endpoint, a Vault KV read) × unusable
// values (CR LF, LF, NUL, too large, empty, a Basic user name with ':'
// or a line break, a bearer token beginning or ending with whitespace
// or holding a character that is not ASCII),
// with the credential cache in memory and with the
// Redis tier. Each case: the source returns the unusable value and the
// request is refused without reaching the origin; the source is fixed;
// the next request (after the cache's error backoff, 50ms) gets the good
// credential. A value the cache can tell is unusable (too large, empty,
// a control character in a user name) is never kept; one only the
// injector can tell (a line break in a bearer token, ':' in a Basic
// user name) is dropped from memory and Redis when the injector refuses
// it. Before, every case whose value reached the cache kept failing
// until the credential's TTL.
func TestUnusableCredentialNotKept(t *testing.T) {
	const good = "unusable-test-good-token-4711"
	var mu sync.Mutex
	values := map[string]string{} // by case, for the OAuth2 and Vault sources
	value := func(c string) string {
		mu.Lock()
		defer mu.Unlock()
		return values[c]
	}
	source := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if c, ok := strings.CutPrefix(r.URL.Path, "/token/"); ok {
			_ = json.NewEncoder(w).Encode(map[string]any{"access_token": value(c), "token_type": "Bearer", "expires_in": 3600})
			return
		}
		if r.URL.Path == "/v1/auth/token/lookup-self" {
			_, _ = io.WriteString(w, `{"data":{"ttl":3600,"renewable":false,"creation_ttl":3600}}`)
			return
		}
		if c, ok := strings.CutPrefix(r.URL.Path, "/v1/secret/data/"); ok {
			_ = json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"data": map[string]any{"key": value(c)}, "metadata": map[string]any{"version": 1}}})
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(source.Close)
	t.Setenv("CREDGATE_GATEWAY_TEST_CLIENT_SECRET", "unusable-client-secret")
	t.Setenv("CREDGATE_GATEWAY_TEST_VAULT_TOKEN", "hvs.unusable-vault-token")
	redisSrv := redistest.Start(t)
	testRedisKeyEnv(t)

	// A provider's credential for case c: its policy entry, how to make
	// its source return v (for basic: as the user name), its injector.
	type provider struct {
		name   string
		policy func(dir, c string) string
		set    func(dir, c, v string)
		as     string
		wire   string // Authorization with the good value
	}
	setSource := func(_, c, v string) {
		mu.Lock()
		values[c] = v
		mu.Unlock()
	}
	providers := []provider{
		{"static-file", func(dir, c string) string {
			return fmt.Sprintf("{provider: static, file: %q}", filepath.Join(dir, c))
		}, func(dir, c, v string) { writeFile(t, dir, c, []byte(v)) }, "bearer", "Bearer " + good},
		{"static-basic", func(dir, c string) string {
			return fmt.Sprintf("{provider: static, fields: {username: {file: %q}, password: {file: %q}}}", filepath.Join(dir, c), filepath.Join(dir, "pw"))
		}, func(dir, c, v string) { writeFile(t, dir, c, []byte(v)) }, "basic", "Basic " + base64.StdEncoding.EncodeToString([]byte(good+":pw"))},
		{"oauth2", func(_, c string) string {
			return fmt.Sprintf("{provider: oauth2, token_url: %q, client_id: gateway, client_secret: {credential: oauth-secret}, retries: 0}", source.URL+"/token/"+c)
		}, setSource, "bearer", "Bearer " + good},
		{"vault", func(_, c string) string {
			return fmt.Sprintf("{provider: vault, server: {address: %q, retries: 0, auth: {method: token, token_env: CREDGATE_GATEWAY_TEST_VAULT_TOKEN}}, path: secret/data/%s, field: key}", source.URL, c)
		}, setSource, "bearer", "Bearer " + good},
	}
	large := strings.Repeat("a", 100<<10)
	unusable := []struct {
		name, v string
		only    string // the one provider the value is unusable for, or ""
		skip    string // a provider the value is usable for, or ""
	}{
		{"crlf", good + "\r\nX-Injected: 1", "", ""},
		{"lf", good + "\nx", "", ""},
		{"nul", good + "\x00x", "", ""},
		{"too-large", large, "", ""},
		{"empty", "", "", ""},
		{"colon", "us:er", "static-basic", ""},
		// HTTP drops whitespace around a header value: the origin
		// would get another value than the one the scrubber knows.
		// Basic carries it intact (base64).
		{"trailing-space", good + " ", "", "static-basic"},
		{"leading-tab", "\t" + good, "", "static-basic"},
		// A server reads a byte that is not ASCII as ISO-8859-1.
		{"not-ascii", good + "é", "", "static-basic"},
	}
	type tcase struct {
		name string
		p    provider
		v    string
	}
	var cases []tcase
	for _, p := range providers {
		for _, u := range unusable {
			if (u.only == "" || u.only == p.name) && u.skip != p.name {
				cases = append(cases, tcase{p.name + "-" + u.name, p, u.v})
			}
		}
	}

	failed := 0
	for _, tier := range []string{"memory", "redis"} {
		t.Run(tier, func(t *testing.T) {
			pki := newTestPKI(t, apiHost)
			o := startOrigin(t, pki)
			tg := newTestGateway(t, pki, o)
			writeFile(t, tg.dir, "pw", []byte("pw"))
			var pol strings.Builder
			pol.WriteString("workloads:\n  local: {cidrs: [127.0.0.1/32]}\ndestinations:\n  api: {hosts: [api.origin.test], allow_private: true}\ncredentials:\n")
			pol.WriteString("  oauth-secret: {provider: static, env: CREDGATE_GATEWAY_TEST_CLIENT_SECRET}\n")
			for _, tc := range cases {
				fmt.Fprintf(&pol, "  %s: %s\n", tc.name, tc.p.policy(tg.dir, tier+"-"+tc.name))
			}
			pol.WriteString("rules:\n")
			for _, tc := range cases {
				fmt.Fprintf(&pol, "  - {name: %[1]s, from: local, to: api, paths: [/%[1]s/*], inject: {credential: %[1]s, as: %[2]s}}\n", tc.name, tc.p.as)
			}
			pol.WriteString("default: deny\n")
			writeFile(t, tg.dir, "policy.yaml", []byte(pol.String()))
			cache := "cache: {error_backoff: 50ms}\n"
			if tier == "redis" {
				cache = fmt.Sprintf("cache:\n  error_backoff: 50ms\n  redis: {addrs: [%q], namespace: u, encryption_keys: [{id: k1, env: CREDGATE_TEST_REDIS_KEY}]}\n", redisSrv.Addr())
			}
			tg.run(t, cache+fmt.Sprintf("resolve: {%q: %q}\n", apiHost+":443", o.addr))
			t.Cleanup(func() {
				for where, s := range map[string]string{"audit": tg.audit.String(), "log": tg.logs.String()} {
					if strings.Contains(s, "X-Injected") || strings.Contains(s, large[:1024]) {
						t.Errorf("an unusable value appears in the %s output", where)
					}
				}
			})
			c := tg.client(t, false)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					send := func(what string) *http.Response {
						t.Helper()
						path := "/" + tc.name + "/" + what
						resp, body := do(t, c, "GET", "https://"+apiHost+path, nil, nil)
						if strings.Contains(body, "X-Injected") {
							t.Errorf("the answer carries the unusable value")
						}
						for _, s := range o.all() {
							switch {
							case s.Path != path:
							case resp.StatusCode != http.StatusOK:
								t.Errorf("the origin got %s though it was refused", path)
							case s.Header.Get("X-Injected") != "":
								t.Errorf("the origin got a header split from the credential")
							case s.Header.Get("Authorization") != tc.p.wire:
								t.Errorf("the origin got Authorization %q, want the good credential", s.Header.Get("Authorization"))
							}
						}
						return resp
					}
					tc.p.set(tg.dir, tier+"-"+tc.name, tc.v)
					if resp := send("bad"); resp.StatusCode == http.StatusOK {
						t.Fatalf("the unusable value was sent: %s", resp.Status)
					}
					tc.p.set(tg.dir, tier+"-"+tc.name, good)
					// The next request after the error backoff (50ms) must
					// get the good credential: within the backoff it is
					// refused as the failed fetch was, without asking the
					// source; still refused far later (3s; the TTL is 5m)
					// means the unusable value was kept.
					deadline := time.Now().Add(3 * time.Second)
					for {
						resp := send("fixed")
						if resp.StatusCode == http.StatusOK {
							break
						}
						if time.Now().After(deadline) {
							failed++
							t.Errorf("after the source was fixed: %s %s, want 200 with the new credential after the error backoff", resp.Status, resp.Header.Get(ReasonHeader))
							break
						}
						<-time.After(10 * time.Millisecond) // poll until the backoff has passed
					}
				})
			}
		})
	}
	t.Logf("%d of %d cases failed after the source was fixed", failed, 2*len(cases))
}
