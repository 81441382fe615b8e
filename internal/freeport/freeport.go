// Package freeport hands out 127.0.0.1 TCP ports for the peers a test
// must tell their port before they bind it: redis-server, MinIO, Hydra,
// OpenBao, a gateway rendered from the chart (whose ports cannot be 0).
//
// Asking the kernel for port 0 and closing the listener is racy: the
// kernel hands the same ephemeral range to every other listener on port
// 0 and to the source port of every outgoing connection, so by the time
// the peer binds the port something else on a busy machine may hold it
// ("address already in use"). The ports given here come from outside the
// kernel's ephemeral range (net.ipv4.ip_local_port_range), which it
// never assigns by itself, and each is claimed with an exclusive lock on
// a file under the temporary directory that is held until the process
// exits, so two test processes of this project, or two callers in one,
// never get the same port. What is left is an unrelated process binding
// that very port explicitly between the check and the peer's bind.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// The range ports are taken from when the ephemeral range leaves room
// below it: above the registered well-known services most machines run.
const (
	lowest = 10000
	// minSpan is the fewest ports a range outside the ephemeral one must
	// hold to be used; with less, Port asks the kernel instead.
	minSpan = 1000
	tries   = 200
)

// Port returns a 127.0.0.1 TCP port that nothing listened on when it was
// checked and that no other caller of Port, in this process or another,
// will be given while this process lives.
func Port() (int, error) { return WithCompanion(0) }

// WithCompanion is Port for a peer that also binds the port offset above
// the one it is told (Redis Cluster's bus port, port+10000): both ports
// are outside the ephemeral range, free when checked and claimed. An
// offset of 0 asks for one port.
func WithCompanion(offset int) (int, error) {
	lo, hi := span(ephemeralRange())
	hi -= offset
	if hi-lo < minSpan {
		if offset == 0 {
			return kernelPort()
		}
		return 0, fmt.Errorf("freeport: no room for a port and its companion %d above it outside the ephemeral range", offset)
	}
	start := lo + rand.IntN(hi-lo)
	for i := range tries {
		p := lo + (start-lo+i*7919)%(hi-lo) // a prime stride spreads the tries over the span
		ok, err := claimFree(p)
		if err != nil {
			return 0, err
		}
		if ok && offset > 0 {
			ok, err = claimFree(p + offset)
			if err != nil {
				return 0, err
			}
		}
		if ok {
			return p, nil
		}
	}
	return 0, fmt.Errorf("freeport: no free port among %d tried in %d-%d (outside the ephemeral range)", tries, lo, hi)
}

// claimFree claims p and reports whether it is also free to bind.
func claimFree(p int) (bool, error) {
	ok, err := claim(p)
	return ok && err == nil && bindable(p), err
}

// Get is Port for a test: it fails the test when no port is found.
func Get(t testing.TB) int {
	t.Helper()
	p, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// GetWithCompanion is WithCompanion for a test: it fails the test when
// no port is found.
func GetWithCompanion(t testing.TB, offset int) int {
	t.Helper()
	p, err := WithCompanion(offset)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Addr is Get as "127.0.0.1:PORT".
func Addr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(Get(t))
}

// ephemeralRange reads the kernel's ephemeral port range, or returns
// Linux's default when it cannot.
func ephemeralRange() (int, int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768, 60999
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768, 60999
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || lo > hi {
		return 32768, 60999
	}
	return lo, hi
}

// span is the larger of the ranges below and above the ephemeral one,
// as [lo, hi).
func span(elo, ehi int) (int, int) {
	below := [2]int{lowest, min(elo, 65536)}
	above := [2]int{max(ehi+1, lowest), 65536}
	if below[1]-below[0] >= above[1]-above[0] {
		return below[0], below[1]
	}
	return above[0], above[1]
}

// bindable reports whether 127.0.0.1:p can be listened on now.
func bindable(p int) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

// kernelPort is the kernel's choice, for a machine whose ephemeral range
// leaves no room outside it.
func kernelPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("freeport: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
