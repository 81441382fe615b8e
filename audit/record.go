package audit

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	canon "github.com/credgate/credgate/internal/canonical"
)

// Check reports whether r's request fields are ones the gateway writes:
// a method token, https or http, a host name (canon.CheckHost) or IP
// literal, a port, a path in wire form without query (empty for a
// CONNECT), a workload name, a source address, and a decision the
// gateway makes of such a request (never inject or forward for a
// CONNECT; an inject names its rule and credential). The tools that replay
// audit lines or turn them into policy (credgate policy suggest and
// diff) read a request only after Check, so a hand-edited or hostile
// line cannot make them decide, or write into a policy, anything but the
// request it records: a host "*.com" or "a.test/x", a path with '?', a
// newline or a workload "*" is an error naming the line and the field.
func (r Record) Check() error { return r.check(true) }

// CheckRequest is Check of the request fields alone, not the decision: for
// a request to be decided (a replay of a line, or a probe built like one).
func (r Record) CheckRequest() error { return r.check(false) }

func (r Record) check(decision bool) error {
	var problems []string
	bad := func(field, format string, args ...any) {
		problems = append(problems, field+" "+fmt.Sprintf(format, args...))
	}
	if canon.Method(r.Method) != nil {
		bad("method", "%q is not a method token (upper-case letters, digits and !#$%%&'*+-.^_`|~)", r.Method)
	}
	if r.Scheme != "https" && r.Scheme != "http" {
		bad("scheme", "%q is neither https nor http", r.Scheme)
	}
	if a, err := netip.ParseAddr(r.Host); err == nil {
		if a.Zone() != "" || a.Is4In6() {
			bad("host", "%q is not an IP literal as the gateway writes one (no zone, IPv4 unmapped)", r.Host)
		}
	} else if canon.CheckHost(r.Host) != nil {
		bad("host", "%q is not a host name (lower-case dot-separated labels, no wildcard) nor an IP literal", r.Host)
	}
	if r.Port < 1 || r.Port > 65535 {
		bad("port", "%d is not a port (1 to 65535)", r.Port)
	}
	switch {
	case r.Method == "CONNECT":
		if r.Path != "" {
			bad("path", "%q is set on a CONNECT line", r.Path)
		}
	case !strings.HasPrefix(r.Path, "/"):
		bad("path", "%q does not start with '/'", r.Path)
	case strings.ContainsFunc(r.Path, func(c rune) bool { return c <= ' ' || c >= 0x7f || c == '?' || c == '#' }):
		bad("path", "%q is not a request path in wire form (printable ASCII, no query or fragment)", r.Path)
	}
	switch {
	case r.Workload == "" || r.Workload == "*":
		bad("workload", "%q is not a workload name (a name, or anonymous)", r.Workload)
	case !utf8.ValidString(r.Workload) || strings.ContainsFunc(r.Workload, func(c rune) bool { return c <= ' ' || c == 0x7f || c == ',' }):
		bad("workload", "%q has spaces, commas, control characters or bytes that are not UTF-8", r.Workload)
	}
	switch {
	case !decision:
	case r.Decision != "inject" && r.Decision != "forward" && r.Decision != "tunnel" && r.Decision != "would_deny" && r.Decision != "deny":
		bad("decision", "%q is none of inject, forward, tunnel, would_deny, deny", r.Decision)
	case r.Method == "CONNECT" && (r.Decision == "inject" || r.Decision == "forward"):
		bad("decision", "%q on a CONNECT line (a CONNECT is tunnelled, intercepted without a line, or refused)", r.Decision)
	case r.Decision == "inject" && (r.Rule == "" || r.Credential == ""):
		bad("decision", "inject names no rule or no credential")
	}
	if r.Source != "" {
		if a, err := netip.ParseAddr(r.Source); err != nil || a.Zone() != "" {
			bad("source", "%q is not an IP address", r.Source)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%s: not a request line the gateway writes: %w", r.Pos, errors.New(strings.Join(problems, "; ")))
}

// Lines hands request lines to fn one at a time, in order, and stops at
// fn's first error, which it returns: the offline tools read audit logs
// through it, so their memory grows with what they keep of the lines
// (distinct requests), not with the log.
type Lines func(fn func(Record) error) error

// FileLines reads the request lines of files (ReadRecords), counting in
// cut (when not nil) the lines skipped as not JSON.
func FileLines(files []string, cut *Cut) Lines {
	return func(fn func(Record) error) error { return ReadRecords(files, cut, fn) }
}

// SliceLines hands out recs.
func SliceLines(recs []Record) Lines {
	return func(fn func(Record) error) error {
		for _, r := range recs {
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	}
}
