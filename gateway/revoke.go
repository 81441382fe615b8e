package gateway

import (
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/policy"
)

// What is open was admitted once, and two things can withdraw that
// admission before it ends; both are judged again here, by one scan of
// the long-lived connections (longlived.go) and one of the requests in
// flight (inflight.go) per change; nothing is done per request.
//
// Evidence verified once can be withdrawn before it expires: an issuer
// removes the key that signed a token (a leaked key rotated out), a CA
// is removed from a trust bundle (identity.mtls.bundles, the Workload
// API's bundles) or from tls.client_ca. New connections and requests are
// judged against the sources in force; what is already open on the old
// evidence (a spliced tunnel, a WebSocket, a streamed request or answer)
// is verified again when a source changes (invariant 12): identity calls
// evidenceChanged (identity.WithOnChange) when a key set loses a key or a
// bundle changes, and the TLS listener's reloader when tls.client_ca
// loses a CA.
//
// A policy reload can withdraw the policy's part: the rule is removed,
// its destination loses the host, its methods, paths or workloads
// narrow, a deny rule comes first, the rule injects another credential
// (or the credential's settings change), or the destination drops
// allow_private; or the workload definitions change so that what a
// connection proved no longer makes it the workload it was identified
// as (its source CIDR, SPIFFE ID, claims, namespace or service account
// selector narrows, a factor becomes required, the workload is removed
// or renamed, or another workload listed before it now takes it). After
// every successful reload (policyChanged) each open long-lived
// connection and request in flight is identified again from the
// factors it proved, under the new workload definitions (the factors
// were kept with its query; nothing is verified or fetched again), and
// decided again by the new policy, with the query it was first decided
// with (its workload, destination and, for a request, method, path and
// headers); what is now another workload or none, and what the new
// policy refuses or would admit otherwise (grant: another action, rule,
// credential or allow_private), ends at once: a long-lived
// connection closes (policy_changed), a request in flight is cut (502
// policy_changed_in_flight). There is no grace period, as there is none
// for the kill switch: an operator who narrows the policy during an
// incident wants the access gone, and the client that is still allowed
// reconnects and is admitted under the new rule.

// recheckWhat says what a scan judges again: the evidence, the policy or
// both.
type recheckWhat uint8

const (
	// recheckEvidence verifies the evidence of what is open again.
	recheckEvidence recheckWhat = 1 << iota
	// recheckPolicy decides what is open again under the policy in
	// force.
	recheckPolicy
)

// recheck runs the scans one at a time: a change arriving while one runs
// makes it run once more after, judging what the changes since asked
// for.
type recheck struct {
	mu      sync.Mutex
	running bool
	pending recheckWhat
	closed  bool // Close was called: nothing more starts
	// wg counts the running scan (Close waits for it).
	wg sync.WaitGroup
}

// stop waits for the scan running, if any, and keeps any other from
// starting.
func (c *recheck) stop() {
	c.mu.Lock()
	c.closed, c.pending = true, 0
	c.mu.Unlock()
	c.wg.Wait()
}

// evidenceChanged re-verifies, in the background, every open long-lived
// connection and every request in flight, closing or cutting those whose
// evidence no longer verifies. It returns at once.
func (g *Gateway) evidenceChanged() { g.recheckOpen(recheckEvidence) }

// policyChanged decides, in the background, every open long-lived
// connection and every request in flight again under the policy in
// force, closing or cutting those it no longer admits as they were
// admitted. It returns at once.
func (g *Gateway) policyChanged() { g.recheckOpen(recheckPolicy) }

func (g *Gateway) recheckOpen(what recheckWhat) {
	c := &g.recheck
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.pending |= what
	if c.running {
		return
	}
	c.running = true
	c.wg.Add(1)
	go g.recheckLoop()
}

// rejudgeLogMsg is the line written after every scan a reload caused.
const rejudgeLogMsg = "open connections and requests in flight decided again under the reloaded policy"

func (g *Gateway) recheckLoop() {
	c := &g.recheck
	defer c.wg.Done()
	for {
		c.mu.Lock()
		what := c.pending
		c.pending = 0
		if what == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		pol := g.store.Current()
		long, reqs := g.recheckLong(what, pol), g.recheckFlights(what, pol)
		if long.revoked+reqs.revoked > 0 {
			g.log.Warn("identity evidence withdrawn (a signing key or CA removed): closed the long-lived connections and cut the requests in flight it had identified",
				slog.Int("connections", long.revoked), slog.Int("requests", reqs.revoked))
		}
		if what&recheckPolicy != 0 {
			level := slog.LevelInfo
			if long.changed+reqs.changed > 0 {
				level = slog.LevelWarn
			}
			g.log.Log(g.baseCtx, level, rejudgeLogMsg,
				slog.String("policy", pol.Stats().Hash),
				slog.Int("connections", long.judged), slog.Int("connections_closed", long.changed),
				slog.Int("requests", reqs.judged), slog.Int("requests_cut", reqs.changed))
		}
	}
}

// recheckCount is what one scan of a set did.
type recheckCount struct {
	// revoked: closed or cut because the evidence no longer verifies;
	// judged: decided again under a new policy; changed: closed or cut
	// because the new policy no longer admits them as they were.
	revoked, judged, changed int
}

// grant is what a decision admitted, compared across policies: the
// action, the rule and credential (name and settings' version) it
// admitted with, and whether its destination allowed special-purpose
// addresses (the address dialled is not kept: a destination that drops
// allow_private ends what it admitted); every refusal is the zero grant. Observe mode's
// would_deny admissions (no credential, public addresses only) are one
// grant whatever decided them.
type grant struct {
	action                        policy.Action
	observe, allowPrivate         bool
	rule, credential, credVersion string
}

// grantOf is what d admits; connect is true for a CONNECT's decision.
func grantOf(d policy.Decision, connect bool) grant {
	allowed := d.Action == policy.Inject || d.Action == policy.Forward
	if connect {
		allowed = d.Action != policy.Deny
	}
	switch {
	case !allowed:
		return grant{}
	case d.WouldDeny:
		return grant{action: d.Action, observe: true, allowPrivate: d.AllowPrivate}
	}
	gr := grant{action: d.Action, rule: d.Rule, allowPrivate: d.AllowPrivate}
	if d.Inject != nil {
		gr.credential, gr.credVersion = d.Inject.Credential, d.Inject.CredentialVersion
	}
	return gr
}

// judgement is what deciding an open connection or request again needs:
// the query it was decided with, what that admitted, and the policy it
// was last decided under (read and written under the lock of what holds
// it).
type judgement struct {
	q   policy.Query
	was grant
	pol *policy.Policy
}

// judged records that pol decided d for q (its workload wl). The request
// headers are kept (copied: the gateway rewrites the map it forwards)
// only when a condition of pol reads them; a later policy whose
// conditions read them sees none for a request admitted without.
func judged(pol *policy.Policy, q policy.Query, wl identity.Workload, d policy.Decision) judgement {
	q.Workload, q.Now, q.NoAllowReason = wl, time.Time{}, true
	if q.Header != nil {
		if pol.ReadsHeaders() {
			q.Header = q.Header.Clone()
		} else {
			q.Header = http.Header(nil)
		}
	}
	return judgement{q: q, was: grantOf(d, q.Connect), pol: pol}
}

// keeps reports whether pol admits j's query as it was admitted: its
// verified factors still make the same workload under pol's workload
// definitions (identity.Identify: from the factors kept with the query,
// nothing verified or fetched again), and pol decides for it as before.
func (j *judgement) keeps(pol *policy.Policy) bool {
	if name, err := identity.Identify(j.q.Workload, pol.Workloads()); err != nil || name != j.q.Workload.Name {
		return false
	}
	return grantOf(pol.Decide(j.q), j.q.Connect) == j.was
}
