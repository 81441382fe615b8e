package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Record is what the offline tools (`credgate policy suggest`, `policy
// diff`) read from a request's audit line: who asked for what, and what the
// gateway decided. It holds no credential value (no audit line does).
type Record struct {
	// Pos is the line's file and line number.
	Pos Pos `json:"-"`
	// Time is when the request started.
	Time time.Time `json:"-"`
	// Workload is the caller's workload name, "anonymous" for a caller
	// that matched none.
	Workload string `json:"workload"`
	// Source is the client's IP address.
	Source string `json:"source"`
	// Method, Scheme, Host, Port and Path are the request; Method is
	// CONNECT for a tunnel's lines, whose Path is empty. Path is the wire
	// (escaped) form, without the query.
	Method string `json:"method"`
	Scheme string `json:"scheme"`
	Host   string `json:"host"`
	Port   int    `json:"port"`
	Path   string `json:"path"`
	// Rule, Decision and Code are the decision as audited: Decision is
	// inject, forward, tunnel, would_deny, deny (and admin for the
	// admin API's lines).
	Rule     string `json:"rule"`
	Decision string `json:"decision"`
	Code     string `json:"code"`
	// Credential names the injected credential ("" when none).
	Credential string `json:"credential"`
	// Status is the HTTP status answered.
	Status int `json:"status"`
	// Closed is set on the second line of a spliced tunnel, written when
	// it ends.
	Closed string `json:"closed"`
	// PolicyVersion is the hash of the policy that decided.
	PolicyVersion string `json:"policy_version"`
}

// recordLine is a Record as encoded, plus the fields that say a line is
// not a request's.
type recordLine struct {
	Record
	Time string `json:"time"`
	Type string `json:"type"`
}

// Cut counts the lines ReadRecords skipped because they are not JSON
// objects — a write cut short by a crash, most likely, or a last line
// without its newline — and names the first, so that a tool reading an
// incomplete log can say so.
type Cut struct {
	// Lines is the number of lines skipped.
	Lines int
	// First is where the first of them is.
	First Pos
}

// String is the summary of c for an operator, "" when no line was
// skipped.
func (c Cut) String() string {
	if c.Lines == 0 {
		return ""
	}
	return fmt.Sprintf("%d lines skipped: not JSON (cut short?) — %s of the first", c.Lines, c.First)
}

// note counts the line at p.
func (c *Cut) note(p Pos) {
	if c == nil {
		return
	}
	if c.Lines == 0 {
		c.First = p
	}
	c.Lines++
}

// ReadRecords calls fn with each request line of files, in order (gzip'd
// rotated files as they are). It skips checkpoint lines, lines that are
// not whole JSON objects (a write cut short: counted in cut, when not
// nil), lines longer than DefaultMaxLineBytes (read no further than that)
// and the admin API's lines; fn's error stops the reading and is
// returned. The chain is not checked here: run Verify for that.
func ReadRecords(files []string, cut *Cut, fn func(Record) error) error {
	for _, name := range files {
		f, closeLog, err := openLog(name)
		if err != nil {
			return fmt.Errorf("audit read: %w", err)
		}
		var fnErr error
		err = readLines(f, 0, func(n int, line []byte, complete bool) {
			if fnErr != nil || len(bytes.TrimSpace(line)) == 0 {
				return
			}
			var l recordLine
			if !complete || json.Unmarshal(line, &l) != nil {
				cut.note(Pos{File: name, Line: n})
				return
			}
			if l.Type != "" || l.Decision == "admin" || l.Method == "" {
				return
			}
			r := l.Record
			r.Pos = Pos{File: name, Line: n}
			if t, err := time.Parse(TimeFormat, l.Time); err == nil {
				r.Time = t
			}
			fnErr = fn(r)
		}, func(int, int64) {})
		closeLog()
		if err != nil {
			return fmt.Errorf("audit read: %w", nameErr(name, err))
		}
		if fnErr != nil {
			return fnErr
		}
	}
	return nil
}
