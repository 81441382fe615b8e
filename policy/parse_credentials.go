package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/internal/module"
	"github.com/credgate/credgate/providers"
)

func (ps *parser) parseCredentials(f field) []*credential {
	ps.creds = map[string]*credential{}
	keys := map[*credential]*yaml.Node{}
	placeholders := map[string]*yaml.Node{}
	var out []*credential
	for _, e := range ps.entries(f.val, "credentials") {
		name := e.key.Value
		what := fmt.Sprintf("credential %q", name)
		if msg := checkCredentialName(name); msg != "" {
			ps.errorf(e.key, "credential name %s", msg)
			continue
		}
		ps.creds[name] = nil // known, even if broken: rules naming it get no second error
		body := deref(e.val)
		if body.Kind != yaml.MappingNode {
			ps.errorf(body, "%s must be a mapping with a provider key, like {provider: static, env: API_KEY}", what)
			continue
		}
		settings, extracted := ps.split(body, what, "provider", "placeholder")
		var ph *Placeholder
		if pf, ok := extracted["placeholder"]; ok {
			if ph = ps.parsePlaceholder(pf, name, placeholders); ph == nil {
				continue
			}
			ph.seed = ps.placeholders.seed
		}
		pn, ok := extracted["provider"]
		if !ok {
			ps.errorf(e.key, "%s has no provider; add provider: <name> (available: %s)", what, strings.Join(providers.Names(), ", "))
			continue
		}
		prov, ok := ps.str(pn.val, what+" provider")
		if !ok {
			continue
		}
		if _, ok := providers.Lookup(prov); !ok {
			ps.errorf(deref(pn.val), "%s: unknown provider %q; available providers are %s", what, prov, strings.Join(providers.Names(), ", "))
			continue
		}
		pr, err := providers.Load(ps.ctx, prov, settings)
		if err != nil {
			ps.moduleError(body, settings, fmt.Sprintf("%s (provider %s)", what, prov), err)
			continue
		}
		c := &credential{name: name, provider: prov, version: settingsHash(prov, settings), p: pr, placeholder: ph, key: e.key, settings: settings}
		ps.built = append(ps.built, c)
		ps.creds[name] = c
		keys[c] = e.key
		out = append(out, c)
	}
	ps.composeCredentials(out, keys)
	return out
}

// composeCredentials wires credentials that read other credentials
// (providers.Composer): it resolves their inputs by name, refuses cycles,
// folds each input's version into the reader's so that editing an input
// changes the reader's cache keys, and hands each Composer its inputs.
func (ps *parser) composeCredentials(creds []*credential, keys map[*credential]*yaml.Node) {
	inputs := ps.credentialInputs(creds, keys)
	cc := cycleCheck{ps: ps, keys: keys, inputs: inputs, state: map[*credential]int{}}
	acyclic := true
	for _, c := range creds {
		if cc.state[c] == visitUnseen {
			acyclic = cc.visit(c) && acyclic
		}
	}
	if !acyclic || len(ps.errs) > 0 {
		// The policy will not load: wire nothing (a provider whose
		// Inputs was abandoned may still be running it).
		return
	}
	versioned := map[*credential]bool{}
	for _, c := range creds {
		comp, ok := c.p.(providers.Composer)
		if !ok {
			continue
		}
		composedVersion(c, inputs, versioned)
		c.inputs = inputs[c]
		m := map[string]providers.Provider{}
		for _, in := range inputs[c] {
			m[in.name] = in.p
		}
		// Bounded like every step of a plugin's load: a SetInputs that
		// never returns fails this load. The provider it still runs in
		// is released once it returns, not while it runs.
		if _, err := module.Step(ps.ctx, fmt.Sprintf("provider %q: SetInputs", c.provider), func(context.Context) (struct{}, error) {
			comp.SetInputs(m)
			return struct{}{}, nil
		}, func() { _ = cleanup([]*credential{c}, nil) }); err != nil {
			ps.abandon(c, keys[c], err)
		}
	}
}

// abandon reports err, a step of c's provider that failed or was
// abandoned (module.Step), at key; an abandoned provider is no longer
// released with the others when the load fails: the step's late
// function releases it once the step returns.
func (ps *parser) abandon(c *credential, key *yaml.Node, err error) {
	ps.errorf(key, "credential %q: %v", c.name, err)
	ps.errs[len(ps.errs)-1].Err = err
	if !errors.Is(err, module.ErrAbandoned) {
		return
	}
	ps.built = slices.DeleteFunc(ps.built, func(b *credential) bool { return b == c })
}

// credentialInputs maps each Composer credential to the credentials it
// reads, reporting names that are not defined.
func (ps *parser) credentialInputs(creds []*credential, keys map[*credential]*yaml.Node) map[*credential][]*credential {
	inputs := map[*credential][]*credential{}
	for _, c := range creds {
		comp, ok := c.p.(providers.Composer)
		if !ok {
			continue
		}
		names, err := module.Step(ps.ctx, fmt.Sprintf("provider %q: Inputs", c.provider), func(context.Context) ([]string, error) {
			return comp.Inputs(), nil
		}, func() { _ = cleanup([]*credential{c}, nil) })
		if err != nil {
			ps.abandon(c, keys[c], err)
			continue
		}
		for _, in := range names {
			ic, known := ps.creds[in]
			switch {
			case !known:
				ps.errorf(keys[c], "credential %q reads credential %q, which is not defined under credentials (defined: %s)", c.name, in, ps.credNames())
			case ic != nil:
				inputs[c] = append(inputs[c], ic)
			}
		}
	}
	return inputs
}

// Depth-first states of the cycle check.
const (
	visitUnseen = iota
	visitActive
	visitDone
)

// cycleCheck walks the credential input graph depth-first and reports
// each cycle once, at the credential where it was entered.
type cycleCheck struct {
	ps     *parser
	keys   map[*credential]*yaml.Node
	inputs map[*credential][]*credential
	state  map[*credential]int
	path   []*credential
}

// visit reports whether no cycle is reachable from c.
func (cc *cycleCheck) visit(c *credential) bool {
	switch cc.state[c] {
	case visitActive:
		names := []string{}
		start := slices.Index(cc.path, c)
		for _, p := range cc.path[start:] {
			names = append(names, strconv.Quote(p.name))
		}
		names = append(names, strconv.Quote(c.name))
		cc.ps.errorf(cc.keys[c], "credentials read each other in a cycle: %s", strings.Join(names, " -> "))
		return false
	case visitDone:
		return true
	}
	cc.state[c] = visitActive
	cc.path = append(cc.path, c)
	ok := true
	for _, in := range cc.inputs[c] {
		ok = cc.visit(in) && ok
	}
	cc.path = cc.path[:len(cc.path)-1]
	cc.state[c] = visitDone
	return ok
}

// composedVersion folds the versions of c's inputs (recursively) into
// c.version, once per credential, and returns it. The graph is acyclic.
func composedVersion(c *credential, inputs map[*credential][]*credential, versioned map[*credential]bool) string {
	if versioned[c] || len(inputs[c]) == 0 {
		return c.version
	}
	h := sha256.New()
	h.Write([]byte(c.version))
	for _, in := range inputs[c] {
		h.Write([]byte{0})
		h.Write([]byte(in.name))
		h.Write([]byte{0})
		h.Write([]byte(composedVersion(in, inputs, versioned)))
	}
	c.version = hex.EncodeToString(h.Sum(nil))[:16]
	versioned[c] = true
	return c.version
}

// settingsHash is a stable digest of a module's settings: the same settings
// give the same hash whatever their order, comments or layout, and
// settings that differ anywhere, however deep or long, give another. It
// is a digest of digests: each node's is made once (an alias is its
// anchor's, already made), so a small file whose aliases make a huge tree
// costs the nodes it has, and no part of the settings is left out (the
// cache key's Version; a budget that stopped the walk let definitions
// differing past it share cached credentials).
func settingsHash(module string, n *yaml.Node) string {
	memo := map[*yaml.Node][sha256.Size]byte{}
	var digest func(n *yaml.Node) [sha256.Size]byte
	digest = func(n *yaml.Node) [sha256.Size]byte {
		n = deref(n)
		if d, ok := memo[n]; ok {
			return d
		}
		// A node met again while its digest is being made (no YAML
		// parser builds such a graph) hashes as this marker.
		memo[n] = sha256.Sum256([]byte("cycle"))
		h := sha256.New()
		switch n.Kind {
		case yaml.MappingNode:
			type kv struct {
				k      string
				kd, vd [sha256.Size]byte
			}
			kvs := make([]kv, 0, len(n.Content)/2)
			for i := 0; i+1 < len(n.Content); i += 2 {
				kvs = append(kvs, kv{deref(n.Content[i]).Value, digest(n.Content[i]), digest(n.Content[i+1])})
			}
			sort.SliceStable(kvs, func(i, j int) bool { return kvs[i].k < kvs[j].k })
			fmt.Fprintf(h, "{%d", len(kvs))
			for _, e := range kvs {
				h.Write(e.kd[:])
				h.Write(e.vd[:])
			}
		case yaml.SequenceNode:
			fmt.Fprintf(h, "[%d", len(n.Content))
			for _, c := range n.Content {
				d := digest(c)
				h.Write(d[:])
			}
		default:
			fmt.Fprintf(h, "%q%q", n.ShortTag(), n.Value)
		}
		var d [sha256.Size]byte
		h.Sum(d[:0])
		memo[n] = d
		return d
	}
	h := sha256.New()
	io.WriteString(h, module)
	d := digest(n)
	h.Write(d[:])
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// checkCredentialName checks a credential's name: checkName, and neither
// '@' nor the name of the custody tripwire. Audit lines, logs and kill
// switch reasons name a tripwire CREDENTIAL, CREDENTIAL@WORKLOAD for a
// generated placeholder (PlaceholderUse.Name) or CustodyTripwireName; a
// workload name may hold '@', so the first '@' must end the credential
// for every name to say one (credential, workload) pair.
func checkCredentialName(name string) string {
	if msg := checkName(name); msg != "" {
		return msg
	}
	if strings.Contains(name, "@") {
		return fmt.Sprintf("%q must not contain '@': a generated placeholder is named CREDENTIAL@WORKLOAD in audit lines and logs, and a workload name may hold '@'; rename the credential (e.g. %q)", name, strings.ReplaceAll(name, "@", "-"))
	}
	if name == CustodyTripwireName {
		return fmt.Sprintf("%q is reserved: audit lines name custody placeholders' tripwire so; choose another name", name)
	}
	return ""
}
