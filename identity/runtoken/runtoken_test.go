package runtoken

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/redis/go-redis/v9"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/internal/redistest"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// resolver is the jwt factor trusting is, as the gateway wires it, with
// one workload "agent" named the way docs/agents.md says.
func resolve(t *testing.T, r *identity.Resolver, tok string) (identity.Workload, error) {
	t.Helper()
	specs := []identity.Spec{{Name: "agent", Require: []string{identity.KindJWT}, Claims: map[string]string{"iss": DefaultIssuer, "sub": "agent"}}}
	ev := identity.Evidence{Source: netip.MustParseAddrPort("127.0.0.1:5000"), ProxyAuthorization: "Bearer " + tok}
	return r.Resolve(context.Background(), ev, specs)
}

func newResolver(t *testing.T, is *Issuer) *identity.Resolver {
	t.Helper()
	r, err := identity.New(context.Background(), identity.Config{}, identity.WithLocalIssuer(is))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestIssueVerifyRevoke(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			is, err := New(Config{Workloads: []string{"agent"}, Algorithm: alg}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			r := newResolver(t, is)
			tok, err := is.Issue("agent", 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := time.Until(tok.Expires); got < DefaultTTL-2*time.Second || got > DefaultTTL {
				t.Errorf("expires in %s, want the default ttl %s", got, DefaultTTL)
			}
			w, err := resolve(t, r, tok.Value.Reveal())
			if err != nil || w.Name != "agent" {
				t.Fatalf("fresh token: workload %q, %v; want agent", w.Name, err)
			}
			// The token verifies against the published JWKS too.
			raw, err := is.JWKS()
			if err != nil {
				t.Fatal(err)
			}
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(raw, &set); err != nil || len(set.Keys) != 1 || set.Keys[0].IsPublic() != true {
				t.Fatalf("JWKS %s: %v", raw, err)
			}
			parsed, err := jwt.ParseSigned(tok.Value.Reveal(), []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatal(err)
			}
			var c jwt.Claims
			if err := parsed.Claims(set.Keys[0].Key, &c); err != nil || c.Subject != "agent" || c.ID != tok.ID {
				t.Fatalf("claims %+v, %v", c, err)
			}
			if _, err := is.Revoke(context.Background(), tok.Value.Reveal()); err != nil {
				t.Fatal(err)
			}
			// Revoked: refused, also though the factor had cached it.
			if _, err := resolve(t, r, tok.Value.Reveal()); !errors.Is(err, identity.ErrInvalid) || !strings.Contains(err.Error(), "revoked") {
				t.Fatalf("revoked token: %v, want ErrInvalid (revoked)", err)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	is, err := New(Config{Workloads: []string{"agent"}, MaxTTL: time.Hour}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := is.Issue("root", 0); !errors.Is(err, ErrWorkloadNotAllowed) {
		t.Errorf("unlisted workload: %v", err)
	}
	if _, err := is.Issue("agent", 2*time.Hour); !errors.Is(err, ErrBadRequest) {
		t.Errorf("ttl above max_ttl: %v", err)
	}
	r := newResolver(t, is)

	// A token of the same issuer name signed by another key: refused.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, nil)
	now := time.Now()
	forged, _ := jwt.Signed(sig).Claims(jwt.Claims{Issuer: DefaultIssuer, Subject: "agent", Audience: jwt.Audience{DefaultAudience},
		Expiry: jwt.NewNumericDate(now.Add(time.Minute)), ID: "x"}).Serialize()
	if _, err := resolve(t, r, forged); !errors.Is(err, identity.ErrInvalid) {
		t.Errorf("forged token: %v, want ErrInvalid", err)
	}
	if _, err := is.Revoke(context.Background(), forged); !errors.Is(err, ErrBadRequest) {
		t.Errorf("revoking a forged token: %v, want ErrBadRequest", err)
	}
	// Another issuer's name is not this issuer's.
	other, err := New(Config{Workloads: []string{"*"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := other.Issue("agent", 0)
	if _, err := resolve(t, r, tok.Value.Reveal()); !errors.Is(err, identity.ErrInvalid) {
		t.Errorf("a token of another gateway's generated key: %v, want ErrInvalid", err)
	}

	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "run_tokens.workloads"},
		{Config{Workloads: []string{"a"}, Algorithm: "HS256"}, "use ES256 or EdDSA"},
		{Config{Workloads: []string{"a"}, TTL: time.Hour, MaxTTL: time.Minute}, "shorter than ttl"},
		{Config{Workloads: []string{"a"}, Issuer: "gateway"}, "is not a URI"},
	} {
		if _, err := New(c.cfg, Options{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v): %v, want %q", c.cfg, err, c.want)
		}
	}
}

func TestRotation(t *testing.T) {
	clk := &clock{t: time.Now()}
	is, err := New(Config{Workloads: []string{"agent"}, RotateInterval: time.Hour, TTL: time.Hour, MaxTTL: 2 * time.Hour}, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	first, _ := is.Issue("agent", 0)
	clk.Add(61 * time.Minute)
	second, _ := is.Issue("agent", 0)
	keys := is.VerificationKeys()
	if len(keys) != 2 || keys[0].KeyID == keys[1].KeyID {
		t.Fatalf("after rotation: %d keys, want the new and the old", len(keys))
	}
	kid := func(tok Token) string {
		p, _ := jwt.ParseSigned(tok.Value.Reveal(), []jose.SignatureAlgorithm{jose.ES256})
		return p.Headers[0].KeyID
	}
	if kid(first) == kid(second) {
		t.Error("the token after rotate_interval is signed by the old key")
	}
	// A retired key goes once every token it signed has expired, and no
	// jwt factor's clock_skew could accept one (afterExp); the one
	// retired just now stays.
	clk.Add(2*time.Hour + afterExp + time.Minute)
	keys = is.VerificationKeys()
	var kids []string
	for _, k := range keys {
		kids = append(kids, k.KeyID)
	}
	if len(keys) != 2 || strings.Contains(strings.Join(kids, ","), kid(first)) || keys[1].KeyID != kid(second) {
		t.Errorf("keys after max_ttl: %v; want a new one and the second (first %s, second %s)", kids, kid(first), kid(second))
	}
}

func TestKeyFile(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	file := filepath.Join(t.TempDir(), "run.key")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	// Two replicas with the same key file accept each other's tokens.
	a, err := New(Config{Workloads: []string{"agent"}, KeyFile: file}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Workloads: []string{"agent"}, KeyFile: file}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := a.Issue("agent", 0)
	if w, err := resolve(t, newResolver(t, b), tok.Value.Reveal()); err != nil || w.Name != "agent" {
		t.Fatalf("replica b: %q %v", w.Name, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	_ = os.WriteFile(bad, []byte("not pem"), 0o600)
	if _, err := New(Config{Workloads: []string{"a"}, KeyFile: bad}, Options{}); err == nil || !strings.Contains(err.Error(), "no PEM block") {
		t.Errorf("bad key file: %v", err)
	}
}

// TestSharedRevocation: a token revoked on one replica is refused by
// another through Redis, and a Redis that does not answer refuses run
// tokens (fail closed).
func TestSharedRevocation(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	file := filepath.Join(t.TempDir(), "run.key")
	_ = os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	cfg := Config{Workloads: []string{"agent"}, KeyFile: file}
	a, err := New(cfg, Options{Redis: rdb, Namespace: "t"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	b, err := New(cfg, Options{Redis: rdb, Namespace: "t"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	rb := newResolver(t, b)
	tok, _ := a.Issue("agent", 0)
	if _, err := resolve(t, rb, tok.Value.Reveal()); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	rev, err := a.Revoke(context.Background(), tok.Value.Reveal())
	if err != nil || !rev.Shared {
		t.Fatalf("revoke: %+v %v", rev, err)
	}
	if _, err := resolve(t, rb, tok.Value.Reveal()); !errors.Is(err, identity.ErrInvalid) {
		t.Fatalf("replica b after a revoked it: %v, want ErrInvalid", err)
	}
	// The Redis key expires with the token, once no jwt factor's leeway
	// could accept it any more.
	if ttl := rdb.TTL(context.Background(), a.redisKey(rev.ID)).Val(); ttl <= DefaultTTL+identity.MaxClockSkew-time.Minute || ttl > DefaultTTL+afterExp {
		t.Errorf("revocation key TTL %s, want the token's %s and the largest clock_skew, %s", ttl, DefaultTTL, identity.MaxClockSkew)
	}
	other, _ := a.Issue("agent", 0)
	srv.Stop()
	if _, err := resolve(t, newResolver(t, b), other.Value.Reveal()); !errors.Is(err, identity.ErrUnavailable) {
		t.Errorf("Redis down: %v, want ErrUnavailable (fail closed)", err)
	}
}

// TestRevocationSurvivesRedisLoss is the class of a revocation that
// leaves Redis without a revoke: the key deleted (a Redis writer, an
// operator cleaning up), its TTL cut short, the data flushed, Redis
// restarted without persistence (or failed over to a node the write had
// not reached). In every case a replica that saw the token refused keeps
// refusing it, and a replica that never saw it refuses it as soon as a
// replica that knows of the revocation has written it back (within
// ResyncInterval), never accepting it for good.
func TestRevocationSurvivesRedisLoss(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	file := filepath.Join(t.TempDir(), "run.key")
	_ = os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	cfg := Config{Workloads: []string{"agent"}, KeyFile: file}
	ctx := context.Background()

	losses := []struct {
		name string
		lose func(t *testing.T, redisKey string)
	}{
		{"key deleted", func(t *testing.T, k string) { rdb.Del(ctx, k) }},
		{"TTL cut short", func(t *testing.T, k string) {
			rdb.PExpire(ctx, k, time.Millisecond)
			// Gone, or already written back with the token's TTL by a
			// replica's resync (every 20 ms: the gap can be missed).
			poll.True(t, 5*time.Second, "the key gone", func() bool {
				return rdb.Exists(ctx, k).Val() == 0 || rdb.PTTL(ctx, k).Val() > time.Second
			})
		}},
		{"value replaced, short TTL", func(t *testing.T, k string) {
			rdb.Set(ctx, k, "0", time.Millisecond)
			poll.True(t, 5*time.Second, "the key gone", func() bool {
				return rdb.Exists(ctx, k).Val() == 0 || rdb.Get(ctx, k).Val() != "0"
			})
		}},
		{"flushed", func(t *testing.T, k string) { rdb.FlushAll(ctx) }},
		{"restarted empty", func(t *testing.T, k string) { srv.Restart() }},
	}
	for _, l := range losses {
		t.Run(l.name, func(t *testing.T) {
			opts := Options{Redis: rdb, Namespace: "loss", ResyncInterval: 20 * time.Millisecond}
			a, err := New(cfg, opts) // revokes
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = a.Close() })
			b, err := New(cfg, opts) // sees the token refused before the loss
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			c, err := New(cfg, opts) // never sees it before the loss
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			rb, rc := newResolver(t, b), newResolver(t, c)
			tok, _ := a.Issue("agent", 0)
			if _, err := a.Revoke(ctx, tok.Value.Reveal()); err != nil {
				t.Fatalf("revoke: %v", err)
			}
			if _, err := resolve(t, rb, tok.Value.Reveal()); !errors.Is(err, identity.ErrInvalid) {
				t.Fatalf("b before the loss: %v, want ErrInvalid", err)
			}
			l.lose(t, a.redisKey(tok.ID))
			// b never accepts it again (errors while Redis restarts
			// are refusals too).
			for range 20 {
				if _, err := resolve(t, rb, tok.Value.Reveal()); err == nil {
					t.Fatal("b accepted the revoked token after Redis lost the revocation")
				}
			}
			// c refuses it once a replica wrote it back. A Redis that
			// lost the key must not let c accept it for good.
			poll.Until(t, 5*time.Second, "c refusing the revoked token", func() error {
				if _, err := resolve(t, rc, tok.Value.Reveal()); !errors.Is(err, identity.ErrInvalid) {
					return fmt.Errorf("c: %v, want ErrInvalid", err)
				}
				return nil
			})
		})
	}
}

// TestRevocationOutlivesLeeway: a revoked run token stays revoked for as
// long as any jwt factor may still accept its time claims, which is up
// to and including exp + clock_skew, and clock_skew may be set up to
// identity.MaxClockSkew. Before, the revocation was kept a minute past
// exp (in memory and in Redis): with clock_skew above a minute the
// token was accepted again for the rest of the leeway (and at exactly
// a minute, which a one-minute clock_skew accepts); 5 of the 7 instants
// failed (from 1m after exp on).
func TestRevocationOutlivesLeeway(t *testing.T) {
	clk := &clock{t: time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)}
	is, err := New(Config{Workloads: []string{"agent"}}, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = is.Close() })
	tok, err := is.Issue("agent", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := is.Revoke(context.Background(), tok.Value.Reveal()); err != nil {
		t.Fatal(err)
	}
	clk.Add(tok.Expires.Sub(clk.Now()))
	prev := time.Duration(0)
	for _, after := range []time.Duration{0, 30 * time.Second, time.Minute, time.Minute + time.Second, 3 * time.Minute, identity.MaxClockSkew - time.Second, identity.MaxClockSkew} {
		clk.Add(after - prev)
		prev = after
		revoked, err := is.Revoked(context.Background(), tok.ID, tok.Expires)
		if err != nil || !revoked {
			t.Errorf("%s after exp (a clock_skew up to %s still accepts its time claims): revoked %v, %v; want revoked", after, identity.MaxClockSkew, revoked, err)
		}
	}
}

// TestTokenIdentifiesOnlyItsWorkload: a run token issued for workload W
// identifies W or no workload, whatever the policy's workloads say. The
// issuer checks W against run_tokens.workloads; a workload whose claims
// match the run-token issuer without pinning sub (or pin only claims every
// run token carries) used to take every run token, listed first: a token
// issued for ci, or for a name no workload has, identified as agent —
// which run_tokens.workloads may not even allow. Such a definition is now
// passed over: the token identifies its own workload, or none.
func TestTokenIdentifiesOnlyItsWorkload(t *testing.T) {
	is, err := New(Config{Workloads: []string{"ci", "agent", "ghost"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := newResolver(t, is)
	pinned := func(name string) identity.Spec {
		return identity.Spec{Name: name, Require: []string{identity.KindJWT}, Claims: map[string]string{"iss": DefaultIssuer, "sub": name}}
	}
	broad := func(name string, claims map[string]string) identity.Spec {
		return identity.Spec{Name: name, Require: []string{identity.KindJWT}, Claims: claims}
	}
	cases := []struct {
		name  string
		specs []identity.Spec
		token string
		want  string // the workload, "" for anonymous
	}{
		{"pinned", []identity.Spec{pinned("ci"), pinned("agent")}, "ci", "ci"},
		{"pinned, other listed first", []identity.Spec{pinned("agent"), pinned("ci")}, "ci", "ci"},
		{"no workload of that name", []identity.Spec{pinned("agent")}, "ghost", ""},
		{"sub only", []identity.Spec{broad("ci", map[string]string{"sub": "ci"})}, "ci", "ci"},
		{"issuer only, its own name", []identity.Spec{broad("ci", map[string]string{"iss": DefaultIssuer})}, "ci", "ci"},
		{"issuer only, before the pinned one", []identity.Spec{broad("agent", map[string]string{"iss": DefaultIssuer}), pinned("ci")}, "ci", "ci"},
		{"issuer only, a name no workload has", []identity.Spec{broad("agent", map[string]string{"iss": DefaultIssuer})}, "ghost", ""},
		{"issuer only, another name", []identity.Spec{broad("agent", map[string]string{"iss": DefaultIssuer})}, "ci", ""},
		{"a claim run tokens lack", []identity.Spec{broad("agent", map[string]string{"iss": DefaultIssuer, "aud": DefaultAudience})}, "ci", ""},
	}
	failed := 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok, err := is.Issue(c.token, 0)
			if err != nil {
				t.Fatal(err)
			}
			ev := identity.Evidence{Source: netip.MustParseAddrPort("127.0.0.1:5000"), ProxyAuthorization: "Bearer " + tok.Value.Reveal()}
			w, err := r.Resolve(context.Background(), ev, c.specs)
			if err != nil || w.Name != c.want {
				failed++
				t.Errorf("a token issued for %s: workload %q, %v; want %q", c.token, w.Name, err, c.want)
			}
			// A gateway re-identifying it after a reload agrees.
			if name, err := identity.Identify(w, c.specs); err != nil || name != c.want {
				t.Errorf("Identify: %q, %v; want %q", name, err, c.want)
			}
		})
	}
	t.Logf("%d of %d cases failed", failed, len(cases))
}
