// Package runtoken is the gateway's own token issuer, for `credgate run`:
// it signs short-lived JWTs that name one workload, publishes the keys
// that verify them (a JWKS, served on the admin listener), and keeps the
// list of tokens revoked before they expire (shared through Redis when
// the gateway has one), which the jwt identity factor checks for every
// token of this issuer.
//
// A token is asked for through the admin API with the admin token
// (gateway/runtokens.go), and only for the workloads the config lists
// (run_tokens.workloads). The jwt factor trusts the issuer without an
// identity.jwt.issuers entry: the gateway hands it the Issuer as an
// identity.LocalIssuer.
package runtoken

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/redis/go-redis/v9"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/internal/fleet"
	"github.com/credgate/credgate/secret"
)

// Defaults of Config.
const (
	// DefaultIssuer is the iss claim of the tokens.
	DefaultIssuer = "urn:credgate:run"
	// DefaultAudience is their aud claim.
	DefaultAudience = "credgate"
	// DefaultTTL is a token's lifetime when the caller asks for none.
	DefaultTTL = 15 * time.Minute
	// DefaultMaxTTL is the longest lifetime a caller may ask for.
	DefaultMaxTTL = 12 * time.Hour
	// DefaultResyncInterval is Options.ResyncInterval's default.
	DefaultResyncInterval = 5 * time.Second
	// DefaultRotateInterval is how long a generated signing key signs.
	DefaultRotateInterval = 24 * time.Hour
	// DefaultAlgorithm is the signature algorithm of generated keys.
	DefaultAlgorithm = "ES256"
)

// Errors callers branch on.
var (
	// ErrWorkloadNotAllowed: run_tokens.workloads does not list the
	// workload a token was asked for.
	ErrWorkloadNotAllowed = errors.New("runtoken: workload not allowed")
	// ErrBadRequest: a TTL out of range, an empty workload, a token to
	// revoke that is not one of this issuer's.
	ErrBadRequest = errors.New("runtoken: bad request")
	// ErrUnavailable: the shared revocation list (Redis) did not answer.
	ErrUnavailable = errors.New("runtoken: revocation list unavailable")
)

// Config is the `run_tokens:` block of the gateway config.
type Config struct {
	// Workloads are the workload names a token may be asked for ("*":
	// any). Required: an empty list issues nothing.
	Workloads []string `yaml:"workloads"`
	// Issuer is the tokens' iss claim (default DefaultIssuer). A policy
	// workload names it in claims: {iss: ..., sub: NAME}.
	Issuer string `yaml:"issuer"`
	// Audience is the tokens' aud claim (default DefaultAudience).
	Audience string `yaml:"audience"`
	// TTL is a token's lifetime when the caller asks for none (default
	// DefaultTTL).
	TTL time.Duration `yaml:"ttl"`
	// MaxTTL is the longest lifetime a caller may ask for (default
	// DefaultMaxTTL).
	MaxTTL time.Duration `yaml:"max_ttl"`
	// Algorithm is ES256 (default) or EdDSA, for generated keys; a
	// KeyFile's key decides its own (P-256: ES256, Ed25519: EdDSA).
	Algorithm string `yaml:"algorithm"`
	// KeyFile is a PEM private key (PKCS#8 or SEC 1; P-256 or Ed25519)
	// that signs the tokens. Replicas that must accept each other's
	// tokens share it. Without it each replica generates its own key at
	// start and replaces it every RotateInterval.
	KeyFile string `yaml:"key_file"`
	// RotateInterval is how long a generated key signs before a new one
	// replaces it (default DefaultRotateInterval). The old key keeps
	// verifying until the last token it signed has expired.
	RotateInterval time.Duration `yaml:"rotate_interval"`
}

// WithDefaults returns c with its unset fields set.
func (c Config) WithDefaults() Config {
	if c.Issuer == "" {
		c.Issuer = DefaultIssuer
	}
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = DefaultMaxTTL
	}
	if c.Algorithm == "" {
		c.Algorithm = DefaultAlgorithm
	}
	if c.RotateInterval == 0 {
		c.RotateInterval = DefaultRotateInterval
	}
	return c
}

// Check lists the problems of c (defaults applied), each naming its key
// under run_tokens and what to change. It reads no file.
func (c Config) Check() []Problem {
	c = c.WithDefaults()
	var out []Problem
	add := func(key, msg string) { out = append(out, Problem{Key: key, Msg: msg}) }
	if len(c.Workloads) == 0 {
		add("workloads", "run_tokens.workloads: list the workloads credgate run may ask a token for (or \"*\" for any)")
	}
	for _, w := range c.Workloads {
		if strings.TrimSpace(w) == "" {
			add("workloads", "run_tokens.workloads: an empty name")
		}
	}
	if c.TTL < time.Minute {
		add("ttl", "run_tokens.ttl: use at least 1m")
	}
	if c.MaxTTL < c.TTL {
		add("max_ttl", fmt.Sprintf("run_tokens.max_ttl (%s) is shorter than ttl (%s)", c.MaxTTL, c.TTL))
	}
	if c.Algorithm != "ES256" && c.Algorithm != "EdDSA" {
		add("algorithm", fmt.Sprintf("run_tokens.algorithm: unknown %q (use ES256 or EdDSA)", c.Algorithm))
	}
	if c.RotateInterval < time.Minute {
		add("rotate_interval", "run_tokens.rotate_interval: use at least 1m")
	}
	if !strings.Contains(c.Issuer, ":") {
		add("issuer", fmt.Sprintf("run_tokens.issuer: %q is not a URI (use e.g. %s or https://credgate.example.org/run)", c.Issuer, DefaultIssuer))
	}
	return out
}

// Problem is one finding of Config.Check.
type Problem struct {
	// Key is the setting under run_tokens (for its line and column).
	Key string
	// Msg says what is wrong and what to change.
	Msg string
}

// Options are an Issuer's runtime dependencies.
type Options struct {
	// Redis, when set, shares the revocation list between replicas.
	Redis redis.UniversalClient
	// Namespace prefixes the Redis keys (cache.redis.namespace).
	Namespace string
	// Timeout bounds one Redis call (default 1s).
	Timeout time.Duration
	// ResyncInterval is how often the revocations this replica knows of
	// are written back to Redis where Redis lost them (default
	// DefaultResyncInterval).
	ResyncInterval time.Duration
	// Log receives key rotations and Redis state changes; never a token.
	Log *slog.Logger
	// Now replaces time.Now (tests).
	Now func() time.Time
}

// signingKey is one key of the issuer.
type signingKey struct {
	priv crypto.Signer
	pub  jose.JSONWebKey
	alg  jose.SignatureAlgorithm
	// created is when it started signing, retired when it stopped (zero
	// while it signs).
	created, retired time.Time
}

// Issuer signs, publishes and revokes run tokens. It is safe for
// concurrent use.
type Issuer struct {
	cfg     Config
	opts    Options
	health  *fleet.Health
	fromKey bool // KeyFile: never rotated

	mu   sync.Mutex
	keys []*signingKey // keys[0] signs
	// revoked holds, by jti, until when (the token's expiry) every
	// revocation this replica made or read from Redis: Redis may lose a
	// revocation (restarted empty, failed over, the key deleted), this
	// memory does not, and resync writes it back from here.
	revoked map[string]time.Time

	// The resync goroutine (with Redis only); Close stops it.
	cancel context.CancelFunc
	done   chan struct{}
}

// New builds an Issuer from cfg (defaults applied): it reads KeyFile, or
// generates a key.
func New(cfg Config, opts Options) (*Issuer, error) {
	cfg = cfg.WithDefaults()
	if p := cfg.Check(); len(p) > 0 {
		return nil, fmt.Errorf("runtoken: %s", p[0].Msg)
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.ResyncInterval <= 0 {
		opts.ResyncInterval = DefaultResyncInterval
	}
	is := &Issuer{cfg: cfg, opts: opts, revoked: map[string]time.Time{}}
	if opts.Redis != nil {
		is.health = &fleet.Health{Log: opts.Log,
			Down:      "run tokens: Redis unavailable; tokens of credgate run are refused until it answers (the revocation list cannot be read)",
			Recovered: "run tokens: Redis answers again"}
		is.health.Set(true)
	}
	var k *signingKey
	var err error
	if cfg.KeyFile != "" {
		k, err = readKey(cfg.KeyFile)
		is.fromKey = true
	} else {
		k, err = generateKey(cfg.Algorithm)
	}
	if err != nil {
		return nil, err
	}
	k.created = opts.Now()
	is.keys = []*signingKey{k}
	if opts.Redis != nil {
		ctx, cancel := context.WithCancel(context.Background())
		is.cancel, is.done = cancel, make(chan struct{})
		go is.resyncLoop(ctx)
	}
	return is, nil
}

// Close stops writing revocations back to Redis. The Issuer still
// verifies and revokes after it.
func (is *Issuer) Close() error {
	if is.cancel != nil {
		is.cancel()
		<-is.done
	}
	return nil
}

// CheckKeyFile reads the signing key file as New does (KeyFile): an error
// is what New would return for it. credgate validate calls it.
func CheckKeyFile(file string) error {
	_, err := readKey(file)
	return err
}

// readKey reads a PEM private key file.
func readKey(file string) (*signingKey, error) {
	data, err := cfgfile.ReadSecret(file)
	if err != nil {
		return nil, fmt.Errorf("run_tokens.key_file: %w (write one with: openssl genpkey -algorithm ed25519 -out FILE)", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("run_tokens.key_file %s holds no PEM block (write one with: openssl genpkey -algorithm ed25519 -out FILE)", file)
	}
	var key any
	if key, err = x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		if key, err = x509.ParseECPrivateKey(block.Bytes); err != nil {
			return nil, fmt.Errorf("run_tokens.key_file %s: not a PKCS#8 or SEC 1 private key: %w", file, err)
		}
	}
	return newKey(key, file)
}

// generateKey makes a key for alg.
func generateKey(alg string) (*signingKey, error) {
	var key any
	var err error
	if alg == "EdDSA" {
		_, key, err = ed25519.GenerateKey(rand.Reader)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("runtoken: generate a %s key: %w", alg, err)
	}
	return newKey(key, "generated key")
}

func newKey(key any, what string) (*signingKey, error) {
	var alg jose.SignatureAlgorithm
	var signer crypto.Signer
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("run_tokens.key_file %s: an ECDSA key must be on P-256 (ES256)", what)
		}
		alg, signer = jose.ES256, k
	case ed25519.PrivateKey:
		alg, signer = jose.EdDSA, k
	default:
		return nil, fmt.Errorf("run_tokens.key_file %s: a %T; use a P-256 (ES256) or Ed25519 (EdDSA) key", what, key)
	}
	pub := jose.JSONWebKey{Key: signer.Public(), Algorithm: string(alg), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("runtoken: key thumbprint: %w", err)
	}
	pub.KeyID = hex.EncodeToString(tp[:12])
	return &signingKey{priv: signer, pub: pub, alg: alg}, nil
}

// rotate replaces a generated signing key that has signed for
// RotateInterval and drops retired keys whose tokens have all expired.
// is.mu is held.
func (is *Issuer) rotate(now time.Time) {
	if !is.fromKey && now.Sub(is.keys[0].created) >= is.cfg.RotateInterval {
		k, err := generateKey(is.cfg.Algorithm)
		if err != nil {
			is.opts.Log.Error("run tokens: key rotation failed; the current key keeps signing", slog.Any("error", err))
		} else {
			k.created = now
			is.keys[0].retired = now
			is.keys = append([]*signingKey{k}, is.keys...)
			is.opts.Log.Info("run tokens: signing key rotated", slog.String("kid", k.pub.KeyID))
		}
	}
	is.keys = slices.DeleteFunc(is.keys, func(k *signingKey) bool {
		return !k.retired.IsZero() && now.Sub(k.retired) > is.cfg.MaxTTL+afterExp
	})
}

// Token is an issued token.
type Token struct {
	// Value is the compact JWT.
	Value secret.Value
	// ID is its jti claim (not a secret: it revokes nothing by itself).
	ID string
	// Workload is its sub claim.
	Workload string
	// Expires is its exp claim.
	Expires time.Time
}

// Allowed reports whether run_tokens.workloads lists workload.
func (is *Issuer) Allowed(workload string) bool {
	return slices.Contains(is.cfg.Workloads, "*") || slices.Contains(is.cfg.Workloads, workload)
}

// Issue signs a token for workload, valid for ttl (0: the configured
// ttl). It fails with ErrWorkloadNotAllowed for a workload the config
// does not list and ErrBadRequest for a ttl above max_ttl.
func (is *Issuer) Issue(workload string, ttl time.Duration) (Token, error) {
	if strings.TrimSpace(workload) == "" {
		return Token{}, fmt.Errorf("%w: name the workload", ErrBadRequest)
	}
	if !is.Allowed(workload) {
		return Token{}, fmt.Errorf("%w: run_tokens.workloads does not list %q; add it to the gateway config to let credgate run ask for it", ErrWorkloadNotAllowed, workload)
	}
	if ttl == 0 {
		ttl = is.cfg.TTL
	}
	if ttl < time.Second || ttl > is.cfg.MaxTTL {
		return Token{}, fmt.Errorf("%w: ttl %s is outside 1s..%s (run_tokens.max_ttl)", ErrBadRequest, ttl, is.cfg.MaxTTL)
	}
	now := is.opts.Now()
	is.mu.Lock()
	is.rotate(now)
	k := is.keys[0]
	is.mu.Unlock()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), k.pub.KeyID))
	if err != nil {
		return Token{}, fmt.Errorf("runtoken: signer: %w", err)
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	exp := now.Add(ttl).Truncate(time.Second)
	claims := jwt.Claims{
		Issuer:    is.cfg.Issuer,
		Subject:   workload,
		Audience:  jwt.Audience{is.cfg.Audience},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-time.Second)),
		Expiry:    jwt.NewNumericDate(exp),
		ID:        hex.EncodeToString(id),
	}
	tok, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		return Token{}, fmt.Errorf("runtoken: sign: %w", err)
	}
	return Token{Value: secret.New(tok), ID: claims.ID, Workload: workload, Expires: exp}, nil
}

// IssuerName implements identity.LocalIssuer: the iss claim.
func (is *Issuer) IssuerName() string { return is.cfg.Issuer }

// Audience implements identity.LocalIssuer: the aud claim.
func (is *Issuer) Audience() string { return is.cfg.Audience }

// VerificationKeys implements identity.LocalIssuer: the public keys of
// the signing key and of retired keys whose tokens may not have expired.
func (is *Issuer) VerificationKeys() []jose.JSONWebKey {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.rotate(is.opts.Now())
	out := make([]jose.JSONWebKey, len(is.keys))
	for i, k := range is.keys {
		out[i] = k.pub
	}
	return out
}

// JWKS is the JSON Web Key Set of VerificationKeys.
func (is *Issuer) JWKS() ([]byte, error) {
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: is.VerificationKeys()})
	if err != nil {
		return nil, fmt.Errorf("runtoken: JWKS: %w", err)
	}
	return b, nil
}

// redisKey is where the revocation of token id lives in Redis: a key
// that expires when the token does. The id is hashed so that keys have
// one shape whatever a caller sends.
func (is *Issuer) redisKey(id string) string {
	h := sha256.Sum256([]byte(id))
	ns := is.opts.Namespace
	if ns == "" {
		ns = "credgate"
	}
	return ns + ":runtoken:revoked:" + hex.EncodeToString(h[:16])
}

// afterExp is how long after a token's exp the issuer keeps what
// concerns it (its revocation, in memory and in Redis; a retired key that
// signed it): the longest a jwt factor may accept a token after its exp
// (identity.MaxClockSkew, the largest identity.jwt.clock_skew, accepted
// up to and including it), and a second. Before, a minute: with a
// clock_skew above a minute a revoked token was forgotten, and accepted
// again, for the rest of the leeway.
const afterExp = identity.MaxClockSkew + time.Second

// Revoked implements identity.LocalIssuer: whether the token with this
// jti, expiring at expires, was revoked. With Redis, a Redis that does
// not answer is an error (the token is refused, not let through). A
// revocation read from Redis is remembered until the token expires, so
// that Redis losing it later does not let the token in again here (and
// resync writes it back).
func (is *Issuer) Revoked(ctx context.Context, id string, expires time.Time) (bool, error) {
	now := is.opts.Now()
	is.mu.Lock()
	exp, ok := is.revoked[id]
	is.mu.Unlock()
	if ok && now.Before(exp.Add(afterExp)) {
		return true, nil
	}
	if is.opts.Redis == nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, is.opts.Timeout)
	defer cancel()
	n, err := is.opts.Redis.Exists(ctx, is.redisKey(id)).Result()
	if err != nil {
		is.health.Fail("exists", err)
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	is.health.Succeed()
	if n == 0 {
		return false, nil
	}
	// No token this issuer signed lives longer than MaxTTL.
	if longest := now.Add(is.cfg.MaxTTL); expires.After(longest) {
		expires = longest
	}
	is.remember(id, expires, now)
	return true, nil
}

// remember keeps the revocation of id until afterExp past exp, dropping
// those past theirs.
func (is *Issuer) remember(id string, exp, now time.Time) {
	is.mu.Lock()
	defer is.mu.Unlock()
	for k, e := range is.revoked {
		if now.After(e.Add(afterExp)) {
			delete(is.revoked, k)
		}
	}
	if now.Before(exp.Add(afterExp)) && exp.After(is.revoked[id]) {
		is.revoked[id] = exp
	}
}

// resyncLoop writes back, every ResyncInterval, the revocations this
// replica knows of that Redis no longer holds (restarted without
// persistence, failed over to a node the write had not reached, flushed,
// the key deleted or its TTL cut), so that every replica refuses them
// again, including those that never read them.
func (is *Issuer) resyncLoop(ctx context.Context) {
	defer close(is.done)
	t := time.NewTicker(is.opts.ResyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := is.resync(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			is.health.Fail("resync", err)
		case err == nil && n > 0:
			is.health.Succeed()
			is.opts.Log.Warn("run tokens: Redis had lost revocations; wrote back the ones this replica knows of", slog.Int("written_back", n))
		case err == nil:
			is.health.Succeed()
		}
	}
}

// resync writes every unexpired revocation this replica knows of to Redis
// where the key is missing (SET NX: a revocation Redis holds is left as
// it is), and returns how many it wrote.
func (is *Issuer) resync(ctx context.Context) (int, error) {
	now := is.opts.Now()
	is.mu.Lock()
	known := make(map[string]time.Time, len(is.revoked))
	for id, exp := range is.revoked {
		if now.Before(exp.Add(afterExp)) {
			known[id] = exp
		}
	}
	is.mu.Unlock()
	if len(known) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, is.opts.Timeout)
	defer cancel()
	cmds := make([]*redis.BoolCmd, 0, len(known))
	_, err := is.opts.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		for id, exp := range known {
			cmds = append(cmds, p.SetNX(ctx, is.redisKey(id), "1", exp.Add(afterExp).Sub(now)))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("runtoken: write back revocations: %w", err)
	}
	n := 0
	for _, c := range cmds {
		if c.Val() {
			n++
		}
	}
	return n, nil
}

// Revocation says what Revoke did.
type Revocation struct {
	// ID and Workload name the token.
	ID, Workload string
	// Expires is when it would have expired.
	Expires time.Time
	// Shared is true when the revocation was written to Redis.
	Shared bool
}

// Revoke revokes tok, a token this issuer signed (expired or not), until
// it expires: on this replica, and through Redis on every replica. A
// token whose signature does not verify is ErrBadRequest.
func (is *Issuer) Revoke(ctx context.Context, tok string) (Revocation, error) {
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil || len(parsed.Headers) != 1 {
		return Revocation{}, fmt.Errorf("%w: not a token of credgate run", ErrBadRequest)
	}
	var c jwt.Claims
	verified := false
	for _, k := range is.VerificationKeys() {
		if parsed.Headers[0].KeyID != "" && parsed.Headers[0].KeyID != k.KeyID {
			continue
		}
		if parsed.Claims(k.Key, &c) == nil {
			verified = true
			break
		}
	}
	if !verified || c.Issuer != is.cfg.Issuer || c.ID == "" || c.Expiry == nil {
		return Revocation{}, fmt.Errorf("%w: the token was not signed by this gateway's run-token key (was it issued by another replica without a shared run_tokens.key_file, or has its key expired?)", ErrBadRequest)
	}
	r := Revocation{ID: c.ID, Workload: c.Subject, Expires: c.Expiry.Time()}
	now := is.opts.Now()
	is.remember(r.ID, r.Expires, now)
	if is.opts.Redis != nil && now.Before(r.Expires.Add(afterExp)) {
		ctx, cancel := context.WithTimeout(ctx, is.opts.Timeout)
		defer cancel()
		// Kept beyond exp as long as any jwt factor may accept it.
		if err := is.opts.Redis.Set(ctx, is.redisKey(r.ID), "1", r.Expires.Add(afterExp).Sub(now)).Err(); err != nil {
			is.health.Fail("set", err)
			return r, fmt.Errorf("%w: revoked on this replica only: %v", ErrUnavailable, err)
		}
		is.health.Succeed()
		r.Shared = true
	}
	return r, nil
}

var _ identity.LocalIssuer = (*Issuer)(nil)
