// Package injectors rewrites an outbound request with a credential. An
// Injector is chosen by the `as:` field of a rule's `inject:` block and
// registered by name, like providers.
//
// The gateway calls Inject only after identity, policy and the credential
// fetch have all succeeded, on a request whose client-supplied
// Proxy-Authorization and hop-by-hop headers were already removed.
package injectors

import (
	"errors"
	"net/http"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/providers"
)

// ErrMissingField marks a credential that lacks a field the injector
// needs. It is a fault of the value (errors.Is(err, ErrInvalidValue)):
// the source returned a credential of another shape.
var ErrMissingField error = &faultError{"credential lacks a field the injector needs", ErrInvalidValue}

// ErrRequest marks an injector error that is the request's or its
// caller's doing, not the credential's: a body too large to sign, a form
// the injector cannot rewrite (a presigned URL, a malformed body), a host
// the injector does not serve, a workload the rule maps to no account.
// The gateway refuses that request and keeps the credential cached: one
// caller's request must never make a credential unavailable to others.
// Its opposite is ErrInvalidValue (FaultOf).
var ErrRequest = errors.New("the request cannot carry the credential")

// ErrBodyTooLarge marks a request whose body the injector would have to
// hold in memory (to hash it for a signature) beyond its configured cap.
// The gateway answers 413 and forwards nothing. It is an ErrRequest.
var ErrBodyTooLarge error = &faultError{"request body too large for the injector", ErrRequest}

// ErrUnsupportedRequest marks a request the injector cannot rewrite in a
// form the client chose (a presigned URL, an unknown payload signing
// mode). It is the client's request that must change: the gateway
// answers 400 and forwards nothing. It is an ErrRequest.
var ErrUnsupportedRequest error = &faultError{"request form not supported by the injector", ErrRequest}

// faultError is a sentinel that is also the fault it belongs to
// (errors.Is(ErrBodyTooLarge, ErrRequest)).
type faultError struct {
	msg   string
	fault error
}

func (e *faultError) Error() string        { return e.msg }
func (e *faultError) Is(target error) bool { return target == e.fault }

// Fault says whose doing an injector's error is, and so what the gateway
// does with the credential the injector was given.
type Fault string

// The faults FaultOf tells apart.
const (
	// FaultValue: the credential's value (ErrInvalidValue,
	// ErrMissingField): it would fail every request until it expired, so
	// the gateway drops it from the cache, with the error backoff.
	FaultValue Fault = "value"
	// FaultRequest: the request or its caller (ErrRequest,
	// ErrUnsupportedRequest, ErrBodyTooLarge): the credential is kept.
	FaultRequest Fault = "request"
	// FaultInjector: neither says so: the injector or the gateway
	// (ErrDestinationChanged, ErrHeaderRefused, ErrInjectorPanicked, a
	// signing service that failed). The credential is kept: only an
	// error that says the value is at fault evicts it.
	FaultInjector Fault = "injector"
)

// FaultOf classifies err, an error of Inject or ApplyFor. An error that
// says both (it should not) counts as the request's: keeping a good
// credential costs one refused request, evicting it on a caller's
// request would deny it to every caller for the error backoff.
func FaultOf(err error) Fault {
	switch {
	case errors.Is(err, ErrRequest):
		return FaultRequest
	case errors.Is(err, ErrInvalidValue):
		return FaultValue
	}
	return FaultInjector
}

// ErrDestinationChanged marks an injector that changed where the request
// goes or what it does (the method, the URL's scheme or host, the Host
// field, userinfo, the path beyond its declared placeholder segment): the
// policy decided that, and a credential goes only to the destination and
// path its rule names (invariants 1 and 11). The gateway answers 502 and
// forwards nothing.
var ErrDestinationChanged = errors.New("the injector changed the request's method, path or destination")

// ErrHeaderRefused marks an injector that set a header the gateway does
// not forward: one reserved for the proxy (framing, hop-by-hop,
// Proxy-Authorization, X-Forwarded-*, X-Credgate-*), an invalid name, a
// value with a line break, NUL or other control character, several
// values, or headers over MaxInjectedHeaderBytes. The gateway answers 502
// and forwards nothing.
var ErrHeaderRefused = errors.New("the injector set a header the gateway does not forward")

// ErrInjectorPanicked marks an injector that panicked. The error says
// where and the panic value's type, never the value (it may hold the
// credential). The gateway answers 502 and forwards nothing.
var ErrInjectorPanicked = errors.New("the injector panicked")

// Injector rewrites r with cred.
//
// Inject checks everything that can fail (fields present, template
// renders) before it changes r, so a failed Inject leaves r untouched and
// the gateway answers 502 without forwarding. Headers it sets replace any
// value the client sent (Set, never Add), so a client cannot choose or
// override the credential. Implementations are safe for concurrent use and
// never put a secret value in an error.
type Injector interface {
	Inject(r *http.Request, cred *providers.Credential) error
}

// HeaderNames is implemented by injectors that set headers. The gateway
// removes these names from the client's request before injecting, and
// `credgate explain` lists them. Headers is called per request: it may
// return the same slice every time, and callers must not modify it.
type HeaderNames interface {
	Headers() []string
}

// WorkloadInjector is implemented by injectors that put values derived
// from the verified caller on the request (a Stripe-Account per
// workload). ApplyFor calls InjectFor instead of Inject; the same rules
// hold: everything that can fail is checked before r changes.
type WorkloadInjector interface {
	Injector
	InjectFor(r *http.Request, cred *providers.Credential, wl identity.Workload) error
}

// HostChecker is implemented by injectors whose credential belongs to
// known hosts only (a Datadog site). When a policy loads, CheckHost is
// called with every host of every destination of the rule (a wildcard as
// "*.suffix"); its error, saying which hosts would be right, is reported
// at the rule's `as:`.
type HostChecker interface {
	CheckHost(host string) error
}

// SignatureOnly is implemented by injectors that put no reusable secret
// of the credential on the request, only a signature computed for that
// request (and values that authenticate nothing without the signing key,
// such as an AWS session token, or that are public, such as an account
// name). An upstream cannot store such a rule's secret to hand it back
// in pieces (a placeholder aside), so a policy rule with such an injector,
// no placeholder and no custody block passes HTTP Range requests by
// default (policy `ranges:`), and ranged downloads keep working.
type SignatureOnly interface {
	SignatureOnly()
}

// PathPlaceholder is implemented by injectors that write a value into
// the path in place of a placeholder segment the application sent
// (twilio's Account SID for /2010-04-01/Accounts/-/): PathPlaceholder
// returns the placeholder's text. The policy matched the path with the
// placeholder; ApplyFor lets the injector replace only segments that are
// exactly the placeholder, or the placeholder and an extension (-.json,
// which the new segment keeps), each with one plain segment (letters,
// digits, '-', '.', '_', '~'; not "." or ".."). Any other change to the
// path fails with ErrDestinationChanged.
type PathPlaceholder interface {
	PathPlaceholder() string
}

// Provisioner, Validator and CleanerUpper mirror the provider lifecycle.
type (
	// Provisioner is implemented by injectors that prepare state (parse a
	// template, load a key) after their settings were decoded.
	Provisioner interface{ Provision() error }
	// Validator is implemented by injectors that check their settings.
	Validator interface{ Validate() error }
)
