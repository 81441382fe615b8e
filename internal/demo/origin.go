// Package demo builds what `credgate demo` runs on a machine with nothing
// installed: a throw-away directory with an interception CA, a static
// credential, a gateway config and a policy, plus a local HTTPS "SaaS"
// origin that echoes what it received. It exists so that the demo (and the
// tests that run it) share one setup instead of each writing its own.
//
// Nothing here is for production: the origin and its CA live for one run
// and the credential is random.
package demo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Host is the name the demo origin answers to. It does not resolve in DNS:
// clients reach it only through the gateway, whose `resolve` map points it
// at the origin's local address.
const Host = "api.saas.test"

// Echo is what the origin answers: the request as it arrived upstream,
// with credential-bearing values masked.
type Echo struct {
	// Method, Host and Path are the request line and Host header.
	Method string `json:"method"`
	Host   string `json:"host"`
	Path   string `json:"path"`
	// Headers are the received headers, credential headers masked.
	Headers map[string]string `json:"headers"`
	// CredentialInjected is true when Authorization carried exactly the
	// demo credential (for an origin started by StartOrigin: any bearer
	// credential).
	CredentialInjected bool `json:"credential_injected"`
	// EchoedAuthorization, only for a path ending in /echo, is the
	// Authorization header as received, unmasked, as careless APIs echo
	// it (httpbin's /headers): the gateway scrubs it from the response.
	EchoedAuthorization string `json:"echoed_authorization,omitempty"`
}

// Origin is a local HTTPS server standing in for a SaaS API.
type Origin struct {
	srv   *http.Server
	ln    net.Listener
	token string
	done  chan error

	mu   sync.Mutex
	last *Echo
}

// maskedHeaders are shown only masked in an Echo.
var maskedHeaders = map[string]bool{
	"Authorization":       true,
	"Proxy-Authorization": true,
	"Cookie":              true,
	"X-Api-Key":           true,
}

// Mask shows a credential value without revealing it: an auth scheme word
// is kept, then the first four characters of the secret and its length,
// e.g. "Bearer demo…(32 chars)".
func Mask(v string) string {
	scheme, secret := "", v
	if i := strings.IndexByte(v, ' '); i > 0 {
		scheme, secret = v[:i+1], v[i+1:]
	}
	if secret == "" {
		return scheme + "(empty)"
	}
	prefix := secret
	if len(prefix) > 4 {
		prefix = prefix[:4]
	}
	// Very short secrets show nothing but their length.
	if len(secret) < 12 {
		prefix = ""
	}
	return fmt.Sprintf("%s%s…(%d chars)", scheme, prefix, len(secret))
}

// StartOrigin starts only the echo origin, for the Quickstart's offline
// path: it serves Host over TLS on addr with a new throw-away CA, whose
// certificate it writes to caFile (replacing one an earlier run wrote),
// for a gateway's upstream.ca_bundle. Any bearer credential is echoed,
// masked. The caller closes the origin.
func StartOrigin(addr, caFile string) (*Origin, error) {
	pki, err := newUpstreamPKI(time.Now())
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(caFile, pki.caPEM, 0o644); err != nil {
		return nil, fmt.Errorf("demo origin: write its CA certificate: %w", err)
	}
	return startOrigin(addr, pki.leaf, "")
}

// startOrigin serves the echo API over TLS with cert on addr. token is
// the credential the gateway is expected to inject as a bearer token ("":
// none is checked).
func startOrigin(addr string, cert tls.Certificate, token string) (*Origin, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("demo origin: %s: address already in use (perhaps an origin from an earlier run); stop it or choose another address with --origin", addr)
		}
		return nil, fmt.Errorf("demo origin: listen: %w", err)
	}
	o := &Origin{ln: ln, token: token, done: make(chan error, 1)}
	o.srv = &http.Server{
		Handler:           http.HandlerFunc(o.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		// Handshake noise from probing clients is not the demo's story.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go func() { o.done <- o.srv.ServeTLS(ln, "", "") }()
	return o, nil
}

// Addr is the origin's listening address.
func (o *Origin) Addr() net.Addr { return o.ln.Addr() }

// Last returns the most recent request the origin received, or nil.
func (o *Origin) Last() *Echo {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

// Close stops the origin.
func (o *Origin) Close(ctx context.Context) error {
	err := o.srv.Shutdown(ctx)
	if serr := <-o.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("demo origin: shutdown: %w", err)
	}
	return nil
}

func (o *Origin) serveHTTP(w http.ResponseWriter, r *http.Request) {
	e := &Echo{
		Method:  r.Method,
		Host:    r.Host,
		Path:    r.URL.Path,
		Headers: map[string]string{},
	}
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v := strings.Join(r.Header.Values(k), ", ")
		if maskedHeaders[k] {
			v = Mask(v)
		}
		e.Headers[k] = v
	}
	want := "Bearer " + o.token
	got := r.Header.Get("Authorization")
	e.CredentialInjected = len(r.Header.Values("Authorization")) == 1 &&
		subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
	if o.token == "" {
		// --origin-only expects no particular credential: any bearer.
		e.CredentialInjected = len(r.Header.Values("Authorization")) == 1 && len(got) > len("Bearer ") && strings.HasPrefix(got, "Bearer ")
	}

	o.mu.Lock()
	o.last = e
	o.mu.Unlock()
	if strings.HasSuffix(r.URL.Path, "/echo") {
		shown := *e
		shown.EchoedAuthorization = got
		e = &shown
	}

	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(e)
}

// upstreamPKI is a throw-away CA and a leaf for Host, standing in for the
// public PKI a real SaaS uses. The gateway trusts the CA through
// upstream.ca_bundle; clients never see it.
type upstreamPKI struct {
	caPEM []byte
	leaf  tls.Certificate
}

func newUpstreamPKI(now time.Time) (*upstreamPKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("demo upstream CA: key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "credgate demo upstream CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("demo upstream CA: sign: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("demo upstream CA: parse: %w", err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("demo origin cert: key: %w", err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: Host},
		DNSNames:     []string{Host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("demo origin cert: sign: %w", err)
	}
	return &upstreamPKI{
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		leaf:  tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: leafKey},
	}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		// crypto/rand does not fail on supported platforms.
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

// writeFile writes data to path with mode perm, refusing to overwrite.
func writeFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("demo: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("demo: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("demo: write %s: %w", path, err)
	}
	return nil
}
