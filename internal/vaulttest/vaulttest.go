// Package vaulttest emulates, in process, exactly the parts of the
// HashiCorp Vault HTTP API that providers/vault calls and that its tests
// use to set Vault up, with Vault's request and response shapes
// (lease_id, lease_duration, renewable, auth.client_token, wrap_info,
// errors as {"errors": [...]}, 503 while sealed) and the lifecycle rules
// the gateway depends on: a token expires at its TTL unless renewed and
// never beyond its max TTL; a lease dies with the token that created it
// (revoked or expired); sys/leases/renew of a revoked or expired lease
// answers 400 {"errors":["lease not found"]}, of a lease that cannot be
// renewed 400 {"errors":["lease is not renewable"]} (OpenBao's wording);
// auth/token/lookup-self returns the TTL left as ttl and the TTL the
// token was created with as creation_ttl. It is for tests only:
// nothing is persisted, authorisation is only "is the token valid", and
// the JWT and TokenReview checks are simplified.
//
// Emulated endpoints (paths after /v1/):
//
//	sys/health, sys/mounts/P, sys/auth/P, sys/policies/acl/P (accepted,
//	not enforced), sys/leases/renew,
//	sys/leases/revoke, sys/wrapping/lookup, sys/wrapping/unwrap
//	auth/token/lookup-self, renew-self, revoke-self, create
//	auth/APPROLE/role/R, role/R/role-id, role/R/secret-id, login
//	auth/JWT/config, role/R, login           (ES256 and RS256 JWTs)
//	auth/KUBERNETES/config, role/R, login    (TokenReview emulated by AddServiceAccountToken)
//	KV/data/NAME (kv version 2: read with ?version=, write)
//	DB/roles/R, DB/creds/R                    (a "database" mount: leased username/password)
//	PKI/root/generate/internal, PKI/roles/R, PKI/issue/R
//	TRANSIT/keys/K, TRANSIT/sign/K[/HASH] (key_version 1), TRANSIT/verify/K (ed25519)
//
// Any request may ask for its response to be wrapped (X-Vault-Wrap-TTL).
// FindReal finds or starts a real server instead, when one is available.
package vaulttest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/credgate/credgate/internal/fakekit"
)

// Options configure an emulator.
type Options struct {
	// Now is the emulator's clock (token and lease expiry, certificate
	// validity). Default time.Now.
	Now func() time.Time
	// Namespace, if set, is the only namespace served: every request must
	// carry X-Vault-Namespace with it, else it is refused with 403.
	Namespace string
	// RootToken is the root token. Default: random.
	RootToken string
	// TLS serves HTTPS with a self-signed certificate (CertPEM) instead of
	// plain HTTP.
	TLS bool
}

// Server is a running emulator on 127.0.0.1. Close it when done.
type Server struct {
	// URL is the emulator's address, e.g. http://127.0.0.1:34567.
	URL string
	// RootToken never expires and may do anything.
	RootToken string
	// CertPEM is the server's certificate when Options.TLS is set.
	CertPEM []byte

	opts Options
	hs   *httptest.Server

	mu          sync.Mutex
	sealed      bool
	gate        chan struct{} // non-nil: requests wait until it is closed
	refuseRenew bool
	denied      []string // path prefixes answered 403 for every token
	mounts      map[string]string
	auths       map[string]string
	tokens      map[string]*token
	wraps       map[string]*wrapped
	kv          map[string][]map[string]any // mount/name -> versions (index 0 = v1)
	leases      map[string]*Lease
	leaseLife   fakekit.LifetimeOverride
	roles       map[string]map[string]any // mount/role -> settings as written
	roleIDs     map[string]string         // role_id -> mount/role
	secretIDs   map[string]string         // secret_id -> mount/role
	configs     map[string]map[string]any // auth mount -> config
	saTokens    map[string][2]string      // service-account JWT -> namespace, name
	cas         map[string]*ca            // pki mount -> CA
	keys        map[string]crypto.Signer  // transit mount/key -> key
	keyTypes    map[string]string
	counts      map[string]int
}

type token struct {
	id, accessor string
	root         bool
	ttl          time.Duration
	expires      time.Time // zero: never
	maxExpires   time.Time // zero: no max
	renewable    bool
	revoked      bool
}

type wrapped struct {
	body    []byte
	path    string
	created time.Time
	ttl     time.Duration
}

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

// Lease is the emulator's view of a lease it issued.
type Lease struct {
	ID        string
	Path      string
	Issued    time.Time
	Expires   time.Time
	MaxExpiry time.Time
	Renewable bool
	Renewals  int
	Revoked   bool
	// Username is the database user the lease stands for (database
	// mounts), so tests can tell which lease a credential belongs to.
	Username string
	token    string
}

// NewServer starts an emulator with the KV v2 engine mounted at secret/
// and the token auth method, like `vault server -dev`.
func NewServer(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RootToken == "" {
		opts.RootToken = "root-" + randHex(12)
	}
	s := &Server{
		RootToken: opts.RootToken, opts: opts,
		mounts: map[string]string{"secret": "kv-v2"}, auths: map[string]string{"token": "token"},
		tokens: map[string]*token{}, wraps: map[string]*wrapped{}, kv: map[string][]map[string]any{},
		leases: map[string]*Lease{}, roles: map[string]map[string]any{}, roleIDs: map[string]string{},
		secretIDs: map[string]string{}, configs: map[string]map[string]any{}, saTokens: map[string][2]string{},
		cas: map[string]*ca{}, keys: map[string]crypto.Signer{}, keyTypes: map[string]string{}, counts: map[string]int{},
	}
	s.tokens[opts.RootToken] = &token{id: opts.RootToken, accessor: randHex(8), root: true}
	s.hs = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	// Clients that refuse the certificate are expected in tests.
	s.hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	if opts.TLS {
		s.hs.StartTLS()
		s.CertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.hs.Certificate().Raw})
	} else {
		s.hs.Start()
	}
	s.URL = s.hs.URL
	return s
}

// Close stops the emulator; requests to URL then fail to connect.
func (s *Server) Close() {
	s.mu.Lock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
	s.mu.Unlock()
	s.hs.CloseClientConnections()
	s.hs.Close()
}

// Seal makes every request but sys/health answer 503 {"errors":["Vault is sealed"]}.
func (s *Server) Seal() { s.mu.Lock(); s.sealed = true; s.mu.Unlock() }

// Unseal undoes Seal.
func (s *Server) Unseal() { s.mu.Lock(); s.sealed = false; s.mu.Unlock() }

// Hold makes requests wait (a slow Vault) until the returned function is
// called (or the request's context ends).
func (s *Server) Hold() (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := make(chan struct{})
	s.gate = g
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.gate == g {
				s.gate = nil
			}
			s.mu.Unlock()
			close(g)
		})
	}
}

// SetLeaseLifetime makes a secrets engine's creds answers state l as
// lease_duration from now on (nil: the lease's own again), a lifetime
// shape for the providers' tests; the lease itself keeps its TTL.
func (s *Server) SetLeaseLifetime(l *fakekit.Lifetime) { s.leaseLife.Set(l) }

// RefuseLeaseRenewals makes sys/leases/renew answer 400.
func (s *Server) RefuseLeaseRenewals(refuse bool) { s.mu.Lock(); s.refuseRenew = refuse; s.mu.Unlock() }

// Deny makes every request to a path starting with prefix answer 403
// permission denied, as a policy without that path would (with Vault's
// multi-line "1 error occurred:\n\t* permission denied\n\n").
func (s *Server) Deny(prefix string) { s.mu.Lock(); s.denied = append(s.denied, prefix); s.mu.Unlock() }

// Allow undoes Deny(prefix).
func (s *Server) Allow(prefix string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denied = slices.DeleteFunc(s.denied, func(d string) bool { return d == prefix })
}

// RevokeLoginTokens revokes every token except the root token (and the
// leases they created), as an operator revoking the gateway's token would.
func (s *Server) RevokeLoginTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		if !t.root {
			s.revokeTokenLocked(t)
		}
	}
}

// AddServiceAccountToken makes the Kubernetes auth method accept jwt as
// the token of service account name in namespace (the emulator's stand-in
// for the TokenReview API).
func (s *Server) AddServiceAccountToken(jwt, namespace, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saTokens[jwt] = [2]string{namespace, name}
}

// Count returns how many requests of kind were served, e.g. "login
// approle", "renew-self", "lease renew", "lease revoke", "read kv",
// "creds", "issue", "sign", "unwrap", "lookup-self".
func (s *Server) Count(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[kind]
}

// Leases returns a copy of every lease issued, in no particular order.
// A lease whose parent token has expired shows as revoked, as Vault
// revokes it with the token.
func (s *Server) Leases() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked()
	out := make([]Lease, 0, len(s.leases))
	for _, l := range s.leases {
		out = append(out, *l)
	}
	return out
}

// LiveTokens returns how many non-root tokens are valid now.
func (s *Server) LiveTokens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.tokens {
		if !t.root && s.validLocked(t) {
			n++
		}
	}
	return n
}

// TransitPublicKey returns the public key of transit key mount/name.
func (s *Server) TransitPublicKey(mount, name string) crypto.PublicKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.keys[mount+"/"+name]; k != nil {
		return k.Public()
	}
	return nil
}

// ---- plumbing

// errStatus is a Vault error answer.
type errStatus struct {
	code int
	msgs []string
}

func (e *errStatus) Error() string { return strings.Join(e.msgs, "; ") }

func fail(code int, format string, args ...any) *errStatus {
	return &errStatus{code: code, msgs: []string{fmt.Sprintf(format, args...)}}
}

var (
	errDenied = &errStatus{code: 403, msgs: []string{"permission denied"}}
	// errACLDenied is how Vault answers a valid token whose policies do
	// not allow the path: the ACL check's go-multierror text.
	errACLDenied = &errStatus{code: 403, msgs: []string{"1 error occurred:\n\t* permission denied\n\n"}}
	errNotFound  = &errStatus{code: 404, msgs: []string{}}
)

// req is one decoded request.
type req struct {
	method string
	path   string // without /v1/
	body   map[string]any
	query  url.Values
	tok    *token // nil when no valid token was sent
	raw    string // X-Vault-Token as sent
}

func (r *req) str(k string) string {
	switch v := r.body[k].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

func (s *Server) now() time.Time { return s.opts.Now() }

func (s *Server) serve(w http.ResponseWriter, hr *http.Request) {
	// Vault's clock: what the instants it states (a certificate's
	// NotAfter) are on.
	w.Header().Set("Date", s.now().UTC().Format(http.TimeFormat))
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-hr.Context().Done():
			return
		}
	}
	r := &req{method: hr.Method, path: strings.TrimPrefix(hr.URL.Path, "/v1/"), query: hr.URL.Query(), raw: hr.Header.Get("X-Vault-Token")}
	if !strings.HasPrefix(hr.URL.Path, "/v1/") {
		writeErr(w, fail(404, "no handler for route %q", hr.URL.Path))
		return
	}
	if hr.Body != nil {
		var b bytes.Buffer
		_, _ = b.ReadFrom(hr.Body)
		if b.Len() > 0 {
			dec := json.NewDecoder(&b)
			dec.UseNumber()
			if err := dec.Decode(&r.body); err != nil {
				writeErr(w, fail(400, "failed to parse JSON input: %v", err))
				return
			}
		}
	}
	if r.body == nil {
		r.body = map[string]any{}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if r.path == "sys/health" {
		code := 200
		if s.sealed {
			code = 503
		}
		writeJSON(w, code, map[string]any{"initialized": true, "sealed": s.sealed, "standby": false, "version": "emulator"})
		return
	}
	if s.sealed {
		writeErr(w, fail(503, "Vault is sealed"))
		return
	}
	if ns := strings.Trim(hr.Header.Get("X-Vault-Namespace"), "/"); ns != strings.Trim(s.opts.Namespace, "/") {
		writeErr(w, errDenied)
		return
	}
	s.expireLocked()
	if t := s.tokens[r.raw]; t != nil && s.validLocked(t) {
		r.tok = t
	}
	status, body, err := s.route(r)
	if err != nil {
		var es *errStatus
		if !errors.As(err, &es) {
			es = fail(500, "%v", err)
		}
		writeErr(w, es)
		return
	}
	if wrapTTL := hr.Header.Get("X-Vault-Wrap-TTL"); wrapTTL != "" && body != nil && status == 200 {
		ttl, _ := parseDur(wrapTTL)
		if ttl <= 0 {
			ttl = 5 * time.Minute
		}
		b, _ := json.Marshal(body)
		wt := "hvs.wrap" + randHex(16)
		s.wraps[wt] = &wrapped{body: b, path: r.path, created: s.now(), ttl: ttl}
		s.tokens[wt] = &token{id: wt, accessor: randHex(8), ttl: ttl, expires: s.now().Add(ttl)}
		writeJSON(w, 200, map[string]any{"request_id": randUUID(), "lease_id": "", "renewable": false, "lease_duration": 0, "data": nil,
			"wrap_info": map[string]any{"token": wt, "accessor": s.tokens[wt].accessor, "ttl": int(ttl.Seconds()),
				"creation_time": s.now().UTC().Format(time.RFC3339Nano), "creation_path": r.path, "wrapped_accessor": ""}})
		return
	}
	if body == nil {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, e *errStatus) {
	writeJSON(w, e.code, map[string]any{"errors": e.msgs})
}

// secret builds a Vault secret response.
func secret(data any, leaseID string, dur time.Duration, renewable bool) map[string]any {
	return map[string]any{"request_id": randUUID(), "lease_id": leaseID, "renewable": renewable,
		"lease_duration": int(dur.Seconds()), "data": data, "wrap_info": nil, "warnings": nil, "auth": nil}
}

func (s *Server) validLocked(t *token) bool {
	return !t.revoked && (t.expires.IsZero() || s.now().Before(t.expires))
}

// expireLocked revokes the tokens whose TTL has run out, and with them
// the leases they created, as Vault's expiration manager does when a
// token's lease expires. The emulator's clock may be a fake one, so this
// happens lazily, before every request and every look at the leases.
func (s *Server) expireLocked() {
	now := s.now()
	for _, t := range s.tokens {
		if !t.revoked && !t.expires.IsZero() && !now.Before(t.expires) {
			s.revokeTokenLocked(t)
		}
	}
}

func (s *Server) revokeTokenLocked(t *token) {
	t.revoked = true
	for _, l := range s.leases {
		if l.token == t.id {
			l.Revoked = true
		}
	}
}

// route dispatches r. It returns the status and body (nil body: 204).
func (s *Server) route(r *req) (int, any, error) {
	p := r.path
	segs := strings.Split(p, "/")
	// Unauthenticated endpoints.
	switch {
	case p == "sys/wrapping/lookup":
		return s.wrapLookup(r)
	case p == "sys/wrapping/unwrap":
		return s.unwrap(r)
	case len(segs) >= 3 && segs[0] == "auth" && segs[len(segs)-1] == "login":
		return s.login(r, strings.Join(segs[1:len(segs)-1], "/"))
	}
	if r.tok == nil {
		return 0, nil, errDenied
	}
	for _, d := range s.denied {
		if strings.HasPrefix(p, d) {
			return 0, nil, errACLDenied
		}
	}
	switch {
	case strings.HasPrefix(p, "sys/mounts/"):
		return s.enable(r, s.mounts, strings.TrimPrefix(p, "sys/mounts/"))
	case strings.HasPrefix(p, "sys/auth/"):
		return s.enable(r, s.auths, strings.TrimPrefix(p, "sys/auth/"))
	case strings.HasPrefix(p, "sys/policies/acl/"):
		return 204, nil, nil // policies are accepted and not enforced
	case p == "sys/leases/renew":
		return s.leaseRenew(r)
	case p == "sys/leases/revoke":
		return s.leaseRevoke(r)
	case strings.HasPrefix(p, "auth/token/"):
		return s.tokenOp(r, strings.TrimPrefix(p, "auth/token/"))
	case segs[0] == "auth":
		return s.authConfig(r, segs[1:])
	}
	// Secrets engines: the longest mount that prefixes the path.
	mount := ""
	for m := range s.mounts {
		if (p == m || strings.HasPrefix(p, m+"/")) && len(m) > len(mount) {
			mount = m
		}
	}
	if mount == "" {
		return 0, nil, fail(404, "no handler for route %q. route entry not found.", p)
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(p, mount), "/")
	switch s.mounts[mount] {
	case "kv-v2":
		return s.kvOp(r, mount, rest)
	case "database":
		return s.dbOp(r, mount, rest)
	case "pki":
		return s.pkiOp(r, mount, rest)
	case "transit":
		return s.transitOp(r, mount, rest)
	}
	return 0, nil, fail(404, "no handler for route %q", p)
}

// enable handles sys/mounts/P and sys/auth/P.
func (s *Server) enable(r *req, table map[string]string, path string) (int, any, error) {
	path = strings.Trim(path, "/")
	switch r.method {
	case http.MethodDelete:
		delete(table, path)
		return 204, nil, nil
	case http.MethodPost, http.MethodPut:
		if _, ok := table[path]; ok {
			return 0, nil, fail(400, "path is already in use at %s/", path)
		}
		typ := r.str("type")
		if typ == "kv" {
			typ = "kv-v1"
			if opts, ok := r.body["options"].(map[string]any); ok && fmt.Sprint(opts["version"]) == "2" {
				typ = "kv-v2"
			}
		}
		switch typ {
		case "kv-v2", "database", "pki", "transit", "approle", "jwt", "kubernetes":
		default:
			return 0, nil, fail(400, "plugin not found in the catalog: %s", typ)
		}
		table[path] = typ
		return 204, nil, nil
	}
	return 0, nil, fail(405, "unsupported operation")
}

// ---- auth/token

func (s *Server) tokenOp(r *req, op string) (int, any, error) {
	t := r.tok
	now := s.now()
	switch op {
	case "lookup-self":
		s.counts["lookup-self"]++
		ttl := 0
		var exp any
		if !t.expires.IsZero() {
			ttl = int(t.expires.Sub(now).Seconds())
			exp = t.expires.UTC().Format(time.RFC3339Nano)
		}
		return 200, secret(map[string]any{"id": t.id, "accessor": t.accessor, "ttl": ttl, "creation_ttl": int(t.ttl.Seconds()),
			"renewable": t.renewable, "expire_time": exp, "policies": []string{"default"}, "type": "service"}, "", 0, false), nil
	case "renew-self":
		s.counts["renew-self"]++
		if !t.renewable || t.expires.IsZero() {
			return 0, nil, fail(400, "lease is not renewable")
		}
		inc := t.ttl
		if d, ok := parseDur(r.body["increment"]); ok && d > 0 {
			inc = d
		}
		if !t.maxExpires.IsZero() && now.Add(inc).After(t.maxExpires) {
			inc = t.maxExpires.Sub(now)
		}
		t.expires = now.Add(inc)
		return 200, s.authBody(t, inc), nil
	case "revoke-self":
		s.counts["revoke-self"]++
		s.revokeTokenLocked(t)
		return 204, nil, nil
	case "create":
		ttl, _ := parseDur(r.body["ttl"])
		maxTTL, _ := parseDur(r.body["explicit_max_ttl"])
		renewable := r.body["renewable"] != false
		nt := s.newToken(ttl, maxTTL, renewable)
		return 200, s.authBody(nt, ttl), nil
	}
	return 0, nil, fail(404, "no handler for route %q", "auth/token/"+op)
}

func (s *Server) newToken(ttl, maxTTL time.Duration, renewable bool) *token {
	now := s.now()
	t := &token{id: "hvs." + randHex(20), accessor: randHex(12), ttl: ttl, renewable: renewable && ttl > 0}
	if ttl > 0 {
		t.expires = now.Add(ttl)
	}
	if maxTTL > 0 {
		t.maxExpires = now.Add(maxTTL)
		if t.expires.After(t.maxExpires) {
			t.expires = t.maxExpires
		}
	}
	s.tokens[t.id] = t
	return t
}

func (s *Server) authBody(t *token, ttl time.Duration) map[string]any {
	b := secret(nil, "", 0, false)
	b["auth"] = map[string]any{"client_token": t.id, "accessor": t.accessor, "policies": []string{"default"},
		"token_policies": []string{"default"}, "metadata": map[string]any{}, "lease_duration": int(ttl.Seconds()),
		"renewable": t.renewable, "entity_id": "", "token_type": "service", "orphan": true}
	return b
}

// ---- auth methods: configuration and login

func (s *Server) authConfig(r *req, segs []string) (int, any, error) {
	// auth/MOUNT/config, auth/MOUNT/role/R, auth/MOUNT/role/R/role-id, .../secret-id
	for i := len(segs) - 1; i >= 1; i-- {
		mount := strings.Join(segs[:i], "/")
		typ, ok := s.auths[mount]
		if !ok {
			continue
		}
		rest := segs[i:]
		switch {
		case len(rest) == 1 && rest[0] == "config":
			s.configs[mount] = r.body
			return 204, nil, nil
		case len(rest) == 2 && rest[0] == "role":
			key := mount + "/" + rest[1]
			s.roles[key] = r.body
			if typ == "approle" {
				if _, ok := r.body["role_id"]; !ok {
					r.body["role_id"] = randUUID()
				}
				s.roleIDs[r.str("role_id")] = key
			}
			return 204, nil, nil
		case typ == "approle" && len(rest) == 3 && rest[0] == "role" && rest[2] == "role-id":
			role, ok := s.roles[mount+"/"+rest[1]]
			if !ok {
				return 0, nil, fail(400, "invalid role name %q", rest[1])
			}
			return 200, secret(map[string]any{"role_id": role["role_id"]}, "", 0, false), nil
		case typ == "approle" && len(rest) == 3 && rest[0] == "role" && rest[2] == "secret-id":
			key := mount + "/" + rest[1]
			if _, ok := s.roles[key]; !ok {
				return 0, nil, fail(400, "invalid role name %q", rest[1])
			}
			sid := randUUID()
			s.secretIDs[sid] = key
			return 200, secret(map[string]any{"secret_id": sid, "secret_id_accessor": randUUID(), "secret_id_ttl": 0, "secret_id_num_uses": 0}, "", 0, false), nil
		}
		return 0, nil, fail(404, "no handler for route %q", "auth/"+strings.Join(segs, "/"))
	}
	return 0, nil, fail(404, "no handler for route %q", "auth/"+strings.Join(segs, "/"))
}

func (s *Server) login(r *req, mount string) (int, any, error) {
	typ, ok := s.auths[mount]
	if !ok {
		return 0, nil, fail(404, "no handler for route %q", "auth/"+mount+"/login")
	}
	s.counts["login "+typ]++
	var role map[string]any
	switch typ {
	case "approle":
		key, ok := s.roleIDs[r.str("role_id")]
		if !ok || s.secretIDs[r.str("secret_id")] != key {
			return 0, nil, fail(400, "invalid role or secret ID")
		}
		role = s.roles[key]
	case "jwt":
		role, ok = s.roles[mount+"/"+r.str("role")]
		if !ok {
			return 0, nil, fail(400, "role %q could not be found", r.str("role"))
		}
		if err := s.checkJWT(mount, role, r.str("jwt")); err != nil {
			return 0, nil, fail(400, "error validating token: %v", err)
		}
	case "kubernetes":
		role, ok = s.roles[mount+"/"+r.str("role")]
		if !ok {
			return 0, nil, fail(400, "invalid role name %q", r.str("role"))
		}
		sa, ok := s.saTokens[r.str("jwt")]
		if !ok {
			return 0, nil, errDenied // TokenReview: not authenticated
		}
		if !listHas(role["bound_service_account_namespaces"], sa[0]) || !listHas(role["bound_service_account_names"], sa[1]) {
			return 0, nil, fail(403, "service account name not authorized")
		}
	default:
		return 0, nil, fail(400, "auth method %s has no login", typ)
	}
	ttl, _ := parseDur(role["token_ttl"])
	if ttl == 0 {
		ttl = time.Hour
	}
	maxTTL, _ := parseDur(role["token_max_ttl"])
	t := s.newToken(ttl, maxTTL, true)
	return 200, s.authBody(t, t.expires.Sub(s.now())), nil
}

func listHas(v any, want string) bool {
	var items []string
	switch v := v.(type) {
	case string:
		items = strings.Split(v, ",")
	case []any:
		for _, x := range v {
			items = append(items, fmt.Sprint(x))
		}
	}
	for _, it := range items {
		if it = strings.TrimSpace(it); it == "*" || it == want {
			return true
		}
	}
	return false
}

// checkJWT verifies a compact JWS (ES256 or RS256) against the mount's
// jwt_validation_pubkeys and the role's bound_audiences and bound_subject.
func (s *Server) checkJWT(mount string, role map[string]any, jwt string) error {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return errors.New("token is not a JWS")
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return errors.New("token is not base64url")
	}
	var hdr struct{ Alg string }
	var claims struct {
		Sub string          `json:"sub"`
		Aud json.RawMessage `json:"aud"`
		Exp int64           `json:"exp"`
		Nbf int64           `json:"nbf"`
	}
	if json.Unmarshal(hb, &hdr) != nil || json.Unmarshal(cb, &claims) != nil {
		return errors.New("token is not JSON")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	verified := false
	cfg := s.configs[mount]
	keys, _ := cfg["jwt_validation_pubkeys"].([]any)
	for _, k := range keys {
		pub, err := parsePublicKey(fmt.Sprint(k))
		if err != nil {
			continue
		}
		switch pub := pub.(type) {
		case *ecdsa.PublicKey:
			if hdr.Alg == "ES256" && len(sig) == 64 {
				verified = verified || ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
			}
		case *rsa.PublicKey:
			if hdr.Alg == "RS256" {
				verified = verified || rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) == nil
			}
		}
	}
	if !verified {
		return errors.New("failed to verify id token signature")
	}
	now := s.now().Unix()
	if claims.Exp != 0 && now >= claims.Exp+60 {
		return errors.New("token is expired")
	}
	if claims.Nbf != 0 && now < claims.Nbf-60 {
		return errors.New("token not valid yet")
	}
	if bs, ok := role["bound_subject"].(string); ok && bs != "" && bs != claims.Sub {
		return errors.New("sub claim does not match bound subject")
	}
	if ba, ok := role["bound_audiences"]; ok {
		var auds []string
		if json.Unmarshal(claims.Aud, &auds) != nil {
			var one string
			_ = json.Unmarshal(claims.Aud, &one)
			auds = []string{one}
		}
		match := false
		for _, a := range auds {
			match = match || listHas(ba, a)
		}
		if !match {
			return errors.New("invalid audience (aud) claim: audience claim does not match any expected audience")
		}
	}
	return nil
}

func parsePublicKey(p string) (crypto.PublicKey, error) {
	b, _ := pem.Decode([]byte(p))
	if b == nil {
		return nil, errors.New("not PEM")
	}
	return x509.ParsePKIXPublicKey(b.Bytes)
}

// ---- response wrapping

func (s *Server) wrapLookup(r *req) (int, any, error) {
	w, ok := s.wraps[r.str("token")]
	if !ok || !s.validLocked(s.tokens[r.str("token")]) {
		return 0, nil, fail(400, "wrapping token is not valid or does not exist")
	}
	return 200, secret(map[string]any{"creation_path": w.path, "creation_time": w.created.UTC().Format(time.RFC3339Nano),
		"creation_ttl": int(w.ttl.Seconds())}, "", 0, false), nil
}

func (s *Server) unwrap(r *req) (int, any, error) {
	s.counts["unwrap"]++
	wt := r.raw
	if bt := r.str("token"); bt != "" {
		if r.tok == nil {
			return 0, nil, errDenied
		}
		wt = bt
	}
	w, ok := s.wraps[wt]
	if !ok || !s.validLocked(s.tokens[wt]) {
		return 0, nil, fail(400, "wrapping token is not valid or does not exist")
	}
	delete(s.wraps, wt)
	s.tokens[wt].revoked = true
	var body map[string]any
	dec := json.NewDecoder(bytes.NewReader(w.body))
	dec.UseNumber()
	_ = dec.Decode(&body)
	return 200, body, nil
}

// ---- leases

func (s *Server) leaseRenew(r *req) (int, any, error) {
	s.counts["lease renew"]++
	l := s.leases[r.str("lease_id")]
	now := s.now()
	switch {
	case l == nil || l.Revoked || !now.Before(l.Expires):
		return 0, nil, fail(400, "lease not found")
	case !l.Renewable || s.refuseRenew:
		return 0, nil, fail(400, "lease is not renewable")
	}
	inc, _ := parseDur(r.body["increment"])
	if inc <= 0 {
		inc = l.Expires.Sub(l.Issued)
	}
	if now.Add(inc).After(l.MaxExpiry) {
		inc = l.MaxExpiry.Sub(now)
	}
	l.Expires = now.Add(inc)
	l.Renewals++
	return 200, secret(nil, l.ID, inc, l.Renewable), nil
}

func (s *Server) leaseRevoke(r *req) (int, any, error) {
	s.counts["lease revoke"]++
	if l := s.leases[r.str("lease_id")]; l != nil {
		l.Revoked = true
	}
	return 204, nil, nil
}

func (s *Server) newLease(r *req, path string, ttl, maxTTL time.Duration, renewable bool) *Lease {
	now := s.now()
	l := &Lease{ID: path + "/" + randHex(12), Path: path, Issued: now, Expires: now.Add(ttl), MaxExpiry: now.Add(maxTTL), Renewable: renewable, token: r.tok.id}
	s.leases[l.ID] = l
	return l
}

// ---- secrets engines

func (s *Server) kvOp(r *req, mount, rest string) (int, any, error) {
	name, ok := strings.CutPrefix(rest, "data/")
	if !ok || name == "" {
		return 0, nil, fail(404, "no handler for route %q", mount+"/"+rest)
	}
	key := mount + "/" + name
	switch r.method {
	case http.MethodGet:
		s.counts["read kv"]++
		vs := s.kv[key]
		v := len(vs)
		if q := r.query.Get("version"); q != "" && q != "0" {
			n, err := strconv.Atoi(q)
			if err != nil {
				return 0, nil, fail(400, "invalid version %q", q)
			}
			v = n
		}
		if v < 1 || v > len(vs) {
			return 0, nil, errNotFound
		}
		return 200, secret(map[string]any{"data": vs[v-1], "metadata": map[string]any{"created_time": s.now().UTC().Format(time.RFC3339Nano),
			"custom_metadata": nil, "deletion_time": "", "destroyed": false, "version": v}}, "", 0, false), nil
	case http.MethodPost, http.MethodPut:
		data, _ := r.body["data"].(map[string]any)
		if data == nil {
			return 0, nil, fail(400, "no data provided")
		}
		s.kv[key] = append(s.kv[key], data)
		return 200, secret(map[string]any{"created_time": s.now().UTC().Format(time.RFC3339Nano), "custom_metadata": nil,
			"deletion_time": "", "destroyed": false, "version": len(s.kv[key])}, "", 0, false), nil
	}
	return 0, nil, fail(405, "unsupported operation")
}

func (s *Server) dbOp(r *req, mount, rest string) (int, any, error) {
	kind, role, _ := strings.Cut(rest, "/")
	switch {
	case kind == "roles" && (r.method == http.MethodPost || r.method == http.MethodPut):
		s.roles[mount+"/"+role] = r.body
		return 204, nil, nil
	case kind == "creds" && r.method == http.MethodGet:
		s.counts["creds"]++
		cfg, ok := s.roles[mount+"/"+role]
		if !ok {
			return 0, nil, fail(400, "unknown role: %s", role)
		}
		ttl, _ := parseDur(cfg["default_ttl"])
		if ttl == 0 {
			ttl = time.Hour
		}
		maxTTL, _ := parseDur(cfg["max_ttl"])
		if maxTTL == 0 {
			maxTTL = 24 * time.Hour
		}
		l := s.newLease(r, mount+"/creds/"+role, ttl, maxTTL, true)
		l.Username = "v-" + role + "-" + randHex(6)
		answer := secret(map[string]any{"username": l.Username, "password": "A1a-" + randHex(16)}, l.ID, ttl, true)
		if lt, ok := s.leaseLife.Get(); ok {
			delete(answer, "lease_duration")
			if raw, ok := lt.JSON(); ok {
				answer["lease_duration"] = json.RawMessage(raw)
			}
		}
		return 200, answer, nil
	}
	return 0, nil, fail(404, "no handler for route %q", mount+"/"+rest)
}

func (s *Server) pkiOp(r *req, mount, rest string) (int, any, error) {
	now := s.now()
	switch {
	case rest == "root/generate/internal":
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ttl, _ := parseDur(r.body["ttl"])
		if ttl == 0 {
			ttl = 10 * 365 * 24 * time.Hour
		}
		tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: r.str("common_name")},
			NotBefore: now.Add(-time.Minute), NotAfter: now.Add(ttl), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			return 0, nil, err
		}
		cert, _ := x509.ParseCertificate(der)
		c := &ca{cert: cert, key: key, pem: strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))}
		s.cas[mount] = c
		return 200, secret(map[string]any{"certificate": c.pem, "issuing_ca": c.pem, "serial_number": colonHex(cert.SerialNumber),
			"expiration": cert.NotAfter.Unix()}, "", 0, false), nil
	case strings.HasPrefix(rest, "roles/"):
		s.roles[mount+"/"+rest] = r.body
		return 204, nil, nil
	case strings.HasPrefix(rest, "issue/"):
		s.counts["issue"]++
		role, ok := s.roles[mount+"/roles/"+strings.TrimPrefix(rest, "issue/")]
		c := s.cas[mount]
		if !ok {
			return 0, nil, fail(400, "unknown role: %s", strings.TrimPrefix(rest, "issue/"))
		}
		if c == nil {
			return 0, nil, fail(400, "no default issuer currently configured")
		}
		cn := r.str("common_name")
		if cn == "" {
			return 0, nil, fail(400, "the common_name field is required")
		}
		ttl, _ := parseDur(r.body["ttl"])
		if ttl == 0 {
			ttl, _ = parseDur(role["ttl"])
		}
		if ttl == 0 {
			ttl = time.Hour
		}
		if maxTTL, _ := parseDur(role["max_ttl"]); maxTTL > 0 && ttl > maxTTL {
			ttl = maxTTL
		}
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-30 * time.Second), NotAfter: now.Add(ttl), KeyUsage: x509.KeyUsageDigitalSignature}
		if role["client_flag"] != false {
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
		}
		if role["server_flag"] != false {
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		}
		for _, n := range append([]string{cn}, splitList(r.str("alt_names"))...) {
			if strings.Contains(n, "@") {
				tmpl.EmailAddresses = append(tmpl.EmailAddresses, n)
			} else if !slices.Contains(tmpl.DNSNames, n) {
				tmpl.DNSNames = append(tmpl.DNSNames, n)
			}
		}
		for _, u := range splitList(r.str("uri_sans")) {
			pu, err := url.Parse(u)
			if err != nil {
				return 0, nil, fail(400, "invalid URI SAN %q", u)
			}
			tmpl.URIs = append(tmpl.URIs, pu)
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
		if err != nil {
			return 0, nil, err
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		certPEM := strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
		data := map[string]any{"certificate": certPEM, "issuing_ca": c.pem, "ca_chain": []string{c.pem},
			"private_key":      strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))),
			"private_key_type": "ec", "serial_number": colonHex(tmpl.SerialNumber), "expiration": tmpl.NotAfter.Unix()}
		if role["generate_lease"] == true {
			l := s.newLease(r, mount+"/"+rest, ttl, ttl, false)
			return 200, secret(data, l.ID, ttl, false), nil
		}
		return 200, secret(data, "", 0, false), nil
	}
	return 0, nil, fail(404, "no handler for route %q", mount+"/"+rest)
}

func (s *Server) transitOp(r *req, mount, rest string) (int, any, error) {
	segs := strings.Split(rest, "/")
	switch {
	case len(segs) == 2 && segs[0] == "keys" && (r.method == http.MethodPost || r.method == http.MethodPut):
		typ := r.str("type")
		if typ == "" {
			typ = "aes256-gcm96"
		}
		var k crypto.Signer
		var err error
		switch typ {
		case "ecdsa-p256":
			k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		case "ecdsa-p384":
			k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		case "rsa-2048":
			k, err = rsa.GenerateKey(rand.Reader, 2048)
		case "ed25519":
			_, k, err = ed25519.GenerateKey(rand.Reader)
		default:
			return 0, nil, fail(400, "key type %s is not supported by the emulator", typ)
		}
		if err != nil {
			return 0, nil, err
		}
		s.keys[mount+"/"+segs[1]], s.keyTypes[mount+"/"+segs[1]] = k, typ
		return 204, nil, nil
	case len(segs) == 2 && segs[0] == "keys" && r.method == http.MethodGet:
		k := s.keys[mount+"/"+segs[1]]
		if k == nil {
			return 0, nil, errNotFound
		}
		var pub string
		if ek, ok := k.Public().(ed25519.PublicKey); ok {
			pub = base64.StdEncoding.EncodeToString(ek)
		} else {
			der, _ := x509.MarshalPKIXPublicKey(k.Public())
			pub = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		}
		return 200, secret(map[string]any{"name": segs[1], "type": s.keyTypes[mount+"/"+segs[1]], "latest_version": 1,
			"keys": map[string]any{"1": map[string]any{"public_key": pub, "creation_time": s.now().UTC().Format(time.RFC3339Nano)}}}, "", 0, false), nil
	case (len(segs) == 2 || len(segs) == 3) && segs[0] == "sign":
		s.counts["sign"]++
		k := s.keys[mount+"/"+segs[1]]
		if k == nil {
			return 0, nil, fail(400, "signing key not found")
		}
		input, err := base64.StdEncoding.DecodeString(r.str("input"))
		if err != nil {
			return 0, nil, fail(400, "unable to decode input as base64: %v", err)
		}
		hashName := r.str("hash_algorithm")
		if len(segs) == 3 {
			hashName = segs[2]
		}
		if v := r.str("key_version"); v != "" && v != "0" && v != "1" {
			return 0, nil, fail(400, "requested version for signing does not exist")
		}
		sig, err := transitSign(k, input, hashName, r.str("signature_algorithm"), r.str("marshaling_algorithm"), r.str("salt_length"))
		if err != nil {
			return 0, nil, fail(400, "%v", err)
		}
		return 200, secret(map[string]any{"signature": "vault:v1:" + sig, "key_version": 1}, "", 0, false), nil
	case (len(segs) == 2 || len(segs) == 3) && segs[0] == "verify":
		// As the transit engine: a malformed signature is a 400, a
		// signature that does not verify is valid: false. ed25519 only.
		k := s.keys[mount+"/"+segs[1]]
		if k == nil {
			return 0, nil, fail(400, "signature verification key not found")
		}
		ek, ok := k.Public().(ed25519.PublicKey)
		if !ok {
			return 0, nil, fail(400, "the emulator verifies ed25519 signatures only")
		}
		input, err := base64.StdEncoding.DecodeString(r.str("input"))
		if err != nil {
			return 0, nil, fail(400, "unable to decode input as base64: %v", err)
		}
		parts := strings.SplitN(r.str("signature"), ":", 3)
		if len(parts) != 3 || parts[0] != "vault" || parts[1] != "v1" {
			return 0, nil, fail(400, "invalid signature: no prefix or unknown version")
		}
		enc := base64.StdEncoding
		if r.str("marshaling_algorithm") == "jws" {
			enc = base64.RawURLEncoding
		}
		sig, err := enc.DecodeString(parts[2])
		if err != nil {
			return 0, nil, fail(400, "invalid base64 signature value")
		}
		return 200, secret(map[string]any{"valid": ed25519.Verify(ek, input, sig)}, "", 0, false), nil
	}
	return 0, nil, fail(404, "no handler for route %q", mount+"/"+rest)
}

// transitSign signs like the transit engine and encodes the signature as
// it does: base64url without padding for marshaling_algorithm jws,
// standard base64 otherwise.
func transitSign(k crypto.Signer, input []byte, hashName, sigAlg, marshaling, salt string) (string, error) {
	enc := base64.StdEncoding
	if marshaling == "jws" {
		enc = base64.RawURLEncoding
	}
	if ek, ok := k.(ed25519.PrivateKey); ok {
		return enc.EncodeToString(ed25519.Sign(ek, input)), nil
	}
	var h hash.Hash
	var ch crypto.Hash
	switch hashName {
	case "", "sha2-256":
		h, ch = sha256.New(), crypto.SHA256
	case "sha2-384":
		h, ch = sha512.New384(), crypto.SHA384
	case "sha2-512":
		h, ch = sha512.New(), crypto.SHA512
	default:
		return "", fmt.Errorf("unsupported hash algorithm %s", hashName)
	}
	h.Write(input)
	digest := h.Sum(nil)
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		if marshaling != "jws" {
			der, err := ecdsa.SignASN1(rand.Reader, k, digest)
			return enc.EncodeToString(der), err
		}
		r, s, err := ecdsa.Sign(rand.Reader, k, digest)
		if err != nil {
			return "", err
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return enc.EncodeToString(out), nil
	case *rsa.PrivateKey:
		var sig []byte
		var err error
		if sigAlg == "pss" {
			sl := rsa.PSSSaltLengthAuto
			if salt == "hash" {
				sl = rsa.PSSSaltLengthEqualsHash
			}
			sig, err = rsa.SignPSS(rand.Reader, k, ch, digest, &rsa.PSSOptions{SaltLength: sl})
		} else {
			sig, err = rsa.SignPKCS1v15(rand.Reader, k, ch, digest)
		}
		return enc.EncodeToString(sig), err
	}
	return "", errors.New("unsupported key type")
}

// ---- helpers

// parseDur reads a Vault duration: "90s", "1h", "60" or a JSON number of
// seconds.
func parseDur(v any) (time.Duration, bool) {
	var s string
	switch v := v.(type) {
	case nil:
		return 0, false
	case json.Number:
		s = v.String()
	case string:
		s = v
	case float64:
		return time.Duration(v * float64(time.Second)), true
	case int:
		return time.Duration(v) * time.Second, true
	default:
		return 0, false
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(n * float64(time.Second)), true
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randUUID() string {
	h := randHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

func colonHex(n *big.Int) string {
	h := hex.EncodeToString(n.Bytes())
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}
