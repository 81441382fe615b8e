// Package redistest starts a real redis-server (Debian's redis-server
// package) on 127.0.0.1 for tests. It exists so that the shared-cache unit
// tests and the end-to-end tests start Redis the same way.
package redistest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/credgate/credgate/internal/freeport"
)

// InstallHint is the command that installs the server.
const InstallHint = "apt-get install -y redis-server (scripts/test-tools.sh and .ci/run do this)"

// Server is one redis-server process without persistence.
type Server struct {
	t    testing.TB
	bin  string
	port int

	// tls, when set, makes the server listen with TLS only.
	tls *TLSFiles
	// extra are further redis-server arguments.
	extra []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  bytes.Buffer
}

// TLSFiles are the PEM files of a TLS-only server.
type TLSFiles struct {
	Cert, Key, CA string
	// Client verifies the server (RootCAs) for the readiness check.
	Client *tls.Config
}

// StartTLS is Start with TLS only (no plaintext port); clients need not
// present a certificate.
func StartTLS(t testing.TB, files TLSFiles) *Server {
	t.Helper()
	return start(t, &files)
}

// Start runs redis-server on a free 127.0.0.1 port, waits until it
// answers PING, and stops it at the end of the test. It fails the test,
// naming the install command, when redis-server is not installed.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, nil)
}

// StartCluster runs a one-node Redis Cluster that owns every hash slot.
// Redis then applies Cluster rules: a command or script whose keys hash to
// different slots fails with CROSSSLOT. Restart does not re-create the
// cluster.
func StartCluster(t testing.TB) *Server {
	t.Helper()
	s := start(t, nil, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	c := s.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", "0", "16383").Err(); err != nil {
		t.Fatalf("redis cluster: add slots: %v", err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil && bytes.Contains([]byte(info), []byte("cluster_state:ok")) {
			return s
		}
		select {
		case <-ctx.Done():
			t.Fatalf("redis cluster on %s not ok within 10s: %v %s", s.Addr(), err, info)
		case <-tick.C:
		}
	}
}

// clusterBusOffset is how far above its port a Redis Cluster node
// listens for the cluster bus.
const clusterBusOffset = 10000

func start(t testing.TB, tf *TLSFiles, extra ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found: install it with `%s`", InstallHint)
	}
	// A cluster node also listens on its bus port, port+10000: it is
	// claimed too, and kept outside the ephemeral range like the port.
	var port int
	if slices.Contains(extra, "--cluster-enabled") {
		port = freeport.GetWithCompanion(t, clusterBusOffset)
	} else {
		port = freeport.Get(t)
	}
	s := &Server{t: t, bin: bin, port: port, tls: tf, extra: extra}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

func (s *Server) start() {
	t := s.t
	t.Helper()
	s.mu.Lock()
	s.out.Reset()
	args := []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(s.port),
		"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--dir", t.TempDir()}
	if s.tls != nil {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(s.port), "--tls-cert-file", s.tls.Cert,
			"--tls-key-file", s.tls.Key, "--tls-ca-cert-file", s.tls.CA, "--tls-auth-clients", "no")
	}
	args = append(args, s.extra...)
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = &s.out, &s.out
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		t.Fatalf("start redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	c := s.newClient()
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		select {
		case <-done:
			t.Fatalf("redis-server exited at start:\n%s", s.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not answer PING within 10s: %v\n%s", s.Addr(), err, s.output())
		}
		<-tick.C
	}
}

func (s *Server) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// Stop kills the server (an outage, not a clean shutdown) and waits for it
// to exit. It is safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts the server again on the same port, empty.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// RestartWith is Restart with extra redis-server arguments for this start
// only: a test can bring Redis back in a state it then changes, for
// example refusing a command at first ("--user", "default", "on",
// "nopass", "~*", "&*", "+@all", "-hgetall") until the test allows it
// with ACL SETUSER.
func (s *Server) RestartWith(extra ...string) {
	s.t.Helper()
	s.Stop()
	s.mu.Lock()
	saved := s.extra
	s.extra = append(append([]string(nil), saved...), extra...)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.extra = saved
		s.mu.Unlock()
	}()
	s.start()
}

func (s *Server) newClient() *redis.Client {
	o := &redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: time.Second}
	if s.tls != nil {
		o.TLSConfig = s.tls.Client
	}
	return redis.NewClient(o)
}

// Client returns a client of the server, closed at the end of the test.
func (s *Server) Client() *redis.Client {
	c := s.newClient()
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Dump returns every key and its string value (other types as their
// type name), for tests that look for plaintext.
func (s *Server) Dump(ctx context.Context) (map[string]string, error) {
	c := s.newClient()
	defer c.Close()
	out := map[string]string{}
	var cursor uint64
	for range 10000 {
		keys, next, err := c.Scan(ctx, cursor, "*", 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("redistest: scan: %w", err)
		}
		for _, k := range keys {
			v, err := c.Get(ctx, k).Result()
			if err != nil {
				typ, _ := c.Type(ctx, k).Result()
				v = "<" + typ + ">"
			}
			out[k] = v
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	return out, nil
}

// StartSentinel runs redis-server in Sentinel mode on a free 127.0.0.1
// port, monitoring master under the name masterName (quorum 1), waits
// until it names the master, and stops it at the end of the test. It
// returns the sentinel's host:port.
func StartSentinel(t testing.TB, master *Server, masterName string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found: install it with `%s`", InstallHint)
	}
	port := freeport.Get(t)
	dir := t.TempDir()
	// Sentinel rewrites its config file, so it must be writable.
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf("bind 127.0.0.1\nport %d\ndir %s\nsentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 1000\n",
		port, dir, masterName, master.port, masterName)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var mu sync.Mutex
	cmd := exec.Command(bin, conf, "--sentinel")
	cmd.Stdout, cmd.Stderr = &lockedWriter{mu: &mu, w: &out}, &lockedWriter{mu: &mu, w: &out}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis sentinel: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	sc := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer sc.Close()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		got, err := sc.GetMasterAddrByName(ctx, masterName).Result()
		cancel()
		if err == nil && len(got) == 2 && got[1] == strconv.Itoa(master.port) {
			return addr
		}
		select {
		case <-done:
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("redis sentinel exited at start:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("redis sentinel on %s did not name master %q within 10s: %v %v\n%s", addr, masterName, got, err, out.String())
		}
		<-tick.C
	}
}

// lockedWriter serialises writes of a process's stdout and stderr.
type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
