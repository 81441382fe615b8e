package providers

import (
	"fmt"
	"log/slog"
)

// Redacted is what every printed form of a Secret shows.
const Redacted = "[REDACTED]"

// Secret holds a secret value. Its String, GoString, Format, LogValue,
// MarshalJSON and MarshalText forms all print Redacted, so a Secret that
// reaches a log line, an error or a JSON document leaks nothing. Only an
// injector calls Reveal.
type Secret struct {
	value string
}

// NewSecret wraps v.
func NewSecret(v string) Secret { return Secret{value: v} }

// Reveal returns the secret value. Call it only where the value is put on
// the wire.
func (s Secret) Reveal() string { return s.value }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.value == "" }

// String implements fmt.Stringer.
func (Secret) String() string { return Redacted }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return Redacted }

// Format implements fmt.Formatter so that every verb (%v, %+v, %#v, %s,
// %q, %x) prints Redacted.
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON implements json.Marshaler.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler (also used by YAML).
func (Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
