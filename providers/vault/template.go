package vault

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/credgate/credgate/identity"
)

// ErrTemplateValue marks a workload attribute that cannot be put into a
// Vault path or certificate name: empty, ".", containing '/' or "..", or any
// character outside [A-Za-z0-9._-]. Such a value could otherwise move the
// request to another path ("../../sys/...") or another tenant's secret.
var ErrTemplateValue = errors.New("workload attribute rejected for templating")

// template is a string with {{.workload.NAME}} placeholders, parsed once
// when the provider loads. Only that one form is accepted: there are no
// functions, pipelines or conditionals, so a template can only ever
// substitute checked attribute values.
type template struct {
	src   string
	parts []part // alternating literal and placeholder parts
}

type part struct {
	literal string
	attr    string // non-empty for a placeholder
}

var (
	actionRE    = regexp.MustCompile(`\{\{\s*\.workload\.([A-Za-z0-9_]+)\s*\}\}`)
	safeValueRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

// parseTemplate parses s. what names the setting in errors.
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
			return template{}, fmt.Errorf("%s %q: only {{.workload.NAME}} placeholders are allowed (for example {{.workload.name}} or {{.workload.namespace}})", what, s)
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

// templated reports whether t has any placeholder.
func (t template) templated() bool {
	for _, p := range t.parts {
		if p.attr != "" {
			return true
		}
	}
	return false
}

// render substitutes the workload's verified attributes. "name" is the
// workload's name in the policy; any other NAME is an attribute of a
// verified factor (identity.Factor.Attributes). A missing attribute, two
// factors disagreeing on it, or a value failing the safe-value check is an
// error wrapping ErrTemplateValue.
func (t template) render(w identity.Workload) (string, error) {
	if !t.templated() {
		return t.src, nil
	}
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

// attribute returns one checked template value of w.
func attribute(w identity.Workload, name string) (string, error) {
	var v string
	if name == "name" {
		if w.Name == "" {
			return "", fmt.Errorf("template needs {{.workload.name}} but the caller matched no workload: %w", ErrTemplateValue)
		}
		v = w.Name
	} else {
		found := false
		for _, f := range w.Factors {
			fv, ok := f.Attributes[name]
			if !ok {
				continue
			}
			if found && fv != v {
				return "", fmt.Errorf("template attribute %s: verified factors disagree on its value: %w", name, ErrTemplateValue)
			}
			v, found = fv, true
		}
		if !found {
			return "", fmt.Errorf("template attribute %s: no verified factor of workload %s carries it: %w", name, w.DisplayName(), ErrTemplateValue)
		}
	}
	if err := checkValue(v); err != nil {
		return "", fmt.Errorf("template attribute %s of workload %s: %w", name, w.DisplayName(), err)
	}
	return v, nil
}

// checkValue rejects values that could escape a path segment.
func checkValue(v string) error {
	switch {
	case v == "":
		return fmt.Errorf("value is empty: %w", ErrTemplateValue)
	case v == "." || strings.Contains(v, ".."):
		return fmt.Errorf("value %q is . or contains \"..\": %w", v, ErrTemplateValue)
	case !safeValueRE.MatchString(v):
		return fmt.Errorf("value %q has characters outside [A-Za-z0-9._-]: %w", truncate(v, 64), ErrTemplateValue)
	}
	return nil
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
