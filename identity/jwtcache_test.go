package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// fakeLocal is a LocalIssuer whose keys a test sets.
type fakeLocal struct {
	mu   sync.Mutex
	keys []jose.JSONWebKey
}

func (l *fakeLocal) IssuerName() string { return "urn:credgate:run" }
func (l *fakeLocal) Audience() string   { return "credgate-run" }
func (l *fakeLocal) VerificationKeys() []jose.JSONWebKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]jose.JSONWebKey(nil), l.keys...)
}
func (l *fakeLocal) Revoked(context.Context, string, time.Time) (bool, error) { return false, nil }
func (l *fakeLocal) set(keys ...signingKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys = nil
	for _, k := range keys {
		l.keys = append(l.keys, k.jwk())
	}
}

// TestCachedTokenNeedsItsKey: a verified token is remembered (by its
// hash) so that the next connections cost no signature check, but the
// verification stands only while the key that made it is one of its
// issuer's keys. An issuer that removes a key — it leaked, or was
// rotated out — has every token it signed refused at once, also the
// ones the gateway already verified, whatever exp they carry (a
// forger holding a leaked key picks a far exp): before, the cache
// served them until their exp. A key set that keeps the key (another
// added beside it, the set fetched again) keeps the cached
// verification. For each kind of key source: discovery, a JWKS file
// and the gateway's own run-token issuer.
func TestCachedTokenNeedsItsKey(t *testing.T) {
	type source struct {
		iss     string
		aud     string
		setKeys func(keys ...signingKey)
	}
	changes := []struct {
		name     string
		keys     func(signer, other, sameKid signingKey) []signingKey
		verifies bool
	}{
		{"key removed", func(_, other, _ signingKey) []signingKey { return []signingKey{other} }, false},
		{"key set emptied of it, same kid reused by a new key", func(_, _, sameKid signingKey) []signingKey { return []signingKey{sameKid} }, false},
		{"key kept, another added", func(signer, other, _ signingKey) []signingKey { return []signingKey{other, signer} }, true},
		{"key set fetched again unchanged", func(signer, _, _ signingKey) []signingKey { return []signingKey{signer} }, true},
	}
	for _, ch := range changes {
		for _, kind := range []string{"discovery", "jwks_file", "local issuer"} {
			t.Run(ch.name+"/"+kind, func(t *testing.T) {
				clock := newFakeClock()
				signer, other, sameKid := newECKey(t, "k1"), newECKey(t, "k2"), newECKey(t, "k1")
				var (
					v   *jwtVerifier
					src source
				)
				switch kind {
				case "discovery":
					srv := newOIDCServer(t, jwks(t, signer))
					ic := srv.issuerConfig(ProfileOIDC, "credgate")
					v = newTestJWT(t, clock, JWTConfig{Issuers: []IssuerConfig{ic}})
					src = source{iss: ic.Issuer, aud: "credgate", setKeys: func(keys ...signingKey) { srv.setKeys(jwks(t, keys...)) }}
				case "jwks_file":
					dir := t.TempDir()
					const iss = "https://file.example"
					path := writeFile(t, dir, "jwks.json", jwks(t, signer))
					v = newTestJWT(t, clock, JWTConfig{Issuers: []IssuerConfig{{Issuer: iss, Audiences: []string{"credgate"}, JWKSFile: path}}})
					src = source{iss: iss, aud: "credgate", setKeys: func(keys ...signingKey) { writeFile(t, dir, "jwks.json", jwks(t, keys...)) }}
				case "local issuer":
					li := &fakeLocal{}
					li.set(signer)
					full := Config{}.WithDefaults()
					o := testOptions(clock)
					o.local = li
					var err error
					if v, err = newJWTVerifier(context.Background(), full.JWT, o); err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { v.Close() })
					src = source{iss: li.IssuerName(), aud: li.Audience(), setKeys: li.set}
				}
				claims := std(src.iss, "svc", src.aud)
				claims.ID = "jti-1"
				claims.Expiry = jwt.NewNumericDate(t0.Add(10 * 365 * 24 * time.Hour))
				tok := signer.sign(t, claims)
				first, err := v.Verify(context.Background(), bearer(tok))
				if err != nil || first == nil {
					t.Fatalf("first verification: factor %v, error %v", first, err)
				}
				src.setKeys(ch.keys(signer, other, sameKid)...)
				clock.Advance(DefaultJWKSMinRefetchInterval)
				for _, is := range v.issuers {
					if is.local == nil {
						if err := is.keys.refetch(context.Background()); err != nil {
							t.Fatalf("refetch: %v", err)
						}
					}
				}
				again, err := v.Verify(context.Background(), bearer(tok))
				if !ch.verifies {
					if !errors.Is(err, ErrInvalid) {
						t.Fatalf("token of a key the issuer no longer has: factor %v, error %v; want ErrInvalid", again, err)
					}
					return
				}
				if err != nil || again != first {
					t.Fatalf("token of a key the issuer still has: error %v, served from the cache %v", err, again == first)
				}
			})
		}
	}
}

// TestKeySetReportsRemovedKeys: a key set that loses a key reports the
// change (WithOnChange: the gateway re-verifies what is open on tokens
// it signed); one that only gains keys, or is reloaded unchanged, does
// not.
func TestKeySetReportsRemovedKeys(t *testing.T) {
	key := func() jose.JSONWebKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return jose.JSONWebKey{Key: &k.PublicKey, KeyID: "k", Algorithm: "ES256"}
	}
	a, b, c := key(), key(), key()
	n := 0
	k := &keySet{changed: func() { n++ }}
	for i, tc := range []struct {
		keys    []jose.JSONWebKey
		changed bool
	}{
		{[]jose.JSONWebKey{a}, false}, // the first load
		{[]jose.JSONWebKey{a}, false},
		{[]jose.JSONWebKey{a, b}, false},
		{[]jose.JSONWebKey{b, a}, false},
		{[]jose.JSONWebKey{b}, true},
		{[]jose.JSONWebKey{c}, true},
		{nil, true},
		{[]jose.JSONWebKey{a}, false},
	} {
		before := n
		k.set(tc.keys)
		if got := n > before; got != tc.changed {
			t.Errorf("step %d: reported a change %v, want %v", i, got, tc.changed)
		}
	}
}
