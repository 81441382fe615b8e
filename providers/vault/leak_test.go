package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/providers"
)

// TestNoSecretInErrorsOrLogs drives failures of every kind and prints
// credentials every way they can be printed, then looks for the secret
// values (KV value, database password, tokens, secret_id, wrapping token,
// JWTs, private key) in the captured errors and slog output.
func TestNoSecretInErrorsOrLogs(t *testing.T) {
	e := newEnv(t, envOpts{emulatorOnly: true})
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	var out []string
	record := func(what string, v ...any) {
		for _, x := range v {
			out = append(out, fmt.Sprintf("%v|%+v|%#v|%s", x, x, x, x))
			if b, err := json.Marshal(x); err == nil {
				out = append(out, string(b))
			}
		}
		log.Error(what, "value", v)
	}
	secrets := map[string]string{"root token": e.root}

	kv := e.kv(t)
	e.putKV(t, kv, "stripe", map[string]any{"secret_key": "sk_live_NO_LEAK_kv_value"})
	secrets["kv value"] = "sk_live_NO_LEAK_kv_value"
	kvP := e.load(t, "vault", e.serverYAML(tokenAuth)+"path: "+kv+"/data/stripe\nfield: secret_key")
	cred := mustFetch(t, kvP, identity.Workload{})
	record("kv credential", cred, *cred, cred.Fields)
	_, err := fetch(t, e.load(t, "vault", e.serverYAML(tokenAuth)+"path: "+kv+"/data/stripe\nfield: nope"), identity.Workload{})
	record("missing field", err)

	// Database credential.
	db := e.mount(t, "database", nil)
	e.write(t, db+"/roles/ro", map[string]any{"default_ttl": "1h"})
	dbP := e.load(t, "vault", e.serverYAML(tokenAuth)+"path: "+db+"/creds/ro")
	dbCred := mustFetch(t, dbP, identity.Workload{})
	secrets["db password"] = reveal(dbCred)["password"]
	record("db credential", dbCred)

	// AppRole: a plain secret_id with a wrong role_id; a used wrapping token.
	mount, roleID, wrapped := e.appRole(t, "1h", "24h")
	sid := e.write(t, "auth/"+mount+"/role/gateway/secret-id", nil).Data["secret_id"].(string)
	secrets["secret_id"] = sid
	_, err = fetch(t, e.load(t, "vault", e.serverYAML(fmt.Sprintf("{method: approle, mount: %s, role_id: wrong, secret_id_file: %s, secret_id_wrapped: false}",
		mount, writeFile(t, "sid", sid)))+"path: "+kv+"/data/stripe"), identity.Workload{})
	record("approle wrong role", err)
	wt := wrapped()
	secrets["wrapping token"] = wt
	wf := writeFile(t, "wrapped", wt)
	auth := fmt.Sprintf("{method: approle, mount: %s, role_id: %s, secret_id_file: %s}", mount, roleID, wf)
	approleP := e.load(t, "vault", e.serverYAML(auth)+"path: "+kv+"/data/stripe")
	mustFetch(t, approleP, identity.Workload{})
	secrets["login token"] = approleP.(*Provider).client.current().value.Reveal()
	e.emu.RevokeLoginTokens() // the next fetch logs (at info) the dropped token and the re-login
	mustFetch(t, approleP, identity.Workload{})
	_, err = fetch(t, e.load(t, "vault", e.serverYAML(auth)+"path: "+kv+"/data/stripe"), identity.Workload{})
	record("used wrapping token", err)

	// JWT with a wrong audience; a Kubernetes token that does not verify.
	jm, sign := e.jwtAuth(t)
	jwt := sign(map[string]any{"sub": "system:serviceaccount:egress:credgate", "aud": "nope", "exp": time.Now().Add(time.Hour).Unix()})
	secrets["jwt"] = jwt
	_, err = fetch(t, e.load(t, "vault", e.serverYAML(fmt.Sprintf("{method: jwt, mount: %s, role: credgate, token_file: %s}", jm, writeFile(t, "jwt", jwt)))+"path: a/b"), identity.Workload{})
	record("jwt login", err)
	km := e.enableAuth(t, "kubernetes")
	e.write(t, "auth/"+km+"/role/credgate", map[string]any{"bound_service_account_names": "*", "bound_service_account_namespaces": "*"})
	secrets["sa token"] = "eyJ_NO_LEAK_service_account_token"
	_, err = fetch(t, e.load(t, "vault", e.serverYAML(fmt.Sprintf("{method: kubernetes, mount: %s, role: credgate, token_file: %s}", km, writeFile(t, "sa", secrets["sa token"])))+"path: a/b"), identity.Workload{})
	record("kubernetes login", err)

	// A token Vault does not know.
	t.Setenv("CREDGATE_VAULT_TEST_BOGUS", "hvs.NO_LEAK_bogus_token")
	secrets["bogus token"] = "hvs.NO_LEAK_bogus_token"
	_, err = fetch(t, e.load(t, "vault", e.serverYAML("{method: token, token_env: CREDGATE_VAULT_TEST_BOGUS}")+"path: a/b"), identity.Workload{})
	record("bogus token", err)

	// PKI private key.
	pm := pkiEnv(t, e)
	pkiP := e.load(t, "vault-pki", e.serverYAML(tokenAuth)+"mount: "+pm+"\nrole: partner-client\ncommon_name: x.example.com")
	pc := mustFetch(t, pkiP, identity.Workload{})
	secrets["private key"] = strings.Split(reveal(pc)[FieldPrivateKey], "\n")[1]
	record("pki credential", pc)

	// Sealed, and a cleanup that cannot reach Vault to revoke.
	revoking := e.load(t, "vault", e.serverYAML(tokenAuth)+"path: "+db+"/creds/ro\nrevoke_on_cleanup: true")
	mustFetch(t, revoking, identity.Workload{})
	e.emu.Seal()
	_, err = fetch(t, e.load(t, "vault", e.serverYAML(tokenAuth)+"path: "+kv+"/data/stripe"), identity.Workload{})
	record("sealed", err)
	record("cleanup", revoking.(providers.CleanerUpper).Cleanup())
	e.emu.Unseal()

	// What the providers logged themselves (debug level included).
	all := strings.Join(out, "\n") + "\n" + logs.String() + "\n" + e.logs.String()
	for name, v := range secrets {
		if v == "" {
			t.Fatalf("secret %s is empty; the test is broken", name)
		}
		if strings.Contains(all, v) {
			t.Errorf("the %s appears in an error, a formatted credential or the log", name)
		}
	}
	if !strings.Contains(all, "Vault is sealed") || !strings.Contains(all, "invalid role or secret ID") || !strings.Contains(all, "logged in again") {
		t.Errorf("the captured output misses expected errors:\n%s", all)
	}
}

// TestConcurrentFetchLogsInOnce: many first requests share one login.
func TestConcurrentFetchLogsInOnce(t *testing.T) {
	e := newEnv(t, envOpts{emulatorOnly: true})
	kv := e.kv(t)
	e.putKV(t, kv, "x", map[string]any{"v": "value"})
	mount, roleID, wrapped := e.appRole(t, "1h", "24h")
	auth := fmt.Sprintf("{method: approle, mount: %s, role_id: %s, secret_id_file: %s}", mount, roleID, writeFile(t, "sid", wrapped()))
	p := e.load(t, "vault", e.serverYAML(auth)+"path: "+kv+"/data/x")
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.Fetch(context.Background(), providers.Request{})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := e.emu.Count("login approle"); n != 1 {
		t.Errorf("logins = %d, want 1", n)
	}
}

// TestCACert: Vault over HTTPS with a private CA is trusted through
// server.ca_cert, and refused without it (a configuration error, not
// "unavailable").
func TestCACert(t *testing.T) {
	e := newEnv(t, envOpts{emulatorOnly: true, tls: true})
	kv := e.kv(t)
	e.putKV(t, kv, "x", map[string]any{"v": "tls_value"})
	ca := writeFile(t, "ca.pem", string(e.emu.CertPEM))
	with := fmt.Sprintf("server:\n  address: %s\n  ca_cert: %s\n  auth: %s\npath: %s/data/x\nfield: v", e.addr, ca, tokenAuth, kv)
	if got := reveal(mustFetch(t, e.load(t, "vault", with), identity.Workload{}))["token"]; got != "tls_value" {
		t.Errorf("token = %q", got)
	}
	without := fmt.Sprintf("server:\n  address: %s\n  auth: %s\npath: %s/data/x", e.addr, tokenAuth, kv)
	_, err := fetch(t, e.load(t, "vault", without), identity.Workload{})
	if err == nil || !strings.Contains(err.Error(), "certificate") || errors.Is(err, providers.ErrUnavailable) {
		t.Fatalf("Fetch without ca_cert = %v, want a certificate error (not unavailable)", err)
	}
	missing := fmt.Sprintf("server:\n  address: %s\n  ca_cert: /nonexistent/ca.pem\n  auth: %s\npath: %s/data/x", e.addr, tokenAuth, kv)
	if _, err := fetch(t, e.load(t, "vault", missing), identity.Workload{}); !strings.Contains(errString(err), "server.ca_cert: open /nonexistent/ca.pem") {
		t.Fatalf("Fetch with a missing ca_cert = %v", err)
	}
}
