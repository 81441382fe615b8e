package gateway

import (
	"context"
	"net/netip"
	"testing"

	"github.com/credgate/credgate/identity"
)

// TestSourceOf: the audit line's source is sourceString's text for every
// address and set of factors — the source factor's subject when it is
// that text, a new string otherwise (another address, a text not in
// netip's form, no source factor) — and taking the factor's allocates
// nothing.
func TestSourceOf(t *testing.T) {
	addrs := []string{"10.1.2.3:5", "[::1]:5", "[::ffff:10.0.0.1]:5", "[fe80::1%eth0]:5", "[2001:db8::1]:443", "[fe80::1234:5678:9abc:def0%a-very-long-interface-name-0123456789]:1"}
	for _, s := range addrs {
		ev := identity.Evidence{Source: netip.MustParseAddrPort(s)}
		src, err := identity.SourceVerifier{}.Verify(context.Background(), ev)
		if err != nil || src == nil {
			t.Fatalf("Verify(%s): %v, %v", s, src, err)
		}
		other := identity.Factor{Kind: identity.KindMTLS, Subject: src.Subject}
		for _, factors := range [][]identity.Factor{
			nil,
			{*src},
			{other, *src},
			{{Kind: identity.KindSource, Subject: "10.9.9.9"}},
			{{Kind: identity.KindSource, Subject: "0:0::1"}}, // ::1, not as netip writes it
			{{Kind: identity.KindSource, Subject: "10.1.2.3 "}},
			{{Kind: identity.KindSource, Subject: "10.9.9.9"}, *src},
			{other},
		} {
			if got, want := sourceOf(factors, ev), sourceString(ev); got != want {
				t.Errorf("sourceOf(%v, %s) = %q, want %q", factors, s, got, want)
			}
		}
		if len(src.Subject) > 60 {
			continue // longer than the stack buffer: allocated
		}
		factors := []identity.Factor{other, *src}
		if n := testing.AllocsPerRun(100, func() { _ = sourceOf(factors, ev) }); n != 0 {
			t.Errorf("%s: %v allocations with the source factor, want 0", s, n)
		}
	}
	if got := sourceOf(nil, identity.Evidence{}); got != "" {
		t.Errorf("no address: %q", got)
	}
}
