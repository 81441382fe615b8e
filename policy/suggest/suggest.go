// Package suggest writes a least-privilege policy from recorded traffic:
// the audit lines of requests the gateway let through (injected,
// forwarded, tunnelled, or would_deny in observe mode). For each workload
// and destination it allows the methods and path templates that were
// used, and nothing else.
package suggest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/internal/canonical"
	"github.com/credgate/credgate/policy"
)

// Options configure Write.
type Options struct {
	// BaseFile and Base are the policy in force when the traffic was
	// recorded (optional). Its workloads and credentials are copied, the
	// inject settings of the rules the lines name are reused, and its
	// destinations' allow_private, path_case, encoded_slashes and
	// encoded_delimiters carry over to the hosts they list. Without it,
	// workloads are written with the source addresses seen, and recorded
	// injections are an error.
	BaseFile string
	Base     []byte
	// MaxLiterals is how many distinct values a path segment may take
	// under one prefix before it is collapsed into `*`; 0 means
	// DefaultMaxLiterals.
	MaxLiterals int
	// Now stamps the header comment; zero means time.Now().
	Now time.Time
}

// admitted are the audited decisions that let traffic through; refused
// lines (deny) are never turned into rules.
var admitted = map[string]bool{
	policy.Inject.String():  true,
	policy.Forward.String(): true,
	policy.Tunnel.String():  true,
	policy.WouldDeny:        true,
}

// groupKey is one workload × destination × inject rule: the requests
// one base inject rule injected ("" for the requests that went through
// without a credential), so that each suggested path keeps the very
// credential and injector it was seen with.
type groupKey struct {
	workload, scheme, host string
	port                   int
	rule                   string
}

// seen counts one method and path (or one CONNECT) of a group.
type seen struct {
	n           int
	first, last time.Time
}

// merge adds o's counts and times to s.
func (s *seen) merge(o *seen) {
	if o.n == 0 {
		return
	}
	if s.n == 0 || o.first.Before(s.first) {
		s.first = o.first
	}
	if s.n == 0 || o.last.After(s.last) {
		s.last = o.last
	}
	s.n += o.n
}

func (s *seen) add(t time.Time) {
	if s.n == 0 || t.Before(s.first) {
		s.first = t
	}
	if s.n == 0 || t.After(s.last) {
		s.last = t
	}
	s.n++
}

type group struct {
	key groupKey
	// ambiguous: requests without a credential to a host where several
	// inject rules of the caller injected others.
	ambiguous bool
	// twice are the requests another inject rule injected too.
	twice []twice
	// requests by decoded path, then method.
	requests map[string]map[string]*seen
	// tunnel counts CONNECTs spliced without interception, forward the
	// requests a tunnel rule forwarded on an intercepted host.
	tunnel, forward seen
	// skipped are paths a glob cannot express, by count.
	skipped map[string]int
}

// base is what Write reads from the base policy.
type base struct {
	workloads   map[string]*yaml.Node // name → value
	credentials map[string]*yaml.Node
	// injects are the inject rules' settings: rule → inject node,
	// plaintext.
	injects   map[string]*yaml.Node
	plaintext map[string]bool
	injCred   map[string]string
	// injFrom are the inject rules' from values.
	injFrom map[string][]string
	dests   []baseDest
}

type baseDest struct {
	hosts []string
	// settings are allow_private, path_case, encoded_slashes and
	// encoded_delimiters, as set.
	settings []*yaml.Node // key, value pairs
}

// Write reads records and writes the suggested policy to w. The policy
// validates (`credgate validate`) when the base's credentials do.
func Write(w io.Writer, recs []audit.Record, opts Options) error {
	return WriteFrom(w, audit.SliceLines(recs), opts)
}

// WriteFrom is Write over lines read one at a time: it keeps one entry
// per distinct caller, host, path and method, not the lines.
func WriteFrom(w io.Writer, lines audit.Lines, opts Options) error {
	b, err := readBase(opts)
	if err != nil {
		return err
	}
	groups := map[groupKey]*group{}
	sources := map[string][]string{}
	n := 0
	each := func(r audit.Record) error {
		if !admitted[r.Decision] || r.Closed != "" {
			return nil
		}
		// What a suggestion allows is written from these fields: each
		// must be what the gateway writes, so that it means in the
		// policy exactly what was seen.
		if err := r.Check(); err != nil {
			return fmt.Errorf("suggest: %w", err)
		}
		n++
		k := groupKey{workload: r.Workload, scheme: r.Scheme, host: r.Host, port: r.Port}
		if r.Decision == policy.Inject.String() && r.Method != "CONNECT" {
			k.rule = r.Rule
		}
		if r.Method == "CONNECT" {
			k.scheme = "https"
		}
		g := groups[k]
		if g == nil {
			g = &group{key: k, requests: map[string]map[string]*seen{}, skipped: map[string]int{}}
			groups[k] = g
		}
		if r.Workload != policy.FromAnonymous && r.Source != "" && !slices.Contains(sources[r.Workload], r.Source) {
			sources[r.Workload] = append(sources[r.Workload], r.Source)
		}
		if r.Method == "CONNECT" {
			g.tunnel.add(r.Time)
			return nil
		}
		cp, err := canonical.ParsePath(r.Path)
		if err != nil {
			return fmt.Errorf("suggest: %s: the line says %s %s was let through (%s), but the gateway refuses that path (%w): not a line the gateway writes", r.Pos, r.Method, strconv.Quote(r.Path), r.Decision, err)
		}
		if r.Decision == policy.Forward.String() {
			// A tunnel rule forwarded it on an intercepted host: the
			// suggestion has the tunnel rule, never a credential for it.
			// One with %2F, %3F or %23 went through only because its
			// destination allowed them, which the suggestion's may not.
			if cp.EncodedSlash || cp.EncodedDelimiter {
				g.skipped[r.Path]++
				return nil
			}
			g.forward.add(r.Time)
			return nil
		}
		if r.Decision == policy.Inject.String() {
			if b == nil {
				return fmt.Errorf("suggest: %s: the request injected credential %q; pass the policy in force when it was recorded (--policy FILE), so that its credential and injector can be reused", r.Pos, r.Credential)
			}
			if _, ok := b.injects[r.Rule]; !ok {
				return fmt.Errorf("suggest: %s: the request was injected by rule %q, which the base policy %s does not have as an inject rule; pass the policy in force when it was recorded", r.Pos, r.Rule, opts.BaseFile)
			}
			// The rule's credential is given to the line's workload only
			// when the rule was the workload's: a line naming another
			// caller would widen the credential to it.
			if from := b.injFrom[r.Rule]; !slices.Contains(from, r.Workload) && (!slices.Contains(from, policy.FromAny) || r.Workload == policy.FromAnonymous) {
				return fmt.Errorf("suggest: %s: the line says rule %q injected credential %q for workload %q, but that rule of the base policy %s is from %s; pass the policy in force when it was recorded", r.Pos, r.Rule, r.Credential, r.Workload, opts.BaseFile, strings.Join(from, ", "))
			}
			if c := b.injCred[r.Rule]; c != r.Credential {
				return fmt.Errorf("suggest: %s: the line says rule %q injected credential %q, but that rule of the base policy %s injects %q; pass the policy in force when it was recorded", r.Pos, r.Rule, r.Credential, opts.BaseFile, c)
			}
		}
		// The path as the policy matched it: the gateway's own
		// canonical form, decoded. One with glob syntax, or that the
		// gateway admits only with encoded_slashes or
		// encoded_delimiters (which a base destination may carry over,
		// or not), cannot be written as a path glob that means it.
		p := cp.Decoded
		if cp.EncodedSlash || cp.EncodedDelimiter || strings.ContainsAny(p, "*?#[]{}\\;%") || strings.Contains(p, "//") {
			g.skipped[r.Path]++
			return nil
		}
		m := g.requests[p]
		if m == nil {
			m = map[string]*seen{}
			g.requests[p] = m
		}
		s := m[r.Method]
		if s == nil {
			s = &seen{}
			m[r.Method] = s
		}
		s.add(r.Time)
		return nil
	}
	var bad error // the first line suggest refuses
	err = lines(func(r audit.Record) error {
		bad = each(r)
		return bad
	})
	switch {
	case bad != nil:
		return bad
	case err != nil:
		return fmt.Errorf("suggest: %w", err)
	}
	if len(groups) == 0 {
		return fmt.Errorf("suggest: no admitted request in the audit lines (only inject, forward, tunnel and would_deny lines count)")
	}
	mergeObserved(groups)
	dropTwiceInjected(groups)
	return emit(w, b, groups, sources, n, opts)
}

// dropTwiceInjected removes a method and path that two inject rules of
// one caller injected to one host (a policy changed while the traffic was
// recorded) from both groups: whichever rule came first in the file would
// inject its credential into the other's requests. They are listed as
// not allowed instead.
func dropTwiceInjected(groups map[groupKey]*group) {
	for k, g := range groups {
		if k.rule == "" {
			continue
		}
		for k2, g2 := range groups {
			if k2.rule == "" || k2.rule <= k.rule || k2.workload != k.workload || k2.scheme != k.scheme || k2.host != k.host || k2.port != k.port {
				continue
			}
			for p, ms := range g.requests {
				for p2, ms2 := range g2.requests {
					if !mayMatch(p, p2) {
						continue
					}
					for m, s := range ms {
						if s2 := ms2[m]; s2 != nil {
							g.twice = append(g.twice, twice{method: m, path: p, rules: k.rule + ", " + k2.rule, seen: *s})
							g2.twice = append(g2.twice, twice{method: m, path: p2, rules: k.rule + ", " + k2.rule, seen: *s2})
						}
					}
				}
			}
		}
	}
	for _, g := range groups {
		for _, tw := range g.twice {
			delete(g.requests[tw.path], tw.method)
			if len(g.requests[tw.path]) == 0 {
				delete(g.requests, tw.path)
			}
		}
	}
}

// twice is a method and path two inject rules injected.
type twice struct {
	method, path, rules string
	seen                seen
}

// mergeObserved gives the requests a caller sent to a host without a
// credential (observe mode) the inject rule that injected its other
// requests there, when exactly one did; with several, which credential
// they would need is not known, and they stay apart (not allowed).
func mergeObserved(groups map[groupKey]*group) {
	for k, g := range groups {
		if k.rule != "" || len(g.requests) == 0 {
			continue
		}
		var into *group
		n := 0
		for k2, g2 := range groups {
			if k2.rule != "" && k2.workload == k.workload && k2.scheme == k.scheme && k2.host == k.host && k2.port == k.port {
				into, n = g2, n+1
			}
		}
		if n != 1 {
			g.ambiguous = n > 1
			continue
		}
		for p, ms := range g.requests {
			if into.requests[p] == nil {
				into.requests[p] = map[string]*seen{}
			}
			for m, s := range ms {
				x := into.requests[p][m]
				if x == nil {
					x = &seen{}
					into.requests[p][m] = x
				}
				x.merge(s)
			}
		}
		g.requests = map[string]map[string]*seen{}
	}
}

// rulePlan is one suggested rule.
type rulePlan struct {
	methods []string
	paths   []string
	comment []string // one per path
}

func emit(w io.Writer, b *base, groups map[groupKey]*group, sources map[string][]string, lines int, opts Options) error {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	keys := make([]groupKey, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, c := keys[i], keys[j]
		if a.workload != c.workload {
			return a.workload < c.workload
		}
		if a.host != c.host {
			return a.host < c.host
		}
		if a.port != c.port {
			return a.port < c.port
		}
		if a.scheme != c.scheme {
			return a.scheme < c.scheme
		}
		// A host's inject rules come before its tunnel rule (the group
		// without a rule), which would otherwise match their requests
		// first and forward them without the credential.
		if (a.rule == "") != (c.rule == "") {
			return c.rule == ""
		}
		return a.rule < c.rule
	})
	var out bytes.Buffer
	fmt.Fprintf(&out, "# Suggested by `credgate policy suggest` on %s from %d audit lines.\n", now.UTC().Format(time.RFC3339), lines)
	out.WriteString("# Each rule allows only the methods and paths seen (IDs collapsed into `*`; a `*` in a\n# policy glob also matches '/'). Review before use; check with `credgate policy diff`.\n")

	// Workloads.
	var wls []string
	for _, k := range keys {
		if k.workload != policy.FromAnonymous && !slices.Contains(wls, k.workload) {
			wls = append(wls, k.workload)
		}
	}
	if len(wls) > 0 {
		out.WriteString("workloads:\n")
		for _, name := range wls {
			if b != nil && b.workloads[name] != nil {
				fmt.Fprintf(&out, "  %s:\n", yamlString(name))
				writeNode(&out, withoutKey(b.workloads[name], "mode"), 4)
				continue
			}
			srcs := sources[name]
			sort.Strings(srcs)
			var cidrs []string
			for _, s := range srcs {
				bits := "/32"
				if strings.Contains(s, ":") {
					bits = "/128"
				}
				cidrs = append(cidrs, yamlString(s+bits))
			}
			if len(cidrs) == 0 {
				return fmt.Errorf("suggest: workload %q has no source address in the audit lines and no base policy defines it; pass --policy FILE", name)
			}
			fmt.Fprintf(&out, "  %s:\n    # The source addresses seen; replace with the workload's real selectors (spiffe, namespace, ...).\n    cidrs: [%s]\n", yamlString(name), strings.Join(cidrs, ", "))
		}
	}

	// Destinations: one per host and port.
	out.WriteString("destinations:\n")
	destName := func(k groupKey) string {
		n := k.host
		if k.port != defaultPort(k.scheme) {
			n += "-" + strconv.Itoa(k.port)
		}
		return n
	}
	done := map[string]bool{}
	for _, k := range keys {
		n := destName(k)
		if done[n] {
			continue
		}
		done[n] = true
		fmt.Fprintf(&out, "  %s:\n    hosts: [%s]\n", yamlString(n), yamlString(k.host))
		if k.port != defaultPort(k.scheme) {
			fmt.Fprintf(&out, "    ports: [%d]\n", k.port)
		}
		allowPrivate := false
		if b != nil {
			if d := b.destFor(k.host); d != nil {
				for i := 0; i+1 < len(d.settings); i += 2 {
					fmt.Fprintf(&out, "    %s: %s\n", d.settings[i].Value, d.settings[i+1].Value)
					allowPrivate = allowPrivate || d.settings[i].Value == "allow_private"
				}
			}
		}
		if _, err := netip.ParseAddr(k.host); err == nil && !allowPrivate {
			// Whether the gateway let it through because a destination
			// set allow_private is not in the audit line; suggest never
			// widens to special-purpose addresses on its own.
			fmt.Fprintf(&out, "    # %s is an IP literal: if it is a special-purpose address (loopback, private, link-local, ...), the gateway refuses it (private_address) unless this destination sets allow_private: true; add it if intended\n", k.host)
		}
	}

	// Credentials the inject rules use.
	var creds []string
	for _, k := range keys {
		if k.rule == "" || len(groups[k].requests) == 0 {
			continue
		}
		if c := b.injCred[k.rule]; c != "" && !slices.Contains(creds, c) {
			creds = append(creds, c)
		}
	}
	sort.Strings(creds)
	if len(creds) > 0 {
		out.WriteString("credentials:\n")
		for _, c := range creds {
			n := b.credentials[c]
			if n == nil {
				return fmt.Errorf("suggest: credential %q is not defined in the base policy %s", c, opts.BaseFile)
			}
			fmt.Fprintf(&out, "  %s:\n", yamlString(c))
			writeNode(&out, n, 4)
		}
	}

	// Rules.
	out.WriteString("rules:\n")
	names := map[string]int{}
	ruleName := func(base string) string {
		names[base]++
		if names[base] == 1 {
			return base
		}
		return base + "-" + strconv.Itoa(names[base])
	}
	for _, k := range keys {
		g := groups[k]
		from := yamlString(k.workload)
		dest := yamlString(destName(k))
		inj := k.rule
		if len(g.requests) > 0 && inj != "" {
			for _, rp := range g.plans(opts.MaxLiterals, siblingPaths(groups, k)) {
				// A method is any token the gateway lets through
				// (canonical.Method), '*', '&', '!', '#', '~' and
				// quotes included: YAML syntax unless quoted.
				ms := make([]string, len(rp.methods))
				for i, m := range rp.methods {
					ms[i] = yamlString(m)
				}
				fmt.Fprintf(&out, "  - name: %s\n    from: %s\n    to: %s\n    methods: [%s]\n    paths:\n", yamlString(ruleName(k.workload+"-"+destName(k))), from, dest, strings.Join(ms, ", "))
				for i, p := range rp.paths {
					fmt.Fprintf(&out, "      - %s  # %s\n", yamlString(p), rp.comment[i])
				}
				out.WriteString("    inject:\n")
				writeNode(&out, b.injects[inj], 6)
				if b.plaintext[inj] && k.scheme == "http" {
					out.WriteString("    plaintext: true\n")
				}
			}
		}
		if len(g.requests) > 0 && inj == "" {
			// Seen without a credential in observe mode, on a host no
			// inject rule of the caller covers (or several do): a tunnel
			// rule would open the whole host (past any deny rule that
			// made the gateway intercept), and which credential is not
			// known, so nothing is allowed; the comment says what.
			why := "no rule allows a path without one: write an inject rule, or a tunnel rule for the whole host"
			if g.ambiguous {
				why = "several inject rules of this caller injected other requests to this host, so which credential it needs is not known: add its path to one of them"
			}
			for _, p := range sortedKeys(g.requests) {
				for _, m := range sortedKeys(g.requests[p]) {
					s := g.requests[p][m]
					fmt.Fprintf(&out, "  # not allowed: %s %s://%s%s (%s ×%d, first %s, last %s) went through without a credential in observe mode; %s\n",
						m, k.scheme, k.host, yamlString(p), m, s.n, stamp(s.first), stamp(s.last), why)
				}
			}
		}
		if g.tunnel.n > 0 || g.forward.n > 0 {
			// Spliced tunnels, and requests a tunnel rule forwarded:
			// exactly what a tunnel rule allows.
			if g.tunnel.n > 0 {
				fmt.Fprintf(&out, "  # %d CONNECT(s) tunnelled, first %s, last %s\n", g.tunnel.n, stamp(g.tunnel.first), stamp(g.tunnel.last))
			}
			if g.forward.n > 0 {
				fmt.Fprintf(&out, "  # %d request(s) forwarded by a tunnel rule without a credential, first %s, last %s\n", g.forward.n, stamp(g.forward.first), stamp(g.forward.last))
			}
			fmt.Fprintf(&out, "  - name: %s\n    from: %s\n    to: %s\n    action: tunnel\n", yamlString(ruleName(k.workload+"-"+destName(k)+"-tunnel")), from, dest)
		}
		sort.Slice(g.twice, func(i, j int) bool {
			return g.twice[i].path+" "+g.twice[i].method < g.twice[j].path+" "+g.twice[j].method
		})
		for _, tw := range g.twice {
			fmt.Fprintf(&out, "  # not allowed: %s %s://%s%s (%s ×%d, first %s, last %s) was injected by two rules (%s), so which credential it needs is not known: add it to one of them\n",
				tw.method, k.scheme, k.host, yamlString(tw.path), tw.method, tw.seen.n, stamp(tw.seen.first), stamp(tw.seen.last), tw.rules)
		}
		var skipped []string
		for p := range g.skipped {
			skipped = append(skipped, p)
		}
		sort.Strings(skipped)
		for _, p := range skipped {
			fmt.Fprintf(&out, "  # not expressible as a path glob, not allowed: %s (%d)\n", strconv.Quote(p), g.skipped[p])
		}
	}
	out.WriteString("default: deny\n")
	_, err := w.Write(out.Bytes())
	return err
}

// plans groups the group's path templates by their exact set of methods,
// so that a rule's methods × paths is exactly what was seen.
//
// others are the paths other inject rules of the caller injected to the
// same host: a template that could match one of them is not used (its
// paths stay literal), since the first rule in the file wins and that
// request would get this group's credential.
func (g *group) plans(maxLiterals int, others []string) []rulePlan {
	paths := make([]string, 0, len(g.requests))
	for p := range g.requests {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	tmpl := templates(paths, maxLiterals)
	for _, p := range paths {
		for _, o := range others {
			if mayMatch(tmpl[p], o) {
				tmpl[p] = p
				break
			}
		}
	}
	type agg struct {
		methods map[string]*seen
	}
	byTmpl := map[string]*agg{}
	for _, p := range paths {
		t := tmpl[p]
		a := byTmpl[t]
		if a == nil {
			a = &agg{methods: map[string]*seen{}}
			byTmpl[t] = a
		}
		for m, s := range g.requests[p] {
			x := a.methods[m]
			if x == nil {
				x = &seen{}
				a.methods[m] = x
			}
			if x.n == 0 || s.first.Before(x.first) {
				x.first = s.first
			}
			if s.last.After(x.last) {
				x.last = s.last
			}
			x.n += s.n
		}
	}
	byMethods := map[string]*rulePlan{}
	var order []string
	ts := make([]string, 0, len(byTmpl))
	for t := range byTmpl {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	for _, t := range ts {
		a := byTmpl[t]
		var ms []string
		for m := range a.methods {
			ms = append(ms, m)
		}
		sort.Strings(ms)
		key := strings.Join(ms, ",")
		rp := byMethods[key]
		if rp == nil {
			rp = &rulePlan{methods: ms}
			byMethods[key] = rp
			order = append(order, key)
		}
		var parts []string
		for _, m := range ms {
			s := a.methods[m]
			parts = append(parts, fmt.Sprintf("%s ×%d first %s last %s", m, s.n, stamp(s.first), stamp(s.last)))
		}
		rp.paths = append(rp.paths, t)
		rp.comment = append(rp.comment, strings.Join(parts, "; "))
	}
	out := make([]rulePlan, 0, len(order))
	for _, k := range order {
		out = append(out, *byMethods[k])
	}
	return out
}

// siblingPaths returns the paths the other inject groups of k's caller
// and destination hold.
func siblingPaths(groups map[groupKey]*group, k groupKey) []string {
	var out []string
	for k2, g2 := range groups {
		if k2.rule != "" && k2.rule != k.rule && k2.workload == k.workload && k2.scheme == k.scheme && k2.host == k.host && k2.port == k.port {
			for p := range g2.requests {
				out = append(out, p)
			}
		}
	}
	sort.Strings(out)
	return out
}

// mayMatch reports whether the path glob t could match path p under any
// destination setting: case-insensitively, with or without one trailing
// '/', a '*' matching any run of characters ('/' included). It errs
// towards yes: a yes only keeps a path literal.
func mayMatch(t, p string) bool {
	t, p = strings.ToLower(t), strings.ToLower(p)
	return globMatch(t, p) || globMatch(t, p+"/") || len(p) > 1 && strings.HasSuffix(p, "/") && globMatch(t, p[:len(p)-1])
}

// globMatch matches p against t, where '*' matches any run of
// characters.
func globMatch(t, p string) bool {
	parts := strings.Split(t, "*")
	if len(parts) == 1 {
		return t == p
	}
	if !strings.HasPrefix(p, parts[0]) {
		return false
	}
	p = p[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, part := range parts[1 : len(parts)-1] {
		i := strings.Index(p, part)
		if i < 0 {
			return false
		}
		p = p[i+len(part):]
	}
	return len(p) >= len(last) && strings.HasSuffix(p, last)
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func defaultPort(scheme string) int {
	if scheme == "http" {
		return 80
	}
	return 443
}

var plainRE = regexp.MustCompile(`^[A-Za-z0-9_./-]+$`)

// yamlString writes s as a YAML scalar that reads back as the string s:
// bare when YAML itself resolves the bare form to that string (not a
// number, bool, null, timestamp or other tag: 0x1F, 1_000, ~, Yes,
// 2026-12-02 stay quoted), else double-quoted. s is valid UTF-8 (the
// audit lines' fields are checked, and decoded paths are valid UTF-8), so
// its JSON form is a YAML double-quoted scalar of the same characters.
// TestYAMLStringRoundTrip holds it to yaml.v3.
func yamlString(s string) string {
	if plainRE.MatchString(s) && !strings.HasPrefix(s, "-") && !strings.HasPrefix(s, ".") {
		var doc yaml.Node
		if yaml.Unmarshal([]byte(s), &doc) == nil && len(doc.Content) == 1 {
			if n := doc.Content[0]; n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" && n.Value == s {
				return s
			}
		}
	}
	b, _ := json.Marshal(s)
	return string(b)
}

// withoutKey returns the mapping n without key (a copy; n is unchanged):
// the suggested policy is meant to be enforced, so a workload's
// `mode: observe` is not carried over.
func withoutKey(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return n
	}
	c := *n
	c.Content = nil
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value != key {
			c.Content = append(c.Content, n.Content[i], n.Content[i+1])
		}
	}
	return &c
}

// writeNode writes a YAML node indented by indent spaces.
func writeNode(out *bytes.Buffer, n *yaml.Node, indent int) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	_ = enc.Encode(n)
	_ = enc.Close()
	pad := strings.Repeat(" ", indent)
	for _, l := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
		out.WriteString(pad + l + "\n")
	}
}
