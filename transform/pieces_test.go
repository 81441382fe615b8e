package transform

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/credgate/credgate/secret"
)

// TestPiecesLeavesNoPiece: for random texts made of pieces of a secret's
// forms (cut anywhere, as a parser's quoted line cuts them at a space or
// at its end) between unrelated bytes, Pieces leaves no run of
// DefaultMinLength bytes that occurs in a form, found by brute force, and
// keeps every byte that is not in such a run.
func TestPiecesLeavesNoPiece(t *testing.T) {
	const alphabet = `abcdefghijklmnopqrstuvwxyz0123456789/+=&"<> %?_-`
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		var v strings.Builder
		for range 8 + rng.IntN(40) {
			v.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		val := v.String()
		s := NewScrubber([]secret.Value{secret.New(val)}, ScrubOptions{KeepLength: true})
		fs := forms(val, DefaultMinLength)
		var text strings.Builder
		for range 1 + rng.IntN(4) {
			text.WriteString(strings.Repeat("x", rng.IntN(5)) + " malformed \"")
			f := fs[rng.IntN(len(fs))]
			i := rng.IntN(len(f))
			j := i + rng.IntN(len(f)-i+1)
			text.WriteString(f[i:j])
		}
		in := text.String()
		out, _ := s.Pieces([]byte(in))
		if len(out) != len(in) {
			t.Fatalf("round %d: %q became %q: the length changed", round, in, out)
		}
		for i := range len(out) {
			for j := i + DefaultMinLength; j <= len(out); j++ {
				for _, f := range fs {
					if strings.Contains(f, string(out[i:j])) {
						t.Fatalf("round %d: secret %q: %q left %q of form %q in %q", round, val, in, out[i:j], f, out)
					}
				}
			}
		}
		// Bytes outside every run are kept.
		for i := range len(out) {
			if out[i] != in[i] && out[i] != '*' && !strings.ContainsRune(secret.Redacted, rune(out[i])) {
				t.Fatalf("round %d: byte %d changed from %q to %q", round, i, in[i], out[i])
			}
		}
	}
}

func TestPieces(t *testing.T) {
	const v = `sk_live/Ab+Cd=Ef&"Gh"<Ij>%Kl Mn?`
	s := NewScrubber([]secret.Value{secret.New(v)}, ScrubOptions{KeepLength: true})
	r := func(piece string) string { return sameLength(secret.Redacted, len(piece)) }
	for _, tc := range []struct{ in, want string }{
		// Go's %q of the whole value (its '"' escaped as JSON does).
		{`malformed HTTP response "Bearer sk_live/Ab+Cd=Ef&\"Gh\"<Ij>%Kl Mn?"`, `malformed HTTP response "Bearer ` + r(`sk_live/Ab+Cd=Ef&\"Gh\"<Ij>%Kl Mn?`) + `"`},
		// Cut at the space.
		{`malformed HTTP status code "Bearersk_live/Ab+Cd=Ef&\"Gh\"<Ij>%Kl"`, `malformed HTTP status code "Bearer` + r(`sk_live/Ab+Cd=Ef&\"Gh\"<Ij>%Kl`) + `"`},
		// A piece from the middle.
		{`bad Content-Length "Ef&\"Gh\"<Ij>"`, `bad Content-Length "` + r(`Ef&\"Gh\"<Ij>`) + `"`},
		// Shorter than the minimum: kept.
		{`short "sk_live" kept; unrelated text kept`, `short "sk_live" kept; unrelated text kept`},
		// A piece of the base64 form.
		{`base64 c2tfbGl2ZS9BYitDZD1FZiYiR2gi`, `base64 ` + r(`c2tfbGl2ZS9BYitDZD1FZiYiR2gi`)},
	} {
		got, _ := s.Pieces([]byte(tc.in))
		if string(got) != tc.want {
			t.Errorf("Pieces(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
	long := strings.Repeat("a", 2*MaxPiecesText)
	if got, _ := s.Pieces([]byte(long)); len(got) != MaxPiecesText {
		t.Errorf("a text of %d bytes came out %d long, want %d", len(long), len(got), MaxPiecesText)
	}
}

// TestCombine: a combined Scrubber redacts the secrets of each of its
// parts, in every form; with no parts it redacts nothing.
func TestCombine(t *testing.T) {
	a := NewScrubber([]secret.Value{secret.New("first-secret-value")}, ScrubOptions{KeepLength: true})
	b := NewScrubber([]secret.Value{secret.New("second/secret+value")}, ScrubOptions{KeepLength: true})
	in := "x first-secret-value y second%2Fsecret%2Bvalue z c2Vjb25kL3NlY3JldCt2YWx1ZQ=="
	got, n := Combine(a, nil, b).Bytes([]byte(in))
	if n != 3 || strings.Contains(string(got), "secret") || strings.Contains(string(got), "c2Vjb25kL3NlY3JldCt2YWx1ZQ") || len(got) != len(in) {
		t.Errorf("Combine(a, b) made %q of %q (%d redactions), want all three forms redacted in place", got, in, n)
	}
	if got, n := Combine().Bytes([]byte(in)); n != 0 || string(got) != in {
		t.Errorf("Combine() changed %q to %q", in, got)
	}
}

// TestLayer: base then Layer(base, ss...) redact what Combine(base, ss...)
// redacts in one pass, whatever the texts hold of their forms — also when
// a new secret holds an old one (base would redact the inside of the new
// one's form first) or an old one holds a new one. The texts are the
// forms of every secret, in every order, apart or side by side.
func TestLayer(t *testing.T) {
	opts := ScrubOptions{KeepLength: true}
	olds := []string{"old-secret-ABCDEFGH", "plain+old/value=42", "0123456789abcdef"}
	news := []string{"new-prefix-old-secret-ABCDEFGH-suffix", "ABCDEFGH", "xx0123456789abcdefyy", "fresh/new+value"}
	var oldS, newS []*Scrubber
	var all []string
	for _, v := range olds {
		oldS = append(oldS, NewScrubber([]secret.Value{secret.New(v)}, opts))
		all = append(all, forms(v, DefaultMinLength)...)
	}
	for _, v := range news {
		newS = append(newS, NewScrubber([]secret.Value{secret.New(v)}, opts))
		all = append(all, forms(v, DefaultMinLength)...)
	}
	base := Combine(oldS...)
	layer := Layer(base, newS...)
	want := Combine(append(append([]*Scrubber{}, oldS...), newS...)...)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		var b strings.Builder
		for range 1 + rng.IntN(6) {
			b.WriteString(all[rng.IntN(len(all))])
			if rng.IntN(2) == 0 {
				b.WriteString(" ")
			}
		}
		in := b.String()
		mid, _ := base.Bytes([]byte(in))
		got, _ := layer.Bytes(mid)
		exp, _ := want.Bytes([]byte(in))
		if string(got) != string(exp) {
			t.Fatalf("text %d %q: base then Layer made %q, Combine %q", i, in, got, exp)
		}
	}
	if got, n := Layer(Combine(), newS[3]).Bytes([]byte("x fresh/new+value y")); n != 1 || strings.Contains(string(got), "fresh") {
		t.Errorf("Layer on an empty base made %q (%d redactions)", got, n)
	}
}

// TestLayerOptions: a layer of KeepLength Scrubbers can be held by a
// Table whatever its base — one with secrets, and the empty one (Combine
// of none) a table of every held credential starts from, and returns to
// when every credential was dropped — and redacts its secrets keeping
// lengths. Before, a layer took the empty base's options (no KeepLength),
// NewTable refused the pair, and the gateway published a table no
// streaming body could follow: a credential injected while a long
// WebSocket payload streamed was passed on in the clear
// (gateway TestWebSocketLongPayloadScrubsCredentialInjectedLater).
func TestLayerOptions(t *testing.T) {
	keep := func(vs ...string) *Scrubber {
		var ss []secret.Value
		for _, v := range vs {
			ss = append(ss, secret.New(v))
		}
		return NewScrubber(ss, ScrubOptions{KeepLength: true})
	}
	for name, base := range map[string]*Scrubber{
		"empty (Combine of none)": Combine(),
		"empty Combine of one":    Combine(keep()),
		"with secrets":            Combine(keep("base-secret-value-1")),
	} {
		t.Run(name, func(t *testing.T) {
			for _, ss := range [][]*Scrubber{{keep("later-secret-value-2")}, {nil, keep("later-secret-value-2"), keep("another-secret-value-3")}} {
				tbl, err := NewTable(base, Layer(base, ss...))
				if err != nil {
					t.Fatalf("NewTable(base, Layer(base, ...)): %v", err)
				}
				in := []byte("x later-secret-value-2 y")
				out, n := tbl.Bytes(append([]byte(nil), in...))
				if n != 1 || len(out) != len(in) || bytes.Contains(out, []byte("later-secret")) {
					t.Fatalf("%q (%d redactions), want the secret redacted, length kept", out, n)
				}
			}
		})
	}
}
