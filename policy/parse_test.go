package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"empty", "", []string{
			"p.yaml:1:1: the policy file is empty; it needs at least rules and default: deny",
		}},
		{"comments only", "# nothing here\n", []string{
			"p.yaml:1:1: the policy file is empty; it needs at least rules and default: deny",
		}},
		{"not a mapping", "- a\n- b\n", []string{
			"p.yaml:1:1: the policy must be a mapping with keys workloads, destinations, credentials, rules, default and optionally mode",
		}},
		{"syntax", "rules: [\ndefault: deny\n", []string{
			"p.yaml:2:1: invalid YAML: did not find expected ',' or ']'",
		}},
		{"tab", "rules:\n\t- x\n", []string{
			"p.yaml:2:1: invalid YAML: a tab in the indentation (found character that cannot start any token); YAML indents with spaces only: replace the tab with spaces",
		}},
		{"two documents", "default: deny\n---\ndefault: deny\n", []string{
			"p.yaml:2:1: only one YAML document is allowed in a policy file; remove the '---' separator",
		}},
		{"unknown top-level", "workloads: {}\nrulez: []\ndefault: deny\n", []string{
			`p.yaml:2:1: unknown field "rulez" in policy; known fields are workloads, destinations, credentials, rules, default, mode, placeholders`,
		}},
		{"default", "default: allow\n", []string{
			"p.yaml:1:10: default must be deny (the only default supported); add rules to allow traffic",
		}},
		{"IPv4-mapped cidrs", "workloads:\n  w:\n    cidrs: [\"::ffff:127.0.0.2/128\", \"::ffff:10.0.0.0/104\"]\ndefault: deny\n", []string{
			`p.yaml:3:13: workload "w": cidr "::ffff:127.0.0.2/128" is an IPv4-mapped IPv6 prefix, which never matches: client addresses are matched as IPv4; write 127.0.0.2/32`,
			`p.yaml:3:37: workload "w": cidr "::ffff:10.0.0.0/104" is an IPv4-mapped IPv6 prefix, which never matches: client addresses are matched as IPv4; write 10.0.0.0/8`,
		}},
		{"duplicate top-level", "default: deny\ndefault: deny\n", []string{
			`p.yaml:2:1: policy: "default" is defined twice; remove or rename one`,
		}},
		{"workloads", `workloads:
  billing:
    cidrs: [10.1.0.0/16, 10.1.2.3/16, 10.0.0.1, nope, "::1"]
    require: [source, mtlz]
    spiffe: x
  "*":
    cidrs: [10.0.0.0/8]
  empty: {}
  listy: [a]
  billing: {cidrs: [10.0.0.0/8]}
default: deny
`, []string{
			`p.yaml:3:26: workload "billing": cidr "10.1.2.3/16" has bits set after the prefix length; did you mean 10.1.0.0/16?`,
			`p.yaml:3:39: workload "billing": cidr "10.0.0.1" has no prefix length; write 10.0.0.1/32 for a single address`,
			`p.yaml:3:49: workload "billing": "nope" is not a CIDR; write it like 10.1.0.0/16`,
			`p.yaml:3:55: workload "billing": cidr "::1" has no prefix length; write ::1/128 for a single address`,
			`p.yaml:4:23: workload "billing": unknown factor kind "mtlz" in require; known kinds are ` + strings.Join(identity.Names(), ", "),
			`p.yaml:5:13: workload "billing": spiffe pattern "x": scheme is missing or invalid; write an ID like spiffe://example.org/ns/billing/sa/api or a prefix like spiffe://example.org/ns/billing/*`,
			"p.yaml:6:3: workload name \"*\" is reserved (it is a `from` keyword); choose another name",
			`p.yaml:8:3: workload "empty" has no selector and would never match; set cidrs, spiffe, namespace, service_account, claims and/or require`,
			`p.yaml:9:10: workload "listy" must be a mapping of selectors (cidrs, spiffe, namespace, service_account, claims, require, bind_token_to_cert, rate_limit, mode)`,
			`p.yaml:10:3: workloads: "billing" is defined twice; remove or rename one`,
		}},
		{"destinations", `destinations:
  a:
    hosts: [API.Example.COM, "api.example.com:443", "a..b", "*.*.x.com", "x.*.com", "*", "https://x.com", "-a.com", "bücher.de", "[::1]:443", "x_y.test.", ".x.com"]
    ports: [0, 70000, "443", x, 443]
    allow_private: yes
    host: x
  b: {}
  c:
    hosts: []
  d:
    hosts: x.com
default: deny
`, []string{
			"p.yaml:3:30: destination \"a\": host \"api.example.com:443\" must not contain a port; list ports under `ports:` instead",
			`p.yaml:3:53: destination "a": host "a..b" has an empty label (two dots in a row, or a leading dot)`,
			`p.yaml:3:61: destination "a": host "*.*.x.com": a wildcard is only allowed as a whole leading label, like *.example.com`,
			`p.yaml:3:74: destination "a": host "x.*.com": a wildcard is only allowed as a whole leading label, like *.example.com`,
			`p.yaml:3:85: destination "a": host "*": a wildcard is only allowed as a whole leading label, like *.example.com`,
			`p.yaml:3:90: destination "a": host "https://x.com" must be a bare host name, not a URL; write it like api.example.com`,
			`p.yaml:3:107: destination "a": host "-a.com" has a label that starts or ends with '-'`,
			`p.yaml:3:117: destination "a": host "bücher.de" is not ASCII; write internationalised names in their xn-- (punycode) form`,
			"p.yaml:3:130: destination \"a\": host \"[::1]:443\" is not a valid IP literal; remove any port (ports go in `ports:`)",
			`p.yaml:3:156: destination "a": host ".x.com" has an empty label (two dots in a row, or a leading dot)`,
			`p.yaml:4:13: destination "a": port "0" must be a number from 1 to 65535`,
			`p.yaml:4:16: destination "a": port "70000" must be a number from 1 to 65535`,
			`p.yaml:4:23: destination "a": port "443" is quoted; write it as a plain number`,
			`p.yaml:4:30: destination "a": port "x" must be a number from 1 to 65535`,
			`p.yaml:5:20: destination "a" allow_private must be true or false`,
			`p.yaml:6:5: unknown field "host" in destination "a"; known fields are hosts, ports, allow_private, path_case, encoded_slashes, encoded_delimiters, mode`,
			`p.yaml:7:3: destination "b" has no hosts; add hosts: [api.example.com]`,
			`p.yaml:9:12: destination "c" hosts is empty; list at least one value or remove it`,
			`p.yaml:11:12: destination "d" hosts must be a list, like [a, b]`,
		}},
		{"hosts clients read otherwise", `destinations:
  a:
    hosts: [127.1, "2130706433", 0x7f.1, 0177.0.0.1, "*.1", api.example.1, xn--mi7cqau.example.com, xn--zz.example, 127.0.0.1, "::ffff:10.0.0.1", xn--mnchen-3ya.example, 0x7f.example]
default: deny
`, []string{
			`p.yaml:3:13: destination "a": host "127.1" ends in a number, which clients read as an IPv4 address (127.1, 2130706433, 0x7f.1 and 0177.0.0.1 are all 127.0.0.1) and DNS as a name; the gateway refuses such a destination, so write an IPv4 address as four decimal numbers without leading zeros, like 127.0.0.1`,
			`p.yaml:3:20: destination "a": host "2130706433" ends in a number, which clients read as an IPv4 address (127.1, 2130706433, 0x7f.1 and 0177.0.0.1 are all 127.0.0.1) and DNS as a name; the gateway refuses such a destination, so write an IPv4 address as four decimal numbers without leading zeros, like 127.0.0.1`,
			`p.yaml:3:34: destination "a": host "0x7f.1" ends in a number, which clients read as an IPv4 address (127.1, 2130706433, 0x7f.1 and 0177.0.0.1 are all 127.0.0.1) and DNS as a name; the gateway refuses such a destination, so write an IPv4 address as four decimal numbers without leading zeros, like 127.0.0.1`,
			`p.yaml:3:42: destination "a": host "0177.0.0.1" ends in a number, which clients read as an IPv4 address (127.1, 2130706433, 0x7f.1 and 0177.0.0.1 are all 127.0.0.1) and DNS as a name; the gateway refuses such a destination, so write an IPv4 address as four decimal numbers without leading zeros, like 127.0.0.1`,
			`p.yaml:3:54: destination "a": host "*.1" ends in a number, which clients read as an IPv4 address (127.1, 2130706433, 0x7f.1 and 0177.0.0.1 are all 127.0.0.1) and DNS as a name; the gateway refuses such a destination, so write an IPv4 address as four decimal numbers without leading zeros, like 127.0.0.1`,
			`p.yaml:3:61: destination "a": host "api.example.1" ends in a number, which clients read as an IPv4 address (127.1, 2130706433, 0x7f.1 and 0177.0.0.1 are all 127.0.0.1) and DNS as a name; the gateway refuses such a destination, so write an IPv4 address as four decimal numbers without leading zeros, like 127.0.0.1`,
			`p.yaml:3:76: destination "a": host "xn--mi7cqau.example.com" has an xn-- label that is not the form IDNA gives the name it encodes (undecodable, an encoding of plain ASCII, or of characters IDNA maps to others such as fullwidth letters); the gateway refuses such a destination, so write the name's xn-- form as IDNA produces it`,
			`p.yaml:3:101: destination "a": host "xn--zz.example" has an xn-- label that is not the form IDNA gives the name it encodes (undecodable, an encoding of plain ASCII, or of characters IDNA maps to others such as fullwidth letters); the gateway refuses such a destination, so write the name's xn-- form as IDNA produces it`,
		}},
		{"credentials", `credentials:
  a:
    value: x
  b:
    provider: nope
  c:
    provider: policytest
    value: x
    bogus: 1
  d:
    provider: policytest
    fail: broken settings
  e: x
  f:
    provider: [policytest]
default: deny
`, []string{
			`p.yaml:2:3: credential "a" has no provider; add provider: <name> (available: ` + strings.Join(providers.Names(), ", ") + ")",
			`p.yaml:5:15: credential "b": unknown provider "nope"; available providers are ` + strings.Join(providers.Names(), ", "),
			`p.yaml:9:5: credential "c" (provider policytest): unknown field "bogus"; known fields are value, fail, extra`,
			`p.yaml:11:5: credential "d" (provider policytest): broken settings`,
			`p.yaml:13:6: credential "e" must be a mapping with a provider key, like {provider: static, env: API_KEY}`,
			`p.yaml:15:15: credential "f" provider must be a single value`,
		}},
		{"rules", `workloads:
  w: {cidrs: [10.0.0.0/8]}
destinations:
  d: {hosts: [d.test]}
credentials:
  c: {provider: policytest, value: x}
rules:
  - name: r1
    from: [w, nobody]
    to: [d, nowhere]
    action: tunnel
    methods: [GET]
    paths: [/x]
    plaintext: true
  - name: r1
    from: w
    to: d
    action: allow
  - from: w
    to: d
    action: deny
    whence: x
  - name: r4
    from: w
    to: d
    inject: {credential: nope, as: bearz}
  - name: r5
    from: w
    to: d
    action: inject
  - name: r6
    to: d
    action: deny
    methods: ["G ET", post]
    paths: [v1, "/a?b", "/a**", "/{id}", ""]
  - name: r7
    from: w
    to: d
    action: deny
    inject: {credential: c, as: policytest-inj}
  - name: r8
    from: w
    to: d
    inject: {credential: c, as: policytest-inj, header: 1, bogus: 1}
    plaintext: "yes"
  - name: r9
    from: []
    to: d
  - x
  - name: r11
    from: anonymous
    to: d
    inject: {as: policytest-inj}
    methods: []
default: deny
`, []string{
			`p.yaml:9:15: rule "r1" (rules[0]): from names unknown workload "nobody"; define it under workloads or use one of "w", "*", "anonymous"`,
			`p.yaml:10:13: rule "r1" (rules[0]): to names unknown destination "nowhere"; define it under destinations (defined: "d")`,
			`p.yaml:12:5: rule "r1" (rules[0]): a tunnel rule cannot have methods, because the gateway does not see requests inside a tunnel; remove methods or use inject or deny`,
			`p.yaml:13:5: rule "r1" (rules[0]): a tunnel rule cannot have paths, because the gateway does not see requests inside a tunnel; remove paths or use inject or deny`,
			`p.yaml:14:5: rule "r1" (rules[0]): plaintext applies only to inject rules; remove it`,
			`p.yaml:15:11: rules[1]: rule name "r1" is already used by rules[0] (line 8); rule names must be unique`,
			`p.yaml:18:13: rules[1]: unknown action "allow"; use tunnel, deny or inject`,
			"p.yaml:19:5: rules[2] has no name; add name: <unique name>",
			`p.yaml:22:5: unknown field "whence" in rules[2]; known fields are name, from, to, action, methods, paths, when, inject, plaintext, rate_limit, require_placeholder, scrub, custody, ranges`,
			`p.yaml:26:26: rule "r4" (rules[3]): unknown credential "nope"; define it under credentials (defined: "c")`,
			`p.yaml:26:36: rule "r4" (rules[3]): unknown injector "bearz"; available injectors are ` + strings.Join(injectors.Names(), ", "),
			`p.yaml:30:13: rule "r5" (rules[4]): action inject needs an inject block with credential and as`,
			`p.yaml:31:5: rule "r6" (rules[5]) has no from; add from: <workload>, "*" or anonymous`,
			`p.yaml:34:15: rule "r6" (rules[5]): "G ET" is not an HTTP method`,
			`p.yaml:35:13: rule "r6" (rules[5]): path "v1" must start with '/'`,
			`p.yaml:35:17: rule "r6" (rules[5]): path "/a?b" contains "?"; paths are matched without the query string or fragment`,
			`p.yaml:35:25: rule "r6" (rules[5]): path "/a**" contains "**"; a single '*' already matches across '/'`,
			`p.yaml:35:33: rule "r6" (rules[5]): path "/{id}" contains "{"; only '*' is special in a path glob (it matches any run of characters, including '/')`,
			`p.yaml:35:42: rule "r6" (rules[5]): path is empty; write a path such as /v1/charges or /v1/*`,
			`p.yaml:40:5: rule "r7" (rules[6]): action deny cannot have an inject block; remove inject or the action`,
			`p.yaml:44:60: rule "r8" (rules[7]) inject (as policytest-inj): unknown field "bogus"; known fields are header`,
			`p.yaml:45:16: rule "r8" (rules[7]) plaintext must be true or false`,
			`p.yaml:46:5: rule "r9" (rules[8]) has neither action nor inject; add action: tunnel, action: deny, or an inject block`,
			`p.yaml:47:11: rule "r9" (rules[8]) from is empty; list at least one value or remove it`,
			"p.yaml:49:5: rules[9] must be a mapping with name, from, to and action or inject",
			`p.yaml:53:5: rule "r11" (rules[10]): inject has no credential; add credential: <name>`,
			`p.yaml:54:14: rule "r11" (rules[10]) methods is empty; list at least one value or remove it`,
		}},
		{"module decoding", `credentials:
  c:
    provider: policytest
    value: [a, b]
    fail: {x: 1}
rules:
  - name: r
    from: "*"
    to: d
    inject:
      credential: c
      as: policytest-inj
      header:
        - x
destinations:
  d: {hosts: [d.test]}
default: deny
`, []string{
			`p.yaml:4:5: credential "c" (provider policytest): value: want a string, got a list`,
			`p.yaml:5:5: credential "c" (provider policytest): fail: want a string, got a mapping`,
			`p.yaml:14:11: rule "r" (rules[0]) inject (as policytest-inj): header: want a string, got a list`,
		}},
		{"rules not a list", "rules: {a: b}\n", []string{
			"p.yaml:1:8: rules must be a list of rules, each starting with '- name:'",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(context.Background(), "p.yaml", []byte(tt.src))
			if err == nil {
				p.Close()
				t.Fatalf("Parse succeeded, want errors")
			}
			var el ErrorList
			if !errors.As(err, &el) {
				t.Fatalf("error %T is not an ErrorList: %v", err, err)
			}
			got := strings.Split(err.Error(), "\n")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("errors mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrorTypes(t *testing.T) {
	src := `credentials:
  c: {provider: policytest, value: errtypes-kept}
  d: {provider: policytest, value: errtypes-failed, fail: nope}
rules:
  - {name: r, from: nobody, to: d, action: tunnel}
default: deny
`
	_, err := Parse(context.Background(), "p.yaml", []byte(src))
	var el ErrorList
	if !errors.As(err, &el) || len(el) != 3 {
		t.Fatalf("err = %v, want an ErrorList of 3", err)
	}
	var first *Error
	if !errors.As(err, &first) || first.Line != 3 || first.Col != 6 {
		t.Fatalf("errors.As(*Error) = %+v", first)
	}
	if first.Err == nil || first.Err.Error() != "nope" {
		t.Errorf("provider error not wrapped: %#v", first.Err)
	}
	// The provider built before the failure is released.
	v, ok := builtProviders.Load("errtypes-kept")
	if !ok {
		t.Fatal("provider c was not built")
	}
	if n := v.(*testProvider).cleanups.Load(); n != 1 {
		t.Errorf("provider built by a failed Parse cleaned up %d times, want 1", n)
	}
}

func TestParseAccepts(t *testing.T) {
	// YAML features and normalisations a valid policy may use.
	p := mustParse(t, `
workloads:
  w: &sel {cidrs: [10.0.0.0/8]}
  v: *sel
destinations:
  d:
    hosts: [Api.Example.COM., "*.Wild.Example", "::ffff:10.0.0.1", "[2001:db8::1]"]
    ports: [443, 0x1bb, 8443]
    allow_private: false
credentials: {}
rules:
  - name: r
    from: [w, v, w]
    to: d
    action: tunnel
  - name: empty-lists-ok-as-null
    from: "*"
    to: [d]
    methods: [get, Get]
    action: deny
default: deny
`)
	tests := []struct {
		q    Query
		want got
	}{
		{connect("v", "api.example.com", 443), got{Action: "tunnel", Rule: "r", Destination: "d"}},
		{connect("w", "deep.sub.wild.example", 8443), got{Action: "tunnel", Rule: "r", Destination: "d"}},
		{connect("w", "10.0.0.1", 443), got{Action: "tunnel", Rule: "r", Destination: "d"}},
		{connect("w", "2001:DB8::1", 443), got{Action: "tunnel", Rule: "r", Destination: "d"}},
		{connect("w", "wild.example", 443), got{Action: "deny", Code: "no_rule"}},
	}
	for _, tt := range tests {
		if diff := compareDecision(tt.want, p.Decide(tt.q)); diff != "" {
			t.Errorf("Decide(%+v) mismatch (-want +got):\n%s", tt.q, diff)
		}
	}
	if got := p.Stats(); got.Rules != 2 || got.Workloads != 2 || got.Destinations != 1 || got.Credentials != 0 {
		t.Errorf("Stats = %+v", got)
	}
}

// TestParseAliasBomb checks that nested aliases ("billion laughs") are
// rejected quickly instead of being expanded.
func TestParseAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("x0: &x0 [a, a, a, a, a, a, a, a, a, a]\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&b, "x%d: &x%d [*x%d, *x%d, *x%d, *x%d, *x%d, *x%d, *x%d, *x%d, *x%d, *x%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	b.WriteString("destinations:\n  d: {hosts: *x8}\ncredentials:\n  c: {provider: policytest, value: *x8}\nrules: *x8\ndefault: deny\n")
	_, err := Parse(context.Background(), "p.yaml", []byte(b.String()))
	if err == nil {
		t.Fatal("Parse accepted an alias bomb")
	}
}

func TestLoadFile(t *testing.T) {
	p, err := LoadFile(context.Background(), "testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if diff := cmp.Diff(Stats{Rules: 2, Destinations: 2, Credentials: 1, Workloads: 1, Hash: p.Stats().Hash}, p.Stats()); diff != "" {
		t.Errorf("Stats mismatch (-want +got):\n%s", diff)
	}
	d := p.Decide(request("billing-api", "POST", "https", "api.stripe.com", 443, "/v1/charges"))
	if diff := compareDecision(got{Action: "inject", Rule: "billing-charges", Destination: "stripe", Credential: "stripe-live"}, d); diff != "" {
		t.Errorf("Decide mismatch (-want +got):\n%s", diff)
	}
	if d := p.Decide(request("billing-api", "DELETE", "https", "api.stripe.com", 443, "/v1/charges")); d.Code != "method_not_allowed" || d.Reason != `rule "billing-charges" lets workload "billing-api" reach api.stripe.com:443, but not with method DELETE` {
		t.Errorf("Decide(DELETE) = %+v", d)
	}

	_, err = LoadFile(context.Background(), "testdata/missing.yaml")
	if !errors.Is(err, os.ErrNotExist) || err.Error() != "policy: open testdata/missing.yaml: no such file or directory" {
		t.Errorf("LoadFile(missing) = %v", err)
	}
}
