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

// template is a Vault path or certificate name template of verified
// workload attributes (identity.Template); every substituted value must
// pass checkValue.
type template struct{ t identity.Template }

var safeValueRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// parseTemplate parses s. what names the setting in errors.
func parseTemplate(what, s string) (template, error) {
	t, err := identity.ParseTemplate(s)
	if err != nil {
		return template{}, fmt.Errorf("%s %w", what, err)
	}
	return template{t: t}, nil
}

// templated reports whether t has any placeholder.
func (t template) templated() bool { return t.t.Templated() }

// render substitutes the workload's verified attributes. A missing
// attribute, two factors disagreeing on it, or a value failing checkValue
// is an error wrapping ErrTemplateValue.
func (t template) render(w identity.Workload) (string, error) {
	s, err := t.t.Render(w, checkValue)
	if err != nil && !errors.Is(err, ErrTemplateValue) {
		err = fmt.Errorf("template %w: %w", err, ErrTemplateValue)
	}
	return s, err
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
