package identity

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
)

// redacted is what every printed form of a Token shows (the same words
// as providers.Redacted; identity does not import providers).
const redacted = "[REDACTED]"

// Token holds a verified bearer token (a JWT, a Kubernetes service
// account token). Its String, GoString, Format, LogValue, MarshalJSON and
// MarshalText forms all print "[REDACTED]", so a Factor or Workload that
// reaches a log line, an error or a JSON document leaks nothing. Only a
// provider that sends the token onward calls Reveal.
type Token struct {
	value string
}

// NewToken wraps v.
func NewToken(v string) Token { return Token{value: v} }

// Reveal returns the token. Call it only where the value is put on the
// wire.
func (t Token) Reveal() string { return t.value }

// Equal reports whether t and o hold the same token, in constant time.
// (go-cmp uses it too.)
func (t Token) Equal(o Token) bool {
	return subtle.ConstantTimeCompare([]byte(t.value), []byte(o.value)) == 1
}

// IsZero reports whether there is no token.
func (t Token) IsZero() bool { return t.value == "" }

// String implements fmt.Stringer.
func (Token) String() string { return redacted }

// GoString implements fmt.GoStringer.
func (Token) GoString() string { return redacted }

// Format implements fmt.Formatter so that every verb prints "[REDACTED]".
func (Token) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer.
func (Token) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON implements json.Marshaler.
func (Token) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler (also used by YAML).
func (Token) MarshalText() ([]byte, error) { return []byte(redacted), nil }
