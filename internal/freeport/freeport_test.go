package freeport

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestSpan(t *testing.T) {
	for _, c := range []struct{ elo, ehi, lo, hi int }{
		{32768, 60999, 10000, 32768}, // Linux's default: below is larger
		{49152, 65535, 10000, 49152}, // the IANA range, as BSDs use
		{1024, 20000, 20001, 65536},  // a low range: above
		{1024, 65535, 65536, 65536},  // no room: Port asks the kernel
		{10000, 60000, 60001, 65536},
	} {
		lo, hi := span(c.elo, c.ehi)
		if lo != c.lo || hi != c.hi {
			t.Errorf("span(%d, %d) = [%d, %d), want [%d, %d)", c.elo, c.ehi, lo, hi, c.lo, c.hi)
		}
	}
}

// The ports are outside the kernel's ephemeral range, distinct across
// concurrent callers, and can be listened on by whoever was given them.
func TestPortsDistinctOutsideEphemeral(t *testing.T) {
	elo, ehi := ephemeralRange()
	var mu sync.Mutex
	seen := map[int]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				p := Get(t)
				mu.Lock()
				if seen[p] {
					t.Errorf("port %d handed out twice", p)
				}
				seen[p] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for p := range seen {
		if p >= elo && p <= ehi {
			t.Errorf("port %d is inside the ephemeral range %d-%d", p, elo, ehi)
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Errorf("port %d handed out but cannot be listened on: %v", p, err)
			continue
		}
		ln.Close()
	}
}

const childEnv = "FREEPORT_TEST_CHILD"

// Processes taking ports at the same time never get the same one. Each
// child holds its ports (stays alive) until the parent has read them
// all: a port is free again once its holder exits.
func TestPortsDistinctAcrossProcesses(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		var out []string
		for range 100 {
			out = append(out, strconv.Itoa(Get(t)))
		}
		fmt.Println("PORTS", strings.Join(out, " "))
		_, _ = io.Copy(io.Discard, os.Stdin) // hold the ports until the parent lets go
		return
	}
	const children = 3
	var wg sync.WaitGroup
	ports := make([][]string, children)
	errs := make([]error, children)
	for i := range children {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPortsDistinctAcrossProcesses$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"=1")
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { in.Close(); _ = cmd.Wait() })
		wg.Go(func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if rest, ok := strings.CutPrefix(sc.Text(), "PORTS "); ok {
					ports[i] = strings.Fields(rest)
					return
				}
			}
			errs[i] = fmt.Errorf("child %d printed no ports (%v)", i, sc.Err())
		})
	}
	wg.Wait() // every child has its ports and still holds them
	owner := map[string]int{}
	for i := range children {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if len(ports[i]) != 100 {
			t.Fatalf("child %d printed %d ports, want 100", i, len(ports[i]))
		}
		for _, p := range ports[i] {
			if j, ok := owner[p]; ok {
				t.Errorf("port %s given to child %d and child %d", p, j, i)
			}
			owner[p] = i
		}
	}
}

// TestWithCompanion: a port and its companion offset above it (Redis
// Cluster's bus port) are both outside the ephemeral range, bindable, and
// neither is handed out again, as a port or as a companion.
func TestWithCompanion(t *testing.T) {
	elo, ehi := ephemeralRange()
	seen := map[int]bool{}
	for range 50 {
		p := GetWithCompanion(t, 10000)
		for _, q := range []int{p, p + 10000} {
			if q >= elo && q <= ehi {
				t.Fatalf("port %d (of %d and its companion) is in the ephemeral range %d-%d", q, p, elo, ehi)
			}
			if seen[q] {
				t.Fatalf("port %d handed out twice", q)
			}
			seen[q] = true
		}
		if q := Get(t); seen[q] {
			t.Fatalf("Get handed out %d, a port or companion already given", q)
		} else {
			seen[q] = true
		}
	}
}
