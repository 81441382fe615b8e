package suggest

import (
	"regexp"
	"strings"
)

// DefaultMaxLiterals is how many distinct values a path segment may take
// under one prefix before Suggest collapses it into `*`.
const DefaultMaxLiterals = 20

var (
	uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	hexRE  = regexp.MustCompile(`^[0-9a-fA-F]{8,}$`)
	// prefixedRE: Stripe-style IDs (cus_NffrFeUfNV2Hib, ch_3MmlLrLk)
	// and AWS-style ones (i-0abc123def4567890).
	prefixedRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}_[A-Za-z0-9]{6,}$`)
	awsIDRE    = regexp.MustCompile(`^[a-z]{1,10}-[0-9a-f]{8,}$`)
)

// isID reports whether a path segment looks like an identifier rather
// than a route: a number, a UUID, a run of hex of 8 or more with a digit,
// or a prefixed ID whose tail has a digit or an upper-case letter (so
// list_objects stays a route, cus_NffrFeUfNV2Hib is an ID).
func isID(seg string) bool {
	switch {
	case seg == "":
		return false
	case strings.Trim(seg, "0123456789") == "":
		return true
	case uuidRE.MatchString(seg):
		return true
	case hexRE.MatchString(seg) && strings.ContainsAny(seg, "0123456789"):
		return true
	case prefixedRE.MatchString(seg):
		tail := seg[strings.IndexByte(seg, '_')+1:]
		return strings.ContainsAny(tail, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
	case awsIDRE.MatchString(seg):
		return strings.ContainsAny(seg[strings.IndexByte(seg, '-')+1:], "0123456789")
	}
	return false
}

// templates maps each path to its template: ID-like segments become `*`,
// and so does a segment position that takes more than maxLiterals distinct
// values under the same (templated) prefix. A path keeps its number of
// segments, so a template never matches a shorter path; as in every
// policy glob, a `*` also matches '/' (documented).
func templates(paths []string, maxLiterals int) map[string]string {
	if maxLiterals <= 0 {
		maxLiterals = DefaultMaxLiterals
	}
	segs := make([][]string, len(paths))
	longest := 0
	for i, p := range paths {
		s := strings.Split(p, "/")
		for j := 1; j < len(s); j++ {
			if isID(s[j]) {
				s[j] = "*"
			}
		}
		segs[i] = s
		longest = max(longest, len(s))
	}
	// Position by position, under each templated prefix, collapse a
	// position whose literal values are too many.
	for pos := 1; pos < longest; pos++ {
		values := map[string]map[string]bool{}
		for _, s := range segs {
			if pos >= len(s) || s[pos] == "*" {
				continue
			}
			prefix := strings.Join(s[:pos], "/")
			if values[prefix] == nil {
				values[prefix] = map[string]bool{}
			}
			values[prefix][s[pos]] = true
		}
		for _, s := range segs {
			if pos >= len(s) || s[pos] == "*" {
				continue
			}
			if len(values[strings.Join(s[:pos], "/")]) > maxLiterals {
				s[pos] = "*"
			}
		}
	}
	out := make(map[string]string, len(paths))
	for i, p := range paths {
		out[p] = strings.Join(segs[i], "/")
	}
	return out
}
