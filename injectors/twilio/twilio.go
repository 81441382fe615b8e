// Package twilio is the "twilio" injector: HTTP Basic with an API key
// SID and secret (or the Account SID and auth token), and the Account
// SID written into the request path, so applications hold neither the
// secret nor the account they act for.
//
//	as: twilio
//	account_sid: AC0123456789abcdef0123456789abcdef   # optional; default the credential's account_sid field
//
// The credential has the fields account_sid (unless the rule sets it),
// and either api_key_sid (SK...) and api_key_secret, or auth_token.
//
// The application sends the fixed placeholder "-" as the account segment:
// /2010-04-01/Accounts/-/Messages.json (or /2010-04-01/Accounts/-.json).
// The policy matches that path as sent; the injector then writes the real
// Account SID into exactly that one segment and changes nothing else. The
// SID is checked to be "AC" and 32 hex digits first, so the rewritten
// path has the same segments, each as canonical as before: the upstream
// routes it to the resource the policy allowed, for the account the
// credential is for. A path that names an account itself (a subaccount
// SID) is forwarded as sent; the rule's paths decide whether it is
// allowed.
package twilio

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

// Name is the injector's registered name.
const Name = "twilio"

// Placeholder is the account segment applications send in place of the
// Account SID.
const Placeholder = "-"

// AccountsPrefix is the path prefix before the account segment.
const AccountsPrefix = "/2010-04-01/Accounts/"

// Credential fields the injector reads.
const (
	FieldAccountSID   = "account_sid"
	FieldAPIKeySID    = "api_key_sid"
	FieldAPIKeySecret = "api_key_secret"
	FieldAuthToken    = "auth_token"
)

func init() {
	injectors.Register(injectors.Module{Name: Name,
		Doc: "Twilio Basic (API key SID + secret, or Account SID + auth token) and the Account SID written into the /Accounts/-/ path segment",
		SettingDocs: map[string]string{
			"account_sid": "the Account SID (AC + 32 hex digits) written into the path; default the credential's account_sid field",
		},
		New: func() injectors.Injector { return new(Injector) }})
}

// Injector puts Twilio credentials and the Account SID on requests.
type Injector struct {
	// AccountSID, if set, is the Account SID written into the path;
	// otherwise the credential's account_sid field is.
	AccountSID string `yaml:"account_sid"`
}

// isSID reports whether v is prefix and 32 lower-case hex digits: an
// Account SID (AC) or API key SID (SK). A loop, not a regexp: it runs on
// every request.
func isSID(v, prefix string) bool {
	h, ok := strings.CutPrefix(v, prefix)
	if !ok || len(h) != 32 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Validate checks the Account SID setting.
func (i *Injector) Validate() error {
	if i.AccountSID != "" && !isSID(i.AccountSID, "AC") {
		return fmt.Errorf("twilio: account_sid %q is not an Account SID (AC and 32 lower-case hex digits, as in the Twilio console)", i.AccountSID)
	}
	return nil
}

// Inject checks every value, then sets Authorization and writes the
// Account SID into the placeholder segment of the path, if there is one.
func (i *Injector) Inject(r *http.Request, cred *providers.Credential) error {
	sid := i.AccountSID
	if sid == "" {
		s, ok := cred.Field(FieldAccountSID)
		if !ok {
			return fmt.Errorf("twilio: credential has no %q field and the rule sets no account_sid: %w", FieldAccountSID, injectors.ErrMissingField)
		}
		sid = s.Reveal()
	}
	// The SID goes into the path: it must be one canonical segment.
	if !isSID(sid, "AC") {
		return fmt.Errorf("twilio: the %q field is not an Account SID (AC and 32 lower-case hex digits): %w", FieldAccountSID, injectors.ErrInvalidValue)
	}
	user, pass, err := basicPair(cred, sid)
	if err != nil {
		return err
	}
	path, raw, ok := withAccount(r.URL.Path, r.URL.EscapedPath(), sid)
	r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	if ok {
		r.URL.Path = path
		r.URL.RawPath = ""
		if raw != path {
			r.URL.RawPath = raw
		}
	}
	return nil
}

// basicPair returns the API key SID and secret when the credential has an
// API key, else the Account SID and auth token.
func basicPair(cred *providers.Credential, sid string) (user, pass string, err error) {
	if k, ok := cred.Field(FieldAPIKeySID); ok {
		if !isSID(k.Reveal(), "SK") {
			return "", "", fmt.Errorf("twilio: the %q field is not an API key SID (SK and 32 lower-case hex digits): %w", FieldAPIKeySID, injectors.ErrInvalidValue)
		}
		s, ok := cred.Field(FieldAPIKeySecret)
		if !ok {
			return "", "", fmt.Errorf("twilio: credential has %q but no %q field: %w", FieldAPIKeySID, FieldAPIKeySecret, injectors.ErrMissingField)
		}
		return k.Reveal(), s.Reveal(), nil
	}
	t, ok := cred.Field(FieldAuthToken)
	if !ok {
		return "", "", fmt.Errorf("twilio: credential has neither %q and %q nor %q: %w", FieldAPIKeySID, FieldAPIKeySecret, FieldAuthToken, injectors.ErrMissingField)
	}
	return sid, t.Reveal(), nil
}

// withAccount returns the decoded and raw path with the placeholder
// account segment replaced by sid, and whether there was one: the segment
// after /2010-04-01/Accounts/ that is exactly "-" or "-.json" on the wire.
// Nothing else of the path changes.
func withAccount(path, raw, sid string) (string, string, bool) {
	rest, ok := placeholderRest(raw)
	if !ok {
		return path, raw, false
	}
	drest, ok := placeholderRest(path)
	if !ok {
		return path, raw, false // cannot happen: the prefix and "-" need no escaping
	}
	return AccountsPrefix + sid + drest, AccountsPrefix + sid + rest, true
}

// placeholderRest returns what follows the placeholder in p when p's
// account segment is the placeholder.
func placeholderRest(p string) (string, bool) {
	seg, ok := strings.CutPrefix(p, AccountsPrefix+Placeholder)
	if !ok {
		return "", false
	}
	if seg == "" || strings.HasPrefix(seg, "/") || seg == ".json" {
		return seg, true
	}
	return "", false
}

// Headers implements injectors.HeaderNames.
func (*Injector) Headers() []string { return []string{"Authorization"} }

// PathPlaceholder implements injectors.PathPlaceholder: the account
// segment the injector writes the Account SID into.
func (*Injector) PathPlaceholder() string { return Placeholder }

// Interface guards.
var (
	_ injectors.Injector        = (*Injector)(nil)
	_ injectors.Validator       = (*Injector)(nil)
	_ injectors.HeaderNames     = (*Injector)(nil)
	_ injectors.PathPlaceholder = (*Injector)(nil)
)
