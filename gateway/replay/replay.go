// Package replay decides recorded requests (audit lines) again against a
// policy, and compares two policies over the same traffic: the check to
// run before shipping a policy change (`credgate policy diff`).
//
// A request is decided by the gateway's own decision path,
// gateway.Judge.Explain, the code `credgate explain` runs and
// TestExplainMatchesServe holds to the running gateway: the CONNECT
// target, identity, the CONNECT's decision, the address check of an IP
// literal or a resolve-map host, the interception CA's leaf, the method,
// path and header checks, the request's decision, the encoded-slash and
// encoded-delimiter checks and the placeholder checks, in that order.
// What an audit line does not hold cannot be replayed: the caller is the
// workload the line names, when the replayed policy still defines it
// (anonymous otherwise), with the line's source address and no verified
// factors; the request has no header fields and no query; kill switches,
// rate limits and DNS answers are not consulted; `now` is the line's
// time. TestReplayMatchesServe holds the rest to a running gateway.
package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/gateway"
	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/policy"
)

// Outcome is what a policy does with a request: the audit line's
// decision and code, the rule that decided, and the credential injected
// (so a rule that keeps its name but injects another credential is a
// change).
type Outcome struct {
	Decision, Code, Rule, Credential string
}

func (o Outcome) String() string {
	s := o.Decision
	if o.Code != "" {
		s += " [" + o.Code + "]"
	}
	if o.Rule != "" {
		s += " by rule " + o.Rule
	}
	if o.Credential != "" {
		s += " with credential " + o.Credential
	}
	return s
}

// recorded is the caller an audit line names, as the replayed policy's
// workloads see it: the named workload while the policy defines it,
// anonymous otherwise; its source is the line's.
type recorded struct {
	name   string
	source netip.Addr
}

// Resolve implements the Judge's identity: no factor is verified, the
// name is the line's.
func (c recorded) Resolve(_ context.Context, _ identity.Evidence, specs []identity.Spec) (identity.Workload, error) {
	wl := identity.Workload{Source: c.source}
	if c.name == policy.FromAnonymous {
		return wl, nil
	}
	for _, s := range specs {
		if s.Name == c.name {
			wl.Name = c.name
			break
		}
	}
	return wl, nil
}

// Decide decides the request of r with j, as the gateway would (j.Policy
// is the policy; j.Config, when set, its resolve map; j.Issuer, when set,
// the interception CA's names; j.Identity is replaced by the line's
// caller). A CONNECT line's outcome is its CONNECT's: refused, tunnelled,
// or intercept. A request that is not one the gateway writes
// (audit.Record.CheckRequest) is an error naming its line.
func Decide(ctx context.Context, j gateway.Judge, r audit.Record) (Outcome, error) {
	if err := r.CheckRequest(); err != nil {
		return Outcome{}, err
	}
	src, _ := netip.ParseAddr(r.Source)
	j.Identity = recorded{name: r.Workload, source: src.Unmap()}
	host := r.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if r.Port != defaultPort(r.Scheme) {
		host += ":" + strconv.Itoa(r.Port)
	}
	path := r.Path
	if r.Method == "CONNECT" {
		path = "/"
	}
	ex, err := j.Explain(ctx, gateway.Probe{
		Evidence: identity.Evidence{},
		Method:   r.Method,
		URL:      r.Scheme + "://" + host + path,
		Now:      r.Time,
	})
	if err != nil {
		return Outcome{}, fmt.Errorf("%s: replay: %w", r.Pos, err)
	}
	if r.Method == "CONNECT" && ex.Connect != nil && ex.Stage != "target" && ex.Stage != "identity" && ex.Stage != "connect" {
		// Intercepted: what follows is the requests' business.
		d := *ex.Connect
		return Outcome{Decision: d.Outcome(), Code: d.Code, Rule: d.Rule}, nil
	}
	d := ex.Decision
	o := Outcome{Decision: d.Outcome(), Code: d.Code, Rule: d.Rule}
	if !ex.Allowed {
		o.Decision = policy.Deny.String()
	} else if d.Action == policy.Inject && d.Inject != nil {
		o.Credential = d.Inject.Credential
	}
	return o, nil
}

func defaultPort(scheme string) int {
	if scheme == "http" {
		return 80
	}
	return 443
}

// Change is a request (all its recorded lines) whose outcome differs.
type Change struct {
	// Workload, Method, Scheme, Host, Port and Path are the request.
	Workload, Method, Scheme, Host string
	Port                           int
	Path                           string
	// Old and New are its outcomes under the two policies.
	Old, New Outcome
	// Count is how many lines recorded it; First is the first.
	Count int
	First audit.Pos
}

// Request prints the request as METHOD scheme://host[:port]/path.
func (c Change) Request() string {
	h := c.Host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if c.Port != defaultPort(c.Scheme) {
		h += ":" + strconv.Itoa(c.Port)
	}
	if c.Method == "CONNECT" {
		return "CONNECT " + h
	}
	return c.Method + " " + c.Scheme + "://" + h + c.Path
}

// Diff replays recs with oldJ and newJ (Decide) and returns every
// distinct request whose outcome (decision, code or rule) changes, sorted
// by the change and then the request. Refused lines are replayed too: a
// change may allow what was refused. The second line of a spliced tunnel
// (the one saying how it ended) is not a request and is skipped. A
// refused line that is not a request the gateway could have decided
// (audit.Record.CheckRequest: a malformed request, a lower-case method, a
// bad CONNECT target, all refused before any policy was consulted) has
// the same outcome under every policy: it is not replayed, and counted in
// skipped. Any other line that fails CheckRequest is an error naming it.
func Diff(ctx context.Context, oldJ, newJ gateway.Judge, recs []audit.Record) (changes []Change, skipped int, err error) {
	changes, skipped, _, err = DiffFrom(ctx, oldJ, newJ, audit.SliceLines(recs))
	return changes, skipped, err
}

// DiffFrom is Diff over lines read one at a time: it keeps one entry per
// distinct request, not the lines, and also returns how many lines it
// read.
func DiffFrom(ctx context.Context, oldJ, newJ gateway.Judge, lines audit.Lines) (changes []Change, skipped, read int, err error) {
	type key struct {
		wl, method, scheme, host string
		port                     int
		path                     string
	}
	byKey := map[key]*Change{}
	var keys []key
	err = lines(func(r audit.Record) error {
		read++
		if r.Closed != "" {
			return nil
		}
		k := key{r.Workload, r.Method, r.Scheme, r.Host, r.Port, r.Path}
		if c, ok := byKey[k]; ok {
			c.Count++
			return nil
		}
		if err := r.CheckRequest(); err != nil {
			if r.Decision == policy.Deny.String() {
				skipped++
				return nil
			}
			return err
		}
		o, err := Decide(ctx, oldJ, r)
		if err != nil {
			return err
		}
		n, err := Decide(ctx, newJ, r)
		if err != nil {
			return err
		}
		c := &Change{Workload: r.Workload, Method: r.Method, Scheme: r.Scheme, Host: r.Host, Port: r.Port, Path: r.Path, Old: o, New: n, Count: 1, First: r.Pos}
		byKey[k] = c
		if o != n {
			keys = append(keys, k)
		}
		return nil
	})
	if err != nil {
		return nil, 0, read, err
	}
	out := make([]Change, 0, len(keys))
	for _, k := range keys {
		out = append(out, *byKey[k])
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Old.String()+a.New.String() != b.Old.String()+b.New.String() {
			return a.Old.String()+"\x00"+a.New.String() < b.Old.String()+"\x00"+b.New.String()
		}
		if a.Workload != b.Workload {
			return a.Workload < b.Workload
		}
		return a.Request() < b.Request()
	})
	return out, skipped, read, nil
}

// WriteText prints changes grouped by change (old → new), one request a
// line with its workload, count and first recorded position, then a
// summary line, which says how many refused lines were not replayed
// (skipped, from Diff) when any were.
func WriteText(w io.Writer, changes []Change, replayed, skipped int) error {
	var errs []error
	pr := func(format string, args ...any) {
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			errs = append(errs, err)
		}
	}
	for i, c := range changes {
		if i == 0 || c.Old != changes[i-1].Old || c.New != changes[i-1].New {
			if i > 0 {
				pr("\n")
			}
			pr("%s -> %s\n", c.Old, c.New)
		}
		pr("  %-16s %s  (%d line(s), first %s)\n", c.Workload, c.Request(), c.Count, c.First)
	}
	if len(changes) > 0 {
		pr("\n")
	}
	pr("%d request(s) change outcome, from %d audit line(s) replayed", len(changes), replayed)
	if skipped > 0 {
		pr(" (%d refused before any policy decided it, such as a malformed request: the same under every policy, not replayed)", skipped)
	}
	pr("\n")
	return errors.Join(errs...)
}
