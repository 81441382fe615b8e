package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/canonical"
	"github.com/credgate/credgate/killswitch"
	"github.com/credgate/credgate/policy"
	"github.com/credgate/credgate/transform"
)

// Probe is one request as a client sends it through the gateway, for
// Explain: what its connection presents and the request itself.
type Probe struct {
	// Evidence is what the client's connection presents (its address,
	// verified certificate chains, Proxy-Authorization).
	Evidence identity.Evidence
	// Method is the request method, as sent (the gateway refuses one
	// that is not upper case).
	Method string
	// URL is the absolute URL: https://host[:port]/path?query (a CONNECT
	// to host:port, then the request inside the intercepted tunnel) or
	// http://... (an absolute-form request). Its path and query are
	// taken as written: they are the request target on the wire.
	URL string
	// Header holds the request's header fields, as sent.
	Header http.Header
	// Body is the request's body as sent (after any content coding its
	// Content-Encoding names); nil for none. Only a request to a batch
	// endpoint has its body judged: its sub-requests (BatchExplanation).
	Body []byte
	// Now is the time `when:` conditions see as `now`; zero means the
	// current time (a replayed audit line passes its own time).
	Now time.Time
}

// Judge is what Explain decides with: the state a running gateway holds.
type Judge struct {
	// Policy is the policy in force.
	Policy *policy.Policy
	// Identity verifies the probe's evidence, as the gateway's resolver.
	Identity interface {
		Resolve(ctx context.Context, ev identity.Evidence, specs []identity.Spec) (identity.Workload, error)
	}
	// Switches are the kill switches in force; nil when they are not
	// known (Explanation.SwitchesUnknown).
	Switches *killswitch.Snapshot
	// Config is the gateway config, for its resolve map; nil for none.
	Config *Config
	// Issuer is the interception CA's leaf issuer (Config.Issuer), which
	// refuses a host the CA's name constraints do not permit; nil when
	// not known.
	Issuer *mitm.Issuer
}

// Explanation is what the gateway does with a Probe, as far as it can be
// known without a connection, DNS or the credential: the workload, the
// CONNECT and request decisions and the final answer.
type Explanation struct {
	// Workload is the caller, as identity resolved it.
	Workload identity.Workload
	// IdentityErr is why identity refused the caller (the gateway logs
	// it; the client gets the generic reason of Decision).
	IdentityErr error
	// Connect is the CONNECT's decision (https), nil for plain http or
	// when the gateway refused the request before deciding.
	Connect *policy.Decision
	// Request is the decision of the request, nil when the CONNECT
	// decision ended it, or the request was refused before deciding.
	Request *policy.Decision
	// Decision is the final answer: the decision that let the request
	// through, or the refusal, whose Code and Reason are the ones the
	// client receives (X-Credgate-Reason and the JSON body) and whose Rule
	// the audit line names.
	Decision policy.Decision
	// Status is the HTTP status of a refusal, 200 when allowed.
	Status int
	// Allowed is true when the request (or the CONNECT of a tunnel) goes
	// through: inject, forward, tunnel, or would_deny in observe mode.
	Allowed bool
	// Switch names the kill switch that refused it ("rule:NAME").
	Switch string
	// Address is the special-purpose address check, "" when the address
	// is not known without DNS.
	Address string
	// Stage is where it ended: "target", "identity", "connect",
	// "request" (before the decision: the method, path and header
	// checks), "decision" or "batch" (a sub-request of its body).
	Stage string
	// Batch is how the body of a request an inject rule admits to a
	// batch endpoint was judged; nil for any other request.
	Batch *BatchExplanation
}

// BatchExplanation is how Explain judged a batch's body: as the gateway
// judges it before the credential is fetched (judgeBatchBody).
type BatchExplanation struct {
	// Service names the endpoint ("Microsoft Graph $batch").
	Service string
	// Subs is the verdict on each target of each sub-request, in order;
	// empty when the body has none or did not parse (the refusal says
	// why). The gateway refuses the batch for the first one refused.
	Subs []SubVerdict
	// Judged is how many sub-requests the body holds: the requests the
	// rate limits count the batch as (0: one request).
	Judged int
}

// refused makes ex's answer the refusal f of stage, after decision d
// (zero when nothing was decided).
func (ex *Explanation) refused(stage string, d policy.Decision, f refusal) *Explanation {
	ex.Stage, ex.Allowed, ex.Status, ex.Switch = stage, false, f.Status, f.Switch
	rule := d.Rule
	if f.Rule != "" {
		rule = f.Rule
	}
	ex.Decision = policy.Decision{Action: policy.Deny, Rule: rule, Destination: d.Destination, Code: f.Code, Reason: f.Reason}
	return ex
}

// Explain decides p as the gateway would, with the same functions in
// the same order as a CONNECT (handleConnect) and the request inside it
// (handle), or an absolute-form request (serveProxy): the target check,
// identity, the kill switch, the address check, the interception CA's
// leaf, the method, path and header checks, the decision, the
// encoded-slash check, the placeholder tripwire of a refused request,
// the kill switch, the special-purpose address check, the copy-source
// check and, for a request to a batch endpoint, its body's sub-requests
// (judgeBatchBody). What it cannot know is left out: rate limits in use,
// the batch budget in use, DNS answers (the address check applies to IP
// literals and Config's resolve map only), the credential's fetch and
// the upstream's answer. TestExplainMatchesServe holds it to the running
// gateway.
func (j Judge) Explain(ctx context.Context, p Probe) (*Explanation, error) {
	scheme, authority, reqTarget, err := splitProbeURL(p.URL)
	if err != nil {
		return nil, err
	}
	ex := &Explanation{Status: http.StatusOK, Stage: "decision"}
	h := p.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	r := &http.Request{Method: p.Method, Header: h, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: authority}
	r = r.WithContext(ctx)
	var dest target
	var f *refusal
	if scheme == "https" {
		hostPort := authority
		if _, _, err := net.SplitHostPort(authority); err != nil {
			hostPort = net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(authority, "["), "]"), "443")
		}
		if dest, f = connectTarget(hostPort, hostPort); f != nil {
			return ex.refused("target", policy.Decision{}, *f), nil
		}
		if r.URL, err = url.ParseRequestURI(reqTarget); err != nil {
			return nil, fmt.Errorf("explain: URL %q: %w", p.URL, err)
		}
		r.RequestURI = reqTarget
	} else {
		if r.URL, err = url.Parse(p.URL); err != nil {
			return nil, fmt.Errorf("explain: URL %q: %w", p.URL, err)
		}
		r.URL.Fragment, r.URL.RawFragment = "", ""
		r.RequestURI, _, _ = strings.Cut(p.URL, "#")
		if dest, f = proxyTarget(r.URL); f != nil {
			return ex.refused("target", policy.Decision{}, *f), nil
		}
	}
	specs := j.Policy.Workloads()
	resolve := func() bool {
		wl, err := j.Identity.Resolve(ctx, p.Evidence, specs)
		ex.Workload = wl
		if err != nil {
			ex.IdentityErr = err
			ex.refused("identity", policy.Decision{}, identityRefusal(err))
			return false
		}
		return true
	}
	if scheme == "https" {
		if !resolve() {
			return ex, nil
		}
		d := j.Policy.Decide(policy.Query{Workload: ex.Workload, Connect: true, Host: dest.host, Port: dest.port, Now: p.Now})
		ex.Connect = &d
		if f := decisionRefusal(d, true); f != nil {
			return ex.refused("connect", d, *f), nil
		}
		if e := switchMatch(j.Switches, ex.Workload, d, true); e != nil {
			return ex.refused("connect", d, switchRefusalOf(e, d.Rule)), nil
		}
		if f := j.address(ex, dest, d); f != nil {
			return ex.refused("connect", d, *f), nil
		}
		if d.Action == policy.Tunnel {
			ex.Decision, ex.Allowed, ex.Stage = d, true, "connect"
			return ex, nil
		}
		// The leaf the handshake would present (handleConnect).
		if j.Issuer != nil {
			if _, err := j.Issuer.Certificate(ctx, "", dest.host); err != nil {
				return ex.refused("connect", d, leafRefusal(dest, err, d.Rule)), nil
			}
		}
	}
	cp, _, f := (*Gateway)(nil).prepareRequest(r)
	if f != nil {
		return ex.refused("request", policy.Decision{}, *f), nil
	}
	if scheme == "http" && !resolve() {
		return ex, nil
	}
	q := policy.Query{Workload: ex.Workload, Scheme: scheme, Host: dest.host, Port: dest.port, Method: r.Method, Path: cp.Decoded, Header: r.Header, Now: p.Now}
	d := j.Policy.Decide(q)
	ex.Request = &d
	if f := decisionRefusal(d, false); f != nil {
		if d.Action == policy.Deny && d.Code != "" {
			// The placeholder tripwire of a refused request
			// (tripwireOnDenied).
			if ix, err := newPHIndex(j.Policy); err == nil {
				var me *transform.MisuseError
				if err := ix.misuse(r); err != nil && errors.As(err, &me) {
					return ex.refused("decision", d, misuseRefusal(me, d, dest.host)), nil
				}
			}
		}
		return ex.refused("decision", d, *f), nil
	}
	if f := encodedSlashRefusal(cp, d); f != nil {
		return ex.refused("decision", d, *f), nil
	}
	if e := switchMatch(j.Switches, ex.Workload, d, false); e != nil {
		return ex.refused("decision", d, switchRefusalOf(e, d.Rule)), nil
	}
	if f := j.address(ex, dest, d); f != nil {
		return ex.refused("decision", d, *f), nil
	}
	if d.Action == policy.Inject && !d.Inject.AllowCopySource {
		if name, ok := canonical.SourceField(r.Header); ok {
			return ex.refused("decision", d, copySourceRefusal(d, name)), nil
		}
	}
	if d.Action == policy.Inject && !d.Inject.AllowBatch {
		// The body of a batch (judgeBatch), with serve's own code.
		if ep, ok := endpointOf(d, dest.host, cp.Decoded, r.Header.Get("Content-Type")); ok {
			ex.Batch = &BatchExplanation{Service: ep.Service}
			if f := recordsRefusal(ep, d); f != nil {
				return ex.refused("batch", d, *f), nil
			}
			if len(p.Body) > 0 {
				a := admission{pol: j.Policy, wl: ex.Workload, d: d}
				v, subs := (*Gateway)(nil).judgeBatchBody(batchBody{a: a, q: q, ep: ep, dest: dest, scheme: scheme, rawPath: cp.Raw, header: r.Header, raw: p.Body}, true)
				ex.Batch.Subs, ex.Batch.Judged = subs, v.judged
				if v.refusal != nil {
					return ex.refused("batch", d, *v.refusal), nil
				}
				// A batch more than a rate limit's burst, which no wait
				// admits (chargeBatch): known without the limits in use.
				if f, never := neverFits(ex.Workload, d, v.judged); never {
					return ex.refused("batch", d, f), nil
				}
				if v.observe != nil {
					d = *v.observe
				}
			}
		}
	}
	// The placeholder substitution (phState), which refuses a
	// placeholder where the decision does not replace it, or a required
	// one that is missing. The body is not judged here.
	if ix, err := newPHIndex(j.Policy); err == nil {
		var me *transform.MisuseError
		switch err := ix.substitution(d, ex.Workload, r); {
		case errors.As(err, &me):
			return ex.refused("decision", d, misuseRefusal(me, d, dest.host)), nil
		case errors.Is(err, transform.ErrPlaceholderMissing):
			return ex.refused("decision", d, missingRefusal(d)), nil
		}
	}
	ex.Decision, ex.Allowed = d, true
	return ex, nil
}

// address applies the special-purpose address check to the address
// dest is known to have without DNS (an IP literal or the resolve map),
// as the gateway's resolver does when it dials; it records what it found
// in ex.Address and returns the refusal, if any.
func (j Judge) address(ex *Explanation, dest target, d policy.Decision) *refusal {
	var a netip.Addr
	var from string
	if ip, err := netip.ParseAddr(dest.host); err == nil {
		a, from = ip, "IP literal"
	} else if j.Config != nil {
		if ap, ok := j.Config.Pinned(dest.host, dest.port); ok {
			a, from = ap.Addr(), "resolve map"
		}
	}
	if !a.IsValid() {
		return nil
	}
	reason, refused := CheckAddress(dest.host, dest.port, a)
	switch {
	case !refused:
		ex.Address = a.String() + " (" + from + "): not special-purpose"
	case d.AllowPrivate:
		ex.Address = a.String() + " (" + from + "): special-purpose, allowed by allow_private on destination " + d.Destination
	default:
		ex.Address = a.String() + " (" + from + "): refused"
		f := newRefusal(http.StatusForbidden, codePrivateAddress, reason, d.Rule)
		return &f
	}
	return nil
}

// splitProbeURL returns the scheme, the authority and the request target
// (path and query as written, "/" when empty) of an absolute URL.
func splitProbeURL(raw string) (scheme, authority, reqTarget string, err error) {
	s, rest, ok := strings.Cut(raw, "://")
	scheme = strings.ToLower(s)
	if !ok || (scheme != "https" && scheme != "http") {
		return "", "", "", fmt.Errorf("explain: URL %q: scheme must be https or http", raw)
	}
	rest, _, _ = strings.Cut(rest, "#")
	i := strings.IndexAny(rest, "/?")
	if i < 0 {
		i = len(rest)
	}
	authority, reqTarget = rest[:i], rest[i:]
	if authority == "" {
		return "", "", "", fmt.Errorf("explain: URL %q has no host", raw)
	}
	if reqTarget == "" || reqTarget[0] == '?' {
		reqTarget = "/" + reqTarget
	}
	return scheme, authority, reqTarget, nil
}
