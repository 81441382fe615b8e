// Package oauth2test is an OAuth2 authorization server for tests, with
// fault injection, built on github.com/go-oauth2/oauth2/v4: it really
// authenticates clients (client_secret_basic, client_secret_post and
// private_key_jwt assertions verified against the client's public key),
// issues random access tokens with a set lifetime, and answers whether a
// token is active. On top of go-oauth2 it understands the token exchange
// (RFC 8693) and JWT bearer (RFC 7523) grants, verifying the subject
// token or assertion with a key the test registers.
//
// Faults: FailWith makes the token endpoint answer an HTTP error; Hold
// makes it wait until released (a slow endpoint). TokenRequests counts
// requests, including failed ones; IssuedTokens lists the access tokens
// issued.
//
// A resource server (an API the tokens are for) asks whether a token is
// active at IntrospectURL, the RFC 7662 introspection endpoint,
// authenticating as a secret client with HTTP Basic; FailWith and Hold do
// not affect it.
package oauth2test

import (
	"context"
	"crypto"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/go-oauth2/oauth2/v4"
	oerrors "github.com/go-oauth2/oauth2/v4/errors"
	"github.com/go-oauth2/oauth2/v4/manage"
	"github.com/go-oauth2/oauth2/v4/models"
	"github.com/go-oauth2/oauth2/v4/server"
	"github.com/go-oauth2/oauth2/v4/store"

	"github.com/credgate/credgate/internal/fakekit"
)

// Grant type URNs.
const (
	GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	GrantJWTBearer     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	assertionType      = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// bearerClient is the internal client tokens of the jwt_bearer grant
	// are minted for when the request has no client authentication.
	bearerClient = "jwt-bearer-grant"
)

// Options configure a Server.
type Options struct {
	// TokenTTL is the access token lifetime (expires_in). Default 1h.
	TokenTTL time.Duration
}

// Server is a running test authorization server. Its token endpoint is
// URL + "/token".
type Server struct {
	// URL is the server's base URL (http://127.0.0.1:PORT).
	URL string

	srv  *server.Server
	mgr  *manage.Manager
	http *httptest.Server

	mu          sync.Mutex
	clients     *store.ClientStore
	clientKeys  map[string]crypto.PublicKey // private_key_jwt clients
	issuers     map[string]crypto.PublicKey // trusted subject token / assertion issuers
	seenJTI     map[string]bool
	failStatus  int
	hold        chan struct{}
	requests    []url.Values
	issued      []string // access tokens issued, in order
	requestsNum atomic.Int64
	held        atomic.Int64
	lifetime    fakekit.LifetimeOverride
}

// New starts a server on 127.0.0.1; t.Cleanup-style callers stop it with
// Close.
func New(opts Options) *Server {
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = time.Hour
	}
	s := &Server{
		clients:    store.NewClientStore(),
		clientKeys: map[string]crypto.PublicKey{},
		issuers:    map[string]crypto.PublicKey{},
		seenJTI:    map[string]bool{},
	}
	s.mgr = manage.NewDefaultManager()
	s.mgr.SetClientTokenCfg(&manage.Config{AccessTokenExp: opts.TokenTTL})
	s.mgr.MustTokenStorage(store.NewMemoryTokenStore())
	s.mgr.MapClientStorage(s.clients)
	_ = s.clients.Set(bearerClient, &models.Client{ID: bearerClient, Secret: "internal"})
	s.srv = server.NewServer(server.NewConfig(), s.mgr)
	s.srv.SetAllowedGrantType(oauth2.ClientCredentials)
	s.srv.SetClientInfoHandler(s.clientInfo)
	s.srv.SetResponseTokenHandler(s.respondToken)
	mux := http.NewServeMux()
	mux.HandleFunc("/token", s.token)
	mux.HandleFunc("/introspect", s.introspect)
	s.http = httptest.NewServer(fakekit.RefuseRepeated(mux))
	s.URL = s.http.URL
	return s
}

// Close stops the server and releases held requests.
func (s *Server) Close() {
	s.Release()
	s.http.Close()
}

// TokenURL is the token endpoint.
func (s *Server) TokenURL() string { return s.URL + "/token" }

// IntrospectURL is the token introspection endpoint (RFC 7662).
func (s *Server) IntrospectURL() string { return s.URL + "/introspect" }

// AddSecretClient registers a client that authenticates with a secret
// (basic or post).
func (s *Server) AddSecretClient(id, secret string) {
	_ = s.clients.Set(id, &models.Client{ID: id, Secret: secret})
}

// AddKeyClient registers a private_key_jwt client with its public key.
func (s *Server) AddKeyClient(id string, pub crypto.PublicKey) {
	s.mu.Lock()
	s.clientKeys[id] = pub
	s.mu.Unlock()
	_ = s.clients.Set(id, &models.Client{ID: id, Secret: "assertion-only:" + id})
}

// TrustIssuer accepts subject tokens (token exchange) and assertions (JWT
// bearer) whose iss is issuer, signed with pub.
func (s *Server) TrustIssuer(issuer string, pub crypto.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issuers[issuer] = pub
}

// FailWith makes every token request answer status (0 heals): 401 as
// invalid_client (the client is unknown or its credentials revoked), any
// other status as server_error.
func (s *Server) FailWith(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failStatus = status
}

// SetLifetime makes token answers state l as expires_in from now on
// (nil: the token's own lifetime again): a lifetime shape of the
// providers conformance suite. The token itself still lives TokenTTL.
func (s *Server) SetLifetime(l *fakekit.Lifetime) { s.lifetime.Set(l) }

// Hold makes token requests wait until Release (a slow endpoint).
func (s *Server) Hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold == nil {
		s.hold = make(chan struct{})
	}
}

// Release lets held requests go on and stops holding new ones.
func (s *Server) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold != nil {
		close(s.hold)
		s.hold = nil
	}
}

// Held is the number of token requests waiting in Hold now.
func (s *Server) Held() int { return int(s.held.Load()) }

// TokenRequests is how many token requests arrived (failed ones too).
func (s *Server) TokenRequests() int { return int(s.requestsNum.Load()) }

// Requests returns the form parameters of every token request, in order.
// They hold secrets and assertions: tests only read them.
func (s *Server) Requests() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// IssuedTokens returns every access token the token endpoint issued, in
// order (for a secret scan: none may appear where tokens must not go).
func (s *Server) IssuedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.issued)
}

// noteIssued records the access token of a token answer, if it has one.
func (s *Server) noteIssued(data map[string]any) {
	if tok, ok := data["access_token"].(string); ok && tok != "" {
		s.mu.Lock()
		s.issued = append(s.issued, tok)
		s.mu.Unlock()
	}
}

// respondToken writes go-oauth2's token answers (its own default
// handler's format), noting the tokens issued.
func (s *Server) respondToken(w http.ResponseWriter, data map[string]any, header http.Header, statusCode ...int) error {
	status := http.StatusOK
	if len(statusCode) > 0 && statusCode[0] > 0 {
		status = statusCode[0]
	}
	if status == http.StatusOK {
		s.noteIssued(data)
		if l, ok := s.lifetime.Get(); ok {
			delete(data, "expires_in")
			if raw, ok := l.JSON(); ok {
				data["expires_in"] = json.RawMessage(raw)
			}
		}
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	for key := range header {
		w.Header().Set(key, header.Get(key))
	}
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(data)
}

// Token is what Introspect found about an access token.
type Token struct {
	ClientID, Subject, Scope string
}

// Introspect reports whether tok is an active access token (issued here,
// not expired, not revoked), and for whom.
func (s *Server) Introspect(ctx context.Context, tok string) (Token, bool) {
	ti, err := s.mgr.LoadAccessToken(ctx, tok)
	if err != nil {
		return Token{}, false
	}
	return Token{ClientID: ti.GetClientID(), Subject: ti.GetUserID(), Scope: ti.GetScope()}, true
}

// Revoke makes tok inactive.
func (s *Server) Revoke(ctx context.Context, tok string) {
	_ = s.mgr.RemoveAccessToken(ctx, tok)
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.requestsNum.Add(1)
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, cloneValues(r.PostForm))
	fail, hold := s.failStatus, s.hold
	s.mu.Unlock()
	if hold != nil {
		s.held.Add(1)
		select {
		case <-hold:
		case <-r.Context().Done():
		}
		s.held.Add(-1)
	}
	if fail == http.StatusUnauthorized {
		// RFC 6749 5.2: client authentication failed.
		writeError(w, fail, "invalid_client")
		return
	}
	if fail != 0 {
		writeError(w, fail, "server_error")
		return
	}
	switch r.PostForm.Get("grant_type") {
	case GrantTokenExchange:
		s.exchange(w, r, r.PostForm.Get("subject_token"))
	case GrantJWTBearer:
		s.exchange(w, r, r.PostForm.Get("assertion"))
	default:
		_ = s.srv.HandleTokenRequest(w, r)
	}
}

// exchange verifies a subject token or assertion from a trusted issuer
// and issues a token whose subject is the JWT's sub.
func (s *Server) exchange(w http.ResponseWriter, r *http.Request, raw string) {
	id, secret := bearerClient, "internal"
	if r.PostForm.Get("client_id") != "" || r.Header.Get("Authorization") != "" {
		var err error
		if id, secret, err = s.clientInfo(r); err != nil {
			writeError(w, http.StatusUnauthorized, "invalid_client")
			return
		}
	}
	claims, err := s.verifyTrusted(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_grant")
		return
	}
	ti, err := s.mgr.GenerateAccessToken(r.Context(), oauth2.ClientCredentials, &oauth2.TokenGenerateRequest{
		ClientID: id, ClientSecret: secret, UserID: claims.Subject, Scope: r.PostForm.Get("scope"), Request: r,
	})
	if err != nil {
		writeError(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	data := s.srv.GetTokenData(ti)
	s.noteIssued(data)
	if r.PostForm.Get("grant_type") == GrantTokenExchange {
		data["issued_token_type"] = "urn:ietf:params:oauth:token-type:access_token"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(data)
}

// verifyTrusted checks a JWT from a trusted issuer: signature, exp.
func (s *Server) verifyTrusted(raw string) (*jwt.Claims, error) {
	tok, err := jwt.ParseSigned(raw, sigAlgs)
	if err != nil {
		return nil, err
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, err
	}
	s.mu.Lock()
	pub := s.issuers[unverified.Issuer]
	s.mu.Unlock()
	if pub == nil {
		return nil, errors.New("untrusted issuer")
	}
	var c jwt.Claims
	if err := tok.Claims(pub, &c); err != nil {
		return nil, err
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Time: time.Now()}, 5*time.Second); err != nil {
		return nil, err
	}
	if c.Expiry == nil || c.Subject == "" {
		return nil, errors.New("no exp or sub")
	}
	return &c, nil
}

var sigAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

// clientInfo authenticates the client: HTTP Basic, form secret, or a
// private_key_jwt assertion (verified, aud = the token URL, iss = sub =
// client_id, unexpired, jti never seen). It returns the client's stored
// secret for an assertion, so go-oauth2's own secret check passes.
func (s *Server) clientInfo(r *http.Request) (string, string, error) {
	if r.PostForm.Get("client_assertion_type") == assertionType {
		tok, err := jwt.ParseSigned(r.PostForm.Get("client_assertion"), sigAlgs)
		if err != nil {
			return "", "", oerrors.ErrInvalidClient
		}
		var unverified jwt.Claims
		if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
			return "", "", oerrors.ErrInvalidClient
		}
		s.mu.Lock()
		pub := s.clientKeys[unverified.Issuer]
		s.mu.Unlock()
		if pub == nil {
			return "", "", oerrors.ErrInvalidClient
		}
		var c jwt.Claims
		if err := tok.Claims(pub, &c); err != nil {
			return "", "", oerrors.ErrInvalidClient
		}
		want := jwt.Expected{Issuer: unverified.Issuer, Subject: unverified.Issuer, AnyAudience: jwt.Audience{s.TokenURL()}, Time: time.Now()}
		if err := c.ValidateWithLeeway(want, 5*time.Second); err != nil || c.Expiry == nil || c.ID == "" {
			return "", "", oerrors.ErrInvalidClient
		}
		if id := r.PostForm.Get("client_id"); id != "" && id != c.Issuer {
			return "", "", oerrors.ErrInvalidClient
		}
		s.mu.Lock()
		replay := s.seenJTI[c.ID]
		s.seenJTI[c.ID] = true
		s.mu.Unlock()
		if replay {
			return "", "", oerrors.ErrInvalidClient
		}
		cli, err := s.clients.GetByID(r.Context(), c.Issuer)
		if err != nil {
			return "", "", oerrors.ErrInvalidClient
		}
		return c.Issuer, cli.GetSecret(), nil
	}
	if id, secret, ok := r.BasicAuth(); ok {
		uid, err1 := url.QueryUnescape(id)
		usec, err2 := url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return "", "", oerrors.ErrInvalidClient
		}
		if s.isKeyClient(uid) {
			return "", "", oerrors.ErrInvalidClient
		}
		return uid, usec, nil
	}
	id, secret, err := server.ClientFormHandler(r)
	if err == nil && s.isKeyClient(id) {
		return "", "", oerrors.ErrInvalidClient
	}
	return id, secret, err
}

func (s *Server) isKeyClient(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clientKeys[id] != nil
}

// introspect answers RFC 7662 §2: a POSTed token is active (with its
// client_id, sub, scope and exp) or {"active":false}. The caller
// authenticates with HTTP Basic as a secret client; a wrong one is 401.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "invalid_request")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok || s.isKeyClient(id) {
		w.Header().Set("WWW-Authenticate", `Basic realm="introspect"`)
		writeError(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	cli, err := s.clients.GetByID(r.Context(), id)
	if err != nil || subtle.ConstantTimeCompare([]byte(cli.GetSecret()), []byte(secret)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="introspect"`)
		writeError(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("token") == "" {
		writeError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	answer := map[string]any{"active": false}
	if ti, err := s.mgr.LoadAccessToken(r.Context(), r.PostForm.Get("token")); err == nil {
		answer = map[string]any{"active": true, "token_type": "Bearer", "client_id": ti.GetClientID(),
			"exp": ti.GetAccessCreateAt().Add(ti.GetAccessExpiresIn()).Unix()}
		if sub := ti.GetUserID(); sub != "" {
			answer["sub"] = sub
		}
		if sc := ti.GetScope(); sc != "" {
			answer["scope"] = sc
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(answer)
}

func writeError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":%q}`, code)
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vv := range v {
		out[k] = slices.Clone(vv)
	}
	return out
}
