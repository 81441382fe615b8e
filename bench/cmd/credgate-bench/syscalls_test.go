//go:build linux

package main

import (
	"strings"
	"testing"
	"time"
)

// TestParsePerfStat reads perf stat -x , output as perf 6.1 prints it:
// counts by event, with the lines that are not counts (a comment, an
// event not counted or not supported, an empty line) left out.
func TestParsePerfStat(t *testing.T) {
	out := strings.Join([]string{
		"# started on Sat Dec  5 05:05:00 2026",
		"",
		"201234,,raw_syscalls:sys_enter,3000123456,100.00,,",
		"120000,,syscalls:sys_enter_read,3000123456,100.00,,",
		"<not counted>,,syscalls:sys_enter_tgkill,0,0.00,,",
		"<not supported>,,cycles,0,100.00,,",
		"17,,page-faults,3000123456,100.00,,",
		"Events disabled",
	}, "\n")
	got := parsePerfStat(out)
	want := map[string]float64{"raw_syscalls:sys_enter": 201234, "syscalls:sys_enter_read": 120000, "page-faults": 17}
	if len(got) != len(want) {
		t.Fatalf("parsePerfStat = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

// TestSyscallsPerRequest divides each count and the CPU time by the
// requests, names every event, and says so when there were none.
func TestSyscallsPerRequest(t *testing.T) {
	sc := &syscallCount{done: make(chan struct{}), counts: map[string]float64{"syscalls:sys_enter_read": 400, "syscalls:sys_enter_write": 200}, user: 4 * time.Millisecond, sys: 2 * time.Millisecond}
	close(sc.done)
	got := sc.perRequest(100)
	for _, want := range []string{"100 requests;", "user 40.0 sys 20.0;", "read 4.00", "write 2.00", "recvfrom 0.00", "packets 0.00"} {
		if !strings.Contains(got, want) {
			t.Errorf("perRequest(100) = %q, want it to hold %q", got, want)
		}
	}
	if got := sc.perRequest(0); got != "no requests" {
		t.Errorf("perRequest(0) = %q, want \"no requests\"", got)
	}
}
