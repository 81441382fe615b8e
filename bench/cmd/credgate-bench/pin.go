//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// pinning says which CPUs each role may use, as taskset lists ("0-1,3").
// An empty list means "not pinned".
type pinning struct {
	loadgen, proxy, origin string
}

func (p pinning) String() string {
	if p == (pinning{}) {
		return "none (every process shares every CPU)"
	}
	return fmt.Sprintf("load generator CPUs %s, proxy under test CPUs %s, origin CPUs %s", or(p.loadgen, "all"), or(p.proxy, "all"), or(p.origin, "all"))
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// parsePinning reads -pin: "auto", "none" or "loadgen=L,proxy=P,origin=O"
// with ';' between roles when a list itself holds commas.
func parsePinning(spec string, ncpu int) (pinning, error) {
	switch spec {
	case "none", "":
		return pinning{}, nil
	case "auto":
		// With fewer than 4 CPUs a split would give some role a single
		// CPU shared with nothing else and starve another; share instead.
		if ncpu < 4 {
			return pinning{}, nil
		}
		q := ncpu / 4
		return pinning{
			origin:  cpuRange(0, q),
			loadgen: cpuRange(q, 2*q),
			proxy:   cpuRange(2*q, ncpu),
		}, nil
	}
	var p pinning
	for _, part := range strings.Split(spec, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return p, fmt.Errorf("-pin %q: want role=cpus;role=cpus", spec)
		}
		if _, err := parseCPUs(v); err != nil {
			return p, fmt.Errorf("-pin %q: %w", spec, err)
		}
		switch k {
		case "loadgen":
			p.loadgen = v
		case "proxy":
			p.proxy = v
		case "origin":
			p.origin = v
		default:
			return p, fmt.Errorf("-pin %q: unknown role %q (loadgen, proxy, origin)", spec, k)
		}
	}
	if (p.loadgen != "" || p.proxy != "" || p.origin != "") && !hasTaskset() {
		return p, fmt.Errorf("-pin %q: taskset not found in PATH", spec)
	}
	return p, nil
}

func hasTaskset() bool {
	_, err := exec.LookPath("taskset")
	return err == nil
}

func cpuRange(lo, hi int) string {
	if hi-lo == 1 {
		return strconv.Itoa(lo)
	}
	return fmt.Sprintf("%d-%d", lo, hi-1)
}

// parseCPUs reads a taskset-style list.
func parseCPUs(list string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("bad CPU list %q", list)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("bad CPU list %q", list)
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out, nil
}

// pinSelf restricts every thread of this process to list and sets
// GOMAXPROCS to match. Threads created later inherit the mask.
func pinSelf(list string) error {
	cpus, err := parseCPUs(list)
	if err != nil {
		return err
	}
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("pin load generator: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("pin load generator thread %d to %s: %w", tid, list, err)
		}
	}
	runtime.GOMAXPROCS(len(cpus))
	return nil
}
