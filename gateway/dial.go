package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// errPrivateAddress: every address the destination resolves to is in a
// range that needs allow_private. The error returned wraps it in a
// *restrictedError naming the range.
var errPrivateAddress = errors.New("destination resolves only to loopback, private, link-local, metadata or other special-purpose addresses")

// errNoAddress: the name did not resolve.
var errNoAddress = errors.New("destination name does not resolve")

// specialRange is one entry of the table of addresses a destination may
// reach only when its policy destination sets allow_private.
type specialRange struct {
	prefix netip.Prefix
	// name is the entry's name in its IANA registry (or what the address
	// is, for metadata services and ranges outside the registries).
	name string
	// ref is the defining document.
	ref string
}

// String names the entry, as refusal reasons and logs print it:
// "Private-Use 10.0.0.0/8 (RFC 1918)".
func (s specialRange) String() string { return s.name + " " + s.prefix.String() + " (" + s.ref + ")" }

// specialRanges are the addresses a destination may reach only when its
// policy destination sets allow_private (invariant 8): every entry of the
// IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890), also
// those the registry marks globally reachable (anycast services, AS112,
// AMT, NAT64: no API is served there, and refusing is the safe side), the
// multicast and limited-broadcast blocks, all IPv6 space outside global
// unicast 2000::/3, and cloud metadata services (named on their own so a
// refusal says "metadata", even where a wider range covers them).
//
// isRestricted reports the most specific entry that contains an address.
// Addresses that embed an IPv4 address:
//
//   - IPv4-mapped ::ffff:0:0/96 is judged as the IPv4 address it carries
//     (that is what the kernel dials; lookup unmaps it already).
//   - NAT64 well-known prefix 64:ff9b::/96 (RFC 6052) is judged by its
//     embedded IPv4 address: DNS64 in an IPv6-only cluster synthesises
//     such addresses for public IPv4 services, which must keep working,
//     while 64:ff9b::a00:1 (10.0.0.1) is refused as Private-Use.
//   - Everything else that embeds or tunnels IPv4 is refused whole:
//     64:ff9b:1::/48 (local-use NAT64; where the IPv4 address sits depends
//     on the operator's prefix length), Teredo 2001::/32, 6to4 2002::/16
//     (deprecated relays, RFC 7526; no service publishes such addresses),
//     IPv4-compatible ::/96 and IPv4-translated ::ffff:0:0:0/96 (both in
//     the reserved ::/8). A name with other, ordinary addresses still
//     works: only its refused addresses are dropped.
//
// Keep the table in registry order; TestSpecialRanges checks the first,
// a middle and the last address of every entry.
var specialRanges = []specialRange{
	// IANA IPv4 Special-Purpose Address Registry.
	{pfx("0.0.0.0/8"), "This network", "RFC 791 §3.2"},
	{pfx("0.0.0.0/32"), "This host on this network", "RFC 1122 §3.2.1.3"},
	{pfx("10.0.0.0/8"), "Private-Use", "RFC 1918"},
	{pfx("100.64.0.0/10"), "Shared Address Space", "RFC 6598"},
	{pfx("127.0.0.0/8"), "Loopback", "RFC 1122 §3.2.1.3"},
	{pfx("169.254.0.0/16"), "Link Local", "RFC 3927"},
	{pfx("172.16.0.0/12"), "Private-Use", "RFC 1918"},
	{pfx("192.0.0.0/24"), "IETF Protocol Assignments", "RFC 6890 §2.1"},
	{pfx("192.0.0.0/29"), "IPv4 Service Continuity Prefix", "RFC 7335"},
	{pfx("192.0.0.8/32"), "IPv4 dummy address", "RFC 7600"},
	{pfx("192.0.0.9/32"), "Port Control Protocol Anycast", "RFC 7723"},
	{pfx("192.0.0.10/32"), "Traversal Using Relays around NAT Anycast", "RFC 8155"},
	{pfx("192.0.0.170/32"), "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 §2.2"},
	{pfx("192.0.0.171/32"), "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 §2.2"},
	{pfx("192.0.2.0/24"), "Documentation (TEST-NET-1)", "RFC 5737"},
	{pfx("192.31.196.0/24"), "AS112-v4", "RFC 7535"},
	{pfx("192.52.193.0/24"), "AMT", "RFC 7450"},
	{pfx("192.88.99.0/24"), "Deprecated (6to4 Relay Anycast)", "RFC 7526"},
	{pfx("192.88.99.2/32"), "6a44-relay anycast address", "RFC 6751"},
	{pfx("192.168.0.0/16"), "Private-Use", "RFC 1918"},
	{pfx("192.175.48.0/24"), "Direct Delegation AS112 Service", "RFC 7534"},
	{pfx("198.18.0.0/15"), "Benchmarking", "RFC 2544"},
	{pfx("198.51.100.0/24"), "Documentation (TEST-NET-2)", "RFC 5737"},
	{pfx("203.0.113.0/24"), "Documentation (TEST-NET-3)", "RFC 5737"},
	{pfx("240.0.0.0/4"), "Reserved", "RFC 1112 §4"},
	{pfx("255.255.255.255/32"), "Limited Broadcast", "RFC 8190, RFC 919 §7"},
	// IPv4 outside the special-purpose registry.
	{pfx("224.0.0.0/4"), "Multicast", "RFC 5771"},

	// IANA IPv6 Special-Purpose Address Registry.
	{pfx("::1/128"), "Loopback Address", "RFC 4291"},
	{pfx("::/128"), "Unspecified Address", "RFC 4291"},
	// These two never match: restriction judges the embedded IPv4
	// address first. Listed to keep the table the whole registry.
	{pfx("::ffff:0:0/96"), "IPv4-mapped Address", "RFC 4291"},
	{pfx("64:ff9b::/96"), "IPv4-IPv6 Translat.", "RFC 6052"},
	{pfx("64:ff9b:1::/48"), "IPv4-IPv6 Translat. (local-use)", "RFC 8215"},
	{pfx("100::/64"), "Discard-Only Address Block", "RFC 6666"},
	{pfx("100:0:0:1::/64"), "Dummy IPv6 Prefix", "RFC 9780"},
	{pfx("2001::/23"), "IETF Protocol Assignments", "RFC 2928"},
	{pfx("2001::/32"), "TEREDO", "RFC 4380, RFC 8190"},
	{pfx("2001:1::1/128"), "Port Control Protocol Anycast", "RFC 7723"},
	{pfx("2001:1::2/128"), "Traversal Using Relays around NAT Anycast", "RFC 8155"},
	{pfx("2001:1::3/128"), "DNS-SD Service Registration Protocol Anycast", "RFC 9665"},
	{pfx("2001:2::/48"), "Benchmarking", "RFC 5180, RFC Errata 1752"},
	{pfx("2001:3::/32"), "AMT", "RFC 7450"},
	{pfx("2001:4:112::/48"), "AS112-v6", "RFC 7535"},
	{pfx("2001:10::/28"), "Deprecated (previously ORCHID)", "RFC 4843"},
	{pfx("2001:20::/28"), "ORCHIDv2", "RFC 7343"},
	{pfx("2001:30::/28"), "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "RFC 9374"},
	{pfx("2001:db8::/32"), "Documentation", "RFC 3849"},
	{pfx("2002::/16"), "6to4", "RFC 3056"},
	{pfx("2620:4f:8000::/48"), "Direct Delegation AS112 Service", "RFC 7534"},
	{pfx("3fff::/20"), "Documentation", "RFC 9637"},
	{pfx("5f00::/16"), "Segment Routing (SRv6) SIDs", "RFC 9602"},
	{pfx("fc00::/7"), "Unique-Local", "RFC 4193, RFC 8190"},
	{pfx("fe80::/10"), "Link-Local Unicast", "RFC 4291"},
	// IPv6 outside the special-purpose registry: everything that is not
	// global unicast 2000::/3 (IANA IPv6 Address Space; unassigned space
	// is reserved by the IETF), split into the blocks that cover it.
	{pfx("::/3"), "Not global unicast (outside 2000::/3)", "RFC 4291 §2.4"},
	{pfx("4000::/2"), "Not global unicast (outside 2000::/3)", "RFC 4291 §2.4"},
	{pfx("8000::/1"), "Not global unicast (outside 2000::/3)", "RFC 4291 §2.4"},
	{pfx("::/96"), "IPv4-compatible Address (deprecated)", "RFC 4291 §2.5.5.1"},
	{pfx("::ffff:0:0:0/96"), "IPv4-translated Address", "RFC 2765 §2.1"},
	{pfx("fec0::/10"), "Site-Local (deprecated)", "RFC 3879"},
	{pfx("ff00::/8"), "Multicast", "RFC 4291 §2.7"},

	// Cloud metadata and platform services. Most lie in a range above;
	// the entry makes the refusal say what the address is.
	{pfx("169.254.169.254/32"), "Cloud metadata (AWS, GCP, Azure, Oracle, OpenStack, DigitalOcean)", "provider documentation"},
	{pfx("169.254.170.2/32"), "Cloud metadata (AWS ECS task metadata and credentials)", "provider documentation"},
	{pfx("169.254.170.23/32"), "Cloud metadata (AWS EKS Pod Identity)", "provider documentation"},
	{pfx("169.254.0.23/32"), "Cloud metadata (Tencent Cloud)", "provider documentation"},
	{pfx("100.100.100.200/32"), "Cloud metadata (Alibaba Cloud)", "provider documentation"},
	{pfx("168.63.129.16/32"), "Cloud platform service (Azure WireServer)", "provider documentation"},
	{pfx("fd00:ec2::254/128"), "Cloud metadata (AWS IMDS over IPv6)", "provider documentation"},
	{pfx("fd00:ec2::23/128"), "Cloud metadata (AWS EKS Pod Identity over IPv6)", "provider documentation"},
	{pfx("fd20:ce::254/128"), "Cloud metadata (GCP over IPv6)", "provider documentation"},
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// bySpecificity is specialRanges, longest prefix first, so that the first
// match is the most specific entry. Built once; never modified.
var bySpecificity = func() []specialRange {
	s := slices.Clone(specialRanges)
	slices.SortStableFunc(s, func(a, b specialRange) int { return b.prefix.Bits() - a.prefix.Bits() })
	return s
}()

// nat64 is the NAT64 well-known prefix, whose embedded IPv4 address is
// judged (see specialRanges).
var nat64 = pfx("64:ff9b::/96")

// restriction returns the most specific table entry that contains a,
// and ok=false when a may be dialled without allow_private. A zone is
// ignored (netip.Prefix.Contains never matches a zoned address, which
// would let fe80::1%eth0 through). via, when set, is the NAT64 entry
// whose embedded address matched.
func restriction(a netip.Addr) (r specialRange, via *specialRange, ok bool) {
	a = a.WithZone("").Unmap()
	if !a.IsValid() {
		return specialRange{prefix: netip.Prefix{}, name: "Invalid address", ref: "-"}, nil, true
	}
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		r, _, ok := restriction(netip.AddrFrom4([4]byte(b[12:16])))
		if !ok {
			return specialRange{}, nil, false
		}
		n := specialRange{prefix: nat64, name: "IPv4-IPv6 Translat.", ref: "RFC 6052"}
		return r, &n, true
	}
	for _, s := range bySpecificity {
		if s.prefix.Contains(a) {
			return s, nil, true
		}
	}
	return specialRange{}, nil, false
}

// isRestricted reports whether a needs allow_private.
func isRestricted(a netip.Addr) bool {
	_, _, ok := restriction(a)
	return ok
}

// restrictedError is errPrivateAddress for one address: it names the
// table entry that matched, not the address: the client learns why, not
// what the internal name resolves to.
type restrictedError struct {
	entry specialRange
	via   *specialRange
}

func (e *restrictedError) Error() string { return errPrivateAddress.Error() + ": " + e.Reason() }

// Unwrap makes errors.Is(err, errPrivateAddress) true.
func (e *restrictedError) Unwrap() error { return errPrivateAddress }

// Reason names the range for a refusal: "Private-Use 10.0.0.0/8 (RFC
// 1918)", or for a NAT64 address "Private-Use 10.0.0.0/8 (RFC 1918)
// embedded in IPv4-IPv6 Translat. 64:ff9b::/96 (RFC 6052)".
func (e *restrictedError) Reason() string {
	if e.via != nil {
		return e.entry.String() + " embedded in " + e.via.String()
	}
	return e.entry.String()
}

// privateAddressReason is the reason of the private_address refusal of
// hostPort, whose addresses are all in special-purpose ranges, the first
// in entry.
func privateAddressReason(hostPort, entry string) string {
	return fmt.Sprintf("%s resolves to a special-purpose address (%s); its policy destination must set allow_private: true to reach it", hostPort, entry)
}

// CheckAddress is the gateway's check of one address that host:port
// resolves to, for tools such as credgate explain: whether the address is
// refused without allow_private, and if so the reason of the
// private_address refusal (which names the special-purpose range, as the
// gateway does).
func CheckAddress(host string, port int, a netip.Addr) (reason string, refused bool) {
	r, via, ok := restriction(a)
	if !ok {
		return "", false
	}
	e := &restrictedError{entry: r, via: via}
	return privateAddressReason(net.JoinHostPort(host, strconv.Itoa(port)), e.Reason()), true
}

// Pinned returns the address the config's resolve map gives host:port,
// which the gateway dials instead of asking DNS.
func (c *Config) Pinned(host string, port int) (netip.AddrPort, bool) {
	ap, ok := c.resolve[pinKey(host, port)]
	return ap, ok
}

// restrictedReason is the range named by an errPrivateAddress, "" for
// other errors.
func restrictedReason(err error) string {
	var re *restrictedError
	if errors.As(err, &re) {
		return re.Reason()
	}
	return ""
}

// resolver finds the address to dial for a destination. It consults the
// config's resolve map first, then DNS.
type resolver struct {
	pins map[string]netip.AddrPort
	dns  *net.Resolver
}

// lookup returns the addresses of host:port, in preference order.
func (r *resolver) lookup(ctx context.Context, host string, port int) ([]netip.AddrPort, error) {
	if ap, ok := r.pins[pinKey(host, port)]; ok {
		return []netip.AddrPort{ap}, nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.AddrPort{netip.AddrPortFrom(a.Unmap(), uint16(port))}, nil
	}
	addrs, err := r.dns.LookupNetIP(ctx, "ip", host)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && (dnsErr.IsNotFound || dnsErr.IsTimeout || dnsErr.IsTemporary) {
			return nil, fmt.Errorf("%w: %s", errNoAddress, host)
		}
		return nil, fmt.Errorf("%w: %s: %v", errNoAddress, host, err)
	}
	out := make([]netip.AddrPort, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, netip.AddrPortFrom(a.Unmap(), uint16(port)))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s", errNoAddress, host)
	}
	return out, nil
}

// allowed resolves host:port and keeps the addresses the destination may
// reach: all of them with allowPrivate, else only unrestricted ones. An
// empty result is errPrivateAddress. The caller dials only what this
// returned, so the address checked is the address dialled.
func (r *resolver) allowed(ctx context.Context, host string, port int, allowPrivate bool) ([]netip.AddrPort, error) {
	addrs, err := r.lookup(ctx, host, port)
	if err != nil || allowPrivate {
		return addrs, err
	}
	ok := addrs[:0:0]
	var first *restrictedError
	for _, a := range addrs {
		r, via, restricted := restriction(a.Addr())
		if !restricted {
			ok = append(ok, a)
		} else if first == nil {
			first = &restrictedError{entry: r, via: via}
		}
	}
	if len(ok) == 0 {
		return nil, first
	}
	return ok, nil
}

// dialer dials checked addresses.
type dialer struct {
	net.Dialer
}

// dialAny dials the addresses in order and returns the first connection.
func (d *dialer) dialAny(ctx context.Context, addrs []netip.AddrPort) (net.Conn, error) {
	var errs []error
	for _, a := range addrs {
		c, err := d.DialContext(ctx, "tcp", a.String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func newDialer(timeout time.Duration) *dialer {
	return &dialer{Dialer: net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}}
}
