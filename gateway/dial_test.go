package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"math/big"
	"net/netip"
	"strings"
	"testing"
)

// prefixAddrs returns the first, a middle and the last address of p.
func prefixAddrs(p netip.Prefix) []netip.Addr {
	first := p.Masked().Addr()
	host := first.BitLen() - p.Bits()
	n := new(big.Int).SetBytes(first.AsSlice())
	at := func(off *big.Int) netip.Addr {
		v := new(big.Int).Add(n, off).FillBytes(make([]byte, first.BitLen()/8))
		a, _ := netip.AddrFromSlice(v)
		return a
	}
	if host == 0 {
		return []netip.Addr{first}
	}
	mid := new(big.Int).Lsh(big.NewInt(1), uint(host-1))
	last := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(host)), big.NewInt(1))
	return []netip.Addr{first, at(mid), at(last)}
}

// TestSpecialRanges checks every entry of the IANA IPv4 and IPv6
// Special-Purpose Address Registries (as of 2026), the blocks outside them
// that are refused, and the metadata addresses: the first, a middle and
// the last address of each is restricted, and the middle one is reported
// as that entry (or one inside it). The list is written out here, apart
// from the table in dial.go, so that an entry dropped there fails here.
func TestSpecialRanges(t *testing.T) {
	registry := []struct{ prefix, name string }{
		// IPv4 Special-Purpose Address Registry.
		{"0.0.0.0/8", "This network"},
		{"0.0.0.0/32", "This host on this network"},
		{"10.0.0.0/8", "Private-Use"},
		{"100.64.0.0/10", "Shared Address Space"},
		{"127.0.0.0/8", "Loopback"},
		{"169.254.0.0/16", "Link Local"},
		{"172.16.0.0/12", "Private-Use"},
		{"192.0.0.0/24", "IETF Protocol Assignments"},
		{"192.0.0.0/29", "IPv4 Service Continuity Prefix"},
		{"192.0.0.8/32", "IPv4 dummy address"},
		{"192.0.0.9/32", "Port Control Protocol Anycast"},
		{"192.0.0.10/32", "Traversal Using Relays around NAT Anycast"},
		{"192.0.0.170/32", "NAT64/DNS64 Discovery"},
		{"192.0.0.171/32", "NAT64/DNS64 Discovery"},
		{"192.0.2.0/24", "Documentation (TEST-NET-1)"},
		{"192.31.196.0/24", "AS112-v4"},
		{"192.52.193.0/24", "AMT"},
		{"192.88.99.0/24", "Deprecated (6to4 Relay Anycast)"},
		{"192.88.99.2/32", "6a44-relay anycast address"},
		{"192.168.0.0/16", "Private-Use"},
		{"192.175.48.0/24", "Direct Delegation AS112 Service"},
		{"198.18.0.0/15", "Benchmarking"},
		{"198.51.100.0/24", "Documentation (TEST-NET-2)"},
		{"203.0.113.0/24", "Documentation (TEST-NET-3)"},
		{"240.0.0.0/4", "Reserved"},
		{"255.255.255.255/32", "Limited Broadcast"},
		{"224.0.0.0/4", "Multicast"},
		// IPv6 Special-Purpose Address Registry.
		{"::1/128", "Loopback Address"},
		{"::/128", "Unspecified Address"},
		{"64:ff9b:1::/48", "IPv4-IPv6 Translat. (local-use)"},
		{"100::/64", "Discard-Only Address Block"},
		{"100:0:0:1::/64", "Dummy IPv6 Prefix"},
		{"2001::/23", "IETF Protocol Assignments"},
		{"2001::/32", "TEREDO"},
		{"2001:1::1/128", "Port Control Protocol Anycast"},
		{"2001:1::2/128", "Traversal Using Relays around NAT Anycast"},
		{"2001:1::3/128", "DNS-SD Service Registration Protocol Anycast"},
		{"2001:2::/48", "Benchmarking"},
		{"2001:3::/32", "AMT"},
		{"2001:4:112::/48", "AS112-v6"},
		{"2001:10::/28", "Deprecated (previously ORCHID)"},
		{"2001:20::/28", "ORCHIDv2"},
		{"2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix"},
		{"2001:db8::/32", "Documentation"},
		{"2002::/16", "6to4"},
		{"2620:4f:8000::/48", "Direct Delegation AS112 Service"},
		{"3fff::/20", "Documentation"},
		{"5f00::/16", "Segment Routing (SRv6) SIDs"},
		{"fc00::/7", "Unique-Local"},
		{"fe80::/10", "Link-Local Unicast"},
		// IPv6 outside the registry.
		{"::/96", "IPv4-compatible Address (deprecated)"},
		{"::ffff:0:0:0/96", "IPv4-translated Address"},
		{"fec0::/10", "Site-Local (deprecated)"},
		{"ff00::/8", "Multicast"},
		{"::/3", "Not global unicast (outside 2000::/3)"},
		{"4000::/2", "Not global unicast (outside 2000::/3)"},
		{"8000::/1", "Not global unicast (outside 2000::/3)"},
		// Metadata and platform services.
		{"169.254.169.254/32", "Cloud metadata (AWS, GCP, Azure, Oracle, OpenStack, DigitalOcean)"},
		{"169.254.170.2/32", "Cloud metadata (AWS ECS task metadata and credentials)"},
		{"169.254.170.23/32", "Cloud metadata (AWS EKS Pod Identity)"},
		{"169.254.0.23/32", "Cloud metadata (Tencent Cloud)"},
		{"100.100.100.200/32", "Cloud metadata (Alibaba Cloud)"},
		{"168.63.129.16/32", "Cloud platform service (Azure WireServer)"},
		{"fd00:ec2::254/128", "Cloud metadata (AWS IMDS over IPv6)"},
		{"fd00:ec2::23/128", "Cloud metadata (AWS EKS Pod Identity over IPv6)"},
		{"fd20:ce::254/128", "Cloud metadata (GCP over IPv6)"},
	}
	inTest := map[netip.Prefix]bool{}
	for _, e := range registry {
		p := netip.MustParsePrefix(e.prefix)
		inTest[p] = true
		for i, a := range prefixAddrs(p) {
			r, _, ok := restriction(a)
			if !ok {
				t.Errorf("%s (in %s %s) is not restricted", a, e.name, p)
				continue
			}
			if !r.prefix.Contains(a) || r.prefix.Bits() < p.Bits() {
				t.Errorf("%s reported as %s, want %s or an entry inside it", a, r, p)
			}
			if i == 1 && r.prefix == p && r.name != e.name {
				t.Errorf("%s reported as %q, want %q", a, r.name, e.name)
			}
		}
	}
	// IPv4-mapped and NAT64 are judged by the embedded address (below).
	for _, s := range specialRanges {
		if !inTest[s.prefix] && s.prefix != pfx("::ffff:0:0/96") && s.prefix != pfx("64:ff9b::/96") {
			t.Errorf("table entry %s is not in this test", s)
		}
	}
}

// TestRestriction covers addresses that embed IPv4, zones, and public
// addresses that must stay allowed.
func TestRestriction(t *testing.T) {
	tests := []struct {
		addr string
		want string // "" = allowed; else a substring of the reason
	}{
		{"1.1.1.1", ""},
		{"8.8.8.8", ""},
		{"9.9.9.9", ""},
		{"93.184.216.34", ""},
		{"172.32.0.1", ""},
		{"100.63.255.255", ""},
		{"100.128.0.0", ""},
		{"192.0.1.0", ""},
		{"192.88.98.255", ""},
		{"192.88.100.0", ""},
		{"198.17.255.255", ""},
		{"198.20.0.0", ""},
		{"223.255.255.255", ""},
		{"168.63.129.15", ""},
		{"169.253.255.255", ""},
		{"11.0.0.0", ""},
		{"2001:4860:4860::8888", ""},
		{"2001:4860::8888", ""},
		{"2606:4700:4700::1111", ""},
		{"2a00:1450:4001:82b::200e", ""},
		{"2001:200::1", ""},
		{"2003::1", ""},
		{"2620:4f:8001::1", ""},
		{"3fff:1000::1", ""},
		{"2001:4860::8888%eth0", ""},
		// IPv4-mapped: judged as the IPv4 address.
		{"::ffff:8.8.8.8", ""},
		{"::ffff:10.0.0.1", "Private-Use 10.0.0.0/8"},
		{"::ffff:169.254.169.254", "Cloud metadata"},
		// NAT64 well-known prefix: judged by the embedded address.
		{"64:ff9b::808:808", ""},
		{"64:ff9b::a00:1", "Private-Use 10.0.0.0/8 (RFC 1918) embedded in IPv4-IPv6 Translat. 64:ff9b::/96"},
		{"64:ff9b::7f00:1", "Loopback 127.0.0.0/8"},
		{"64:ff9b::a9fe:a9fe", "Cloud metadata"},
		{"64:ff9b::a83f:8110", "Azure WireServer"},
		// Other IPv4 embeddings: refused whole.
		{"64:ff9b:1::808:808", "local-use"},
		{"2002:808:808::1", "6to4"},
		{"2002:a00:1::1", "6to4"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "TEREDO"},
		{"::8.8.8.8", "IPv4-compatible"},
		{"::ffff:0:808:808", "IPv4-translated"},
		// Zones do not hide an address.
		{"fe80::1%eth0", "Link-Local Unicast"},
		{"fd00:ec2::254%1", "AWS IMDS"},
		{"::1%lo", "Loopback"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			a := netip.MustParseAddr(tt.addr)
			r, via, ok := restriction(a)
			if tt.want == "" {
				if ok {
					t.Errorf("restricted as %s, want allowed", r)
				}
				return
			}
			if !ok {
				t.Fatalf("allowed, want restricted as %q", tt.want)
			}
			got := (&restrictedError{entry: r, via: via}).Reason()
			if !strings.Contains(got, tt.want) {
				t.Errorf("reason %q, want it to contain %q", got, tt.want)
			}
		})
	}
}

// netipSpecial is what the standard library calls not an ordinary
// internet unicast address; all of it must be restricted.
func netipSpecial(a netip.Addr) bool {
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || !a.IsGlobalUnicast()
}

// TestRestrictedCoversNetip sweeps IPv4 (first, middle and last address
// of every /16, and every /24 of 192/8) and the IPv6 prefixes the
// standard library knows: whatever netip calls special is restricted.
func TestRestrictedCoversNetip(t *testing.T) {
	check := func(a netip.Addr) {
		for _, b := range []netip.Addr{a, netip.AddrFrom16(a.As16())} {
			if netipSpecial(b) && !isRestricted(b) {
				t.Errorf("netip calls %s special, isRestricted says no", b)
			}
		}
	}
	var v [4]byte
	for i := range 1 << 16 {
		binary.BigEndian.PutUint16(v[:2], uint16(i))
		for _, tail := range []uint16{0, 0x8000, 0xffff} {
			binary.BigEndian.PutUint16(v[2:], tail)
			check(netip.AddrFrom4(v))
		}
	}
	for _, p := range []string{"::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "ff01::/16", "ff02::/16", "::ffff:0:0/96", "::/8", "4000::/2", "e000::/4"} {
		for _, a := range prefixAddrs(netip.MustParsePrefix(p)) {
			check(a)
		}
	}
}

// FuzzRestrictedCoversNetip: for any address, if netip calls it special
// isRestricted does too. go test -fuzz=FuzzRestrictedCoversNetip ./gateway/
func FuzzRestrictedCoversNetip(f *testing.F) {
	for _, s := range specialRanges {
		for _, a := range prefixAddrs(s.prefix) {
			f.Add(a.AsSlice())
		}
	}
	f.Add([]byte{8, 8, 8, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		if netipSpecial(a) && !isRestricted(a) {
			t.Errorf("netip calls %s special, isRestricted says no", a)
		}
		if netipSpecial(a.Unmap()) && !isRestricted(a) {
			t.Errorf("netip calls %s (unmapped) special, isRestricted says no", a)
		}
	})
}

// TestResolverAllowedNamesRange: a name whose addresses are all refused
// is errPrivateAddress naming the range, and the refusal names it too
// (not the address) and says to set allow_private.
func TestResolverAllowedNamesRange(t *testing.T) {
	r := &resolver{pins: map[string]netip.AddrPort{
		"meta.test:80":   netip.MustParseAddrPort("169.254.169.254:80"),
		"azure.test:443": netip.MustParseAddrPort("168.63.129.16:443"),
		"nat64.test:443": netip.MustParseAddrPort("[64:ff9b::a00:1]:443"),
	}}
	for _, tt := range []struct {
		host string
		port int
		want string
	}{
		{"meta.test", 80, "Cloud metadata (AWS, GCP, Azure, Oracle, OpenStack, DigitalOcean) 169.254.169.254/32"},
		{"azure.test", 443, "Azure WireServer"},
		{"nat64.test", 443, "Private-Use 10.0.0.0/8 (RFC 1918) embedded in IPv4-IPv6 Translat. 64:ff9b::/96 (RFC 6052)"},
		{"fd00:ec2::254", 80, "AWS IMDS over IPv6"},
	} {
		_, err := r.allowed(context.Background(), tt.host, tt.port, false)
		if !errors.Is(err, errPrivateAddress) {
			t.Errorf("%s: %v, want errPrivateAddress", tt.host, err)
			continue
		}
		if got := restrictedReason(err); !strings.Contains(got, tt.want) {
			t.Errorf("%s: reason %q, want %q", tt.host, got, tt.want)
		}
		f := addressRefusal(target{host: tt.host, port: tt.port}, err, "r")
		if !strings.Contains(f.Reason, tt.want) || !strings.Contains(f.Reason, "allow_private") {
			t.Errorf("%s: refusal %q names neither the range nor allow_private", tt.host, f.Reason)
		}
		if strings.Contains(f.Reason, "10.0.0.1") {
			t.Errorf("%s: refusal %q names the resolved address", tt.host, f.Reason)
		}
	}
}
