package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/youmark/pkcs8"

	"github.com/credgate/credgate/internal/snowflaketest"
)

const snowflakePolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  snowflake:
    hosts: [myorg-myaccount.snowflakecomputing.com]
    allow_private: true
  snowflake-locator:
    hosts: [xy12345.us-east-2.aws.snowflakecomputing.com]
    allow_private: true
credentials:
  sf-key:
    provider: static
    file: KEY_FILE
  sf-key-pass:
    provider: static
    env: E2E_SNOWFLAKE_KEY_PASSPHRASE
  sf-etl:
    provider: snowflake
    account: myorg-myaccount
    user: etl_service
    private_key: {credential: sf-key, passphrase: {credential: sf-key-pass}}
  sf-stale:
    provider: snowflake
    account: xy12345.us-east-2.aws
    user: etl_service
    private_key: {file: STALE_KEY_FILE}
rules:
  - name: statements
    from: local
    to: snowflake
    methods: [POST]
    paths: ["/api/v2/statements"]
    inject:
      credential: sf-etl
      as: headers
      headers:
        Authorization: "Bearer {{"{{"}}.token}}"
        X-Snowflake-Authorization-Token-Type: KEYPAIR_JWT
  - name: stale-key
    from: local
    to: snowflake-locator
    methods: [POST]
    paths: ["/api/v2/statements"]
    inject:
      credential: sf-stale
      as: headers
      headers:
        Authorization: "Bearer {{"{{"}}.token}}"
        X-Snowflake-Authorization-Token-Type: KEYPAIR_JWT
default: deny
`

// TestSnowflake runs SQL API statements with Go's net/http through the
// gateway (HTTPS_PROXY and the gateway CA; the client sends a placeholder
// token of the wrong type) to a fake Snowflake (internal/snowflaketest)
// that verifies the key-pair JWT with the user's registered public key
// (the key encrypted PKCS#8, its passphrase in the gateway's environment):
// one JWT serves every statement, the client's headers are replaced, and a
// key whose fingerprint is not the user's gets Snowflake's 401. Neither
// the key nor any JWT appears in the gateway's output.
func TestSnowflake(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	stale, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := originCA.Leaf("myorg-myaccount.snowflakecomputing.com", "xy12345.us-east-2.aws.snowflakecomputing.com", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	sf := snowflaketest.New(snowflaketest.Options{Certificate: &leaf})
	t.Cleanup(sf.Close)
	sf.SetUserKeys("MYORG-MYACCOUNT.ETL_SERVICE", &key.PublicKey)
	sf.SetUserKeys("XY12345.ETL_SERVICE", &key.PublicKey) // not the stale key
	reportPeer(t, "snowflake: fake SQL API (internal/snowflaketest) at %s", sf.URL)

	dir := t.TempDir()
	var pieces []string
	files := map[string]*rsa.PrivateKey{filepath.Join(dir, "rsa_key.p8"): key, filepath.Join(dir, "stale.p8"): stale}
	// The user's key is an encrypted PKCS#8 key (what Snowflake's guide
	// has openssl write), its passphrase in the gateway's environment.
	passphrase := "e2e-" + randomToken(t)
	for p, k := range files {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		block := &pem.Block{Type: "PRIVATE KEY", Bytes: der}
		if k == key {
			enc, err := pkcs8.MarshalPrivateKey(k, []byte(passphrase), nil)
			if err != nil {
				t.Fatal(err)
			}
			block = &pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: enc}
			pieces = append(pieces, base64.StdEncoding.EncodeToString(enc)[64:128])
		}
		if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		pieces = append(pieces, base64.StdEncoding.EncodeToString(der)[64:128])
	}
	pol := strings.NewReplacer("STALE_KEY_FILE", filepath.Join(dir, "stale.p8"), "KEY_FILE", filepath.Join(dir, "rsa_key.p8")).Replace(snowflakePolicy)
	e := startEnv(t, envOptions{
		Policy:  pol,
		Resolve: map[string]string{"myorg-myaccount.snowflakecomputing.com:443": sf.Addr(), "xy12345.us-east-2.aws.snowflakecomputing.com:443": sf.Addr()},
		Env:     []string{"E2E_SNOWFLAKE_KEY_PASSPHRASE=" + passphrase},
	})
	e.secrets = append(e.secrets, pieces...)
	e.secrets = append(e.secrets, passphrase)
	t.Cleanup(func() {
		for _, j := range sf.JWTs() {
			e.secrets = append(e.secrets, j, j[len(j)-20:]) // the whole JWT and its signature's tail
		}
	})
	hc := newGoClient(t, e.proxyURL, gwCACert, false)

	run := func(host string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://"+host+"/api/v2/statements",
			bytes.NewReader([]byte(`{"statement":"select current_user()","timeout":60,"warehouse":"ETL_WH"}`)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Authorization", "Bearer placeholder")           // replaced by the gateway
		req.Header.Set("X-Snowflake-Authorization-Token-Type", "OAUTH") // replaced too
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	for i := range 3 {
		st, body := run("myorg-myaccount.snowflakecomputing.com")
		if st != http.StatusOK {
			t.Fatalf("statement %d: status %d %s; fake refused: %v", i, st, body, sf.Rejected())
		}
		var rs struct {
			Code            string     `json:"code"`
			StatementHandle string     `json:"statementHandle"`
			Data            [][]string `json:"data"`
		}
		if err := json.Unmarshal(body, &rs); err != nil || rs.Code != "090001" || rs.StatementHandle == "" || len(rs.Data) != 1 || rs.Data[0][0] != "ETL_SERVICE" {
			t.Errorf("statement %d: answer %s", i, body)
		}
	}
	acc := sf.Accepted()
	if len(acc) != 3 {
		t.Fatalf("the fake accepted %d statements, want 3", len(acc))
	}
	if jwts := sf.JWTs(); jwts[0] != jwts[1] || jwts[1] != jwts[2] {
		t.Errorf("three statements carried different JWTs; one cached JWT should serve them")
	}
	if d := acc[0].Exp.Sub(acc[0].IssuedAt); d.Hours() > 1 {
		t.Errorf("exp - iat = %s", d)
	}

	// A key whose fingerprint is not the user's (account given as a
	// locator with region): Snowflake's own 401 and error code reach the
	// client.
	st, body := run("xy12345.us-east-2.aws.snowflakecomputing.com")
	if st != http.StatusUnauthorized || !strings.Contains(string(body), "390144") {
		t.Fatalf("JWT signed with a key the user does not have: status %d %s, want 401 390144", st, body)
	}
	if r := sf.Rejected(); len(r) != 1 || !strings.Contains(r[0], "iss \"XY12345.ETL_SERVICE.SHA256:") || !strings.Contains(r[0], "names no public key") {
		t.Errorf("the fake refused for %v, want the fingerprint of XY12345.ETL_SERVICE", r)
	}
	waitFor(t, 5*time.Second, "the audit lines", func() error {
		n := 0
		for _, ev := range e.audit() {
			if ev.Rule == "statements" && ev.Status == http.StatusOK && ev.Credential == "sf-etl" {
				n++
			}
		}
		if n != 3 {
			return fmt.Errorf("%d audit lines of rule statements with 200, want 3", n)
		}
		return nil
	})
}
