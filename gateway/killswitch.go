package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/killswitch"
	"github.com/credgate/credgate/policy"
)

// codeDisabled refuses a request whose rule, workload or credential an
// operator disabled with the kill switch.
const codeDisabled = "disabled"

// codeSwitchUnverified refuses every request of a replica that holds no
// verified kill switch state (killswitch.Switch.Held): it cannot tell
// whether an operator disabled what the request needs.
const codeSwitchUnverified = "kill_switch_unverified"

// switchUnverifiedRetry is the Retry-After of codeSwitchUnverified.
const switchUnverifiedRetry = 5

// startKillSwitch builds the kill switch (on the shared Redis client when
// cache.redis is set), its metrics and the admin token.
func (g *Gateway) startKillSwitch(ctx context.Context) error {
	cfg := g.cfg
	tok, err := newAdminToken(cfg.Admin)
	if err != nil {
		return err
	}
	g.adminTok = tok
	g.swm = newSwitchMetrics(g.metrics.reg, g.shared != nil)
	opts := killswitch.Options{
		StateFile:      cfg.Admin.StateFile,
		ResyncInterval: cfg.Admin.ResyncInterval.D(),
		MaxEntries:     cfg.Admin.MaxSwitches,
		Logger:         g.log.With(slog.String("component", "killswitch")),
		Observer:       switchObserver{g: g},
	}
	if g.shared != nil {
		opts.Client = g.shared.rdb
		opts.Namespace = cfg.Cache.Redis.Namespace
		opts.OpTimeout = cfg.Cache.Redis.Timeout.D()
		// The state in Redis is authenticated with a key derived
		// (HKDF-SHA256, its own label) from each encryption key: no new
		// secret to distribute, and a Redis writer has neither.
		for _, k := range g.shared.keys {
			opts.Keys = append(opts.Keys, killswitch.Key{ID: k.ID, Secret: k.Secret})
		}
	}
	g.switches, err = killswitch.New(ctx, opts)
	if err != nil {
		if opts.StateFile != "" {
			return fmt.Errorf("admin.state_file: %w", err)
		}
		return fmt.Errorf("kill switch: %w", err)
	}
	return nil
}

// switchRefusal returns the refusal of decision d for workload wl when the
// kill switch disables its rule, the workload or its credential. A
// CONNECT that is intercepted is not final (every request inside is
// decided again), so there only the workload is checked, and the rule of
// a tunnel.
//
// A replica that holds no verified state (with Redis: no admin.state_file,
// and Redis unavailable since it started or its state not verifying), or
// a state with a switch a newer credgate wrote that it cannot enforce,
// cannot tell whether the request is disabled: it refuses it, 503
// kill_switch_unverified, as its /readyz says (fail closed).
func (g *Gateway) switchRefusal(wl identity.Workload, d policy.Decision, connect bool) (refusal, bool) {
	if !g.switches.Held() {
		f := newRefusal(http.StatusServiceUnavailable, codeSwitchUnverified,
			"this replica holds no kill switch state it can enforce (Redis has been unavailable since it started, or the state in Redis does not verify, and it has no admin.state_file; or the state holds a switch a newer credgate wrote, which this version cannot enforce until it is upgraded), so it cannot tell whether an operator disabled this request; it was not forwarded. Retry: another replica, or this one once Redis answers, serves it", d.Rule)
		f.RetryAfter = switchUnverifiedRetry
		return f, true
	}
	e := switchMatch(g.switches.Snapshot(), wl, d, connect)
	if e == nil {
		return refusal{}, false
	}
	return g.switchEntryRefusal(e, d.Rule), true
}

// switchMatch is the switch of snap that covers a request (connect: a
// CONNECT) of wl decided d, nil for none: the decision's rule (a
// CONNECT's only when it tunnels: an intercepted one is judged again per
// request), the workload, or a credential the decision uses.
func switchMatch(snap *killswitch.Snapshot, wl identity.Workload, d policy.Decision, connect bool) *killswitch.Entry {
	if snap == nil || snap.Len() == 0 {
		return nil
	}
	rule := d.Rule
	if connect && d.Action != policy.Tunnel {
		rule = ""
	}
	var creds []string
	if d.Inject != nil {
		creds = d.Inject.Uses()
	}
	return snap.Match(rule, switchCaller(wl), creds...)
}

// switchCaller is wl as the kill switch matches it: its name, and for an
// anonymous caller its source address too (a Source switch, which a
// tripwire of an anonymous caller sets: tripped).
func switchCaller(wl identity.Workload) killswitch.Caller {
	c := killswitch.Caller{Workload: wl.DisplayName()}
	if wl.Name == "" {
		c.Source = wl.Source
	}
	return c
}

// switchEntryRefusal is the refusal of a request of rule that switch e
// covers, counted in the metrics.
func (g *Gateway) switchEntryRefusal(e *killswitch.Entry, rule string) refusal {
	g.swm.refusals.WithLabelValues(string(e.Kind)).Inc()
	return switchRefusalOf(e, rule)
}

// switchRefusalOf is the refusal of a request of rule that switch e
// covers.
func switchRefusalOf(e *killswitch.Entry, rule string) refusal {
	reason := fmt.Sprintf("%s is disabled by an operator (kill switch) since %s", e, e.Since.UTC().Format(time.RFC3339))
	if e.Reason != "" {
		reason += ": " + e.Reason
	}
	f := newRefusal(http.StatusForbidden, codeDisabled, reason, rule)
	f.Switch = e.ID()
	return f
}

// switchMetrics are the kill switch's metrics.
type switchMetrics struct {
	disabled   *prometheus.GaugeVec
	refusals   *prometheus.CounterVec
	syncErrors *prometheus.CounterVec
	lastSync   prometheus.Gauge
	admin      *prometheus.CounterVec
	verify     *prometheus.CounterVec
	wroteBack  *prometheus.CounterVec
}

func newSwitchMetrics(reg *prometheus.Registry, redis bool) *switchMetrics {
	m := &switchMetrics{
		disabled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "credgate_switches_disabled",
			Help: "Rules, workloads and credentials disabled by the kill switch on this replica, by kind.",
		}, []string{"kind"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credgate_switch_refusals_total",
			Help: "Requests and CONNECTs refused because the kill switch disables their rule, workload or credential, by the kind that matched.",
		}, []string{"kind"}),
		syncErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credgate_switch_sync_errors_total",
			Help: "Failed kill switch operations by operation: read and write (Redis), state_file.",
		}, []string{"op"}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "credgate_switch_last_sync_timestamp_seconds",
			Help: "When this replica last read the whole kill switch state from Redis (Unix time). Absent without cache.redis.",
		}),
		verify: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credgate_switch_verify_failures_total",
			Help: "Kill switch states and messages read from Redis that were not put in force because they do not verify, by reason (unsigned, bad_mac, unknown_key, rollback, malformed). The last verified state stays in force. newer_version: a verified state holding fields a newer credgate wrote that this version cannot read; its readable switches are in force, and while one of those fields is a switch this replica refuses every request; upgrade it.",
		}, []string{"reason"}),
		wroteBack: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credgate_switch_written_back_total",
			Help: "Switches this replica wrote back to Redis, by reason: pending (disabled on this replica while Redis was unavailable, written when it answered again) and restored (Redis held no switch state at all).",
		}, []string{"reason"}),
		admin: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credgate_admin_requests_total",
			Help: "Admin API requests that change state, by action (disable, enable) and result (ok, unchanged, unauthorized, admin_api_off, bad_request, switch_unavailable, switch_limit, admin_token_unreadable).",
		}, []string{"action", "result"}),
	}
	for _, k := range killswitch.Kinds {
		m.disabled.WithLabelValues(string(k))
		m.refusals.WithLabelValues(string(k))
	}
	for _, op := range []string{"read", "write", "state_file"} {
		m.syncErrors.WithLabelValues(op)
	}
	reg.MustRegister(m.disabled, m.refusals, m.syncErrors, m.admin)
	if redis {
		for _, r := range killswitch.Reasons {
			m.verify.WithLabelValues(r)
		}
		for _, r := range []string{killswitch.WrotePending, killswitch.WroteRestored, killswitch.WroteRepaired} {
			m.wroteBack.WithLabelValues(r)
		}
		reg.MustRegister(m.lastSync, m.verify, m.wroteBack)
	}
	return m
}

// switchObserver puts every new kill switch state into the metrics and
// closes the long-lived connections (spliced tunnels, WebSockets) and
// cancels the requests in flight (inflight.go) it covers by rule,
// workload or credential: neither is decided again, so without this a
// connection or a streamed request begun before the switch would outlive
// it (invariant 12).
type switchObserver struct{ g *Gateway }

func (o switchObserver) Applied(s *killswitch.Snapshot) {
	for _, k := range killswitch.Kinds {
		o.g.swm.disabled.WithLabelValues(string(k)).Set(float64(s.Count(k)))
	}
	if s.Len() == 0 {
		return
	}
	n := o.g.long.closeMatching(func(lc *longConn) bool {
		return s.Match(lc.rule, lc.caller, lc.credentials...) != nil
	}, closedKillSwitch)
	if n > 0 {
		o.g.log.Warn("kill switch: closed open tunnels and WebSockets of disabled rules, workloads or credentials", slog.Int("connections", n))
	}
	if n := o.g.flights.cancelMatching(o.g, s); n > 0 {
		o.g.log.Warn("kill switch: cancelled requests in flight (streamed responses or bodies) of disabled rules, workloads or credentials", slog.Int("requests", n))
	}
}

func (o switchObserver) SyncError(op string) { o.g.swm.syncErrors.WithLabelValues(op).Inc() }

func (o switchObserver) VerifyFailed(reason string) { o.g.swm.verify.WithLabelValues(reason).Inc() }

func (o switchObserver) WroteBack(reason string, n int) {
	o.g.swm.wroteBack.WithLabelValues(reason).Add(float64(n))
}

func (o switchObserver) Synced(at time.Time) {
	o.g.swm.lastSync.Set(float64(at.UnixNano()) / 1e9)
}

var _ killswitch.Observer = switchObserver{}
