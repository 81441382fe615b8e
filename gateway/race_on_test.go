//go:build race

package gateway

// raceEnabled: the race detector is on (sync.Pool then drops some of
// what it is given, so allocation counts through a pool are not kept).
const raceEnabled = true
