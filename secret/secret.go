// Package secret holds the one type credgate keeps secret values in: a
// credential a provider fetched (providers.Secret) or a bearer token a
// workload presented (identity.Token). Every printed form of a Value —
// String, GoString, every fmt verb, slog, JSON, text and YAML — is
// Redacted, so a secret that reaches a log line, an error, a metric label
// or a JSON document leaks nothing (DESIGN.md invariant 4). Only the code
// that puts the value on the wire calls Reveal.
//
// It exists as a package of its own so that identity and providers, which
// must not import each other, share one implementation.
package secret

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
)

// Redacted is what every printed form of a Value shows.
const Redacted = "[REDACTED]"

// Value holds a secret. The zero Value is empty.
type Value struct {
	value string
}

// New wraps v.
func New(v string) Value { return Value{value: v} }

// Reveal returns the secret. Call it only where the value is put on the
// wire.
func (s Value) Reveal() string { return s.value }

// IsZero reports whether the secret is empty.
func (s Value) IsZero() bool { return s.value == "" }

// Equal reports whether s and o hold the same secret, in constant time
// (go-cmp uses it too).
func (s Value) Equal(o Value) bool {
	return subtle.ConstantTimeCompare([]byte(s.value), []byte(o.value)) == 1
}

// String implements fmt.Stringer.
func (Value) String() string { return Redacted }

// GoString implements fmt.GoStringer.
func (Value) GoString() string { return Redacted }

// Format implements fmt.Formatter so that every verb (%v, %+v, %#v, %s,
// %q, %x) prints Redacted.
func (Value) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// LogValue implements slog.LogValuer.
func (Value) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON implements json.Marshaler.
func (Value) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler (also used by YAML).
func (Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
