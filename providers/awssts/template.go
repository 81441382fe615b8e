package awssts

import (
	"errors"
	"fmt"

	"github.com/credgate/credgate/identity"
)

// template is a session name or source identity template of verified
// workload attributes (identity.Template).
type template struct{ t identity.Template }

// parseTemplate parses s; what names the setting in errors.
func parseTemplate(what, s string) (template, error) {
	t, err := identity.ParseTemplate(s)
	if err != nil {
		return template{}, fmt.Errorf("awssts: %s %w", what, err)
	}
	return template{t: t}, nil
}

// render substitutes w's attributes; errors wrap ErrWorkloadAttribute.
func (t template) render(w identity.Workload) (string, error) {
	s, err := t.t.Render(w, nil)
	return s, workloadErr(err)
}

// attribute returns a verified attribute of w; errors wrap
// ErrWorkloadAttribute.
func attribute(w identity.Workload, name string) (string, error) {
	v, err := w.Attribute(name)
	return v, workloadErr(err)
}

func workloadErr(err error) error {
	if err == nil || errors.Is(err, ErrWorkloadAttribute) {
		return err
	}
	return fmt.Errorf("%w: %w", err, ErrWorkloadAttribute)
}
