//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"

	"github.com/credgate/credgate/bench/internal/loadgen"
)

func TestToxClass(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{&loadgen.StatusError{Code: 502, Reason: "upstream_error"}, "status 502 upstream_error"},
		{&loadgen.StatusError{Code: 401}, "status 401"},
		{fmt.Errorf("tox truncated: 100 of %d bytes read to a clean end", toxBody), "truncated"},
		{errors.New("stream error: stream ID 7; INTERNAL_ERROR; received from peer"), "stream reset"},
		{errors.New("unexpected EOF"), "eof"},
	} {
		if got := toxClass(tt.err); got != tt.want {
			t.Errorf("toxClass(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// A request that meets an origin fault may fail only as the fault
// allows; one that fails after the fault ended, within the recovery
// bound, is a dead pooled connection reused; a truncation presented as
// complete fails whatever the fault.
func TestOriginFaultVerdicts(t *testing.T) {
	fe := newTestFaultEnv()
	fe.originProxy = &toxiproxy.Proxy{}
	cut := &toxRecord{name: "origin cut", fault: &originFault{allow: []string{"eof"}}, classes: map[string]int64{}}
	slow := &toxRecord{name: "origin half-open", fault: &originFault{allow: []string{"status 504 upstream_timeout"}, bound: time.Second}, classes: map[string]int64{}}
	fe.toxRecs = []*toxRecord{cut, slow}
	now := time.Now()
	if !fe.toxDone(cut, time.Time{}, now, "eof", errors.New("unexpected EOF")) {
		t.Error("an allowed error during the fault was not allowed")
	}
	if fe.toxDone(cut, time.Time{}, now, "status 502 upstream_error", errors.New("502")) {
		t.Error("an error the fault does not allow was allowed")
	}
	// Started before the fault began, failed while it was in force.
	fe.toxNow = cut
	if !fe.toxDone(nil, time.Time{}, now, "eof", errors.New("unexpected EOF")) {
		t.Error("a request the fault began on while it ran: its allowed error was not allowed")
	}
	fe.toxNow = nil
	fe.toxDone(slow, time.Time{}, now.Add(-2*time.Second), "status 504 upstream_timeout", errors.New("504"))
	// After the fault ended: must succeed.
	ended := now.Add(-time.Second)
	if fe.toxDone(nil, ended, now, "status 502 upstream_error", errors.New("502")) {
		t.Error("a failure after the fault ended was allowed")
	}
	fe.toxDone(nil, ended, now, "", nil)
	samples := []sample{{reqs: map[string]int64{"tox": 5}, errs: map[string]int64{"tox truncated": 1}, expected: map[string]int64{"tox eof": 2}}}
	var out bytes.Buffer
	var fails []string
	fe.toxReport(&out, samples, func(pass bool, what string, args ...any) {
		if !pass {
			fails = append(fails, fmt.Sprintf(what, args...))
		}
	})
	want := []string{"truncation presented as complete): 1", "origin cut at 0s: 3 requests met it, 0 whole, errors outside what it allows (eof): 1", "1 late", "after an origin toxic was removed that failed (a dead pooled connection reused?): 1"}
	if len(fails) != len(want) {
		t.Fatalf("failed verdicts:\n%s\nwant %d", strings.Join(fails, "\n"), len(want))
	}
	for i, w := range want {
		if !strings.Contains(fails[i], w) {
			t.Errorf("failed verdict %d = %q, want it to say %q", i, fails[i], w)
		}
	}
}
