// Package canonical computes, once per request, the one form of a
// request's method, path and CONNECT authority that the policy matches,
// the `when:` conditions see, the audit line records and the upstream
// receives (DESIGN.md invariant 11).
//
// It refuses rather than repairs: a spelling that common servers route
// differently from a strict RFC 3986 reading (empty segments, dot
// segments, backslashes, double encoding, ';' path parameters, control
// characters, invalid UTF-8, Unicode compatibility characters that
// normalize to a path delimiter or a dot segment, default-ignorable
// characters, lower-case methods, userinfo in an authority, a method
// override naming another method; encoded slashes and encoded '?' and
// '#' unless the destination opts in) is an error that says what is
// wrong, so the gateway never forwards a request whose meaning on the
// upstream could differ from what its policy judged.
package canonical

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// Path is a request path that passed the checks.
type Path struct {
	// Raw is the path as it is sent upstream (the escaped form on the
	// wire), unchanged.
	Raw string
	// Decoded is Raw with its percent-encodings decoded once: the form
	// the policy's path globs and conditions match.
	Decoded string
	// EncodedSlash is set when Raw encodes a '/' as %2F inside a segment.
	// Such a path is only acceptable for a destination that opts in
	// (encoded_slashes, CheckEncodedSlash); its Decoded form has a '/'
	// there.
	EncodedSlash bool
	// EncodedDelimiter is set when Raw encodes a '?' or '#' as %3F or
	// %23. Such a path is only acceptable for a destination that opts in
	// (encoded_delimiters, CheckEncodedDelimiter); its Decoded form has
	// the '?' or '#'.
	EncodedDelimiter bool
}

// PathError says why a path was refused. Problem is a fixed phrase that
// names the spelling (never the client's bytes), fit for a refusal reason.
type PathError struct {
	Problem string
}

func (e *PathError) Error() string { return "canonical: the request path " + e.Problem }

// The problems ParsePath reports; tests and callers compare with
// errors.Is against these values.
var (
	ErrNotAbsolute      = &PathError{"does not start with '/'"}
	ErrEmptySegment     = &PathError{"has an empty segment (//)"}
	ErrDotSegment       = &PathError{"has a dot segment (/./ or /../, also percent-encoded)"}
	ErrBackslash        = &PathError{"has a backslash (\\ or %5C)"}
	ErrSemicolon        = &PathError{"has a ';' (path parameters, also %3B)"}
	ErrControl          = &PathError{"has a control character, space or byte outside ASCII that is not percent-encoded"}
	ErrBadEscape        = &PathError{"has a '%' that is not followed by two hex digits"}
	ErrDoubleEncoded    = &PathError{"is percent-encoded twice (%25 followed by two hex digits, or by uXXXX)"}
	ErrBadUTF8          = &PathError{"decodes to bytes that are not valid UTF-8 (overlong or truncated sequences)"}
	ErrEncodedControl   = &PathError{"encodes a control character (%00-%1F or %7F)"}
	ErrEncodedSlash     = &PathError{"encodes a '/' as %2F; the destination does not set encoded_slashes: true"}
	ErrUnescaped        = &PathError{"has a character that must be percent-encoded in a path (\" < > ^ ` { | } # ?)"}
	ErrIgnorable        = &PathError{"has a zero-width, format or other default-ignorable character (U+200B, a soft hyphen, a bidirectional control, a variation selector) that servers normalizing it drop"}
	ErrEncodedDelimiter = &PathError{"encodes a '?' or '#' (%3F, %23), which servers decoding the path before they split off the query read as its start; the destination does not set encoded_delimiters: true"}
	ErrCompatibility    = &PathError{"has a Unicode compatibility character that servers normalizing the path (NFKC) read as a delimiter ('／' or '＼' as a slash, '％', '；', '？', '＃'), or a segment they read as '.' or '..' ('．', '‥'); no request can carry it safely: rename the object or segment without that character"}
)

// Is lets errors.Is compare a *PathError by its problem.
func (e *PathError) Is(target error) bool {
	var t *PathError
	return errors.As(target, &t) && t.Problem == e.Problem
}

// unescaped are the printable ASCII characters RFC 3986 does not allow
// raw in a path, which net/url would percent-encode before sending (so
// the upstream would not receive the bytes the client sent).
const unescaped = "\"<>^`{|}#?"

// TargetPath returns the path of a request target as it came on the wire
// (Request.RequestURI): the part before '?' of an origin-form target, the
// part after the authority of an absolute-form one ("/" when it has
// none). Anything else (the asterisk-form "*") is returned whole, for
// ParsePath to refuse.
func TargetPath(target string) string {
	if strings.HasPrefix(target, "/") {
		if i := strings.IndexByte(target, '?'); i >= 0 {
			return target[:i]
		}
		return target
	}
	if i := strings.Index(target, "://"); i >= 0 {
		rest := target[i+3:]
		j := strings.IndexAny(rest, "/?")
		if j < 0 || rest[j] == '?' {
			return "/"
		}
		return TargetPath(rest[j:])
	}
	return target
}

// ParsePath checks raw, the path of a request as the client sent it
// (TargetPath of its request target), and returns it with its decoded
// form. An empty raw path is "/".
//
// Refused, because servers disagree on what they mean:
//   - a path that does not start with '/';
//   - empty segments ("//"), except a single trailing '/';
//   - "." and ".." segments, raw or percent-encoded;
//   - '\' raw or as %5C (some servers treat it as '/');
//   - ';' raw or as %3B (path parameters, which some servers strip);
//   - control characters, space and non-ASCII bytes not percent-encoded,
//     and %00-%1F, %7F;
//   - the other characters a path must percent-encode (" < > ^ ` { | } # ?),
//     which net/url would encode on the way out;
//   - '%' not followed by two hex digits, and double encoding: a decoded
//     path that still contains '%' followed by two hex digits;
//   - a decoded path that is not valid UTF-8 (overlong '/' as %C0%AF);
//   - a decoded character whose Unicode compatibility form (NFKC) holds
//     a character the checks above treat as structural — '/', '\', '%',
//     ';', '?', '#' or a control character: fullwidth '／' (%EF%BC%8F),
//     '＼', '％', '；', '？', '＃', U+037E — and a segment whose NFKC form
//     is "." or ".." ('．', '‥', '．．'). Servers that normalize paths
//     read them as the delimiter or the dot segment. Other compatibility
//     characters ('ａ', '１', '（', '：', '①', '™', '…') are accepted:
//     they cannot change which segments a path has, and the policy's deny
//     rules match the path's NFKC form as well as the path itself;
//   - a decoded default-ignorable character (zero-width space, soft
//     hyphen, bidirectional controls, variation selectors), which
//     NFKC_Casefold removes ("adm%E2%80%8Bin" read as "admin").
//
// %2F is reported through Path.EncodedSlash, and %3F and %23 through
// Path.EncodedDelimiter, not refused: whether they are acceptable depends
// on the destination (CheckEncodedSlash, CheckEncodedDelimiter).
// A server, or a front proxy rewriting the target, that decodes the path
// before it splits off the query (Apache mod_rewrite, CVE-2024-38474;
// nginx proxy_pass with $uri) routes "/v1/secret%3Fx" as "/v1/secret",
// so the gateway refuses an encoded '?' or '#' unless the destination's
// API is known to keep it in the name (S3 and GCS object keys).
func ParsePath(raw string) (Path, error) {
	if raw == "" {
		return Path{Raw: "/", Decoded: "/"}, nil
	}
	if raw[0] != '/' {
		return Path{}, ErrNotAbsolute
	}
	p := Path{Raw: raw}
	escaped := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '%':
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return Path{}, ErrBadEscape
			}
			b := unhex(raw[i+1])<<4 | unhex(raw[i+2])
			switch {
			case b == '/':
				p.EncodedSlash = true
			case b == '\\':
				return Path{}, ErrBackslash
			case b == ';':
				return Path{}, ErrSemicolon
			case b == '?' || b == '#':
				p.EncodedDelimiter = true
			case b < 0x20 || b == 0x7f:
				return Path{}, ErrEncodedControl
			}
			escaped = true
			i += 2
		case c == '\\':
			return Path{}, ErrBackslash
		case c == ';':
			return Path{}, ErrSemicolon
		case c <= ' ' || c >= 0x7f:
			return Path{}, ErrControl
		case strings.IndexByte(unescaped, c) >= 0:
			return Path{}, ErrUnescaped
		}
	}
	p.Decoded = raw
	if escaped {
		p.Decoded = decode(raw)
		if hasEscape(p.Decoded) {
			return Path{}, ErrDoubleEncoded
		}
		if !utf8.ValidString(p.Decoded) {
			return Path{}, ErrBadUTF8
		}
	}
	// Segments are judged on the decoded form, so "%2E%2E" and, where
	// encoded slashes are allowed, "a%2F..%2Fb" are dot segments too.
	if err := checkSegments(p.Decoded); err != nil {
		return Path{}, err
	}
	// Raw bytes outside ASCII were refused above, so only an escaped
	// path can decode to a character outside ASCII.
	if escaped {
		if err := CheckRunes(p.Decoded); err != nil {
			return Path{}, err
		}
	}
	return p, nil
}

// CheckEncodedSlash refuses a path with %2F unless the destination allows
// encoded slashes (for APIs such as GitLab's projects/group%2Fproject).
func (p Path) CheckEncodedSlash(allowed bool) error {
	if p.EncodedSlash && !allowed {
		return ErrEncodedSlash
	}
	return nil
}

// CheckEncodedDelimiter refuses a path with %3F or %23 unless the
// destination allows encoded delimiters (for object stores such as S3
// and GCS, whose keys may hold '?' and '#').
func (p Path) CheckEncodedDelimiter(allowed bool) error {
	if p.EncodedDelimiter && !allowed {
		return ErrEncodedDelimiter
	}
	return nil
}

// checkSegments refuses empty (other than a single trailing one) and dot
// segments of a decoded absolute path.
func checkSegments(d string) error {
	// d[0] == '/'. Walk the segments after each '/'.
	for i := 1; i <= len(d); {
		j := strings.IndexByte(d[i:], '/')
		end := len(d)
		if j >= 0 {
			end = i + j
		}
		seg := d[i:end]
		switch {
		case seg == "" && end < len(d):
			return ErrEmptySegment
		case seg == "." || seg == "..":
			return ErrDotSegment
		}
		i = end + 1
	}
	return nil
}

// CheckRunes refuses a decoded path (valid UTF-8) holding a character
// servers read as another or drop: a default-ignorable one
// (ErrIgnorable); one whose compatibility normalization (NFKC) holds a
// structural character ('/', '\', '%', ';', '?', '#', a control
// character: ErrCompatibility); or compatibility characters that make a
// segment of the path's NFKC form "." or ".." (ErrCompatibility).
// ParsePath applies it; the policy refuses a path glob it refuses, which
// no request could match.
//
// The dot rule is exact rather than a blanket refusal of characters
// whose NFKC form holds '.' ('…', '⒈', a fullwidth '．' inside
// "ｆｉｌｅ．ｔｘｔ"): with delimiters refused, NFKC cannot add or remove a
// '/' (it never composes across one, and maps no character to nothing),
// so the segments of the NFKC form are the NFKC forms of the segments,
// and checking them for "." and ".." is the definition of the danger.
func CheckRunes(d string) error {
	dots := false
	for i := 0; i < len(d); {
		if d[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(d[i:])
		if ignorable(r) {
			return ErrIgnorable
		}
		switch compatibility(d[i : i+n]) {
		case compatDelimiter:
			return ErrCompatibility
		case compatDot:
			dots = true
		}
		i += n
	}
	if dots {
		for seg := range strings.SplitSeq(norm.NFKC.String(d), "/") {
			if seg == "." || seg == ".." {
				return ErrCompatibility
			}
		}
	}
	return nil
}

// ignorable reports whether r is a format character (general category
// Cf: zero-width space and joiners, the soft hyphen, bidirectional
// controls, the byte order mark), a variation selector or another
// default-ignorable code point (the Hangul fillers): characters Unicode's
// NFKC_Casefold mapping (ICU, IDNA) removes, so "adm\u200bin" would be
// routed as "admin" by a server that normalizes with it.
func ignorable(r rune) bool {
	return unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Variation_Selector, r) ||
		unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r)
}

// structural are the ASCII characters whose appearance in a path's NFKC
// form, from a compatibility character, CheckRunes refuses: the
// delimiters and escape the checks of ParsePath treat as structure
// ('/', '\', '%', ';', '?', '#') and the control characters. '.' is
// judged by segment instead (CheckRunes). The characters ParsePath
// refuses only raw (space, '"', '<', '>', '^', '`', '{', '|', '}') are
// accepted percent-encoded, so their compatibility forms are no more
// than the encoded character.
const structural = "/\\%;?#"

// The kinds of character compatibility reports.
const (
	compatNone      = iota // no NFKC form holding a structural ASCII character
	compatDelimiter        // NFKC holds a delimiter, '%' or a control character
	compatDot              // NFKC holds '.' (and no delimiter)
)

// compatibility classifies c, one non-ASCII character, by the structural
// ASCII its compatibility normalization (NFKC) holds. Only characters
// with a decomposition are normalized (most have none), one at a time:
// composition never yields ASCII, so a character's neighbours cannot
// change the answer.
func compatibility(c string) int {
	if len(norm.NFKC.PropertiesString(c).Decomposition()) == 0 {
		return compatNone
	}
	kind := compatNone
	for _, r := range norm.NFKC.String(c) {
		switch {
		case r < 0x20 || r == 0x7f || strings.ContainsRune(structural, r):
			return compatDelimiter
		case r == '.':
			kind = compatDot
		}
	}
	return kind
}

// hasEscape reports whether s contains '%' followed by two hex digits,
// or an IIS-style %uXXXX escape (which a server decoding twice with
// %u support reads as the character).
func hasEscape(s string) bool {
	for i := strings.IndexByte(s, '%'); i >= 0; {
		if i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			return true
		}
		if i+5 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U') && isHex(s[i+2]) && isHex(s[i+3]) && isHex(s[i+4]) && isHex(s[i+5]) {
			return true
		}
		j := strings.IndexByte(s[i+1:], '%')
		if j < 0 {
			return false
		}
		i += 1 + j
	}
	return false
}

// decode percent-decodes s, whose escapes ParsePath has validated.
func decode(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// ErrMethod is returned for a method that is not an upper-case token.
var ErrMethod = errors.New("canonical: the method must be an upper-case token such as GET or POST")

// Method checks that m is an HTTP token (RFC 9110 §9.1) without
// lower-case letters. Methods are case-sensitive: a server may route
// "delete" as DELETE or not at all, so the gateway neither matches nor
// forwards a method that is not in its canonical upper-case form.
func Method(m string) error {
	if m == "" {
		return ErrMethod
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		switch {
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return ErrMethod
		}
	}
	return nil
}

// Authority checks the request target of a CONNECT as it arrived on the
// wire (http.Request.RequestURI): exactly "host:port" in authority form
// (RFC 9110 §9.3.6), with no userinfo, path, query or fragment. It
// returns the host (lower case, without brackets or trailing dot) and the
// port. The host is not resolved or validated as a name here; the caller
// does that.
func Authority(target string) (host, port string, err error) {
	if target == "" {
		return "", "", errors.New("canonical: the CONNECT target is empty; send CONNECT host:port")
	}
	if i := strings.IndexAny(target, "@/?#\\"); i >= 0 {
		if target[i] == '@' {
			return "", "", errors.New("canonical: the CONNECT target has userinfo (user@); send CONNECT host:port and credentials in Proxy-Authorization")
		}
		return "", "", fmt.Errorf("canonical: the CONNECT target has %q; send CONNECT host:port (authority form, no scheme or path)", target[i])
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c >= 0x7f {
			return "", "", errors.New("canonical: the CONNECT target has a control character, space or byte outside ASCII; write internationalised names in their xn-- form")
		}
	}
	var h, p string
	if target[0] == '[' {
		end := strings.IndexByte(target, ']')
		if end < 0 || end+1 >= len(target) || target[end+1] != ':' {
			return "", "", errors.New("canonical: the CONNECT target is not [ipv6]:port")
		}
		h, p = target[1:end], target[end+2:]
		if !strings.Contains(h, ":") {
			return "", "", errors.New("canonical: brackets in a CONNECT target are only for IPv6 addresses")
		}
	} else {
		i := strings.LastIndexByte(target, ':')
		if i < 0 {
			return "", "", errors.New("canonical: the CONNECT target has no port; send CONNECT host:port")
		}
		h, p = target[:i], target[i+1:]
		if strings.Contains(h, ":") {
			return "", "", errors.New("canonical: an IPv6 CONNECT target must be in brackets: [ipv6]:port")
		}
	}
	if strings.ContainsAny(h, "[]%") {
		return "", "", errors.New("canonical: the CONNECT host has '[', ']' or '%'; send a host name, an IPv4 address or [ipv6]:port without a zone")
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "" {
		return "", "", errors.New("canonical: the CONNECT target has no host")
	}
	if p == "" || len(p) > 5 {
		return "", "", errors.New("canonical: the CONNECT target has no valid port")
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return "", "", errors.New("canonical: the CONNECT target has no valid port")
		}
		n = n*10 + int(p[i]-'0')
	}
	if n < 1 || n > 65535 {
		return "", "", errors.New("canonical: the CONNECT port must be 1-65535")
	}
	return h, p, nil
}

// HostName reports whether h (lower case, no trailing dot) is a host name
// the gateway accepts as a destination and names in a leaf certificate:
// CheckHost finds nothing wrong with it.
func HostName(h string) bool { return CheckHost(h) == nil }

// The problems CheckHost reports; callers compare with errors.Is.
var (
	// ErrHostSyntax: not dot-separated labels of letters, digits, '-'
	// and '_'.
	ErrHostSyntax = errors.New("canonical: not a host name: write dot-separated labels of 1 to 63 letters, digits, '-' and '_', none starting or ending with '-', 253 bytes at most, no wildcard, international names in their xn-- form")
	// ErrHostNumeric: the last label is a number.
	ErrHostNumeric = errors.New("canonical: the host ends in a number, which browsers, curl and C resolvers (inet_aton) read as an IPv4 address (127.1, 2130706433, 0x7f.1 and 0177.0.0.1 are all 127.0.0.1) and DNS as a name; write an IPv4 address as four decimal numbers without leading zeros, like 127.0.0.1")
	// ErrHostALabel: an xn-- label is not the A-label IDNA makes of the
	// name it encodes.
	ErrHostALabel = errors.New("canonical: an xn-- label is not the form IDNA (UTS #46) gives the name it encodes, so clients and servers that apply IDNA read another name than DNS does (xn--mi7cqau is fullwidth \"ａｐｉ\", which IDNA reads as api); write the name's xn-- form as IDNA produces it")
)

// CheckHost checks that h (lower case, no trailing dot) is a host name
// the gateway accepts as a destination and names in a leaf certificate:
// dot-separated labels of 1 to 63 letters, digits, '-' and '_' (found in
// real host names), none starting or ending with '-', 253 bytes at most
// (ErrHostSyntax). Internationalised names are written in their xn--
// form, and an xn-- label must be the A-label IDNA makes of the name it
// encodes (ErrHostALabel). A wildcard is never a host name. A host whose
// last label is a number as the WHATWG URL standard reads one (all
// decimal digits, or 0x and hex digits) is no name either
// (ErrHostNumeric): it is an IPv4 address to a browser, curl or
// inet_aton, and a canonical one (a.b.c.d) never reaches CheckHost,
// whose callers parse IP literals first. The CONNECT parser, the policy's
// hosts and the leaf issuer share it, so a name one accepts the others do
// not refuse, and every name the gateway looks up in DNS is one that all
// its readers read alike.
func CheckHost(h string) error {
	if len(h) == 0 || len(h) > 253 {
		return ErrHostSyntax
	}
	last := ""
	for l := range strings.SplitSeq(h, ".") {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return ErrHostSyntax
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return ErrHostSyntax
			}
		}
		if strings.HasPrefix(l, "xn--") && !aLabel(l) {
			return ErrHostALabel
		}
		last = l
	}
	if isNumber(last) {
		return ErrHostNumeric
	}
	return nil
}

// isNumber reports whether a host label is a number to the WHATWG URL
// standard's IPv4 parser ("ends in a number"): decimal digits, or "0x"
// followed by hex digits (none too). Such a host is parsed as an IPv4
// address by browsers and curl, and inet_aton reads it so too.
func isNumber(l string) bool {
	if l == "" {
		return false
	}
	digits := l
	hex := false
	if rest, ok := strings.CutPrefix(l, "0x"); ok {
		digits, hex = rest, true
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if !(c >= '0' && c <= '9' || hex && c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// aLabel reports whether an xn-- label (lower case) is the A-label IDNA
// lookup (UTS #46, non-transitional) makes of the Unicode label it
// encodes: not undecodable Punycode, not an encoding of ASCII ("xn--abc-"
// is "abc"), nor of characters IDNA maps to others (fullwidth or
// upper-case letters, compatibility forms).
func aLabel(l string) bool {
	u, err := idna.Punycode.ToUnicode(l)
	if err != nil || u == "" {
		return false
	}
	a, err := idna.Lookup.ToASCII(u)
	return err == nil && a == l
}
