package transform

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
)

// forms returns the spellings of v an upstream may echo: the raw value;
// base64 and base64url, padded and unpadded, at each of the three byte
// alignments (a secret inside a longer encoded string, as in
// base64("user:secret") of a Basic header, shows only its middle
// characters, which depend on the secret alone); the URL encodings of
// QueryEscape and PathEscape with upper- and lower-case hex; and the JSON
// string escapes with and without HTML escaping and with `\/`. Forms
// shorter than minLen are dropped: they would redact unrelated bytes.
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
	return out
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
