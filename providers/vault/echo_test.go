package vault

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/credgate/credgate/identity"
)

// echoVault answers like a Vault that quotes what it was sent in its
// errors (a misbehaving server, or a proxy in front of one): every
// failing answer carries the request's X-Vault-Token and body. Logins
// and lookup-self succeed when failLogin is false, so the read fails.
type echoVault struct {
	status    int  // of the failing answers
	raw       bool // a non-JSON failing answer
	failLogin bool
	issued    string // the token a successful login returns
}

func (v *echoVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	login := strings.HasSuffix(r.URL.Path, "/login") || strings.HasSuffix(r.URL.Path, "/lookup-self") ||
		strings.HasSuffix(r.URL.Path, "/wrapping/lookup") || strings.HasSuffix(r.URL.Path, "/wrapping/unwrap")
	if login && !v.failLogin {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/lookup-self"):
			fmt.Fprint(w, `{"data":{"ttl":3600,"renewable":false,"creation_ttl":3600}}`)
		default:
			fmt.Fprintf(w, `{"auth":{"client_token":%q,"lease_duration":3600,"renewable":false}}`, v.issued)
		}
		return
	}
	echo := "token was " + r.Header.Get("X-Vault-Token") + " body was " + string(body)
	if v.raw {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(v.status)
		fmt.Fprint(w, echo)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(v.status)
	_ = json.NewEncoder(w).Encode(map[string][]string{"errors": {echo}})
}

// TestVaultErrorsRedactWhatWasSent: whatever Vault's error messages
// quote of a request — the gateway's token, an AppRole secret_id, a
// wrapping token, a JWT, the token a login returned — is redacted from
// the provider's error and its log lines, for every auth method, on the
// login and on the read, for the statuses that end a request at once
// (400, 403), after retries (500) and for a non-JSON answer.
func TestVaultErrorsRedactWhatWasSent(t *testing.T) {
	const (
		envToken = "SECRET-ENV-TOKEN-7f3a"
		sid      = "SECRET-SECRET-ID-91c2"
		wrap     = "SECRET-WRAPPING-TOKEN-44d0"
		jwt      = "SECRET-JWT-e81b"
		issued   = "SECRET-ISSUED-TOKEN-0b5e"
	)
	secrets := []string{envToken, sid, wrap, jwt, issued}
	t.Setenv(tokenEnv, envToken)
	auths := map[string]string{
		"token":           "{method: token, token_env: " + tokenEnv + "}",
		"approle":         "{method: approle, role_id: r1, secret_id_wrapped: false, secret_id_file: " + writeFile(t, "sid", sid) + "}",
		"approle wrapped": "{method: approle, role_id: r1, secret_id_file: " + writeFile(t, "wrap", wrap) + "}",
		"jwt":             "{method: jwt, role: r1, token_file: " + writeFile(t, "jwt", jwt) + "}",
		"kubernetes":      "{method: kubernetes, role: r1, token_file: " + writeFile(t, "k8s", jwt) + "}",
	}
	for name, auth := range auths {
		for _, status := range []int{400, 403, 500} {
			for _, raw := range []bool{false, true} {
				for _, failLogin := range []bool{true, false} {
					if name == "approle wrapped" && !failLogin {
						continue // the echo server's unwrap answer has no secret_id: the login fails before the read
					}
					t.Run(fmt.Sprintf("%s/%d/raw=%v/login fails=%v", name, status, raw, failLogin), func(t *testing.T) {
						srv := httptest.NewServer(&echoVault{status: status, raw: raw, failLogin: failLogin, issued: issued})
						defer srv.Close()
						e := &env{events: &eventLog{}, logs: &lockedBuffer{}}
						p := e.load(t, "vault", fmt.Sprintf("server:\n  address: %s\n  retries: 1\n  retry_backoff: 1ms\n  auth: %s\npath: secret/data/x\nfield: v", srv.URL, auth))
						_, err := fetch(t, p, identity.Workload{})
						if err == nil {
							t.Fatal("Fetch succeeded against a failing Vault")
						}
						out := err.Error() + "\n" + e.logs.String()
						for _, s := range secrets {
							if strings.Contains(out, s) {
								t.Fatalf("%s appears in the error or the log:\n%s", s, out)
							}
						}
						if !strings.Contains(out, "[REDACTED]") && !failLogin {
							t.Errorf("no [REDACTED] in %s: the read's echo was not seen", out)
						}
					})
				}
			}
		}
	}
}
