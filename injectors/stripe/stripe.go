// Package stripe is the "stripe" injector: a Stripe secret or restricted
// key as "Authorization: Bearer", the connected account the request acts
// for (Stripe-Account, Stripe Connect) and the API version it is written
// against (Stripe-Version), all decided by the policy, not the client.
//
//	as: stripe
//	field: token                     # default: the credential field with the key
//	mode: live                       # optional: only sk_live_/rk_live_ keys (or test)
//	account: acct_1ExampleConnected  # optional; or "{{.workload.stripe_account}}"
//	accounts:                        # optional: per workload name, before account;
//	  billing-eu: acct_1EuAccount    # a caller not listed, with no account, is refused
//	version: "2025-03-31.basil"      # optional: pin Stripe-Version
//
// The client's Authorization and Stripe-Account are always removed: with
// no account the request acts for the platform account the key belongs
// to. The client's Stripe-Version is replaced when version is set and
// passed on otherwise (an SDK sends the version its types were generated
// for). The client's Idempotency-Key, and every other header, passes
// untouched, so retries stay idempotent.
//
// A publishable key (pk_) is refused at the first request, as is any key
// that is not sk_ or rk_ (or not of the mode's kind): the gateway cannot
// see a key when the policy loads (it is fetched when needed).
package stripe

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

// Name is the injector's registered name.
const Name = "stripe"

func init() {
	injectors.Register(injectors.Module{Name: Name,
		Doc: "Stripe secret or restricted key as Bearer, Stripe-Account (Connect) and Stripe-Version pinned by the policy",
		SettingDocs: map[string]string{
			"field":    `credential field holding the sk_ or rk_ key (default "token")`,
			"mode":     `"live" or "test": refuse keys of the other kind (default: either)`,
			"account":  "Stripe-Account to act for: acct_... or a {{.workload.NAME}} template (the client's is removed)",
			"accounts": "workload name → Stripe-Account, before account",
			"version":  "Stripe-Version to pin, e.g. 2025-03-31.basil (the client's is replaced)",
		},
		New: func() injectors.Injector { return new(Injector) }})
}

// Injector puts a Stripe key, and the account and version the policy
// chose, on requests.
type Injector struct {
	// Field is the credential field holding the key. Default "token".
	Field string `yaml:"field"`
	// Mode, "live" or "test", refuses keys of the other kind.
	Mode string `yaml:"mode"`
	// Account is the Stripe-Account to send: acct_... or a template over
	// the caller's verified attributes ({{.workload.NAME}}).
	Account string `yaml:"account"`
	// Accounts maps workload names to the Stripe-Account each acts for;
	// a caller listed here gets its own, others get Account.
	Accounts map[string]string `yaml:"accounts"`
	// Version, if set, is sent as Stripe-Version.
	Version string `yaml:"version"`

	account identity.Template
	headers []string
}

var (
	fieldName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// accountID is a Stripe account ID, compiled on first use ({1,64}:
	// a 21 KB program).
	accountID = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^acct_[A-Za-z0-9]{1,64}$`) })
	// apiVersion is a dated Stripe API version, with its release name
	// since 2024-09-30 (2024-09-30.acacia).
	apiVersion = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}(\.[a-z]+)?$`)
)

// Provision applies defaults and parses the account template.
func (i *Injector) Provision() error {
	if i.Field == "" {
		i.Field = providers.FieldToken
	}
	t, err := identity.ParseTemplate(i.Account)
	if err != nil {
		return fmt.Errorf("stripe: account: %w", err)
	}
	i.account = t
	i.headers = []string{"Authorization", "Stripe-Account"}
	if i.Version != "" {
		i.headers = append(i.headers, "Stripe-Version")
	}
	return nil
}

// Validate checks every setting.
func (i *Injector) Validate() error {
	if !fieldName.MatchString(i.Field) {
		return fmt.Errorf("stripe: field %q is not a field name (letters, digits, _)", i.Field)
	}
	switch i.Mode {
	case "", "live", "test":
	default:
		return fmt.Errorf(`stripe: mode %q is neither "live" nor "test"; leave it out to accept both`, i.Mode)
	}
	if i.Account != "" && !i.account.Templated() && !accountID().MatchString(i.Account) {
		return fmt.Errorf("stripe: account %q is not a Stripe account ID (acct_ and letters or digits) nor a {{.workload.NAME}} template", i.Account)
	}
	for _, wl := range slices.Sorted(mapKeys(i.Accounts)) {
		if !accountID().MatchString(i.Accounts[wl]) {
			return fmt.Errorf("stripe: accounts: %q for workload %q is not a Stripe account ID (acct_ and letters or digits)", i.Accounts[wl], wl)
		}
	}
	if i.Version != "" && !apiVersion.MatchString(i.Version) {
		return fmt.Errorf("stripe: version %q is not a Stripe API version (YYYY-MM-DD or YYYY-MM-DD.name, e.g. 2025-03-31.basil)", i.Version)
	}
	return nil
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// ErrPublishableKey marks a publishable key (pk_) where a secret or
// restricted key is needed: it cannot call the API server-side, and
// forwarding it would only leak which account the platform uses.
var ErrPublishableKey = errors.New("a publishable key (pk_) cannot authenticate API calls; give the credential a secret (sk_) or restricted (rk_) key")

// Inject puts the key on r for no particular caller.
func (i *Injector) Inject(r *http.Request, cred *providers.Credential) error {
	return i.InjectFor(r, cred, identity.Workload{})
}

// InjectFor checks the key's shape and renders the account for wl, then
// sets the headers.
func (i *Injector) InjectFor(r *http.Request, cred *providers.Credential, wl identity.Workload) error {
	s, ok := cred.Field(i.Field)
	if !ok {
		return fmt.Errorf("stripe: credential has no %q field: %w", i.Field, injectors.ErrMissingField)
	}
	key := s.Reveal()
	if err := i.checkKey(key); err != nil {
		return err
	}
	account := i.Accounts[wl.Name]
	if account == "" && i.Account == "" && len(i.Accounts) > 0 {
		// Fail closed: a caller the rule did not map would otherwise act
		// for the platform account, with every connected account's data.
		return fmt.Errorf("stripe: workload %s has no entry in accounts and the rule sets no account; add it to accounts: %w", wl.DisplayName(), injectors.ErrRequest)
	}
	if account == "" && i.Account != "" {
		a, err := i.account.Render(wl, checkAccount)
		if err != nil {
			return fmt.Errorf("stripe: account for workload %s: %w: %w", wl.DisplayName(), err, injectors.ErrRequest)
		}
		account = a
	}
	r.Header.Set("Authorization", "Bearer "+key)
	if account != "" {
		r.Header.Set("Stripe-Account", account)
	}
	if i.Version != "" {
		r.Header.Set("Stripe-Version", i.Version)
	}
	return nil
}

// checkKey refuses a publishable key, a key of the other mode and
// anything not shaped like a Stripe secret or restricted key. The error
// names the prefix at most, never the key.
func (i *Injector) checkKey(key string) error {
	if strings.HasPrefix(key, "pk_") {
		return fmt.Errorf("stripe: field %q: %w: %w", i.Field, ErrPublishableKey, injectors.ErrInvalidValue)
	}
	mode, ok := keyMode(key)
	if !ok {
		return fmt.Errorf("stripe: field %q does not hold a Stripe secret or restricted key (sk_live_..., sk_test_..., rk_live_..., rk_test_...): %w", i.Field, injectors.ErrInvalidValue)
	}
	if i.Mode != "" && mode != i.Mode {
		return fmt.Errorf("stripe: field %q holds a %s-mode key but the rule sets mode: %s; give it a %s key or change mode: %w", i.Field, mode, i.Mode, i.Mode, injectors.ErrInvalidValue)
	}
	return nil
}

// keyMode returns "live" or "test" for a key shaped sk_ or rk_, then
// live_ or test_, then letters and digits (a loop, not a regexp: it runs
// on every request).
func keyMode(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, "sk_")
	if !ok {
		if rest, ok = strings.CutPrefix(key, "rk_"); !ok {
			return "", false
		}
	}
	for _, mode := range [...]string{"live", "test"} {
		body, ok := strings.CutPrefix(rest, mode+"_")
		if !ok || body == "" {
			continue
		}
		for i := 0; i < len(body); i++ {
			if c := body[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
				return "", false
			}
		}
		return mode, true
	}
	return "", false
}

// checkAccount vets a Stripe-Account rendered from a workload attribute.
func checkAccount(v string) error {
	if !accountID().MatchString(v) {
		return errors.New("not a Stripe account ID (acct_ and letters or digits)")
	}
	return nil
}

// Headers implements injectors.HeaderNames: Authorization and
// Stripe-Account always, Stripe-Version when the rule pins it.
func (i *Injector) Headers() []string { return i.headers }

// Interface guards.
var (
	_ injectors.Injector         = (*Injector)(nil)
	_ injectors.WorkloadInjector = (*Injector)(nil)
	_ injectors.Provisioner      = (*Injector)(nil)
	_ injectors.Validator        = (*Injector)(nil)
	_ injectors.HeaderNames      = (*Injector)(nil)
)
