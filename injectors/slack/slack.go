// Package slack is the "slack" injector: a Slack bot, user or app token
// as "Authorization: Bearer", and, for Web API calls that carry the
// token in an application/x-www-form-urlencoded body (a token= field),
// in that field instead of the client's placeholder.
//
//	as: slack
//	field: token          # default: the credential field with the token
//	max_body: 1048576     # a form body with a token field is held up to this
//
// Whatever the client put where Slack reads a token — the Authorization
// header, a token query parameter, a token field of a form body — it is
// removed; the real token is set in the header always, and in the form
// field when the client's form had one (the other fields keep their
// order and bytes; Content-Length is corrected). A form body is held in
// memory up to max_body to do so; beyond it the request is answered 413.
// Other bodies (JSON, multipart uploads) stream untouched.
//
// The token must look like a Slack access token (xoxb-, xoxp-, xapp-, or
// a rotated xoxe.xoxb- / xoxe.xoxp-); a refresh token (xoxe-1-) is
// refused: rotating tokens come from the "slack" provider.
package slack

import (
	"bytes"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

// Name is the injector's registered name.
const Name = "slack"

// DefaultMaxBody is the default max_body.
const DefaultMaxBody = 1 << 20

func init() {
	injectors.Register(injectors.Module{Name: Name,
		Doc: "Slack token as Bearer, and in the token field of form-encoded Web API bodies",
		SettingDocs: map[string]string{
			"field":    `credential field holding the token (default "token")`,
			"max_body": "largest form body held to put the token in it (default 1 MiB); beyond it 413",
		},
		New: func() injectors.Injector { return new(Injector) }})
}

// Injector puts a Slack token on requests.
type Injector struct {
	// Field is the credential field holding the token. Default "token".
	Field string `yaml:"field"`
	// MaxBody is the largest form body held to rewrite its token field.
	MaxBody int64 `yaml:"max_body"`
}

var (
	fieldName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Provision applies defaults.
func (i *Injector) Provision() error {
	if i.Field == "" {
		i.Field = providers.FieldToken
	}
	if i.MaxBody == 0 {
		i.MaxBody = DefaultMaxBody
	}
	return nil
}

// Validate checks the settings.
func (i *Injector) Validate() error {
	if !fieldName.MatchString(i.Field) {
		return fmt.Errorf("slack: field %q is not a field name (letters, digits, _)", i.Field)
	}
	if i.MaxBody < 0 {
		return fmt.Errorf("slack: max_body must be positive, e.g. max_body: 1048576")
	}
	return nil
}

// Inject checks the token and, for a form body, reads and rewrites it,
// then sets the header and drops the client's token query parameter.
func (i *Injector) Inject(r *http.Request, cred *providers.Credential) error {
	s, ok := cred.Field(i.Field)
	if !ok {
		return fmt.Errorf("slack: credential has no %q field: %w", i.Field, injectors.ErrMissingField)
	}
	tok := s.Reveal()
	if !isAccessToken(tok) {
		what := "a Slack access token (xoxb-, xoxp-, xapp-, xoxe.xoxb-, xoxe.xoxp-)"
		if strings.HasPrefix(tok, "xoxe-") {
			what += "; it holds a refresh token: use provider: slack to turn it into access tokens"
		}
		return fmt.Errorf("slack: field %q is not %s: %w", i.Field, what, injectors.ErrInvalidValue)
	}
	if isForm(r) {
		body, err := injectors.ReadBody("slack", r, i.MaxBody)
		if err != nil {
			return err
		}
		if nb, ok := withToken(body, tok); ok {
			injectors.SetBody(r, nb)
		}
	}
	r.Header.Set("Authorization", "Bearer "+tok)
	if r.URL.RawQuery != "" {
		r.URL.RawQuery = injectors.WithoutParams(r.URL.RawQuery, "token")
	}
	return nil
}

// isAccessToken reports whether tok is a Slack access token: bot, user,
// app-level, or a rotating bot or user token (xoxe.xoxb-), then letters,
// digits and dashes. A loop, not a regexp: it runs on every request.
func isAccessToken(tok string) bool {
	var rest string
	ok := false
	for _, p := range [...]string{"xoxb-", "xoxp-", "xapp-", "xoxe.xoxb-", "xoxe.xoxp-"} {
		if rest, ok = strings.CutPrefix(tok, p); ok {
			break
		}
	}
	if !ok || rest == "" {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// isForm reports whether r has a form-encoded body.
func isForm(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return false
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/x-www-form-urlencoded"
}

// withToken returns body with every token field removed and the token
// put where the first one was, and whether there was one. A token field
// is every spelling a server may read as "token" (injectors.PartNames:
// any escape, case, "+token" and "token%00x" as PHP reads them,
// "token[]", a ";token=" piece): Slack takes the body's token before the
// Authorization header, and PHP-style parsers the last of several. The
// other fields keep their order and encoding.
func withToken(body []byte, tok string) ([]byte, bool) {
	var out bytes.Buffer
	out.Grow(len(body) + len(tok))
	found := false
	for pair := range bytes.SplitSeq(body, []byte("&")) {
		if injectors.PartNames(string(pair), "token") {
			if found {
				continue
			}
			found = true
			pair = []byte("token=" + url.QueryEscape(tok))
		}
		if out.Len() > 0 {
			out.WriteByte('&')
		}
		out.Write(pair)
	}
	return out.Bytes(), found
}

// Headers implements injectors.HeaderNames.
func (*Injector) Headers() []string { return []string{"Authorization"} }

// Interface guards.
var (
	_ injectors.Injector    = (*Injector)(nil)
	_ injectors.Provisioner = (*Injector)(nil)
	_ injectors.Validator   = (*Injector)(nil)
	_ injectors.HeaderNames = (*Injector)(nil)
)
