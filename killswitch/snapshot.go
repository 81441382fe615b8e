// Package killswitch is the incident switch of a credgate fleet: the set
// of rules, workloads and credentials an operator has disabled, with who
// disabled each, when and why.
//
// The gateway consults the Snapshot in force after every policy decision:
// a decision whose rule, workload or credential is disabled is refused.
// Reading it is one atomic pointer load and, only when something is
// disabled, up to three map lookups on an immutable value, so the request
// path pays nothing measurable for it (BenchmarkMatch).
//
// A Switch without Redis holds its state in memory, optionally persisted
// to a local state file. With Redis, the state lives in one hash under the
// deployment's namespace and every change is published on a channel; each
// replica re-reads the hash when a message arrives, when its subscription
// is (re)established and periodically, so a lost message or a Redis outage
// heals by itself. While Redis cannot be read, the last known state stays
// in force: nothing is ever re-enabled because Redis is down or lost its
// data (a replica that finds the hash gone writes its state back). The
// state in Redis carries a MAC under a key that is not in Redis (mac.go):
// a state that does not verify, or is older than the one in force, is not
// put in force, so a Redis writer can neither lift a disable nor forge one,
// and a replica that holds the verified state writes it back over it, so
// that a replica starting afterwards does not begin with the tampered one.
package killswitch

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind is what a switch disables.
type Kind string

// The kinds of switch.
const (
	// Rule disables one policy rule by name: requests it would allow are
	// refused (other rules are not consulted in its place).
	Rule Kind = "rule"
	// Workload disables one workload by name ("anonymous" for callers
	// no workload matched): everything it sends is refused.
	Workload Kind = "workload"
	// Credential disables one credential by name: no rule injects it,
	// nor a credential made from it (a token minted with a disabled
	// client secret or signing key: Snapshot.Match's credentials).
	Credential Kind = "credential"
	// Source disables the anonymous callers (no workload matched) of one
	// source address, written as netip.Addr writes it (10.0.0.5,
	// 2001:db8::1): what a tripwire an anonymous caller set off
	// quarantines, since "anonymous" is every caller no workload matched.
	// Identified workloads are disabled by name, not by address.
	Source Kind = "source"
)

// Kinds lists every Kind, in the order Snapshot.Match checks them.
var Kinds = []Kind{Rule, Workload, Source, Credential}

// ParseKind parses "rule", "workload", "source" or "credential".
func ParseKind(s string) (Kind, error) {
	switch k := Kind(strings.ToLower(strings.TrimSpace(s))); k {
	case Rule, Workload, Source, Credential:
		return k, nil
	}
	return "", fmt.Errorf("killswitch: unknown kind %q (use rule, workload, source or credential)", s)
}

// SourceName is the name of the Source switch of addr: its unmapped
// address as netip.Addr writes it.
func SourceName(addr netip.Addr) string { return addr.Unmap().String() }

// checkSource checks the name of a Source switch.
func checkSource(name string) error {
	a, err := netip.ParseAddr(name)
	if err != nil || a.Zone() != "" || SourceName(a) != name {
		return fmt.Errorf("%w: source %q is not an IP address as the gateway writes it (like 10.0.0.5 or 2001:db8::1: no zone, no port, IPv4 not mapped into IPv6, IPv6 in its shortest form)", ErrInvalid, name)
	}
	return nil
}

// Limits on what an Entry may hold.
const (
	MaxNameLen   = 253
	MaxByLen     = 128
	MaxReasonLen = 512
)

// ErrInvalid is wrapped by the errors of Entry.Validate and CheckName.
var ErrInvalid = errors.New("killswitch: invalid switch")

// CheckName returns an error when name cannot name a rule, workload or
// credential: empty, too long, or holding spaces, commas or control
// characters (which policy names cannot hold either), or "*".
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: the name is empty", ErrInvalid)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: the name is longer than %d bytes", ErrInvalid, MaxNameLen)
	case name == "*":
		return fmt.Errorf("%w: \"*\" is not a name; disable workloads or rules one by one", ErrInvalid)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: the name is not valid UTF-8", ErrInvalid)
	}
	for _, c := range name {
		if c < ' ' || c == 0x7f || c == ' ' || c == ',' {
			return fmt.Errorf("%w: %q must not contain spaces, commas or control characters", ErrInvalid, name)
		}
	}
	return nil
}

// checkText checks a free-text field (By, Reason).
func checkText(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalid, what, max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, what)
	}
	for _, c := range s {
		if c < ' ' || c == 0x7f {
			return fmt.Errorf("%w: %s must not contain control characters", ErrInvalid, what)
		}
	}
	return nil
}

// Entry is one disabled rule, workload or credential.
type Entry struct {
	Kind Kind   `json:"kind"`
	Name string `json:"name"`
	// By is who disabled it, as the operator's client declared it (the
	// admin token authenticates the fleet's operators as a group).
	By string `json:"by,omitempty"`
	// Reason is the operator's note (an incident number). It is shown in
	// /readyz, in logs and to the refused clients' operators: never a
	// secret.
	Reason string `json:"reason,omitempty"`
	// Since is when it was disabled.
	Since time.Time `json:"since"`
}

// ID is "KIND:NAME", the entry's key in Redis and in audit lines.
func (e Entry) ID() string { return string(e.Kind) + ":" + e.Name }

// String is `rule "NAME"`, for messages.
func (e Entry) String() string { return string(e.Kind) + " " + strconv.Quote(e.Name) }

// Validate checks every field.
func (e Entry) Validate() error {
	if _, err := ParseKind(string(e.Kind)); err != nil || string(e.Kind) != strings.ToLower(string(e.Kind)) {
		return fmt.Errorf("%w: unknown kind %q (use rule, workload, source or credential)", ErrInvalid, e.Kind)
	}
	if err := CheckName(e.Name); err != nil {
		return err
	}
	if e.Kind == Source {
		if err := checkSource(e.Name); err != nil {
			return err
		}
	}
	if err := checkText("by", e.By, MaxByLen); err != nil {
		return err
	}
	return checkText("reason", e.Reason, MaxReasonLen)
}

// Snapshot is an immutable set of disabled entries. The zero value and
// nil are empty. It is safe for concurrent use.
type Snapshot struct {
	rules, workloads, sources, credentials map[string]*Entry
	entries                                []Entry // sorted by kind, then name
}

// newSnapshot builds a snapshot of the entries (keyed by ID).
func newSnapshot(m map[string]Entry) *Snapshot {
	s := &Snapshot{}
	if len(m) == 0 {
		return s
	}
	s.entries = make([]Entry, 0, len(m))
	for _, e := range m {
		s.entries = append(s.entries, e)
	}
	slices.SortFunc(s.entries, func(a, b Entry) int {
		if c := strings.Compare(string(a.Kind), string(b.Kind)); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	for i := range s.entries {
		e := &s.entries[i]
		p := s.kindMap(e.Kind)
		if *p == nil {
			*p = map[string]*Entry{}
		}
		(*p)[e.Name] = e
	}
	return s
}

func (s *Snapshot) kindMap(k Kind) *map[string]*Entry {
	switch k {
	case Rule:
		return &s.rules
	case Workload:
		return &s.workloads
	case Source:
		return &s.sources
	default:
		return &s.credentials
	}
}

// Len is the number of disabled entries.
func (s *Snapshot) Len() int {
	if s == nil {
		return 0
	}
	return len(s.entries)
}

// Count is the number of disabled entries of kind k.
func (s *Snapshot) Count(k Kind) int {
	if s == nil {
		return 0
	}
	return len(*s.kindMap(k))
}

// Entries returns a copy of the entries, sorted by kind and name.
func (s *Snapshot) Entries() []Entry {
	if s == nil {
		return nil
	}
	return slices.Clone(s.entries)
}

// Get returns the entry of kind k and name, if it is disabled.
func (s *Snapshot) Get(k Kind, name string) (Entry, bool) {
	if s == nil {
		return Entry{}, false
	}
	e, ok := (*s.kindMap(k))[name]
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// Caller is who a decision was made for, as the kill switch matches it:
// the workload's name ("anonymous" for a caller no workload matched) and,
// for an anonymous caller, its source address (Source switches);
// identified callers leave Source unset.
type Caller struct {
	Workload string
	Source   netip.Addr
}

// Match returns the entry that disables a decision for rule, made for
// caller, using credentials (the one it injects, then those it is made
// from; empty strings are not checked), or nil. The rule is checked
// first, then the workload, then the source, then the credentials in
// order. The result is shared: do not modify it.
func (s *Snapshot) Match(rule string, caller Caller, credentials ...string) *Entry {
	if s == nil || len(s.entries) == 0 {
		return nil
	}
	if rule != "" && s.rules != nil {
		if e := s.rules[rule]; e != nil {
			return e
		}
	}
	if caller.Workload != "" && s.workloads != nil {
		if e := s.workloads[caller.Workload]; e != nil {
			return e
		}
	}
	if caller.Source.IsValid() && s.sources != nil {
		if e := s.sources[SourceName(caller.Source)]; e != nil {
			return e
		}
	}
	if s.credentials != nil {
		for _, c := range credentials {
			if e := s.credentials[c]; c != "" && e != nil {
				return e
			}
		}
	}
	return nil
}

// sameEntries reports whether a and b hold the same entries.
func sameEntries(a, b *Snapshot) bool {
	if a.Len() != b.Len() {
		return false
	}
	for i := range a.Len() {
		x, y := a.entries[i], b.entries[i]
		if x.Kind != y.Kind || x.Name != y.Name || x.By != y.By || x.Reason != y.Reason || !x.Since.Equal(y.Since) {
			return false
		}
	}
	return true
}
