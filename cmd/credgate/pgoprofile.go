//go:build pgoprofile

// This file is compiled only with -tags pgoprofile, by scripts/pgo.sh,
// which profiles that throwaway binary under the benchmark to write
// default.pgo. The shipped binary (scripts/gobuild.sh, make build, the
// image, the release) never has the tag, so it never writes a profile.

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"
)

// profileChunk is how long each CPU profile file covers. The process is
// stopped from outside (SIGTERM, then os.Exit in cli.Main), so profiling
// is cut into chunks, each flushed when the next starts: at most the last
// chunk, the idle shutdown after a scenario, is lost.
const profileChunk = time.Second

// init starts CPU profiling into $CREDGATE_CPUPROFILE_DIR, one file per
// chunk named credgate-PID-N.pprof, when that variable is set.
func init() {
	dir := os.Getenv("CREDGATE_CPUPROFILE_DIR")
	if dir == "" {
		return
	}
	f, err := startChunk(dir, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "credgate: pgoprofile: %v (profiling off; check CREDGATE_CPUPROFILE_DIR)\n", err)
		return
	}
	go func() {
		tick := time.NewTicker(profileChunk)
		for n := 1; ; n++ {
			<-tick.C
			pprof.StopCPUProfile()
			_ = f.Close()
			if f, err = startChunk(dir, n); err != nil {
				fmt.Fprintf(os.Stderr, "credgate: pgoprofile: %v (profiling stopped)\n", err)
				return
			}
		}
	}()
}

// startChunk creates chunk n's file and starts the CPU profile into it.
func startChunk(dir string, n int) (*os.File, error) {
	path := filepath.Join(dir, fmt.Sprintf("credgate-%d-%04d.pprof", os.Getpid(), n))
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start CPU profile %s: %w", path, err)
	}
	return f, nil
}
