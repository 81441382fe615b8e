//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/credgate/credgate/internal/freeport"
)

// proc is a child process: the origin, the goproxy baseline or credgate.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	log     *os.File
	exited  chan struct{}
	waitErr error // set before exited is closed
}

// startProc starts argv with its stdout and stderr in logPath, pinned to
// cpus (a taskset list) when cpus is not empty. The child gets SIGKILL if
// the benchmark dies first.
func startProc(name, cpus, dir, logPath string, env []string, argv ...string) (*proc, error) {
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, log: logf, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = logf.Close()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and, if the process has not exited after grace,
// SIGKILL.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// tail returns the last n lines of the process's output.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitTCP polls addr until it accepts a connection, the process exits or
// the deadline passes.
func (p *proc) waitTCP(ctx context.Context, addr string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before listening on %s (%v); output:\n%s", p.name, addr, p.waitErr, p.tail(20))
		case <-ctx.Done():
			return fmt.Errorf("%s not listening on %s after %s; output:\n%s", p.name, addr, within, p.tail(20))
		case <-tick.C:
		}
	}
}

// memStat reads VmRSS and VmHWM of pid, in bytes.
func memStat(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0, fmt.Errorf("read memory of %d: %w", pid, err)
	}
	for line := range bytes.Lines(b) {
		f := strings.Fields(string(line))
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	if rss == 0 {
		return 0, 0, errors.New("no VmRSS in /proc status")
	}
	return rss, hwm, nil
}

// fileRSS reads RssFile, the file-backed part of VmRSS, from /proc.
func fileRSS(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("read memory of %d: %w", pid, err)
	}
	for line := range bytes.Lines(b) {
		if f := strings.Fields(string(line)); len(f) >= 2 && f[0] == "RssFile:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read memory of %d: RssFile %q: %w", pid, f[1], err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no RssFile in /proc status")
}

// clockTick is USER_HZ, 100 on every Linux architecture Go supports here.
const clockTick = 10 * time.Millisecond

// cpuTime reads the user+system CPU time pid has used so far.
func cpuTime(pid int) (time.Duration, error) {
	u, s, err := cpuTimes(pid)
	return u + s, err
}

// cpuTimes reads the user and the system CPU time pid has used so far.
func cpuTimes(pid int) (user, sys time.Duration, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, fmt.Errorf("read CPU time of %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces; fields after it start
	// after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: too few fields", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return time.Duration(u) * clockTick, time.Duration(s) * clockTick, nil
}

// settledRSS polls VmRSS until three readings 200 ms apart agree within
// 1%, or two seconds pass, and returns the last reading.
func settledRSS(ctx context.Context, pid int) (int64, error) {
	var last []int64
	deadline := time.Now().Add(2 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		rss, _, err := memStat(pid)
		if err != nil {
			return 0, err
		}
		last = append(last, rss)
		if n := len(last); n >= 3 {
			lo, hi := min(last[n-1], last[n-2], last[n-3]), max(last[n-1], last[n-2], last[n-3])
			if float64(hi-lo) <= 0.01*float64(hi) || time.Now().After(deadline) {
				return rss, nil
			}
		}
		select {
		case <-ctx.Done():
			return rss, ctx.Err()
		case <-tick.C:
		}
	}
}

// freePort is a 127.0.0.1 address for a child that must be told its port
// before it binds it (internal/freeport: outside the kernel's ephemeral
// range, claimed for the life of this process).
func freePort() (string, error) {
	p, err := freeport.Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

// openFDs counts the open file descriptors of pid.
func openFDs(pid int) (int, error) {
	es, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	if err != nil {
		return 0, fmt.Errorf("count fds of %d: %w", pid, err)
	}
	return len(es), nil
}

// fdLimit reads the soft "Max open files" limit of pid.
func fdLimit(pid int) (int, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "limits"))
	if err != nil {
		return 0, fmt.Errorf("read limits of %d: %w", pid, err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				if f[0] == "unlimited" {
					return 1 << 30, nil
				}
				return strconv.Atoi(f[0])
			}
		}
	}
	return 0, fmt.Errorf("read limits of %d: no Max open files line", pid)
}

// raiseNoFile raises this process's soft RLIMIT_NOFILE to its hard limit
// (the Go runtime already does so at start-up since Go 1.19; this makes it
// explicit and reports both).
func raiseNoFile() (soft, hard uint64, err error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, fmt.Errorf("getrlimit NOFILE: %w", err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return rl.Cur, rl.Max, fmt.Errorf("setrlimit NOFILE to %d: %w", rl.Max, err)
		}
	}
	return rl.Cur, rl.Max, nil
}

// rssSampler reads pid's VmRSS every interval until stop is called and
// returns the largest and the last reading (the last taken at stop).
func rssSampler(pid int, interval time.Duration) (stop func() (peak, last int64)) {
	done := make(chan struct{})
	result := make(chan [2]int64, 1)
	go func() {
		var peak, last int64
		read := func() {
			if rss, _, err := memStat(pid); err == nil {
				peak, last = max(peak, rss), rss
			}
		}
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			read()
			select {
			case <-done:
				read()
				result <- [2]int64{peak, last}
				return
			case <-tick.C:
			}
		}
	}()
	return func() (int64, int64) {
		close(done)
		r := <-result
		return r[0], r[1]
	}
}
