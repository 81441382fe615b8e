package identity

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// SPIFFEPattern selects SPIFFE IDs: one exact ID, or every ID below a
// path prefix ("spiffe://example.org/ns/billing/*"), or every ID of a
// trust domain ("spiffe://example.org/*"). Make one with
// ParseSPIFFEPattern; the zero value matches nothing.
type SPIFFEPattern struct {
	// id is the exact ID, or for a prefix the ID of the prefix (the trust
	// domain's ID when the prefix is the whole domain).
	id     spiffeid.ID
	prefix bool
}

// ParseSPIFFEPattern parses an exact SPIFFE ID or a prefix ending in
// "/*". Errors say what to write instead.
func ParseSPIFFEPattern(s string) (SPIFFEPattern, error) {
	if base, ok := strings.CutSuffix(s, "/*"); ok {
		if strings.Contains(base, "*") {
			return SPIFFEPattern{}, fmt.Errorf("spiffe pattern %q: '*' is only allowed as the whole last segment, like spiffe://example.org/ns/billing/*", s)
		}
		if td, err := spiffeid.TrustDomainFromString(base); err == nil && strings.Count(base, "/") == 2 {
			return SPIFFEPattern{id: td.ID(), prefix: true}, nil
		}
		id, err := spiffeid.FromString(base)
		if err != nil {
			return SPIFFEPattern{}, fmt.Errorf("spiffe pattern %q: %w; write an ID like spiffe://example.org/ns/billing/sa/api or a prefix like spiffe://example.org/ns/billing/*", s, err)
		}
		return SPIFFEPattern{id: id, prefix: true}, nil
	}
	if strings.Contains(s, "*") {
		return SPIFFEPattern{}, fmt.Errorf("spiffe pattern %q: '*' is only allowed as the whole last segment, like spiffe://example.org/ns/billing/*", s)
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		return SPIFFEPattern{}, fmt.Errorf("spiffe pattern %q: %w; write an ID like spiffe://example.org/ns/billing/sa/api or a prefix like spiffe://example.org/ns/billing/*", s, err)
	}
	if id.Path() == "" {
		return SPIFFEPattern{}, fmt.Errorf("spiffe pattern %q names a trust domain, not a workload; write spiffe://%s/* to select every ID in it", s, id.TrustDomain().Name())
	}
	return SPIFFEPattern{id: id}, nil
}

// MustParseSPIFFEPattern is ParseSPIFFEPattern for tests and constants; it
// panics on error.
func MustParseSPIFFEPattern(s string) SPIFFEPattern {
	p, err := ParseSPIFFEPattern(s)
	if err != nil {
		panic(err)
	}
	return p
}

// Match reports whether id, a SPIFFE ID string, is selected. A prefix
// matches whole path segments only: ".../ns/billing/*" matches
// ".../ns/billing/sa/api" but neither ".../ns/billing" nor
// ".../ns/billing-2/x".
func (p SPIFFEPattern) Match(id string) bool {
	if p.id.IsZero() {
		return false
	}
	want := p.id.String()
	if !p.prefix {
		return id == want
	}
	rest, ok := strings.CutPrefix(id, want)
	return ok && len(rest) > 1 && rest[0] == '/'
}

// String returns the pattern as written.
func (p SPIFFEPattern) String() string {
	if p.id.IsZero() {
		return ""
	}
	if p.prefix {
		return p.id.String() + "/*"
	}
	return p.id.String()
}
