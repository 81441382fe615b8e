// Package fakekit is the plumbing shared by the fakes of outside services
// under internal/*test (githubtest, googletest, azuretest, salesforcetest,
// snowflaketest, llmtest, exchangetest, ...): starting the TLS server on
// 127.0.0.1, handing its certificate to the client under test, and reading
// a JWT's header and claims to pick the key that verifies it. What each
// service checks and answers stays in its own fake.
//
// It exists under internal/ because it is test machinery, not API.
package fakekit

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
)

// StartTLS serves h over TLS on 127.0.0.1 with cert (nil: httptest's own
// certificate) and returns the started server; the caller closes it. The
// server's error log is discarded: clients that refuse the certificate,
// or hang up, are expected in tests. A request that repeats one of
// CredentialFields is answered 400 before h sees it.
func StartTLS(h http.Handler, cert *tls.Certificate) *httptest.Server {
	srv := httptest.NewUnstartedServer(RefuseRepeated(h))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if cert != nil {
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	srv.StartTLS()
	return srv
}

// CertPEM returns the PEM of srv's leaf certificate, for a client's CA
// file.
func CertPEM(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

// WriteCAFile writes CertPEM(srv) to the file name in dir and returns its
// path, for a client's CA setting.
func WriteCAFile(srv *httptest.Server, dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	return p, os.WriteFile(p, CertPEM(srv), 0o600)
}

// ErrNotJWT is DecodeJWT's error for anything but a compact JWS whose
// header and claims are base64url JSON.
var ErrNotJWT = errors.New("not a JWT")

// DecodeJWT decodes a compact JWS's header into header and its claims
// into claims (either may be nil to skip it) WITHOUT verifying the
// signature: a fake reads them only to find the key that verifies the
// token (by iss, sub or kid), and then calls jwtsign.Verify.
func DecodeJWT(raw string, header, claims any) error {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return ErrNotJWT
	}
	for i, v := range []any{header, claims} {
		if v == nil {
			continue
		}
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || json.Unmarshal(b, v) != nil {
			return ErrNotJWT
		}
	}
	return nil
}
