package policy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/internal/module"
	"github.com/credgate/credgate/providers"
)

// Policy is a parsed, validated and compiled policy file. It is immutable
// and safe for concurrent use; Decide never blocks. The providers and
// injectors it names were built when it was parsed and are released by
// Close.
type Policy struct {
	file string
	// stepTimeout bounds each plugin call SourceProblems makes
	// (module.StepTimeoutFrom the context Parse was given).
	stepTimeout time.Duration
	hash        string
	workloads   []identity.Spec
	// wlLimits are the workloads' rate_limit settings by name.
	wlLimits  map[string]*RateLimit
	dests     map[string]*destination
	creds     []*credential
	injectors []injectors.Injector
	rules     []*rule
	index     index
	// observe says where `mode: observe` applies.
	observe observeMode
	// quarantine: a tripwire disables the workload (placeholders.quarantine).
	quarantine bool
	// readsHeaders: a rule's `when:` reads request.headers.
	readsHeaders bool
	// warnings are the problems that did not stop the policy loading.
	warnings ErrorList
	// custodyHeaders are the extra custody headers by destination
	// name, hasCustody whether any rule keeps custody (CustodyHeaders,
	// HasCustody), built once on first use.
	custodyOnce    sync.Once
	custodyHeaders map[string][]string
	hasCustody     bool
	// custodyVersions digest, by destination name, what defines where
	// its custody values may go (CustodyVersion); wlVersions digest each
	// workload's settings.
	custodyVersions map[string]string
	wlVersions      map[string]string

	closeOnce sync.Once
	closeErr  error
	// users counts the holds of Store.Acquire not yet released; retired
	// is set once a reload replaced the policy (Store.retire).
	users   atomic.Int64
	retired atomic.Bool
}

// SourceProblems is CheckSources' problems, without its warnings.
func (p *Policy) SourceProblems() ErrorList {
	probs, _ := p.CheckSources()
	return probs
}

// CheckSources reads, now, every environment variable and file that the
// policy's credentials name and read only when they fetch
// (providers.SourceChecker). problems has one Error per variable that is
// unset or empty and per file that is missing, unreadable or empty;
// warnings one per secret file whose mode or owner is loose (others may
// read it, the group or others write it, another user owns it:
// providers.CheckSecretFile, the rule of the gateway config's secret
// files), which is used anyway. Each is at the line of its setting (or
// of the credential's name when the setting has no line of its own, such
// as a provider's default), sorted by position; nil when there is none.
// The policy stays valid: a credential with a problem fails each request
// that uses it (502 credential_not_configured) until its source is
// there. `credgate validate` reports problems as errors and warnings as
// warnings; `credgate serve` logs both as warnings when a policy is
// loaded. No value read is kept or reported.
func (p *Policy) CheckSources() (problems, warnings ErrorList) {
	for _, c := range p.creds {
		sc, ok := c.p.(providers.SourceChecker)
		if !ok {
			continue
		}
		ctx := module.WithStepTimeout(context.Background(), p.stepTimeout)
		sps, err := module.Step(ctx, fmt.Sprintf("provider %q: CheckSources", c.provider), func(context.Context) ([]providers.SourceProblem, error) {
			return sc.CheckSources(), nil
		}, nil)
		if err != nil {
			sps = []providers.SourceProblem{{Err: err}}
		}
		for _, sp := range sps {
			at := settingNode(c.settings, sp.Setting)
			if at == nil {
				at = c.key
			}
			e := &Error{File: p.file, Msg: fmt.Sprintf("credential %q: %v", c.name, sp.Err), Err: sp.Err}
			if at != nil {
				e.Line, e.Col = at.Line, at.Column
			}
			if sp.Warning {
				warnings = append(warnings, e)
			} else {
				problems = append(problems, e)
			}
		}
	}
	problems.sort()
	warnings.sort()
	return problems, warnings
}

// settingNode returns the value node at path (mapping keys joined by
// dots) in settings, or nil.
func settingNode(settings *yaml.Node, path string) *yaml.Node {
	n := settings
	for _, k := range strings.Split(path, ".") {
		n = deref(n)
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if deref(n.Content[i]).Value == k {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return deref(n)
}

// Stats summarises a policy, for logs, metrics and `credgate validate`.
type Stats struct {
	// Rules, Destinations, Credentials and Workloads count the entries of
	// each section.
	Rules, Destinations, Credentials, Workloads int
	// Hash is the hex SHA-256 of the policy file's bytes.
	Hash string
}

// destination is a compiled `destinations:` entry.
type destination struct {
	name string
	// version digests the destination's settings (settingsHash): part of
	// the custody version (CustodyVersion).
	version      string
	hosts        []hostPattern
	ports        []int // nil: the scheme's default port
	allowPrivate bool
	// encodedSlashes admits paths with %2F; rules match their decoded
	// form and the encoded form is forwarded unchanged.
	encodedSlashes bool
	// encodedDelimiters admits paths with %3F and %23; rules match their
	// decoded form and the encoded form is forwarded unchanged.
	encodedDelimiters bool
	// foldCase: the API routes paths case-insensitively, so every rule
	// to it matches paths case-insensitively (deny rules always do).
	foldCase bool
}

// credential is a compiled `credentials:` entry.
type credential struct {
	name     string
	provider string
	version  string
	p        providers.Provider
	// placeholder is the credential's placeholder: setting, nil when none.
	placeholder *Placeholder
	// inputs are the credentials it reads (providers.Composer), set once
	// the input graph is known to be acyclic.
	inputs []*credential
	// key and settings are the credential's name and provider settings
	// in the policy file, for the positions of SourceProblems.
	key, settings *yaml.Node
}

// inputTree returns c's inputs, recursively, as providers.BindComposed
// takes them; nil when c reads no credential.
func (c *credential) inputTree() []providers.Input {
	if len(c.inputs) == 0 {
		return nil
	}
	out := make([]providers.Input, len(c.inputs))
	for i, in := range c.inputs {
		out[i] = providers.Input{Name: in.name, Provider: in.p, Inputs: in.inputTree()}
	}
	return out
}

// uses returns c's name followed by the names of every credential it
// reads, recursively, each once: what a decision to inject c uses.
func (c *credential) uses() []string {
	out := []string{c.name}
	seen := map[*credential]bool{c: true}
	var walk func(c *credential)
	walk = func(c *credential) {
		for _, in := range c.inputs {
			if !seen[in] {
				seen[in] = true
				out = append(out, in.name)
				walk(in)
			}
		}
	}
	walk(c)
	return out
}

// ruleAction is what a rule does; distinct from Action, which is what a
// decision does.
type ruleAction int

const (
	ruleDeny ruleAction = iota
	ruleTunnel
	ruleInject
)

func (a ruleAction) String() string {
	switch a {
	case ruleTunnel:
		return "tunnel"
	case ruleInject:
		return "inject"
	}
	return "deny"
}

// rule is a compiled `rules:` entry.
type rule struct {
	index int
	name  string
	// version digests the rule's settings (settingsHash): part of the
	// custody version of its destinations when it keeps custody.
	version string
	// path is the rule's index path in the file: rules[N], N counted
	// from 0 over the list as written.
	path string
	// line and col are where the rule starts in the policy file.
	line, col int
	act       ruleAction
	// from
	fromAny  bool // "*": any identified workload
	fromAnon bool // "anonymous"
	from     []string
	to       []*destination
	methods  []string // nil: any
	paths    []glob   // nil: any
	// plaintext allows injecting into plain http:// requests.
	plaintext bool
	plan      *InjectPlan
	// cond is the compiled `when:` expression, nil when none.
	cond *condition
	// limit is the rule's rate_limit, nil when none.
	limit *RateLimit
	// scrub and custody are the rule's response settings (response.go).
	scrub   Scrub
	custody *Custody
	// ranges is what the gateway does with Range requests (response.go).
	ranges Ranges
}

// conditional reports whether the rule looks at the request (method,
// path, or a `when:` condition), so that deciding it needs an intercepted
// connection. A tunnel rule's condition cannot read the request; it is
// evaluated at CONNECT instead.
func (r *rule) conditional() bool {
	return r.methods != nil || r.paths != nil || r.cond != nil && r.act != ruleTunnel
}

// reachable reports whether the rule, matching a caller, host and port,
// lets that caller through to them over scheme with some method and path:
// an inject rule (over http only with plaintext) or a tunnel rule,
// without a `when:` condition, which could refuse this very caller (its
// posture, its source, the time) whatever the method and path. A deny
// rule lets nobody through. Observe mode lets a would_deny request that
// only missed such a rule's methods or paths reach the special-purpose
// addresses its destination allows.
func (r *rule) reachable(scheme string) bool {
	switch {
	case r.cond != nil:
		return false
	case r.act == ruleInject:
		return scheme != "http" || r.plaintext
	}
	return r.act == ruleTunnel
}

// matchesFrom reports whether the rule applies to the caller.
func (r *rule) matchesFrom(name string) bool {
	if name == "" {
		return r.fromAnon
	}
	if r.fromAny {
		return true
	}
	for _, f := range r.from {
		if f == name {
			return true
		}
	}
	return false
}

// matchesMethod reports whether the rule covers method m: any method
// when it lists none, else the ones it lists; a deny rule listing GET
// also covers HEAD, since servers run the GET handler for HEAD (RFC 9110
// §9.3.2), so HEAD cannot dodge a deny on GET.
func (r *rule) matchesMethod(m string) bool {
	return r.methods == nil || r.namesMethod(m) ||
		r.act == ruleDeny && m == http.MethodHead && r.namesMethod(http.MethodGet)
}

// namesMethod reports whether the rule lists m in methods explicitly.
// An inject rule without methods still does not inject into TRACE, which
// echoes the request — the injected credential included — back to the
// client; it must name TRACE to do that.
func (r *rule) namesMethod(m string) bool {
	for _, x := range r.methods {
		if x == m {
			return true
		}
	}
	return false
}

// matchesPath reports whether the rule's paths match the request path
// (decoded, canonical) whose forms f computes once per request. Paths
// match case-insensitively when the destination says its API routes them
// so (path_case: insensitive), and always for a deny rule. A deny rule
// also matches when the path with one trailing '/' removed (it ends in
// '/') or added (it does not) matches: a server that ignores the slash
// routes all of them to the same handler, so a deny must not be dodged by
// the spelling its pattern did not use. A deny rule matches the path's
// Unicode compatibility form (NFKC) too, and its pattern's, so "ａdmin"
// and "ⓐdmin" are denied by a deny on "*admin*": a server normalizing the
// path reads them as "admin". Allow rules match the path alone (folded
// for case on a path_case: insensitive destination): an allow is never
// widened by a reading the upstream may not share.
func (r *rule) matchesPath(f *pathForms, d *destination) bool {
	if r.paths == nil {
		return true
	}
	if r.act == ruleDeny {
		p, c := f.folded(), f.compat()
		for i := range r.paths {
			for g := &r.paths[i]; g != nil; g = g.compat {
				if g.matchDeny(p) || c != "" && g.matchDeny(c) {
					return true
				}
			}
		}
		return false
	}
	for i := range r.paths {
		g := &r.paths[i]
		if d.foldCase && g.matchFolded(f.folded()) || !d.foldCase && g.match(f.path) {
			return true
		}
	}
	return false
}

// pathForms holds a request path and, computed the first time a rule
// asks, the forms of it rules match.
type pathForms struct {
	path string
	// fold is foldPath(path), "" until computed; ascii says whether
	// path is all ASCII, known once fold is.
	fold  string
	ascii bool
	// nfkc is foldCompat(path); nfkcDone says whether it was computed.
	nfkc     string
	nfkcDone bool
}

// folded returns the path case-folded (foldPath).
func (f *pathForms) folded() string {
	if f.fold == "" {
		f.fold, f.ascii = foldPathASCII(f.path)
	}
	return f.fold
}

// compat returns the path's compatibility form folded (foldCompat), or
// "" when it is the folded path itself. An ASCII path costs nothing more
// than its case fold.
func (f *pathForms) compat() string {
	if !f.nfkcDone {
		if f.folded(); !f.ascii {
			f.nfkc = foldCompat(f.path)
		}
		f.nfkcDone = true
	}
	return f.nfkc
}

// LoadFile reads and parses the policy file at path. Errors in the file
// are an ErrorList; an unreadable file is an error naming the path.
func LoadFile(ctx context.Context, path string) (*Policy, error) {
	data, err := cfgfile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return Parse(ctx, path, data)
}

// Workloads returns the workload definitions in file order, for the
// identity resolver (the first one a caller satisfies names it). The
// caller must not modify the result.
func (p *Policy) Workloads() []identity.Spec { return p.workloads }

// Stats returns the policy's counts and content hash.
func (p *Policy) Stats() Stats {
	return Stats{
		Rules:        len(p.rules),
		Destinations: len(p.dests),
		Credentials:  len(p.creds),
		Workloads:    len(p.workloads),
		Hash:         p.hash,
	}
}

// CredentialRef names one credential of a policy, for cache maintenance.
type CredentialRef struct {
	// Name and Version are the cache key parts (providers.CacheKey).
	Name, Version string
	// Provider is the registered provider name.
	Provider string
	// Releases is true when the provider holds resources it releases on
	// Close (providers.CleanerUpper): leases, tokens, renewal loops. What
	// it handed out may be revoked then.
	Releases bool
}

// Credentials lists the policy's credentials.
func (p *Policy) Credentials() []CredentialRef {
	out := make([]CredentialRef, 0, len(p.creds))
	for _, c := range p.creds {
		_, rel := c.p.(providers.CleanerUpper)
		out = append(out, CredentialRef{Name: c.name, Version: c.version, Provider: c.provider, Releases: rel})
	}
	return out
}

// HasRule reports whether the policy has a rule named name (for the
// kill switch's warning about names no policy uses).
func (p *Policy) HasRule(name string) bool {
	for _, r := range p.rules {
		if r.name == name {
			return true
		}
	}
	return false
}

// File returns the file name the policy was parsed from.
func (p *Policy) File() string { return p.file }

// Close releases the providers and injectors the policy built (those
// implementing providers.CleanerUpper, or the same Cleanup method). It is
// safe to call more than once; later calls return the first call's
// result. Decisions made afterwards still work, but their providers may
// fail to fetch.
func (p *Policy) Close() error {
	p.closeOnce.Do(func() { p.closeErr = cleanup(p.creds, p.injectors) })
	return p.closeErr
}

// cleanup releases the plugins of a policy: every Cleanup, a panic in one
// reported as an error, and all of them bounded by one
// module.CleanupTimeout, after which those still running are abandoned
// (reported, left to finish), so that a hung Cleanup holds neither a
// reload nor the gateway's shutdown.
func cleanup(creds []*credential, injs []injectors.Injector) error {
	var errs []error
	deadline := time.Now().Add(module.CleanupTimeout)
	for _, c := range creds {
		if cu, ok := c.p.(providers.CleanerUpper); ok {
			if err := module.GuardUntil(deadline, fmt.Sprintf("provider %q Cleanup", c.provider), cu.Cleanup); err != nil {
				errs = append(errs, fmt.Errorf("policy: clean up credential %q: %w", c.name, err))
			}
		}
	}
	for _, inj := range injs {
		if cu, ok := inj.(providers.CleanerUpper); ok {
			if err := module.GuardUntil(deadline, fmt.Sprintf("injector %T Cleanup", inj), cu.Cleanup); err != nil {
				errs = append(errs, fmt.Errorf("policy: clean up injector: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// ReadsHeaders reports whether a rule's `when:` condition reads
// request.headers: deciding a request again later (after a reload) then
// needs the headers as they were when it was first decided.
func (p *Policy) ReadsHeaders() bool { return p.readsHeaders }

// label names r in messages about the policy: `rule "name" (rules[N])`,
// the index path telling apart what the name cannot (a name repeated
// in a copy of the file, a rule before another's rename).
func (r *rule) label() string {
	if r.path == "" {
		return fmt.Sprintf("rule %q", r.name)
	}
	return fmt.Sprintf("rule %q (%s)", r.name, r.path)
}
