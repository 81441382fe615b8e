// Package replay decides recorded requests (audit lines) again against a
// policy, and compares two policies over the same traffic: the check to
// run before shipping a policy change (`credgate policy diff`).
//
// A request is decided as the gateway and `credgate explain` decide it:
// an https request's CONNECT first (refused, tunnelled or intercepted),
// then, when intercepted, the request itself, through policy.Decide, with
// the path checked as the gateway checks it. The caller is the workload
// the line names: identity factors cannot be replayed, so a policy change
// to a workload's selectors does not show, and conditions see no factor
// attributes, posture or request headers (they see the line's time as
// now).
package replay

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/canonical"
	"github.com/credgate/credgate/policy"
)

// Outcome is what a policy does with a request: the audit line's
// decision and code, and the rule that decided.
type Outcome struct {
	Decision, Code, Rule string
}

func (o Outcome) String() string {
	s := o.Decision
	if o.Code != "" {
		s += " [" + o.Code + "]"
	}
	if o.Rule != "" {
		s += " by rule " + o.Rule
	}
	return s
}

// Decide decides the request of r against p.
func Decide(p *policy.Policy, r audit.Record) Outcome {
	wl := identity.Workload{Name: r.Workload}
	if r.Workload == policy.FromAnonymous {
		wl.Name = ""
	}
	out := func(d policy.Decision) Outcome { return Outcome{Decision: d.Outcome(), Code: d.Code, Rule: d.Rule} }
	if r.Method == "CONNECT" || r.Scheme == "https" {
		d := p.Decide(policy.Query{Workload: wl, Connect: true, Host: r.Host, Port: r.Port, Now: r.Time})
		if r.Method == "CONNECT" || d.Action != policy.Intercept {
			return out(d)
		}
	}
	cp, err := canonical.ParsePath(r.Path)
	if err != nil {
		return Outcome{Decision: policy.Deny.String(), Code: "bad_path"}
	}
	d := p.Decide(policy.Query{Workload: wl, Scheme: r.Scheme, Host: r.Host, Port: r.Port, Method: r.Method, Path: cp.Decoded, Now: r.Time})
	if (d.Action == policy.Inject || d.Action == policy.Forward) &&
		(cp.CheckEncodedSlash(d.EncodedSlashes) != nil || cp.CheckEncodedDelimiter(d.EncodedDelimiters) != nil) {
		return Outcome{Decision: policy.Deny.String(), Code: "bad_path", Rule: d.Rule}
	}
	return out(d)
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
	def := 443
	if c.Scheme == "http" {
		def = 80
	}
	if c.Port != def {
		h += ":" + strconv.Itoa(c.Port)
	}
	if c.Method == "CONNECT" {
		return "CONNECT " + h
	}
	return c.Method + " " + c.Scheme + "://" + h + c.Path
}

// Diff replays recs against old and new and returns every distinct
// request whose outcome (decision, code or rule) changes, sorted by the
// change and then the request. Refused lines are replayed too: a change
// may allow what was refused. The second line of a spliced tunnel (the one
// saying how it ended) is not a request and is skipped.
func Diff(oldP, newP *policy.Policy, recs []audit.Record) []Change {
	type key struct {
		wl, method, scheme, host string
		port                     int
		path                     string
	}
	byKey := map[key]*Change{}
	var keys []key
	for _, r := range recs {
		if r.Closed != "" {
			continue
		}
		k := key{r.Workload, r.Method, r.Scheme, r.Host, r.Port, r.Path}
		if c, ok := byKey[k]; ok {
			c.Count++
			continue
		}
		o, n := Decide(oldP, r), Decide(newP, r)
		c := &Change{Workload: r.Workload, Method: r.Method, Scheme: r.Scheme, Host: r.Host, Port: r.Port, Path: r.Path, Old: o, New: n, Count: 1, First: r.Pos}
		byKey[k] = c
		if o != n {
			keys = append(keys, k)
		}
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
	return out
}

// WriteText prints changes grouped by change (old → new), one request a
// line with its workload, count and first recorded position, then a
// summary line.
func WriteText(w io.Writer, changes []Change, replayed int) error {
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
	pr("%d request(s) change outcome, from %d audit line(s) replayed\n", len(changes), replayed)
	return errors.Join(errs...)
}
