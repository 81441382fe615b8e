package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// memLimitRatio is the share of the container's memory limit the Go
// runtime's soft limit is set to by default: the rest is for memory the
// Go heap does not count (thread stacks, the socket buffers the kernel
// charges to the container, fragmentation).
const memLimitRatio = 0.9

// memLimitRefresh is how often serve reads the container's limit again,
// so that a pod resized in place gets a matching soft limit.
const memLimitRefresh = time.Minute

// setMemoryLimit sets the Go runtime's soft memory limit (GOMEMLIMIT) to a
// share (memLimitRatio) of the memory limit provider reports (the
// cgroup's, in a container), and keeps it in step, reading it again every
// refresh until ctx ends. Near the limit the garbage collector works harder
// instead of letting the heap grow into an out-of-memory kill.
// GOMEMLIMIT in the environment wins, AUTOMEMLIMIT=off turns this off and
// AUTOMEMLIMIT=0.8 sets the share (docs/deploy.md, "Memory"). It logs
// what it did and returns the limit in force (math.MaxInt64: none).
func setMemoryLimit(ctx context.Context, logger *slog.Logger, provider memlimit.Provider, refresh time.Duration) int64 {
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		limit := debug.SetMemoryLimit(-1)
		logger.Info("Go memory limit from GOMEMLIMIT", slog.String("GOMEMLIMIT", v), slog.Int64("bytes", limit))
		return limit
	}
	ratio := memLimitRatio
	switch v := os.Getenv("AUTOMEMLIMIT"); v {
	case "":
	case "off":
		logger.Info("Go memory limit not set from the container (AUTOMEMLIMIT=off)")
		return debug.SetMemoryLimit(-1)
	default:
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || !(r > 0 && r <= 1) {
			logger.Warn("AUTOMEMLIMIT is not a share of the container's memory in (0, 1] nor off: using the default", slog.String("AUTOMEMLIMIT", v), slog.Float64("ratio", memLimitRatio))
		} else {
			ratio = r
		}
	}
	limit, err := containerLimit(provider, ratio)
	switch {
	case errors.Is(err, errNoContainerLimit):
		logger.Debug("no container memory limit found: the Go memory limit is not set", slog.Any("reason", err))
		return debug.SetMemoryLimit(-1)
	case err != nil:
		logger.Warn("the Go memory limit is not set: set GOMEMLIMIT by hand", slog.Any("error", err))
		return debug.SetMemoryLimit(-1)
	}
	debug.SetMemoryLimit(limit)
	logger.Info("Go memory limit set from the container's", slog.Int64("bytes", limit), slog.Float64("ratio", ratio))
	go func() {
		t := time.NewTicker(refresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			next, err := containerLimit(provider, ratio)
			if err != nil || next == limit {
				continue // the last limit read stays
			}
			debug.SetMemoryLimit(next)
			logger.Info("Go memory limit follows the container's", slog.Int64("bytes", next), slog.Int64("previous", limit))
			limit = next
		}
	}()
	return limit
}

// errNoContainerLimit is a process outside a cgroup, or in one without a
// memory limit.
var errNoContainerLimit = errors.New("no container memory limit")

// containerLimit returns ratio of the limit provider reports.
func containerLimit(provider memlimit.Provider, ratio float64) (int64, error) {
	n, err := provider()
	switch {
	case errors.Is(err, memlimit.ErrNoLimit), errors.Is(err, memlimit.ErrNoCgroup), errors.Is(err, memlimit.ErrCgroupsNotSupported):
		return 0, fmt.Errorf("%w: %w", errNoContainerLimit, err)
	case err != nil:
		return 0, fmt.Errorf("reading the container's memory limit: %w", err)
	case n == 0 || n >= math.MaxInt64:
		return 0, errNoContainerLimit
	}
	return int64(float64(n) * ratio), nil
}
