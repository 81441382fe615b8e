// Package hello is a tiny injector plugin defined outside the credgate
// repository's plugin lists: it sets one header to a greeting followed by
// a credential field, e.g. "X-Hello: hello sk_live_...". It shows the
// whole shape of a plugin: settings as yaml-tagged fields, Provision for
// defaults, Validate for checks, Inject that fails before it changes the
// request, HeaderNames so the gateway removes client copies, and one
// registration in init. See docs/plugins.md.
package hello

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

func init() {
	injectors.Register(injectors.Module{
		Name: "hello",
		Doc:  "sets one header to a greeting and a credential field (an example plugin)",
		SettingDocs: map[string]string{
			"header":   `the header to set (default "X-Hello")`,
			"greeting": `the words before the value (default "hello")`,
			"field":    `credential field holding the value (default "token")`,
		},
		New: func() injectors.Injector { return new(Injector) },
	})
}

// Injector is the "hello" injector. Its exported fields are its settings.
type Injector struct {
	// Header is the header to set. Default "X-Hello".
	Header string `yaml:"header"`
	// Greeting is the words before the value. Default "hello".
	Greeting string `yaml:"greeting"`
	// Field is the credential field holding the value. Default "token".
	Field string `yaml:"field"`
}

// Provision applies the defaults, in one place.
func (h *Injector) Provision() error {
	if h.Header == "" {
		h.Header = "X-Hello"
	}
	if h.Greeting == "" {
		h.Greeting = "hello"
	}
	if h.Field == "" {
		h.Field = providers.FieldToken
	}
	h.Header = textproto.CanonicalMIMEHeaderKey(h.Header)
	return nil
}

// Validate rejects settings that cannot make a valid header. Its words
// become "FILE:LINE:COL: ..." in credgate validate.
func (h *Injector) Validate() error {
	if strings.ContainsAny(h.Header, " :\r\n") {
		return fmt.Errorf("hello: header %q is not a header name", h.Header)
	}
	if strings.ContainsAny(h.Greeting, "\r\n") {
		return errors.New("hello: greeting must be one line")
	}
	return nil
}

// Headers implements injectors.HeaderNames: the gateway deletes every
// client copy of these before Inject.
func (h *Injector) Headers() []string { return []string{h.Header} }

// Inject implements injectors.Injector. Everything that can fail is
// checked before r changes; the error names the field, never its value.
func (h *Injector) Inject(r *http.Request, cred *providers.Credential) error {
	v, ok := cred.Field(h.Field)
	if !ok {
		return fmt.Errorf("hello: credential has no field %q: %w", h.Field, injectors.ErrMissingField)
	}
	val := v.Reveal()
	if strings.ContainsFunc(val, isControl) {
		return fmt.Errorf("hello: field %q: %w", h.Field, injectors.ErrInvalidValue)
	}
	r.Header.Set(h.Header, h.Greeting+" "+val)
	return nil
}

// Interface guards.
var (
	_ injectors.Injector    = (*Injector)(nil)
	_ injectors.HeaderNames = (*Injector)(nil)
	_ injectors.Provisioner = (*Injector)(nil)
	_ injectors.Validator   = (*Injector)(nil)
)

// isControl reports the bytes a header value must not hold.
func isControl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }
