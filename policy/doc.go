// Package policy decides, for every connection and request that reaches the
// gateway, whether a workload may reach a destination and with which
// credential.
//
// # Model
//
// A policy file has five sections:
//
//   - workloads: who is calling. Each workload is a set of selectors
//     (source CIDRs, SPIFFE IDs, Kubernetes namespace and service account,
//     claims, required factor kinds, token-to-certificate binding) that
//     a verified identity must satisfy; they become []identity.Spec for
//     the identity resolver, which also refuses factors that select
//     different workloads. A caller that matches no workload is anonymous.
//   - destinations: where to. Exact host names, "*." wildcards (any
//     subdomain depth, never the apex) and IP literals, with optional ports
//     (default 443 for https and CONNECT, 80 for plain http).
//   - credentials: named credential sources. Each is built once, when the
//     policy is loaded, by the provider module its `provider:` key names
//     (providers.Load), so a bad setting is reported with file:line:col.
//   - rules: in file order, the first rule whose `from` matches the caller
//     and whose `to` matches the host and port (and, for requests, whose
//     methods, paths and `when:` condition match) decides: deny, tunnel,
//     or inject a credential with a named injector (injectors.Load).
//     Conditions are CEL expressions over workload, request and now,
//     compiled and type-checked when the policy is parsed.
//   - default: deny. Nothing else is accepted.
//
// # Decisions
//
// A CONNECT is answered before any TLS with the client: Deny, Tunnel (no
// interception) or Intercept (only when a reachable rule for the host
// injects a credential or denies by method/path, so the gateway must see the
// requests). Every request inside an intercepted tunnel, and every plain
// http:// absolute-URI request, is then decided on its own: Inject, Forward
// or Deny, with a stable code and one human sentence saying why.
//
// Rules are compiled into an index keyed by host: an exact-name map and a
// wildcard-suffix map, each entry holding the candidate rules for that host
// already merged in file order. A decision is one or a few map lookups and
// a walk over the rules for that host; it never scans all rules.
//
// # Observe mode
//
// `mode: observe` (on the policy, a workload or a destination) turns the
// rules' own refusals (no_rule, denied_by_rule, method_not_allowed,
// path_not_allowed, condition_not_met) into a Tunnel or Forward decision
// with WouldDeny set: no credential, public addresses only (except that
// a method or path miss keeps the allow_private of the destination of an
// inject or tunnel rule without a condition that lets the caller through
// to that scheme, host and port by another method or path; never a deny
// rule's). Decision.Outcome names it
// "would_deny" for the audit line and metrics. Every other refusal stays.
//
// # Loading and reloading
//
// Parse and LoadFile validate strictly and collect every problem into an
// ErrorList whose entries read "FILE:LINE:COL: message". A Store holds the
// current Policy behind an atomic pointer, reloads it on request or on file
// change (Watch), and keeps the last good policy when a new one is invalid.
package policy
