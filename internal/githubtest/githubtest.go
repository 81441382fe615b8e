// Package githubtest is a fake of the parts of GitHub a GitHub App uses,
// for tests of the github-app provider and end-to-end tests: it serves,
// over TLS on 127.0.0.1,
//
//   - GET /repos/{owner}/{repo}/installation, GET /orgs/{org}/installation
//     and GET /users/{user}/installation, authenticated with the app JWT;
//   - POST /app/installations/{id}/access_tokens with an optional body
//     {"repositories": [...], "permissions": {...}}, authenticated with the
//     app JWT, answering an installation token scoped exactly as asked;
//   - GET /repos/{owner}/{repo}, authenticated with an installation token
//     that may read the repository (404 otherwise, as GitHub answers);
//   - with Options.GitRoot, git's smart HTTP protocol under
//     /{owner}/{repo}.git/ through `git http-backend`, accepting Basic
//     x-access-token:<installation token> with contents read (fetch) or
//     write (push) on the repository.
//
// The app JWT is verified as GitHub documents: RS256, signed by the app's
// key, iss the app ID or client ID, iat not in the future and exp at most
// ten minutes ahead (with a minute of tolerated clock skew), against the
// server's clock (Options.Now), so a test can skew it.
//
// It exists under internal/ because it is test machinery, not API.
package githubtest

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/credgate/credgate/internal/fakekit"
	"github.com/credgate/credgate/providers/jwtsign"
)

// Limits GitHub documents for the app JWT.
const (
	// MaxJWTLifetime is how far ahead of the server's clock exp may be.
	MaxJWTLifetime = 10 * time.Minute
	// ClockSkew is the skew tolerated on iat and exp.
	ClockSkew = time.Minute
)

// Options configure a Server. Zero fields take defaults.
type Options struct {
	// Certificate is the server's TLS certificate; default httptest's
	// (for 127.0.0.1 and example.com).
	Certificate *tls.Certificate
	// Now is the server's clock; default time.Now.
	Now func() time.Time
	// TokenTTL is an installation token's lifetime; default 1h.
	TokenTTL time.Duration
	// GitRoot, if set, is a directory of bare repositories OWNER/REPO.git
	// served over git's smart HTTP protocol.
	GitRoot string
}

// App is a GitHub App known to the server.
type App struct {
	ID        int64
	ClientID  string
	PublicKey crypto.PublicKey
}

// Installation is an app's installation on an account.
type Installation struct {
	ID    int64
	AppID int64
	// Account is the user or organisation login; Org says which.
	Account string
	Org     bool
	// Repositories are the repository names (without owner) the
	// installation can access.
	Repositories []string
	// Permissions are what the app was granted: name → read|write|admin.
	Permissions map[string]string
}

// Token is an installation token the server issued.
type Token struct {
	Installation int64
	Repositories []string // names; nil means every repository of the installation
	Permissions  map[string]string
	Expires      time.Time
}

// Server is the fake GitHub. Its methods are safe for concurrent use.
type Server struct {
	// URL is https://127.0.0.1:PORT, the API's base URL.
	URL string
	// Addr is 127.0.0.1:PORT.
	Addr string

	srv  *httptest.Server
	opts Options

	mu        sync.Mutex
	apps      map[int64]App
	insts     map[int64]Installation
	tokens    map[string]Token
	mints     int
	lookups   int
	fault     int // answer every app-JWT request with this status when non-zero
	hold      chan struct{}
	held      int
	lastJWTs  []string
	gitDenied int
	lifetime  fakekit.LifetimeOverride
}

// SetLifetime makes mint answers state l as expires_at from now on (nil:
// the token's own expiry again): l.Seconds from the fake's now, or l.Raw
// verbatim; a lifetime shape of the providers conformance suite. The
// token itself still lives TokenTTL.
func (s *Server) SetLifetime(l *fakekit.Lifetime) { s.lifetime.Set(l) }

// New starts a Server; call Close when done.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = time.Hour
	}
	s := &Server{opts: opts, apps: map[int64]App{}, insts: map[int64]Installation{}, tokens: map[string]Token{}}
	s.srv = fakekit.StartTLS(http.HandlerFunc(s.serve), opts.Certificate)
	s.URL = s.srv.URL
	s.Addr = s.srv.Listener.Addr().String()
	return s
}

// Close stops the server, releasing held requests.
func (s *Server) Close() {
	s.Release()
	s.srv.Close()
}

// CertPEM returns the PEM of the server's certificate (with the default
// certificate, the root a client must trust).
func (s *Server) CertPEM() []byte {
	return fakekit.CertPEM(s.srv)
}

// Client returns an HTTP client trusting the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// AddApp registers an app.
func (s *Server) AddApp(a App) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apps[a.ID] = a
}

// AddInstallation registers an installation.
func (s *Server) AddInstallation(in Installation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.insts[in.ID] = in
}

// Fail makes every request authenticated with an app JWT answer status
// (0 restores normal service).
func (s *Server) Fail(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = status
}

// Hold makes token mints wait until Release (or their client gives up).
func (s *Server) Hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold == nil {
		s.hold = make(chan struct{})
	}
}

// Release lets held requests go on.
func (s *Server) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold != nil {
		close(s.hold)
		s.hold = nil
	}
}

// Held returns how many token mints are waiting in Hold.
func (s *Server) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// Mints returns how many installation tokens were issued.
func (s *Server) Mints() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mints
}

// Lookups returns how many installation lookups succeeded.
func (s *Server) Lookups() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookups
}

// GitDenied returns how many git requests carried a valid token whose
// scope does not cover the repository (answered 403).
func (s *Server) GitDenied() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gitDenied
}

// Tokens returns every installation token issued, for tests that check
// none appears in logs.
func (s *Server) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.tokens))
	for t := range s.tokens {
		out = append(out, t)
	}
	return out
}

// JWTs returns the app JWTs the server accepted.
func (s *Server) JWTs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lastJWTs)
}

// Lookup returns what tok is, if the server issued it and it has not
// expired.
func (s *Server) Lookup(tok string) (Token, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tok]
	if !ok || !s.opts.Now().Before(t.Expires) {
		return Token{}, false
	}
	return t, true
}

// Revoke forgets tok, as DELETE /installation/token does.
func (s *Server) Revoke(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, tok)
}

// message writes GitHub's error shape.
func message(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg, "documentation_url": "https://docs.github.com/rest"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	// Dated on the server's clock (Options.Now), as a real server dates
	// its answers: a test can skew it.
	w.Header().Set("Date", s.opts.Now().UTC().Format(http.TimeFormat))
	p := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(p) >= 2 && strings.HasSuffix(p[1], ".git") && s.opts.GitRoot != "":
		s.serveGit(w, r, p[0], strings.TrimSuffix(p[1], ".git"))
	case r.Method == http.MethodGet && len(p) == 4 && p[0] == "repos" && p[3] == "installation":
		s.withApp(w, r, func(a App) {
			s.findInstallation(w, a, func(in Installation) bool { return in.Account == p[1] && slices.Contains(in.Repositories, p[2]) })
		})
	case r.Method == http.MethodGet && len(p) == 3 && p[0] == "orgs" && p[2] == "installation":
		s.withApp(w, r, func(a App) {
			s.findInstallation(w, a, func(in Installation) bool { return in.Org && in.Account == p[1] })
		})
	case r.Method == http.MethodGet && len(p) == 3 && p[0] == "users" && p[2] == "installation":
		s.withApp(w, r, func(a App) {
			s.findInstallation(w, a, func(in Installation) bool { return !in.Org && in.Account == p[1] })
		})
	case r.Method == http.MethodPost && len(p) == 4 && p[0] == "app" && p[1] == "installations" && p[3] == "access_tokens":
		s.withApp(w, r, func(a App) { s.mint(w, r, a, p[2]) })
	case r.Method == http.MethodGet && len(p) == 3 && p[0] == "repos":
		s.getRepo(w, r, p[1], p[2])
	default:
		message(w, http.StatusNotFound, "Not Found")
	}
}

// withApp authenticates the app JWT and calls fn with the app.
func (s *Server) withApp(w http.ResponseWriter, r *http.Request, fn func(App)) {
	s.mu.Lock()
	fault := s.fault
	s.mu.Unlock()
	if fault != 0 {
		message(w, fault, http.StatusText(fault))
		return
	}
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		message(w, http.StatusUnauthorized, "A JSON web token could not be decoded")
		return
	}
	a, err := s.verifyJWT(raw)
	if err != nil {
		message(w, http.StatusUnauthorized, err.Error())
		return
	}
	s.mu.Lock()
	s.lastJWTs = append(s.lastJWTs, raw)
	s.mu.Unlock()
	fn(a)
}

// verifyJWT checks an app JWT as GitHub does.
func (s *Server) verifyJWT(raw string) (App, error) {
	var claims struct {
		Iss json.RawMessage `json:"iss"`
		Iat *int64          `json:"iat"`
		Exp *int64          `json:"exp"`
	}
	if fakekit.DecodeJWT(raw, nil, &claims) != nil {
		//lint:ignore ST1005 GitHub's own words
		return App{}, fmt.Errorf("A JSON web token could not be decoded")
	}
	iss := strings.Trim(string(claims.Iss), `"`)
	s.mu.Lock()
	var app App
	found := false
	for _, a := range s.apps {
		if iss == strconv.FormatInt(a.ID, 10) || (a.ClientID != "" && iss == a.ClientID) {
			app, found = a, true
		}
	}
	s.mu.Unlock()
	if !found {
		return App{}, fmt.Errorf("'Issuer' claim ('iss') must be an Integer or the app's client ID")
	}
	if _, _, err := jwtsign.Verify(raw, jwtsign.RS256, app.PublicKey); err != nil {
		//lint:ignore ST1005 GitHub's own words
		return App{}, fmt.Errorf("A JSON web token could not be decoded") // GitHub's words for a bad signature or alg
	}
	now := s.opts.Now()
	switch {
	case claims.Iat == nil:
		return App{}, fmt.Errorf("'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued")
	case time.Unix(*claims.Iat, 0).After(now.Add(ClockSkew)):
		return App{}, fmt.Errorf("'Issued at' claim ('iat') must be an Integer representing a time in the past")
	case claims.Exp == nil:
		return App{}, fmt.Errorf("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires")
	case !time.Unix(*claims.Exp, 0).After(now.Add(-ClockSkew)):
		return App{}, fmt.Errorf("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires")
	case time.Unix(*claims.Exp, 0).After(now.Add(MaxJWTLifetime + ClockSkew)):
		return App{}, fmt.Errorf("'Expiration time' claim ('exp') is too far in the future")
	case *claims.Exp-*claims.Iat > int64((MaxJWTLifetime + ClockSkew).Seconds()):
		return App{}, fmt.Errorf("'Expiration time' claim ('exp') is too far in the future")
	}
	return app, nil
}

func installationJSON(in Installation) map[string]any {
	typ := "User"
	if in.Org {
		typ = "Organization"
	}
	return map[string]any{"id": in.ID, "app_id": in.AppID, "account": map[string]any{"login": in.Account, "type": typ},
		"permissions": in.Permissions, "repository_selection": "selected"}
}

func (s *Server) findInstallation(w http.ResponseWriter, a App, match func(Installation) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, in := range s.insts {
		if in.AppID == a.ID && match(in) {
			s.lookups++
			writeJSON(w, http.StatusOK, installationJSON(in))
			return
		}
	}
	message(w, http.StatusNotFound, "Not Found")
}

// levels orders permission levels.
var levels = map[string]int{"read": 1, "write": 2, "admin": 3}

func (s *Server) mint(w http.ResponseWriter, r *http.Request, a App, idStr string) {
	id, err := strconv.ParseInt(idStr, 10, 64)
	s.mu.Lock()
	in, ok := s.insts[id]
	s.mu.Unlock()
	if err != nil || !ok || in.AppID != a.ID {
		message(w, http.StatusNotFound, "Not Found")
		return
	}
	var body struct {
		Repositories  []string          `json:"repositories"`
		RepositoryIDs []int64           `json:"repository_ids"`
		Permissions   map[string]string `json:"permissions"`
	}
	if r.ContentLength != 0 {
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil && err != io.EOF {
			message(w, http.StatusBadRequest, "Problems parsing JSON")
			return
		}
	}
	if len(body.RepositoryIDs) > 0 {
		message(w, http.StatusUnprocessableEntity, "repository_ids are not supported by this fake")
		return
	}
	for _, repo := range body.Repositories {
		if !slices.Contains(in.Repositories, repo) {
			message(w, http.StatusUnprocessableEntity, "There is at least one repository that does not exist or is not accessible to the parent installation.")
			return
		}
	}
	perms := in.Permissions
	if body.Permissions != nil {
		for k, v := range body.Permissions {
			if levels[v] == 0 || levels[v] > levels[in.Permissions[k]] {
				message(w, http.StatusUnprocessableEntity, "The permissions requested are not granted to this installation.")
				return
			}
		}
		perms = body.Permissions
	}
	s.mu.Lock()
	if h := s.hold; h != nil {
		s.held++
		s.mu.Unlock()
		select {
		case <-h:
		case <-r.Context().Done():
		}
		s.mu.Lock()
		s.held--
	}
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	tok := "ghs_" + hex.EncodeToString(b)
	t := Token{Installation: id, Repositories: slices.Clone(body.Repositories), Permissions: perms, Expires: s.opts.Now().Add(s.opts.TokenTTL).Truncate(time.Second)}
	s.tokens[tok] = t
	s.mints++
	s.mu.Unlock()
	out := map[string]any{"token": tok, "expires_at": t.Expires.UTC().Format(time.RFC3339), "permissions": perms, "repository_selection": "all"}
	if l, ok := s.lifetime.Get(); ok {
		delete(out, "expires_at")
		if raw, ok := l.Instant(s.opts.Now()); ok {
			out["expires_at"] = json.RawMessage(raw)
		}
	}
	if body.Repositories != nil {
		out["repository_selection"] = "selected"
		var repos []map[string]any
		for _, n := range body.Repositories {
			repos = append(repos, map[string]any{"name": n, "full_name": in.Account + "/" + n})
		}
		out["repositories"] = repos
	}
	writeJSON(w, http.StatusCreated, out)
}

// installationToken returns the token on r (Authorization: token|Bearer
// X, or Basic with the token as password).
func installationToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(h, "Bearer "); ok {
		return t
	}
	if t, ok := strings.CutPrefix(h, "token "); ok {
		return t
	}
	if _, p, ok := r.BasicAuth(); ok {
		return p
	}
	return ""
}

// allows reports whether t may use perm at level on owner/repo.
func (s *Server) allows(t Token, owner, repo, perm, level string) bool {
	s.mu.Lock()
	in, ok := s.insts[t.Installation]
	s.mu.Unlock()
	if !ok || in.Account != owner || !slices.Contains(in.Repositories, repo) {
		return false
	}
	if t.Repositories != nil && !slices.Contains(t.Repositories, repo) {
		return false
	}
	return levels[t.Permissions[perm]] >= levels[level]
}

func (s *Server) getRepo(w http.ResponseWriter, r *http.Request, owner, repo string) {
	t, ok := s.Lookup(installationToken(r))
	if !ok {
		message(w, http.StatusUnauthorized, "Bad credentials")
		return
	}
	if !s.allows(t, owner, repo, "metadata", "read") {
		message(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": repo, "full_name": owner + "/" + repo, "private": true,
		"owner": map[string]any{"login": owner}, "permissions": t.Permissions})
}

// serveGit runs git http-backend for OWNER/REPO.git after checking the
// Basic password is an installation token with contents read (fetch) or
// write (push) on the repository.
func (s *Server) serveGit(w http.ResponseWriter, r *http.Request, owner, repo string) {
	user, _, _ := r.BasicAuth()
	t, ok := s.Lookup(installationToken(r))
	if !ok || user != "x-access-token" {
		w.Header().Set("WWW-Authenticate", `Basic realm="GitHub"`)
		http.Error(w, "Invalid username or token.", http.StatusUnauthorized)
		return
	}
	level := "read"
	if r.URL.Query().Get("service") == "git-receive-pack" || strings.HasSuffix(r.URL.Path, "/git-receive-pack") {
		level = "write"
	}
	if !s.allows(t, owner, repo, "contents", level) {
		s.mu.Lock()
		s.gitDenied++
		s.mu.Unlock()
		http.Error(w, "Permission to "+owner+"/"+repo+".git denied.", http.StatusForbidden)
		return
	}
	gitPath, err := exec.LookPath("git")
	if err != nil {
		http.Error(w, "git is not installed", http.StatusInternalServerError)
		return
	}
	h := &cgi.Handler{
		Path: gitPath,
		Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + s.opts.GitRoot, "GIT_HTTP_EXPORT_ALL=1",
			"REMOTE_USER=" + user, "GIT_CONFIG_NOSYSTEM=1", "HOME=" + s.opts.GitRoot},
		Stderr: io.Discard,
	}
	// http-backend needs receive-pack enabled for an authenticated user.
	h.Env = append(h.Env, "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.receivepack", "GIT_CONFIG_VALUE_0=true")
	h.ServeHTTP(w, r)
}
