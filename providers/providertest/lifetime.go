package providertest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/fakekit"
	"github.com/credgate/credgate/providers"
)

// Lifetime is one shape of the lifetime a provider's service states for
// what it issues: absent, a count of seconds (or an instant that far
// from the answer's time), or a raw value. A Conformance.Lifetime hook
// makes the service's fake send it.
type Lifetime = fakekit.Lifetime

// lifetimeMargin is the most a provider's Expiry may be short of the
// lifetime its service stated (its refresh margin).
const lifetimeMargin = 10 * time.Minute

// outcome is what a provider must do with a lifetime shape.
type outcome int

const (
	refused   outcome = iota // an error naming the field, no credential
	honoured                 // a credential expiring an hour after the answer (less the margin)
	either                   // honoured or refused, never a default
	long                     // a credential kept far past a default hour
	defaulted                // the provider's documented default, or refused when it has none
)

// lifetimeShapes are the lifetimes the lifetime check states.
var lifetimeShapes = []struct {
	name string
	l    Lifetime
	want outcome
}{
	{"plausible-3600", Lifetime{Seconds: 3600}, honoured},
	{"absent", Lifetime{Absent: true}, defaulted},
	{"zero", Lifetime{Seconds: 0}, refused},
	{"minus-one", Lifetime{Seconds: -1}, refused},
	{"minus-3600", Lifetime{Seconds: -3600}, refused},
	{"past-10m", Lifetime{Seconds: -600}, refused},
	{"huge-10y", Lifetime{Seconds: 10 * 365 * 86400}, long},
	{"not-a-number", Lifetime{Raw: `"soon"`}, refused},
	{"wrong-type-object", Lifetime{Raw: `{"seconds":3600}`}, refused},
	{"float-3600.0", Lifetime{Raw: "3600.0"}, either},
	{"string-3600", Lifetime{Raw: `"3600"`}, either},
}

// checkLifetime makes the provider's service state each of
// lifetimeShapes and checks what Fetch does with it (the class: a
// credential whose stated lifetime is zero, negative, past, absent or
// unreadable is never served for a default period):
//
//   - a plausible lifetime is honoured: the credential expires when the
//     service said, at most lifetimeMargin early;
//   - 0, negative, an expiry already past, and a value of the wrong type
//     are refused: an error naming LifetimeField, no credential; a
//     numeric one wraps providers.ErrBadLifetime;
//   - an absent lifetime gets DefaultLifetime (at most), or is refused
//     when the provider documents none;
//   - a lifetime of ten years is kept long (not cut to a default hour:
//     the cache's max_ttl bounds it, not the provider);
//   - 3600.0 and "3600" are honoured as an hour or refused, never taken
//     for a default.
func checkLifetime(t *testing.T, c Conformance) {
	t.Cleanup(func() { c.Lifetime(nil) })
	for _, shape := range lifetimeShapes {
		t.Run(shape.name, func(t *testing.T) {
			c.Lifetime(&shape.l)
			p := load(t, c, c.Settings)
			start := time.Now()
			cred, err := p.Fetch(t.Context(), c.Request)
			arrived := time.Now()
			want := shape.want
			if want == defaulted && c.DefaultLifetime == 0 {
				want = refused
			}
			if want == either {
				if err != nil {
					want = refused
				} else {
					want = honoured
				}
			}
			if want == refused {
				if err == nil {
					t.Fatalf("Fetch returned a credential expiring in %v; want an error naming %s", time.Until(cred.Expiry).Round(time.Second), c.LifetimeField)
				}
				if cred != nil {
					t.Errorf("Fetch returned a credential with its error")
				}
				if !strings.Contains(err.Error(), c.LifetimeField) {
					t.Errorf("the error does not name %s: %v", c.LifetimeField, err)
				}
				if shape.l.Raw == "" && !shape.l.Absent && !errors.Is(err, providers.ErrBadLifetime) {
					t.Errorf("the error does not wrap providers.ErrBadLifetime: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if cred.Expiry.IsZero() {
				t.Fatalf("the credential has no Expiry")
			}
			switch want {
			case honoured:
				if lo, hi := start.Add(time.Hour-lifetimeMargin), arrived.Add(time.Hour); cred.Expiry.Before(lo) || cred.Expiry.After(hi) {
					t.Errorf("the credential expires in %v; the service said an hour (at most %v early)", cred.Expiry.Sub(start).Round(time.Second), lifetimeMargin)
				}
			case long:
				if !cred.Expiry.After(arrived.Add(24 * time.Hour)) {
					t.Errorf("the credential expires in %v; the service said ten years (cut to a default?)", cred.Expiry.Sub(start).Round(time.Second))
				}
			case defaulted:
				if !cred.Expiry.After(arrived) || cred.Expiry.After(arrived.Add(c.DefaultLifetime)) {
					t.Errorf("the credential expires in %v; want at most the documented default %v", cred.Expiry.Sub(start).Round(time.Second), c.DefaultLifetime)
				}
			}
		})
	}
}
