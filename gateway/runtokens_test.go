package gateway

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunTokenAdminAPI: tokens are issued only with the admin token and
// only for the workloads run_tokens lists; the JWKS and the CA are
// public; a revoked token is refused by the proxy; the token never
// reaches the log or the audit output.
func TestRunTokenAdminAPI(t *testing.T) {
	const admin = "run-token-admin-token-0123456789"
	tokFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokFile, []byte(admin), 0o600); err != nil {
		t.Fatal(err)
	}
	tg := startSwitchGateway(t, fmt.Sprintf("admin:\n  token_file: %q\nrun_tokens:\n  workloads: [agent]\n", tokFile))

	if st, code, _ := adminCall(t, tg, "/admin/v1/run-tokens", "", `{"workload":"agent"}`); st != http.StatusUnauthorized || code != codeUnauthorized {
		t.Errorf("without the admin token: %d %s, want 401", st, code)
	}
	if st, code, _ := adminCall(t, tg, "/admin/v1/run-tokens", admin, `{"workload":"root"}`); st != http.StatusForbidden || code != codeWorkloadNotAllow {
		t.Errorf("an unlisted workload: %d %s, want 403 %s", st, code, codeWorkloadNotAllow)
	}
	if st, _, _ := adminCall(t, tg, "/admin/v1/run-tokens", admin, `{"workload":"agent","ttl":"forever"}`); st != http.StatusBadRequest {
		t.Errorf("a bad ttl: %d, want 400", st)
	}
	st, _, body := adminCall(t, tg, "/admin/v1/run-tokens", admin, `{"workload":"agent","ttl":"2m"}`)
	tok, _ := body["token"].(string)
	if st != http.StatusOK || strings.Count(tok, ".") != 2 || body["workload"] != "agent" {
		t.Fatalf("issue: %d %v", st, body)
	}
	t.Cleanup(func() {
		for where, s := range map[string]string{"audit": tg.audit.String(), "log": tg.logs.String()} {
			if strings.Contains(s, tok) || strings.Contains(s, strings.Split(tok, ".")[2]) {
				t.Errorf("the run token appears in the %s output", where)
			}
		}
	})

	jwks := adminGet(t, tg, "/admin/v1/run-tokens/jwks.json")
	if !strings.Contains(jwks, `"kty":"EC"`) || strings.Contains(jwks, `"d":`) {
		t.Errorf("JWKS: %s", jwks)
	}
	resp, err := http.Get("http://" + tg.gw.AdminAddr().String() + "/admin/v1/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	block, _ := pem.Decode(caPEM)
	if block == nil {
		t.Fatalf("/admin/v1/ca.pem: %q", caPEM)
	}
	if c, err := x509.ParseCertificate(block.Bytes); err != nil || !c.IsCA {
		t.Errorf("/admin/v1/ca.pem is not the CA certificate: %v", err)
	}

	if st, _, _ := adminCall(t, tg, "/admin/v1/run-tokens/revoke", admin, `{"token":"not.a.token"}`); st != http.StatusBadRequest {
		t.Errorf("revoking garbage: %d, want 400", st)
	}
	if st, _, body := adminCall(t, tg, "/admin/v1/run-tokens/revoke", admin, fmt.Sprintf(`{"token":%q}`, tok)); st != http.StatusOK || body["scope"] != "replica" {
		t.Errorf("revoke: %d %v", st, body)
	}
}

// TestRunTokensConfig: run_tokens is checked with positions.
func TestRunTokensConfig(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "credgate.yaml")
	cfg := "policy: policy.yaml\nca: {cert: ca.pem, key: ca-key.pem}\nrun_tokens:\n  workloads: []\n  algorithm: RS256\n" +
		"identity:\n  jwt:\n    issuers:\n      - {issuer: \"urn:credgate:run\", audiences: [x], jwks_file: j.json}\n"
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(cfgFile)
	for _, want := range []string{
		"credgate.yaml:4:3: run_tokens.workloads: list the workloads",
		"run_tokens.algorithm: unknown \"RS256\"",
		"run_tokens needs the admin API",
		"is run_tokens.issuer, which the gateway trusts by itself",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadConfig: %v\nwant %q", err, want)
		}
	}
}
