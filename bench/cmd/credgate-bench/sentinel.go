package main

// Redis under Sentinel for the soak's fault mode (soak -faults -sentinel):
// two redis-servers (a master and its replica) and one Sentinel
// monitoring them (quorum 1). The gateway's cache.redis names the
// Sentinel and the master name, not a server; the faults fail the master
// over, by SENTINEL FAILOVER and by killing the master process.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// sentinelMaster is the name the Sentinel monitors the master under.
const sentinelMaster = "credgate-soak"

// healthyWithin bounds the wait, before a failover, for a replica in sync.
// After a failover the old master keeps reporting itself master until the
// Sentinel reconfigures it, which takes up to its INFO period (10 s) plus
// 8 s, and then it resynchronises.
const healthyWithin = 45 * time.Second

// sentinelSet is a master, a replica and a Sentinel, each its own
// redis-server process.
type sentinelSet struct {
	work string
	pins pinning
	env  []string
	bin  string

	mu sync.Mutex
	// servers are the data servers by address, with the arguments to
	// start each again after it was killed.
	servers map[string]*proc
	args    map[string][]string

	sentinel *proc
	addr     string // the Sentinel's address
	client   *redis.SentinelClient
}

// startSentinelSet starts the master, the replica and the Sentinel, and
// waits until the Sentinel names the master and sees the replica in sync.
func startSentinelSet(ctx context.Context, work string, pins pinning, env []string) (*sentinelSet, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("-sentinel needs redis-server (Debian package redis-server)")
	}
	s := &sentinelSet{work: work, pins: pins, env: env, bin: bin, servers: map[string]*proc{}, args: map[string][]string{}}
	master, err := freePort()
	if err != nil {
		return nil, err
	}
	replica, err := freePort()
	if err != nil {
		return nil, err
	}
	for i, addr := range []string{master, replica} {
		_, port, _ := strings.Cut(addr, ":")
		dir := filepath.Join(work, "redis-"+port)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("redis directory: %w", err)
		}
		args := []string{bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", dir}
		if i == 1 {
			mh, mp, _ := strings.Cut(master, ":")
			args = append(args, "--replicaof", mh, mp)
		}
		s.args[addr] = args
		if err := s.startServer(ctx, addr); err != nil {
			s.close()
			return nil, err
		}
	}
	if s.addr, err = freePort(); err != nil {
		s.close()
		return nil, err
	}
	_, port, _ := strings.Cut(s.addr, ":")
	dir := filepath.Join(work, "sentinel")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.close()
		return nil, fmt.Errorf("sentinel directory: %w", err)
	}
	mh, mp, _ := strings.Cut(master, ":")
	// Sentinel rewrites its config file. down-after 1 s: a killed master
	// is noticed quickly; failover-timeout 10 s: a second failover may
	// start 20 s after the first (the default, 3 minutes, is longer than
	// the schedule's interval).
	conf := fmt.Sprintf("bind 127.0.0.1\nport %s\ndir %s\nsentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 10000\n",
		port, dir, sentinelMaster, mh, mp, sentinelMaster, sentinelMaster)
	confPath := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		s.close()
		return nil, fmt.Errorf("write the sentinel config: %w", err)
	}
	if s.sentinel, err = startProc("redis-sentinel", pins.proxy, dir, filepath.Join(dir, "sentinel.log"), env, bin, confPath, "--sentinel"); err != nil {
		s.close()
		return nil, err
	}
	if err := s.sentinel.waitTCP(ctx, s.addr, 15*time.Second); err != nil {
		s.close()
		return nil, err
	}
	s.client = redis.NewSentinelClient(&redis.Options{Addr: s.addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	if err := s.waitHealthy(ctx, master, 30*time.Second); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// startServer starts the data server at addr with its arguments.
func (s *sentinelSet) startServer(ctx context.Context, addr string) error {
	_, port, _ := strings.Cut(addr, ":")
	dir := filepath.Join(s.work, "redis-"+port)
	p, err := startProc("redis-server", s.pins.proxy, dir, filepath.Join(dir, fmt.Sprintf("redis-%d.log", time.Now().UnixNano())), s.env, s.args[addr]...)
	if err != nil {
		return err
	}
	if err := p.waitTCP(ctx, addr, 15*time.Second); err != nil {
		p.stop(time.Second)
		return err
	}
	s.mu.Lock()
	s.servers[addr] = p
	s.mu.Unlock()
	return nil
}

// master asks the Sentinel which server is the master.
func (s *sentinelSet) master(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	got, err := s.client.GetMasterAddrByName(ctx, sentinelMaster).Result()
	if err != nil {
		return "", fmt.Errorf("sentinel %s: get-master-addr-by-name: %w", s.addr, err)
	}
	if len(got) != 2 {
		return "", fmt.Errorf("sentinel %s: get-master-addr-by-name answered %q", s.addr, got)
	}
	return got[0] + ":" + got[1], nil
}

// waitHealthy waits until the Sentinel names want as the master (any
// master when want is "") and lists a replica whose link to it is up:
// the state a failover needs.
func (s *sentinelSet) waitHealthy(ctx context.Context, want string, within time.Duration) error {
	var last error
	err := waitFor(ctx, within, func() bool {
		m, err := s.master(ctx)
		if err != nil {
			last = err
			return false
		}
		if want != "" && m != want {
			last = fmt.Errorf("the sentinel names %s as the master, want %s", m, want)
			return false
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		reps, err := s.client.Replicas(rctx, sentinelMaster).Result()
		if err != nil {
			last = fmt.Errorf("sentinel replicas: %w", err)
			return false
		}
		for _, r := range reps {
			if r["flags"] == "slave" && r["master-link-status"] == "ok" {
				return true
			}
		}
		last = fmt.Errorf("no replica of %s in sync: %v", m, reps)
		return false
	})
	if err != nil {
		return fmt.Errorf("redis sentinel on %s: %w (last: %v)", s.addr, err, last)
	}
	return nil
}

// failover asks the Sentinel to fail the master over (SENTINEL FAILOVER)
// and waits until it names the other server; it returns how long that
// took. A failover the Sentinel started on its own (a server slow to
// answer under load) makes SENTINEL FAILOVER answer INPROG or
// NOGOODSLAVE; it is asked again once the set is healthy, within
// healthyWithin.
func (s *sentinelSet) failover(ctx context.Context) (time.Duration, error) {
	deadline := time.Now().Add(healthyWithin)
	for {
		if err := s.waitHealthy(ctx, "", time.Until(deadline)); err != nil {
			return 0, fmt.Errorf("before the failover: %w", err)
		}
		old, err := s.master(ctx)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err = s.client.Failover(fctx, sentinelMaster).Err()
		cancel()
		if err == nil {
			return s.waitNewMaster(ctx, old, start)
		}
		if !busyFailover(err) || time.Now().After(deadline) {
			return 0, fmt.Errorf("sentinel failover %s: %w", sentinelMaster, err)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("sentinel failover %s: %w (last: %v)", sentinelMaster, ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// busyFailover reports whether SENTINEL FAILOVER was refused because the
// Sentinel is failing over already or has no replica in sync yet.
func busyFailover(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "INPROG") || strings.HasPrefix(msg, "NOGOODSLAVE")
}

// killMaster kills the master process (SIGKILL) and waits until the
// Sentinel names the other server; it returns how long that took. The
// killed server is started again by restart.
func (s *sentinelSet) killMaster(ctx context.Context) (time.Duration, error) {
	if err := s.waitHealthy(ctx, "", healthyWithin); err != nil {
		return 0, fmt.Errorf("before killing the master: %w", err)
	}
	old, err := s.master(ctx)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	p := s.servers[old]
	s.mu.Unlock()
	if p == nil {
		return 0, fmt.Errorf("the sentinel names %s as the master, which the soak did not start", old)
	}
	start := time.Now()
	if err := p.cmd.Process.Kill(); err != nil {
		return 0, fmt.Errorf("kill the redis master %s: %w", old, err)
	}
	<-p.exited
	return s.waitNewMaster(ctx, old, start)
}

// waitNewMaster waits until the Sentinel names a master other than old.
func (s *sentinelSet) waitNewMaster(ctx context.Context, old string, start time.Time) (time.Duration, error) {
	err := waitFor(ctx, 30*time.Second, func() bool {
		m, err := s.master(ctx)
		return err == nil && m != old
	})
	if err != nil {
		return 0, fmt.Errorf("the sentinel still names %s as the master: %w", old, err)
	}
	return time.Since(start), nil
}

// restart starts every data server that is not running (the killed old
// master); the Sentinel makes it a replica of the new master.
func (s *sentinelSet) restart(ctx context.Context) error {
	s.mu.Lock()
	var dead []string
	for addr, p := range s.servers {
		select {
		case <-p.exited:
			dead = append(dead, addr)
		default:
		}
	}
	s.mu.Unlock()
	for _, addr := range dead {
		if err := s.startServer(ctx, addr); err != nil {
			return fmt.Errorf("restart the redis server %s: %w", addr, err)
		}
	}
	return nil
}

func (s *sentinelSet) close() {
	if s.client != nil {
		_ = s.client.Close()
	}
	if s.sentinel != nil {
		s.sentinel.stop(2 * time.Second)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.servers {
		p.stop(2 * time.Second)
	}
}

// waitFor polls cond every 50 ms until it holds, ctx ends or within
// passes.
func waitFor(ctx context.Context, within time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %s: %w", within, ctx.Err())
		case <-tick.C:
		}
	}
}
