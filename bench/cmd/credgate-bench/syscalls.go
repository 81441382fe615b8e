//go:build linux

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// syscallEvents are what -syscalls counts, each with the short name it
// is printed under: every system call, the ones a proxy's request path
// makes (socket reads and writes, the netpoller's waits and
// registrations, futex wake-ups and waits: a goroutine handed work on
// another thread), the kernel's context switches of the process, its page
// faults, and the packets sent from its context (on loopback: its data
// segments and the ACKs its reads send).
var syscallEvents = []struct{ event, name string }{
	{"raw_syscalls:sys_enter", "all"},
	{"syscalls:sys_enter_read", "read"},
	{"syscalls:sys_enter_write", "write"},
	{"syscalls:sys_enter_recvfrom", "recvfrom"},
	{"syscalls:sys_enter_epoll_pwait", "epoll_pwait"},
	{"syscalls:sys_enter_epoll_ctl", "epoll_ctl"},
	{"syscalls:sys_enter_futex", "futex"},
	{"syscalls:sys_enter_nanosleep", "nanosleep"},
	{"syscalls:sys_enter_tgkill", "tgkill"},
	{"sched:sched_switch", "cswitch"},
	{"page-faults", "faults"},
	{"net:net_dev_xmit", "packets"},
}

// syscallCount is one perf stat run over a process's measured window.
type syscallCount struct {
	done   chan struct{}
	counts map[string]float64
	// user and sys are the process's user and system CPU time in the
	// same window.
	user, sys time.Duration
	err       error
}

// countSyscalls counts the process's syscallEvents over the window that
// follows warmup (the closed loop's measured window): perf stat starts
// at once with its counters off and is told to turn them on and off
// (--control) when the window begins and ends, so that its own start-up
// is not in the window. Tracepoint counting costs the process little,
// unlike strace, so the requests batch as they do without it.
func countSyscalls(pid int, warmup, window time.Duration) *syscallCount {
	sc := &syscallCount{done: make(chan struct{})}
	events := make([]string, len(syscallEvents))
	for i, e := range syscallEvents {
		events[i] = e.event
	}
	start := time.Now()
	go func() {
		defer close(sc.done)
		sc.err = sc.run(pid, events, start.Add(warmup), start.Add(warmup+window))
	}()
	return sc
}

// run is countSyscalls' perf stat, counting from from to until.
func (sc *syscallCount) run(pid int, events []string, from, until time.Time) error {
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("perf stat control pipe: %w", err)
	}
	defer ctlW.Close()
	ackR, ackW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		return fmt.Errorf("perf stat ack pipe: %w", err)
	}
	defer ackR.Close()
	var out bytes.Buffer
	cmd := exec.Command("perf", "stat", "-x", ",", "-D", "-1", "--control", "fd:3,4", "-e", strings.Join(events, ","), "-p", strconv.Itoa(pid))
	cmd.Stderr = &out
	cmd.ExtraFiles = []*os.File{ctlR, ackW}
	err = cmd.Start()
	ctlR.Close()
	ackW.Close()
	if err != nil {
		return fmt.Errorf("perf stat: %w", err)
	}
	ack := bufio.NewReader(ackR)
	tell := func(what string) error {
		if _, err := io.WriteString(ctlW, what+"\n"); err != nil {
			return fmt.Errorf("perf stat %s: %w", what, err)
		}
		if _, err := ack.ReadString('\n'); err != nil {
			return fmt.Errorf("perf stat %s: no ack: %w", what, err)
		}
		return nil
	}
	time.Sleep(time.Until(from))
	var u0, s0, u1, s1 time.Duration
	u0, s0, err = cpuTimes(pid)
	if err == nil {
		err = tell("enable")
	}
	if err == nil {
		time.Sleep(time.Until(until))
		err = tell("disable")
	}
	if err == nil {
		u1, s1, err = cpuTimes(pid)
	}
	// perf stat prints its counts when interrupted, and exits with
	// the signal's status: no counts is the failure.
	_ = cmd.Process.Signal(os.Interrupt)
	werr := cmd.Wait()
	if err != nil {
		return err
	}
	sc.user, sc.sys = u1-u0, s1-s0
	sc.counts = parsePerfStat(out.String())
	if len(sc.counts) == 0 {
		return fmt.Errorf("perf stat: no counts (%v): %s", werr, strings.TrimSpace(out.String()))
	}
	return nil
}

// parsePerfStat reads perf stat -x , output (value,unit,event,...
// lines) into counts by event name. Lines that are not counts (comments,
// "<not counted>", "<not supported>") are left out.
func parsePerfStat(out string) map[string]float64 {
	counts := map[string]float64{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			counts[f[2]] = v
		}
	}
	return counts
}

// perRequest waits for the count and says it per request answered in
// the window.
func (sc *syscallCount) perRequest(requests int) string {
	<-sc.done
	if sc.err != nil {
		return sc.err.Error()
	}
	if requests == 0 {
		return "no requests"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests; CPU µs user %.1f sys %.1f;", requests,
		float64(sc.user.Microseconds())/float64(requests), float64(sc.sys.Microseconds())/float64(requests))
	for _, e := range syscallEvents {
		fmt.Fprintf(&b, " %s %.2f", e.name, sc.counts[e.event]/float64(requests))
	}
	return b.String()
}
