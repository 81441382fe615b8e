package identity_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/credgate/credgate/identity"
)

// TestSourceText: the source factor is the address as text, whatever
// Evidence.SourceText says: the caller's text is taken only when it is
// exactly that text, so a wrong, stale or differently written one never
// names another source. Through Verify and through Resolve, for IPv4,
// IPv6, IPv4-mapped and zoned addresses and no address, against every
// kind of SourceText.
func TestSourceText(t *testing.T) {
	addrs := []string{"", "10.1.2.3:40000", "[2001:db8::1]:443", "[::ffff:10.1.2.3]:1", "[fe80::1%eth0]:80", "[::1]:9"}
	texts := []string{"", "10.1.2.3", "2001:db8::1", "::ffff:10.1.2.3", "fe80::1%eth0", "::1", "10.1.2.4", "10.1.2.3:40000", "2001:DB8::1", " 10.1.2.3", "x"}
	r := identity.NewResolver()
	for _, addr := range addrs {
		var ev identity.Evidence
		if addr != "" {
			ev.Source = netip.MustParseAddrPort(addr)
		}
		var want []identity.Factor
		if ev.Source.IsValid() {
			want = []identity.Factor{{Kind: identity.KindSource, Subject: ev.Source.Addr().Unmap().String()}}
		}
		for _, text := range texts {
			ev.SourceText = text
			f, err := identity.SourceVerifier{}.Verify(t.Context(), ev)
			var got []identity.Factor
			if f != nil {
				got = []identity.Factor{*f}
			}
			if err != nil || !cmp.Equal(want, got) {
				t.Errorf("Verify(%q, text %q) = %v, %v; want %v", addr, text, got, err, want)
			}
			w, err := r.Resolve(t.Context(), ev, nil)
			if err != nil || !cmp.Equal(want, w.Factors, cmpopts.EquateEmpty()) {
				t.Errorf("Resolve(%q, text %q) factors = %v, %v; want %v", addr, text, w.Factors, err, want)
			}
		}
	}
}

// TestResolveSourceAllocs: with the connection's SourceText, resolving
// the source factor alone allocates only the workload's factor slice.
func TestResolveSourceAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	r := identity.NewResolver()
	ap := netip.MustParseAddrPort("10.1.2.3:40000")
	ev := identity.Evidence{Source: ap, SourceText: ap.Addr().String()}
	ctx := t.Context()
	if n := testing.AllocsPerRun(100, func() { _, _ = r.Resolve(ctx, ev, nil) }); n != 1 {
		t.Errorf("Resolve: %v allocations, want 1 (the factor slice)", n)
	}
}
