package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credgate/credgate/internal/httpsigtest"
)

// TestHTTPMessageSignatures runs examples/httpsig.yaml (adapted to
// 127.0.0.1) in front of internal/httpsigtest, a partner API that
// rebuilds the RFC 9421 signature base from what it received and checks
// the Ed25519 signature, its window and the Content-Digest. The clients
// are curl and Go's net/http through HTTPS_PROXY with no key and no
// signature of their own.
func TestHTTPMessageSignatures(t *testing.T) {
	t.Parallel()
	const host = "api.partner.example"
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "partner-ed25519.pem")
	if err := os.WriteFile(keyFile, []byte(keyPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	leaf, err := originCA.Leaf(host, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	fake := httpsigtest.NewServer(&leaf, &httpsigtest.Verifier{Keys: map[string]httpsigtest.Key{
		"acme-payments-2026": {Alg: "ed25519", Public: pub}}})
	t.Cleanup(fake.Close)
	reportPeer(t, "httpsig: RFC 9421 verifier (internal/httpsigtest) at %s", fake.URL)

	example, err := os.ReadFile(filepath.Join(repoRoot, "examples", "httpsig.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pol := strings.NewReplacer(
		"cidrs: [10.40.0.0/24]", "cidrs: [127.0.0.1/32]",
		"hosts: [api.partner.example]", "hosts: [api.partner.example]\n    allow_private: true",
		"/run/secrets/partner-ed25519.pem", keyFile,
	).Replace(string(example))
	if !strings.Contains(pol, "allow_private") || !strings.Contains(pol, keyFile) {
		t.Fatalf("examples/httpsig.yaml changed shape; adapt this test:\n%s", pol)
	}
	e := startEnv(t, envOptions{Policy: pol, Resolve: map[string]string{host + ":443": fake.Addr}})
	keyLines := strings.Split(strings.TrimSpace(keyPEM), "\n")
	e.secrets = append(e.secrets, keyLines[1])

	body := `{"amount":1250,"currency":"eur"}`
	check := func(t *testing.T, client string, status int, b []byte, wantBody string) {
		t.Helper()
		if status != http.StatusOK {
			t.Fatalf("%s: status %d: %s (the verifier refused %v)", client, status, b, fake.Refused())
		}
		var echo httpsigtest.Echo
		if err := json.Unmarshal(b, &echo); err != nil || echo.KeyID != "acme-payments-2026" || echo.Body != wantBody {
			t.Errorf("%s: echo %s (%v)", client, b, err)
		}
	}
	t.Run("go", func(t *testing.T) {
		c := newGoClient(t, e.proxyURL, gwCACert, false)
		for _, m := range []string{"GET", "POST"} {
			var rd io.Reader
			want := ""
			if m == "POST" {
				rd, want = strings.NewReader(body), body
			}
			req, _ := http.NewRequest(m, "https://"+host+"/v1/orders?expand=items", rd)
			req.Header.Set("Content-Type", "application/json")
			// A client's own signature is replaced, never passed on.
			req.Header.Set("Signature", "sig1=:Zm9yZ2Vk:")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			check(t, "go "+m, resp.StatusCode, b, want)
		}
	})
	t.Run("curl", func(t *testing.T) {
		out, err := exec.Command("curl", "-sS", "--proxy", e.proxyURL, "--cacert", gwCACert,
			"-H", "Content-Type: application/json", "--data-binary", body, "https://"+host+"/v1/orders/42").Output()
		if err != nil {
			t.Fatalf("curl: %v", err)
		}
		check(t, "curl", http.StatusOK, out, body)
	})
	t.Run("a path the rule does not name is refused before signing", func(t *testing.T) {
		before := fake.Accepted() + len(fake.Refused())
		c := newGoClient(t, e.proxyURL, gwCACert, false)
		resp, err := c.Get("https://" + host + "/v1/refunds")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("status %d, want 403", resp.StatusCode)
		}
		if after := fake.Accepted() + len(fake.Refused()); after != before {
			t.Errorf("the partner saw %d more requests, want none", after-before)
		}
	})
	if r := fake.Refused(); len(r) > 0 {
		t.Errorf("the verifier refused %v", r)
	}
}
