// Package datadog is the "datadog" injector: the DD-API-KEY and
// DD-APPLICATION-KEY headers from one credential with two fields, for
// the Datadog site the rule's destination belongs to.
//
//	as: datadog
//	site: datadoghq.eu             # optional: the rule's hosts must be on this site
//	api_key_field: api_key         # default
//	app_key_field: app_key         # default
//	api_key_only: false            # true: intake endpoints that take the API key alone
//
// When the policy loads, every host of the rule's destinations must be a
// Datadog host (datadoghq.com, us3/us5/ap1/ap2.datadoghq.com,
// datadoghq.eu, ddog-gov.com, or a host under one of them; of the one
// site when site is set), so the keys are never sent anywhere else; the
// host of each request is checked again before the keys are set. The
// client's copies of both headers are removed.
package datadog

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

// Name is the injector's registered name.
const Name = "datadog"

func init() {
	injectors.Register(injectors.Module{Name: Name,
		Doc: "Datadog DD-API-KEY and DD-APPLICATION-KEY from one credential, for Datadog site hosts only",
		SettingDocs: map[string]string{
			"site":          "the Datadog site the rule's hosts must be on (datadoghq.com, us3.datadoghq.com, us5.datadoghq.com, datadoghq.eu, ap1.datadoghq.com, ap2.datadoghq.com, ddog-gov.com); default any",
			"api_key_field": `credential field holding the API key (default "api_key")`,
			"app_key_field": `credential field holding the application key (default "app_key")`,
			"api_key_only":  "send DD-API-KEY alone (intake endpoints)",
		},
		New: func() injectors.Injector { return new(Injector) }})
}

// Sites are the Datadog sites, each the domain its hosts are under.
var Sites = []string{"datadoghq.com", "us3.datadoghq.com", "us5.datadoghq.com", "datadoghq.eu", "ap1.datadoghq.com", "ap2.datadoghq.com", "ddog-gov.com"}

// Injector puts Datadog keys on requests.
type Injector struct {
	// Site, if set, is the one Datadog site the rule's hosts must be on.
	Site string `yaml:"site"`
	// APIKeyField is the credential field with the API key. Default "api_key".
	APIKeyField string `yaml:"api_key_field"`
	// AppKeyField is the credential field with the application key.
	// Default "app_key".
	AppKeyField string `yaml:"app_key_field"`
	// APIKeyOnly sends DD-API-KEY alone, for endpoints (log, metric
	// intake) that need no application key.
	APIKeyOnly bool `yaml:"api_key_only"`

	headers []string
}

var (
	fieldName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Provision applies defaults.
func (i *Injector) Provision() error {
	if i.APIKeyField == "" {
		i.APIKeyField = "api_key"
	}
	if i.AppKeyField == "" {
		i.AppKeyField = "app_key"
	}
	i.headers = []string{"Dd-Api-Key", "Dd-Application-Key"}
	return nil
}

// Validate checks the settings.
func (i *Injector) Validate() error {
	if i.Site != "" && !isSite(i.Site) {
		return fmt.Errorf("datadog: site %q is not a Datadog site; use one of %s", i.Site, strings.Join(Sites, ", "))
	}
	for _, f := range []struct{ name, v string }{{"api_key_field", i.APIKeyField}, {"app_key_field", i.AppKeyField}} {
		if !fieldName.MatchString(f.v) {
			return fmt.Errorf("datadog: %s %q is not a field name (letters, digits, _)", f.name, f.v)
		}
	}
	return nil
}

func isSite(s string) bool {
	for _, x := range Sites {
		if s == x {
			return true
		}
	}
	return false
}

// SiteOf returns the Datadog site host is on ("" when none). A host
// under a regional site of datadoghq.com (api.us5.datadoghq.com) is on
// that regional site, not on datadoghq.com.
func SiteOf(host string) string {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	best := ""
	for _, s := range Sites {
		if (host == s || strings.HasSuffix(host, "."+s)) && len(s) > len(best) {
			best = s
		}
	}
	return best
}

// CheckHost implements injectors.HostChecker: host must be a Datadog
// host, on the configured site when there is one. A wildcard
// "*.datadoghq.com" covers the regional sites too and is refused when a
// site is set.
func (i *Injector) CheckHost(host string) error {
	name, wild := strings.CutPrefix(host, "*.")
	s := SiteOf(name)
	switch {
	case s == "":
		return fmt.Errorf("datadog: host %s is not a Datadog site host; the Datadog keys go only to hosts under %s", host, strings.Join(Sites, ", "))
	case i.Site != "" && s != i.Site:
		return fmt.Errorf("datadog: host %s is on site %s, but the rule sets site: %s; keys of one site are not valid on another", host, s, i.Site)
	case i.Site != "" && wild && name == "datadoghq.com" && i.Site == "datadoghq.com":
		return fmt.Errorf("datadog: host %s also covers the regional sites (us3, us5, ap1, ap2); list the datadoghq.com hosts the rule needs, e.g. api.datadoghq.com", host)
	}
	return nil
}

// ErrNotDatadogHost marks a request to a host that is not a Datadog host
// of the rule's site (the policy loader refuses such rules; Inject checks
// again). It is the request's host, not the credential, at fault: it is an
// injectors.ErrRequest, and the gateway keeps the credential cached.
var ErrNotDatadogHost = fmt.Errorf("not a Datadog host of the rule's site: %w", injectors.ErrRequest)

// Inject checks the request's host and both keys, then sets them.
func (i *Injector) Inject(r *http.Request, cred *providers.Credential) error {
	if host := r.URL.Hostname(); i.CheckHost(host) != nil {
		return fmt.Errorf("datadog: request to %s, which is not a Datadog host of the rule's site; nothing was injected: %w", host, ErrNotDatadogHost)
	}
	api, err := i.key(cred, i.APIKeyField, 32, "API key (32 hex digits)")
	if err != nil {
		return err
	}
	var app string
	if !i.APIKeyOnly {
		if app, err = i.key(cred, i.AppKeyField, 40, "application key (40 hex digits)"); err != nil {
			return err
		}
	}
	r.Header.Set("Dd-Api-Key", api)
	if app != "" {
		r.Header.Set("Dd-Application-Key", app)
	}
	return nil
}

// key returns the field's value when it is n lower-case hex digits, the
// documented shape of Datadog's API (32) and application (40) keys.
func (i *Injector) key(cred *providers.Credential, field string, n int, what string) (string, error) {
	s, ok := cred.Field(field)
	if !ok {
		return "", fmt.Errorf("datadog: credential has no %q field (the %s): %w", field, what, injectors.ErrMissingField)
	}
	v := s.Reveal()
	if !isHex(v, n) {
		return "", fmt.Errorf("datadog: field %q is not a Datadog %s; check that the credential's fields are not swapped: %w", field, what, injectors.ErrInvalidValue)
	}
	return v, nil
}

func isHex(v string, n int) bool {
	if len(v) != n {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Headers implements injectors.HeaderNames: both key headers, so a
// client's copy of either never passes.
func (i *Injector) Headers() []string { return i.headers }

// Interface guards.
var (
	_ injectors.Injector    = (*Injector)(nil)
	_ injectors.Provisioner = (*Injector)(nil)
	_ injectors.Validator   = (*Injector)(nil)
	_ injectors.HeaderNames = (*Injector)(nil)
	_ injectors.HostChecker = (*Injector)(nil)
)
