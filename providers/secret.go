package providers

import "github.com/credgate/credgate/secret"

// Redacted is what every printed form of a Secret shows.
const Redacted = secret.Redacted

// Secret holds a secret value: a secret.Value, whose String, GoString,
// Format, LogValue, MarshalJSON and MarshalText forms all print Redacted,
// so a Secret that reaches a log line, an error or a JSON document leaks
// nothing. Only an injector calls Reveal.
type Secret = secret.Value

// NewSecret wraps v.
func NewSecret(v string) Secret { return secret.New(v) }
