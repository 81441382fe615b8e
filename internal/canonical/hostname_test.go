package canonical

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// TestHostName: the names the CONNECT parser and the leaf issuer accept,
// and those both refuse.
func TestHostName(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	long := strings.Repeat(label63+".", 4)[:254]
	for _, c := range []struct {
		h  string
		ok bool
	}{
		{"api.example.com", true},
		{"localhost", true},
		{"a", true},
		{"x_y.example", true},
		{"xn--bcher-kva.example", true},
		{"a-b.example", true},
		{"1.2.3.4.example", true},
		{label63 + ".example", true},
		{long[:253], true}, // 253 bytes, the most
		{strings.TrimSuffix(strings.Repeat("ab.", 84), "."), true},
		{"", false},
		{long, false},
		{label63 + "a.example", false},
		{"-a.example", false},
		{"a-.example", false},
		{"a..example", false},
		{".example", false},
		{"example.", false},
		{"*.example.com", false},
		{"*", false},
		{"Upper.example", false},
		{"bücher.example", false},
		{"a b.example", false},
		{"a:b", false},
		{"a/b", false},
		{"a%2eb", false},
		// Ends in a number: an IPv4 address to clients, a name to DNS.
		{"127.1", false},
		{"2130706433", false},
		{"0x7f.1", false},
		{"0x7f000001", false},
		{"0177.0.0.1", false},
		{"127.0.0.01", false},
		{"1.2.3.4.5", false},
		{"example.0x", false},
		{"example.123", false},
		{"1e100.net", true},
		{"example.0xg", true},
		{"0x7f.example", true},
		{"123.example", true},
		// xn-- labels must be IDNA's own.
		{"xn--mnchen-3ya.example", true},
		{"xn--i-7iq.ws", true},
		{"xn--fa-hia.example", true},
		{"xn--mi7cqau.example", false}, // fullwidth "ａｐｉ": IDNA reads api
		{"xn--abc-.example", false},    // "abc"
		{"xn--.example", false},
		{"xn--zz.example", false},
		{"xn--a.example", false},
		{"r3---sn-abc.example", true}, // "--" elsewhere is ordinary
	} {
		if got := HostName(c.h); got != c.ok {
			t.Errorf("HostName(%q) = %v, want %v", c.h, got, c.ok)
		}
	}
}

// inetAton is BSD inet_aton, the reading of glibc's and macOS's
// resolvers (and of curl, and of browsers through the WHATWG URL
// parser, for the inputs here): one to four parts, each decimal, octal
// with a leading 0 or hex with 0x, the last filling the remaining bytes.
func inetAton(h string) (netip.Addr, bool) {
	parts := strings.Split(h, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		base, digits := 10, p
		switch {
		case strings.HasPrefix(p, "0x"):
			base, digits = 16, p[2:]
			if digits == "" {
				digits = "0"
			}
		case len(p) > 1 && p[0] == '0':
			base, digits = 8, p[1:]
		}
		v, err := strconv.ParseUint(digits, base, 32)
		if p == "" || err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 255 {
			return netip.Addr{}, false
		}
		n |= v << (24 - 8*i)
	}
	last := vals[len(vals)-1]
	if last >= 1<<(32-8*(len(vals)-1)) {
		return netip.Addr{}, false
	}
	n |= last
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// TestHostNeverAnAddress is the class of "a host the gateway matches and
// looks up as a name that a client, a C resolver or a browser reads as an
// IPv4 address": every host of up to 7 bytes over digits, '.', 'x' and
// hex letters that inet_aton reads as an address is refused by
// CheckHost (ErrHostNumeric), unless it is the canonical dotted-decimal
// form, which the gateway's callers parse as an IP literal before they
// ask CheckHost. Before, 127.1, 0x7f.1, 2130706433 and 0177.0.0.1 were
// host names: a policy could list them and DNS was asked for them (47,600
// of the 47,856 hosts passed HostName; the rest are canonical addresses).
func TestHostNeverAnAddress(t *testing.T) {
	const alphabet = "0179.xaf"
	checked, accepted, numeric := 0, 0, 0
	var rec func(b []byte)
	rec = func(b []byte) {
		if len(b) > 0 {
			h := string(b)
			if a, ok := inetAton(h); ok {
				checked++
				canon, err := netip.ParseAddr(h)
				err2 := CheckHost(h)
				switch {
				case err == nil && canon == a:
					// An IP literal to every reader.
				case err2 == nil:
					t.Errorf("CheckHost(%q) accepts a host inet_aton reads as %s", h, a)
				case errors.Is(err2, ErrHostNumeric):
					numeric++
				case !errors.Is(err2, ErrHostSyntax):
					t.Errorf("CheckHost(%q) = %v, want ErrHostNumeric", h, err2)
				}
			} else if CheckHost(h) == nil {
				accepted++
			}
		}
		if len(b) == 7 {
			return
		}
		for i := 0; i < len(alphabet); i++ {
			rec(append(b, alphabet[i]))
		}
	}
	rec(make([]byte, 0, 7))
	if checked < 10000 || accepted == 0 {
		t.Fatalf("checked %d addresses and accepted %d names: the generator is broken", checked, accepted)
	}
	t.Logf("%d hosts inet_aton reads as an address, %d refused as ending in a number", checked, numeric)
}

// TestALabelsAreIDNAs is the class of "an xn-- label that IDNA reads as
// another name than DNS does": for each of a label's runes — every
// assigned code point from U+0080 to U+FFFF, and the fullwidth and
// upper-case forms of ASCII — the Punycode label of "a"+rune+"b" is
// accepted by CheckHost exactly when IDNA lookup (UTS #46) turns the
// Unicode label into that same xn-- label, and every host CheckHost
// accepts is unchanged by IDNA's ToUnicode and back. Before, every xn--
// label of letters and digits was a host name: xn--mi7cqau (fullwidth
// "ａｐｉ", which IDNA reads as api) matched "*.example.com" as a name of
// its own.
func TestALabelsAreIDNAs(t *testing.T) {
	refused, total := 0, 0
	for r := rune(0x80); r <= 0xFFFF; r++ {
		if !unicode.Is(unicode.L, r) && !unicode.Is(unicode.N, r) && !unicode.Is(unicode.M, r) && !unicode.Is(unicode.S, r) {
			continue
		}
		if !utf8.ValidRune(r) {
			continue
		}
		u := "a" + string(r) + "b"
		enc, err := idna.Punycode.ToASCII(u)
		if err != nil || !strings.HasPrefix(enc, "xn--") {
			continue
		}
		l := strings.ToLower(enc)
		if l != enc {
			continue // Punycode of a label with upper-case ASCII: see below
		}
		total++
		h := l + ".example"
		want, werr := idna.Lookup.ToASCII(u)
		ok := werr == nil && want == l
		err = CheckHost(h)
		if (err == nil) != ok {
			t.Errorf("U+%04X: CheckHost(%q) = %v, IDNA makes %q (%v)", r, h, err, want, werr)
		}
		if err != nil {
			refused++
			if !errors.Is(err, ErrHostALabel) {
				t.Errorf("U+%04X: CheckHost(%q) = %v, want ErrHostALabel", r, h, err)
			}
			continue
		}
		back, err := idna.Lookup.ToUnicode(h)
		if again, err2 := idna.Lookup.ToASCII(back); err != nil || err2 != nil || again != h {
			t.Errorf("U+%04X: %q accepted but IDNA reads it as %q (%v, %v)", r, h, again, err, err2)
		}
	}
	// Fullwidth letters, which IDNA maps to a-z.
	for c := rune(0); c < 26; c++ {
		for _, u := range []string{string('Ａ'+c) + "pi", string('ａ'+c) + "pi", "ü" + string('ａ'+c)} {
			enc, err := idna.Punycode.ToASCII(u)
			if err != nil {
				t.Fatal(err)
			}
			if a, err := idna.Lookup.ToASCII(u); err == nil && a == enc {
				t.Fatalf("IDNA keeps %q as %q: not a mapped label", u, a)
			}
			total++
			if err := CheckHost(enc + ".example"); !errors.Is(err, ErrHostALabel) {
				t.Errorf("%q (%q): CheckHost = %v, want ErrHostALabel", enc, u, err)
			} else {
				refused++
			}
		}
	}
	if total < 40000 || refused == 0 {
		t.Fatalf("%d labels, %d refused: the generator is broken", total, refused)
	}
	t.Logf("%d labels checked, %d refused", total, refused)
}
