package injectors

import (
	"net/http"

	"github.com/credgate/credgate/providers"
)

func init() {
	Register(Module{Name: "placeholder",
		Doc: "sets nothing: the secret goes only where the application put the credential's placeholder (path, query, header, body, WebSocket frame)",
		New: func() Injector { return new(Placeholder) }})
}

// Placeholder is the injector of rules whose credential reaches the
// request only through its placeholder (policy credential placeholder:):
// the gateway's substitution puts the value where the application wrote
// the placeholder, in a URL path segment, a form or JSON body or a
// WebSocket frame, positions no other injector writes. It changes
// nothing itself, and sets no header, so a request is never replayed
// with it after a 401 (there is nothing to re-inject).
type Placeholder struct{}

// Inject changes nothing.
func (*Placeholder) Inject(*http.Request, *providers.Credential) error { return nil }

var _ Injector = (*Placeholder)(nil)
