package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"github.com/credgate/credgate/internal/canonical"
	"golang.org/x/text/unicode/norm"
)

// hostPattern is a validated destination host: an exact name, an IP literal
// or a "*." wildcard.
type hostPattern struct {
	// name is the normalised exact host, or for a wildcard the suffix after
	// "*." (the apex, which the wildcard itself does not match).
	name     string
	wildcard bool
	ip       bool
}

// parseHostPattern validates and normalises a host as written in a
// destination's hosts list. The returned message, when not "", says what
// is wrong and what to write instead.
func parseHostPattern(s string) (hostPattern, string) {
	if s == "" {
		return hostPattern{}, "host is empty"
	}
	if strings.ContainsAny(s, "/ \t@?#") {
		return hostPattern{}, fmt.Sprintf("host %q must be a bare host name, not a URL; write it like api.example.com", s)
	}
	// IP literals, bracketed or not.
	if ip, ok := parseIPLiteral(s); ok {
		return hostPattern{name: ip.String(), ip: true}, ""
	}
	if strings.Contains(s, "%") {
		return hostPattern{}, fmt.Sprintf("host %q: IPv6 zones and percent-encoding are not allowed in host names", s)
	}
	if strings.HasPrefix(s, "[") {
		return hostPattern{}, fmt.Sprintf("host %q is not a valid IP literal; remove any port (ports go in `ports:`)", s)
	}
	if strings.Contains(s, ":") {
		return hostPattern{}, fmt.Sprintf("host %q must not contain a port; list ports under `ports:` instead", s)
	}
	h := strings.ToLower(s)
	h = strings.TrimSuffix(h, ".")
	wildcard := false
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		wildcard = true
		h = rest
	}
	if len(h) > 253 {
		return hostPattern{}, fmt.Sprintf("host %q is longer than 253 characters", s)
	}
	for label := range strings.SplitSeq(h, ".") {
		if msg := checkLabel(s, label); msg != "" {
			return hostPattern{}, msg
		}
	}
	// What the gateway refuses as a CONNECT target or Host could never
	// match: a host ending in a number (127.1 is an IPv4 address to
	// clients, a name to DNS) or an xn-- label that is not IDNA's.
	switch err := canonical.CheckHost(h); {
	case errors.Is(err, canonical.ErrHostNumeric):
		return hostPattern{}, fmt.Sprintf("host %q ends in a number, which clients read as an IPv4 address (127.1, 2130706433, 0x7f.1 and 0177.0.0.1 are all 127.0.0.1) and DNS as a name; the gateway refuses such a destination, so write an IPv4 address as four decimal numbers without leading zeros, like 127.0.0.1", s)
	case errors.Is(err, canonical.ErrHostALabel):
		return hostPattern{}, fmt.Sprintf("host %q has an xn-- label that is not the form IDNA gives the name it encodes (undecodable, an encoding of plain ASCII, or of characters IDNA maps to others such as fullwidth letters); the gateway refuses such a destination, so write the name's xn-- form as IDNA produces it", s)
	case err != nil:
		return hostPattern{}, fmt.Sprintf("host %q is not a valid host name", s)
	}
	return hostPattern{name: h, wildcard: wildcard}, ""
}

func checkLabel(host, label string) string {
	switch {
	case label == "":
		return fmt.Sprintf("host %q has an empty label (two dots in a row, or a leading dot)", host)
	case strings.Contains(label, "*"):
		return fmt.Sprintf("host %q: a wildcard is only allowed as a whole leading label, like *.example.com", host)
	case len(label) > 63:
		return fmt.Sprintf("host %q has a label longer than 63 characters", host)
	case label[0] == '-' || label[len(label)-1] == '-':
		return fmt.Sprintf("host %q has a label that starts or ends with '-'", host)
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if c >= 0x80 {
			return fmt.Sprintf("host %q is not ASCII; write internationalised names in their xn-- (punycode) form", host)
		}
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Sprintf("host %q contains %q; host names may contain only letters, digits, '-' and '_'", host, string(c))
		}
	}
	return ""
}

// parseIPLiteral parses "1.2.3.4", "::1" or "[::1]", without zone, and
// unmaps IPv4-mapped IPv6 addresses.
func parseIPLiteral(s string) (netip.Addr, bool) {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
		if !strings.Contains(s, ":") {
			return netip.Addr{}, false
		}
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// normaliseQueryHost brings a query host to the form hosts are indexed by:
// lower case, no trailing dot, IP literals canonical and unbracketed. It
// allocates only when the host is not already in that form.
func normaliseQueryHost(h string) (host string, isIP bool) {
	if strings.IndexByte(h, ':') >= 0 || strings.HasPrefix(h, "[") {
		if ip, ok := parseIPLiteral(h); ok {
			return ip.String(), true
		}
		return h, false
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			h = strings.ToLower(h)
			break
		}
	}
	if len(h) > 0 && h[len(h)-1] >= '0' && h[len(h)-1] <= '9' {
		if ip, err := netip.ParseAddr(h); err == nil {
			return ip.Unmap().String(), true
		}
	}
	return h, false
}

// glob is a precompiled path pattern in which '*' matches any run of
// characters, including '/'. Everything else matches itself.
type glob struct {
	src string
	// parts are the literal pieces between stars. With no star, parts has
	// one element and the match is exact.
	parts []string
	// folded are parts case-folded (foldPath), for case-insensitive
	// matching against a folded path.
	folded []string
	// slashAdded are the folded parts of the pattern a path must match
	// for the path with one '/' appended to match g, other than through
	// a final '*' (see matchFoldedSlashAdded); nil when no path can.
	slashAdded []string
	// compat is the pattern's compatibility form (foldCompat) compiled,
	// which deny rules match too, when the pattern holds a character
	// NFKC changes; nil otherwise.
	compat *glob
}

// compileGlob validates a path glob. The returned message, when not "",
// says what is wrong.
func compileGlob(s string) (glob, string) {
	if s == "" {
		return glob{}, "path is empty; write a path such as /v1/charges or /v1/*"
	}
	if s[0] != '/' {
		return glob{}, fmt.Sprintf("path %q must start with '/'", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < ' ' || c == 0x7f:
			return glob{}, fmt.Sprintf("path %q contains a control character; the gateway refuses such requests, so the rule could never match", s)
		case c == '%':
			return glob{}, fmt.Sprintf("path %q contains '%%'; rules match the decoded path, so write it decoded (/v1/café, /v1/a b, and for encoded_slashes destinations group/project)", s)
		case c == '\\' || c == ';':
			return glob{}, fmt.Sprintf("path %q contains %q; the gateway refuses requests whose path has one (400 bad_path), so the rule could never match", s, string(c))
		case c == '?' || c == '#':
			return glob{}, fmt.Sprintf("path %q contains %q; paths are matched without the query string or fragment", s, string(c))
		case c == '[' || c == ']' || c == '{' || c == '}':
			return glob{}, fmt.Sprintf("path %q contains %q; only '*' is special in a path glob (it matches any run of characters, including '/')", s, string(c))
		}
	}
	for seg := range strings.SplitSeq(s[1:], "/") {
		if seg == "." || seg == ".." {
			return glob{}, fmt.Sprintf("path %q has a dot segment; the gateway refuses requests with one (400 bad_path), so the rule could never match", s)
		}
	}
	switch canonical.CheckRunes(s) {
	case canonical.ErrCompatibility:
		return glob{}, fmt.Sprintf("path %q has a Unicode compatibility character that servers normalizing paths (NFKC) read as a delimiter (fullwidth '／', '＼', '％', '；', '？', '＃') or that makes a '.' or '..' segment ('．', '‥'); the gateway refuses requests whose path has one (400 bad_path), so the rule could never match; remove it", s)
	case canonical.ErrIgnorable:
		return glob{}, fmt.Sprintf("path %q has a zero-width, format or other default-ignorable character (such as U+200B or a soft hyphen); the gateway refuses requests whose path has one (400 bad_path), so the rule could never match; remove it", s)
	}
	if i := strings.Index(s, "//"); i >= 0 {
		return glob{}, fmt.Sprintf("path %q has an empty segment (//); the gateway refuses requests with one (400 bad_path), so the rule could never match", s)
	}
	if strings.Contains(s, "**") {
		return glob{}, fmt.Sprintf("path %q contains \"**\"; a single '*' already matches across '/'", s)
	}
	g := compileFolded(s, foldPath(s))
	if c := foldCompat(s); c != "" {
		cg := compileFolded(s, c)
		g.compat = &cg
	}
	return g, ""
}

// compileFolded compiles a validated pattern s whose folded form is f
// (foldPath or foldCompat of s).
func compileFolded(s, f string) glob {
	g := glob{src: s, parts: strings.Split(s, "*"), folded: strings.Split(f, "*")}
	// p+"/" matches a pattern ending in a literal '/' exactly when p
	// matches the pattern without it, and a pattern ending in "/*" also
	// when p matches the pattern without the "/*" (the star matching
	// nothing). A pattern ending in any other literal never matches
	// p+"/", and one ending in another '*' matches it exactly when it
	// matches p.
	bare := ""
	switch {
	case strings.HasSuffix(f, "/*"):
		bare = f[:len(f)-2]
	case strings.HasSuffix(f, "/"):
		bare = f[:len(f)-1]
	}
	if bare != "" {
		g.slashAdded = strings.Split(bare, "*")
	}
	return g
}

// match reports whether path matches g. It does not allocate.
func (g *glob) match(path string) bool { return matchParts(g.parts, path) }

// matchFolded reports whether lowerPath, a path folded by foldPath, matches g
// case-insensitively.
func (g *glob) matchFolded(lowerPath string) bool { return matchParts(g.folded, lowerPath) }

// matchFoldedSlashAdded reports whether lowerPath+"/" matches g
// case-insensitively, without building that string.
func (g *glob) matchFoldedSlashAdded(lowerPath string) bool {
	if len(g.folded) > 1 && g.folded[len(g.folded)-1] == "" && matchParts(g.folded, lowerPath) {
		return true
	}
	return g.slashAdded != nil && matchParts(g.slashAdded, lowerPath)
}

// matchDeny reports whether p, a folded path, matches g the way a deny
// rule matches: case-insensitively, with or without one trailing '/'.
func (g *glob) matchDeny(p string) bool {
	if g.matchFolded(p) {
		return true
	}
	if len(p) > 0 && p[len(p)-1] == '/' {
		return len(p) > 1 && g.matchFolded(p[:len(p)-1])
	}
	return g.matchFoldedSlashAdded(p)
}

func matchParts(parts []string, path string) bool {
	if len(parts) == 1 {
		return path == parts[0]
	}
	first, last := parts[0], parts[len(parts)-1]
	if len(path) < len(first)+len(last) || !strings.HasPrefix(path, first) || !strings.HasSuffix(path, last) {
		return false
	}
	rest := path[len(first) : len(path)-len(last)]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(rest, p)
		if i < 0 {
			return false
		}
		rest = rest[i+len(p):]
	}
	return true
}

// foldPath returns p case-folded, the form deny rules and path_case:
// insensitive destinations match, allocating only when p has an
// upper-case or non-ASCII letter. A path with non-ASCII letters is
// upper-cased before it is lower-cased, so that a character is folded
// with every other one a server may take it for: Java's
// equalsIgnoreCase and servers comparing upper-cased paths equate
// dotless 'ı' (U+0131) with 'i' and long 'ſ' with 's' through their upper
// case, which lower-casing alone keeps apart ("/v1/admın" would dodge a
// deny on "/v1/admin*"). Patterns are folded with it too.
func foldPath(p string) string {
	f, _ := foldPathASCII(p)
	return f
}

// foldPathASCII is foldPath, also reporting whether p is all ASCII (from
// the same scan).
func foldPathASCII(p string) (string, bool) {
	upper := false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c >= 0x80:
			return strings.ToLower(strings.ToUpper(p)), false
		case 'A' <= c && c <= 'Z':
			upper = true
		}
	}
	if upper {
		return strings.ToLower(p), true
	}
	return p, true
}

// foldCompat returns p's Unicode compatibility form (NFKC) folded by
// foldPath, the form a server normalizing paths reads and deny rules
// match as well as p's, or "" when NFKC leaves p unchanged (always for an
// ASCII p; a request's path is known to be ASCII from its case fold, so
// it does not call this). Servers and frameworks that normalize
// identifiers with NFKC read fullwidth 'ａｄｍｉｎ', circled 'ⓐ', the
// ligature 'ﬁ' as "admin", "a", "fi"; the canonical checks refuse the
// compatibility characters that would change a path's segments, so this
// form has the same segments as p.
func foldCompat(p string) string {
	for i := 0; i < len(p); i++ {
		if p[i] >= utf8.RuneSelf {
			if norm.NFKC.IsNormalString(p) {
				return ""
			}
			return foldPath(norm.NFKC.String(p))
		}
	}
	return ""
}

// isToken reports whether s is an HTTP token (RFC 9110 tchar), as a
// method must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}
