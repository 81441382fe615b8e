package providers

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/testpki"
)

// keepingShared is a SharedCache that keeps what it is given, so a test
// sees what would have reached Redis, and serves it back.
type keepingShared struct {
	mu      sync.Mutex
	stored  map[CacheKey]*Credential
	forgets int
}

func (s *keepingShared) Fetch(ctx context.Context, key CacheKey, _ time.Duration, fetch func(context.Context) (*Credential, error)) (*Credential, error) {
	s.mu.Lock()
	if c := s.stored[key]; c != nil {
		s.mu.Unlock()
		return c, nil
	}
	s.mu.Unlock()
	c, err := fetch(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.stored[key] = c
	s.mu.Unlock()
	return c, nil
}

func (s *keepingShared) Forget(_ context.Context, key CacheKey, cred *Credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forgets++
	if s.stored[key] == cred {
		delete(s.stored, key)
	}
}
func (s *keepingShared) InvalidateCredential(context.Context, string, string) {}
func (s *keepingShared) Watch(func(Invalidation))                             {}

func (s *keepingShared) holds(key CacheKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stored[key] != nil
}

// unusableCredentials are credentials no injector could use, each with
// the words its error must hold. Every secret value holds
// testSecretValue, which no error may.
func unusableCredentials(t *testing.T, now time.Time) []struct {
	name string
	cred *Credential
	want string
} {
	ca, err := testpki.NewAuthority("usable-test")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.ClientLeaf("a")
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.ClientLeaf("b")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := testpki.PEM(leaf)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKeyPEM, err := testpki.PEM(other)
	if err != nil {
		t.Fatal(err)
	}
	f := func(kv ...string) map[string]Secret {
		m := map[string]Secret{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = NewSecret(kv[i+1])
		}
		return m
	}
	s := testSecretValue
	return []struct {
		name string
		cred *Credential
		want string
	}{
		{"no fields", &Credential{}, "no value"},
		{"every field empty", &Credential{Fields: f(FieldToken, "", FieldUsername, "")}, "no value"},
		{"too large", &Credential{Fields: f(FieldToken, s+strings.Repeat("a", MaxFieldBytes))}, `field "token" is`},
		{"expired", &Credential{Fields: f(FieldToken, s), Expiry: now}, "already expired"},
		{"expired long ago", &Credential{Fields: f(FieldToken, s), Expiry: now.Add(-time.Hour)}, "already expired"},
		{"username CRLF", &Credential{Fields: f(FieldUsername, s+"\r\nX: 1", FieldPassword, s)}, `field "username" contains a line break`},
		{"password NUL", &Credential{Fields: f(FieldUsername, "u", FieldPassword, s+"\x00")}, `field "password" contains`},
		{"access key LF", &Credential{Fields: f(FieldAccessKeyID, "AKIA\n", FieldSecretAccessKey, s)}, `field "access_key_id"`},
		{"secret key CR", &Credential{Fields: f(FieldAccessKeyID, "AKIA", FieldSecretAccessKey, s+"\r")}, `field "secret_access_key"`},
		{"session token DEL", &Credential{Fields: f(FieldAccessKeyID, "AKIA", FieldSecretAccessKey, s, FieldSessionToken, s+"\x7f")}, `field "session_token"`},
		{"certificate not PEM", &Credential{Fields: f(FieldCertificate, s)}, `field "certificate" is not PEM`},
		{"certificate PEM of junk", &Credential{Fields: f(FieldCertificate, "-----BEGIN CERTIFICATE-----\nc2VjcmV0\n-----END CERTIFICATE-----\n"+s)}, "does not parse"},
		{"ca chain not PEM", &Credential{Fields: f(FieldCertificate, string(certPEM), FieldCAChain, s)}, `field "ca_chain"`},
		{"private key not PEM", &Credential{Fields: f(FieldPrivateKey, s)}, `field "private_key" is not a PEM`},
		{"certificate and another's key", &Credential{Fields: f(FieldCertificate, string(certPEM), FieldPrivateKey, string(otherKeyPEM))}, "not a certificate and its private key"},
	}
}

// TestCacheRefusesUnusable: a credential no injector could use is never
// kept, in memory or in the shared tier: the Get fails with an error
// naming the credential, the provider and the cause (wrapping
// ErrUnusable and ErrUnavailable, never holding the value), and once
// the source is fixed the first Get after the error backoff has the
// good credential. One the shared tier held from before is dropped
// there too.
func TestCacheRefusesUnusable(t *testing.T) {
	clock := newFakeClock()
	good := tok("good-token", time.Time{})
	for _, tt := range unusableCredentials(t, clock.Now()) {
		for _, shared := range []bool{false, true} {
			name := tt.name
			if shared {
				name += "/shared"
			}
			t.Run(name, func(t *testing.T) {
				opts := CacheOptions{Now: clock.Now, ErrorBackoff: 5 * time.Second}
				var sh *keepingShared
				if shared {
					sh = &keepingShared{stored: map[CacheKey]*Credential{}}
					opts.Shared = sh
				}
				c := newTestCache(t, opts)
				bad := true
				calls := 0
				fetch := func(context.Context) (*Credential, error) {
					calls++
					if bad {
						return tt.cred, nil
					}
					return good, nil
				}
				_, _, err := c.Get(context.Background(), testKey, fetch)
				if err == nil || !errors.Is(err, ErrUnusable) || !errors.Is(err, ErrUnavailable) {
					t.Fatalf("Get error = %v, want one wrapping ErrUnusable and ErrUnavailable", err)
				}
				msg := err.Error()
				for _, w := range []string{`credential "stripe"`, "provider fake", tt.want} {
					if !strings.Contains(msg, w) {
						t.Errorf("error %q does not say %q", msg, w)
					}
				}
				if strings.Contains(msg, testSecretValue) {
					t.Errorf("error holds the value: %q", msg)
				}
				if sh != nil && sh.holds(testKey) {
					t.Error("the unusable credential was stored in the shared tier")
				}
				// Within the backoff: the same error, the source not asked.
				if _, _, err := c.Get(context.Background(), testKey, fetch); !errors.Is(err, ErrUnusable) || calls != 1 {
					t.Errorf("Get within the backoff = %v after %d calls, want the remembered error and 1 call", err, calls)
				}
				bad = false
				clock.Advance(5 * time.Second)
				cred, _, err := c.Get(context.Background(), testKey, fetch)
				if err != nil || tokenOf(cred) != "good-token" {
					t.Errorf("Get after the source was fixed and the backoff passed = %q, %v; want the good credential", tokenOf(cred), err)
				}
			})
		}
	}
	t.Run("held by the shared tier", func(t *testing.T) {
		sh := &keepingShared{stored: map[CacheKey]*Credential{testKey: tok("bad\x00", clock.Now().Add(-time.Second))}}
		c := newTestCache(t, CacheOptions{Now: clock.Now, Shared: sh})
		if _, _, err := c.Get(context.Background(), testKey, func(context.Context) (*Credential, error) { return good, nil }); !errors.Is(err, ErrUnusable) {
			t.Errorf("Get = %v, want ErrUnusable", err)
		}
		if sh.holds(testKey) {
			t.Error("the shared tier still holds the unusable credential")
		}
	})
}

// TestCacheKeepsUsable: what CheckUsable must not refuse — a token with
// line breaks (a PEM or JSON key kept in `token` for an input), a tab in
// a password, a certificate with its key, other blocks around it.
func TestCacheKeepsUsable(t *testing.T) {
	ca, err := testpki.NewAuthority("usable-test")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.ClientLeaf("a")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := testpki.PEM(leaf)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for name, cred := range map[string]*Credential{
		"token with line breaks": {Fields: map[string]Secret{FieldToken: NewSecret(string(keyPEM))}},
		"password with a tab":    {Fields: map[string]Secret{FieldUsername: NewSecret("u"), FieldPassword: NewSecret("p\tw")}},
		"one empty field":        {Fields: map[string]Secret{FieldToken: NewSecret("t"), FieldSessionToken: NewSecret("")}},
		"certificate and key": {Fields: map[string]Secret{
			FieldCertificate: NewSecret("Bag Attributes\n" + string(certPEM)), FieldPrivateKey: NewSecret(string(keyPEM)), FieldCAChain: NewSecret(string(certPEM)),
		}},
		"largest field": {Fields: map[string]Secret{FieldToken: NewSecret(strings.Repeat("a", MaxFieldBytes))}, Expiry: now.Add(time.Second)},
	} {
		if err := CheckUsable(cred, "c", "p", now); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestCacheReject: a credential an injector refused is dropped, in
// memory and in the shared tier; Gets within the error backoff get a
// BackoffError wrapping the refusal without asking the source; the
// first Get after it fetches anew. A credential fetched since is kept.
func TestCacheReject(t *testing.T) {
	clock := newFakeClock()
	sh := &keepingShared{stored: map[CacheKey]*Credential{}}
	c := newTestCache(t, CacheOptions{Now: clock.Now, ErrorBackoff: 5 * time.Second, Shared: sh})
	calls := 0
	v := "bad\r\nX: 1"
	fetch := func(context.Context) (*Credential, error) {
		calls++
		return tok(v, time.Time{}), nil
	}
	cred, _, err := c.Get(context.Background(), testKey, fetch)
	if err != nil {
		t.Fatal(err)
	}
	if c.Reject(testKey, tok("other", time.Time{}), errors.New("bearer: line break")) {
		t.Error("Reject dropped a credential it was not given")
	}
	refusal := errors.New("bearer: value for header Authorization contains a line break")
	if !c.Reject(testKey, cred, refusal) {
		t.Fatal("Reject did not drop the credential")
	}
	if sh.holds(testKey) || sh.forgets != 1 {
		t.Errorf("shared tier holds it: %v, forgets %d; want it dropped", sh.holds(testKey), sh.forgets)
	}
	_, _, err = c.Get(context.Background(), testKey, fetch)
	var be *BackoffError
	if !errors.As(err, &be) || !errors.Is(err, refusal) || !errors.Is(err, ErrUnusable) || !errors.Is(err, ErrUnavailable) || calls != 1 {
		t.Errorf("Get within the backoff = %v after %d calls; want a BackoffError wrapping the refusal, ErrUnusable and ErrUnavailable, and no new call", err, calls)
	}
	if ra, ok := RetryAfter(err, clock.Now()); !ok || ra != 5*time.Second {
		t.Errorf("RetryAfter = %v, %v; want the 5s backoff", ra, ok)
	}
	v = "good"
	clock.Advance(5 * time.Second)
	cred2, _, err := c.Get(context.Background(), testKey, fetch)
	if err != nil || tokenOf(cred2) != "good" || calls != 2 {
		t.Errorf("Get after the backoff = %q, %v after %d calls; want the new credential from one more call", tokenOf(cred2), err, calls)
	}
	if c.Reject(testKey, cred, refusal) {
		t.Error("Reject of the old credential dropped the new one")
	}
}
