package helm_test

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// npPeerAdmits reports whether a NetworkPolicy egress rule admits proto to
// addr:port, an address outside the cluster: its ports (none: all) hold
// port with proto (a port's protocol defaults to TCP; proto "" takes any),
// and it has no peers or an ipBlock holding addr that no except holds. Selectors never select such an address.
func npPeerAdmits(rule any, addr netip.Addr, port int, proto string) bool {
	if ports, ok := get(rule, "ports").([]any); ok && !slices.ContainsFunc(ports, func(p any) bool {
		pr, _ := get(p, "protocol").(string)
		if pr == "" {
			pr = "TCP"
		}
		return num(get(p, "port")) == port && (proto == "" || pr == proto)
	}) {
		return false
	}
	peers, ok := get(rule, "to").([]any)
	if !ok {
		return true
	}
	for _, p := range peers {
		cidr, ok := get(p, "ipBlock.cidr").(string)
		if !ok || !netip.MustParsePrefix(cidr).Contains(addr) {
			continue
		}
		excepts, _ := get(p, "ipBlock.except").([]any)
		if !slices.ContainsFunc(excepts, func(e any) bool { return netip.MustParsePrefix(fmt.Sprint(e)).Contains(addr) }) {
			return true
		}
	}
	return false
}

// TestNetworkPolicyNodeLocalDNS checks, over value variants, that
// networkPolicy.dns.nodeLocalAddresses opens exactly the named node-local
// DNS caches (NodeLocal DNSCache's 169.254.20.10, inside the link-local
// range the upstream rule excludes) on 53/UDP and 53/TCP in the gateway's
// and the applications' policies, that without it no link-local address is
// reachable on 53, that neither the metadata services nor a neighbouring
// address become reachable on any port tried, and that ranges, non-addresses
// and metadata addresses (in any spelling: in full, with leading zeros,
// IPv4-mapped) are refused with an error naming the value. Before, the 4
// other spellings of metadata addresses and the 3 runs of colons that are
// no address rendered (7 of 7 added cases failed).
func TestNetworkPolicyNodeLocalDNS(t *testing.T) {
	const base = `
networkPolicy:
  gateway: {enabled: true}
  applications: {namespaces: [shop]}
`
	metadata := append([]string{"169.254.170.2"}, metadataAddrs...)
	for _, tc := range []struct {
		name    string
		extra   string // YAML list for networkPolicy.dns.nodeLocalAddresses; "" = unset
		open    []string
		closed  []string // besides the metadata addresses
		wantErr string
	}{
		{name: "unset", closed: []string{"169.254.20.10"}},
		{name: "empty", extra: "[]", closed: []string{"169.254.20.10"}},
		{name: "nodelocal", extra: "[169.254.20.10]", open: []string{"169.254.20.10"}, closed: []string{"169.254.20.11", "169.254.0.1"}},
		{name: "nodelocal-and-ipv6", extra: `[169.254.20.10, "fe80::10"]`, open: []string{"169.254.20.10", "fe80::10"}, closed: []string{"fe80::11", "169.254.20.11"}},
		{name: "range", extra: "[169.254.0.0/16]", wantErr: `"169.254.0.0/16" is not a single IPv4 or IPv6 address`},
		{name: "not-an-address", extra: "[node-local-dns]", wantErr: `"node-local-dns" is not a single IPv4 or IPv6 address`},
		{name: "octet-out-of-range", extra: "[169.254.20.300]", wantErr: `"169.254.20.300" is not a single`},
		{name: "metadata-v4", extra: "[169.254.169.254]", wantErr: "169.254.169.254 is a cloud metadata service"},
		{name: "metadata-v6", extra: `["fd00:ec2::254"]`, wantErr: "fd00:ec2::254 is a cloud metadata service"},
		{name: "metadata-alibaba", extra: "[100.100.100.200]", wantErr: "100.100.100.200 is a cloud metadata service"},
		{name: "metadata-ecs", extra: "[169.254.170.2]", wantErr: "169.254.170.2 is a cloud metadata service"},
		// Another spelling of a metadata address is the same address.
		{name: "metadata-v6-in-full", extra: `["fd00:ec2:0:0:0:0:0:254"]`, wantErr: "fd00:ec2:0:0:0:0:0:254 is a cloud metadata service"},
		{name: "metadata-v6-leading-zeros", extra: `["fd00:0ec2::0254"]`, wantErr: "fd00:0ec2::0254 is a cloud metadata service"},
		{name: "metadata-v4-mapped", extra: `["::ffff:169.254.169.254"]`, wantErr: "::ffff:169.254.169.254 is a cloud metadata service"},
		{name: "metadata-v4-mapped-hex", extra: `["::ffff:a9fe:a9fe"]`, wantErr: "::ffff:a9fe:a9fe is a cloud metadata service"},
		// Runs of hex digits and colons that are no address.
		{name: "colons", extra: `[":::"]`, wantErr: `":::" is not a single`},
		{name: "nine-groups", extra: `["1:2:3:4:5:6:7:8:9"]`, wantErr: `"1:2:3:4:5:6:7:8:9" is not a single`},
		{name: "two-double-colons", extra: `["fe80::1::2"]`, wantErr: `"fe80::1::2" is not a single`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			values := base
			if tc.extra != "" {
				values += "  dns:\n    nodeLocalAddresses: " + tc.extra + "\n"
			}
			v := variant{name: "nodelocal-dns-" + tc.name, values: values}
			if tc.wantErr != "" {
				out, err := runErr(helmBin, templateArgs(valuesArgs(t, v)...)...)
				if err == nil || !strings.Contains(err.Error(), "networkPolicy.dns.nodeLocalAddresses") || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("helm template: err = %v, want one naming networkPolicy.dns.nodeLocalAddresses and %q (output %d bytes)", err, tc.wantErr, len(out))
				}
				return
			}
			objs := parse(t, render(t, v))
			for _, name := range []string{fullname, fullname + "-egress-via-gateway"} {
				np := mustFind(t, objs, "NetworkPolicy", name)
				rules, _ := get(np, "spec.egress").([]any)
				admits := func(a string, port int, proto string) bool {
					return slices.ContainsFunc(rules, func(r any) bool { return npPeerAdmits(r, netip.MustParseAddr(a), port, proto) })
				}
				for _, a := range tc.open {
					for _, proto := range []string{"UDP", "TCP"} {
						if !admits(a, 53, proto) {
							t.Errorf("%s: %s port 53/%s not admitted", name, a, proto)
						}
					}
					if admits(a, 80, "TCP") || admits(a, 443, "TCP") {
						t.Errorf("%s: %s admitted beyond port 53", name, a)
					}
				}
				for _, a := range append(slices.Clone(tc.closed), metadata...) {
					for _, pp := range []struct {
						port  int
						proto string
					}{{53, "UDP"}, {53, "TCP"}, {80, "TCP"}} {
						if admits(a, pp.port, pp.proto) {
							t.Errorf("%s: %s port %d/%s admitted", name, a, pp.port, pp.proto)
						}
					}
				}
			}
		})
	}
}
