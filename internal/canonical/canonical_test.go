package canonical

import (
	"errors"
	"net"
	"net/url"
	"path"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

func TestParsePath(t *testing.T) {
	ok := []struct{ raw, decoded string }{
		{"", "/"},
		{"/", "/"},
		{"/v1/charges", "/v1/charges"},
		{"/v1/charges/", "/v1/charges/"},
		{"/v1/%61dmin", "/v1/admin"},
		{"/v1/caf%C3%A9", "/v1/café"},
		{"/v1/a%20b", "/v1/a b"},
		{"/v1/projects/x:run", "/v1/projects/x:run"},
		{"/v1/...", "/v1/..."},
		{"/v1/.well-known/x", "/v1/.well-known/x"},
		{"/v1/a..b", "/v1/a..b"},
		{"/v1/%7Euser", "/v1/~user"},
		{"/v1/100%25", "/v1/100%"},
		{"/v1/%25zz", "/v1/%zz"},
		{"/v1/a,b=c", "/v1/a,b=c"},
		{"/v1/%EF%BD%81dmin", "/v1/ａdmin"},
		{"/v1/" + url.PathEscape("議事録（2026）.pdf"), "/v1/議事録（2026）.pdf"},
		{"/v1/" + url.PathEscape("ｆｉｌｅ．ｔｘｔ"), "/v1/ｆｉｌｅ．ｔｘｔ"},
		{"/v1/" + url.PathEscape("…") + "/x", "/v1/…/x"},
		{"/v1/" + url.PathEscape("．．．") + "/x", "/v1/．．．/x"},
		{"/v1/" + url.PathEscape("①™½ﬁ：！"), "/v1/①™½ﬁ：！"},
	}
	for _, c := range ok {
		p, err := ParsePath(c.raw)
		if err != nil {
			t.Errorf("ParsePath(%q): %v, want ok", c.raw, err)
			continue
		}
		if p.Decoded != c.decoded {
			t.Errorf("ParsePath(%q).Decoded = %q, want %q", c.raw, p.Decoded, c.decoded)
		}
	}

	bad := []struct {
		raw  string
		want error
	}{
		{"v1/charges", ErrNotAbsolute},
		{"*", ErrNotAbsolute},
		{"//v1/charges", ErrEmptySegment},
		{"/v1//admin", ErrEmptySegment},
		{"/v1/admin//", ErrEmptySegment},
		{"/v1/./admin", ErrDotSegment},
		{"/v1/../admin", ErrDotSegment},
		{"/v1/..", ErrDotSegment},
		{"/v1/.", ErrDotSegment},
		{"/v1/%2e%2e/admin", ErrDotSegment},
		{"/v1/%2E./admin", ErrDotSegment},
		{"/v1/.%2e", ErrDotSegment},
		{"/v1/%2e", ErrDotSegment},
		{"/v1\\admin", ErrBackslash},
		{"/v1/%5Cadmin", ErrBackslash},
		{"/v1/%5cadmin", ErrBackslash},
		{"/v1/admin;x=y", ErrSemicolon},
		{"/v1/..;/admin", ErrSemicolon},
		{"/v1;/admin", ErrSemicolon},
		{"/v1/admin%3Bx", ErrSemicolon},
		{"/v1/admin%3b", ErrSemicolon},
		{"/v1/a\x00b", ErrControl},
		{"/v1/a\rb", ErrControl},
		{"/v1/a\nb", ErrControl},
		{"/v1/a\tb", ErrControl},
		{"/v1/a b", ErrControl},
		{"/v1/a\x7fb", ErrControl},
		{"/v1/caf\xc3\xa9", ErrControl},
		{"/v1/%00", ErrEncodedControl},
		{"/v1/%0d%0a", ErrEncodedControl},
		{"/v1/%09", ErrEncodedControl},
		{"/v1/%7F", ErrEncodedControl},
		{"/v1/%", ErrBadEscape},
		{"/v1/%2", ErrBadEscape},
		{"/v1/%zz", ErrBadEscape},
		{"/v1/%u002F", ErrBadEscape},
		{"/v1/%252F", ErrDoubleEncoded},
		{"/v1/%255C", ErrDoubleEncoded},
		{"/v1/%252e%252e/admin", ErrDoubleEncoded},
		{"/v1/%2561dmin", ErrDoubleEncoded},
		{"/v1/%25%32%46", ErrDoubleEncoded},
		{"/v1/%C0%AF", ErrBadUTF8},
		{"/v1/%C0%AE%C0%AE/admin", ErrBadUTF8},
		{"/v1/%E0%80%AF", ErrBadUTF8},
		{"/v1/%FF", ErrBadUTF8},
		{`/v1/a"b`, ErrUnescaped},
		{"/v1/a<b>", ErrUnescaped},
		{"/v1/a^b", ErrUnescaped},
		{"/v1/a`b", ErrUnescaped},
		{"/v1/{id}", ErrUnescaped},
		{"/v1/a|b", ErrUnescaped},
		{"/v1/a#b", ErrUnescaped},
		{`/v1/allowed%2Fx"`, ErrUnescaped},
		{"/v1/%25u002e%25u002e/admin", ErrDoubleEncoded},
		{"/v1/%25U002F", ErrDoubleEncoded},
		{"/v1/x/%EF%BC%8E%EF%BC%8E/admin", ErrCompatibility},
		{"/v1/x%EF%BC%8F..%EF%BC%8Fadmin", ErrCompatibility},
		{"/v1/x/%E2%80%A5/admin", ErrCompatibility},
		{"/v1/x/.%EF%BC%8E/admin", ErrCompatibility},
		{"/v1/x/%EF%BC%8E", ErrCompatibility},
		{"/v1/%EF%BC%9F", ErrCompatibility},
		{"/v1/%EF%BC%83x", ErrCompatibility},
		{"/v1/%EF%BC%85%32F", ErrCompatibility},
		{"/v1/x%CD%BEy", ErrCompatibility},
	}
	for _, c := range bad {
		_, err := ParsePath(c.raw)
		if !errors.Is(err, c.want) {
			t.Errorf("ParsePath(%q) = %v, want %v", c.raw, err, c.want)
		}
	}
}

// TestCompatibilityCharacters is the class test for Unicode
// compatibility characters. Servers and frameworks that normalize a path
// (or the identifiers routed from it) with NFKC read
// "%EF%BC%8E%EF%BC%8E" (U+FF0E twice) as "..", U+FF0F as '/', U+2025 as
// "..", U+FF41 as 'a'. A path is refused when its NFKC form has a
// structural character it did not have ('/', '\', '%', ';', '?', '#', a
// control character) or a "." or ".." segment; other compatibility
// characters ('ａ', '（', '１', '①', '™') are forwarded, and deny rules
// match the path's NFKC form (policy's TestDenyCompatibilityEquivalence).
// Every rune is tried in four places against that reference, computed
// from the NFKC form of the whole path, and the best-known members by
// name. So are default-ignorable characters (zero-width, format,
// variation selectors), which NFKC_Casefold drops: "adm%E2%80%8Bin" is
// "admin" to a server normalizing with it, and they are always refused.
func TestCompatibilityCharacters(t *testing.T) {
	for _, c := range []struct {
		r    rune
		name string
	}{
		{'\uFF0E', "FULLWIDTH FULL STOP"},
		{'\uFF0F', "FULLWIDTH SOLIDUS"},
		{'\uFF3C', "FULLWIDTH REVERSE SOLIDUS"},
		{'\uFF1B', "FULLWIDTH SEMICOLON"},
		{'\uFF05', "FULLWIDTH PERCENT SIGN"},
		{'\uFF1F', "FULLWIDTH QUESTION MARK"},
		{'\uFF03', "FULLWIDTH NUMBER SIGN"},
		{'\u037E', "GREEK QUESTION MARK (';')"},
		{'\u2024', "ONE DOT LEADER"},
		{'\u2025', "TWO DOT LEADER"},
		{'\uFE30', "PRESENTATION FORM FOR VERTICAL TWO DOT LEADER"},
		{'\uFE52', "SMALL FULL STOP"},
		{'\uFE68', "SMALL REVERSE SOLIDUS"},
		{'\u2100', "ACCOUNT OF (a/c)"},
		{'\u2047', "DOUBLE QUESTION MARK"},
	} {
		raw := "/v1/x/" + url.PathEscape(string(c.r)) + "/admin"
		if _, err := ParsePath(raw); !errors.Is(err, ErrCompatibility) {
			t.Errorf("%U %s (%s): %v, want %v", c.r, c.name, raw, err, ErrCompatibility)
		}
	}
	for _, s := range []string{"café", "東京", "Привет", "straße", "µ", "İstanbul", "ｶﾀｶﾅ", "한국어",
		"議事録（2026）", "ａｄｍｉｎ", "①", "™", "½", "ﬁ", "K", "ſ", "\u00a0", "²", "𝐚", "…", "ｆｉｌｅ．ｔｘｔ", "⒈"} {
		if _, err := ParsePath("/v1/" + url.PathEscape(s)); err != nil {
			t.Errorf("%q: %v, want it accepted (its NFKC form adds no delimiter or dot segment)", s, err)
		}
	}
	for _, c := range []struct {
		r    rune
		name string
	}{
		{'\u200B', "ZERO WIDTH SPACE"},
		{'\u200D', "ZERO WIDTH JOINER"},
		{'\u00AD', "SOFT HYPHEN"},
		{'\u202E', "RIGHT-TO-LEFT OVERRIDE"},
		{'\uFEFF', "ZERO WIDTH NO-BREAK SPACE (BOM)"},
		{'\uFE0F', "VARIATION SELECTOR-16"},
		{'\u3164', "HANGUL FILLER"},
		{'\U000E0041', "TAG LATIN CAPITAL LETTER A"},
	} {
		raw := "/v1/adm" + url.PathEscape(string(c.r)) + "in"
		if _, err := ParsePath(raw); !errors.Is(err, ErrIgnorable) {
			t.Errorf("%U %s (%s): %v, want %v", c.r, c.name, raw, err, ErrIgnorable)
		}
	}
	// safeNFKC is the reference: the NFKC form of decoded d has the
	// same number of '/' as d, none of the other structural characters
	// or control characters, and no "." or ".." segment.
	safeNFKC := func(d string) bool {
		n := norm.NFKC.String(d)
		if strings.Count(n, "/") != strings.Count(d, "/") || strings.ContainsAny(n, "\\%;?#") ||
			strings.ContainsFunc(n, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return false
		}
		for seg := range strings.SplitSeq(n, "/") {
			if seg == "." || seg == ".." {
				return false
			}
		}
		return true
	}
	refused, ignored, compat, interacts := 0, 0, 0, 0
	for r := rune(0x80); r <= utf8.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		s := string(r)
		ign := unicode.In(r, unicode.Cf, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point)
		if ign {
			ignored++
		}
		for _, ctx := range []string{"/v1/a%sb", "/v1/%s/b", "/v1/.%s/b", "/v1/%s./b"} {
			d := strings.Replace(ctx, "%s", s, 1)
			_, err := ParsePath(strings.Replace(ctx, "%s", url.PathEscape(s), 1))
			switch {
			case ign && !errors.Is(err, ErrIgnorable):
				t.Errorf("%U (default-ignorable) in %q: %v, want %v", r, d, err, ErrIgnorable)
			case !ign && !safeNFKC(d) && !errors.Is(err, ErrCompatibility):
				t.Errorf("%q (%U; NFKC %q): %v, want %v", d, r, norm.NFKC.String(d), err, ErrCompatibility)
			case !ign && safeNFKC(d) && err != nil:
				t.Errorf("%q (%U; NFKC %q): %v, want it accepted", d, r, norm.NFKC.String(d), err)
			case !ign && err != nil && ctx == "/v1/a%sb":
				refused++
			}
		}
		// An accepted character whose NFKC form holds ASCII must not
		// change its ASCII neighbours under NFKC: the literal parts of
		// an allow rule's glob around it then read the same to a
		// normalizing server (docs/policy.md).
		n := norm.NFKC.String(s)
		if ign || !strings.ContainsFunc(n, func(x rune) bool { return x < utf8.RuneSelf }) {
			continue
		}
		if _, err := ParsePath("/v1/a" + url.PathEscape(s) + "b"); err != nil {
			continue
		}
		compat++
		for x := byte(' '); x < 0x7f; x++ {
			if got := norm.NFKC.String(string(x) + s + string(x)); got != string(x)+n+string(x) {
				interacts++
				t.Errorf("%U between %q: NFKC %q, want %q", r, x, got, string(x)+n+string(x))
			}
		}
	}
	t.Logf("non-ASCII runes: %d refused inside a segment, %d default-ignorable refused; %d accepted compatibility forms of ASCII (%d change a neighbour)", refused, ignored, compat, interacts)
}

func TestEncodedSlash(t *testing.T) {
	cases := []struct {
		raw     string
		allowed bool
		decoded string
		want    error
	}{
		{"/api/v4/projects/group%2Fproject", true, "/api/v4/projects/group/project", nil},
		{"/api/v4/projects/group%2fproject", true, "/api/v4/projects/group/project", nil},
		{"/api/v4/projects/group%2Fproject", false, "", ErrEncodedSlash},
		{"/api/v4/projects/a%2F..%2Fadmin", true, "", ErrDotSegment},
		{"/api/v4/projects/a%2F%2Fb", true, "", ErrEmptySegment},
		{"/api/v4/projects/%2F", true, "", ErrEmptySegment},
	}
	for _, c := range cases {
		p, err := ParsePath(c.raw)
		if err == nil {
			err = p.CheckEncodedSlash(c.allowed)
		}
		if !errors.Is(err, c.want) || (err == nil && p.Decoded != c.decoded) {
			t.Errorf("%q allowed=%v: %+v, %v; want %q, %v", c.raw, c.allowed, p, err, c.decoded, c.want)
		}
		if err == nil && p.Raw != c.raw {
			t.Errorf("%q: Raw changed to %q; the encoded form must be forwarded unchanged", c.raw, p.Raw)
		}
	}
}

// TestEncodedDelimiter: %3F and %23 are refused unless the destination
// sets encoded_delimiters: true (S3 and GCS object keys may hold '?' and
// '#'); then the rules match the decoded form and the upstream receives
// the encoded one.
func TestEncodedDelimiter(t *testing.T) {
	cases := []struct {
		raw     string
		allowed bool
		decoded string
		want    error
	}{
		{"/v1/secret%3F", false, "", ErrEncodedDelimiter},
		{"/v1/secret%3fx=1", false, "", ErrEncodedDelimiter},
		{"/v1/secret%23", false, "", ErrEncodedDelimiter},
		{"/v1/admin%3F/public", false, "", ErrEncodedDelimiter},
		{"/bucket/what%3F.pdf", true, "/bucket/what?.pdf", nil},
		{"/bucket/issue%2312", true, "/bucket/issue#12", nil},
		{"/bucket/plain", false, "/bucket/plain", nil},
		{"/bucket/%3F/..", true, "", ErrDotSegment},
		{"/bucket/%253F", true, "", ErrDoubleEncoded},
		{"/bucket/%EF%BC%9F", true, "", ErrCompatibility},
	}
	for _, c := range cases {
		p, err := ParsePath(c.raw)
		if err == nil {
			err = p.CheckEncodedDelimiter(c.allowed)
		}
		if !errors.Is(err, c.want) || (err == nil && p.Decoded != c.decoded) {
			t.Errorf("%q allowed=%v: %+v, %v; want %q, %v", c.raw, c.allowed, p, err, c.decoded, c.want)
		}
		if err == nil && p.Raw != c.raw {
			t.Errorf("%q: Raw changed to %q; the encoded form must be forwarded unchanged", c.raw, p.Raw)
		}
	}
}

func TestMethod(t *testing.T) {
	for _, m := range []string{"GET", "POST", "DELETE", "PROPFIND", "M-SEARCH", "X_CUSTOM", "BREW1"} {
		if err := Method(m); err != nil {
			t.Errorf("Method(%q) = %v, want ok", m, err)
		}
	}
	for _, m := range []string{"", "get", "Delete", "dELETE", "GET ", "GE T", "GET\x00", "GÉT", "GET/1", "G(T"} {
		if err := Method(m); !errors.Is(err, ErrMethod) {
			t.Errorf("Method(%q) = %v, want ErrMethod", m, err)
		}
	}
}

func TestAuthority(t *testing.T) {
	ok := []struct{ in, host, port string }{
		{"api.example.com:443", "api.example.com", "443"},
		{"API.Example.COM.:443", "api.example.com", "443"},
		{"10.0.0.1:8443", "10.0.0.1", "8443"},
		{"[::1]:443", "::1", "443"},
		{"[2001:db8::1]:65535", "2001:db8::1", "65535"},
	}
	for _, c := range ok {
		h, p, err := Authority(c.in)
		if err != nil || h != c.host || p != c.port {
			t.Errorf("Authority(%q) = %q, %q, %v; want %q, %q", c.in, h, p, err, c.host, c.port)
		}
	}
	bad := []struct{ in, want string }{
		{"", "empty"},
		{"user@api.example.com:443", "userinfo"},
		{"user:pass@api.example.com:443", "userinfo"},
		{"@api.example.com:443", "userinfo"},
		{"api.example.com", "no port"},
		{"api.example.com:", "no valid port"},
		{"api.example.com:0", "1-65535"},
		{"api.example.com:65536", "1-65535"},
		{"api.example.com:99999", "1-65535"},
		{"api.example.com:443x", "no valid port"},
		{"api.example.com:+443", "no valid port"},
		{"api.example.com:123456", "no valid port"},
		{"http://api.example.com:443", "'/'"},
		{"api.example.com:443/path", "'/'"},
		{"api.example.com:443?x", "'?'"},
		{"api.example.com:443#x", "'#'"},
		{"api.example.com\\:443", "'\\\\'"},
		{"::1:443", "brackets"},
		{"[::1]443", "[ipv6]:port"},
		{"[::1]", "[ipv6]:port"},
		{"[1.2.3.4]:443", "only for IPv6"},
		{":443", "no host"},
	}
	for _, c := range bad {
		_, _, err := Authority(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Authority(%q) = %v, want an error mentioning %q", c.in, err, c.want)
		}
	}
}

// FuzzParsePath checks the properties the gateway relies on for every
// path it accepts: one decoding gives the form the policy matched and a
// second decoding changes nothing; the decoded path is already clean by
// RFC 3986 dot-segment removal and by slash merging; no backslash, ';' or
// control character survives.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/", "/v1/charges", "/v1/%2e%2e/x", "/a//b", "/a%2Fb", "/%252F", "/a;b", "/a\\b",
		"/%C0%AF", "/v1/%61dmin", "/v1/caf%C3%A9/", "/v1/%25", "/v1/%EF%BC%8E%EF%BC%8E/x", "/v1/%25u002e", "/v1/x%3Fy", "/v1/x%23",
		"/v1/.%EF%BC%8E/x", "/v1/%E2%80%A6/x", "/v1/%EF%BD%81dmin", "/v1/%EF%BC%88%EF%BC%91%EF%BC%89"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := ParsePath(raw)
		if err != nil {
			var pe *PathError
			if !errors.As(err, &pe) {
				t.Fatalf("ParsePath(%q) error %v is not a *PathError", raw, err)
			}
			return
		}
		d := p.Decoded
		if raw != "" {
			u, err := url.PathUnescape(raw)
			if err != nil || u != d {
				t.Fatalf("ParsePath(%q).Decoded = %q; url.PathUnescape = %q, %v", raw, d, u, err)
			}
		}
		if again, err := url.PathUnescape(d); err == nil && again != d {
			t.Fatalf("ParsePath(%q): decoding %q again gives %q (double encoding accepted)", raw, d, again)
		}
		if !strings.HasPrefix(d, "/") || strings.Contains(d, "//") && !strings.HasSuffix(d, "/") {
			t.Fatalf("ParsePath(%q): decoded %q is not absolute or has an empty segment", raw, d)
		}
		clean := path.Clean(d)
		if strings.HasSuffix(d, "/") && d != "/" {
			clean += "/"
		}
		if clean != d {
			t.Fatalf("ParsePath(%q): decoded %q, but path.Clean gives %q", raw, d, clean)
		}
		for _, r := range d {
			if r >= utf8.RuneSelf && unicode.In(r, unicode.Cf, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point) {
				t.Fatalf("ParsePath(%q): decoded %q has %U, default-ignorable", raw, d, r)
			}
		}
		// The path a server normalizing with NFKC reads has the same
		// segments, none of them a dot segment, and no delimiter more.
		n := norm.NFKC.String(d)
		if strings.Count(n, "/") != strings.Count(d, "/") || strings.ContainsAny(n, "\\;") ||
			strings.Count(n, "%") != strings.Count(d, "%") || strings.Count(n, "?") != strings.Count(d, "?") ||
			strings.Count(n, "#") != strings.Count(d, "#") {
			t.Fatalf("ParsePath(%q): decoded %q reads as %q under NFKC (a delimiter more)", raw, d, n)
		}
		for seg := range strings.SplitSeq(n, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("ParsePath(%q): decoded %q reads as %q under NFKC (a dot segment)", raw, d, n)
			}
		}
		if strings.ContainsAny(d, "\\;") || !utf8.ValidString(d) {
			t.Fatalf("ParsePath(%q): decoded %q has '\\', ';' or invalid UTF-8", raw, d)
		}
		if strings.ContainsAny(d, "?#") != p.EncodedDelimiter || p.CheckEncodedDelimiter(false) == nil && p.EncodedDelimiter {
			t.Fatalf("ParsePath(%q): decoded %q, EncodedDelimiter %v: a '?' or '#' must be reported, and refused by default", raw, d, p.EncodedDelimiter)
		}
		for _, r := range d {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("ParsePath(%q): decoded %q has a control character", raw, d)
			}
		}
		if !p.EncodedSlash && strings.Count(d, "/") != strings.Count(raw, "/") && raw != "" {
			t.Fatalf("ParsePath(%q): segments changed without an encoded slash", raw)
		}
	})
}

// FuzzAuthority checks that an accepted CONNECT target is exactly
// host:port, so that the destination judged is the one dialled.
func FuzzAuthority(f *testing.F) {
	for _, s := range []string{"api.example.com:443", "[::1]:443", "user@h:443", "h:0443", "h:443/x", "[::1", "a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		h, p, err := Authority(in)
		if err != nil {
			return
		}
		if strings.ContainsAny(h, "@/?#\\[] \t") || h == "" {
			t.Fatalf("Authority(%q) accepted host %q", in, h)
		}
		if strings.Contains(in, "@") {
			t.Fatalf("Authority(%q) accepted userinfo", in)
		}
		got := net.JoinHostPort(h, p)
		sent := in
		if strings.HasPrefix(sent, "[") {
			sent = strings.Replace(sent, ".]:", "]:", 1)
		} else if i := strings.LastIndexByte(sent, ':'); i > 0 && sent[i-1] == '.' {
			sent = sent[:i-1] + sent[i:]
		}
		if !strings.EqualFold(sent, got) {
			t.Fatalf("Authority(%q) = %q: not the target as sent", in, got)
		}
	})
}

// TestTargetPath: the path of each form of request target, as sent.
func TestTargetPath(t *testing.T) {
	for _, c := range []struct{ target, want string }{
		{"/v1/x", "/v1/x"},
		{"/v1/x?q=1", "/v1/x"},
		{"/v1/a%2Fb?x=/y", "/v1/a%2Fb"},
		{"/", "/"},
		{"https://api.test/v1/x?q", "/v1/x"},
		{"https://api.test", "/"},
		{"https://api.test?q=/x", "/"},
		{"http://api.test:8080/a%20b", "/a%20b"},
		{"https://api.test/v1/x#f", "/v1/x#f"},
		{"*", "*"},
		{"api.test:443", "api.test:443"},
	} {
		if got := TargetPath(c.target); got != c.want {
			t.Errorf("TargetPath(%q) = %q, want %q", c.target, got, c.want)
		}
	}
}

// Every printable ASCII byte net/url would percent-encode in a path is
// refused raw, and every other one is accepted and kept as sent: what
// ParsePath accepts is what reaches the upstream.
func TestParsePathKeepsWireBytes(t *testing.T) {
	for c := byte('!'); c < 0x7f; c++ {
		raw := "/v1/a" + string(c) + "b"
		p, err := ParsePath(raw)
		u := &url.URL{Path: p.Decoded, RawPath: p.Raw}
		switch {
		case err != nil:
			continue
		case u.EscapedPath() != raw:
			t.Errorf("ParsePath(%q) accepted it, but net/url sends %q", raw, u.EscapedPath())
		}
	}
}
