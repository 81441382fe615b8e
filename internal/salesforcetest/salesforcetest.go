// Package salesforcetest is a fake of Salesforce's OAuth 2.0 JWT bearer
// flow and REST API, for tests of the salesforce provider. One TLS server
// on 127.0.0.1 plays the login host and every instance (told apart by the
// request's Host):
//
//   - POST /services/oauth2/token with grant_type
//     urn:ietf:params:oauth:grant-type:jwt-bearer: the assertion is
//     verified as Salesforce documents it: RS256 signed by the key of the
//     certificate uploaded to the connected app its iss (consumer key)
//     names (else invalid_client_id), aud the login URL (or Options.Audience), sub a user
//     pre-authorized for the app, exp after now and at most three minutes
//     ahead (a minute of skew); failures are invalid_grant with
//     Salesforce's descriptions. The answer is an access token with the
//     org's current instance_url (and no expires_in, as Salesforce);
//   - GET /services/data/vNN.N/query?q=...: on an instance host, with a
//     token issued for that instance and not revoked, a query result;
//     otherwise 401 INVALID_SESSION_ID.
//
// Migrate moves the org to another instance: new tokens name it, and the
// old instance's tokens are revoked.
//
// It exists under internal/ because it is test machinery, not API.
package salesforcetest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/credgate/credgate/internal/fakekit"
	"github.com/credgate/credgate/providers/jwtsign"
)

// ClockSkew is the skew tolerated on exp.
const ClockSkew = time.Minute

// Options configure a Server.
type Options struct {
	// Certificate is the TLS certificate; default httptest's.
	Certificate *tls.Certificate
	// Now is the server's clock; default time.Now.
	Now func() time.Time
	// Instance is the org's instance_url. Default the server's own URL.
	Instance string
	// Audience is the aud an assertion must name. Default the server's
	// URL, as for a login host that is its own audience; a test of a My
	// Domain login host sets https://login.salesforce.com, the only aud
	// Salesforce takes there (a My Domain is not an audience).
	Audience string
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	// URL is https://127.0.0.1:PORT, the login URL (the assertion's aud
	// unless Options.Audience says otherwise).
	URL string
	// Addr is 127.0.0.1:PORT.
	Addr string

	srv  *httptest.Server
	opts Options

	mu       sync.Mutex
	apps     map[string]app // by consumer key
	instance string         // current instance_url
	tokens   map[string]string
	revoked  map[string]bool
	grants   int
	fault    int
	queries  []string // instance hosts that served a query
	refusals []string
}

type app struct {
	pub   *rsa.PublicKey
	users map[string]bool
}

// New starts a Server; call Close when done.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, apps: map[string]app{}, tokens: map[string]string{}, revoked: map[string]bool{}}
	s.srv = fakekit.StartTLS(http.HandlerFunc(s.serve), opts.Certificate)
	s.URL = s.srv.URL
	s.Addr = s.srv.Listener.Addr().String()
	s.instance = opts.Instance
	if s.instance == "" {
		s.instance = s.URL
	}
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// audience is the aud an assertion must name.
func (s *Server) audience() string {
	if s.opts.Audience != "" {
		return s.opts.Audience
	}
	return s.URL
}

// Client returns an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// CertPEM returns the PEM of the server's certificate.
func (s *Server) CertPEM() []byte {
	return fakekit.CertPEM(s.srv)
}

// AddApp registers a connected app: its consumer key, the certificate
// uploaded to it (whose public key verifies assertions) and the users
// pre-authorized for it.
func (s *Server) AddApp(consumerKey string, cert *x509.Certificate, users ...string) error {
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return errors.New("salesforcetest: the connected app certificate must hold an RSA key")
	}
	a := app{pub: pub, users: map[string]bool{}}
	for _, u := range users {
		a.users[u] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apps[consumerKey] = a
	return nil
}

// Migrate moves the org to instance (an https URL): later tokens name
// it, and every token issued for another instance is revoked.
func (s *Server) Migrate(instance string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.instance = instance
	for tok, inst := range s.tokens {
		if inst != instance {
			s.revoked[tok] = true
		}
	}
}

// Fail makes the token endpoint answer status (0: normal again).
func (s *Server) Fail(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = status
}

// Grants returns how many tokens the endpoint issued.
func (s *Server) Grants() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grants
}

// Tokens returns every access token issued.
func (s *Server) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.tokens))
	for t := range s.tokens {
		out = append(out, t)
	}
	return out
}

// Queries returns the instance host of every query served, in order.
func (s *Server) Queries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.queries...)
}

// Refusals returns why each refused request was refused, in order.
func (s *Server) Refusals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.refusals...)
}

func (s *Server) refused(why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refusals = append(s.refusals, why)
}

var queryPath = regexp.MustCompile(`^/services/data/v[0-9]+\.[0-9]/query/?$`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/services/oauth2/token":
		s.token(w, r)
	case queryPath.MatchString(r.URL.Path):
		s.query(w, r)
	default:
		writeJSON(w, http.StatusNotFound, []map[string]string{{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}})
	}
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	fault := s.fault
	s.mu.Unlock()
	if fault != 0 {
		oauthError(w, fault, "unknown_error", "retry your request")
		return
	}
	if r.Method != http.MethodPost || r.ParseForm() != nil || r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		s.refused("not a JWT bearer grant")
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant type not supported")
		return
	}
	assertion := r.PostForm.Get("assertion")
	var unverified struct {
		Iss string `json:"iss"`
	}
	_ = fakekit.DecodeJWT(assertion, nil, &unverified) // an undecodable one names no app
	s.mu.Lock()
	a, ok := s.apps[unverified.Iss]
	s.mu.Unlock()
	if !ok {
		s.refused("unknown consumer key")
		oauthError(w, http.StatusBadRequest, "invalid_client_id", "client identifier invalid")
		return
	}
	_, claims, err := jwtsign.Verify(assertion, jwtsign.RS256, a.pub)
	if err != nil {
		s.refused("signature: " + err.Error())
		oauthError(w, http.StatusBadRequest, "invalid_grant", "invalid assertion")
		return
	}
	sub, _ := claims["sub"].(string)
	aud, _ := claims["aud"].(string)
	exp, okE := claims["exp"].(float64)
	now := s.opts.Now()
	switch {
	case aud != s.audience():
		s.refused("aud " + aud)
		oauthError(w, http.StatusBadRequest, "invalid_grant", "audience is invalid")
		return
	case !okE || !now.Before(time.Unix(int64(exp), 0).Add(ClockSkew)) || time.Unix(int64(exp), 0).After(now.Add(3*time.Minute+ClockSkew)):
		s.refused("exp")
		oauthError(w, http.StatusBadRequest, "invalid_grant", "expired authorization code")
		return
	case !a.users[sub]:
		s.refused("user " + sub)
		oauthError(w, http.StatusBadRequest, "invalid_grant", "user hasn't approved this consumer")
		return
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	tok := "00DFAKE!" + base64.RawURLEncoding.EncodeToString(b)
	s.mu.Lock()
	s.grants++
	inst := s.instance
	s.tokens[tok] = inst
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{
		"access_token": tok, "scope": "api", "instance_url": inst, "token_type": "Bearer",
		"id":        s.URL + "/id/00DFAKE/005FAKE",
		"issued_at": fmt.Sprint(now.UnixMilli()),
	})
}

func (s *Server) query(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	inst, issued := s.tokens[tok]
	revoked := s.revoked[tok]
	s.mu.Unlock()
	u, _ := url.Parse(inst)
	if !issued || revoked || u == nil || !strings.EqualFold(u.Hostname(), host) {
		s.refused("session for " + host)
		writeJSON(w, http.StatusUnauthorized, []map[string]string{{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}})
		return
	}
	if r.URL.Query().Get("q") == "" {
		writeJSON(w, http.StatusBadRequest, []map[string]string{{"message": "q is required", "errorCode": "MALFORMED_QUERY"}})
		return
	}
	s.mu.Lock()
	s.queries = append(s.queries, host)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"totalSize": 1, "done": true,
		"records": []map[string]any{{
			"attributes": map[string]string{"type": "Account", "url": "/services/data/v62.0/sobjects/Account/001FAKE"},
			"Id":         "001FAKE", "Name": "Acme on " + host,
		}},
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
