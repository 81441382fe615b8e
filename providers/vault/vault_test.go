package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/providers"
)

func TestRegistered(t *testing.T) {
	for _, name := range []string{"vault", "vault-pki"} {
		if _, ok := providers.Lookup(name); !ok {
			t.Errorf("provider %q is not registered", name)
		}
	}
}

// TestSettings checks that bad settings are refused at load time with a
// message saying what to change, and that loading contacts nothing (the
// address is a closed port and there is no token).
func TestSettings(t *testing.T) {
	const srv = "server: {address: http://127.0.0.1:1, auth: {method: token}}\n"
	tests := []struct {
		name, settings, wantErr string
	}{
		{"kv ok", srv + "path: secret/data/stripe\nfield: key", ""},
		{"templated ok", srv + "path: database/creds/{{.workload.name}}-ro", ""},
		{"pinned version", srv + "path: secret/data/stripe\nversion: 3\nttl: 1m", ""},
		{"no path", srv, "path is not set"},
		{"v1 prefix", srv + "path: /v1/secret/data/x", "leave out the /v1/ prefix"},
		{"dotdot path", srv + "path: secret/data/../sys", "must not contain . or .. segments"},
		{"version not kv2", srv + "path: database/creds/ro\nversion: 2", "version applies only to KV v2 paths"},
		{"ttl too small", srv + "path: secret/data/x\nttl: 500ms", "ttl 500ms must be at least 1s"},
		{"ttl number", srv + "path: secret/data/x\nttl: 5", "ttl: want a duration such as 10s or 5m, got a whole number; add a unit, such as 30s"},
		{"unknown key", srv + "path: secret/data/x\nfeild: key", `unknown field "feild"`},
		{"unknown server key", "server: {address: https://x, adress: y, auth: {method: token}}\npath: a/b", `unknown field "adress"`},
		{"bad template", srv + "path: db/creds/{{.workload.name | printf}}", "only {{.workload.NAME}} placeholders"},
		{"no auth", "server: {address: http://127.0.0.1:1}\npath: a/b", "server.auth.method is not set"},
		{"bad method", "server: {address: http://127.0.0.1:1, auth: {method: ldap}}\npath: a/b", `method "ldap" is not known`},
		{"bad address", "server: {address: 'vault:8200', auth: {method: token}}\npath: a/b", "must be an http:// or https:// URL"},
		{"approle no secret", "server: {address: https://x, auth: {method: approle, role_id: r}}\npath: a/b", "needs secret_id_file"},
		{"approle two role ids", "server: {address: https://x, auth: {method: approle, role_id: r, role_id_file: f, secret_id_file: s}}\npath: a/b", "exactly one of role_id and role_id_file"},
		{"kubernetes no role", "server: {address: https://x, auth: {method: kubernetes}}\npath: a/b", "kubernetes needs role"},
		{"jwt with secret id", "server: {address: https://x, auth: {method: jwt, role: r, secret_id_file: f}}\npath: a/b", "secret_id_file does not apply to method jwt"},
		{"token both", "server: {address: https://x, auth: {method: token, token_env: A, token_file: b}}\npath: a/b", "only one of token_file and token_env"},
		{"retries", "server: {address: https://x, retries: 50, auth: {method: token}}\npath: a/b", "between 0 and 10"},
		{"renew increment ok", "server: {address: https://x, auth: {method: token, renew_increment: 1h}}\npath: a/b", ""},
		{"renew increment too small", "server: {address: https://x, auth: {method: approle, role_id: r, secret_id_file: s, renew_increment: 10ms}}\npath: a/b", "renew_increment 10ms must be at least 1s"},
		{"plain http address", "server: {address: 'http://vault.internal:8200', auth: {method: token}}\npath: a/b", `server.address "http://vault.internal:8200" uses plain http to a host that is not loopback; use https`},
		{"plain http loopback", "server: {address: 'http://[::1]:8200', auth: {method: token}}\npath: a/b", ""},
		{"pki ok", srv + "role: client\ncommon_name: '{{.workload.name}}.example.com'", ""},
		{"pki no role", srv + "common_name: x", "role is not set"},
		{"pki no cn", srv + "role: r", "common_name is not set"},
		{"pki comma", srv + "role: r\ncommon_name: x\nalt_names: ['a,b']", "must not contain a comma"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "vault"
			if strings.HasPrefix(tt.name, "pki") {
				name = "vault-pki"
			}
			p, err := (*env)(nil).tryLoad(t, name, tt.settings)
			if p != nil {
				defer p.(providers.CleanerUpper).Cleanup()
			}
			got := errString(err)
			if (tt.wantErr == "") != (got == "") || !strings.Contains(got, tt.wantErr) {
				t.Errorf("Load error = %q, want one containing %q", got, tt.wantErr)
			}
		})
	}
}

// TestPlainHTTPVaultAddr: an address taken from VAULT_ADDR is held to
// the same rule as server.address, and the error says where it came from.
func TestPlainHTTPVaultAddr(t *testing.T) {
	t.Setenv("VAULT_ADDR", "http://vault.internal:8200")
	_, err := (*env)(nil).tryLoad(t, "vault", "server: {auth: {method: token}}\npath: a/b")
	if got := errString(err); !strings.Contains(got, "VAULT_ADDR") || !strings.Contains(got, "use https") {
		t.Errorf("Load error = %q, want one naming VAULT_ADDR and saying use https", got)
	}
}

func TestKVRead(t *testing.T) {
	e := newEnv(t, envOpts{})
	mount := e.kv(t)
	e.putKV(t, mount, "stripe", map[string]any{"secret_key": "sk_live_kv_value", "publishable_key": "pk_live_value"})
	base := e.serverYAML(tokenAuth)
	tests := []struct {
		name     string
		settings string
		want     map[string]string
		wantErr  string
	}{
		{"field", "path: " + mount + "/data/stripe\nfield: secret_key", map[string]string{"token": "sk_live_kv_value"}, ""},
		{"all fields", "path: " + mount + "/data/stripe", map[string]string{"secret_key": "sk_live_kv_value", "publishable_key": "pk_live_value"}, ""},
		{"missing field", "path: " + mount + "/data/stripe\nfield: nope", nil, `the secret has no field "nope" (it has: publishable_key, secret_key)`},
		{"missing secret", "path: " + mount + "/data/absent", nil, "vault: read " + mount + "/data/absent: no secret at this path"},
		{"missing version", "path: " + mount + "/data/stripe\nversion: 7", nil, "version 7: no secret at this path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := e.load(t, "vault", base+tt.settings)
			cred, err := fetch(t, p, identity.Workload{})
			if tt.wantErr != "" {
				if !strings.Contains(errString(err), tt.wantErr) {
					t.Fatalf("Fetch error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if diff := cmp.Diff(tt.want, reveal(cred)); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
		})
	}
}

// TestKVVersionPickedUp runs the provider behind the real credential
// cache: a new KV version is served once the configured ttl has passed,
// not before; a pinned version stays.
func TestKVVersionPickedUp(t *testing.T) {
	e := newEnv(t, envOpts{fakeClock: true})
	mount := e.kv(t)
	e.putKV(t, mount, "openai", map[string]any{"key": "sk-v1"})
	latest := e.load(t, "vault", e.serverYAML(tokenAuth)+"path: "+mount+"/data/openai\nfield: key\nttl: 1m")
	pinned := e.load(t, "vault", e.serverYAML(tokenAuth)+"path: "+mount+"/data/openai\nfield: key\nversion: 1\nttl: 1m")
	cache := providers.NewCache(providers.CacheOptions{Now: e.clock.Now, RefreshAhead: -1})
	defer cache.Close()
	get := func(p providers.Provider, name string) string {
		t.Helper()
		cred, _, err := cache.Get(context.Background(), providers.CacheKey{Credential: name}, func(ctx context.Context) (*providers.Credential, error) {
			return p.Fetch(ctx, providers.Request{Credential: name})
		})
		if err != nil {
			t.Fatalf("Get %s: %v", name, err)
		}
		s, _ := cred.Field(providers.FieldToken)
		return s.Reveal()
	}
	var got []string
	got = append(got, get(latest, "latest"), get(pinned, "pinned"))
	e.putKV(t, mount, "openai", map[string]any{"key": "sk-v2"})
	e.clock.Advance(30 * time.Second)
	got = append(got, get(latest, "latest"), get(pinned, "pinned"))
	e.clock.Advance(31 * time.Second)
	got = append(got, get(latest, "latest"), get(pinned, "pinned"))
	want := []string{"sk-v1", "sk-v1", "sk-v1", "sk-v1", "sk-v2", "sk-v1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("values at 0s, 30s, 61s for latest and pinned (-want +got):\n%s", diff)
	}
}

func TestAppRoleWrappedSecretID(t *testing.T) {
	e := newEnv(t, envOpts{})
	kv := e.kv(t)
	e.putKV(t, kv, "github", map[string]any{"token": "ghp_approle_value"})
	mount, roleID, wrapped := e.appRole(t, "1h", "24h")
	wt := wrapped()
	secretFile := writeFile(t, "secret-id", wt+"\n")
	auth := fmt.Sprintf("{method: approle, mount: %s, role_id: %s, secret_id_file: %s}", mount, roleID, secretFile)
	p := e.load(t, "vault", e.serverYAML(auth)+"path: "+kv+"/data/github\nfield: token")
	if got := reveal(mustFetch(t, p, identity.Workload{})); got["token"] != "ghp_approle_value" {
		t.Fatalf("token = %q", got["token"])
	}
	// Logging in again (after the token is dropped) reuses the unwrapped
	// secret_id: the wrapping token is single-use.
	p.(*Provider).client.invalidate(p.(*Provider).client.tok, errTokenRevoked)
	mustFetch(t, p, identity.Workload{})
	if e.emu != nil {
		if got := []int{e.emu.Count("unwrap"), e.emu.Count("login approle")}; !cmp.Equal(got, []int{1, 2}) {
			t.Errorf("unwraps, logins = %v, want [1 2]", got)
		}
	}

	t.Run("used wrapping token", func(t *testing.T) {
		q := e.load(t, "vault", e.serverYAML(auth)+"path: "+kv+"/data/github\nfield: token")
		_, err := fetch(t, q, identity.Workload{})
		if !strings.Contains(errString(err), "already unwrapped or has expired") {
			t.Fatalf("Fetch error = %v, want the wrapping token reported as used", err)
		}
		if strings.Contains(err.Error(), wt) {
			t.Fatalf("error contains the wrapping token: %v", err)
		}
	})
	t.Run("wrapping token of another path", func(t *testing.T) {
		w, _ := e.admin.Clone()
		w.SetToken(e.root)
		w.SetWrappingLookupFunc(func(string, string) string { return "5m" })
		s, err := w.Logical().ReadWithContext(context.Background(), kv+"/data/github")
		if err != nil || s == nil || s.WrapInfo == nil {
			t.Fatalf("setup: wrapped read: %v", err)
		}
		f := writeFile(t, "secret-id", s.WrapInfo.Token)
		q := e.load(t, "vault", e.serverYAML(fmt.Sprintf("{method: approle, mount: %s, role_id: %s, secret_id_file: %s}", mount, roleID, f))+"path: "+kv+"/data/github")
		_, err = fetch(t, q, identity.Workload{})
		if !strings.Contains(errString(err), "refusing to unwrap it") {
			t.Fatalf("Fetch error = %v, want a refused wrapping token", err)
		}
	})
}

func TestJWTAuth(t *testing.T) {
	e := newEnv(t, envOpts{})
	kv := e.kv(t)
	e.putKV(t, kv, "partner", map[string]any{"api_key": "partner_jwt_value"})
	mount, sign := e.jwtAuth(t)
	now := time.Now()
	tests := []struct {
		name    string
		claims  map[string]any
		wantErr string
	}{
		{"valid", map[string]any{"sub": "system:serviceaccount:egress:credgate", "aud": "vault", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}, ""},
		{"wrong audience", map[string]any{"sub": "system:serviceaccount:egress:credgate", "aud": "other", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}, "jwt login at auth/" + mount + "/login: error validating token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jwt := sign(tt.claims)
			f := writeFile(t, "token", jwt)
			p := e.load(t, "vault", e.serverYAML(fmt.Sprintf("{method: jwt, mount: %s, role: credgate, token_file: %s}", mount, f))+"path: "+kv+"/data/partner\nfield: api_key")
			cred, err := fetch(t, p, identity.Workload{})
			if tt.wantErr != "" {
				if !strings.Contains(errString(err), tt.wantErr) || strings.Contains(err.Error(), jwt) {
					t.Fatalf("Fetch error = %v, want %q and no JWT", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if got := reveal(cred)["token"]; got != "partner_jwt_value" {
				t.Errorf("token = %q", got)
			}
		})
	}
}

// TestKubernetesAuth needs a Kubernetes TokenReview API behind a real
// server, so it runs on the emulator only.
func TestKubernetesAuth(t *testing.T) {
	e := newEnv(t, envOpts{emulatorOnly: true})
	kv := e.kv(t)
	e.putKV(t, kv, "s3", map[string]any{"key": "k8s_value"})
	mount := e.enableAuth(t, "kubernetes")
	e.write(t, "auth/"+mount+"/config", map[string]any{"kubernetes_host": "https://kubernetes.default.svc"})
	e.write(t, "auth/"+mount+"/role/credgate", map[string]any{"bound_service_account_names": []string{"credgate"},
		"bound_service_account_namespaces": []string{"egress"}, "token_ttl": "1h"})
	e.emu.AddServiceAccountToken("sa-token-egress-credgate", "egress", "credgate")
	e.emu.AddServiceAccountToken("sa-token-default-other", "default", "other")
	tests := []struct {
		name, token, wantErr string
	}{
		{"bound service account", "sa-token-egress-credgate", ""},
		{"other service account", "sa-token-default-other", "service account name not authorized (HTTP 403)"},
		{"unknown token", "not-a-token", "permission denied (HTTP 403)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := writeFile(t, "token", tt.token)
			p := e.load(t, "vault", e.serverYAML(fmt.Sprintf("{method: kubernetes, mount: %s, role: credgate, token_file: %s}", mount, f))+"path: "+kv+"/data/s3\nfield: key")
			cred, err := fetch(t, p, identity.Workload{})
			if tt.wantErr != "" {
				if !strings.Contains(errString(err), tt.wantErr) || strings.Contains(err.Error(), tt.token) || errors.Is(err, providers.ErrUnavailable) {
					t.Fatalf("Fetch error = %v, want %q (not unavailable, no token)", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if got := reveal(cred)["token"]; got != "k8s_value" {
				t.Errorf("token = %q", got)
			}
		})
	}
	t.Run("token file missing", func(t *testing.T) {
		p := e.load(t, "vault", e.serverYAML(fmt.Sprintf("{method: kubernetes, mount: %s, role: credgate, token_file: /nonexistent/token}", mount))+"path: "+kv+"/data/s3")
		_, err := fetch(t, p, identity.Workload{})
		if !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), "token_file /nonexistent/token does not exist") {
			t.Fatalf("Fetch error = %v, want unavailable naming the file", err)
		}
	})
}

func TestNamespace(t *testing.T) {
	e := newEnv(t, envOpts{emulatorOnly: true, namespace: "team-a"})
	kv := e.kv(t)
	e.putKV(t, kv, "x", map[string]any{"v": "ns_value"})
	for _, tt := range []struct {
		ns, wantErr string
	}{
		{"team-a", ""},
		{"team-b", "Vault rejected the configured token"},
	} {
		t.Run(tt.ns, func(t *testing.T) {
			s := fmt.Sprintf("server:\n  address: %s\n  namespace: %s\n  retry_backoff: 1ms\n  auth: %s\npath: %s/data/x\nfield: v", e.addr, tt.ns, tokenAuth, kv)
			cred, err := fetch(t, e.load(t, "vault", s), identity.Workload{})
			if tt.wantErr != "" {
				if !strings.Contains(errString(err), tt.wantErr) {
					t.Fatalf("Fetch error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || reveal(cred)["token"] != "ns_value" {
				t.Fatalf("Fetch = %v, %v", cred, err)
			}
		})
	}
}

// TestErrorsAreOneLine: whatever Vault (or something in front of it)
// answers, the error is one line naming the operation, the path, Vault's
// messages and the status — never the multi-line text of the api
// package's ResponseError ("URL: ...\nCode: ...\nErrors:\n* ...").
func TestErrorsAreOneLine(t *testing.T) {
	e := newEnv(t, envOpts{})
	kv := e.kv(t)
	e.putKV(t, kv, "denied", map[string]any{"v": "value"})
	// A token whose policies do not allow the path: a real server answers
	// 403 with go-multierror's "1 error occurred:\n\t* permission denied".
	weak := e.write(t, "auth/token/create", map[string]any{"policies": []string{"default"}, "ttl": "1h"})
	t.Setenv("CREDGATE_VAULT_TEST_WEAK_TOKEN", weak.Auth.ClientToken)
	weakAuth := "{method: token, token_env: CREDGATE_VAULT_TEST_WEAK_TOKEN}"
	if e.emu != nil {
		e.emu.Deny(kv + "/data/denied") // the emulator enforces no policies
	}

	// A server answering one fixed error to everything but lookup-self,
	// for answers the emulator does not give.
	fixed := func(status int, contentType, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/auth/token/lookup-self" {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, `{"data":{"ttl":0,"creation_ttl":0,"renewable":false}}`)
				return
			}
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		}))
		t.Cleanup(srv.Close)
		return fmt.Sprintf("server: {address: %s, retries: 0, auth: %s}\n", srv.URL, tokenAuth)
	}
	tests := []struct {
		name     string
		settings string
		want     string
	}{
		{"permission denied", e.serverYAML(weakAuth) + "path: " + kv + "/data/denied",
			"vault: read " + kv + "/data/denied: permission denied (HTTP 403)"},
		{"bad request", "emulator", // needs a database engine
			"/creds/nope: unknown role: nope (HTTP 400)"},
		{"several messages", fixed(400, "application/json", `{"errors":["first problem","second problem"]}`) + "path: a/b",
			"vault: read a/b: first problem; second problem (HTTP 400)"},
		{"go-multierror list", fixed(500, "application/json", `{"errors":["2 errors occurred:\n\t* backend down\n\t* storage\n   sealed\n\n"]}`) + "path: a/b",
			"vault: read a/b: backend down; storage sealed (HTTP 500) after 1 attempts"},
		{"message with line breaks", fixed(400, "application/json", `{"errors":["first line\n\tsecond line\n"]}`) + "path: a/b",
			"vault: read a/b: first line second line (HTTP 400)"},
		{"not JSON", fixed(502, "text/html", "<html>\n<body>Bad Gateway</body>\n</html>") + "path: a/b",
			"vault: read a/b: non-JSON answer: <html> <body>Bad Gateway</body> </html> (HTTP 502) after 1 attempts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.settings == "emulator" {
				if e.emu == nil {
					t.Skip("needs the emulator's database engine")
				}
				tt.settings = e.serverYAML(tokenAuth) + "path: " + e.mount(t, "database", nil) + "/creds/nope"
			}
			p := e.load(t, "vault", tt.settings)
			_, err := fetch(t, p, identity.Workload{})
			got := errString(err)
			if strings.ContainsAny(got, "\n\r\t") || strings.Contains(got, "URL:") || strings.Contains(got, "Code:") {
				t.Errorf("error is not one line:\n%s", got)
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("error = %q, want %q", got, tt.want)
			}
		})
	}
}
