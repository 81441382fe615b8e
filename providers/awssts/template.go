package awssts

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/credgate/credgate/identity"
)

// template is a string with {{.workload.NAME}} placeholders, parsed once
// when the provider loads. There are no functions or pipelines: a
// template only substitutes verified attribute values.
type template struct {
	src   string
	parts []part
}

type part struct {
	literal string
	attr    string // non-empty for a placeholder
}

var actionRE = regexp.MustCompile(`\{\{\s*\.workload\.([A-Za-z0-9_]+)\s*\}\}`)

// parseTemplate parses s; what names the setting in errors.
func parseTemplate(what, s string) (template, error) {
	t := template{src: s}
	rest := s
	for {
		loc := actionRE.FindStringSubmatchIndex(rest)
		lit := rest
		if loc != nil {
			lit = rest[:loc[0]]
		}
		if strings.Contains(lit, "{{") || strings.Contains(lit, "}}") {
			return template{}, fmt.Errorf("awssts: %s %q: only {{.workload.NAME}} placeholders are allowed (for example {{.workload.name}} or {{.workload.namespace}})", what, s)
		}
		if lit != "" {
			t.parts = append(t.parts, part{literal: lit})
		}
		if loc == nil {
			return t, nil
		}
		t.parts = append(t.parts, part{attr: rest[loc[2]:loc[3]]})
		rest = rest[loc[1]:]
	}
}

// render substitutes w's attributes.
func (t template) render(w identity.Workload) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.attr == "" {
			b.WriteString(p.literal)
			continue
		}
		v, err := attribute(w, p.attr)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// attribute returns a verified attribute of w: "name" is the workload's
// name in the policy, anything else an attribute of a verified factor,
// on whose value all factors that carry it must agree.
func attribute(w identity.Workload, name string) (string, error) {
	if name == "name" {
		if w.Name == "" {
			return "", fmt.Errorf("the caller matched no workload, so it has no name: %w", ErrWorkloadAttribute)
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
			return "", fmt.Errorf("attribute %s: verified factors disagree on its value: %w", name, ErrWorkloadAttribute)
		}
		v, found = fv, true
	}
	if !found || v == "" {
		return "", fmt.Errorf("attribute %s: no verified factor of workload %s carries it: %w", name, w.DisplayName(), ErrWorkloadAttribute)
	}
	return v, nil
}
