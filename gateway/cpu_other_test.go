//go:build !unix

package gateway

import "time"

// processCPU is not measured here; benchmarks report 0.
func processCPU() time.Duration { return 0 }

// processSwitches is not measured here; benchmarks report 0.
func processSwitches() int64 { return 0 }
