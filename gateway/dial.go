package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// errPrivateAddress: every address the destination resolves to is in a
// range that needs allow_private.
var errPrivateAddress = errors.New("destination resolves only to loopback, private, link-local or metadata addresses")

// errNoAddress: the name did not resolve.
var errNoAddress = errors.New("destination name does not resolve")

// restricted are ranges a destination may reach only when its policy
// destination sets allow_private. netip's predicates cover loopback,
// RFC 1918 / RFC 4193 private, link-local (169.254/16 holds the cloud
// metadata address 169.254.169.254; fe80::/10), multicast and unspecified;
// these prefixes add what they do not.
var restricted = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),          // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),      // carrier-grade NAT, often cluster-internal
	netip.MustParsePrefix("192.0.0.0/24"),       // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),      // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),        // reserved, and 255.255.255.255
	netip.MustParsePrefix("fd00:ec2::254/128"),  // AWS IMDS over IPv6 (also inside fc00::/7)
	netip.MustParsePrefix("100::/64"),           // discard-only
	netip.MustParsePrefix("2001:db8::/32"),      // documentation
	netip.MustParsePrefix("fec0::/10"),          // deprecated site-local
	netip.MustParsePrefix("169.254.169.254/32"), // cloud metadata (also link-local)
}

// IPv6 prefixes that embed an IPv4 address, which is checked in turn.
var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// isRestricted reports whether a needs allow_private. IPv4-mapped IPv6
// addresses are judged as the IPv4 address they carry, and so are NAT64
// and 6to4 addresses.
func isRestricted(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return true
	}
	if a.Is6() {
		b := a.As16()
		switch {
		case nat64Prefix.Contains(a):
			return isRestricted(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
		case sixToFour.Contains(a):
			return isRestricted(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
		}
	}
	for _, p := range restricted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// resolver finds the address to dial for a destination. It consults the
// config's resolve map first, then DNS.
type resolver struct {
	pins map[string]netip.AddrPort
	dns  *net.Resolver
}

// lookup returns the addresses of host:port, in preference order.
func (r *resolver) lookup(ctx context.Context, host string, port int) ([]netip.AddrPort, error) {
	if ap, ok := r.pins[host+":"+strconv.Itoa(port)]; ok {
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
	for _, a := range addrs {
		if !isRestricted(a.Addr()) {
			ok = append(ok, a)
		}
	}
	if len(ok) == 0 {
		return nil, errPrivateAddress
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
