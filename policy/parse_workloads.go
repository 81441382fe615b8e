package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/identity"
)

func (ps *parser) parseWorkloads(f field) []identity.Spec {
	ps.workloads = map[string]bool{}
	ps.wlVersions = map[string]string{}
	var specs []identity.Spec
	for _, e := range ps.entries(f.val, "workloads") {
		name := e.key.Value
		ps.workloads[name] = true
		ps.wlVersions[name] = settingsHash("workload", e.val)
		if msg := checkName(name); msg != "" {
			ps.errorf(e.key, "workload name %s", msg)
			continue
		}
		if name == FromAny || name == FromAnonymous {
			ps.errorf(e.key, "workload name %q is reserved (it is a `from` keyword); choose another name", name)
			continue
		}
		what := fmt.Sprintf("workload %q", name)
		if body := deref(e.val); !isNull(body) && body.Kind != yaml.MappingNode {
			ps.errorf(body, "%s must be a mapping of selectors (%s)", what, strings.Join(workloadFields, ", "))
			continue
		}
		fs := ps.fields(e.val, what, workloadFields...)
		spec := identity.Spec{Name: name}
		if c, ok := fs["cidrs"]; ok {
			vals, nodes := ps.list(c.val, what+" cidrs", false)
			for i, v := range vals {
				pfx, err := netip.ParsePrefix(v)
				switch {
				case err != nil && !strings.Contains(v, "/"):
					if _, aerr := netip.ParseAddr(v); aerr == nil {
						ps.errorf(nodes[i], "%s: cidr %q has no prefix length; write %s/%d for a single address", what, v, v, map[bool]int{true: 32, false: 128}[strings.Contains(v, ".")])
					} else {
						ps.errorf(nodes[i], "%s: %q is not a CIDR; write it like 10.1.0.0/16", what, v)
					}
				case err != nil:
					ps.errorf(nodes[i], "%s: %q is not a CIDR; write it like 10.1.0.0/16", what, v)
				case pfx.Masked() != pfx:
					ps.errorf(nodes[i], "%s: cidr %q has bits set after the prefix length; did you mean %s?", what, v, pfx.Masked())
				case pfx.Addr().Is4In6():
					// Sources are unmapped before matching (an IPv4 client on
					// a dual-stack listener is its IPv4 address), so this
					// prefix would never match.
					bits := pfx.Bits() - 96
					if bits < 0 {
						ps.errorf(nodes[i], "%s: cidr %q is an IPv4-mapped IPv6 prefix shorter than ::ffff:0:0/96; client addresses are matched as IPv4, so write an IPv4 CIDR", what, v)
						break
					}
					ps.errorf(nodes[i], "%s: cidr %q is an IPv4-mapped IPv6 prefix, which never matches: client addresses are matched as IPv4; write %s", what, v, netip.PrefixFrom(pfx.Addr().Unmap(), bits))
				default:
					spec.CIDRs = append(spec.CIDRs, pfx)
				}
			}
		}
		ps.parseIdentitySelectors(&spec, fs, what)
		if r, ok := fs["require"]; ok {
			known := identity.Names()
			vals, nodes := ps.list(r.val, what+" require", false)
			for i, v := range vals {
				if !slices.Contains(known, v) {
					ps.errorf(nodes[i], "%s: unknown factor kind %q in require; known kinds are %s", what, v, strings.Join(known, ", "))
					continue
				}
				if !slices.Contains(spec.Require, v) {
					spec.Require = append(spec.Require, v)
				}
			}
		}
		hasSelector := false
		for _, k := range workloadFields {
			if _, ok := fs[k]; ok && k != "bind_token_to_cert" && k != "rate_limit" && k != "mode" {
				hasSelector = true
			}
		}
		if !hasSelector {
			ps.errorf(e.key, "%s has no selector and would never match; set cidrs, spiffe, namespace, service_account, claims and/or require", what)
		}
		if rl, ok := fs["rate_limit"]; ok {
			if l := ps.parseRateLimit(rl, what); l != nil {
				if ps.wlLimits == nil {
					ps.wlLimits = map[string]*RateLimit{}
				}
				ps.wlLimits[name] = l
			}
		}
		if m, ok := fs["mode"]; ok && ps.parseMode(m, what) {
			if ps.observeWorkloads == nil {
				ps.observeWorkloads = map[string]bool{}
			}
			ps.observeWorkloads[name] = true
		}
		specs = append(specs, spec)
	}
	return specs
}

// workloadFields are the keys of a `workloads:` entry.
var workloadFields = []string{"cidrs", "spiffe", "namespace", "service_account", "claims", "require", "bind_token_to_cert", "rate_limit", "mode"}

// parseIdentitySelectors reads the selectors on verified factor
// attributes: spiffe, namespace, service_account, claims and
// bind_token_to_cert.
func (ps *parser) parseIdentitySelectors(spec *identity.Spec, fs map[string]field, what string) {
	if f, ok := fs["spiffe"]; ok {
		vals, nodes := ps.list(f.val, what+" spiffe", true)
		for i, v := range vals {
			p, err := identity.ParseSPIFFEPattern(v)
			if err != nil {
				ps.errorf(nodes[i], "%s: %v", what, err)
				continue
			}
			spec.SPIFFE = append(spec.SPIFFE, p)
		}
	}
	for _, sel := range []struct {
		key string
		dst *[]string
	}{{"namespace", &spec.Namespaces}, {"service_account", &spec.ServiceAccounts}} {
		f, ok := fs[sel.key]
		if !ok {
			continue
		}
		vals, nodes := ps.list(f.val, what+" "+sel.key, true)
		for i, v := range vals {
			if v == "" || strings.ContainsAny(v, " \t:/") {
				ps.errorf(nodes[i], "%s: %s %q is not a Kubernetes name", what, sel.key, v)
				continue
			}
			if !slices.Contains(*sel.dst, v) {
				*sel.dst = append(*sel.dst, v)
			}
		}
	}
	if f, ok := fs["claims"]; ok {
		entries := ps.entries(f.val, what+" claims")
		if len(entries) == 0 && deref(f.val).Kind == yaml.MappingNode {
			ps.errorf(deref(f.val), "%s claims is empty; list attribute: value pairs or remove it", what)
		}
		for _, c := range entries {
			v, ok := ps.str(c.val, fmt.Sprintf("%s claims %s", what, c.key.Value))
			if !ok {
				continue
			}
			if spec.Claims == nil {
				spec.Claims = map[string]string{}
			}
			spec.Claims[c.key.Value] = v
		}
	}
	if f, ok := fs["bind_token_to_cert"]; ok {
		spec.BindTokenToCert = ps.boolean(f.val, what+" bind_token_to_cert")
	}
}

// checkName reports a problem with a user-chosen name, or "".
func checkName(s string) string {
	if s == "" {
		return "is empty"
	}
	for _, c := range s {
		if c < ' ' || c == 0x7f || c == ' ' || c == ',' {
			return fmt.Sprintf("%q must not contain spaces, commas or control characters", s)
		}
	}
	return ""
}
