//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/bench/internal/loadgen"
)

// soakSamples makes a minute of 5-second samples whose RSS, goroutines
// and fds are given by the functions of the sample's index.
func soakSamples(rss, gor, fds func(i int) int64) []sample {
	var ss []sample
	for i := range 12 {
		ss = append(ss, sample{
			at:         time.Duration(i+1) * 5 * time.Second,
			reqs:       map[string]int64{"h1": 100, "h2": 100, "upload": 2, "ws": 1},
			errs:       map[string]int64{},
			rss:        rss(i),
			goroutines: gor(i),
			fds:        fds(i),
		})
	}
	return ss
}

func TestSoakVerdicts(t *testing.T) {
	flat := func(v int64) func(int) int64 { return func(int) int64 { return v } }
	grow := func(v, step int64) func(int) int64 { return func(i int) int64 { return v + step*int64(i) } }
	sc := soakConfig{duration: time.Minute, sample: 5 * time.Second, tolerance: 0.10}
	tests := []struct {
		name     string
		samples  []sample
		exited   error
		wantOK   bool
		wantFail string // a word of the failing verdict
	}{
		{name: "flat", samples: soakSamples(flat(40<<20), flat(150), flat(95)), wantOK: true},
		{name: "one goroutine burst", samples: soakSamples(flat(40<<20), func(i int) int64 {
			if i == 11 {
				return 190
			}
			return 150
		}, flat(95)), wantOK: true},
		{name: "RSS grows", samples: soakSamples(grow(40<<20, 1<<20), flat(150), flat(95)), wantFail: "RSS flat"},
		{name: "goroutines grow", samples: soakSamples(flat(40<<20), grow(150, 5), flat(95)), wantFail: "goroutines flat"},
		{name: "fds grow", samples: soakSamples(flat(40<<20), flat(150), grow(95, 3)), wantFail: "no fd growth"},
		{name: "gateway exited", samples: soakSamples(flat(40<<20), flat(150), flat(95)), exited: errors.New("it exited: signal: killed"), wantFail: "still running"},
		{name: "no samples", wantFail: "no sample"},
	}
	errored := soakSamples(flat(40<<20), flat(150), flat(95))
	errored[3].errs["h1 status 401"] = 2
	tests = append(tests, struct {
		name     string
		samples  []sample
		exited   error
		wantOK   bool
		wantFail string
	}{name: "one 401", samples: errored, wantFail: "unexpected errors: 2"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			ok := verdicts(&out, sc, tt.samples, tt.exited)
			if ok != tt.wantOK {
				t.Fatalf("verdicts = %v, want %v; output:\n%s", ok, tt.wantOK, out.String())
			}
			if tt.wantFail == "" {
				if strings.Contains(out.String(), "FAIL") {
					t.Errorf("a FAIL in a passing run:\n%s", out.String())
				}
				return
			}
			for _, line := range strings.Split(out.String(), "\n") {
				if strings.HasPrefix(line, "- FAIL") && strings.Contains(line, tt.wantFail) {
					return
				}
			}
			t.Errorf("no FAIL line with %q:\n%s", tt.wantFail, out.String())
		})
	}
}

func TestErrorKind(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("x: %w", &loadgen.StatusError{Code: 401}), "status 401"},
		{fmt.Errorf("loadgen: read response: %w", io.ErrUnexpectedEOF), "eof"},
		{errors.New("read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer"), "reset"},
		{errors.New("ws echo: got \"a\", want \"b\""), "echo mismatch"},
		{errors.New("not h2: answered over HTTP/1.1"), "not h2"},
		{errors.New("something else"), "other"},
	}
	for _, tt := range tests {
		if got := errorKind(tt.err); got != tt.want {
			t.Errorf("errorKind(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
