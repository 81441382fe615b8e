package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/killswitch"
)

// DefaultSwitchResync is how often a replica re-reads the kill switch
// state from Redis beside the reads that messages trigger.
const DefaultSwitchResync = 5 * time.Second

// MinAdminTokenLen is the shortest admin token accepted.
const MinAdminTokenLen = 16

// Defaults of the admin listener's limits (Admin). The admin API's bodies
// are at most 16 KiB and its answers small (/metrics is the largest), so
// these are generous for operators and kubelets and short for a client
// that holds connections open (slowloris).
const (
	DefaultAdminReadHeaderTimeout = 5 * time.Second
	DefaultAdminReadTimeout       = 30 * time.Second
	DefaultAdminWriteTimeout      = 30 * time.Second
	DefaultAdminIdleTimeout       = 60 * time.Second
	DefaultAdminMaxHeaderBytes    = 16 << 10
	// DefaultAdminMaxConnections is admin.max_connections' default: far
	// above what probes, a Prometheus scrape and operators hold open, far
	// below what exhausts the process's file descriptors.
	DefaultAdminMaxConnections = 256
)

// Admin configures the admin API on admin_listen: the kill switch
// (docs/config.md#admin).
type Admin struct {
	// TokenFile and TokenEnv name where the admin API's bearer token is:
	// a file (re-read at every request, so it rotates without a restart)
	// or an environment variable. Without either, the API that changes
	// state is off; /readyz and GET /admin/v1/switches still answer.
	TokenFile string `yaml:"token_file"`
	TokenEnv  string `yaml:"token_env"`
	// StateFile, when set, keeps the kill switch state in a local JSON
	// file, so that it survives a restart without Redis (and is what a
	// replica enforces when it starts while Redis is down).
	StateFile string `yaml:"state_file"`
	// ResyncInterval is how often the kill switch state is re-read from
	// Redis, and how often the run-token revocations a replica knows of
	// are written back where Redis lost them (default 5s).
	ResyncInterval Duration `yaml:"resync_interval"`
	// TLS, when Cert and Key are set, serves admin_listen over HTTPS
	// (admintls.go), so that the token does not cross the network in
	// clear.
	TLS AdminTLS `yaml:"tls"`
	// ReadHeaderTimeout is the time a client of admin_listen has to send
	// its request headers (default 5s).
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// ReadTimeout is the time it has to send a whole request (default
	// 30s).
	ReadTimeout Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing an answer, from the end of the request
	// headers (default 30s).
	WriteTimeout Duration `yaml:"write_timeout"`
	// IdleTimeout closes idle keep-alive connections (default 60s).
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes is the largest request header block accepted
	// (default 16 KiB).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxConnections caps the open connections of admin_listen (default
	// DefaultAdminMaxConnections; at least 1, never off): a connection
	// over it is refused when accepted, so that a client holding
	// connections open cannot exhaust the process's file descriptors
	// through the admin listener, which the proxy listeners' caps do
	// not count.
	MaxConnections *int `yaml:"max_connections"`
	// MaxSwitches bounds the kill switches in force, all kinds together
	// (default killswitch.DefaultMaxEntries, at least 1): a disable over
	// it is refused 409 switch_limit, a tripwire's quarantine over three
	// quarters of it is not set. The state is kept whole in Redis and the
	// state file and re-read by every replica.
	MaxSwitches int `yaml:"max_switches"`
}

// applyDefaults fills the admin listener's limits.
func (a *Admin) applyDefaults() {
	for _, d := range []struct {
		p *Duration
		v time.Duration
	}{{&a.ReadHeaderTimeout, DefaultAdminReadHeaderTimeout}, {&a.ReadTimeout, DefaultAdminReadTimeout},
		{&a.WriteTimeout, DefaultAdminWriteTimeout}, {&a.IdleTimeout, DefaultAdminIdleTimeout}} {
		if *d.p == 0 {
			*d.p = Duration(d.v)
		}
	}
	if a.MaxHeaderBytes == 0 {
		a.MaxHeaderBytes = DefaultAdminMaxHeaderBytes
	}
	if a.MaxConnections == nil {
		n := DefaultAdminMaxConnections
		a.MaxConnections = &n
	}
	if a.MaxSwitches == 0 {
		a.MaxSwitches = killswitch.DefaultMaxEntries
	}
}

// maxConnections is admin.max_connections in force.
func (a *Admin) maxConnections() int {
	if a.MaxConnections == nil {
		return DefaultAdminMaxConnections
	}
	return *a.MaxConnections
}

// check validates the admin block and resolves its paths against dir.
func (a *Admin) check(file string, root *yaml.Node, dir string) []error {
	var errs []error
	bad := func(msg string, key ...string) {
		l, c := position(root, append([]string{"admin"}, key...)...)
		errs = append(errs, &ConfigError{File: file, Line: l, Col: c, Msg: msg})
	}
	if a.TokenFile != "" && a.TokenEnv != "" {
		bad("admin: set token_file or token_env, not both")
	}
	a.TLS.check(bad)
	if a.MaxHeaderBytes < 0 || (a.MaxHeaderBytes > 0 && a.MaxHeaderBytes < 1024) {
		bad("admin.max_header_bytes: use at least 1024 (leave it out for 16384)", "max_header_bytes")
	}
	if a.MaxConnections != nil && *a.MaxConnections < 1 {
		bad(fmt.Sprintf("admin.max_connections: use at least 1 (the admin listener's connections are always capped; leave it out for %d)", DefaultAdminMaxConnections), "max_connections")
	}
	if a.MaxSwitches < 0 {
		bad(fmt.Sprintf("admin.max_switches: use at least 1 (leave it out for %d)", killswitch.DefaultMaxEntries), "max_switches")
	}
	for _, p := range []*string{&a.TokenFile, &a.StateFile, &a.TLS.Cert, &a.TLS.Key, &a.TLS.ClientCA} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	return errs
}

// newAdminServer is the admin listener's server, with the admin
// limits: a client that sends its headers or body slowly, or holds a
// connection idle, is cut off.
func (g *Gateway) newAdminServer(errLog *log.Logger) *http.Server {
	a := g.cfg.Admin
	return &http.Server{
		Handler:           g.adminHandler(),
		ReadHeaderTimeout: a.ReadHeaderTimeout.D(),
		ReadTimeout:       a.ReadTimeout.D(),
		WriteTimeout:      a.WriteTimeout.D(),
		IdleTimeout:       a.IdleTimeout.D(),
		MaxHeaderBytes:    a.MaxHeaderBytes,
		ErrorLog:          errLog,
	}
}

// readyzDetail is the body of /readyz for a caller that presented the
// admin token: what makes the status, naming files, identities and the
// operators' switches.
type readyzDetail struct {
	Status     string        `json:"status"`
	Policy     readyzPolicy  `json:"policy"`
	Redis      string        `json:"redis,omitempty"`
	SVID       *readyzSVID   `json:"svid,omitempty"`
	KillSwitch *SwitchesView `json:"kill_switch"`
	// Audit is the state of the audit outputs: a failing output, a
	// failing rotation, lines dropped.
	Audit *readyzAudit `json:"audit"`
	// Config is what differs between the config file, as last re-read,
	// and the running config (Gateway.ReloadConfig); omitted when nothing.
	Config *readyzConfig `json:"config,omitempty"`
}

// readyzConfig names the config settings that wait for a restart, and
// the error of a setting the last config reload could not apply.
type readyzConfig struct {
	NeedsRestart []string `json:"needs_restart"`
	Error        string   `json:"error,omitempty"`
}

type readyzPolicy struct {
	File  string `json:"file"`
	Hash  string `json:"hash"`
	Rules int    `json:"rules"`
}

type readyzSVID struct {
	SpiffeID string `json:"spiffe_id"`
	Expires  string `json:"expires"`
	Held     bool   `json:"held"`
}

// readyzCoarse is the body of /readyz for everyone else (kubelet
// probes): the status word only, which is also the reason when not ready
// (draining, no_svid, kill_switch_unverified).
type readyzCoarse struct {
	Status string `json:"status"`
	Detail string `json:"detail"`
}

// serveReadyz answers /readyz: 200 when ready, 503 otherwise, for
// everyone; the detail only to a caller with the admin token (and the
// client certificate admin.tls.client_ca asks for).
func (g *Gateway) serveReadyz(w http.ResponseWriter, r *http.Request) {
	ready := !g.draining.Load()
	select {
	case <-g.ready:
	default:
		ready = false
	}
	status, word := http.StatusOK, "ready"
	if !ready {
		status, word = http.StatusServiceUnavailable, "draining"
	}
	// With the Workload API, a replica without a valid X.509-SVID (the
	// agent gone for longer than the SVID lives) cannot serve its TLS
	// listener nor verify rotated client SVIDs.
	var svid *readyzSVID
	if src := g.ids.WorkloadAPI(); src != nil {
		st := src.Status()
		if !st.Held && ready {
			status, word = http.StatusServiceUnavailable, "no_svid"
		}
		svid = &readyzSVID{SpiffeID: st.ID, Expires: st.Expires.UTC().Format(time.RFC3339), Held: st.Held}
	}
	// With Redis, a replica that holds no verified kill switch state (no
	// admin.state_file, and Redis unavailable since it started, or the
	// state in Redis does not verify: a rotation of
	// cache.redis.encryption_keys in progress, tampering) cannot tell what
	// the fleet disabled: fail closed, as its requests do
	// (switchRefusal).
	if sw := g.switches.Status(); ready && status == http.StatusOK && sw.Backend == "redis" && !sw.Held {
		status, word = http.StatusServiceUnavailable, "kill_switch_unverified"
	}
	if !g.adminAuthorized(r) {
		writeJSON(w, status, readyzCoarse{Status: word, Detail: "send the admin token (Authorization: Bearer, admin.token_file) for the detail"})
		return
	}
	st := g.store.Current().Stats()
	d := readyzDetail{Status: word, Policy: readyzPolicy{File: g.store.Path(), Hash: st.Hash, Rules: st.Rules}, SVID: svid}
	// Redis being down does not make a replica unready: it serves from
	// its own cache and the providers meanwhile.
	if g.shared != nil {
		d.Redis = "down"
		if g.shared.store.Up() {
			d.Redis = "up"
		}
	}
	// Disabled items are not unreadiness: the replica serves everything
	// else. The detail says what is disabled.
	sv := g.switchesView()
	d.KillSwitch = &sv
	d.Audit = g.audit.readyz()
	if p, e := g.pendingRestart(), g.reloadError(); p != nil || e != "" {
		d.Config = &readyzConfig{NeedsRestart: p, Error: e}
	}
	writeJSON(w, status, d)
}

// adminAuthorized reports whether r carries the admin token (and the
// client certificate admin.tls.client_ca asks for). Without a configured
// token nobody is.
func (g *Gateway) adminAuthorized(r *http.Request) bool {
	return g.adminTok != nil && g.adminClientCert(r) && g.adminTok.check(r) == nil
}

// adminRefusal checks that r may use the admin API (the token, and the
// client certificate admin.tls.client_ca asks for). It returns 0 when it
// may (and notes in the request's audit record that the token matched),
// else the status, code and reason to answer, and logs why.
func (g *Gateway) adminRefusal(r *http.Request) (status int, code, reason string) {
	src := sourceString(evidence(r))
	if g.adminTok == nil {
		g.log.Warn("admin API: request refused: no admin token is configured", slog.String("source", src), slog.String("path", r.URL.Path))
		return http.StatusForbidden, codeAdminOff, "the admin API is off: set admin.token_file or admin.token_env in the gateway config"
	}
	if !g.adminClientCert(r) {
		g.log.Warn("admin API: request refused: no client certificate", slog.String("source", src), slog.String("path", r.URL.Path))
		return http.StatusForbidden, codeAdminClientCert, "admin.tls.client_ca is set: the admin API needs a client certificate signed by it"
	}
	if err := g.adminTok.check(r); err != nil {
		if errors.Is(err, errNoBearer) || errors.Is(err, errWrongToken) {
			// The presented value is never logged: a near miss is as
			// secret as the token.
			g.log.Warn("admin API: request refused", slog.String("source", src), slog.String("path", r.URL.Path), slog.String("why", err.Error()))
			return http.StatusUnauthorized, codeUnauthorized, "the admin token was missing or not accepted"
		}
		g.log.Error("admin API: cannot read the admin token", slog.Any("error", err))
		return http.StatusServiceUnavailable, codeAdminTokenFile, "the gateway cannot read its admin token; see its log"
	}
	adminRecordOf(r).token = true
	return 0, "", ""
}

// adminToken checks the admin API's bearer token.
type adminToken struct {
	file string
	// env is the digest of the token read from the environment at start.
	env *[sha256.Size]byte
}

// newAdminToken reads and checks the configured token; nil without one.
// The kill switch's start and Config.CheckFiles call it; an error names
// the key under admin (keyError).
func newAdminToken(a Admin) (*adminToken, error) {
	if a.TokenFile == "" && a.TokenEnv == "" {
		return nil, nil
	}
	t := &adminToken{file: a.TokenFile}
	key := "token_file"
	if a.TokenFile == "" {
		key = "token_env"
	}
	tok, where, err := t.read(a.TokenEnv)
	if err != nil {
		return nil, &keyError{key: key, err: fmt.Errorf("admin.%s: %w", key, err)}
	}
	if len(tok) < MinAdminTokenLen {
		return nil, &keyError{key: key, err: fmt.Errorf("admin.%s: the admin token in %s holds %d characters; use at least %d random ones (head -c32 /dev/urandom | base64)", key, where, len(tok), MinAdminTokenLen)}
	}
	if a.TokenFile == "" {
		d := sha256.Sum256([]byte(tok))
		t.env = &d
	}
	return t, nil
}

func (t *adminToken) read(env string) (token, where string, err error) {
	raw, where, err := readSecret(t.file, env)
	if err != nil {
		return "", where, err
	}
	return strings.TrimSpace(raw), where, nil
}

// errNoBearer and errWrongToken are why an admin request was refused.
var (
	errNoBearer   = errors.New("no bearer token in the Authorization header")
	errWrongToken = errors.New("the bearer token does not match")
)

// check compares the request's bearer token with the configured one in
// constant time (over digests, so the length does not leak either).
func (t *adminToken) check(r *http.Request) error {
	scheme, presented, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	presented = strings.TrimSpace(presented)
	if !ok || !strings.EqualFold(scheme, "Bearer") || presented == "" {
		return errNoBearer
	}
	want := t.env
	if want == nil {
		tok, _, err := t.read("")
		if err != nil {
			return fmt.Errorf("admin token file: %w", err)
		}
		d := sha256.Sum256([]byte(tok))
		want = &d
		if len(tok) < MinAdminTokenLen {
			return fmt.Errorf("admin token file %s holds fewer than %d characters", t.file, MinAdminTokenLen)
		}
	}
	got := sha256.Sum256([]byte(presented))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return errWrongToken
	}
	return nil
}

// Admin API reason codes.
const (
	codeUnauthorized    = "unauthorized"
	codeAdminOff        = "admin_api_off"
	codeAdminBadReq     = "bad_request"
	codeSwitchUnavail   = "switch_unavailable"
	codeSwitchLimit     = "switch_limit"
	codeAdminTokenFile  = "admin_token_unreadable"
	codeAdminClientCert = "client_certificate_required"
)

// adminRoutes adds the kill switch API to the admin mux.
func (g *Gateway) adminRoutes(mux *adminMux) {
	mux.handle("POST /admin/v1/disable", true, func(w http.ResponseWriter, r *http.Request) { g.serveSwitch(w, r, "disable") })
	mux.handle("POST /admin/v1/enable", true, func(w http.ResponseWriter, r *http.Request) { g.serveSwitch(w, r, "enable") })
	mux.handle("GET /admin/v1/switches", true, func(w http.ResponseWriter, r *http.Request) {
		// It names the operators and their reasons, like /readyz's
		// detail: the admin token is needed.
		if st, code, reason := g.adminRefusal(r); st != 0 {
			if st == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="credgate admin"`)
			}
			adminError(w, st, code, reason)
			return
		}
		writeJSON(w, http.StatusOK, g.switchesView())
	})
}

// switchRequest is the body of POST /admin/v1/disable and /enable.
type switchRequest struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	By     string `json:"by"`
	Reason string `json:"reason"`
}

// SwitchResponse answers a successful POST /admin/v1/disable or /enable.
// SwitchResponse is the answer of POST /admin/v1/disable and /enable: the
// admin API's wire type, shared with `credgate admin`.
type SwitchResponse struct {
	Action  string           `json:"action"`
	Changed bool             `json:"changed"`
	Scope   string           `json:"scope"`
	Pending bool             `json:"pending,omitempty"`
	Switch  killswitch.Entry `json:"switch"`
	// Warnings are for the operator: a name the policy in force does not
	// use, a change that applies to this replica only.
	Warnings []string `json:"warnings,omitempty"`
}

// SwitchesView is the answer of GET /admin/v1/switches and the
// kill_switch part of /readyz: the admin API's wire type, shared with
// `credgate admin list`.
type SwitchesView struct {
	Backend  string     `json:"backend"`
	Redis    string     `json:"redis,omitempty"`
	LastSync *time.Time `json:"last_sync,omitempty"`
	Pending  int        `json:"pending,omitempty"`
	// State is "verified" or "unverified" with Redis: unverified means
	// the state last read from Redis does not verify (Unverified says
	// why) and the last verified one stays in force.
	State      string             `json:"state,omitempty"`
	Unverified string             `json:"unverified,omitempty"`
	Generation uint64             `json:"generation,omitempty"`
	Disabled   []killswitch.Entry `json:"disabled"`
}

func (g *Gateway) switchesView() SwitchesView {
	st := g.switches.Status()
	v := SwitchesView{Backend: st.Backend, Pending: st.Pending, Disabled: g.switches.Snapshot().Entries()}
	if v.Disabled == nil {
		v.Disabled = []killswitch.Entry{}
	}
	if st.Backend == "redis" {
		v.Redis = "down"
		if st.Up {
			v.Redis = "up"
		}
		if !st.LastSync.IsZero() {
			ls := st.LastSync.UTC()
			v.LastSync = &ls
		}
		v.State, v.Unverified, v.Generation = "verified", st.Unverified, st.Generation
		if st.Unverified != "" {
			v.State = "unverified"
		}
	}
	return v
}

// serveSwitch handles POST /admin/v1/disable and /enable.
func (g *Gateway) serveSwitch(w http.ResponseWriter, r *http.Request, action string) {
	ev := evidence(r)
	rec := adminRecordOf(r)
	// The admin wrapper (serveAdmin) writes the audit line; the
	// handler names the switch in it.
	fail := func(status int, code, reason, sw string) {
		g.swm.admin.WithLabelValues(action, code).Inc()
		rec.sw = sw
		adminError(w, status, code, reason)
	}
	if st, code, reason := g.adminRefusal(r); st != 0 {
		if st == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="credgate admin"`)
		}
		fail(st, code, reason, "")
		return
	}
	var req switchRequest
	if err := decodeAdminBody(w, r, 16<<10, &req); err != nil {
		fail(http.StatusBadRequest, codeAdminBadReq, "the body must be a JSON object {\"kind\":\"rule|workload|source|credential\",\"name\":\"...\",\"by\":\"...\",\"reason\":\"...\"}: "+err.Error(), "")
		return
	}
	kind, err := killswitch.ParseKind(req.Kind)
	if err != nil {
		fail(http.StatusBadRequest, codeAdminBadReq, strings.TrimPrefix(err.Error(), "killswitch: "), "")
		return
	}
	probe := killswitch.Entry{Kind: kind, Name: req.Name, By: req.By, Reason: req.Reason}
	sw := probe.ID()
	if err := probe.Validate(); err != nil {
		fail(http.StatusBadRequest, codeAdminBadReq, strings.TrimPrefix(err.Error(), "killswitch: "), sw)
		return
	}
	// A change is carried through even if the caller goes away: it must
	// not be left half done on this replica or in Redis.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	var res killswitch.Result
	if action == "disable" {
		res, err = g.switches.Disable(ctx, probe)
	} else {
		res, err = g.switches.Enable(ctx, kind, req.Name)
	}
	if err != nil {
		if errors.Is(err, killswitch.ErrFull) {
			fail(http.StatusConflict, codeSwitchLimit, strings.TrimPrefix(err.Error(), "killswitch: "), sw)
			return
		}
		if errors.Is(err, killswitch.ErrUnavailable) {
			fail(http.StatusServiceUnavailable, codeSwitchUnavail, fmt.Sprintf("Redis is unavailable: %s stays disabled (one disabled on this replica during the outage is written to every replica when Redis answers); retry when Redis answers", probe), sw)
			return
		}
		fail(http.StatusBadRequest, codeAdminBadReq, strings.TrimPrefix(err.Error(), "killswitch: "), sw)
		return
	}
	resp := SwitchResponse{Action: action, Changed: res.Changed, Scope: string(res.Scope), Pending: res.Pending, Switch: res.Entry}
	resp.Warnings = g.switchWarnings(action, probe, res)
	result := "ok"
	if !res.Changed {
		result = "unchanged"
	}
	g.swm.admin.WithLabelValues(action, result).Inc()
	attrs := []any{slog.String("switch", sw), slog.Bool("changed", res.Changed), slog.String("scope", string(res.Scope)),
		slog.String("by", req.By), slog.String("reason", req.Reason), slog.String("source", sourceString(ev))}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		// The operator's verified client certificate (admin.tls.client_ca).
		attrs = append(attrs, slog.String("client_cert", r.TLS.VerifiedChains[0][0].Subject.String()))
	}
	g.log.Info("admin API: "+action, attrs...)
	rec.sw = sw
	writeJSON(w, http.StatusOK, resp)
}

// switchWarnings are the notes for the operator on a change.
func (g *Gateway) switchWarnings(action string, e killswitch.Entry, res killswitch.Result) []string {
	var out []string
	pol := g.store.Current()
	known := false
	switch e.Kind {
	case killswitch.Rule:
		known = pol.HasRule(e.Name)
	case killswitch.Workload:
		known = e.Name == "anonymous"
		for _, s := range pol.Workloads() {
			known = known || s.Name == e.Name
		}
	case killswitch.Credential:
		for _, c := range pol.Credentials() {
			known = known || c.Name == e.Name
		}
	case killswitch.Source:
		known = true // an address, not a policy name
	}
	if !known && action == "disable" {
		out = append(out, fmt.Sprintf("%s is not in the policy in force (%s); it is disabled anyway and applies as soon as a policy names it", e, pol.File()))
	}
	switch {
	case !res.Changed && action == "disable":
		out = append(out, fmt.Sprintf("%s was already disabled (since %s by %s)", e, res.Entry.Since.UTC().Format(time.RFC3339), orDash(res.Entry.By)))
	case !res.Changed:
		out = append(out, fmt.Sprintf("%s was not disabled", e))
	case res.Pending:
		out = append(out, "Redis is unavailable: the switch is in force on this replica only, and is written to Redis (and so to every replica) when Redis answers again")
	case res.Scope == killswitch.ScopeReplica && g.shared == nil:
		msg := "no cache.redis: the change applies to this replica only"
		if g.cfg.Admin.StateFile == "" && action == "disable" {
			msg += ", and does not survive its restart (set admin.state_file)"
		}
		out = append(out, msg)
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// adminError writes an admin API error: the same JSON shape and
// X-Credgate-Reason header as the proxy's refusals.
func adminError(w http.ResponseWriter, status int, code, reason string) {
	w.Header().Set(ReasonHeader, code)
	writeJSON(w, status, map[string]string{"error": strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_")), "code": code, "reason": reason})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// decodeAdminBody decodes the body of an admin API call, at most limit
// bytes, into v: exactly one JSON object whose keys v has fields for,
// each once. encoding/json would take a key given twice (or twice in
// different case: it matches field names without regard to case) as its
// last value and ignore what follows the object, so that
// {"kind":"rule","name":"payments","name":"billing"} disabled billing
// while a reader of the body — an operator, a proxy in front of the
// admin listener checking who may switch what — saw payments: the call
// is refused instead, as the proxy refuses a request that servers could
// read two ways.
func decodeAdminBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("the body is not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		k := foldKey(key)
		if seen[k] {
			return fmt.Errorf("the key %q is given twice (keys are matched without regard to case)", key)
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("something follows the JSON object; send one object")
	}
	dec = json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// foldKey is key with each rune replaced by the smallest rune of its
// simple case folding orbit: two keys encoding/json matches to the same
// field (it compares them as bytes.EqualFold does: "reaſon", with a long
// s, is "reason") fold to the same string.
func foldKey(key string) string {
	return strings.Map(func(r rune) rune {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		return m
	}, key)
}
