package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/credgate/credgate/internal/gcfloor"
)

// defaultGCMinHeap is the heap goal below which serve does not let the
// garbage collector run by default (CREDGATE_GC_MIN_HEAP): a gateway
// under load has a live heap of a few MiB and, with GOGC=100, collected
// it ten times a second in the keep-alive benchmark
// (docs/performance.md, "The GC's heap floor").
const defaultGCMinHeap = 16 << 20

// setGCFloor keeps the garbage collector's heap goal at or above
// CREDGATE_GC_MIN_HEAP (default defaultGCMinHeap; a byte count with an
// optional B, KiB, MiB or GiB suffix, or off). GOGC in the environment
// wins: the floor is then not set. It logs what it did and returns the
// floor, or nil when none is set; the caller stops it.
func setGCFloor(logger *slog.Logger) *gcfloor.Floor {
	if v := os.Getenv("GOGC"); v != "" {
		logger.Info("GC heap floor not set: GOGC is set", slog.String("GOGC", v))
		return nil
	}
	size := uint64(defaultGCMinHeap)
	if v := os.Getenv("CREDGATE_GC_MIN_HEAP"); v != "" {
		n, err := parseByteSize(v)
		if err != nil {
			logger.Warn("CREDGATE_GC_MIN_HEAP is not a size such as 32MiB nor off: using the default", slog.String("CREDGATE_GC_MIN_HEAP", v), slog.Any("error", err), slog.Uint64("bytes", size))
		} else {
			size = n
		}
	}
	if size == 0 {
		logger.Info("GC heap floor off (CREDGATE_GC_MIN_HEAP)")
		return nil
	}
	f := gcfloor.Start(size)
	logger.Info("GC heap floor set", slog.Uint64("bytes", size), slog.Int("gc_percent", f.Percent()))
	return f
}

// parseByteSize parses a byte count with an optional B, KiB, MiB or GiB
// suffix (GOMEMLIMIT's units), or off (0).
func parseByteSize(s string) (uint64, error) {
	if s == "off" {
		return 0, nil
	}
	num, mul := s, uint64(1)
	for _, u := range []struct {
		suffix string
		mul    uint64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mul = n, u.mul
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want a whole number of bytes with an optional B, KiB, MiB or GiB suffix, or off")
	}
	if n > (1<<64-1)/mul {
		return 0, fmt.Errorf("larger than 16 EiB")
	}
	return n * mul, nil
}
