// Package googletest is a fake of Google's OAuth 2.0 token endpoint for
// service accounts and of a googleapis.com API, for tests of the google
// provider. Over TLS on 127.0.0.1 it serves
//
//   - POST /token: the JWT bearer grant (grant_type
//     urn:ietf:params:oauth:grant-type:jwt-bearer). The assertion is
//     verified as Google documents: RS256, signed by the key its kid names
//     of the service account its iss names, aud the token URL, iat not in
//     the future and exp at most an hour after iat (a minute of skew), a
//     scope claim. The answer is an access token for the account and
//     scopes, expires_in 3599;
//   - any other path: an API that accepts a bearer access token it issued
//     with the scope Options.APIScope, or a self-signed JWT of a known
//     account whose aud is https://HOST/ (HOST the request's Host, or
//     Options.APIAudienceHost) or whose scope claim includes APIScope, and
//     answers {"email": ...}; 401 otherwise.
//
// It exists under internal/ because it is test machinery, not API.
package googletest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/credgate/credgate/providers/jwtsign"
)

// ClockSkew is the skew tolerated on iat and exp.
const ClockSkew = time.Minute

// Options configure a Server.
type Options struct {
	// Certificate is the TLS certificate; default httptest's.
	Certificate *tls.Certificate
	// Now is the server's clock; default time.Now.
	Now func() time.Time
	// APIScope is the scope the fake API requires. Default
	// https://www.googleapis.com/auth/cloud-platform.
	APIScope string
	// APIAudienceHost, if set, is the host a self-signed JWT's aud must
	// name (https://HOST/), instead of the request's Host.
	APIAudienceHost string
}

// Account is a service account with one key.
type Account struct {
	Email string
	KeyID string
	Key   *rsa.PrivateKey
}

// JSONKey returns the account's JSON key file content, with token_uri.
func (a Account) JSONKey(tokenURI string) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(a.Key)
	if err != nil {
		return nil, fmt.Errorf("googletest: marshal the key: %w", err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return json.Marshal(map[string]string{
		"type": "service_account", "project_id": "fake-project", "private_key_id": a.KeyID,
		"private_key": string(pemKey), "client_email": a.Email, "client_id": "1",
		"token_uri": tokenURI,
	})
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	// URL is https://127.0.0.1:PORT; TokenURL is URL + "/token".
	URL, TokenURL string
	// Addr is 127.0.0.1:PORT.
	Addr string

	srv  *httptest.Server
	opts Options

	mu       sync.Mutex
	accounts map[string]Account // by email
	tokens   map[string]issued
	grants   int
	fault    int
	apiCalls []string // emails the API served
}

type issued struct {
	email, sub string
	scopes     []string
	expires    time.Time
}

// New starts a Server; call Close when done.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.APIScope == "" {
		opts.APIScope = "https://www.googleapis.com/auth/cloud-platform"
	}
	s := &Server{opts: opts, accounts: map[string]Account{}, tokens: map[string]issued{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if opts.Certificate != nil {
		s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{*opts.Certificate}}
	}
	s.srv.StartTLS()
	s.URL = s.srv.URL
	s.TokenURL = s.URL + "/token"
	s.Addr = s.srv.Listener.Addr().String()
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// CertPEM returns the PEM of the server's certificate.
func (s *Server) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// Client returns an HTTP client trusting the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// AddAccount registers a service account and its key.
func (s *Server) AddAccount(a Account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts[a.Email] = a
}

// Fail makes the token endpoint answer status (0 restores service): 401
// as invalid_client (a deleted key or disabled account), any other status
// as internal_failure.
func (s *Server) Fail(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = status
}

// Grants returns how many access tokens were issued.
func (s *Server) Grants() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grants
}

// Tokens returns the access tokens issued.
func (s *Server) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for t := range s.tokens {
		out = append(out, t)
	}
	return out
}

// TokenInfo returns the account, subject and scopes of an access token.
func (s *Server) TokenInfo(tok string) (email, sub string, scopes []string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.tokens[tok]
	if !ok || !s.opts.Now().Before(in.expires) {
		return "", "", nil, false
	}
	return in.email, in.sub, slices.Clone(in.scopes), true
}

// APICalls returns the accounts the API served, in order.
func (s *Server) APICalls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.apiCalls)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" && r.Method == http.MethodPost {
		s.token(w, r)
		return
	}
	s.api(w, r)
}

// claims are the JWT claims the fake reads.
type claims struct {
	Iss   string `json:"iss"`
	Sub   string `json:"sub"`
	Aud   string `json:"aud"`
	Scope string `json:"scope"`
	Iat   *int64 `json:"iat"`
	Exp   *int64 `json:"exp"`
}

// verify checks a JWT of a known account: signature by the key kid names,
// iat/exp within an hour and the skew.
func (s *Server) verify(raw string) (claims, error) {
	var c claims
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return c, fmt.Errorf("not a JWT")
	}
	var hdr struct {
		Kid string `json:"kid"`
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	if err1 != nil || err2 != nil || json.Unmarshal(hb, &hdr) != nil || json.Unmarshal(cb, &c) != nil {
		return c, fmt.Errorf("not a JWT")
	}
	s.mu.Lock()
	a, ok := s.accounts[c.Iss]
	s.mu.Unlock()
	if !ok {
		return c, fmt.Errorf("invalid_client")
	}
	if hdr.Kid != a.KeyID {
		return c, fmt.Errorf("invalid_client")
	}
	if _, _, err := jwtsign.Verify(raw, jwtsign.RS256, &a.Key.PublicKey); err != nil {
		//lint:ignore ST1005 Google's own words
		return c, fmt.Errorf("Invalid JWT Signature.")
	}
	now := s.opts.Now()
	if c.Iat == nil || c.Exp == nil || time.Unix(*c.Iat, 0).After(now.Add(ClockSkew)) ||
		!time.Unix(*c.Exp, 0).After(now.Add(-ClockSkew)) || *c.Exp-*c.Iat > int64(time.Hour.Seconds()) {
		//lint:ignore ST1005 Google's own words
		return c, fmt.Errorf("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
	}
	return c, nil
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	fault := s.fault
	s.mu.Unlock()
	if fault == http.StatusUnauthorized {
		oauthError(w, fault, "invalid_client", "The OAuth client was not found.")
		return
	}
	if fault != 0 {
		oauthError(w, fault, "internal_failure", http.StatusText(fault))
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type")
		return
	}
	c, err := s.verify(r.PostForm.Get("assertion"))
	switch {
	case err != nil && err.Error() == "invalid_client":
		oauthError(w, http.StatusUnauthorized, "invalid_client", "The OAuth client was not found.")
		return
	case err != nil:
		oauthError(w, http.StatusBadRequest, "invalid_grant", err.Error())
		return
	case c.Aud != s.TokenURL:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT: Failed audience check.")
		return
	case c.Scope == "":
		oauthError(w, http.StatusBadRequest, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
		return
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	tok := "ya29.fake-" + hex.EncodeToString(b)
	s.mu.Lock()
	s.tokens[tok] = issued{email: c.Iss, sub: c.Sub, scopes: strings.Fields(c.Scope), expires: s.opts.Now().Add(time.Hour)}
	s.grants++
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "expires_in": 3599, "token_type": "Bearer"})
}

func (s *Server) api(w http.ResponseWriter, r *http.Request) {
	raw, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	email := ""
	if e, _, scopes, ok := s.TokenInfo(raw); ok && slices.Contains(scopes, s.opts.APIScope) {
		email = e
	} else if c, err := s.verify(raw); err == nil && c.Sub == c.Iss {
		host := s.opts.APIAudienceHost
		if host == "" {
			host = r.Host
		}
		if c.Aud == "https://"+host+"/" || slices.Contains(strings.Fields(c.Scope), s.opts.APIScope) {
			email = c.Iss
		}
	}
	if email == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/"`)
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{"code": 401, "status": "UNAUTHENTICATED"}})
		return
	}
	s.mu.Lock()
	s.apiCalls = append(s.apiCalls, email)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"email": email, "path": r.URL.Path})
}
