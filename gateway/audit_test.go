package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/providers"
)

// writeAuditKey writes an Ed25519 key as audit.checkpoint.key_file wants it.
func writeAuditKey(t testing.TB, dir string) (string, ed25519.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "audit.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), pub
}

// TestAuditReceiptsVerify: the gateway's lines name the policy version and
// a fingerprint of the injected credential, carry the chain, and verify
// with checkpoints to the end after shutdown.
func TestAuditReceiptsVerify(t *testing.T) {
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	_, pub := writeAuditKey(t, tg.dir)
	policyFile := writeFile(t, tg.dir, "policy.yaml", []byte(testPolicy))
	fpKey := []byte("a fingerprint key shared by all replicas")
	writeFile(t, tg.dir, "fp.key", []byte(base64.StdEncoding.EncodeToString(fpKey)+"\n"))
	tg.run(t, fmt.Sprintf(`resolve:
  "api.origin.test:443": %q
audit:
  replica: gw-test
  checkpoint: {key_file: audit.key, lines: 2}
  fingerprint_key_file: fp.key
`, tg.origin.addr))
	c := tg.client(t, false)
	for i := 0; i < 3; i++ {
		resp, err := c.Get("https://" + apiHost + "/v1/receipt")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err := tg.stop(); err != nil {
		t.Fatal(err)
	}
	out := tg.audit.String()
	data, _ := os.ReadFile(policyFile)
	sum := sha256.Sum256(data)
	re := regexp.MustCompile(`"decision":"inject".*"policy_version":"` + hex.EncodeToString(sum[:]) + `","credential_fp":"([0-9a-f]{16})","seq":\d+,"replica":"gw-test-[0-9a-f]{8}","prev":"[0-9a-f]{64}"}`)
	m := re.FindAllStringSubmatch(out, -1)
	if len(m) != 3 {
		t.Fatalf("want 3 injected lines with policy_version, credential_fp and the chain, got %d:\n%s", len(m), out)
	}
	// The documented construction: HMAC-SHA256 under the shared key over
	// the credential's fields, so any replica (or an investigator with the
	// key) finds the same fingerprint.
	want := audit.NewFingerprinter(fpKey).Sum(providers.FieldToken, tg.token)
	for _, mm := range m {
		if mm[1] != want {
			t.Errorf("credential_fp %s, want %s", mm[1], want)
		}
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify([]string{path}, audit.VerifyOptions{Keys: []ed25519.PublicKey{pub}, RequireSignedTail: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Chains) != 1 || !rep.Chains[0].Final {
		var b strings.Builder
		rep.WriteText(&b)
		t.Errorf("the gateway's audit log does not verify to a final checkpoint:\n%s", b.String())
	}
}

// stuckSink blocks every write until released.
type stuckSink struct {
	once    sync.Once
	release chan struct{}
}

func (s *stuckSink) Write(p []byte) (int, error) { <-s.release; return len(p), nil }
func (s *stuckSink) open()                       { s.once.Do(func() { close(s.release) }) }

// TestAuditFailClosed: with on_stall: fail_closed, requests are refused
// with 503 audit_stalled while the sink is stuck, and served again when
// it moves.
func TestAuditFailClosed(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, err := mitm.WriteCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	pol := "workloads: {local: {cidrs: [127.0.0.1/32]}}\ndestinations: {plain: {hosts: [plain.test], ports: [80]}}\n" +
		"rules:\n  - {name: deny-all, from: local, to: plain, action: deny}\ndefault: deny\n"
	writeFile(t, dir, "policy.yaml", []byte(pol))
	cfg, err := ParseConfig(filepath.Join(dir, "c.yaml"), []byte("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\npolicy: policy.yaml\nca: {cert: "+certPath+", key: "+keyPath+"}\n"+
		"audit: {on_stall: fail_closed, stall_timeout: 20ms}\n"))
	if err != nil {
		t.Fatal(err)
	}
	sink := &stuckSink{release: make(chan struct{})}
	g, err := New(context.Background(), cfg, Options{Audit: sink})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	t.Cleanup(sink.open)
	get := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "http://plain.test/v1/x", nil)
		req.RemoteAddr = "127.0.0.1:40000"
		rec := httptest.NewRecorder()
		g.serveProxy(rec, req)
		return rec
	}
	if rec := get(); rec.Code != http.StatusForbidden {
		t.Fatalf("first request: %d, want 403 from the policy", rec.Code)
	}
	// Its line is flushed within 100 ms into the stuck sink.
	waitFor(t, 5*time.Second, "a 503 audit_stalled while the sink is stuck", func() bool {
		rec := get()
		return rec.Code == http.StatusServiceUnavailable && rec.Header().Get(ReasonHeader) == codeAuditStalled
	})
	sink.open()
	waitFor(t, 5*time.Second, "requests served again once the sink moves", func() bool { return get().Code == http.StatusForbidden })
}

// TestAuditConfigErrors: bad audit settings are reported at FILE:LINE:COL.
func TestAuditConfigErrors(t *testing.T) {
	const head = "policy: p.yaml\nca: {cert: c, key: k}\naudit:\n"
	for _, tt := range []struct{ name, text, want string }{
		{"on-stall", head + "  on_stall: panic\n", `^c\.yaml:4:3: audit\.on_stall: unknown stall policy "panic" \(use block, drop or fail_closed\)`},
		{"replica", head + "  replica: \"gw 0\"\n", `^c\.yaml:4:3: audit\.replica: "gw 0": use 1 to 128 characters`},
		{"buffer", head + "  buffer_bytes: 100\n", `^c\.yaml:4:3: audit\.buffer_bytes: at least 65536`},
		{"rotate-stdout", head + "  rotate: {max_bytes: 1000}\n", `^c\.yaml:4:3: audit\.rotate needs audit\.output to be a file`},
		{"checkpoint-without-key", head + "  checkpoint: {lines: 10}\n", `^c\.yaml:4:3: audit\.checkpoint: lines and every need key_file`},
		{"key-without-chain", head + "  chain: false\n  checkpoint: {key_file: k.pem}\n", `^c\.yaml:5:16: audit\.checkpoint\.key_file signs the chain`},
		{"unknown", head + "  rotation: {}\n", `^c\.yaml:4:3: unknown field "rotation"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("c.yaml", []byte(tt.text))
			if err == nil || !regexp.MustCompile(tt.want).MatchString(err.Error()) {
				t.Errorf("error %v does not match %s", err, tt.want)
			}
		})
	}
}

// TestAuditKeyFileErrors: an unusable checkpoint or fingerprint key stops
// the gateway with an error naming the setting and the file, never a key.
func TestAuditKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, err := mitm.WriteCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "policy.yaml", []byte("rules: []\n"))
	writeFile(t, dir, "rsa.pem", []byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	writeFile(t, dir, "short.key", []byte("c2hvcnQ=\n"))
	for _, tt := range []struct{ audit, want string }{
		{"{checkpoint: {key_file: rsa.pem}}", `audit\.checkpoint\.key_file: audit signing key .*rsa\.pem: not a PEM "PRIVATE KEY" block \(write one with: openssl genpkey -algorithm ed25519`},
		{"{checkpoint: {key_file: none.pem}}", `audit\.checkpoint\.key_file: audit signing key: open .*none\.pem: no such file`},
		{"{fingerprint_key_file: short.key}", `audit\.fingerprint_key_file: .*short\.key: want at least 16 random bytes in base64`},
	} {
		cfg, err := ParseConfig(filepath.Join(dir, "c.yaml"), []byte("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\npolicy: policy.yaml\nca: {cert: "+certPath+", key: "+keyPath+"}\naudit: "+tt.audit+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		g, err := New(context.Background(), cfg, Options{Audit: discard{}})
		if err == nil {
			g.Close()
			t.Errorf("%s: no error", tt.audit)
			continue
		}
		if !regexp.MustCompile(tt.want).MatchString(err.Error()) {
			t.Errorf("%s: error %q does not match %s", tt.audit, err, tt.want)
		}
	}
}
