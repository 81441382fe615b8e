//go:build race

package identity_test

// raceEnabled: the race detector is on (allocation counts are not
// kept under it).
const raceEnabled = true
