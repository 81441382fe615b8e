package main

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// The Sentinel set fails over on SENTINEL FAILOVER and when the master is
// killed, and the killed server comes back as a replica, so the next
// failover can happen. It takes 30-60 s: the Sentinel demotes an old
// master only on its next INFO round.
//
// Under load (make test on 2 cores) a server that misses PINGs for the
// set's down-after (1 s) is failed over by the Sentinel on its own: that
// is the Sentinel working, not a fault of the set. So the test asserts
// what holds whatever the Sentinel did meanwhile: a failover names
// another server, a killed master is never named again while it is
// down, and after the restart the set again has a master and a replica
// in sync (which of the two is master is the Sentinel's choice).
func TestSentinelSetFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: two Sentinel failovers take 30-60 s")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed (Debian package redis-server)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := startSentinelSet(ctx, t.TempDir(), pinning{}, os.Environ())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	first, err := s.master(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.failover(ctx); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	second, err := s.master(ctx)
	if err != nil || second == first {
		t.Fatalf("after the failover the master is %s (%v), want not %s", second, err, first)
	}
	if _, err := s.killMaster(ctx); err != nil {
		t.Fatalf("master killed: %v", err)
	}
	if third, err := s.master(ctx); err != nil || third == second {
		t.Fatalf("after killing %s the master is %s (%v), want the other server", second, third, err)
	}
	if err := s.restart(ctx); err != nil {
		t.Fatal(err)
	}
	// The killed master is back: one master and a replica in sync.
	if err := s.waitHealthy(ctx, "", healthyWithin); err != nil {
		t.Fatal(err)
	}
}
