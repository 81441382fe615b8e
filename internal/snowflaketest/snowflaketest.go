// Package snowflaketest is a fake of the Snowflake SQL API for tests of
// the snowflake provider. Over TLS on 127.0.0.1 it serves
// POST /api/v2/statements authenticated by a key-pair JWT, verified as
// Snowflake documents it:
//
//   - X-Snowflake-Authorization-Token-Type: KEYPAIR_JWT and
//     Authorization: Bearer JWT;
//   - sub = ACCOUNT.USER of a registered user, iss = sub +
//     ".SHA256:" + the base64 SHA-256 of the DER SubjectPublicKeyInfo of
//     one of the user's public keys (RSA_PUBLIC_KEY, RSA_PUBLIC_KEY_2);
//   - an RS256 signature that verifies with that key;
//   - iat not in the future and exp after now, at most one hour after iat
//     (a minute of skew);
//   - on a host under snowflakecomputing.com, sub's account being the
//     host's (HostAccount): a JWT is good only at its own account.
//
// A JWT that fails any check is answered 401 with Snowflake's error body
// (code 390144, "JWT token is invalid."), as Snowflake does; an accepted
// one gets the documented ResultSet of a statement that selected one row.
//
// It exists under internal/ because it is test machinery, not API.
package snowflaketest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

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
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	// URL is https://127.0.0.1:PORT.
	URL string

	srv  *httptest.Server
	opts Options

	mu       sync.Mutex
	users    map[string][]*rsa.PublicKey // by ACCOUNT.USER
	accepted []Claims
	rejected []string // why each refused request was refused
	jwts     []string // every bearer JWT presented
}

// Claims are the checked claims of an accepted JWT.
type Claims struct {
	Issuer, Subject string
	IssuedAt, Exp   time.Time
}

// New starts a Server; call Close when done.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, users: map[string][]*rsa.PublicKey{}}
	s.srv = fakekit.StartTLS(http.HandlerFunc(s.serve), opts.Certificate)
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// CertPEM returns the PEM of the server's certificate.
func (s *Server) CertPEM() []byte {
	return fakekit.CertPEM(s.srv)
}

// Client returns an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Addr is 127.0.0.1:PORT.
func (s *Server) Addr() string { return s.srv.Listener.Addr().String() }

// SetUserKeys assigns up to two public keys (RSA_PUBLIC_KEY,
// RSA_PUBLIC_KEY_2) to the user ACCOUNT.USER (upper-case), replacing any
// before.
func (s *Server) SetUserKeys(accountUser string, keys ...*rsa.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[accountUser] = keys
}

// Accepted returns the claims of every JWT the API accepted, in order.
func (s *Server) Accepted() []Claims {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Claims(nil), s.accepted...)
}

// Rejected returns why each refused request was refused, in order.
func (s *Server) Rejected() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.rejected...)
}

// JWTs returns every bearer token presented to the API, accepted or not.
func (s *Server) JWTs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.jwts...)
}

// Fingerprint is "SHA256:" and the base64 SHA-256 of pub's DER
// SubjectPublicKeyInfo (Snowflake's RSA_PUBLIC_KEY_FP), computed here
// independently of the provider.
func Fingerprint(pub *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err) // an RSA public key always encodes
	}
	sum := sha256.Sum256(der)
	return "SHA256:" + base64.StdEncoding.EncodeToString(sum[:])
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/api/v2/statements" {
		writeJSON(w, http.StatusNotFound, map[string]string{"code": "390404", "message": "Not found."})
		return
	}
	c, err := s.verify(r)
	if err != nil {
		s.mu.Lock()
		s.rejected = append(s.rejected, err.Error())
		s.mu.Unlock()
		// Snowflake's answer to a JWT it does not accept.
		writeJSON(w, http.StatusUnauthorized, map[string]string{"code": "390144", "message": "JWT token is invalid."})
		return
	}
	var body struct {
		Statement string `json:"statement"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil || body.Statement == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"code": "391902", "message": "statement is required."})
		return
	}
	s.mu.Lock()
	s.accepted = append(s.accepted, c)
	n := len(s.accepted)
	s.mu.Unlock()
	handle := fmt.Sprintf("01b2c3d4-0000-0000-0000-%012d", n)
	writeJSON(w, http.StatusOK, map[string]any{
		"resultSetMetaData": map[string]any{
			"numRows": 1, "format": "jsonv2",
			"partitionInfo": []map[string]int{{"rowCount": 1, "uncompressedSize": 16}},
			"rowType": []map[string]any{{"name": "USER", "database": "", "schema": "", "table": "",
				"type": "text", "nullable": false, "length": 255, "byteLength": 255, "precision": nil, "scale": nil}},
		},
		"data":               [][]string{{strings.SplitN(c.Subject, ".", 2)[1]}},
		"code":               "090001",
		"statementStatusUrl": "/api/v2/statements/" + handle,
		"requestId":          r.URL.Query().Get("requestId"),
		"sqlState":           "00000",
		"statementHandle":    handle,
		"message":            "Statement executed successfully.",
		"createdOn":          s.opts.Now().UnixMilli(),
	})
}

// HostAccount returns the account identifier, as a key-pair JWT names
// it, of a Snowflake account URL's host: the first label upper-cased
// (ORGNAME-ACCOUNTNAME, or an account locator without its region and
// cloud; the locator before "-" in a .global host). ok is false for a
// host that is not under snowflakecomputing.com (a test calling the fake
// by its address).
func HostAccount(hostport string) (acct string, ok bool) {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	rest, ok := strings.CutSuffix(strings.ToLower(host), ".snowflakecomputing.com")
	if !ok || rest == "" {
		return "", false
	}
	labels := strings.Split(rest, ".")
	first := labels[0]
	if len(labels) > 1 && labels[1] == "global" {
		first, _, _ = strings.Cut(first, "-")
	}
	return strings.ToUpper(first), true
}

// verify checks the request's key-pair JWT.
func (s *Server) verify(r *http.Request) (Claims, error) {
	if tt := r.Header.Get("X-Snowflake-Authorization-Token-Type"); tt != "KEYPAIR_JWT" {
		return Claims{}, fmt.Errorf("X-Snowflake-Authorization-Token-Type is %q, want KEYPAIR_JWT", tt)
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return Claims{}, errors.New("no Bearer token")
	}
	s.mu.Lock()
	s.jwts = append(s.jwts, tok)
	s.mu.Unlock()
	// The claims are read before the signature is checked only to find
	// the user whose key checks it.
	var unverified struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
	}
	if err := fakekit.DecodeJWT(tok, nil, &unverified); err != nil {
		return Claims{}, err
	}
	s.mu.Lock()
	keys := s.users[unverified.Sub]
	s.mu.Unlock()
	if keys == nil {
		return Claims{}, fmt.Errorf("no user %q", unverified.Sub)
	}
	var key *rsa.PublicKey
	for _, k := range keys {
		if unverified.Iss == unverified.Sub+"."+Fingerprint(k) {
			key = k
		}
	}
	if key == nil {
		return Claims{}, fmt.Errorf("iss %q names no public key of %s", unverified.Iss, unverified.Sub)
	}
	_, claims, err := jwtsign.Verify(tok, jwtsign.RS256, crypto.PublicKey(key))
	if err != nil {
		return Claims{}, fmt.Errorf("signature: %w", err)
	}
	iat, okI := claims["iat"].(float64)
	exp, okE := claims["exp"].(float64)
	if !okI || !okE {
		return Claims{}, errors.New("iat and exp are required numbers")
	}
	c := Claims{Issuer: unverified.Iss, Subject: unverified.Sub, IssuedAt: time.Unix(int64(iat), 0), Exp: time.Unix(int64(exp), 0)}
	// The account a request reaches is its host's: a JWT is good only at
	// its own account's URL ("Using key-pair authentication", Snowflake
	// SQL API: the account identifier in iss and sub is the account's,
	// without region or cloud).
	if acct, ok := HostAccount(r.Host); ok {
		if sa, _, _ := strings.Cut(c.Subject, "."); sa != acct {
			return Claims{}, fmt.Errorf("the JWT is for account %s, the request reached account %s", sa, acct)
		}
	}
	now := s.opts.Now()
	switch {
	case c.IssuedAt.After(now.Add(ClockSkew)):
		return Claims{}, errors.New("iat is in the future")
	case !now.Before(c.Exp.Add(ClockSkew)):
		return Claims{}, errors.New("the JWT has expired")
	case c.Exp.Sub(c.IssuedAt) > time.Hour:
		return Claims{}, fmt.Errorf("exp - iat is %s, more than 1h", c.Exp.Sub(c.IssuedAt))
	}
	return c, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
