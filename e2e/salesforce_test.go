package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/salesforcetest"
)

const salesforcePolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  salesforce:
    hosts: ["*.my.salesforce.com"]
    allow_private: true
credentials:
  sf-crm:
    provider: salesforce
    login_url: LOGIN_URL
    ca_cert: CA_FILE
    client_id: 3MVG9E2E.consumer.key
    username: integration@acme.example
    private_key: {file: KEY_FILE}
    instance_hosts: ["*.my.salesforce.com"]
rules:
  - name: crm
    from: local
    to: salesforce
    methods: [GET]
    paths: ["/services/data/*"]
    inject: {credential: sf-crm, as: bearer}
default: deny
`

// TestSalesforce queries the REST API with Go's net/http through the
// gateway (HTTPS_PROXY and the gateway CA, a placeholder token) against a
// fake Salesforce (internal/salesforcetest) that verifies the JWT bearer
// assertion with the connected app's certificate and honours a token only
// on the instance it was issued for. The destination pattern
// *.my.salesforce.com matches every instance, yet the token goes only to
// its instance_url's host: another host is refused (403
// credential_host_mismatch, audited); after the org moves, the old
// instance's 401 drops the token, requests follow the new instance and the
// old one is refused. Neither the key nor any token appears in the
// gateway's output. A login host answering 503 makes the request 503
// credential_unavailable, never forwarded without a token.
func TestSalesforce(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "credgate e2e connected app"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		t.Fatal(err)
	}
	const acme, acme2, other = "acme.my.salesforce.com", "acme2.my.salesforce.com", "other.my.salesforce.com"
	leaf, err := originCA.Leaf(acme, acme2, other, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	sf := salesforcetest.New(salesforcetest.Options{Certificate: &leaf, Instance: "https://" + acme})
	t.Cleanup(sf.Close)
	if err := sf.AddApp("3MVG9E2E.consumer.key", cert, "integration@acme.example"); err != nil {
		t.Fatal(err)
	}
	reportPeer(t, "salesforce: fake login host and instances (internal/salesforcetest) at %s", sf.URL)

	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pol := strings.NewReplacer("LOGIN_URL", sf.URL, "CA_FILE", originCACert, "KEY_FILE", keyFile).Replace(salesforcePolicy)
	e := startEnv(t, envOptions{
		Policy:      pol,
		Resolve:     map[string]string{acme + ":443": sf.Addr, acme2 + ":443": sf.Addr, other + ":443": sf.Addr},
		CacheConfig: "  error_backoff: 500ms\n", // the outage subtest waits it out
	})
	e.secrets = append(e.secrets, base64.StdEncoding.EncodeToString(der)[64:128])
	t.Cleanup(func() { e.secrets = append(e.secrets, sf.Tokens()...) })
	hc := newGoClient(t, e.proxyURL, gwCACert, false)

	query := func(host string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+host+"/services/data/v62.0/query?q=SELECT+Id,Name+FROM+Account", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer placeholder") // replaced by the gateway
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Credgate-Reason"), string(b)
	}
	countQueries := func(host string) int {
		n := 0
		for _, h := range sf.Queries() {
			if h == host {
				n++
			}
		}
		return n
	}

	t.Run("login host down: 503, then served", func(t *testing.T) {
		sf.Fail(http.StatusServiceUnavailable)
		st, reason, _ := query(acme)
		sf.Fail(0)
		if st != http.StatusServiceUnavailable || reason != "credential_unavailable" {
			t.Fatalf("token endpoint answering 503: %d %s, want 503 credential_unavailable", st, reason)
		}
		// The cache's error backoff holds the next fetch back a moment.
		waitFor(t, 15*time.Second, "a query once the login host is back", func() error {
			if st, reason, _ := query(acme); st != http.StatusOK {
				return fmt.Errorf("status %d %s", st, reason)
			}
			return nil
		})
	})

	t.Run("queries on the token's instance", func(t *testing.T) {
		for range 2 {
			st, _, body := query(acme)
			var out struct {
				TotalSize int  `json:"totalSize"`
				Done      bool `json:"done"`
			}
			if st != http.StatusOK || json.Unmarshal([]byte(body), &out) != nil || out.TotalSize != 1 || !out.Done {
				t.Fatalf("query on %s: %d %s; fake refused: %v", acme, st, body, sf.Refusals())
			}
		}
		if n := sf.Grants(); n != 1 {
			t.Errorf("%d token grants for two queries, want 1 (cached)", n)
		}
	})

	t.Run("another instance host is refused", func(t *testing.T) {
		st, reason, body := query(other)
		if st != http.StatusForbidden || reason != "credential_host_mismatch" || !strings.Contains(body, "valid only on "+acme) {
			t.Fatalf("query on %s: %d %s %s, want 403 credential_host_mismatch naming %s", other, st, reason, body, acme)
		}
		if n := countQueries(other); n != 0 || len(sf.Refusals()) != 0 {
			t.Errorf("the fake saw %d queries on %s and refusals %v; the token must never reach it", n, other, sf.Refusals())
		}
	})

	t.Run("the org moves to another instance", func(t *testing.T) {
		sf.Migrate("https://" + acme2)
		// The old instance ends the session: its 401 drops the token; the
		// new one is for acme2, so this request is not retried with it.
		if st, _, _ := query(acme); st != http.StatusUnauthorized {
			t.Errorf("query on the old instance right after the move: %d, want its 401", st)
		}
		st, _, body := query(acme2)
		if st != http.StatusOK {
			t.Fatalf("query on the new instance: %d %s; fake refused: %v", st, body, sf.Refusals())
		}
		st, reason, body := query(acme)
		if st != http.StatusForbidden || reason != "credential_host_mismatch" || !strings.Contains(body, "valid only on "+acme2) {
			t.Errorf("query on the old instance: %d %s %s, want 403 credential_host_mismatch naming %s", st, reason, body, acme2)
		}
		if n := sf.Grants(); n != 2 {
			t.Errorf("%d grants, want 2 (one per instance)", n)
		}
		if n := countQueries(acme2); n != 1 {
			t.Errorf("%d queries served on %s, want 1", n, acme2)
		}
	})

	waitFor(t, 5*time.Second, "the refusals' audit lines", func() error {
		n := 0
		for _, ev := range e.audit() {
			if ev.Rule == "crm" && ev.Code == "credential_host_mismatch" && ev.Status == http.StatusForbidden {
				n++
			}
		}
		if n != 2 {
			return fmt.Errorf("%d audit lines with credential_host_mismatch, want 2", n)
		}
		return nil
	})
}
