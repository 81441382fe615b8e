package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/internal/module"
	"github.com/credgate/credgate/internal/yamlstrict"
)

// Reserved `from` values.
const (
	// FromAny matches any identified workload.
	FromAny = "*"
	// FromAnonymous matches callers that matched no workload.
	FromAnonymous = "anonymous"
)

// Parse parses, validates and compiles a policy. filename is used in error
// positions only. Every problem found is reported, as an ErrorList of
// "FILE:LINE:COL: message" entries sorted by position. Providers are built
// (providers.Load, which may provision them using ctx) and injectors are
// built (injectors.Load) here, so bad settings are caught at load time;
// when Parse fails it releases whatever it built.
func Parse(ctx context.Context, filename string, data []byte) (*Policy, error) {
	ps := &parser{ctx: ctx, file: filename, src: data}
	var p *Policy
	// A plugin's method that panics while the policy loads (CacheScope,
	// SetInputs, CheckHost, ...; Load guards the lifecycle's own) fails
	// this load: on a reload, the last good policy stays in force.
	if err := module.Guard("policy "+filename+": loading its plugins", func() error { p = ps.parse(data); return nil }); err != nil {
		_ = cleanup(ps.built, ps.builtInjectors)
		return nil, err
	}
	if len(ps.errs) > 0 {
		_ = cleanup(ps.built, ps.builtInjectors)
		ps.errs.sort()
		return nil, ps.errs
	}
	return p, nil
}

type parser struct {
	ctx  context.Context
	file string
	src  []byte
	errs ErrorList
	// warns are problems that do not stop the policy from loading
	// (Policy.Warnings).
	warns ErrorList
	// srcLines is src split into lines, for positions inside conditions.
	srcLines []string
	built    []*credential // providers built so far, released on failure
	// builtInjectors are the injectors built so far, released on failure.
	builtInjectors []injectors.Injector

	workloads map[string]bool
	// wlVersions digest each workload's settings (settingsHash).
	wlVersions map[string]string
	dests      map[string]*destination
	creds      map[string]*credential

	// wlLimits are the workloads' rate_limit settings.
	wlLimits map[string]*RateLimit
	// observeWorkloads and observeDests are the workloads and
	// destinations whose mode is observe.
	observeWorkloads map[string]bool
	observeDests     []*destination
	// placeholders is the placeholders: section.
	placeholders placeholderSettings
}

func (ps *parser) errorf(n *yaml.Node, format string, args ...any) {
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	ps.errs = append(ps.errs, &Error{File: ps.file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

// warnf records a warning at n: the policy loads, and `credgate
// validate` prints it.
func (ps *parser) warnf(n *yaml.Node, format string, args ...any) {
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	ps.warns = append(ps.warns, &Error{File: ps.file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func (ps *parser) parse(data []byte) *Policy {
	root, ok := ps.document(data)
	if !ok {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		ps.errorf(root, "the policy must be a mapping with keys workloads, destinations, credentials, rules, default and optionally mode")
		return nil
	}
	sections := ps.fields(root, "policy", "workloads", "destinations", "credentials", "rules", "default", "mode", "placeholders")
	p := &Policy{file: ps.file, stepTimeout: module.StepTimeoutFrom(ps.ctx)}
	sum := sha256.Sum256(data)
	p.hash = hex.EncodeToString(sum[:])

	if f, ok := sections["mode"]; ok {
		p.observe.all = ps.parseMode(f, "policy")
	}
	p.workloads = ps.parseWorkloads(sections["workloads"])
	p.wlVersions = ps.wlVersions
	p.wlLimits = ps.wlLimits
	p.dests = ps.parseDestinations(sections["destinations"])
	if f, ok := sections["placeholders"]; ok {
		ps.placeholders = ps.parsePlaceholderSettings(f)
		p.quarantine = ps.placeholders.quarantine
	}
	p.creds = ps.parseCredentials(sections["credentials"])
	p.rules = ps.parseRules(sections["rules"])
	if f, ok := sections["default"]; ok {
		v := deref(f.val)
		if v.Kind != yaml.ScalarNode || v.Value != "deny" {
			ps.errorf(v, "default must be deny (the only default supported); add rules to allow traffic")
		}
	}
	if len(ps.errs) > 0 {
		return nil
	}
	p.injectors = ps.builtInjectors
	ps.warns.sort()
	p.warnings = ps.warns
	p.index = buildIndex(p.rules)
	for _, r := range p.rules {
		if r.cond != nil && r.cond.usesHeaders {
			p.readsHeaders = true
		}
	}
	p.observe.workloads = ps.observeWorkloads
	if len(ps.observeDests) > 0 {
		p.observe.dests, p.observe.anyDest = buildObserveIndex(ps.observeDests), true
	}
	return p
}

// document decodes exactly one YAML document and returns its root.
func (ps *parser) document(data []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			ps.errs = append(ps.errs, &Error{File: ps.file, Line: 1, Col: 1, Msg: "the policy file is empty; it needs at least rules and default: deny"})
			return nil, false
		}
		ps.yamlError(err)
		return nil, false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		ps.errorf(&extra, "only one YAML document is allowed in a policy file; remove the '---' separator")
		return nil, false
	} else if !errors.Is(err, io.EOF) {
		ps.yamlError(err)
		return nil, false
	}
	root := &doc
	// Aliases that expand the file far beyond its written size (a
	// "billion laughs") are refused before anything follows them: the
	// parser below does, at every alias.
	if p := yamlstrict.AliasExpansion(root, "policy"); p != nil {
		ps.errs = append(ps.errs, &Error{File: ps.file, Line: p.Line, Col: p.Col, Msg: p.Msg})
		return nil, false
	}
	// Merge keys anywhere (provider and injector settings included),
	// refused as the gateway config refuses them.
	for _, p := range yamlstrict.MergeKeys(root, "policy") {
		ps.errs = append(ps.errs, &Error{File: ps.file, Line: p.Line, Col: p.Col, Msg: p.Msg})
	}
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = deref(root.Content[0])
	}
	if root.Kind == 0 || root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		ps.errs = append(ps.errs, &Error{File: ps.file, Line: 1, Col: 1, Msg: "the policy file is empty; it needs at least rules and default: deny"})
		return nil, false
	}
	return root, true
}

// yamlError turns a YAML syntax error into an Error at its line (and
// column, where yamlstrict.DescribeSyntax finds it: a tab, a byte that is
// not UTF-8), column 1 otherwise.
func (ps *parser) yamlError(err error) {
	p := yamlstrict.DescribeSyntax(ps.src, err).Problem()
	ps.errs = append(ps.errs, &Error{File: ps.file, Line: p.Line, Col: p.Col, Msg: p.Msg, Err: err})
}
