package cli

import (
	"bytes"
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credgate/credgate/internal/testpki"
)

// TestCLITrustFilesRefused checks the class "a trust file the CLI reads
// is parsed as the gateway parses it (internal/cabundle), so a damaged or
// mixed file is refused in the same words, never half-read": `credgate
// admin --cacert`, `credgate explain`'s check of a client certificate
// against tls.client_ca, and `credgate demo`'s gateway CA, each given a
// CA certificate followed by a damaged PEM block, by a private key, by a
// certificate that does not parse, a file with no certificate, and (for
// tls.client_ca, which holds issuing CAs) a client's own certificate.
// The gateway CA alone is accepted by each. Before, x509's
// AppendCertsFromPEM skipped every bad block silently as long as one
// certificate parsed, and each command had its own words for "no
// certificate" (12 of 16 cases failed).
func TestCLITrustFilesRefused(t *testing.T) {
	ca, err := testpki.NewAuthority("trust files CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.ClientLeaf("client")
	if err != nil {
		t.Fatal(err)
	}
	leafPEM, _, err := testpki.PEM(leaf)
	if err != nil {
		t.Fatal(err)
	}
	certs := []*x509.Certificate{leaf.Leaf}
	if certs[0] == nil {
		if certs[0], err = x509.ParseCertificate(leaf.Certificate[0]); err != nil {
			t.Fatal(err)
		}
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	files := []struct {
		name string
		data []byte
		// want is the cabundle's words, "" for a file every command
		// accepts; clientCA is the words for tls.client_ca when they
		// differ (a leaf is a pinned root elsewhere).
		want, clientCA string
	}{
		{"the CA", ca.CertPEM, "", ""},
		{"a damaged block", cat(ca.CertPEM, []byte("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")), "PEM block 2 does not decode", ""},
		{"a private key", cat(ca.CertPEM, ca.KeyPEM), `holds a "PRIVATE KEY" PEM block (block 2)`, ""},
		{"a certificate that does not parse", cat(ca.CertPEM, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")), "certificate 2 (PEM block 2) does not parse", ""},
		{"no certificate", []byte("# just a comment\n"), "holds no PEM certificate", ""},
		{"a client's own certificate", leafPEM, "", "not a CA certificate"},
	}
	dir := t.TempDir()
	for _, f := range files {
		path := filepath.Join(dir, strings.ReplaceAll(f.name, " ", "-")+".pem")
		if err := os.WriteFile(path, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range []struct {
			name string
			run  func() error
		}{
			{"admin --cacert", func() error {
				ac := &adminClient{base: &url.URL{Scheme: "https", Host: "127.0.0.1:1"}, caCert: path}
				_, err := ac.newTransport()
				return err
			}},
			{"explain tls.client_ca", func() error { _, err := verifyListener(path, certs); return err }},
			{"demo gateway CA", func() error {
				// The proxy refuses the connection: a file that is
				// accepted fails there, after it was read.
				_, _, err := demoRequest(t.Context(), "http://127.0.0.1:1", path, "https://demo.test/")
				return err
			}},
		} {
			if f.name == "a client's own certificate" && cmd.name != "explain tls.client_ca" {
				continue // a pinned server certificate is a root there
			}
			t.Run(cmd.name+"/"+f.name, func(t *testing.T) {
				want := f.want
				if cmd.name == "explain tls.client_ca" && f.clientCA != "" {
					want = f.clientCA
				}
				err := cmd.run()
				switch {
				case want == "" && err != nil && strings.Contains(err.Error(), path):
					t.Errorf("the file was refused: %v", err)
				case want != "" && (err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path)):
					t.Errorf("error = %v, want it to name the file and say %q", err, want)
				}
			})
		}
	}
}
