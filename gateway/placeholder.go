package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/killswitch"
	"github.com/credgate/credgate/policy"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/secret"
	"github.com/credgate/credgate/transform"
)

// Placeholders (docs/agents.md, DESIGN.md invariant 13): for a request a
// rule allows, the placeholder of the rule's credential is replaced by the
// credential's value (transform.Substituter) just before the injection
// (so that a signing injector signs what is sent); every
// other placeholder of the policy is a tripwire, checked on every request
// the gateway sees (intercepted or plain http, allowed or denied), which
// refuses the request with 403 placeholder_misuse and, with
// placeholders.quarantine, disables the workload through the kill switch.
// Tunnelled bytes are never looked at.

// Refusal codes of placeholders.
const (
	// codePlaceholderMisuse: the request carries a placeholder that is not
	// bound to its destination (or workload).
	codePlaceholderMisuse = "placeholder_misuse"
	// codePlaceholderMissing: the rule has require_placeholder and the
	// request carries none.
	codePlaceholderMissing = "placeholder_missing"
	// codePlaceholderUnsafe: the secret cannot be put where its
	// placeholder is (a control character for a header, a value that
	// would be a whole "." or ".." path segment).
	codePlaceholderUnsafe = "placeholder_unsafe"
)

// quarantineTimeout bounds the kill switch write of a tripwire.
const quarantineTimeout = 5 * time.Second

// phState is what placeholder substitution did to one request.
type phState struct {
	// rep records the substitutions (read after the body was sent).
	rep *transform.Report
	// sub substitutes the frames of an upgraded WebSocket too.
	sub *transform.Substituter
	// misuse is the tripwire that stopped the request, once one did.
	misuse atomic.Pointer[transform.MisuseError]
}

// phIndex is the placeholders of one policy generation and the
// Substituters built for it, shared by every request decided by that
// policy: a Substituter holds a search table per encoding, far too much
// to build per request. There is at most one Substituter per inject
// rule and placeholder (one per workload for generated ones), rebuilt
// when the credential's value changes.
type phIndex struct {
	pol  *policy.Policy
	uses []policy.PlaceholderUse
	// custody: a rule keeps custody, so the custody placeholder prefix
	// is a tripwire too (custodyTripwire).
	custody bool
	// trips has every placeholder as a tripwire and no binding: the
	// transform of forwarded requests, of injections whose credential
	// has no placeholder, and the check of denied ones. Nil when the
	// policy has no placeholder and no custody.
	trips *transform.Substituter

	mu   sync.Mutex
	subs map[phKey]*phEntry
}

type phKey struct {
	credential, placeholder string
	require                 bool
	// plan is the rule's: two rules injecting one credential may allow
	// different places (substitute_in).
	plan *policy.InjectPlan
}

type phEntry struct {
	cred *providers.Credential
	sub  *transform.Substituter
}

// placeholders returns the index of pol, building it when pol is not the
// generation the gateway last built one for.
func (g *Gateway) placeholders(pol *policy.Policy) (*phIndex, error) {
	if ix := g.phIndex.Load(); ix != nil && ix.pol == pol {
		return ix, nil
	}
	ix, err := newPHIndex(pol)
	if err != nil {
		return nil, err
	}
	g.phIndex.Store(ix)
	return ix, nil
}

// newPHIndex builds the placeholder index of pol.
func newPHIndex(pol *policy.Policy) (*phIndex, error) {
	ix := &phIndex{pol: pol, uses: pol.Placeholders(), custody: pol.HasCustody(), subs: map[phKey]*phEntry{}}
	if len(ix.uses) > 0 || ix.custody {
		trips := make([]transform.Tripwire, len(ix.uses), len(ix.uses)+1)
		for i, u := range ix.uses {
			trips[i] = transform.Tripwire{Name: u.Name(), Placeholder: u.Placeholder}
		}
		if ix.custody {
			trips = append(trips, custodyTripwire)
		}
		var err error
		if ix.trips, err = transform.NewSubstituter(nil, trips, transform.Options{}); err != nil {
			return nil, fmt.Errorf("placeholders of policy %s: %w", pol.File(), err)
		}
	}
	return ix, nil
}

// substituter returns the transform for a request decided d for workload
// wl with credential cred (nil unless d injects), or nil when the policy
// has no placeholders and no custody.
func (ix *phIndex) substituter(d policy.Decision, wl identity.Workload, cred *providers.Credential) (*transform.Substituter, error) {
	if ix.trips == nil {
		return nil, nil
	}
	if d.Action != policy.Inject || d.Inject.Placeholder == nil {
		return ix.trips, nil
	}
	plan := d.Inject
	ph := plan.Placeholder.For(wl)
	key := phKey{credential: plan.Credential, placeholder: ph, require: plan.RequirePlaceholder, plan: plan}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if e := ix.subs[key]; e != nil && (e.cred == cred || sameValue(e.cred, cred, plan.Placeholder.Field)) {
		e.cred = cred
		return e.sub, nil
	}
	v, ok := cred.Field(plan.Placeholder.Field)
	if !ok {
		return nil, fmt.Errorf("credential %q has no %q field for its placeholder: %w", plan.Credential, plan.Placeholder.Field, errNoPlaceholderField)
	}
	sub, err := ix.planSubstituter(plan, wl, ph, v)
	if err != nil {
		return nil, err
	}
	ix.subs[key] = &phEntry{cred: cred, sub: sub}
	return sub, nil
}

// planSubstituter builds the substituter of a rule's placeholder plan for
// wl: placeholder ph becomes v where the rule allows it, every other
// placeholder of the policy is a tripwire.
func (ix *phIndex) planSubstituter(plan *policy.InjectPlan, wl identity.Workload, ph string, v secret.Value) (*transform.Substituter, error) {
	var trips []transform.Tripwire
	for _, u := range ix.uses {
		if u.Placeholder != ph {
			trips = append(trips, transform.Tripwire{Name: u.Name(), Placeholder: u.Placeholder})
		}
	}
	if ix.custody {
		trips = append(trips, custodyTripwire)
	}
	name := plan.Credential
	if plan.Placeholder.PerWorkload {
		name += "@" + wl.DisplayName()
	}
	sub, err := transform.NewSubstituter(
		[]transform.Binding{{Name: name, Placeholder: ph, Value: v, Places: plan.SubstituteIn}}, trips,
		transform.Options{Require: plan.RequirePlaceholder})
	if err != nil {
		return nil, fmt.Errorf("placeholder of credential %q: %w", plan.Credential, err)
	}
	return sub, nil
}

// substitution is what the placeholder substitution of r's header, path
// and query would refuse under decision d for wl
// (transform.ErrPlaceholderMisuse, ErrPlaceholderMissing), judged
// without the credential: a stand-in value takes its place, so what
// depends on the value itself (ErrUnsafeValue) is not known. r is
// rewritten. Explain calls it; the gateway substitutes for real
// (phState).
func (ix *phIndex) substitution(d policy.Decision, wl identity.Workload, r *http.Request) error {
	if ix.trips == nil {
		return nil
	}
	sub := ix.trips
	if d.Action == policy.Inject && d.Inject.Placeholder != nil {
		var err error
		if sub, err = ix.planSubstituter(d.Inject, wl, d.Inject.Placeholder.For(wl), secret.New("stand-in")); err != nil {
			return err
		}
	}
	r.Body, r.ContentLength, r.GetBody = nil, 0, nil
	_, err := sub.TransformRequest(r)
	return err
}

// errNoPlaceholderField: the credential lacks the field its placeholder
// stands for.
var errNoPlaceholderField = errors.New("placeholder field missing")

func sameValue(a, b *providers.Credential, field string) bool {
	va, oka := a.Field(field)
	vb, okb := b.Field(field)
	return oka && okb && va.Equal(vb)
}

// substitute runs the placeholder transform on out, the outbound request
// of x before injection. It returns nil when the policy has no
// placeholders, and a refusal (the request is not sent) for a tripwire,
// a missing required placeholder or a value that cannot be placed.
//
// A secret that cannot be placed (transform.ErrUnsafeValue), or a
// credential without the field its placeholder stands for, is the
// value's fault: the credential is dropped from the cache
// (rejectUnusable), as an injector's ErrInvalidValue drops it.
func (g *Gateway) substitute(x *exchange, a admission, out *http.Request, cred *providers.Credential, key providers.CacheKey, st *reqState) *refusal {
	ix, err := g.placeholders(a.pol)
	if err != nil {
		g.log.Error("placeholders not usable", slog.Any("error", err))
		f := newRefusal(http.StatusBadGateway, codeInjectFailed, "the policy's placeholders could not be prepared; the request was not forwarded", a.d.Rule)
		return &f
	}
	sub, err := ix.substituter(a.d, a.wl, cred)
	if err != nil {
		g.log.Warn("placeholder substitution not possible", slog.String("rule", a.d.Rule), slog.Any("error", err))
		if errors.Is(err, errNoPlaceholderField) {
			g.rejectUnusable(key, cred, fmt.Errorf("placeholder: %w: %w", err, injectors.ErrInvalidValue))
		}
		f := newRefusal(http.StatusBadGateway, codeInjectFailed,
			fmt.Sprintf("credential %q cannot replace its placeholder (the gateway's log names the missing field); the request was not forwarded", a.d.Inject.Credential), a.d.Rule)
		return &f
	}
	if sub == nil {
		return nil
	}
	rep, err := sub.TransformRequest(out)
	if err != nil {
		if errors.Is(err, transform.ErrUnsafeValue) {
			g.rejectUnusable(key, cred, fmt.Errorf("placeholder: %w: %w", err, injectors.ErrInvalidValue))
		}
		f := g.placeholderRefusal(x, a.wl, a.d, err)
		return &f
	}
	st.ph = &phState{rep: rep, sub: sub}
	if out.Body != nil && out.Body != http.NoBody {
		// A tripwire in a streamed body, or in the request's trailers
		// (known at the body's end; never forwarded), fails a Read in
		// the transport's goroutine; the round trip's error reports it,
		// unless the upstream answered first: then only this sees it.
		// The closure holds copies of a's fields: capturing a would move
		// it to the heap on every call, placeholders or not.
		wl, d := a.wl, a.d
		out.Body = &misuseWatch{ReadCloser: out.Body, in: x.r, sub: sub,
			found: func(me *transform.MisuseError) { g.streamTripped(x, wl, d, st.ph, me) }}
	}
	if st.reissue != nil && len(rep.Positions()) > 0 {
		// A replay would re-inject into the substituted request, which
		// still holds the value the upstream rejected.
		st.reissue.replay = false
	}
	if st.long != nil {
		st.long.frames = g.wsFrames(x, a, st.ph)
		// Compressed frames could not be searched: the upgrade is
		// offered without extensions (permessage-deflate).
		out.Header.Del("Sec-Websocket-Extensions")
	}
	return nil
}

// tripwireOnDenied checks a request the policy denied for tripwires in
// its headers, path and query (its body is never read): a placeholder
// sent where no rule allows anything is misuse too. It returns the
// placeholder_misuse refusal that replaces the denial, or nil.
func (g *Gateway) tripwireOnDenied(x *exchange, a admission) *refusal {
	if a.pol == nil || a.d.Action != policy.Deny || a.d.Code == "" {
		return nil // identity did not verify: no workload to hold to account
	}
	ix, err := g.placeholders(a.pol)
	if err != nil {
		return nil
	}
	if err := ix.misuse(x.r); err != nil {
		f := g.placeholderRefusal(x, a.wl, a.d, err)
		return &f
	}
	return nil
}

// misuse is the placeholder misuse (transform.ErrPlaceholderMisuse) in
// the header, path and query of r, a request no rule lets through, nil
// when it carries no placeholder. The body is not read.
func (ix *phIndex) misuse(r *http.Request) error {
	if ix.trips == nil {
		return nil
	}
	probe := *r
	probe.Body, probe.ContentLength, probe.GetBody = nil, 0, nil
	if _, err := ix.trips.TransformRequest(&probe); err != nil && errors.Is(err, transform.ErrPlaceholderMisuse) {
		return err
	}
	return nil
}

// placeholderRefusal turns a transform error into the refusal the client
// gets, counting it, and quarantines the workload for a tripwire when the
// policy says so.
func (g *Gateway) placeholderRefusal(x *exchange, wl identity.Workload, d policy.Decision, err error) refusal {
	var me *transform.MisuseError
	switch {
	case errors.As(err, &me):
		if x.tripwire == nil {
			x.tripwire = me
			g.tripped(x, wl, d, me)
		}
		return misuseRefusal(me, d, x.dest.host)
	case errors.Is(err, transform.ErrPlaceholderMissing):
		g.metrics.placeholders.missing.Inc()
		return missingRefusal(d)
	case errors.Is(err, transform.ErrUnsafeValue):
		return newRefusal(http.StatusBadGateway, codePlaceholderUnsafe,
			"the secret cannot be put where its placeholder is (a header value would hold a control character, or a path segment would become '.' or '..'); the request was not forwarded", d.Rule)
	}
	if f, failed := clientBodyRefusal(&x.in, x.st.body, "the request was not forwarded", d.Rule); failed {
		return f // the body's read failed under substitution: the client's doing
	}
	g.log.Info("placeholder substitution failed", slog.String("rule", d.Rule), slog.Any("error", err))
	return newRefusal(http.StatusBadRequest, codeBadRequest, "the request body could not be read for placeholder substitution; the request was not forwarded", d.Rule)
}

// missingRefusal is the refusal of a request decided d whose rule
// requires its credential's placeholder (require_placeholder), which the
// request does not carry.
func missingRefusal(d policy.Decision) refusal {
	return newRefusal(http.StatusForbidden, codePlaceholderMissing,
		fmt.Sprintf("rule %q requires the placeholder of credential %q in the request and it carries none; put the placeholder where the API expects the secret", d.Rule, d.Inject.Credential), d.Rule)
}

// misuseRefusal is the refusal of a request to host carrying a
// placeholder where it is not replaced (me), decided d.
func misuseRefusal(me *transform.MisuseError, d policy.Decision, host string) refusal {
	if me.Tripwire == custodyTripwire.Name {
		return newRefusal(http.StatusForbidden, codePlaceholderMisuse,
			fmt.Sprintf("the request carries a custody placeholder (%s...) in %s, where it is never put back; the request was not forwarded (a custody placeholder goes back only in the Cookie and Authorization header values, and the headers the custody block names, of requests to the destination that issued it)", CustodyPrefix, misuseAt(me)), d.Rule)
	}
	if me.Misplaced && me.Ambiguous != "" {
		return newRefusal(http.StatusForbidden, codePlaceholderMisuse,
			fmt.Sprintf("the request carries the placeholder of %s in %s, in a value that servers read as different fields: %s; the request was not forwarded", me.Tripwire, misuseAt(me), me.Ambiguous), d.Rule)
	}
	if me.Misplaced {
		return newRefusal(http.StatusForbidden, codePlaceholderMisuse,
			fmt.Sprintf("the request carries the placeholder of %s in %s, where rule %q does not allow it to be replaced; the request was not forwarded (put it only where the API takes the credential: the rule's substitute_in)", me.Tripwire, misuseAt(me), d.Rule), d.Rule)
	}
	return newRefusal(http.StatusForbidden, codePlaceholderMisuse,
		fmt.Sprintf("the request carries the placeholder of %s, which is not bound to %s for this workload; the request was not forwarded (a placeholder is replaced only for the destination and workload its rule names)", me.Tripwire, host), d.Rule)
}

// tripped handles a tripwire: it is logged and counted, and with
// placeholders.quarantine the caller is disabled through the kill
// switch (quarantineSwitch), on every replica when Redis is configured.
// The caller records it for the audit line (x.tripwire, or
// phState.misuse from another goroutine); tripped records the switch it
// set (x.quarantined).
func (g *Gateway) tripped(x *exchange, wl identity.Workload, d policy.Decision, me *transform.MisuseError) {
	pol := g.store.Current()
	quarantine := pol != nil && pol.Quarantine()
	g.metrics.placeholders.misuse.WithLabelValues(string(me.Where), fmt.Sprint(quarantine)).Inc()
	msg := "placeholder misuse: a placeholder was sent where it is not bound"
	if me.Misplaced {
		msg = "placeholder misuse: a placeholder was sent outside the places its rule allows (substitute_in)"
	}
	attrs := []slog.Attr{slog.String("workload", wl.DisplayName()), slog.String("tripwire", me.Tripwire),
		slog.String("where", string(me.Where)), slog.String("header", me.Header), slog.String("host", x.dest.host), slog.String("rule", d.Rule),
		slog.Bool("quarantine", quarantine)}
	e, ok := quarantineSwitch(wl)
	if quarantine && ok {
		attrs = append(attrs, slog.String("quarantines", e.ID()))
	}
	g.log.LogAttrs(x.r.Context(), slog.LevelWarn, msg, attrs...)
	if !quarantine || g.switches == nil {
		return
	}
	if !ok {
		g.log.Error("placeholder misuse: quarantine failed: the anonymous caller has no source address to disable; find it in the audit line and disable it by hand", slog.String("workload", wl.DisplayName()))
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(x.r.Context()), quarantineTimeout)
	defer cancel()
	e.By = "credgate tripwire"
	e.Reason = fmt.Sprintf("placeholder_misuse: the placeholder of %s was sent to %s in %s", me.Tripwire, x.dest.host, misuseAt(me))
	if _, err := g.switches.Quarantine(ctx, e); err != nil {
		g.log.Error("placeholder misuse: quarantine failed; disable it by hand", slog.String("quarantines", e.ID()), slog.Any("error", err))
		return
	}
	g.metrics.placeholders.quarantines.WithLabelValues(string(e.Kind)).Inc()
	id := e.ID()
	x.quarantined.Store(&id)
}

// quarantineSwitch is the kill switch a tripwire of wl sets: the
// workload, or for an anonymous caller its source address (a Source
// switch) — "anonymous" is every caller no workload matched, and one of
// them cannot be allowed to disable the others. false when an anonymous
// caller has no source address (none that the gateway accepted).
func quarantineSwitch(wl identity.Workload) (killswitch.Entry, bool) {
	if wl.Name != "" {
		return killswitch.Entry{Kind: killswitch.Workload, Name: wl.Name}, true
	}
	if !wl.Source.IsValid() {
		return killswitch.Entry{}, false
	}
	return killswitch.Entry{Kind: killswitch.Source, Name: killswitch.SourceName(wl.Source)}, true
}

// streamTripped handles a tripwire met in a streamed body or a WebSocket
// frame (another goroutine than the request's), once per request.
func (g *Gateway) streamTripped(x *exchange, wl identity.Workload, d policy.Decision, ph *phState, me *transform.MisuseError) {
	if ph.misuse.CompareAndSwap(nil, me) {
		g.tripped(x, wl, d, me)
	}
}

// misuseWatch passes a streamed body on and reports a tripwire its Read
// met (transform.MisuseError). At the body's end it also looks for
// tripwires in the trailers of in, the incoming request, whose body fills
// in.Trailer before it returns io.EOF (with the trailers the request
// declared in its Trailer header, and over HTTP/1.1 any others sent with
// them), and fails the Read with the MisuseError instead of io.EOF, so
// the upstream never receives the end of the request. The trailers
// themselves are never forwarded (exchange.outbound).
type misuseWatch struct {
	io.ReadCloser
	in    *http.Request
	sub   *transform.Substituter
	found func(*transform.MisuseError)
}

func (m *misuseWatch) Read(p []byte) (int, error) {
	n, err := m.ReadCloser.Read(p)
	if err == io.EOF && m.in != nil && len(m.in.Trailer) > 0 {
		if terr := m.sub.CheckTrailer(m.in.Trailer); terr != nil {
			err = terr
		}
		m.in = nil // checked once
	}
	var me *transform.MisuseError
	if err != nil && errors.As(err, &me) {
		m.found(me)
	}
	return n, err
}

// placeholderStreamRefusal is the refusal of a round trip that failed
// because the substitution of a streamed body met a tripwire or missed a
// required placeholder, or false.
func (g *Gateway) placeholderStreamRefusal(r *http.Request, st *reqState, err error) (refusal, bool) {
	if st == nil || st.ph == nil || st.x == nil {
		return refusal{}, false
	}
	if !errors.Is(err, transform.ErrPlaceholderMisuse) && !errors.Is(err, transform.ErrPlaceholderMissing) {
		return refusal{}, false
	}
	var me *transform.MisuseError
	if errors.As(err, &me) {
		// Handled already when the body's Read failed (misuseWatch),
		// unless a retry's body (GetBody) met it.
		g.streamTripped(st.x, st.x.wl, st.x.d, st.ph, me)
		if me.Misplaced {
			return newRefusal(http.StatusForbidden, codePlaceholderMisuse,
				fmt.Sprintf("the request carries the placeholder of %s in %s, where rule %q does not allow it to be replaced; the request was cut off there (put it only where the API takes the credential: the rule's substitute_in)", me.Tripwire, misuseAt(me), st.x.d.Rule), st.x.d.Rule), true
		}
		if me.Where == transform.InTrailer {
			return newRefusal(http.StatusForbidden, codePlaceholderMisuse,
				fmt.Sprintf("the request trailer %s carries the placeholder of %s, which is not bound to %s for this workload; the request was cut off before its end", me.Header, me.Tripwire, st.x.dest.host), st.x.d.Rule), true
		}
		return newRefusal(http.StatusForbidden, codePlaceholderMisuse,
			fmt.Sprintf("the request body carries the placeholder of %s, which is not bound to %s for this workload; the request was cut off there", me.Tripwire, st.x.dest.host), st.x.d.Rule), true
	}
	return g.placeholderRefusal(st.x, st.x.wl, st.x.d, err), true
}

// placeholderMetrics count substitutions and tripwires.
type placeholderMetrics struct {
	substituted *prometheus.CounterVec
	misuse      *prometheus.CounterVec
	missing     prometheus.Counter
	// quarantines counts the kill switches tripwires set, by kind.
	quarantines *prometheus.CounterVec
}

func newPlaceholderMetrics(reg *prometheus.Registry) *placeholderMetrics {
	m := &placeholderMetrics{
		substituted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credgate_placeholder_substitutions_total",
			Help: "Placeholders replaced by their credential's value, by position (header, basic, path, query, form, json, websocket).",
		}, []string{"where"}),
		misuse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credgate_placeholder_misuse_total",
			Help: "Requests and WebSocket frames refused because they carried a placeholder not bound to their destination or workload (tripwire), by position and whether the workload was quarantined.",
		}, []string{"where", "quarantine"}),
		missing: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "credgate_placeholder_missing_total",
			Help: "Requests refused because their rule has require_placeholder and they carried no placeholder.",
		}),
		quarantines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credgate_quarantines_total",
			Help: "Kill switches a tripwire set (placeholders.quarantine), by what they disable: workload (an identified workload), or source (the source address of an anonymous caller).",
		}, []string{"kind"}),
	}
	for _, k := range []killswitch.Kind{killswitch.Workload, killswitch.Source} {
		m.quarantines.WithLabelValues(string(k))
	}
	reg.MustRegister(m.substituted, m.misuse, m.missing, m.quarantines)
	return m
}

// placeholderAudit adds a finished request's substitutions to the
// metrics and its audit line ev, with the tripwire that stopped it (a
// streamed body or a WebSocket frame), if one did.
func (g *Gateway) placeholderAudit(ev *event, x *exchange, st *reqState) {
	if st.ph != nil {
		ev.Placeholders = st.ph.rep.Positions()
		for _, p := range ev.Placeholders {
			g.metrics.placeholders.substituted.WithLabelValues(string(p.Where)).Add(float64(p.Count))
		}
	}
	if x.tripwire == nil && st.ph != nil {
		if me := st.ph.misuse.Load(); me != nil {
			x.tripwire = me
		}
	}
	if x.tripwire != nil {
		ev.Tripwire, ev.Code = x.tripwire, codePlaceholderMisuse
	}
	if q := x.quarantined.Load(); q != nil {
		ev.Quarantined = *q
	}
}

// appendPlaceholderFields adds the audit fields of placeholders: where
// bindings were substituted ("placeholders": [{"where", "header",
// "binding", "count"}]) and the tripwire that refused the request
// ("tripwire": credential or credential@workload, "tripwire_where":
// the position, "tripwire_header": the header or trailer field, and
// "tripwire_misplaced": true for the rule's own placeholder found outside
// its substitute_in). Never a value.
func appendPlaceholderFields(b []byte, ev *event) []byte {
	if len(ev.Placeholders) > 0 {
		b = append(b, `,"placeholders":[`...)
		for i, p := range ev.Placeholders {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"where":`...)
			b = appendString(b, string(p.Where))
			if p.Header != "" {
				b = append(b, `,"header":`...)
				b = appendString(b, p.Header)
			}
			b = append(b, `,"binding":`...)
			b = appendString(b, p.Binding)
			b = fmt.Appendf(b, `,"count":%d}`, p.Count)
		}
		b = append(b, ']')
	}
	if me := ev.Tripwire; me != nil {
		b = append(b, `,"tripwire":`...)
		b = appendString(b, me.Tripwire)
		b = append(b, `,"tripwire_where":`...)
		b = appendString(b, string(me.Where))
		if me.Header != "" {
			b = append(b, `,"tripwire_header":`...)
			b = appendString(b, me.Header)
		}
		if me.Misplaced {
			b = append(b, `,"tripwire_misplaced":true`...)
		}
	}
	if ev.Quarantined != "" {
		b = append(b, `,"quarantined":`...)
		b = appendString(b, ev.Quarantined)
	}
	return b
}

// misuseAt names where a tripwire was, for refusals and the kill
// switch's reason: "query", "header Referer".
func misuseAt(me *transform.MisuseError) string {
	if me.Header != "" {
		return string(me.Where) + " " + me.Header
	}
	return string(me.Where)
}
