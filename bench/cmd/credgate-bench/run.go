//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/credgate/credgate/bench/internal/loadgen"
	"github.com/credgate/credgate/bench/internal/origin"
	"github.com/credgate/credgate/bench/internal/report"
	"github.com/credgate/credgate/internal/cabundle"
	"github.com/credgate/credgate/internal/testpki"
)

// defaultScenarios is what `make bench` runs (about 3 minutes on 2 cores).
var defaultScenarios = []string{"memory", "keepalive", "newconn", "newconn-resume", "rate"}

// runConfig holds the run flags.
type runConfig struct {
	credgate   string
	targets    []string
	scenarios  map[string]bool
	conns      int
	window     time.Duration
	rounds     int
	warmup     time.Duration
	rate       float64
	rateWindow time.Duration
	pool       int
	idleConns  int
	pin        string
	audit      string
	keep       bool
	jsonOut    string
	mdOut      string
	originH1   bool
	upstreamH2 bool
	perf       string
	perfTarget string
	// perfScenario is the closed-loop scenario -perf records.
	perfScenario string
	// syscalls counts each proxy's system calls and context switches in
	// its closed-loop windows (perf stat tracepoints; syscalls.go).
	syscalls bool
	// scale holds the flags of the opt-in scale scenarios (scale.go).
	scale scaleConfig
}

// target is one measured thing and, for proxies, its process.
type target struct {
	lg   *loadgen.Target
	proc *proc // nil for direct
	// helpers are processes the proxy uses (redis-server), whose CPU
	// time is the proxy's too.
	helpers []*proc
	// admin is credgate's admin address (/metrics, /readyz); empty for
	// the other targets.
	admin string
	// dir is credgate's working directory, caCert and caKey its
	// interception CA's files in it (the soak's fault mode rotates them).
	dir, caCert, caKey string
}

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var rc runConfig
	var targets, scenarios, bigSize string
	fs.StringVar(&rc.credgate, "credgate", "", "path to the credgate binary (empty: measure direct and goproxy only)")
	fs.StringVar(&targets, "targets", "direct,goproxy,credgate,credgate-2fa,credgate-redis,credgate-redis-rl,squid,mitmproxy", "targets to measure (also: credgate-rl; floor, the least any header-injecting MITM proxy does here, a bound on every proxy's figures (bench/internal/floor); credgate-2fa is credgate requiring mtls + jwt over its TLS listener; squid and mitmproxy are skipped, and say so, when not installed)")
	fs.StringVar(&scenarios, "scenarios", strings.Join(defaultScenarios, ","), "scenarios to run, in this order (newconn-resume: a new connection per request from a client that resumes TLS sessions); opt-in, minutes each: h2-streams, bigbody, idle10k; all: every scenario")
	fs.IntVar(&rc.conns, "conns", 32, "concurrent connections (keep-alive) / workers (new connection per request)")
	fs.DurationVar(&rc.window, "duration", 3*time.Second, "measured window per target and round in the closed-loop scenarios")
	fs.IntVar(&rc.rounds, "rounds", 2, "rounds per scenario; targets alternate within each round and the rounds are merged")
	fs.DurationVar(&rc.warmup, "warmup", time.Second, "warm-up before each measured window (not counted)")
	fs.Float64Var(&rc.rate, "rate", 1500, "requests per second in the fixed-rate scenario")
	fs.DurationVar(&rc.rateWindow, "rate-duration", 3*time.Second, "measured window per target and round in the fixed-rate scenario")
	fs.IntVar(&rc.pool, "pool", 64, "warm keep-alive connections for the fixed-rate scenario")
	fs.IntVar(&rc.idleConns, "idle-conns", 1000, "idle client connections held open in the memory scenario")
	fs.StringVar(&rc.pin, "pin", "auto", `CPU pinning: auto (split roles on >= 4 CPUs, share on fewer), none, or "loadgen=0;proxy=1;origin=1"`)
	fs.StringVar(&rc.audit, "audit", "file", "credgate audit output: file (JSON lines in the work directory) or discard (/dev/null)")
	fs.BoolVar(&rc.keep, "keep", false, "keep the work directory (configs, logs, audit file)")
	fs.StringVar(&rc.jsonOut, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&rc.mdOut, "out", "", "also write the Markdown report to this file")
	fs.BoolVar(&rc.originH1, "origin-http1", false, "origin offers HTTP/1.1 only (default: h2 and http/1.1)")
	fs.BoolVar(&rc.upstreamH2, "baseline-upstream-h2", false, "let the goproxy baseline use HTTP/2 to the origin")
	fs.StringVar(&rc.perf, "perf", "", "record the -perf-target proxy with `perf record -g` during its first keep-alive window into this file")
	fs.StringVar(&rc.perfTarget, "perf-target", "credgate", "proxy to record with -perf (credgate, goproxy or floor)")
	fs.StringVar(&rc.perfScenario, "perf-scenario", "keepalive", "scenario whose first window -perf records (keepalive, keepalive-post, newconn or newconn-resume)")
	fs.BoolVar(&rc.syscalls, "syscalls", false, "count each proxy's system calls, goroutine wake-ups (futex) and context switches per request in its closed-loop and fixed-rate windows with `perf stat` tracepoints, printed to stderr (load-independent, unlike rps)")
	fs.IntVar(&rc.scale.h2Streams, "h2-streams", 100, "h2-streams: concurrent streams of the one HTTP/2 client (and HTTP/1.1 connections of the comparison rows)")
	fs.StringVar(&bigSize, "bigbody-size", "1GiB", "bigbody: size of each upload and download (bytes, or with KiB, MiB, GiB)")
	fs.IntVar(&rc.scale.bigRounds, "bigbody-rounds", 1, "bigbody: transfers per target and direction")
	fs.IntVar(&rc.scale.idleClients, "idle-clients", 10000, "idle10k: idle keep-alive clients held open through each proxy")
	fs.IntVar(&rc.scale.idleActive, "idle-active", 2000, "idle10k: how many of them then send requests")
	fs.IntVar(&rc.scale.idleBase, "idle-base", 100, "idle10k: clients of the reference run whose p99 the active clients' is compared with")
	fs.Float64Var(&rc.scale.idleClientRPS, "idle-client-rps", 50, "idle10k: requests per second per active client (issue 20's figure; scaled down to fit -idle-max-rps)")
	fs.Float64Var(&rc.scale.idleMaxRPS, "idle-max-rps", 1500, "idle10k: the most the active clients offer together; above it the per-client rate is scaled down, and the report says so")
	fs.DurationVar(&rc.scale.idleWindow, "idle-duration", 10*time.Second, "idle10k: measured window of the reference and the active run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rc.targets = splitList(targets)
	rc.scenarios = map[string]bool{}
	known := append(slices.Clone(defaultScenarios), scaleScenarios...)
	known = append(known, "keepalive-post") // opt-in
	for _, s := range splitList(scenarios) {
		switch {
		case s == "all":
			for _, k := range known {
				rc.scenarios[k] = true
			}
		case slices.Contains(known, s):
			rc.scenarios[s] = true
		default:
			return fmt.Errorf("-scenarios: unknown %q (%s, or all)", s, strings.Join(known, ", "))
		}
	}
	var err error
	if rc.scale.bigBytes, err = parseSize(bigSize); err != nil {
		return fmt.Errorf("-bigbody-size: %w", err)
	}
	if rc.scale.h2Streams < 1 || rc.scale.bigRounds < 1 || rc.scale.idleClients < 1 || rc.scale.idleActive < 1 || rc.scale.idleBase < 1 || rc.scale.idleClientRPS <= 0 || rc.scale.idleMaxRPS <= 0 {
		return errors.New("-h2-streams, -bigbody-rounds, -idle-clients, -idle-active, -idle-base, -idle-client-rps and -idle-max-rps must be positive")
	}
	if rc.rounds < 1 {
		return fmt.Errorf("-rounds %d: want at least 1", rc.rounds)
	}
	if rc.audit != "file" && rc.audit != "discard" {
		return fmt.Errorf("-audit %q: want file or discard", rc.audit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, rc)
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func run(ctx context.Context, rc runConfig) (err error) {
	ncpu := runtime.NumCPU()
	pins, err := parsePinning(rc.pin, ncpu)
	if err != nil {
		return err
	}
	if pins.loadgen != "" {
		if err := pinSelf(pins.loadgen); err != nil {
			return err
		}
	}
	work, err := os.MkdirTemp("", "credgate-bench-")
	if err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	defer func() {
		if rc.keep || err != nil {
			fmt.Fprintf(os.Stderr, "work directory kept: %s\n", work)
			return
		}
		_ = os.RemoveAll(work)
	}()
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	token := randomHex(24)
	env := childEnv(token)
	want := map[string]bool{}
	for _, t := range rc.targets {
		want[t] = true
	}

	res := &report.Results{Env: map[string]string{}, Titles: map[string]string{}}
	setEnv := func(k, v string) {
		if _, ok := res.Env[k]; !ok {
			res.Order = append(res.Order, k)
		}
		res.Env[k] = v
	}
	setEnv("date", time.Now().UTC().Format(time.RFC3339))
	if rc.credgate != "" {
		// Every build starts from the same state: read from disk.
		how := "dropped from the page cache before the first start (read from disk on demand, as a freshly deployed binary)"
		if err := dropFromPageCache(rc.credgate); err != nil {
			how = "not dropped from the page cache: " + err.Error()
		}
		setEnv("credgate binary", how)
	}
	setEnv("machine", fmt.Sprintf("%d CPUs (%s), %s, Linux %s", ncpu, cpuModel(), memTotal(), readTrim("/proc/sys/kernel/osrelease")))
	setEnv("go", runtime.Version())
	setEnv("load average before", loadAvg())
	setEnv("pinning", pins.String())

	// The origin.
	originAddr, originCA, originProc, err := startOrigin(ctx, self, work, pins, env, rc.originH1)
	if err != nil {
		return err
	}
	defer originProc.stop(3 * time.Second)
	originCACert := filepath.Join(work, "origin-ca.pem")
	if rc.originH1 {
		setEnv("origin", "Go net/http over TLS 1.3, HTTP/1.1 only, 100-byte JSON body, checks the bearer token")
	} else {
		setEnv("origin", "Go net/http over TLS 1.3, offers h2 and http/1.1, 100-byte JSON body, checks the bearer token")
	}

	var ts []target
	skipped := map[string]string{}
	// One redis-server, started when a target needs it, serves every
	// credgate-redis* target (each in its own namespace).
	var redisAddr string
	var redisProc *proc
	var redisErr error
	redisOnce := func() (string, *proc, error) {
		if redisAddr == "" && redisErr == nil {
			var version string
			redisAddr, redisProc, version, redisErr = startRedis(ctx, work, pins, env)
			if redisErr == nil {
				setEnv("redis", version+", started by the bench on "+redisAddr+" without persistence (--save '' --appendonly no)")
			}
		}
		return redisAddr, redisProc, redisErr
	}
	defer func() {
		if redisProc != nil {
			redisProc.stop(3 * time.Second)
		}
	}()
	for _, name := range rc.targets {
		switch name {
		case report.Direct:
			ts = append(ts, target{lg: &loadgen.Target{
				Name: report.Direct, Addr: originAddr, Host: originHost, Port: 443, Path: "/v1/charges",
				Roots:  originCA.Pool(),
				Header: http.Header{"Authorization": {"Bearer " + token}},
			}})
		case report.Goproxy:
			t, err := startBaseline(ctx, rc, self, work, originAddr, originCACert, pins, env)
			if err != nil {
				skipped[name] = err.Error()
				continue
			}
			defer t.proc.stop(3 * time.Second)
			ts = append(ts, t)
			setEnv("goproxy baseline", "github.com/elazarl/goproxy v1.9.3, MITM every CONNECT (ECDSA P-256 CA, leaf cached per host), sets Authorization, verifies upstream TLS, "+map[bool]string{false: "HTTP/1.1", true: "HTTP/2 allowed"}[rc.upstreamH2]+" upstream keep-alive (64 idle per host); serves clients that offer h2 over HTTP/2 (AllowHTTP2; the load generator's HTTP/1.1 clients offer only http/1.1)")
		case report.Floor:
			t, err := startFloor(ctx, self, work, originAddr, originCACert, pins, env)
			if err != nil {
				skipped[name] = err.Error()
				continue
			}
			defer t.proc.stop(3 * time.Second)
			ts = append(ts, t)
			setEnv("floor", "a bound, not a peer (bench/internal/floor): answers CONNECT 200, terminates TLS with an ECDSA P-256 leaf per host issued at start (session tickets on), relays bytes to a verified TLS connection to the origin (http/1.1, client session cache; upstream connections pooled per client connection, 64 idle) and inserts the Authorization line after the first CRLF of every read from the client, one goroutine per direction, no HTTP parsing. It assumes every read is one bodiless request (true of the load generator's GETs), so it is NOT a correct proxy: its figures bound what any intercepting proxy can do here")
		case report.Credgate, report.Credgate2FA, report.CredgateRedis, report.CredgateRedisRL, report.CredgateRL:
			if rc.credgate == "" {
				skipped[name] = "no -credgate binary given"
				continue
			}
			v := credgateVariant{name: name, rateLimit: name == report.CredgateRedisRL || name == report.CredgateRL, twoFactor: name == report.Credgate2FA}
			if name == report.CredgateRedis || name == report.CredgateRedisRL {
				addr, p, err := redisOnce()
				if err != nil {
					skipped[name] = err.Error()
					fmt.Fprintf(os.Stderr, "%s not measured: %v\n", name, err)
					continue
				}
				v.redis, v.redisProc = addr, p
			}
			t, info, err := startCredgate(ctx, rc, work, originAddr, originCA, pins, env, v)
			for _, kv := range info {
				setEnv(kv[0], kv[1])
			}
			if err != nil {
				skipped[name] = err.Error()
				fmt.Fprintf(os.Stderr, "credgate not measured: %v\n", err)
				continue
			}
			defer t.proc.stop(5 * time.Second)
			ts = append(ts, t)
		case report.Squid, report.Mitmproxy:
			start, how := func() (target, error) {
				return startSquid(ctx, work, originAddr, originCACert, pins, env, token)
			}, squidVersion(ctx)+", ssl-bump (bump all, leaves generated per host and cached in memory), `request_header_add Authorization`, no cache, no access log, upstream TLS verified (tls_outgoing_options cafile), persistent connections both ways, 1 worker"
			if name == report.Mitmproxy {
				start, how = func() (target, error) {
					return startMitmproxy(ctx, work, originAddr, originCACert, pins, env)
				}, mitmVersion(ctx)+" (mitmdump -q, flow_detail=0) with an addon setting Authorization in its request hook, upstream TLS verified (ssl_verify_upstream_trusted_ca)"
			}
			t, err := start()
			if err != nil {
				skipped[name] = err.Error()
				fmt.Fprintf(os.Stderr, "%s not measured: %v\n", name, err)
				continue
			}
			defer t.proc.stop(3 * time.Second)
			ts = append(ts, t)
			setEnv(name, how)
		default:
			return fmt.Errorf("-targets: unknown %q (direct, floor, goproxy, credgate, credgate-2fa, credgate-redis, credgate-redis-rl, credgate-rl, squid, mitmproxy)", name)
		}
	}
	// One request through each target before measuring anything: a target
	// that does not deliver the token to the origin is not measured.
	var ok []target
	for _, t := range ts {
		if err := loadgen.Check(ctx, t.lg); err != nil {
			msg := err.Error()
			if t.proc != nil {
				msg += "; last output: " + t.proc.tail(5)
			}
			skipped[t.lg.Name] = msg
			fmt.Fprintf(os.Stderr, "%s not measured: %s\n", t.lg.Name, msg)
			continue
		}
		ok = append(ok, t)
	}
	ts = ok

	progress := func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }

	if rc.scenarios["memory"] {
		res.Titles["memory"] = fmt.Sprintf("Memory — proxy RSS with %d idle client connections (each CONNECT + TLS + one request, then kept open)", rc.idleConns)
		for _, t := range ts {
			if t.proc == nil {
				continue
			}
			progress("memory: %s, %d idle connections", t.lg.Name, rc.idleConns)
			res.Memory = append(res.Memory, measureMemory(ctx, t, rc.idleConns))
		}
		for name, why := range skipped {
			if name != report.Direct {
				res.Memory = append(res.Memory, report.Memory{Target: name, Err: why})
			}
		}
	}
	if rc.scenarios["keepalive"] {
		res.Titles["keep_alive"] = fmt.Sprintf("Keep-alive throughput — %d connections, closed loop, %d × %s measured, each after %s warm-up", rc.conns, rc.rounds, rc.window, rc.warmup)
		res.KeepAlive = closedLoop(ctx, rc, ts, skipped, "keepalive", originProc.pid(), progress)
	}
	if rc.scenarios["keepalive-post"] {
		res.Titles["keep_alive_post"] = fmt.Sprintf("Keep-alive POST — %d connections, each request a POST of %d bytes of JSON (an API call) that the origin reads whole, closed loop, %d × %s measured, each after %s warm-up", rc.conns, len(postJSON), rc.rounds, rc.window, rc.warmup)
		res.KeepAlivePost = closedLoop(ctx, rc, posting(ts), skipped, "keepalive-post", originProc.pid(), progress)
	}
	if rc.scenarios["newconn"] {
		res.Titles["new_conn"] = fmt.Sprintf("New connection per request — %d workers, each request on a fresh TCP (+ CONNECT) + full TLS handshake, %d × %s measured, each after %s warm-up", rc.conns, rc.rounds, rc.window, rc.warmup)
		res.NewConn = closedLoop(ctx, rc, ts, skipped, "newconn", originProc.pid(), progress)
	}
	if rc.scenarios["newconn-resume"] {
		res.Titles["new_conn_resume"] = fmt.Sprintf("New connection per request, client resumes TLS sessions — %d workers, each request on a fresh TCP (+ CONNECT) + TLS handshake resuming the session a previous connection got (one session cache per target and round, as curl, Go and browsers keep), %d × %s measured, each after %s warm-up", rc.conns, rc.rounds, rc.window, rc.warmup)
		resuming := make([]target, len(ts))
		for i, t := range ts {
			resuming[i] = t
			resuming[i].lg = t.lg.WithSessions(64)
		}
		res.NewConnResume = closedLoop(ctx, rc, resuming, skipped, "newconn-resume", originProc.pid(), progress)
	}
	if rc.scenarios["rate"] {
		res.Titles["fixed_rate"] = fmt.Sprintf("Fixed rate — %.0f rps open loop over %d warm keep-alive connections, %d × %s measured, each after %s warm-up", rc.rate, rc.pool, rc.rounds, rc.rateWindow, rc.warmup)
		res.FixedRate = fixedRate(ctx, rc, ts, skipped, originProc.pid(), progress)
	}
	if rc.scenarios["h2-streams"] {
		res.Titles["h2_streams"] = fmt.Sprintf("One HTTP/2 client — %d concurrent streams on one connection, closed loop, %d × %s measured, each after %s warm-up (-h1 rows: HTTP/1.1, %d keep-alive connections)", rc.scale.h2Streams, rc.rounds, rc.window, rc.warmup, rc.scale.h2Streams)
		res.H2Streams = h2Streams(ctx, rc, ts, skipped, originProc.pid(), progress)
	}
	if rc.scenarios["bigbody"] {
		res.Titles["bigbody"] = fmt.Sprintf("Large bodies — %s upload and %s download, one at a time, %d per target and direction", report.Size(rc.scale.bigBytes), report.Size(rc.scale.bigBytes), rc.scale.bigRounds)
		res.BigBody = bigBody(ctx, rc, ts, skipped, originProc.pid(), progress)
	}
	if rc.scenarios["idle10k"] {
		res.Titles["idle10k"] = fmt.Sprintf("Idle keep-alive clients — %s held open through the proxy (each CONNECT + TLS + one request), then %s of them active while the rest stay idle, against %d clients alone; %s measured after %s warm-up", report.Count(rc.scale.idleClients), report.Count(min(rc.scale.idleActive, rc.scale.idleClients)), rc.scale.idleBase, rc.scale.idleWindow, rc.warmup)
		res.Idle = idle10k(ctx, rc, ts, skipped, originProc.pid(), progress)
	}
	for i := range res.Memory {
		for _, t := range ts {
			if t.lg.Name == res.Memory[i].Target && t.proc != nil {
				res.Memory[i].After, res.Memory[i].Peak, _ = memStat(t.proc.pid())
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	setEnv("load average after", loadAvg()+" (includes the benchmark itself)")

	res.Write(os.Stdout)
	if rc.mdOut != "" {
		f, err := os.Create(rc.mdOut)
		if err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		res.Write(f)
		if err := f.Close(); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	if rc.jsonOut != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return fmt.Errorf("encode results: %w", err)
		}
		if err := os.WriteFile(rc.jsonOut, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
	}
	return nil
}

func measureMemory(ctx context.Context, t target, n int) report.Memory {
	m := report.Memory{Target: t.lg.Name, Conns: n}
	var err error
	if m.Idle, err = settledRSS(ctx, t.proc.pid()); err != nil {
		m.Err = err.Error()
		return m
	}
	conns, err := loadgen.OpenIdle(ctx, t.lg, n, 32)
	if err != nil {
		m.Err = err.Error()
		return m
	}
	defer loadgen.CloseAll(conns)
	if m.Loaded, err = settledRSS(ctx, t.proc.pid()); err != nil {
		m.Err = err.Error()
		return m
	}
	m.LoadedFile, _ = fileRSS(t.proc.pid())
	return m
}

// cpuWindow samples CPU time at the start and the end of a measured
// window: the proxy's, and the whole machine's minus what the benchmark's
// own processes used (other work on the machine, which skews a run).
type cpuWindow struct {
	start, end chan cpuSample
	span       time.Duration
	// client is the benchmark process's own CPU time in the window (the
	// load generator), set by result.
	client time.Duration
}

type cpuSample struct {
	proxy, helper, client, ours, busy time.Duration
	err                               error
}

func sampleCPU(proxy *proc, helpers []*proc, originPID int, warmup, window time.Duration) *cpuWindow {
	w := &cpuWindow{start: make(chan cpuSample, 1), end: make(chan cpuSample, 1), span: window}
	time.AfterFunc(warmup, func() { w.start <- takeSample(proxy, helpers, originPID) })
	time.AfterFunc(warmup+window, func() { w.end <- takeSample(proxy, helpers, originPID) })
	return w
}

// takeSample reads the CPU time used so far by the proxy, its helpers,
// the benchmark's own processes and the whole machine.
func takeSample(proxy *proc, helpers []*proc, originPID int) cpuSample {
	var s cpuSample
	var errs []error
	add := func(pid int) time.Duration {
		d, err := cpuTime(pid)
		errs = append(errs, err)
		return d
	}
	if proxy != nil {
		s.proxy = add(proxy.pid())
	}
	for _, h := range helpers {
		s.helper += add(h.pid())
	}
	s.client = add(os.Getpid())
	s.ours = s.proxy + s.helper + s.client + add(originPID)
	var err error
	s.busy, err = machineBusy()
	s.err = errors.Join(append(errs, err)...)
	return s
}

// cpuMeter measures, from its start to a call of result, the same
// figures as a cpuWindow, for spans whose length is not known in advance
// (a transfer, opening connections).
type cpuMeter struct {
	proxy     *proc
	originPID int
	at        time.Time
	start     cpuSample
}

func startCPUMeter(proxy *proc, originPID int) *cpuMeter {
	return &cpuMeter{proxy: proxy, originPID: originPID, at: time.Now(), start: takeSample(proxy, nil, originPID)}
}

// result returns the proxy's CPU time since the start (ok false without
// a proxy) and the share of the machine's CPU other processes used.
func (m *cpuMeter) result() (proxy time.Duration, ok bool, foreign float64) {
	w := &cpuWindow{start: make(chan cpuSample, 1), end: make(chan cpuSample, 1), span: time.Since(m.at)}
	w.start <- m.start
	w.end <- takeSample(m.proxy, nil, m.originPID)
	proxy, _, ok, foreign = w.result()
	return proxy, ok, foreign
}

// result waits for both samples and returns the proxy's and its helpers'
// CPU time in the window (ok false without a proxy) and the share of the
// machine's CPU that other processes used.
func (w *cpuWindow) result() (proxy, helper time.Duration, ok bool, foreign float64) {
	if w == nil {
		return 0, 0, false, 0
	}
	a, b := <-w.start, <-w.end
	if a.err != nil || b.err != nil {
		return 0, 0, false, 0
	}
	w.client = b.client - a.client
	other := (b.busy - a.busy) - (b.ours - a.ours)
	foreign = max(0, float64(other)/float64(w.span*time.Duration(runtime.NumCPU())))
	return b.proxy - a.proxy, b.helper - a.helper, b.proxy > 0, foreign
}

// machineBusy reads the non-idle CPU time of all CPUs from /proc/stat.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("parse /proc/stat")
	}
	var busy int64
	// user nice system idle iowait irq softirq steal: all but idle and
	// iowait are busy.
	for i, v := range f[1:9] {
		if i == 3 || i == 4 {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/stat: %w", err)
		}
		busy += n
	}
	return time.Duration(busy) * clockTick, nil
}

// rounds runs one scenario rc.rounds times over every target, reversing the
// target order every other round so that no target always follows the same
// one, and merges each target's rounds. measure runs one target once and
// returns its result and the CPU sampler it started (nil for none).
func rounds(ctx context.Context, rc runConfig, ts []target, skipped map[string]string, measure func(round int, t target) (loadgen.Result, *cpuWindow, error)) *report.Run {
	run := &report.Run{CPUPerRequest: map[string]time.Duration{}, HelperCPUPerRequest: map[string]time.Duration{}, ClientCPUPerRequest: map[string]time.Duration{}, Foreign: map[string]float64{}, Skipped: map[string]string{}}
	for k, v := range skipped {
		run.Skipped[k] = v
	}
	per := map[string][]loadgen.Result{}
	cpu := map[string]time.Duration{}
	cpuReqs := map[string]int{}
	helperCPU := map[string]time.Duration{}
	clientCPU := map[string]time.Duration{}
	clientReqs := map[string]int{}
	foreign := map[string][]float64{}
	for round := range rc.rounds {
		order := slices.Clone(ts)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, t := range order {
			if ctx.Err() != nil {
				break
			}
			name := t.lg.Name
			if _, bad := run.Skipped[name]; bad {
				continue
			}
			// Start every window from a collected heap so one target's
			// garbage is not collected during the next one's window.
			runtime.GC()
			r, cw, err := measure(round, t)
			if err != nil {
				run.Skipped[name] = err.Error()
				continue
			}
			per[name] = append(per[name], r)
			d, h, ok, f := cw.result()
			if cw != nil && cw.client > 0 && r.Requests > 0 {
				clientCPU[name] += cw.client
				clientReqs[name] += r.Requests
			}
			if ok && r.Requests > 0 {
				cpu[name] += d
				helperCPU[name] += h
				cpuReqs[name] += r.Requests
			}
			foreign[name] = append(foreign[name], f)
		}
	}
	for _, t := range ts {
		name := t.lg.Name
		if _, bad := run.Skipped[name]; bad || len(per[name]) == 0 {
			continue
		}
		run.Results = append(run.Results, loadgen.Merge(per[name]...))
		run.Foreign[name] = slices.Max(foreign[name])
		if clientReqs[name] > 0 {
			run.ClientCPUPerRequest[name] = clientCPU[name] / time.Duration(clientReqs[name])
		}
		if cpuReqs[name] > 0 {
			run.CPUPerRequest[name] = cpu[name] / time.Duration(cpuReqs[name])
			if len(t.helpers) > 0 {
				run.HelperCPUPerRequest[name] = helperCPU[name] / time.Duration(cpuReqs[name])
			}
		}
	}
	return run
}

// closedLoop runs the closed-loop scenario named scenario (keepalive,
// newconn or newconn-resume: a new connection per request).
func closedLoop(ctx context.Context, rc runConfig, ts []target, skipped map[string]string, scenario string, originPID int, progress func(string, ...any)) *report.Run {
	newConn := strings.HasPrefix(scenario, "newconn")
	kind := map[string]string{"keepalive": "keep-alive", "keepalive-post": "keep-alive POST", "newconn": "new connection per request", "newconn-resume": "new connection per request, resuming TLS sessions"}[scenario]
	return rounds(ctx, rc, ts, skipped, func(round int, t target) (loadgen.Result, *cpuWindow, error) {
		progress("%s: %s, %d connections, %s (round %d/%d)", kind, t.lg.Name, rc.conns, rc.warmup+rc.window, round+1, rc.rounds)
		cw := sampleCPU(t.proc, t.helpers, originPID, rc.warmup, rc.window)
		var perf *exec.Cmd
		if rc.perf != "" && scenario == rc.perfScenario && round == 0 && t.lg.Name == rc.perfTarget && t.proc != nil {
			perf = startPerf(rc, t.proc.pid())
		}
		var sc *syscallCount
		if rc.syscalls && t.proc != nil {
			sc = countSyscalls(t.proc.pid(), rc.warmup, rc.window)
		}
		r := loadgen.ClosedLoop(ctx, t.lg, rc.conns, rc.warmup, rc.window, newConn)
		if sc != nil {
			progress("syscalls: %s, %s (round %d): %s", kind, t.lg.Name, round+1, sc.perRequest(r.Requests))
		}
		if perf != nil {
			if err := perf.Wait(); err != nil {
				progress("perf record: %v", err)
			}
		}
		return r, cw, nil
	})
}

// postJSON is keepalive-post's request body: 1,024 bytes of JSON, the
// shape of an LLM chat call.
var postJSON = func() []byte {
	head, tail := `{"model":"bench","messages":[{"role":"user","content":"`, `"}],"temperature":0.2}`
	return []byte(head + strings.Repeat("x", 1024-len(head)-len(tail)) + tail)
}()

// posting returns copies of ts whose requests POST postJSON to the
// origin's upload path, which checks that the whole body arrived (and,
// as on every path, the credential).
func posting(ts []target) []target {
	out := make([]target, len(ts))
	for i, t := range ts {
		out[i] = t
		lg := *t.lg
		lg.Path, lg.Body = origin.UploadPath, postJSON
		lg.Header = t.lg.Header.Clone()
		if lg.Header == nil {
			lg.Header = http.Header{}
		}
		lg.Header.Set("Content-Type", "application/json")
		out[i].lg = &lg
	}
	return out
}

// startPerf records the process's stacks for the measured window.
func startPerf(rc runConfig, pid int) *exec.Cmd {
	cmd := exec.Command("perf", "record", "-F", "999", "-g", "-p", fmt.Sprint(pid), "-o", rc.perf, "--", "sleep", fmt.Sprint((rc.warmup/2 + rc.window).Seconds()))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "perf record: %v\n", err)
		return nil
	}
	return cmd
}

func fixedRate(ctx context.Context, rc runConfig, ts []target, skipped map[string]string, originPID int, progress func(string, ...any)) *report.Run {
	return rounds(ctx, rc, ts, skipped, func(round int, t target) (loadgen.Result, *cpuWindow, error) {
		progress("fixed rate: %s, %.0f rps, %s (round %d/%d)", t.lg.Name, rc.rate, rc.warmup+rc.rateWindow, round+1, rc.rounds)
		var cw *cpuWindow
		var sc *syscallCount
		r, err := loadgen.OpenLoop(ctx, t.lg, rc.rate, rc.pool, rc.warmup, rc.rateWindow, func() {
			cw = sampleCPU(t.proc, t.helpers, originPID, rc.warmup, rc.rateWindow)
			if rc.syscalls && t.proc != nil {
				sc = countSyscalls(t.proc.pid(), rc.warmup, rc.rateWindow)
			}
		})
		if sc != nil {
			progress("syscalls: fixed rate, %s (round %d): %s", t.lg.Name, round+1, sc.perRequest(r.Requests))
		}
		return r, cw, err
	})
}

func startBaseline(ctx context.Context, rc runConfig, self, work, originAddr, originCACert string, pins pinning, env []string) (target, error) {
	ca, err := testpki.NewAuthority("credgate-bench goproxy CA")
	if err != nil {
		return target{}, err
	}
	caCert, caKey, err := ca.WriteFiles(work, "goproxy-ca")
	if err != nil {
		return target{}, err
	}
	addr, err := freePort()
	if err != nil {
		return target{}, err
	}
	args := []string{self, "baseline", "-listen", addr, "-ca-cert", caCert, "-ca-key", caKey,
		"-upstream-ca", originCACert, "-resolve", originHost + ":443=" + originAddr, "-client-h2"}
	if rc.upstreamH2 {
		args = append(args, "-upstream-h2")
	}
	p, err := startProc(report.Goproxy, pins.proxy, work, filepath.Join(work, "goproxy.log"), env, args...)
	if err != nil {
		return target{}, err
	}
	if err := p.waitTCP(ctx, addr, 15*time.Second); err != nil {
		p.stop(time.Second)
		return target{}, err
	}
	return target{proc: p, lg: &loadgen.Target{Name: report.Goproxy, Proxy: addr, Host: originHost, Port: 443, Path: "/v1/charges", Roots: ca.Pool()}}, nil
}

// startFloor starts this binary's floor sub-command with a CA of its own.
func startFloor(ctx context.Context, self, work, originAddr, originCACert string, pins pinning, env []string) (target, error) {
	ca, err := testpki.NewAuthority("credgate-bench floor CA")
	if err != nil {
		return target{}, err
	}
	caCert, caKey, err := ca.WriteFiles(work, "floor-ca")
	if err != nil {
		return target{}, err
	}
	addr, err := freePort()
	if err != nil {
		return target{}, err
	}
	p, err := startProc(report.Floor, pins.proxy, work, filepath.Join(work, "floor.log"), env, self, "floor", "-listen", addr, "-ca-cert", caCert, "-ca-key", caKey,
		"-upstream-ca", originCACert, "-resolve", originHost+":443="+originAddr)
	if err != nil {
		return target{}, err
	}
	if err := p.waitTCP(ctx, addr, 15*time.Second); err != nil {
		p.stop(time.Second)
		return target{}, err
	}
	return target{proc: p, lg: &loadgen.Target{Name: report.Floor, Proxy: addr, Host: originHost, Port: 443, Path: "/v1/charges", Roots: ca.Pool()}}, nil
}

const credgatePolicy = `# credgate-bench: one workload (this machine), one destination, one
# injecting rule. Written by bench/cmd/credgate-bench.
workloads:
  bench:
    cidrs: [127.0.0.1/32]
    require: [source]
%s
destinations:
  origin:
    hosts: [%s]
    ports: [443]
    allow_private: true
credentials:
  bench-token:
    provider: static
    env: %s
rules:
  - name: bench-inject
    from: bench
    to: origin
    inject:
      credential: bench-token
      as: bearer
%s
default: deny
`

// benchRateLimit is the rate limit of the *-rl targets, on the workload
// and on the rule: high enough never to refuse, so every request pays
// for the check (one Redis script call with two keys, or the in-process
// limiter) and nothing else changes.
const benchRateLimit = "rate_limit: {rps: 1000000, burst: 1000000}"

const credgateConfig = `# credgate-bench configuration. Written by bench/cmd/credgate-bench.
listen: "%s"
admin_listen: "%s"
policy: policy.yaml
ca:
  cert: %s
  key: %s
upstream:
  ca_bundle: origin-ca.pem
resolve:
  "%s:443": "%s"
%saudit:
  output: %s
log:
  level: info
# Every client of the bench comes from 127.0.0.1, and idle10k opens
# 10,000 of them: the connection caps are set far above that, so their
# check is paid on every accept and refuses nothing.
limits:
  max_connections: 1000000
  max_connections_per_source: 1000000
%s`

// credgateRedisConfig is the cache block of the credgate-redis* targets:
// the shared cache (and with it the rate limiter) in the bench's
// redis-server. The requests are L1 hits: Redis is read once per
// credential, and the rate limiter's script runs per request.
const credgateRedisConfig = `cache:
  redis:
    addrs: [%s]
    namespace: %s
    encryption_keys:
      - {id: bench, file: redis.key}
`

// credgateVariant is one credgate target: in memory (credgate), with the
// shared cache in Redis (credgate-redis), and either with a rate limit
// that never triggers (credgate-redis-rl, credgate-rl).
type credgateVariant struct {
	name  string
	redis string // redis-server address; "" for in memory
	// redisMaster, if set, is the Sentinel master's name
	// (cache.redis.master_name) and sentinels the Sentinels' addresses
	// (cache.redis.addrs, in place of redis).
	redisMaster string
	sentinels   []string
	redisProc   *proc
	rateLimit   bool
	// twoFactor (credgate-2fa) selects the workload by SPIFFE ID with
	// require: [mtls, jwt] over the TLS listener.
	twoFactor bool
	// editPolicy, if set, changes the policy before it is written;
	// cacheExtra is added to the cache block (two-space indented keys);
	// caReload, if set, is ca.reload_interval (the soak's fault mode).
	editPolicy func(string) string
	cacheExtra string
	caReload   string
	// resolve adds entries to the resolve map (the soak's S3 leg and
	// origin proxy); upstreamExtra is added to the upstream block
	// (two-space indented keys).
	resolve       map[string]string
	upstreamExtra string
}

// describe says how the variant differs from the credgate target.
func (v credgateVariant) describe() string {
	var parts []string
	if v.redis != "" {
		parts = append(parts, "cache.redis on the bench's redis-server (credentials are L1 hits; the shared cache and the rate limiter use Redis)")
	}
	if v.rateLimit {
		where := "in process"
		if v.redis != "" {
			where = "in Redis: one EVALSHA per request"
		}
		parts = append(parts, "`"+benchRateLimit+"` on the workload and the rule, checked "+where+", never refusing")
	}
	return "as credgate, plus " + strings.Join(parts, "; ")
}

// startCredgate writes a CA, a policy and a config and starts the real
// credgate binary. info carries set-up details for the report. The
// credgate-2fa variant's workload must present a client X.509-SVID on the
// TLS listener and a JWT-SVID (twofactor.go).
func startCredgate(ctx context.Context, rc runConfig, work, originAddr string, originCA *testpki.Authority, pins pinning, env []string, v credgateVariant) (target, [][2]string, error) {
	var info [][2]string
	dir := filepath.Join(work, v.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return target{}, info, fmt.Errorf("credgate directory: %w", err)
	}
	if out, err := exec.CommandContext(ctx, rc.credgate, "version").CombinedOutput(); err == nil {
		info = append(info, [2]string{"credgate", strings.TrimSpace(firstLine(string(out)))})
	}
	if v.name != report.Credgate && !v.twoFactor {
		info = append(info, [2]string{v.name + " set-up", v.describe()})
	}
	caCert, caKey, how, err := credgateCA(ctx, rc.credgate, dir)
	if err != nil {
		return target{}, info, err
	}
	if err := os.WriteFile(filepath.Join(dir, "origin-ca.pem"), originCA.CertPEM, 0o644); err != nil {
		return target{}, info, fmt.Errorf("write origin CA: %w", err)
	}
	proxyAddr, err := freePort()
	if err != nil {
		return target{}, info, err
	}
	adminAddr, err := freePort()
	if err != nil {
		return target{}, info, err
	}
	audit := "audit.jsonl"
	auditDesc := "on, JSON lines to a file (audit.output: <workdir>/audit.jsonl)"
	if rc.audit == "discard" {
		audit, auditDesc = "/dev/null", "on, written to /dev/null"
	}
	info = append(info, [2]string{report.Credgate + " set-up", fmt.Sprintf("real binary, `credgate serve -c credgate.yaml`; static bearer rule from a workload identified by source CIDR; upstream TLS verified with ca_bundle; resolve map; allow_private; log level info; limits.max_connections and max_connections_per_source 1,000,000 (every bench client is 127.0.0.1); interception CA %s; audit %s", how, auditDesc)})
	limit := ""
	if v.rateLimit {
		limit = "    " + benchRateLimit
	}
	policy := fmt.Sprintf(credgatePolicy, limit, originHost, tokenEnv, limit)
	cache := ""
	if v.redis != "" {
		key := make([]byte, 32)
		_, _ = rand.Read(key) // crypto/rand.Read never fails on Linux
		if err := os.WriteFile(filepath.Join(dir, "redis.key"), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
			return target{}, info, fmt.Errorf("write redis key: %w", err)
		}
		addrs := []string{v.redis}
		if v.redisMaster != "" {
			addrs = v.sentinels
		}
		cache = fmt.Sprintf(credgateRedisConfig, `"`+strings.Join(addrs, `", "`)+`"`, "bench-"+v.name)
		if v.redisMaster != "" {
			cache = strings.Replace(cache, "    namespace:", "    master_name: "+v.redisMaster+"\n    namespace:", 1)
		}
	}
	if v.cacheExtra != "" {
		if cache == "" {
			cache = "cache:\n"
		}
		cache += v.cacheExtra
	}
	if v.editPolicy != nil {
		policy = v.editPolicy(policy)
	}
	caKeyLine := caKey
	if v.caReload != "" {
		caKeyLine += "\n  reload_interval: " + v.caReload
	}
	resolve := ""
	for _, k := range slices.Sorted(maps.Keys(v.resolve)) {
		resolve += fmt.Sprintf("  %q: %q\n", k, v.resolve[k])
	}
	cfg := fmt.Sprintf(credgateConfig, proxyAddr, adminAddr, caCert, caKeyLine, originHost, originAddr, resolve, audit, cache)
	if v.upstreamExtra != "" {
		cfg = strings.Replace(cfg, "  ca_bundle: origin-ca.pem\n", "  ca_bundle: origin-ca.pem\n"+v.upstreamExtra, 1)
	}
	var tf *twoFactorSetup
	if v.twoFactor {
		if tf, err = newTwoFactorSetup(dir); err != nil {
			return target{}, info, err
		}
		if proxyAddr, err = freePort(); err != nil {
			return target{}, info, err
		}
		policy, cfg = tf.policy(policy), cfg+tf.config(proxyAddr)
		info = append(info, [2]string{report.Credgate2FA + " set-up", tf.describe()})
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policy), 0o644); err != nil {
		return target{}, info, fmt.Errorf("write policy: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "credgate.yaml"), []byte(cfg), 0o644); err != nil {
		return target{}, info, fmt.Errorf("write config: %w", err)
	}
	p, err := startProc(v.name, pins.proxy, dir, filepath.Join(dir, "credgate.log"), env, rc.credgate, "serve", "-c", "credgate.yaml")
	if err != nil {
		return target{}, info, err
	}
	if err := p.waitTCP(ctx, proxyAddr, 30*time.Second); err != nil {
		p.stop(time.Second)
		return target{}, info, err
	}
	if err := waitReady(ctx, "http://"+adminAddr+"/readyz", 10*time.Second); err != nil {
		fmt.Fprintf(os.Stderr, "credgate: %v (measuring anyway)\n", err)
	}
	pem, err := os.ReadFile(filepath.Join(dir, caCert))
	if err != nil {
		p.stop(time.Second)
		return target{}, info, fmt.Errorf("read credgate CA: %w", err)
	}
	roots, err := cabundle.AddRoots(x509.NewCertPool(), pem)
	if err != nil {
		p.stop(time.Second)
		return target{}, info, fmt.Errorf("credgate CA %s: %w", caCert, err)
	}
	t := target{proc: p, lg: &loadgen.Target{Name: v.name, Proxy: proxyAddr, Host: originHost, Port: 443, Path: "/v1/charges", Roots: roots}, admin: adminAddr,
		dir: dir, caCert: caCert, caKey: caKey}
	if v.redisProc != nil {
		t.helpers = []*proc{v.redisProc}
	}
	if tf != nil {
		t.lg.ProxyTLS, t.lg.ProxyHeader = tf.proxyTLS(), tf.proxyHeader()
	}
	return t, info, nil
}

// startOrigin makes a throw-away CA for the origin (its certificate in
// work/origin-ca.pem) and starts this binary's origin sub-command on a
// free 127.0.0.1 port, with extra arguments. The bench and the soak share
// it.
func startOrigin(ctx context.Context, self, work string, pins pinning, env []string, http1 bool, extra ...string) (addr string, ca *testpki.Authority, p *proc, err error) {
	ca, err = testpki.NewAuthority("credgate-bench origin CA")
	if err != nil {
		return "", nil, nil, err
	}
	caCert, caKey, err := ca.WriteFiles(work, "origin-ca")
	if err != nil {
		return "", nil, nil, err
	}
	addr, err = freePort()
	if err != nil {
		return "", nil, nil, err
	}
	args := []string{self, "origin", "-listen", addr, "-ca-cert", caCert, "-ca-key", caKey}
	if http1 {
		args = append(args, "-http1")
	}
	args = append(args, extra...)
	p, err = startProc("origin", pins.origin, work, filepath.Join(work, "origin.log"), env, args...)
	if err != nil {
		return "", nil, nil, err
	}
	if err := p.waitTCP(ctx, addr, 15*time.Second); err != nil {
		p.stop(time.Second)
		return "", nil, nil, err
	}
	return addr, ca, p, nil
}

// startRedis starts redis-server on a free 127.0.0.1 port without
// persistence, pinned with the proxy (its work is the proxy's).
func startRedis(ctx context.Context, work string, pins pinning, env []string) (addr string, p *proc, version string, err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, "", errors.New("redis-server not found (apt-get install -y redis-server)")
	}
	if out, err := exec.CommandContext(ctx, bin, "--version").Output(); err == nil {
		version = strings.TrimSpace(firstLine(string(out)))
	}
	addr, err = freePort()
	if err != nil {
		return "", nil, "", err
	}
	_, port, _ := strings.Cut(addr, ":")
	dir := filepath.Join(work, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, "", fmt.Errorf("redis directory: %w", err)
	}
	p, err = startProc("redis-server", pins.proxy, dir, filepath.Join(dir, "redis.log"), env, bin,
		"--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", dir)
	if err != nil {
		return "", nil, "", err
	}
	if err := p.waitTCP(ctx, addr, 15*time.Second); err != nil {
		p.stop(time.Second)
		return "", nil, "", err
	}
	return addr, p, version, nil
}

// credgateCA makes the interception CA with `credgate ca init` and falls
// back to writing one itself. Paths are relative to dir.
func credgateCA(ctx context.Context, bin, dir string) (cert, key, how string, err error) {
	out, err := exec.CommandContext(ctx, bin, "ca", "init", "--out", filepath.Join(dir, "ca")).CombinedOutput()
	if err == nil {
		entries, _ := os.ReadDir(filepath.Join(dir, "ca"))
		for _, e := range entries {
			n := e.Name()
			switch {
			case !strings.HasSuffix(n, ".pem"):
			case strings.Contains(n, "key"):
				key = filepath.Join("ca", n)
			default:
				cert = filepath.Join("ca", n)
			}
		}
		if cert != "" && key != "" {
			return cert, key, "from `credgate ca init`", nil
		}
	}
	why := strings.TrimSpace(firstLine(string(out)))
	if err != nil {
		why = fmt.Sprintf("%v: %s", err, why)
	}
	ca, gerr := testpki.NewAuthority("credgate-bench gateway CA")
	if gerr != nil {
		return "", "", "", gerr
	}
	if _, _, gerr := ca.WriteFiles(dir, "ca"); gerr != nil {
		return "", "", "", gerr
	}
	return "ca.pem", "ca-key.pem", "generated by the bench (credgate ca init: " + why + ")", nil
}

func waitReady(ctx context.Context, url string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("readiness: %w", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %w", url, within, errors.Join(last, ctx.Err()))
		case <-tick.C:
		}
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			var kb int64
			_, _ = fmt.Sscan(f[1], &kb)
			return fmt.Sprintf("%.0f GiB RAM", float64(kb)/(1<<20))
		}
	}
	return "?"
}

// loadAvg is the 1, 5 and 15 minute load averages: other work on the
// machine during a run shows here.
func loadAvg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
