package policy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/transform"
)

// GeneratedPrefix starts every generated (per-workload) placeholder, so
// that one is recognisable in an application's settings.
const GeneratedPrefix = "cgph_"

// defaultPlaceholderField is the credential field a placeholder stands
// for when its setting names none.
const defaultPlaceholderField = "token"

// Placeholder is a credential's `placeholder:` setting: the string an
// application sends where it would put the credential's secret, which the
// gateway replaces with the real value in requests a rule injecting that
// credential allows (docs/agents.md). It is not a secret: it resolves only
// for the destinations and workloads the rules bind it to, and anywhere
// else it is a tripwire.
type Placeholder struct {
	// Credential is the credential's name.
	Credential string
	// Field is the credential field the placeholder stands for
	// (default "token").
	Field string
	// PerWorkload is set for `generate: per_workload`: every workload has
	// its own placeholder (For), and one workload's never resolves for
	// another.
	PerWorkload bool

	fixed string
	seed  []byte
}

// For returns the placeholder workload wl sends: the fixed string, or the
// one generated for wl's name ("anonymous" for a caller no workload
// matched). Generated placeholders are derived (HMAC-SHA256 keyed by the
// policy's placeholders.seed over the credential and workload names), so
// every replica and `credgate explain` agree on them without shared state.
func (p *Placeholder) For(wl identity.Workload) string {
	if !p.PerWorkload {
		return p.fixed
	}
	return p.forName(wl.DisplayName())
}

func (p *Placeholder) forName(workload string) string {
	m := hmac.New(sha256.New, p.seed)
	m.Write([]byte("credgate placeholder v1\x00"))
	m.Write([]byte(p.Credential))
	m.Write([]byte{0})
	m.Write([]byte(workload))
	sum := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(m.Sum(nil))
	return GeneratedPrefix + strings.ToLower(sum[:26]) // 130 bits
}

// CustodyTripwireName is the tripwire name of custody placeholders in
// audit lines and logs ("tripwire":"custody"); no credential may have it
// (checkCredentialName).
const CustodyTripwireName = "custody"

// PlaceholderUse is one placeholder string of a policy and whom it
// belongs to: the tripwires of a request are all uses not bound to it.
type PlaceholderUse struct {
	// Credential names the credential.
	Credential string
	// Workload is the workload a generated placeholder belongs to ("" for
	// a fixed one, which belongs to every workload a rule lets use it).
	Workload string
	// Placeholder is the string.
	Placeholder string
}

// Name names the use in audit lines and errors: the credential, and the
// workload of a generated placeholder (CREDENTIAL@WORKLOAD). Never the
// string itself. A credential name holds no '@' (checkCredentialName), so
// two uses never share a name.
func (u PlaceholderUse) Name() string {
	if u.Workload == "" {
		return u.Credential
	}
	return u.Credential + "@" + u.Workload
}

// Placeholders lists every placeholder of the policy: each fixed one, and
// for each generated one the string of every workload the policy defines
// and of anonymous callers.
func (p *Policy) Placeholders() []PlaceholderUse {
	var out []PlaceholderUse
	for _, c := range p.creds {
		ph := c.placeholder
		if ph == nil {
			continue
		}
		if !ph.PerWorkload {
			out = append(out, PlaceholderUse{Credential: c.name, Placeholder: ph.fixed})
			continue
		}
		names := []string{identity.Workload{}.DisplayName()}
		for _, w := range p.workloads {
			names = append(names, w.Name)
		}
		for _, n := range names {
			out = append(out, PlaceholderUse{Credential: c.name, Workload: n, Placeholder: ph.forName(n)})
		}
	}
	return out
}

// Quarantine reports whether a tripwire disables the workload that sent
// it through the kill switch (placeholders.quarantine).
func (p *Policy) Quarantine() bool { return p.quarantine }

// placeholderSettings is the policy's `placeholders:` section.
type placeholderSettings struct {
	quarantine bool
	seed       []byte
}

// parsePlaceholderSettings reads `placeholders: {quarantine: BOOL, seed: STRING}`.
func (ps *parser) parsePlaceholderSettings(f field) placeholderSettings {
	var s placeholderSettings
	if deref(f.val).Kind != yaml.MappingNode {
		ps.errorf(deref(f.val), "placeholders must be a mapping like {quarantine: true}")
		return s
	}
	fs := ps.fields(f.val, "placeholders", "quarantine", "seed")
	if q, ok := fs["quarantine"]; ok {
		s.quarantine = ps.boolean(q.val, "placeholders quarantine")
	}
	if sf, ok := fs["seed"]; ok {
		if seed, ok := ps.str(sf.val, "placeholders seed"); ok {
			if len(seed) < 16 {
				ps.errorf(deref(sf.val), "placeholders seed is %d bytes; use at least 16 random bytes (changing it changes every generated placeholder)", len(seed))
			}
			s.seed = []byte(seed)
		}
	}
	return s
}

// parsePlaceholder reads a credential's `placeholder:`: a fixed string,
// or a mapping {value: STRING} or {generate: per_workload}, each with an
// optional field (default token). seen maps fixed placeholders to the
// node that declared them first, for the duplicate check.
func (ps *parser) parsePlaceholder(f field, cred string, seen map[string]*yaml.Node) *Placeholder {
	what := fmt.Sprintf("credential %q placeholder", cred)
	p := &Placeholder{Credential: cred, Field: defaultPlaceholderField}
	n := deref(f.val)
	var valNode *yaml.Node
	switch n.Kind {
	case yaml.ScalarNode:
		valNode = n
	case yaml.MappingNode:
		fs := ps.fields(n, what, "value", "generate", "field")
		v, hasV := fs["value"]
		g, hasG := fs["generate"]
		switch {
		case hasV && hasG:
			ps.errorf(g.key, "%s: set value or generate, not both", what)
			return nil
		case hasV:
			valNode = deref(v.val)
		case hasG:
			gen, ok := ps.str(g.val, what+" generate")
			if !ok {
				return nil
			}
			if gen != "per_workload" {
				ps.errorf(deref(g.val), "%s: generate %q is not known; use generate: per_workload", what, gen)
				return nil
			}
			p.PerWorkload = true
		default:
			ps.errorf(n, "%s needs value: <string> or generate: per_workload", what)
			return nil
		}
		if ff, ok := fs["field"]; ok {
			name, ok := ps.str(ff.val, what+" field")
			if !ok {
				return nil
			}
			p.Field = name
		}
	default:
		ps.errorf(n, "%s must be a string (8 to 256 letters, digits, '-', '.', '_' or '~') or {generate: per_workload}", what)
		return nil
	}
	if valNode != nil {
		v, ok := ps.str(valNode, what)
		if !ok {
			return nil
		}
		if err := transform.CheckPlaceholder(v); err != nil {
			ps.errorf(valNode, "%s: %v; a placeholder is 8 to 256 bytes of letters, digits, '-', '.', '_' and '~', characters no encoding rewrites", what, err)
			return nil
		}
		if strings.HasPrefix(v, GeneratedPrefix) {
			ps.errorf(valNode, "%s: %q is reserved for generated placeholders; choose another prefix", what, GeneratedPrefix)
			return nil
		}
		if prev, dup := seen[v]; dup {
			ps.errorf(valNode, "%s is already the placeholder of another credential (line %d); each credential needs its own, or a placeholder could not say which secret it stands for", what, prev.Line)
			return nil
		}
		seen[v] = valNode
		p.fixed = v
	}
	return p
}

// requirePlaceholder reads a rule's require_placeholder: only an inject
// rule whose credential declares a placeholder can require one.
func (ps *parser) requirePlaceholder(r *rule, f field, what string) {
	req := ps.boolean(f.val, what+" require_placeholder")
	if !req {
		return
	}
	switch {
	case r.act != ruleInject:
		ps.errorf(f.key, "%s: require_placeholder applies only to inject rules; remove it", what)
	case r.plan == nil:
		// The inject block is broken: reported already.
	case r.plan.Placeholder == nil:
		ps.errorf(f.key, "%s: require_placeholder is set but credential %q declares no placeholder; add placeholder: to the credential or remove require_placeholder", what, r.plan.Credential)
	default:
		r.plan.RequirePlaceholder = true
	}
}

// DefaultSubstituteIn are the places a placeholder is replaced in when
// its rule sets no substitute_in: any header, the Basic payload, the
// path and the query — where APIs take credentials — but not form or
// JSON bodies nor WebSocket frames, free text an upstream stores,
// posts or forwards (a message, a webhook URL), where a prompt-injected
// agent would put the placeholder to send the secret to a third party.
// A rule that needs a body or a frame names it (docs/agents.md).
var DefaultSubstituteIn = []transform.Place{
	{Where: transform.InHeader}, {Where: transform.InBasicAuth},
	{Where: transform.InPath}, {Where: transform.InQuery},
}

// Warnings are the problems of the policy that did not stop it loading
// (a placeholder rule without substitute_in), as FILE:LINE:COL entries;
// `credgate validate` prints them.
func (p *Policy) Warnings() ErrorList { return p.warnings }

// placesGrammar is how an error names the places substitute_in knows.
const placesGrammar = `header, "header:NAME", basic, path, query, "query:NAME", form, "form:NAME", json, "json:/POINTER" or websocket`

// substituteIn reads an inject block's substitute_in (f, when set) into
// plan: the places of a request where the credential's placeholder may
// be replaced. Without it a rule whose credential has a placeholder gets
// DefaultSubstituteIn and a warning at key.
func (ps *parser) substituteIn(plan *InjectPlan, f field, set bool, key *yaml.Node, what string) {
	if !set {
		if plan.Placeholder != nil {
			plan.SubstituteIn, plan.SubstituteInDefault = DefaultSubstituteIn, true
			ps.warnf(key, "%s: credential %q has a placeholder and the rule sets no substitute_in, so it is replaced in any header, Basic, the path and the query (not in bodies or WebSocket frames); name only the places the API takes the credential, like substitute_in: [\"header:Authorization\"], [path] or [\"form:token\"] (docs/agents.md)", what, plan.Credential)
		}
		return
	}
	if plan.Placeholder == nil {
		ps.errorf(f.key, "%s: substitute_in is set but credential %q declares no placeholder; add placeholder: to the credential or remove substitute_in", what, plan.Credential)
		return
	}
	n := deref(f.val)
	if n.Kind != yaml.SequenceNode {
		ps.errorf(n, "%s: substitute_in must be a list of places, like [path] or [\"header:Authorization\"] (%s)", what, placesGrammar)
		return
	}
	if len(n.Content) == 0 {
		ps.errorf(n, "%s: substitute_in is empty, so the placeholder could be replaced nowhere; name the places the API takes the credential (%s), or remove the placeholder", what, placesGrammar)
		return
	}
	seen := map[string]bool{}
	places := []transform.Place{}
	for _, e := range n.Content {
		e = deref(e)
		if e.Kind != yaml.ScalarNode || e.Tag != "!!str" {
			ps.errorf(e, "%s: each substitute_in entry must be a string naming a place (%s)", what, placesGrammar)
			continue
		}
		p, msg := parsePlace(e.Value)
		if msg != "" {
			ps.errorf(e, "%s: substitute_in %q: %s", what, e.Value, msg)
			continue
		}
		k := p.String()
		if p.Where == transform.InHeader {
			k = strings.ToLower(k)
		}
		if seen[k] {
			ps.errorf(e, "%s: substitute_in names %q twice; remove one", what, p.String())
			continue
		}
		seen[k] = true
		places = append(places, p)
	}
	plan.SubstituteIn = places
}

// parsePlace reads one substitute_in entry, or says what is wrong with
// it and how to write it.
func parsePlace(s string) (transform.Place, string) {
	kind, name, named := strings.Cut(s, ":")
	where := transform.Where(kind)
	switch where {
	case transform.InBasicAuth, transform.InPath, transform.InWebSocket:
		if named {
			return transform.Place{}, fmt.Sprintf("%s takes no name; write %s", kind, kind)
		}
		return transform.Place{Where: where}, ""
	case transform.InHeader, transform.InQuery, transform.InForm, transform.InJSON:
	default:
		return transform.Place{}, fmt.Sprintf("unknown place %q; use %s", kind, placesGrammar)
	}
	if !named {
		return transform.Place{Where: where}, ""
	}
	switch {
	case name == "":
		return transform.Place{}, fmt.Sprintf("the name after %q is empty; write %s:NAME, or %s for anywhere in it", kind+":", kind, kind)
	case where == transform.InHeader:
		if !httpguts.ValidHeaderFieldName(name) {
			return transform.Place{}, fmt.Sprintf("%q is not a header name; write header:NAME with the header the API reads, like header:Authorization", name)
		}
		name = http.CanonicalHeaderKey(name)
	case where == transform.InJSON:
		if err := transform.CheckPointer(name); err != nil {
			return transform.Place{}, fmt.Sprintf("%q is not a JSON pointer: %v; write json:/FIELD/SUBFIELD, like json:/auth/key", name, err)
		}
	}
	return transform.Place{Where: where, Name: name}, ""
}
