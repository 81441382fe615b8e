package transform

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/credgate/credgate/secret"
)

// TestScrubBase64AnyAlignment: a secret inside a longer base64 string —
// any prefix and suffix of 0 to 5 bytes around it (a Basic header's
// "user:" or a trailing ":"), standard and URL alphabets, padded or not,
// secrets of every length modulo 3 — never leaves the scrubber with the
// characters that encode the secret's bytes alone. Those characters are
// computed here from the whole string's encoding, not by the scrubber's
// own code.
func TestScrubBase64AnyAlignment(t *testing.T) {
	for _, v := range []string{"sk_live_0123456789abcdefX", "sk_live_0123456789abcdefXY", "sk_live_0123456789abcdefXYZ"} {
		s := NewScrubber([]secret.Value{secret.New(v)}, ScrubOptions{KeepLength: true})
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			for pre := range 6 {
				for suf := range 6 {
					data := strings.Repeat("u", pre) + v + strings.Repeat("z", suf)
					text := enc.EncodeToString([]byte(data))
					// Characters [lo, hi) hold bits of the secret alone.
					lo, hi := (8*pre+5)/6, (8*(pre+len(v)))/6
					core := text[lo:hi]
					out, _ := s.Bytes([]byte(text))
					if strings.Contains(string(out), core) {
						t.Errorf("%d-byte secret after %d bytes, before %d (%s): %q still holds %q", len(v), pre, suf, encName(enc), out, core)
					}
				}
			}
		}
	}
}

func encName(e *base64.Encoding) string {
	switch e {
	case base64.StdEncoding:
		return "std"
	case base64.RawStdEncoding:
		return "std raw"
	case base64.URLEncoding:
		return "url"
	}
	return "url raw"
}
