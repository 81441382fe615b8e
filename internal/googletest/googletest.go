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
//     answers {"email": ...}; 401 otherwise. A federated access token
//     from the STS below is accepted too (as its principal);
//   - POST /token with an assertion carrying target_audience and no scope
//     (Google's service-account ID token flow): the answer is
//     {"id_token": ...}, an RS256 ID token signed by the fake's own
//     Google key (iss Options.IDTokenIssuer, aud the target audience,
//     sub and email the account, exp an hour on);
//   - GET /oauth2/v3/certs: the JWKS of that key, for services that
//     verify the ID tokens (Cloud Run, IAP);
//   - POST /v1/token: Google's Security Token Service, the RFC 8693 token
//     exchange of workload identity federation. The audience names a
//     Pool added with AddPool; the subject token's signature is verified
//     with the key its kid names in the pool's JWKS, its iss must be the
//     pool's issuer, its aud one of the pool's allowed audiences, its
//     exp in the future. The answer is a federated access token of the
//     principal principal://iam.googleapis.com/projects/N/locations/
//     global/workloadIdentityPools/P/subject/SUB;
//   - POST /v1/projects/-/serviceAccounts/EMAIL:generateAccessToken and
//     :generateIdToken: the IAM Credentials API. Only a federated token
//     the fake issued (Bearer) is accepted (401 otherwise), and only for
//     an account whose WorkloadUsers list its principal or its pool's
//     principalSet (403 otherwise). generateAccessToken answers an access
//     token for the account and the requested scopes (accepted by the
//     API above); generateIdToken an ID token as the token endpoint's.
//
// It exists under internal/ because it is test machinery, not API.
package googletest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/credgate/credgate/internal/fakekit"
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
	// IDTokenIssuer is the iss of the ID tokens the fake signs. Default
	// https://accounts.google.com.
	IDTokenIssuer string
}

// Pool is a workload identity pool provider that trusts one OIDC issuer.
type Pool struct {
	// Provider is the pool provider's name, the STS audience:
	// //iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X.
	Provider string
	// Issuer is the issuer the provider trusts: the subject token's iss.
	Issuer string
	// JWKS is the issuer's key set (the provider's jwksJson).
	JWKS jose.JSONWebKeySet
	// AllowedAudiences are the audiences a subject token may carry (one
	// of them). Default: the provider's name with https: in front, as
	// Google's default.
	AllowedAudiences []string
}

// poolPath is //iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P.
func (p Pool) poolPath() string {
	path, _, _ := strings.Cut(p.Provider, "/providers/")
	return path
}

// Principal is the principal:// identifier of a subject of the pool.
func (p Pool) Principal(subject string) string {
	return "principal:" + p.poolPath() + "/subject/" + subject
}

// PrincipalSet is the principalSet:// identifier of every identity of the pool.
func (p Pool) PrincipalSet() string {
	return "principalSet:" + p.poolPath() + "/*"
}

// Account is a service account with one key.
type Account struct {
	Email string
	KeyID string
	Key   *rsa.PrivateKey
	// WorkloadUsers are the federated principals allowed to impersonate
	// the account (roles/iam.workloadIdentityUser): Pool.Principal or
	// Pool.PrincipalSet values.
	WorkloadUsers []string
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
	// JWKSURL is URL + "/oauth2/v3/certs", the ID tokens' keys; STSURL is
	// URL + "/v1/token".
	JWKSURL, STSURL string

	srv  *httptest.Server
	opts Options

	mu       sync.Mutex
	accounts map[string]Account // by email
	tokens   map[string]issued
	grants   int
	fault    int
	apiCalls []string // emails the API served

	idKey          *rsa.PrivateKey
	idSigner       jwtsign.Signer
	pools          map[string]Pool // by provider name
	feds           map[string]federated
	exchanges      int
	impersonations int
	idTokens       int
	lifetime       fakekit.LifetimeOverride
	impLifetime    fakekit.LifetimeOverride
}

// federated is a federated access token the STS issued.
type federated struct {
	principal string
	pool      Pool
	scopes    []string
	expires   time.Time
}

// idTokenKeyID is the kid of the fake's ID token key.
const idTokenKeyID = "fake-google-id-1"

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
	if opts.IDTokenIssuer == "" {
		opts.IDTokenIssuer = "https://accounts.google.com"
	}
	idKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(fmt.Sprintf("googletest: generate the ID token key: %v", err))
	}
	idSigner, err := jwtsign.NewFromKey(idKey, jwtsign.RS256, idTokenKeyID)
	if err != nil {
		panic(fmt.Sprintf("googletest: ID token signer: %v", err))
	}
	s := &Server{opts: opts, accounts: map[string]Account{}, tokens: map[string]issued{},
		idKey: idKey, idSigner: idSigner, pools: map[string]Pool{}, feds: map[string]federated{}}
	s.srv = fakekit.StartTLS(http.HandlerFunc(s.serve), opts.Certificate)
	s.URL = s.srv.URL
	s.TokenURL = s.URL + "/token"
	s.JWKSURL = s.URL + "/oauth2/v3/certs"
	s.STSURL = s.URL + "/v1/token"
	s.Addr = s.srv.Listener.Addr().String()
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// CertPEM returns the PEM of the server's certificate.
func (s *Server) CertPEM() []byte {
	return fakekit.CertPEM(s.srv)
}

// Client returns an HTTP client trusting the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// AddAccount registers a service account and its key.
func (s *Server) AddAccount(a Account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts[a.Email] = a
}

// Fail makes the token endpoint and the STS answer status (0 restores
// service): 401 as invalid_client (a deleted key or disabled account),
// any other status as internal_failure.
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

// SetLifetime makes the token endpoint's and the STS's answers state l
// as expires_in from now on (nil: 3599 again): a lifetime shape of the
// providers conformance suite. The token itself still lives an hour.
func (s *Server) SetLifetime(l *fakekit.Lifetime) { s.lifetime.Set(l) }

// SetImpersonationLifetime makes generateAccessToken answers state l as
// expireTime from now on (nil: the token's own again): a lifetime shape
// of the providers conformance suite. The token itself still lives its
// requested lifetime.
func (s *Server) SetImpersonationLifetime(l *fakekit.Lifetime) { s.impLifetime.Set(l) }

// expiresIn sets the answer's expires_in: 3599, or the lifetime set.
func (s *Server) expiresIn(answer map[string]any) map[string]any {
	answer["expires_in"] = 3599
	if l, ok := s.lifetime.Get(); ok {
		delete(answer, "expires_in")
		if raw, ok := l.JSON(); ok {
			answer["expires_in"] = json.RawMessage(raw)
		}
	}
	return answer
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
	// Dated on the server's clock (Options.Now), as a real server dates
	// its answers: a test can skew it.
	w.Header().Set("Date", s.opts.Now().UTC().Format(http.TimeFormat))
	switch {
	case r.URL.Path == "/token" && r.Method == http.MethodPost:
		s.token(w, r)
	case r.URL.Path == "/oauth2/v3/certs" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.IDTokenJWKS())
	case r.URL.Path == "/v1/token" && r.Method == http.MethodPost:
		s.sts(w, r)
	case strings.HasPrefix(r.URL.Path, "/v1/projects/-/serviceAccounts/") && r.Method == http.MethodPost:
		s.iamCredentials(w, r)
	default:
		s.api(w, r)
	}
}

// claims are the JWT claims the fake reads.
type claims struct {
	Iss   string `json:"iss"`
	Sub   string `json:"sub"`
	Aud   string `json:"aud"`
	Scope string `json:"scope"`
	// TargetAudience asks for an ID token.
	TargetAudience string `json:"target_audience"`
	Iat            *int64 `json:"iat"`
	Exp            *int64 `json:"exp"`
}

// verify checks a JWT of a known account: signature by the key kid names,
// iat/exp within an hour and the skew.
func (s *Server) verify(raw string) (claims, error) {
	var c claims
	var hdr struct {
		Kid string `json:"kid"`
	}
	if err := fakekit.DecodeJWT(raw, &hdr, &c); err != nil {
		return c, err
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
	case c.TargetAudience != "" && c.Scope != "":
		oauthError(w, http.StatusBadRequest, "invalid_request", "Either scope or target_audience, not both.")
		return
	case c.TargetAudience != "":
		tok, err := s.signIDToken(r, c.Iss, c.TargetAudience)
		if err != nil {
			oauthError(w, http.StatusInternalServerError, "internal_failure", "sign")
			return
		}
		s.mu.Lock()
		s.grants++
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"id_token": tok})
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
	writeJSON(w, http.StatusOK, s.expiresIn(map[string]any{"access_token": tok, "token_type": "Bearer"}))
}

func (s *Server) api(w http.ResponseWriter, r *http.Request) {
	raw, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	email := ""
	if e, _, scopes, ok := s.TokenInfo(raw); ok && slices.Contains(scopes, s.opts.APIScope) {
		email = e
	} else if f, ok := s.federatedToken(raw); ok && slices.Contains(f.scopes, s.opts.APIScope) {
		email = f.principal
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

// IDTokenJWKS is the key set of the ID tokens the fake signs (served at
// JWKSURL).
func (s *Server) IDTokenJWKS() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &s.idKey.PublicKey, KeyID: idTokenKeyID, Algorithm: string(jose.RS256), Use: "sig"}}}
}

// IDTokenIssuer is the iss of the fake's ID tokens.
func (s *Server) IDTokenIssuer() string { return s.opts.IDTokenIssuer }

// AddPool registers a workload identity pool provider.
func (s *Server) AddPool(p Pool) {
	if len(p.AllowedAudiences) == 0 {
		p.AllowedAudiences = []string{"https:" + p.Provider}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pools[p.Provider] = p
}

// Exchanges returns how many federated tokens the STS issued.
func (s *Server) Exchanges() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exchanges
}

// Impersonations returns how many tokens the IAM Credentials API issued.
func (s *Server) Impersonations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.impersonations
}

// FederatedTokens returns the federated tokens the STS issued.
func (s *Server) FederatedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for t := range s.feds {
		out = append(out, t)
	}
	return out
}

// signIDToken signs an ID token of the account for audience.
func (s *Server) signIDToken(r *http.Request, email, audience string) (string, error) {
	now := s.opts.Now()
	tok, err := s.idSigner.Sign(r.Context(), nil, map[string]any{
		"iss": s.opts.IDTokenIssuer, "aud": audience, "azp": email, "sub": email, "email": email, "email_verified": true,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	if err == nil {
		s.mu.Lock()
		s.idTokens++
		s.mu.Unlock()
	}
	return tok, err
}

func (s *Server) federatedToken(tok string) (federated, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.feds[tok]
	return f, ok && s.opts.Now().Before(f.expires)
}

// sts is Google's Security Token Service token exchange.
func (s *Server) sts(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	fault := s.fault
	s.mu.Unlock()
	if fault == http.StatusUnauthorized {
		oauthError(w, fault, "invalid_client", "The caller is not authorized.")
		return
	}
	if fault != 0 {
		oauthError(w, fault, "internal_failure", http.StatusText(fault))
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "Invalid form")
		return
	}
	f := r.PostForm
	switch {
	case f.Get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange":
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type")
		return
	case f.Get("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token":
		oauthError(w, http.StatusBadRequest, "invalid_request", "Invalid requested_token_type")
		return
	case f.Get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt" && f.Get("subject_token_type") != "urn:ietf:params:oauth:token-type:id_token":
		oauthError(w, http.StatusBadRequest, "invalid_request", "Invalid subject_token_type")
		return
	case f.Get("scope") == "":
		oauthError(w, http.StatusBadRequest, "invalid_scope", "Missing scope")
		return
	}
	s.mu.Lock()
	pool, ok := s.pools[f.Get("audience")]
	s.mu.Unlock()
	if !ok {
		oauthError(w, http.StatusBadRequest, "invalid_target", "The target service indicated by the \"audience\" parameters is invalid.")
		return
	}
	sub, refusal := s.verifySubject(pool, f.Get("subject_token"))
	if refusal != "" {
		oauthError(w, http.StatusBadRequest, "invalid_grant", refusal)
		return
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	tok := "ya29.fed-" + hex.EncodeToString(b)
	s.mu.Lock()
	s.feds[tok] = federated{principal: pool.Principal(sub), pool: pool, scopes: strings.Fields(f.Get("scope")), expires: s.opts.Now().Add(time.Hour)}
	s.exchanges++
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, s.expiresIn(map[string]any{"access_token": tok, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
		"token_type": "Bearer"}))
}

// verifySubject verifies a subject token against the pool's issuer and
// key set, and returns its subject, or Google's error_description.
func (s *Server) verifySubject(pool Pool, raw string) (sub, refusal string) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.PS256, jose.EdDSA})
	if err != nil {
		return "", "Unable to parse the ID Token."
	}
	// A key that names its algorithm (RFC 7517 §4.4) verifies only that
	// one; go-jose picks the key by kid but does not compare the two.
	if h := tok.Headers[0]; len(pool.JWKS.Key(h.KeyID)) > 0 {
		if ka := pool.JWKS.Key(h.KeyID)[0].Algorithm; ka != "" && ka != h.Algorithm {
			return "", "Invalid ID Token signature."
		}
	}
	var c jwt.Claims
	if err := tok.Claims(pool.JWKS, &c); err != nil {
		return "", "Invalid ID Token signature."
	}
	if c.Issuer != pool.Issuer {
		return "", "The issuer in ID Token does not match the expected issuer."
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Time: s.opts.Now()}, ClockSkew); err != nil || c.Expiry == nil {
		return "", "The ID Token has expired or is not yet valid."
	}
	if !slices.ContainsFunc(pool.AllowedAudiences, func(a string) bool { return c.Audience.Contains(a) }) {
		return "", "The audience in ID Token does not match the expected audience."
	}
	if c.Subject == "" {
		return "", "The ID Token has no subject."
	}
	return c.Subject, ""
}

func apiError(w http.ResponseWriter, status int, st, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": status, "message": msg, "status": st}})
}

// iamCredentials is generateAccessToken and generateIdToken.
func (s *Server) iamCredentials(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/v1/projects/-/serviceAccounts/")
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		apiError(w, http.StatusNotFound, "NOT_FOUND", "Unknown method.")
		return
	}
	email, method := rest[:i], rest[i+1:]
	raw, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	fed, ok := s.federatedToken(raw)
	if !ok {
		apiError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
		return
	}
	s.mu.Lock()
	a, known := s.accounts[email]
	s.mu.Unlock()
	allowed := known && (slices.Contains(a.WorkloadUsers, fed.principal) || slices.Contains(a.WorkloadUsers, fed.pool.PrincipalSet()))
	if !allowed || !slices.Contains(fed.scopes, "https://www.googleapis.com/auth/cloud-platform") {
		apiError(w, http.StatusForbidden, "PERMISSION_DENIED", "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).")
		return
	}
	var body struct {
		Scope        []string `json:"scope"`
		Lifetime     string   `json:"lifetime"`
		Audience     string   `json:"audience"`
		IncludeEmail bool     `json:"includeEmail"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		apiError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid JSON payload.")
		return
	}
	switch method {
	case "generateAccessToken":
		life := time.Hour
		if body.Lifetime != "" {
			d, err := time.ParseDuration(body.Lifetime)
			if err != nil || !strings.HasSuffix(body.Lifetime, "s") || d <= 0 || d > 12*time.Hour {
				apiError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid lifetime.")
				return
			}
			life = d
		}
		if len(body.Scope) == 0 {
			apiError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Scope required.")
			return
		}
		b := make([]byte, 24)
		_, _ = rand.Read(b)
		tok := "ya29.imp-" + hex.EncodeToString(b)
		exp := s.opts.Now().Add(life)
		s.mu.Lock()
		s.tokens[tok] = issued{email: email, scopes: body.Scope, expires: exp}
		s.impersonations++
		s.mu.Unlock()
		answer := map[string]any{"accessToken": tok, "expireTime": exp.UTC().Format(time.RFC3339)}
		if l, ok := s.impLifetime.Get(); ok {
			delete(answer, "expireTime")
			if raw, ok := l.Instant(s.opts.Now()); ok {
				answer["expireTime"] = json.RawMessage(raw)
			}
		}
		writeJSON(w, http.StatusOK, answer)
	case "generateIdToken":
		if body.Audience == "" {
			apiError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Audience required.")
			return
		}
		tok, err := s.signIDToken(r, email, body.Audience)
		if err != nil {
			apiError(w, http.StatusInternalServerError, "INTERNAL", "sign")
			return
		}
		s.mu.Lock()
		s.impersonations++
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"token": tok})
	default:
		apiError(w, http.StatusNotFound, "NOT_FOUND", "Unknown method.")
	}
}
