package policy

import (
	"net/http"
	"time"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/transform"
)

// CodeBadMethod is the Decision code for a method that is not an
// upper-case token: it is refused, never normalised (invariant 11).
const CodeBadMethod = "bad_method"

// Action is what the gateway does with a connection or request.
type Action int

// Actions. Deny is the zero value so that a forgotten decision denies.
const (
	// Deny refuses with 403 and a machine-readable reason.
	Deny Action = iota
	// Tunnel (CONNECT only) splices bytes to the destination without
	// interception: the client sees the upstream's own certificate.
	Tunnel
	// Intercept (CONNECT only) terminates TLS with a gateway leaf
	// certificate so that each request inside is decided on its own.
	Intercept
	// Forward (request only) sends the request on unchanged, without a
	// credential (a tunnel rule matched on an intercepted host).
	Forward
	// Inject (request only) fetches the rule's credential and injects it.
	Inject
)

// String returns the lower-case name used in audit lines and metrics.
func (a Action) String() string {
	switch a {
	case Deny:
		return "deny"
	case Tunnel:
		return "tunnel"
	case Intercept:
		return "intercept"
	case Forward:
		return "forward"
	case Inject:
		return "inject"
	}
	return "unknown"
}

// Query is everything a decision depends on. New inputs are added as
// fields, so callers do not break when the policy grows.
type Query struct {
	// Workload is the verified caller.
	Workload identity.Workload
	// Connect is true for a CONNECT request: Method, Path and Header are
	// unknown and the answer is Deny, Tunnel or Intercept.
	Connect bool
	// Scheme is "https" for requests inside an intercepted tunnel and
	// "http" for plain absolute-URI requests.
	Scheme string
	// Host is the destination host name or IP literal, lower case, without
	// port or trailing dot.
	Host string
	// Port is the destination port.
	Port int
	// Method, Path and Header describe the request (not set for CONNECT).
	Method string
	Path   string
	Header http.Header
	// Now is the time rule conditions see as `now`; zero means
	// time.Now().
	Now time.Time
	// NoAllowReason leaves Decision.Reason empty when the request is
	// allowed (Inject, Forward, Tunnel, Intercept): the gateway prints a
	// reason only for refusals, and building the sentence costs more than
	// the rest of a decision. Refusals always carry their reason.
	NoAllowReason bool
}

// Decision is the answer to a Query, with the words `credgate explain` and
// the audit line print.
type Decision struct {
	// Action is what to do.
	Action Action
	// Rule is the name of the rule that decided, "" for the default.
	Rule string
	// Destination is the name of the matched destination, "" if none.
	Destination string
	// CustodyHeaders are the header fields, besides
	// DefaultCustodyHeaders, that the custody blocks of the rules to
	// Destination name (`headers:`): where custody placeholders are put
	// back in requests to it (CustodyHeader).
	CustodyHeaders []string
	// CustodyVersion digests what defines where the custody values of
	// Destination kept for this workload may go (Policy.CustodyVersion),
	// when the policy keeps custody: the version of their cache keys.
	CustodyVersion string
	// Code is a stable machine-readable reason, e.g. "no_rule",
	// "denied_by_rule", "method_not_allowed", "path_not_allowed",
	// "plaintext_not_allowed", "bad_method" (the method is not an upper-case
	// token), "condition_not_met" (a rule would apply
	// but its `when:` condition is false), "condition_error" (a condition
	// could not be evaluated, so the request is refused).
	Code string
	// Reason is one human sentence saying why.
	Reason string
	// AllowPrivate is true when the matched destination explicitly allows
	// addresses in loopback, private, link-local or metadata ranges.
	AllowPrivate bool
	// EncodedSlashes is true when the matched destination admits paths
	// with %2F (encoded_slashes: true); the gateway refuses such a path
	// otherwise.
	EncodedSlashes bool
	// EncodedDelimiters is true when the matched destination admits
	// paths with %3F or %23 (encoded_delimiters: true); the gateway
	// refuses such a path otherwise.
	EncodedDelimiters bool
	// WouldDeny is true when the policy refuses the request but observe
	// mode lets it through: Action is Tunnel (CONNECT) or Forward, never
	// Inject, AllowPrivate, EncodedSlashes and EncodedDelimiters are
	// false, Code is the
	// refusal's code and Rule the deny rule, if one decided.
	WouldDeny bool
	// Inject is set when Action is Inject.
	Inject *InjectPlan
	// Scrub is the rule's scrub setting and Custody its custody block
	// (nil: none), when Action is Inject.
	Scrub   Scrub
	Custody *Custody
	// Ranges is the rule's ranges setting (its default when it sets
	// none), when Action is Inject: what the gateway does with a Range
	// request whose response it scrubs.
	Ranges Ranges
	// RuleLimit is the deciding rule's rate_limit, and WorkloadLimit the
	// caller's workload's, when the decision admits traffic (Inject,
	// Forward, Tunnel); nil when there is none. The gateway counts a
	// rule's limit per (rule, workload) and a workload's across all its
	// rules.
	RuleLimit, WorkloadLimit *RateLimit
}

// Outcome is the decision as the audit line and the requests metric name
// it: WouldDeny for a refusal observe mode lets through, else
// Action.String(). A WouldDeny decision the gateway turned into Deny
// afterwards (the tunnel's upstream unreachable, say) is "deny".
func (d Decision) Outcome() string {
	if d.WouldDeny && d.Action != Deny {
		return WouldDeny
	}
	return d.Action.String()
}

// InjectPlan is the credential and injector a rule names, built when the
// policy was loaded.
type InjectPlan struct {
	// Credential is the policy's name for the credential.
	Credential string
	// CredentialVersion changes whenever the credential's settings change,
	// so cache keys of an edited credential do not collide with the old.
	CredentialVersion string
	// ProviderName is the registered name of the credential's provider
	// (the `provider:` key), for cache keys, metrics and audit lines.
	ProviderName string
	// Provider fetches the credential.
	Provider providers.Provider
	// As is the injector's registered name.
	As string
	// Injector rewrites the request.
	Injector injectors.Injector
	// Placeholder is the credential's placeholder, nil when it has none:
	// for a request this plan allows, the gateway replaces it with the
	// credential's Placeholder.Field (docs/agents.md).
	Placeholder *Placeholder
	// RequirePlaceholder refuses a request that carries no placeholder of
	// the credential (the rule's require_placeholder).
	RequirePlaceholder bool
	// SubstituteIn are the places of the request where the placeholder
	// may be replaced (the rule's substitute_in, or DefaultSubstituteIn
	// when it sets none); set when Placeholder is. Found anywhere else,
	// the placeholder is refused as a tripwire (docs/agents.md).
	SubstituteIn []transform.Place
	// SubstituteInDefault is set when the rule names no places and
	// SubstituteIn is DefaultSubstituteIn.
	SubstituteInDefault bool
	// AllowCopySource lets a request of the rule name a second object in
	// a copy or rename field (canonical.SourceHeaders: S3's
	// x-amz-copy-source, GCS's x-goog-copy-source, Azure's
	// x-ms-copy-source, ...), which the service reads or moves with the
	// injected credential wherever the field says: the rule's paths judge
	// only the request's own path. False (the rule's allow_copy_source
	// unset): the gateway refuses such a request, 403
	// copy_source_not_allowed.
	AllowCopySource bool
	// AllowBatch lets a request of the rule to a batch endpoint (Microsoft
	// Graph's and OData's $batch, Salesforce's composite resources,
	// Google's /batch; internal/batch) carry sub-requests the rule's
	// methods and paths do not admit: the service runs each with the
	// injected credential, so the setting hands the caller every path the
	// credential reaches. False (the rule's allow_batch unset): the
	// gateway judges every sub-request as a request of its own and
	// refuses the batch, 403 batch_request_not_allowed, unless this rule
	// admits each one.
	AllowBatch bool
	// Batch, when set, marks paths of the rule's destination as a batch
	// endpoint the gateway's table does not know, and the format of its
	// sub-requests (the rule's inject batch setting).
	Batch *BatchMark
	// inputs are the credentials Provider reads (providers.Composer),
	// recursively: their scopes are part of the cache key.
	inputs []providers.Input
	// uses is Credential and the names of inputs, recursively (Uses).
	uses []string
}

// Uses returns the names of the credentials an injection of the plan
// uses: Credential first, then every credential it reads to make it
// (providers.Composer), recursively, each once. A kill switch on any of
// them covers the plan: disabling a client secret or a signing key stops
// the tokens made from it too. The slice is shared: do not modify it.
func (p *InjectPlan) Uses() []string {
	if p.uses == nil {
		// A plan not built by the policy loader (tests).
		return []string{p.Credential}
	}
	return p.uses
}

// Bind binds the plan's credential to the caller wl: its cache key and
// fetch (providers.BindComposed). The key's scope covers the credentials
// it reads too, so one made from a per-caller input is per caller.
func (p *InjectPlan) Bind(wl identity.Workload) providers.Binding {
	return providers.BindComposed(p.Provider, p.inputs, providers.CacheKey{Credential: p.Credential, Version: p.CredentialVersion, Provider: p.ProviderName}, wl)
}
