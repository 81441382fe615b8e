//go:build linux

package main

import (
	"os"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1GiB": 1 << 30, "64MiB": 64 << 20, "512KiB": 512 << 10, "1000": 1000, "64GiB": 64 << 30} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1MiB", "1TiB", "65GiB", "x"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

// The driver reads its own descriptor limit and count from /proc, and its
// soft limit is raised to the hard one.
func TestDescriptorLimits(t *testing.T) {
	soft, hard, err := raiseNoFile()
	if err != nil || soft != hard {
		t.Fatalf("raiseNoFile = %d, %d, %v; want soft == hard", soft, hard, err)
	}
	lim, err := fdLimit(os.Getpid())
	if err != nil || uint64(lim) != soft {
		t.Errorf("fdLimit = %d, %v; want %d", lim, err, soft)
	}
	if n, err := openFDs(os.Getpid()); err != nil || n < 3 {
		t.Errorf("openFDs = %d, %v", n, err)
	}
	if lo, hi, err := portRange(); err != nil || lo <= 0 || hi < lo {
		t.Errorf("portRange = %d, %d, %v", lo, hi, err)
	}
}
