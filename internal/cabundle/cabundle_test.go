package cabundle

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

// certPEM makes a self-signed certificate from tmpl (signed by parent
// when not nil).
func certPEM(t *testing.T, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) ([]byte, *x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), c, key
}

// TestParse: CA certificates are accepted; a leaf (CA:FALSE, or no basic
// constraints, self-signed or issued), a key block or nothing is refused
// with the cause.
func TestParse(t *testing.T) {
	caPEM, ca, caKey := certPEM(t, &x509.Certificate{Subject: pkix.Name{CommonName: "root"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	interPEM, _, _ := certPEM(t, &x509.Certificate{Subject: pkix.Name{CommonName: "intermediate"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, ca, caKey)
	leafPEM, _, _ := certPEM(t, &x509.Certificate{Subject: pkix.Name{CommonName: "client"}, BasicConstraintsValid: true, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, caKey)
	noBCPEM, _, _ := certPEM(t, &x509.Certificate{Subject: pkix.Name{CommonName: "server"}}, ca, caKey)
	selfLeafPEM, _, _ := certPEM(t, &x509.Certificate{Subject: pkix.Name{CommonName: "self"}, BasicConstraintsValid: true}, nil, nil)
	for _, tc := range []struct {
		name  string
		data  []byte
		n     int
		cause string
	}{
		{"root CA", caPEM, 1, ""},
		{"root and intermediate", append(append([]byte{}, caPEM...), interPEM...), 2, ""},
		{"issued leaf, CA:FALSE", leafPEM, 0, `certificate 1 (subject "CN=client"): not a CA certificate (its basic constraints say CA:FALSE)`},
		{"issued leaf, no basic constraints", noBCPEM, 0, "not a CA certificate (it has no basic constraints)"},
		{"self-signed leaf", selfLeafPEM, 0, "not a CA certificate"},
		{"a CA, then a leaf", append(append([]byte{}, caPEM...), leafPEM...), 0, "certificate 2"},
		{"a key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), 0, `holds a "PRIVATE KEY" PEM block`},
		{"nothing", []byte("not PEM"), 0, "holds no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certs, err := Parse(tc.data)
			if tc.cause == "" {
				if err != nil || len(certs) != tc.n {
					t.Fatalf("Parse: %d certificates, %v; want %d", len(certs), err, tc.n)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.cause) {
				t.Fatalf("Parse: %v; want an error with %q", err, tc.cause)
			}
			if strings.Contains(tc.cause, "not a CA") && (!errors.Is(err, ErrNotCA) || !strings.Contains(err.Error(), "put the issuing CA's certificate")) {
				t.Errorf("Parse: %v; want ErrNotCA with the fix", err)
			}
		})
	}
}

// TestParseRoots: a roots bundle (upstream.ca_bundle and the ca_file
// settings) takes CA certificates and self-signed or issued leaves
// pinned as roots, text between blocks, but refuses with the block's
// number every block x509.CertPool.AppendCertsFromPEM skips in silence:
// a damaged block, one whose DER does not parse, a non-CERTIFICATE
// block, and a file with no certificate. The last column says whether
// AppendCertsFromPEM (what these settings used) refused the file too.
func TestParseRoots(t *testing.T) {
	caPEM, ca, caKey := certPEM(t, &x509.Certificate{Subject: pkix.Name{CommonName: "root"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	leafPEM, _, _ := certPEM(t, &x509.Certificate{Subject: pkix.Name{CommonName: "server"}, BasicConstraintsValid: true}, ca, caKey)
	selfLeafPEM, _, _ := certPEM(t, &x509.Certificate{Subject: pkix.Name{CommonName: "self"}, DNSNames: []string{"localhost"}}, nil, nil)
	cat := func(parts ...string) []byte { return []byte(strings.Join(parts, "")) }
	damaged := strings.Replace(string(caPEM), "\n", "\n!!", 2)
	truncated := string(caPEM[:len(caPEM)/2])
	badDER := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")}))
	key := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}))
	for _, tc := range []struct {
		name      string
		data      []byte
		n         int
		cause     string // "" = accepted
		oldRefuse bool   // AppendCertsFromPEM returned false
	}{
		{"root CA", caPEM, 1, "", false},
		{"self-signed leaf pinned as a root", selfLeafPEM, 1, "", false},
		{"issued leaf and its CA, with comments", cat("# ours\n", string(leafPEM), "comment\n", string(caPEM), "end\n"), 2, "", false},
		{"damaged block after a good one", cat(string(caPEM), damaged), 0, "PEM block 2 does not decode", false},
		{"damaged block before a good one", cat(damaged, string(caPEM)), 0, "PEM block 1 does not decode", false},
		{"truncated last block", cat(string(caPEM), truncated), 0, "PEM block 2 does not decode", false},
		{"DER that does not parse", cat(string(caPEM), badDER), 0, "certificate 2 (PEM block 2) does not parse", false},
		{"a key among certificates", cat(string(caPEM), key), 0, `holds a "PRIVATE KEY" PEM block (block 2)`, false},
		{"only a key", []byte(key), 0, `holds a "PRIVATE KEY" PEM block (block 1)`, true},
		{"nothing", []byte("not PEM"), 0, "holds no PEM certificate", true},
		{"empty", nil, 0, "holds no PEM certificate", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := !x509.NewCertPool().AppendCertsFromPEM(tc.data); got != tc.oldRefuse {
				t.Errorf("AppendCertsFromPEM refused = %v; the table says %v", got, tc.oldRefuse)
			}
			certs, err := ParseRoots(tc.data)
			if tc.cause == "" {
				if err != nil || len(certs) != tc.n {
					t.Fatalf("ParseRoots: %d certificates, %v; want %d, nil", len(certs), err, tc.n)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.cause) {
				t.Fatalf("ParseRoots: %v; want an error with %q", err, tc.cause)
			}
			if _, err := Parse(tc.data); err == nil {
				t.Errorf("Parse accepted what ParseRoots refuses")
			}
		})
	}
}
