package providers

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ErrBadLifetime marks a credential whose source stated a lifetime the
// gateway cannot honour: zero, negative, an expiry already past, or a
// value that is not a whole number of seconds (or not a time). Such a
// credential is refused, never kept for a default period: a source that
// says its credential lasts 0 seconds (or -1, or "soon") is broken, and
// a guessed hour would serve a token the upstream already refuses, or
// one a revocation meant to end. Errors wrapping it also wrap
// ErrUnavailable (503 with Retry-After: the source may be fixed) and
// name the field and the value (a count of seconds or a time, never a
// secret).
//
// A lifetime that is absent is not this error: each provider documents
// what its source's silence means (RFC 6749 §5.1 leaves it to the
// authorization server's documentation) and applies that default.
var ErrBadLifetime = errors.New("credential source stated no usable lifetime")

// LifetimeSeconds reads the lifetime in seconds a credential source
// states in field (an expires_in, a lease_duration, a ttl), given as
// its raw JSON value: a whole number, or a string of digits (Entra and
// Azure's identity endpoints send "3599"). present is false when the
// field is absent (raw empty) or null: the caller applies its
// documented default. The lifetime is at most MaxSeconds (Seconds).
//
// Zero, a negative count, a fraction ("3600.5", "3600.0": a count of
// seconds is a whole number in every vendor's documentation) and any
// other JSON value are an error naming field (ErrBadLifetime).
func LifetimeSeconds(field string, raw json.RawMessage) (d time.Duration, present bool, err error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return 0, false, nil
	}
	digits := s
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		digits = s[1 : len(s)-1]
	}
	n, perr := strconv.ParseInt(digits, 10, 64)
	if perr != nil && errors.Is(perr, strconv.ErrRange) && wholeNumber.MatchString(digits) {
		// More digits than an int64 holds: as long as MaxSeconds, or
		// as short as a negative.
		n, perr = MaxSeconds, nil
		if strings.HasPrefix(digits, "-") {
			n = -1
		}
	}
	switch {
	case perr != nil || !wholeNumber.MatchString(digits):
		return 0, true, fmt.Errorf("%s is %s, not a whole number of seconds: %w: %w", field, describeJSON(s), ErrBadLifetime, ErrUnavailable)
	case n <= 0:
		return 0, true, fmt.Errorf("%s is %d: the credential expires on arrival (a source must state a positive lifetime, or leave the field out for its documented default): %w: %w", field, n, ErrBadLifetime, ErrUnavailable)
	}
	return Seconds(n), true, nil
}

// CheckExpiry returns an error naming field when exp, the instant on
// the gateway's clock at which a source said its credential expires
// (after ServerExpiry), is not after now: the credential expired before
// it arrived, or arrived with no life left (ErrBadLifetime).
func CheckExpiry(field string, exp, now time.Time) error {
	if exp.After(now) {
		return nil
	}
	return fmt.Errorf("%s is %s: already expired when the answer arrived (%s; if the source's credentials are fresh, check its clock and the gateway's): %w: %w",
		field, exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), ErrBadLifetime, ErrUnavailable)
}

var (
	wholeNumber = regexp.MustCompile(`^-?[0-9]+$`)
	shortNumber = regexp.MustCompile(`^"?-?[0-9][0-9.eE+-]{0,23}"?$`)
)

// describeJSON names a JSON value for an error without quoting what
// could be a secret: a short number (or a number in a string) as it is,
// anything else by its kind.
func describeJSON(s string) string {
	switch {
	case shortNumber.MatchString(s):
		return s
	case strings.HasPrefix(s, `"`):
		return "a string"
	case strings.HasPrefix(s, "{"):
		return "an object"
	case strings.HasPrefix(s, "["):
		return "an array"
	case s == "true" || s == "false":
		return s
	}
	return "not JSON"
}
