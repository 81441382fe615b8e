//go:build linux

package main

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// The Sentinel set (a master, a replica, three Sentinels with quorum 2)
// fails over on SENTINEL FAILOVER, and when the master is killed after
// one Sentinel was (the two left must agree), and the killed server and
// Sentinel come back, so the next failover can happen. It takes 30-60 s:
// the Sentinels demote an old master only on their next INFO round.
//
// Under load (make test on 2 cores) a server that misses PINGs for the
// set's down-after (1 s) is failed over by the Sentinels on their own:
// that is Sentinel working, not a fault of the set. So the test asserts
// what holds whatever the Sentinels did meanwhile: a failover names
// another server, a killed master is never named again while it is
// down, and after the restart the set again has a master and a replica
// in sync, and three Sentinels that know each other (which server is
// master is the Sentinels' choice).
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
	if len(s.addrs) != sentinelCount {
		t.Fatalf("%d sentinels, want %d", len(s.addrs), sentinelCount)
	}
	first, err := s.master(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.failover(ctx); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	if second, err := s.master(ctx); err != nil || second == first {
		t.Fatalf("after the failover the master is %s (%v), want not %s", second, err, first)
	}
	killed, _, err := s.killSentinel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(s.live()); n != sentinelCount-1 {
		t.Fatalf("after killing sentinel %s, %d are running, want %d", killed, n, sentinelCount-1)
	}
	// The master killed is the one the Sentinels name then (they may
	// have failed over on their own since).
	dead, _, err := s.killMaster(ctx)
	if err != nil {
		t.Fatalf("master killed with sentinel %s down: %v", killed, err)
	}
	if third, err := s.master(ctx); err != nil || third == dead {
		t.Fatalf("after killing %s the master is %s (%v), want the other server", dead, third, err)
	}
	if err := s.restart(ctx); err != nil {
		t.Fatal(err)
	}
	// The killed master and Sentinel are back: one master, a replica in
	// sync, three Sentinels that agree and know each other.
	if err := s.waitHealthy(ctx, "", healthyWithin); err != nil {
		t.Fatal(err)
	}
	if n := len(s.live()); n != sentinelCount {
		t.Fatalf("after the restart %d sentinels are running, want %d", n, sentinelCount)
	}
}
