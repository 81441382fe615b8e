package identity

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrNoAttribute marks a workload attribute a template or setting needs
// but cannot have: the caller matched no workload (for "name"), no
// verified factor carries the attribute, or factors disagree on it.
var ErrNoAttribute = errors.New("workload attribute not available")

// Attribute returns a verified attribute of w: "name" is the workload's
// name in the policy, anything else an attribute of a verified factor,
// on whose value every factor that carries it must agree. Errors wrap
// ErrNoAttribute and never contain a token.
func (w Workload) Attribute(name string) (string, error) {
	if name == "name" {
		if w.Name == "" {
			return "", fmt.Errorf("the caller matched no workload, so it has no name: %w", ErrNoAttribute)
		}
		return w.Name, nil
	}
	var v string
	found := false
	for _, f := range w.Factors {
		fv, ok := f.Attributes[name]
		if !ok {
			continue
		}
		if found && fv != v {
			return "", fmt.Errorf("attribute %s: verified factors disagree on its value: %w", name, ErrNoAttribute)
		}
		v, found = fv, true
	}
	if !found || v == "" {
		return "", fmt.Errorf("attribute %s: no verified factor of workload %s carries it: %w", name, w.DisplayName(), ErrNoAttribute)
	}
	return v, nil
}

// Template is a string with {{.workload.NAME}} placeholders that
// providers fill from the caller's verified attributes (a Vault path per
// workload, an STS session name). It is parsed once when the provider
// loads; there are no functions, pipelines or conditionals, so a template
// can only ever substitute attribute values.
type Template struct {
	src   string
	parts []templatePart // alternating literal and placeholder parts
}

type templatePart struct {
	literal string
	attr    string // non-empty for a placeholder
}

var templateActionRE = regexp.MustCompile(`\{\{\s*\.workload\.([A-Za-z0-9_]+)\s*\}\}`)

// ParseTemplate parses s; anything that looks like a template action but
// is not {{.workload.NAME}} is an error.
func ParseTemplate(s string) (Template, error) {
	t := Template{src: s}
	rest := s
	for {
		loc := templateActionRE.FindStringSubmatchIndex(rest)
		lit := rest
		if loc != nil {
			lit = rest[:loc[0]]
		}
		if strings.Contains(lit, "{{") || strings.Contains(lit, "}}") {
			return Template{}, fmt.Errorf("%q: only {{.workload.NAME}} placeholders are allowed (for example {{.workload.name}} or {{.workload.namespace}})", s)
		}
		if lit != "" {
			t.parts = append(t.parts, templatePart{literal: lit})
		}
		if loc == nil {
			return t, nil
		}
		t.parts = append(t.parts, templatePart{attr: rest[loc[2]:loc[3]]})
		rest = rest[loc[1]:]
	}
}

// Templated reports whether t has any placeholder.
func (t Template) Templated() bool {
	for _, p := range t.parts {
		if p.attr != "" {
			return true
		}
	}
	return false
}

// Attributes returns the names of the attributes t substitutes, in order
// of appearance (a name used twice appears twice).
func (t Template) Attributes() []string {
	var out []string
	for _, p := range t.parts {
		if p.attr != "" {
			out = append(out, p.attr)
		}
	}
	return out
}

// String returns the template's source.
func (t Template) String() string { return t.src }

// Render substitutes w's attributes (Workload.Attribute). check, when not
// nil, vets every substituted value (for example against path escapes);
// its error is returned wrapped with the attribute's name.
func (t Template) Render(w Workload, check func(value string) error) (string, error) {
	if !t.Templated() {
		return t.src, nil
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.attr == "" {
			b.WriteString(p.literal)
			continue
		}
		v, err := w.Attribute(p.attr)
		if err != nil {
			return "", err
		}
		if check != nil {
			if err := check(v); err != nil {
				return "", fmt.Errorf("attribute %s of workload %s: %w", p.attr, w.DisplayName(), err)
			}
		}
		b.WriteString(v)
	}
	return b.String(), nil
}
