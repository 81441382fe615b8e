//go:build !race

package transform

// raceEnabled: the race detector is on (allocation counts are not
// kept under it).
const raceEnabled = false
