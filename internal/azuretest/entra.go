// Package azuretest holds fakes of Microsoft Entra ID's token endpoint and
// of Azure Blob Storage, for tests of the azure provider and the
// azure-sharedkey injector. Both verify what they receive as Microsoft
// documents it; neither trusts the caller.
//
// Entra (NewEntra) serves POST /{tenant}/oauth2/v2.0/token, the OAuth 2.0
// client credentials grant of the Microsoft identity platform:
// grant_type=client_credentials, client_id, scope=<resource>/.default and
// one of
//
//   - client_secret, compared with the application's secret;
//   - client_assertion (client_assertion_type
//     urn:ietf:params:oauth:client-assertion-type:jwt-bearer) signed by the
//     private key of a certificate registered with the application: the
//     x5t#S256 header names the certificate (SHA-256 of its DER), the
//     signature verifies with its public key, aud is the token endpoint,
//     iss = sub = the client ID, jti is set, and nbf/exp are current and at
//     most an hour apart (Options.Skew of skew);
//   - client_assertion being a federated token of another issuer: its
//     iss, sub and aud must match a federated identity credential of the
//     application, its signature verifies with the issuer's JWKS, and it
//     is current (its lifetime is the issuer's business).
//
// Failures are answered as Entra does: 400/401 with error,
// error_description "AADSTSnnnn: ...", error_codes, trace_id and
// correlation_id. Tokens are opaque; TokenInfo tells an API fake whom one
// was issued to and for which resource.
//
// Storage (NewStorage) is one storage account's Blob service: Create
// Container, Put Blob, Get Blob, Get Blob Properties, Delete Blob and
// List Blobs, enough for azblob's client. Every request must carry
// Authorization "SharedKey ACCOUNT:SIGNATURE", recomputed over the
// documented StringToSign with the account key, an x-ms-version and an
// x-ms-date within 15 minutes; or, with Options.CheckBearer, an Entra
// bearer token and an x-ms-version of 2017-11-09 or later.
//
// The package is test machinery, hence under internal/.
package azuretest

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/credgate/credgate/internal/fakekit"
	"github.com/credgate/credgate/providers/jwtsign"
)

// Assertion types and audiences Entra documents.
const (
	AssertionTypeJWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// FederatedAudience is the audience Entra recommends for federated
	// identity credentials.
	FederatedAudience = "api://AzureADTokenExchange"
	// TokenLifetime is the expires_in of issued tokens.
	TokenLifetime = 3599 * time.Second
)

// EntraOptions configure an Entra fake.
type EntraOptions struct {
	// Certificate is the TLS certificate; default httptest's.
	Certificate *tls.Certificate
	// Now is the server's clock; default time.Now.
	Now func() time.Time
	// Skew is the clock skew tolerated on assertion lifetimes. Default 5m
	// (Entra's).
	Skew time.Duration
}

// App is an application registration in a tenant.
type App struct {
	// Tenant is the directory (tenant) ID or a verified domain.
	Tenant string
	// ClientID is the application (client) ID.
	ClientID string
	// Secret is a client secret's value, "" for none.
	Secret string
	// Certificates are the certificates uploaded to the registration.
	Certificates []*x509.Certificate
	// Federated are the federated identity credentials.
	Federated []FederatedCredential
}

// FederatedCredential trusts tokens of an outside issuer for the app.
type FederatedCredential struct {
	// Issuer, Subject and Audience must equal the token's iss, sub and
	// (one of) aud. Audience defaults to FederatedAudience.
	Issuer, Subject, Audience string
	// JWKS is the issuer's published key set.
	JWKS jose.JSONWebKeySet
}

// Entra is the fake token endpoint. Its methods are safe for concurrent
// use.
type Entra struct {
	// URL is https://127.0.0.1:PORT, the authority host.
	URL string
	// Addr is 127.0.0.1:PORT.
	Addr string

	srv  *httptest.Server
	opts EntraOptions

	mu      sync.Mutex
	apps    map[string]App // by tenant + "/" + client ID
	issued  *fakekit.TokenStore[Issued]
	fault   int
	stall   chan struct{} // non-nil while stalled; closed to release
	refused []string      // AADSTS codes answered
	jtis    map[string]bool
	life    fakekit.LifetimeOverride
}

// SetLifetime makes token answers state l as expires_in (and
// ext_expires_in) from now on (nil: TokenLifetime again): a lifetime
// shape of the providers conformance suite. The token itself still
// lives TokenLifetime.
func (e *Entra) SetLifetime(l *fakekit.Lifetime) { e.life.Set(l) }

// Issued describes an access token the fake issued.
type Issued struct {
	Tenant, ClientID, Resource string
	// Method is "secret", "certificate" or "federated".
	Method string
	// Subject is the federated token's sub, for Method federated.
	Subject string
	Expires time.Time
}

// NewEntra starts an Entra fake; it is closed when t's test ends.
func NewEntra(opts EntraOptions) *Entra {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Skew == 0 {
		opts.Skew = 5 * time.Minute
	}
	e := &Entra{opts: opts, apps: map[string]App{}, issued: fakekit.NewTokenStore[Issued](opts.Now), jtis: map[string]bool{}}
	e.srv = fakekit.StartTLS(http.HandlerFunc(e.serve), opts.Certificate)
	e.URL = e.srv.URL
	e.Addr = e.srv.Listener.Addr().String()
	return e
}

// Close stops the server.
func (e *Entra) Close() {
	e.Stall(false)
	e.srv.Close()
}

// Client returns an HTTP client trusting the server's certificate.
func (e *Entra) Client() *http.Client { return e.srv.Client() }

// CertPEM returns the PEM of the server's TLS certificate.
func (e *Entra) CertPEM() []byte { return certPEM(e.srv.Certificate()) }

// TokenURL returns the token endpoint of tenant.
func (e *Entra) TokenURL(tenant string) string { return e.URL + "/" + tenant + "/oauth2/v2.0/token" }

// AddApp registers an application.
func (e *Entra) AddApp(a App) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.apps[a.Tenant+"/"+a.ClientID] = a
}

// Fail makes the token endpoint answer status (0 restores service).
func (e *Entra) Fail(status int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fault = status
}

// Stall makes the token endpoint hold requests until the client gives up
// (false restores service).
func (e *Entra) Stall(on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case on && e.stall == nil:
		e.stall = make(chan struct{})
	case !on && e.stall != nil:
		close(e.stall)
		e.stall = nil
	}
}

// Grants returns how many tokens were issued.
func (e *Entra) Grants() int { return e.issued.Grants() }

// Refused returns the AADSTS codes of refused token requests, in order.
func (e *Entra) Refused() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.refused...)
}

// Tokens returns the access tokens issued.
func (e *Entra) Tokens() []string { return e.issued.Tokens() }

// TokenInfo returns what an unexpired token was issued for.
func (e *Entra) TokenInfo(tok string) (Issued, bool) { return e.issued.Info(tok) }

// CheckToken returns nil when tok is an unexpired token for resource.
func (e *Entra) CheckToken(tok, resource string) error { return e.issued.Check(tok, resource) }

// entraError is Entra's error answer.
type entraError struct {
	status int
	code   string // error
	aadsts int
	desc   string
}

func (e *Entra) fail(w http.ResponseWriter, ee entraError) {
	e.mu.Lock()
	e.refused = append(e.refused, fmt.Sprintf("AADSTS%d", ee.aadsts))
	e.mu.Unlock()
	writeJSON(w, ee.status, map[string]any{
		"error":             ee.code,
		"error_description": fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s", ee.aadsts, ee.desc, newID(), newID(), e.opts.Now().UTC().Format("2006-01-02 15:04:05Z")),
		"error_codes":       []int{ee.aadsts},
		"timestamp":         e.opts.Now().UTC().Format("2006-01-02 15:04:05Z"),
		"trace_id":          newID(),
		"correlation_id":    newID(),
	})
}

func (e *Entra) serve(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	fault, stall := e.fault, e.stall
	e.mu.Unlock()
	w.Header().Set("Date", e.opts.Now().UTC().Format(http.TimeFormat))
	if stall != nil {
		// Read the body, so that the server notices the client leaving.
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		select {
		case <-r.Context().Done():
			// Never answer a stalled request: abort it (no 200 with an
			// empty body for a client that is still reading).
			panic(http.ErrAbortHandler)
		case <-stall:
			panic(http.ErrAbortHandler)
		}
	}
	if fault != 0 {
		e.fail(w, entraError{fault, "temporarily_unavailable", 90033, "A transient error has occurred. Please try again."})
		return
	}
	tenant, ok := strings.CutSuffix(r.URL.Path, "/oauth2/v2.0/token")
	tenant = strings.TrimPrefix(tenant, "/")
	if !ok || r.Method != http.MethodPost || tenant == "" || strings.Contains(tenant, "/") {
		http.NotFound(w, r)
		return
	}
	if err := r.ParseForm(); err != nil || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		e.fail(w, entraError{400, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'."})
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != "client_credentials" {
		e.fail(w, entraError{400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."})
		return
	}
	scope := f.Get("scope")
	resource, ok := strings.CutSuffix(scope, "/.default")
	if !ok || resource == "" || strings.Contains(scope, " ") {
		e.fail(w, entraError{400, "invalid_scope", 1002012, "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."})
		return
	}
	e.mu.Lock()
	app, known := e.apps[tenant+"/"+f.Get("client_id")]
	tenantKnown := false
	for _, a := range e.apps {
		tenantKnown = tenantKnown || a.Tenant == tenant
	}
	e.mu.Unlock()
	switch {
	case !tenantKnown:
		e.fail(w, entraError{400, "invalid_request", 90002, "Tenant '" + tenant + "' not found."})
		return
	case !known:
		e.fail(w, entraError{400, "unauthorized_client", 700016, "Application with identifier '" + f.Get("client_id") + "' was not found in the directory."})
		return
	}
	iss := Issued{Tenant: tenant, ClientID: app.ClientID, Resource: resource}
	secret, assertion := f.Get("client_secret"), f.Get("client_assertion")
	switch {
	case secret != "" && assertion != "":
		e.fail(w, entraError{400, "invalid_request", 7000218, "The request must contain only one of 'client_assertion' or 'client_secret'."})
		return
	case secret != "":
		if app.Secret == "" || !equal(secret, app.Secret) {
			e.fail(w, entraError{401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID."})
			return
		}
		iss.Method = "secret"
	case assertion != "":
		if f.Get("client_assertion_type") != AssertionTypeJWT {
			e.fail(w, entraError{400, "invalid_request", 50027, "client_assertion_type is not " + AssertionTypeJWT + "."})
			return
		}
		var ee *entraError
		iss.Method, iss.Subject, ee = e.verifyAssertion(app, assertion, e.TokenURLFor(r, tenant))
		if ee != nil {
			e.fail(w, *ee)
			return
		}
	default:
		e.fail(w, entraError{401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."})
		return
	}
	tok := "eyFake." + newID() + newID()
	iss.Expires = e.opts.Now().Add(TokenLifetime)
	e.issued.Add(tok, iss, iss.Resource, iss.Expires)
	answer := map[string]any{"token_type": "Bearer", "expires_in": int(TokenLifetime.Seconds()),
		"ext_expires_in": int(TokenLifetime.Seconds()), "access_token": tok}
	if l, ok := e.life.Get(); ok {
		delete(answer, "expires_in")
		delete(answer, "ext_expires_in")
		if raw, ok := l.JSON(); ok {
			answer["expires_in"] = json.RawMessage(raw)
			answer["ext_expires_in"] = json.RawMessage(raw)
		}
	}
	writeJSON(w, http.StatusOK, answer)
}

// TokenURLFor is the token endpoint as the client addressed it (the Host
// it called, which a gateway's resolve setting may map to this server).
func (e *Entra) TokenURLFor(r *http.Request, tenant string) string {
	return "https://" + r.Host + "/" + tenant + "/oauth2/v2.0/token"
}

// verifyAssertion checks a client assertion: a certificate's (x5t#S256
// header) or a federated token (any other).
func (e *Entra) verifyAssertion(app App, raw, tokenURL string) (method, subject string, _ *entraError) {
	var hdr, claims map[string]any
	if err := fakekit.DecodeJWT(raw, &hdr, &claims); err != nil {
		return "", "", &entraError{400, "invalid_request", 50027, "JWT token is invalid or malformed."}
	}
	now := e.opts.Now()
	skew := e.opts.Skew
	thumb, isCert := hdr["x5t#S256"].(string)
	maxLife := time.Duration(0) // a federated token's lifetime is its issuer's business
	if isCert {
		// Stricter than Entra, which "currently places no restriction
		// on the exp time" but asks for at most 5-10 minutes after nbf
		// ("Certificate credentials"): an hour still refuses a signer
		// that mints long-lived assertions.
		maxLife = time.Hour
	}
	if !timeOK(claims, now, skew, maxLife) {
		return "", "", &entraError{401, "invalid_client", 700024, "Client assertion is not within its valid time range."}
	}
	if isCert {
		var cert *x509.Certificate
		for _, c := range app.Certificates {
			sum := sha256.Sum256(c.Raw)
			if base64.RawURLEncoding.EncodeToString(sum[:]) == thumb {
				cert = c
			}
		}
		alg, _ := hdr["alg"].(string)
		if cert == nil || (alg != jwtsign.RS256 && alg != jwtsign.PS256 && alg != jwtsign.ES256) {
			return "", "", &entraError{401, "invalid_client", 700027, "The certificate with identifier used to sign the client assertion is not registered on application."}
		}
		if _, _, err := jwtsign.Verify(raw, alg, cert.PublicKey); err != nil {
			return "", "", &entraError{401, "invalid_client", 700027, "Client assertion failed signature validation."}
		}
		jti, _ := claims["jti"].(string)
		switch {
		case claims["iss"] != app.ClientID || claims["sub"] != app.ClientID:
			return "", "", &entraError{401, "invalid_client", 700023, "Client assertion iss and sub must be the client ID."}
		case !hasAud(claims, tokenURL):
			return "", "", &entraError{401, "invalid_client", 700021, "Client assertion audience claim does not match Realm issuer."}
		case jti == "":
			return "", "", &entraError{401, "invalid_client", 50027, "Client assertion has no jti."}
		}
		e.mu.Lock()
		replay := e.jtis[jti]
		e.jtis[jti] = true
		e.mu.Unlock()
		if replay {
			return "", "", &entraError{401, "invalid_client", 7000215, "The client assertion was already used (jti replay)."}
		}
		return "certificate", "", nil
	}
	issuer, _ := claims["iss"].(string)
	sub, _ := claims["sub"].(string)
	var fc *FederatedCredential
	issuerKnown := false
	for i, c := range app.Federated {
		if c.Issuer != issuer {
			continue
		}
		issuerKnown = true
		aud := c.Audience
		if aud == "" {
			aud = FederatedAudience
		}
		if c.Subject == sub && hasAud(claims, aud) {
			fc = &app.Federated[i]
		}
	}
	switch {
	case !issuerKnown:
		return "", "", &entraError{400, "invalid_request", 700211, "No matching federated identity record found for presented assertion issuer."}
	case fc == nil:
		return "", "", &entraError{400, "invalid_request", 70021, "No matching federated identity record found for presented assertion. Check the subject and audience."}
	}
	kid, _ := hdr["kid"].(string)
	alg, _ := hdr["alg"].(string)
	keys := fc.JWKS.Key(kid)
	if len(keys) == 0 {
		return "", "", &entraError{400, "invalid_request", 5002738, "Key was not found in the issuer's JWKS."}
	}
	// A key that names its algorithm (RFC 7517 §4.4, "alg") verifies
	// only that one: RS512 by an RS256 key is a forgery of the header.
	if ka := keys[0].Algorithm; ka != "" && ka != alg {
		return "", "", &entraError{400, "invalid_request", 5002738, "Federated assertion alg " + alg + " is not the key's " + ka + "."}
	}
	if _, _, err := jwtsign.Verify(raw, alg, keys[0].Key); err != nil {
		return "", "", &entraError{400, "invalid_request", 5002738, "Federated assertion failed signature validation."}
	}
	return "federated", sub, nil
}

// timeOK checks exp (required), nbf and iat against now with skew, and,
// when maxLife is set, a lifetime of at most maxLife.
func timeOK(claims map[string]any, now time.Time, skew, maxLife time.Duration) bool {
	exp, ok := claims["exp"].(float64)
	if !ok || !time.Unix(int64(exp), 0).After(now.Add(-skew)) {
		return false
	}
	start := exp
	for _, k := range []string{"nbf", "iat"} {
		if v, ok := claims[k].(float64); ok {
			if time.Unix(int64(v), 0).After(now.Add(skew)) {
				return false
			}
			start = min(start, v)
		}
	}
	return maxLife == 0 || exp-start <= maxLife.Seconds()
}

func hasAud(claims map[string]any, want string) bool {
	switch a := claims["aud"].(type) {
	case string:
		return a == want
	case []any:
		for _, v := range a {
			if v == want {
				return true
			}
		}
	}
	return false
}

func equal(a, b string) bool {
	return sha256.Sum256([]byte(a)) == sha256.Sum256([]byte(b))
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
