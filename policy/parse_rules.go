package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/internal/module"
)

func (ps *parser) parseRules(f field) []*rule {
	n := deref(f.val)
	if f.val == nil || isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		ps.errorf(n, "rules must be a list of rules, each starting with '- name:'")
		return nil
	}
	// names holds each name's rule: its node and index path.
	type named struct {
		node *yaml.Node
		path string
	}
	names := map[string]named{}
	var out []*rule
	for i, rn := range n.Content {
		rn = deref(rn)
		// Every message about a rule names it by its index path
		// (rules[2], counted from 0 as in the file's list), and by its
		// name once it has a valid, unique one: a name may be missing,
		// invalid or repeated, a position never is.
		path := fmt.Sprintf("rules[%d]", i)
		what := path
		if rn.Kind != yaml.MappingNode {
			ps.errorf(rn, "%s must be a mapping with name, from, to and action or inject", what)
			continue
		}
		fs := ps.fields(rn, what, "name", "from", "to", "action", "methods", "paths", "when", "inject", "plaintext", "rate_limit", "require_placeholder", "scrub", "custody", "ranges")
		r := &rule{index: len(out), path: path, line: rn.Line, col: rn.Column, version: settingsHash("rule", rn)}
		if nf, ok := fs["name"]; ok {
			if name, ok := ps.str(nf.val, what+" name"); ok {
				if msg := checkName(name); msg != "" {
					ps.errorf(deref(nf.val), "%s: name %s", what, msg)
				} else if prev, dup := names[name]; dup {
					ps.errorf(deref(nf.val), "%s: rule name %q is already used by %s (line %d); rule names must be unique", what, name, prev.path, prev.node.Line)
				} else {
					names[name] = named{deref(nf.val), path}
					r.name = name
					what = r.label()
				}
			}
		} else {
			ps.errorf(rn, "%s has no name; add name: <unique name>", what)
		}
		ps.parseFrom(r, fs, rn, what)
		ps.parseTo(r, fs, rn, what)
		ps.parseAction(r, fs, rn, what)
		if m, ok := fs["methods"]; ok {
			vals, nodes := ps.list(m.val, what+" methods", false)
			r.methods = []string{}
			for i, v := range vals {
				if !isToken(v) {
					ps.errorf(nodes[i], "%s: %q is not an HTTP method", what, v)
					continue
				}
				if up := strings.ToUpper(v); !slices.Contains(r.methods, up) {
					r.methods = append(r.methods, up)
				}
			}
		}
		if pf, ok := fs["paths"]; ok {
			vals, nodes := ps.list(pf.val, what+" paths", false)
			r.paths = []glob{}
			for i, v := range vals {
				g, msg := compileGlob(v)
				if msg != "" {
					ps.errorf(nodes[i], "%s: %s", what, msg)
					continue
				}
				r.paths = append(r.paths, g)
			}
		}
		if r.act == ruleTunnel {
			for _, k := range []string{"methods", "paths"} {
				if kf, ok := fs[k]; ok {
					ps.errorf(kf.key, "%s: a tunnel rule cannot have %s, because the gateway does not see requests inside a tunnel; remove %s or use inject or deny", what, k, k)
				}
			}
		}
		if wf, ok := fs["when"]; ok {
			ps.parseWhen(r, wf, what)
		}
		if pt, ok := fs["plaintext"]; ok {
			if r.act != ruleInject {
				ps.errorf(pt.key, "%s: plaintext applies only to inject rules; remove it", what)
			} else {
				r.plaintext = ps.boolean(pt.val, what+" plaintext")
			}
		}
		if rl, ok := fs["rate_limit"]; ok {
			ps.rateLimitOn(r, rl, what)
		}
		if rp, ok := fs["require_placeholder"]; ok {
			ps.requirePlaceholder(r, rp, what)
		}
		r.scrub = Scrub{Encoded: EncodedDecode}
		if sf, ok := fs["scrub"]; ok {
			ps.parseScrub(r, sf, what)
		}
		if cf, ok := fs["custody"]; ok {
			ps.parseCustody(r, cf, what)
		}
		r.ranges = defaultRanges(r)
		if rf, ok := fs["ranges"]; ok {
			ps.parseRanges(r, rf, what)
		}
		out = append(out, r)
	}
	return out
}

// parseWhen compiles a rule's condition, reporting CEL errors at their
// position in the file.
func (ps *parser) parseWhen(r *rule, f field, what string) {
	src, ok := ps.str(f.val, what+" when")
	if !ok {
		return
	}
	n := deref(f.val)
	if strings.TrimSpace(src) == "" {
		ps.errorf(n, "%s: when is empty; write a condition such as workload.posture.patched, or remove it", what)
		return
	}
	c, issues := compileCondition(src)
	for _, is := range issues {
		line, col := ps.conditionPosition(n, src, is.line, is.col)
		ps.errs = append(ps.errs, &Error{File: ps.file, Line: line, Col: col, Msg: fmt.Sprintf("%s when: %s", what, is.msg)})
	}
	if c == nil {
		return
	}
	if r.act == ruleTunnel && c.usesRequest {
		ps.errorf(n, "%s: a tunnel rule's condition cannot use request, because the gateway does not see requests inside a tunnel; use workload and now only, or use inject or deny", what)
		return
	}
	r.cond = c
}

func (ps *parser) parseFrom(r *rule, fs map[string]field, rn *yaml.Node, what string) {
	f, ok := fs["from"]
	if !ok {
		ps.errorf(rn, "%s has no from; add from: <workload>, \"*\" or anonymous", what)
		return
	}
	vals, nodes := ps.list(f.val, what+" from", true)
	for i, v := range vals {
		switch {
		case v == FromAny:
			r.fromAny = true
		case v == FromAnonymous:
			r.fromAnon = true
		case ps.workloads[v]:
			if !slices.Contains(r.from, v) {
				r.from = append(r.from, v)
			}
		default:
			ps.errorf(nodes[i], "%s: from names unknown workload %q; define it under workloads or use one of %s", what, v, known(ps.workloads, FromAny, FromAnonymous))
		}
	}
}

func (ps *parser) parseTo(r *rule, fs map[string]field, rn *yaml.Node, what string) {
	f, ok := fs["to"]
	if !ok {
		ps.errorf(rn, "%s has no to; add to: <destination>", what)
		return
	}
	vals, nodes := ps.list(f.val, what+" to", true)
	for i, v := range vals {
		d, ok := ps.dests[v]
		if !ok {
			ps.errorf(nodes[i], "%s: to names unknown destination %q; define it under destinations (defined: %s)", what, v, known(ps.destNames()))
			continue
		}
		if !slices.Contains(r.to, d) {
			r.to = append(r.to, d)
		}
	}
}

func (ps *parser) destNames() map[string]bool {
	m := make(map[string]bool, len(ps.dests))
	for k := range ps.dests {
		m[k] = true
	}
	return m
}

func (ps *parser) parseAction(r *rule, fs map[string]field, rn *yaml.Node, what string) {
	inj, hasInject := fs["inject"]
	af, hasAction := fs["action"]
	act := ""
	if hasAction {
		var ok bool
		if act, ok = ps.str(af.val, what+" action"); !ok {
			return
		}
	}
	switch {
	case !hasAction && !hasInject:
		ps.errorf(rn, "%s has neither action nor inject; add action: tunnel, action: deny, or an inject block", what)
		return
	case act == "deny" || act == "tunnel":
		if hasInject {
			ps.errorf(inj.key, "%s: action %s cannot have an inject block; remove inject or the action", what, act)
			return
		}
		r.act = map[string]ruleAction{"deny": ruleDeny, "tunnel": ruleTunnel}[act]
		return
	case act == "inject" || act == "":
		r.act = ruleInject
		if !hasInject {
			ps.errorf(deref(af.val), "%s: action inject needs an inject block with credential and as", what)
			return
		}
	default:
		ps.errorf(deref(af.val), "%s: unknown action %q; use tunnel, deny or inject", what, act)
		return
	}
	body := deref(inj.val)
	if body.Kind != yaml.MappingNode {
		ps.errorf(body, "%s: inject must be a mapping like {credential: name, as: bearer}", what)
		return
	}
	settings, got := ps.split(body, what+" inject", "credential", "as", "substitute_in", "allow_copy_source", "allow_batch", "batch")
	cf, ok := got["credential"]
	if !ok {
		ps.errorf(inj.key, "%s: inject has no credential; add credential: <name>", what)
	}
	asf, ok2 := got["as"]
	if !ok2 {
		ps.errorf(inj.key, "%s: inject has no as; add as: <injector> (available: %s)", what, strings.Join(injectors.Names(), ", "))
	}
	if !ok || !ok2 {
		return
	}
	credName, ok := ps.str(cf.val, what+" inject credential")
	if !ok {
		return
	}
	as, ok := ps.str(asf.val, what+" inject as")
	if !ok {
		return
	}
	cred, known := ps.creds[credName]
	if !known {
		ps.errorf(deref(cf.val), "%s: unknown credential %q; define it under credentials (defined: %s)", what, credName, ps.credNames())
	}
	if _, ok := injectors.Lookup(as); !ok {
		ps.errorf(deref(asf.val), "%s: unknown injector %q; available injectors are %s", what, as, strings.Join(injectors.Names(), ", "))
		return
	}
	inject, err := injectors.Load(ps.ctx, as, settings)
	if err != nil {
		ps.moduleError(body, settings, fmt.Sprintf("%s inject (as %s)", what, as), err)
		return
	}
	ps.builtInjectors = append(ps.builtInjectors, inject)
	if hc, ok := inject.(injectors.HostChecker); ok {
	hosts:
		for _, d := range r.to {
			for _, h := range d.hosts {
				p := h.name
				if h.wildcard {
					p = "*." + p
				}
				_, err := module.Step(ps.ctx, fmt.Sprintf("injector %q: CheckHost", as), func(context.Context) (struct{}, error) { return struct{}{}, hc.CheckHost(p) }, nil)
				if err != nil {
					ps.errorf(deref(asf.val), "%s: destination %q: %v", what, d.name, err)
					ps.errs[len(ps.errs)-1].Err = err
				}
				if errors.Is(err, module.ErrAbandoned) {
					break hosts // one hung call is enough to fail the load
				}
			}
		}
	}
	ps.checkInjectWildcards(r, cf.key, what)
	if cred == nil {
		return // reported above or in credentials
	}
	r.plan = &InjectPlan{
		Credential:        cred.name,
		CredentialVersion: cred.version,
		ProviderName:      cred.provider,
		Provider:          cred.p,
		As:                as,
		Injector:          inject,
		Placeholder:       cred.placeholder,
		inputs:            cred.inputTree(),
		uses:              cred.uses(),
	}
	sf, set := got["substitute_in"]
	ps.substituteIn(r.plan, sf, set, inj.key, what)
	if cs, ok := got["allow_copy_source"]; ok {
		r.plan.AllowCopySource = ps.boolean(cs.val, what+" inject allow_copy_source")
	}
	if bf, ok := got["allow_batch"]; ok {
		r.plan.AllowBatch = ps.boolean(bf.val, what+" inject allow_batch")
	}
	if mf, ok := got["batch"]; ok {
		r.plan.Batch = ps.parseBatchMark(mf, what)
	}
}

func (ps *parser) credNames() string {
	m := make(map[string]bool, len(ps.creds))
	for k := range ps.creds {
		m[k] = true
	}
	return known(m)
}

// known lists names for an error message, sorted, at most 10.
func known(m map[string]bool, extra ...string) string {
	names := make([]string, 0, len(m)+len(extra))
	for k := range m {
		names = append(names, strconv.Quote(k))
	}
	sort.Strings(names)
	if len(names) > 10 {
		names = append(names[:10], "...")
	}
	for _, e := range extra {
		names = append(names, strconv.Quote(e))
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// checkInjectWildcards refuses an inject rule whose destination has a
// wildcard over a public suffix (*.com, *.co.uk): anyone can register a
// name under it, and the rule would hand them the credential. Wildcards
// under a private suffix a provider runs (*.s3.amazonaws.com) stay
// allowed, and so do tunnel and deny rules to such a destination (they
// send no credential).
func (ps *parser) checkInjectWildcards(r *rule, at *yaml.Node, what string) {
	for _, d := range r.to {
		for _, h := range d.hosts {
			if !h.wildcard {
				continue
			}
			if suffix, icann := publicsuffix.PublicSuffix(h.name); icann && suffix == h.name {
				ps.errorf(at, "%s: destination %q has host \"*.%s\", which covers every domain under the public suffix %q (anyone can register one there): the credential would be sent to all of them; list the domain you mean, like *.example.%s", what, d.name, h.name, h.name, h.name)
			}
		}
	}
}
