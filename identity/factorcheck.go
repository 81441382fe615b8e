package identity

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Limits on what a verifier's factor may say: its subject and attributes
// flow into workload selection, rule conditions, audit lines, logs and
// spans, so a verifier (a plugin above all) can make them neither
// unbounded nor carry text that rewrites the lines they are printed in.
// verify holds every verifier's factor to them (checkFactor).
const (
	// MaxFactorAttributes is the most attributes one factor may carry.
	MaxFactorAttributes = 64
	// MaxFactorKeyBytes is the longest attribute key, in bytes.
	MaxFactorKeyBytes = 128
	// MaxFactorValueBytes is the longest attribute value, and the longest
	// subject, in bytes (a SPIFFE ID may have 2048).
	MaxFactorValueBytes = 2048
)

// checkFactor says what in f's subject or attributes is beyond the
// limits above, invalid UTF-8 or a control character, or a spiffe_id
// that is not canonical (checkSPIFFEAttributes), or nil. It names
// the attribute (its key quoted and cut short), never a value.
func checkFactor(f *Factor) error {
	if n := len(f.Attributes); n > MaxFactorAttributes {
		return fmt.Errorf("the factor carries %d attributes, more than %d", n, MaxFactorAttributes)
	}
	if why := checkText(f.Subject, MaxFactorValueBytes); why != "" {
		return fmt.Errorf("the subject %s", why)
	}
	for k, v := range f.Attributes {
		if k == "" {
			return fmt.Errorf("an empty attribute key")
		}
		if why := checkText(k, MaxFactorKeyBytes); why != "" {
			return fmt.Errorf("attribute %s: its key %s", quoteShort(k), why)
		}
		if why := checkText(v, MaxFactorValueBytes); why != "" {
			return fmt.Errorf("attribute %s: its value %s", quoteShort(k), why)
		}
	}
	return checkSPIFFEAttributes(f.Attributes)
}

// checkSPIFFEAttributes says what is wrong with a factor's spiffe_id,
// or nil. Spec's spiffe selectors compare it as text (an exact ID, or a
// prefix of whole segments), which is sound only for a canonical SPIFFE
// ID: "spiffe://td/ns/billing/../admin", ".../billing//x", ".../%2e%2e"
// or ".../billing/x/" would match spiffe://td/ns/billing/* while naming
// another workload, or none, anywhere else. So spiffe_id must be a
// SPIFFE ID as go-spiffe parses and prints it, and
// trust_domain and path, when the factor carries them too, must be its
// own. The built-in verifiers only make such IDs; a plugin is held to it.
func checkSPIFFEAttributes(attrs map[string]string) error {
	v, ok := attrs[AttrSPIFFEID]
	if !ok {
		return nil
	}
	id, err := spiffeid.FromString(v)
	switch {
	case err != nil:
		return fmt.Errorf("attribute %s is not a SPIFFE ID: %v", AttrSPIFFEID, err)
	case id.String() != v:
		return fmt.Errorf("attribute %s is not written as a SPIFFE ID is (spiffe://trust-domain/path)", AttrSPIFFEID)
	}
	if td, ok := attrs[AttrTrustDomain]; ok && td != id.TrustDomain().Name() {
		return fmt.Errorf("attribute %s is not the trust domain of attribute %s", AttrTrustDomain, AttrSPIFFEID)
	}
	if p, ok := attrs[AttrPath]; ok && p != id.Path() {
		return fmt.Errorf("attribute %s is not the path of attribute %s", AttrPath, AttrSPIFFEID)
	}
	return nil
}

// checkText says why s is not at most max bytes of valid UTF-8 free of
// control characters (C0, DEL, C1), bidirectional controls and line or
// paragraph separators, or "".
func checkText(s string, max int) string {
	if len(s) > max {
		return fmt.Sprintf("has %d bytes, more than %d", len(s), max)
	}
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || unicode.In(r, unicode.Zl, unicode.Zp) {
			return fmt.Sprintf("holds a control character (U+%04X)", r)
		}
	}
	return ""
}
