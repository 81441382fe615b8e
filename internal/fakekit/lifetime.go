package fakekit

import (
	"strconv"
	"sync"
	"time"
)

// Lifetime is the lifetime a fake states for the credentials it issues
// in place of its own: the shapes the providers conformance suite
// (providertest's lifetime check) sends. Each fake renders it in its
// service's field: a count of seconds (expires_in, lease_duration) or
// an instant that far from the answer's time (expires_at, Expiration,
// expires_on).
type Lifetime struct {
	// Absent: the answer leaves the field out.
	Absent bool
	// Seconds is the lifetime, when Raw is empty.
	Seconds int64
	// Raw, when set, is the field's value as sent, verbatim JSON (a
	// non-number, a float, a string of digits). A fake whose answer is
	// not JSON (STS's XML) sends it as the element's text, unquoted.
	Raw string
}

// JSON returns the JSON value of a count-of-seconds field, and false
// when the field is to be left out.
func (l Lifetime) JSON() (string, bool) {
	switch {
	case l.Absent:
		return "", false
	case l.Raw != "":
		return l.Raw, true
	}
	return strconv.FormatInt(l.Seconds, 10), true
}

// Instant returns the JSON value of an instant field (RFC 3339 in a
// string) for an answer dated now, and false when it is to be left out.
func (l Lifetime) Instant(now time.Time) (string, bool) {
	switch {
	case l.Absent:
		return "", false
	case l.Raw != "":
		return l.Raw, true
	}
	return strconv.Quote(now.Add(time.Duration(l.Seconds) * time.Second).UTC().Format(time.RFC3339)), true
}

// LifetimeOverride is a fake's setting of a Lifetime, safe for
// concurrent use: nil (the zero value) keeps the fake's own.
type LifetimeOverride struct {
	mu sync.Mutex
	l  *Lifetime
}

// Set states l from now on; nil restores the fake's own lifetime.
func (o *LifetimeOverride) Set(l *Lifetime) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if l == nil {
		o.l = nil
		return
	}
	c := *l
	o.l = &c
}

// Get returns the Lifetime set, and false when the fake's own applies.
func (o *LifetimeOverride) Get() (Lifetime, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.l == nil {
		return Lifetime{}, false
	}
	return *o.l, true
}
