//go:build linux

package main

// Redis under Sentinel for the soak's fault mode (soak -faults -sentinel):
// two redis-servers (a master and its replica) and three Sentinels
// monitoring them (quorum 2), as a production deployment runs them. The
// gateway's cache.redis names the three Sentinels and the master name,
// not a server; the faults fail the master over by SENTINEL FAILOVER and
// by killing the master process, and kill one Sentinel (the one the
// gateway listens to) before killing the master, so that the two left
// must agree on the failover.

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

// sentinelMaster is the name the Sentinels monitor the master under.
const sentinelMaster = "credgate-soak"

// Sentinels and quorum: three Sentinels, two of which must see the master
// down; a failover needs the votes of a majority of the three, so it
// still happens with one Sentinel down.
const (
	sentinelCount  = 3
	sentinelQuorum = 2
)

// healthyWithin bounds the wait, before a failover, for a replica in sync
// and Sentinels that know each other. After a failover the old master
// keeps reporting itself master until a Sentinel reconfigures it, which
// takes up to its INFO period (10 s) plus 8 s, and then it
// resynchronises. It also bounds the wait for a new master: with one
// Sentinel down, the two left may split their votes once, and the next
// election comes a failover-timeout later.
const healthyWithin = 45 * time.Second

// sentinelSet is a master, a replica and three Sentinels, each its own
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

	// sentinels are the Sentinels, in the order of addrs.
	sentinels []*sentinelProc
	// addrs are the Sentinels' addresses (what cache.redis.addrs names).
	addrs []string
}

// sentinelProc is one Sentinel: its process (replaced by a restart), its
// config file (which the Sentinel rewrites with what it learnt) and a
// client.
type sentinelProc struct {
	addr, dir, conf string
	proc            *proc
	client          *redis.SentinelClient
}

// running reports whether the Sentinel's process is running.
func (sp *sentinelProc) running() bool {
	select {
	case <-sp.proc.exited:
		return false
	default:
		return true
	}
}

// startSentinelSet starts the master, the replica and the Sentinels, and
// waits until the Sentinels name the master, know each other and see the
// replica in sync.
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
	mh, mp, _ := strings.Cut(master, ":")
	for i := range sentinelCount {
		addr, err := freePort()
		if err != nil {
			s.close()
			return nil, err
		}
		_, port, _ := strings.Cut(addr, ":")
		dir := filepath.Join(work, fmt.Sprintf("sentinel-%d", i+1))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			s.close()
			return nil, fmt.Errorf("sentinel directory: %w", err)
		}
		// Sentinel rewrites its config file. down-after 1 s: a killed
		// master is noticed quickly; failover-timeout 10 s: a second
		// failover may start 20 s after the first (the default, 3
		// minutes, is longer than the schedule's interval).
		conf := fmt.Sprintf("bind 127.0.0.1\nport %s\ndir %s\nsentinel monitor %s %s %s %d\nsentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 10000\n",
			port, dir, sentinelMaster, mh, mp, sentinelQuorum, sentinelMaster, sentinelMaster)
		sp := &sentinelProc{addr: addr, dir: dir, conf: filepath.Join(dir, "sentinel.conf")}
		if err := os.WriteFile(sp.conf, []byte(conf), 0o600); err != nil {
			s.close()
			return nil, fmt.Errorf("write the sentinel config: %w", err)
		}
		sp.client = redis.NewSentinelClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1})
		s.sentinels = append(s.sentinels, sp)
		s.addrs = append(s.addrs, addr)
		if err := s.startSentinel(ctx, sp); err != nil {
			s.close()
			return nil, err
		}
	}
	if err := s.waitHealthy(ctx, master, healthyWithin); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// startSentinel starts (or starts again) a Sentinel with its config file.
func (s *sentinelSet) startSentinel(ctx context.Context, sp *sentinelProc) error {
	p, err := startProc("redis-sentinel", s.pins.proxy, sp.dir, filepath.Join(sp.dir, fmt.Sprintf("sentinel-%d.log", time.Now().UnixNano())), s.env, s.bin, sp.conf, "--sentinel")
	if err != nil {
		return err
	}
	if err := p.waitTCP(ctx, sp.addr, 15*time.Second); err != nil {
		p.stop(time.Second)
		return err
	}
	s.mu.Lock()
	sp.proc = p
	s.mu.Unlock()
	return nil
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

// live returns the Sentinels whose process is running.
func (s *sentinelSet) live() []*sentinelProc {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*sentinelProc
	for _, sp := range s.sentinels {
		if sp.proc != nil && sp.running() {
			out = append(out, sp)
		}
	}
	return out
}

// master asks every running Sentinel which server is the master, and
// returns it when they agree.
func (s *sentinelSet) master(ctx context.Context) (string, error) {
	live := s.live()
	if len(live) == 0 {
		return "", errors.New("no sentinel is running")
	}
	named := ""
	for _, sp := range live {
		m, err := sp.masterAddr(ctx)
		if err != nil {
			return "", err
		}
		if named != "" && m != named {
			return "", fmt.Errorf("the sentinels disagree on the master: %s names %s, another %s", sp.addr, m, named)
		}
		named = m
	}
	return named, nil
}

// masterAddr asks this Sentinel which server is the master.
func (sp *sentinelProc) masterAddr(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	got, err := sp.client.GetMasterAddrByName(ctx, sentinelMaster).Result()
	if err != nil {
		return "", fmt.Errorf("sentinel %s: get-master-addr-by-name: %w", sp.addr, err)
	}
	if len(got) != 2 {
		return "", fmt.Errorf("sentinel %s: get-master-addr-by-name answered %q", sp.addr, got)
	}
	return got[0] + ":" + got[1], nil
}

// waitHealthy waits until the running Sentinels agree on want as the
// master (any master when want is ""), each knows the other running
// ones, and they list a replica whose link to the master is up: the
// state a failover needs.
func (s *sentinelSet) waitHealthy(ctx context.Context, want string, within time.Duration) error {
	var last error
	err := waitFor(ctx, within, func() bool {
		m, err := s.master(ctx)
		if err != nil {
			last = err
			return false
		}
		if want != "" && m != want {
			last = fmt.Errorf("the sentinels name %s as the master, want %s", m, want)
			return false
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		live := s.live()
		for _, sp := range live {
			peers, err := sp.client.Sentinels(rctx, sentinelMaster).Result()
			if err != nil {
				last = fmt.Errorf("sentinel %s: sentinels: %w", sp.addr, err)
				return false
			}
			if len(peers) < len(live)-1 {
				last = fmt.Errorf("sentinel %s knows %d other sentinels, want %d", sp.addr, len(peers), len(live)-1)
				return false
			}
		}
		reps, err := live[0].client.Replicas(rctx, sentinelMaster).Result()
		if err != nil {
			last = fmt.Errorf("sentinel %s: replicas: %w", live[0].addr, err)
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
		return fmt.Errorf("redis sentinels on %s: %w (last: %v)", strings.Join(s.addrs, ", "), err, last)
	}
	return nil
}

// failover asks a Sentinel to fail the master over (SENTINEL FAILOVER)
// and waits until the Sentinels name the other server; it returns how
// long that took. A failover a Sentinel started on its own (a server slow
// to answer under load) makes SENTINEL FAILOVER answer INPROG or
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
		err = s.live()[0].client.Failover(fctx, sentinelMaster).Err()
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
// Sentinels name another server; it returns the killed server's address
// and how long that took. The killed server is started again by restart.
func (s *sentinelSet) killMaster(ctx context.Context) (string, time.Duration, error) {
	if err := s.waitHealthy(ctx, "", healthyWithin); err != nil {
		return "", 0, fmt.Errorf("before killing the master: %w", err)
	}
	old, err := s.master(ctx)
	if err != nil {
		return "", 0, err
	}
	s.mu.Lock()
	p := s.servers[old]
	s.mu.Unlock()
	if p == nil {
		return "", 0, fmt.Errorf("the sentinels name %s as the master, which the soak did not start", old)
	}
	start := time.Now()
	if err := p.cmd.Process.Kill(); err != nil {
		return "", 0, fmt.Errorf("kill the redis master %s: %w", old, err)
	}
	<-p.exited
	d, err := s.waitNewMaster(ctx, old, start)
	return old, d, err
}

// killSentinel kills (SIGKILL) the Sentinel a client other than the
// set's own is subscribed to (the gateway listens there for
// +switch-master), or the first one when none is; restart starts it
// again. It returns the killed Sentinel's address and whether a
// subscriber was found on it.
func (s *sentinelSet) killSentinel(ctx context.Context) (string, bool, error) {
	live := s.live()
	if len(live) < 2 {
		return "", false, fmt.Errorf("only %d sentinel running: killing one leaves no quorum", len(live))
	}
	victim, subscribed := live[0], false
	for _, sp := range live {
		if sp.hasSubscriber(ctx) {
			victim, subscribed = sp, true
			break
		}
	}
	if err := victim.proc.cmd.Process.Kill(); err != nil {
		return "", false, fmt.Errorf("kill the sentinel %s: %w", victim.addr, err)
	}
	<-victim.proc.exited
	return victim.addr, subscribed, nil
}

// hasSubscriber reports whether a client is subscribed to a channel of
// this Sentinel (CLIENT LIST: sub > 0).
func (sp *sentinelProc) hasSubscriber(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cmd := redis.NewStringCmd(ctx, "client", "list")
	if err := sp.client.Process(ctx, cmd); err != nil {
		return false
	}
	for line := range strings.SplitSeq(cmd.Val(), "\n") {
		for f := range strings.FieldsSeq(line) {
			if n, ok := strings.CutPrefix(f, "sub="); ok && n != "0" {
				return true
			}
		}
	}
	return false
}

// waitNewMaster waits until the running Sentinels agree on a master other
// than old.
func (s *sentinelSet) waitNewMaster(ctx context.Context, old string, start time.Time) (time.Duration, error) {
	err := waitFor(ctx, healthyWithin, func() bool {
		m, err := s.master(ctx)
		return err == nil && m != old
	})
	if err != nil {
		return 0, fmt.Errorf("the sentinels still name %s as the master: %w", old, err)
	}
	return time.Since(start), nil
}

// restart starts every data server and Sentinel that is not running (the
// killed old master and the killed Sentinel); the Sentinels make the old
// master a replica of the new one.
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
	var deadSentinels []*sentinelProc
	for _, sp := range s.sentinels {
		if sp.proc != nil && !sp.running() {
			deadSentinels = append(deadSentinels, sp)
		}
	}
	s.mu.Unlock()
	for _, addr := range dead {
		if err := s.startServer(ctx, addr); err != nil {
			return fmt.Errorf("restart the redis server %s: %w", addr, err)
		}
	}
	for _, sp := range deadSentinels {
		if err := s.startSentinel(ctx, sp); err != nil {
			return fmt.Errorf("restart the sentinel %s: %w", sp.addr, err)
		}
	}
	return nil
}

func (s *sentinelSet) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sp := range s.sentinels {
		_ = sp.client.Close()
		if sp.proc != nil {
			sp.proc.stop(2 * time.Second)
		}
	}
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
