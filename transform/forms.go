package transform

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf16"
)

// forms returns the spellings of v an upstream may echo: the raw value;
// base64 and base64url, padded and unpadded, at each of the three byte
// alignments (a secret inside a longer encoded string, as in
// base64("user:secret") of a Basic header, shows only its middle
// characters, which depend on the secret alone); the URL encodings of
// QueryEscape and PathEscape with upper- and lower-case hex; and the JSON
// string escapes with and without HTML escaping and with `\/`; and the
// spellings of the other encoders an upstream's framework may echo it
// with (echoEncoders). Forms shorter than minLen are dropped: they would
// redact unrelated bytes.
func forms(v string, minLen int) []string {
	var out []string
	seen := map[string]bool{}
	add := func(f string) {
		if len(f) >= minLen && !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	add(v)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		add(enc.EncodeToString([]byte(v)))
		add(enc.WithPadding(base64.NoPadding).EncodeToString([]byte(v)))
		// Inside a longer base64 string, at each of the three byte
		// alignments: at 0 the value starts the string but more bytes
		// follow it, so the full encoding's last character differs.
		for k := range 3 {
			add(aligned(enc, v, k))
		}
	}
	for _, e := range []string{url.QueryEscape(v), url.PathEscape(v)} {
		add(e)
		add(lowerHex(e))
	}
	for _, html := range []bool{true, false} {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(html)
		if err := enc.Encode(v); err == nil {
			s := strings.TrimSuffix(b.String(), "\n")
			s = s[1 : len(s)-1]
			add(s)
			add(strings.ReplaceAll(s, "/", `\/`))
		}
	}
	for _, e := range echoEncoders {
		add(e.encode(v))
	}
	return out
}

// echoEncoder is how one library or framework spells a string in a URL,
// a JSON string or HTML: what an upstream echoing a secret in an error
// page, a JSON answer or a link writes. Each escapes another set of
// characters, in another notation, so the same secret has a spelling per
// encoder once it holds a character outside letters and digits.
type echoEncoder struct {
	name   string
	encode func(string) string
}

// echoEncoders are the encoders whose spellings of a secret are scrubbed
// besides Go's own (QueryEscape, PathEscape, encoding/json).
var echoEncoders = []echoEncoder{
	// Percent-encodings: which bytes stay as they are, what a space
	// becomes, upper- or lower-case hex.
	{"js encodeURIComponent", percent("-_.!~*'()", "%20", false)},
	{"js encodeURIComponent lower", percent("-_.!~*'()", "%20", true)},
	{"python quote", percent("-_.~/", "%20", false)},
	{"python quote lower", percent("-_.~/", "%20", true)},
	{"python quote_plus, urlencode", percent("-_.~", "+", false)},
	{"java URLEncoder, php urlencode", percent("-_.*", "+", false)},
	{"php rawurlencode, rfc 3986", percent("-_.~", "%20", false)},
	{"every byte but letters and digits", percent("", "%20", false)},
	{"every byte but letters and digits lower", percent("", "%20", true)},
	// JSON strings.
	{".NET System.Text.Json", jsonEscape(func(r rune) bool { return strings.ContainsRune("\"&'+<>`", r) || r > 0x7e }, false)},
	{"python json, ensure_ascii", jsonEscape(func(r rune) bool { return r > 0x7e }, true)},
	{"php json_encode", func(v string) string {
		return strings.ReplaceAll(jsonEscape(func(r rune) bool { return r > 0x7e }, true)(v), "/", `\/`)
	}},
	{"every character but letters and digits \\u", jsonEscape(func(r rune) bool { return !alnum(r) }, false)},
	{"every character but letters and digits \\u lower", jsonEscape(func(r rune) bool { return !alnum(r) }, true)},
	// Hex of the bytes: Go's %x and %X, hex.EncodeToString, Python's
	// bytes.hex(), a hexdump's digits; what an upstream's debugging
	// output or an error naming the bytes it got writes.
	{"hex", func(v string) string { return hex.EncodeToString([]byte(v)) }},
	{"hex upper", func(v string) string { return strings.ToUpper(hex.EncodeToString([]byte(v))) }},
	// HTML text and attributes.
	{"go html.EscapeString", strings.NewReplacer("&", "&amp;", "'", "&#39;", "<", "&lt;", ">", "&gt;", `"`, "&#34;").Replace},
	{"go html/template", strings.NewReplacer("&", "&amp;", "'", "&#39;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "+", "&#43;").Replace},
	{"python html.escape", strings.NewReplacer("&", "&amp;", "'", "&#x27;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace},
	{"php htmlspecialchars", strings.NewReplacer("&", "&amp;", "'", "&#039;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace},
	{"every character but letters and digits &#N;", htmlNumeric("&#%d;")},
	{"every character but letters and digits &#xH;", htmlNumeric("&#x%X;")},
	{"every character but letters and digits &#xh;", htmlNumeric("&#x%x;")},
}

func alnum(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
}

// percent returns a percent-encoder keeping letters, digits and the
// bytes of keep, writing a space as space.
func percent(keep, space string, lower bool) func(string) string {
	hex := "0123456789ABCDEF"
	if lower {
		hex = "0123456789abcdef"
	}
	return func(v string) string {
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			c := v[i]
			switch {
			case c < 0x80 && (alnum(rune(c)) || strings.IndexByte(keep, c) >= 0):
				b.WriteByte(c)
			case c == ' ':
				b.WriteString(space)
			default:
				b.WriteByte('%')
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&15])
			}
		}
		return b.String()
	}
}

// jsonEscape returns a JSON string encoder (without the quotes) writing
// the characters esc selects, and control characters, as \uXXXX (UTF-16
// surrogate pairs beyond the BMP), '"' and '\\' otherwise as \" and \\.
func jsonEscape(esc func(rune) bool, lower bool) func(string) string {
	format := "\\u%04X"
	if lower {
		format = "\\u%04x"
	}
	return func(v string) string {
		var b strings.Builder
		for _, r := range v {
			switch {
			case esc(r) || r < 0x20:
				if r > 0xffff {
					r1, r2 := utf16.EncodeRune(r)
					fmt.Fprintf(&b, format+format, r1, r2)
				} else {
					fmt.Fprintf(&b, format, r)
				}
			case r == '"' || r == '\\':
				b.WriteByte('\\')
				b.WriteRune(r)
			default:
				b.WriteRune(r)
			}
		}
		return b.String()
	}
}

// htmlNumeric returns an encoder writing every character but letters and
// digits as a numeric character reference in format.
func htmlNumeric(format string) func(string) string {
	return func(v string) string {
		var b strings.Builder
		for _, r := range v {
			if alnum(r) {
				b.WriteRune(r)
			} else {
				fmt.Fprintf(&b, format, r)
			}
		}
		return b.String()
	}
}

// aligned returns the base64 characters of v that depend on v alone when
// v starts k bytes into the encoded data.
func aligned(enc *base64.Encoding, v string, k int) string {
	n := len(v)
	full := enc.WithPadding(base64.NoPadding).EncodeToString(append(make([]byte, k), v...))
	// Character i holds bits [6i, 6i+6); v's bits are [8k, 8(k+n)).
	lo := (8*k + 5) / 6
	hi := (8 * (k + n)) / 6
	if hi <= lo || hi > len(full) {
		return ""
	}
	return full[lo:hi]
}

// lowerHex lower-cases the hex digits of every %XX escape in s.
func lowerHex(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1] = lowerByte(b[i+1])
			b[i+2] = lowerByte(b[i+2])
			i += 2
		}
	}
	return string(b)
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}
