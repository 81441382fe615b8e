//go:build linux

package main

// The soak (issue 21, `make soak`): the real credgate binary, set up as
// the bench's credgate target (startOrigin, startCredgate: identity by
// source CIDR, policy, the static credential through the cache, bearer
// injection, audit to a file), driven for a long time at a fraction of
// the keep-alive peak it first measures, with a mix of HTTP/1.1 and
// HTTP/2 keep-alive requests, uploads and WebSocket echo sessions. The
// origin answers 401 to anything without the injected credential, so a
// request forwarded without it is an error here. Every -sample the
// gateway's RSS, goroutines and open fds are read; at the end a table and
// the verdicts are printed, and a failed verdict is a non-zero exit.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/websocket"

	"github.com/credgate/credgate/bench/internal/loadgen"
	"github.com/credgate/credgate/bench/internal/origin"
	"github.com/credgate/credgate/bench/internal/report"
)

// soakConfig holds the soak flags.
type soakConfig struct {
	// credgate is the binary under test.
	credgate string
	// duration is how long the mix runs.
	duration time.Duration
	// probe is the closed-loop keep-alive window that measures the peak.
	probe time.Duration
	// fraction of the peak the mix is paced at.
	fraction float64
	// sample is the interval between samples of the gateway.
	sample time.Duration
	// uploadRate (per second) and uploadSize (bytes) of the uploads.
	uploadRate float64
	uploadSize int
	// wsRate is WebSocket sessions per second; each sends wsMessages.
	wsRate     float64
	wsMessages int
	// tolerance is how far the last window's RSS and goroutines may lie
	// above the first's (0.10: 10%).
	tolerance float64
	pin       string
	keep      bool
	// faults injects faults during the mix (faults.go).
	faults bool
	// faultRate is the rate (per second) of the vault and reset requests
	// of fault mode.
	faultRate float64
	// faultOnly, if set, keeps the faults whose name contains one of its
	// comma-separated words.
	faultOnly string
	// sentinel runs Redis as a master, a replica and three Sentinels in
	// fault mode, and fails the master over as faults.
	sentinel bool
}

func cmdSoak(args []string) error {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	var sc soakConfig
	fs.StringVar(&sc.credgate, "credgate", "", "path to the credgate binary (required)")
	fs.DurationVar(&sc.duration, "duration", 10*time.Minute, "how long the mix runs")
	fs.DurationVar(&sc.probe, "probe", 5*time.Second, "closed-loop keep-alive window that measures the peak (after 1s warm-up)")
	fs.Float64Var(&sc.fraction, "fraction", 0.8, "fraction of the measured peak to run at")
	fs.DurationVar(&sc.sample, "sample", 5*time.Second, "interval between samples of RSS, goroutines and fds")
	fs.Float64Var(&sc.uploadRate, "upload-rate", 4, "uploads per second (half HTTP/1.1, half HTTP/2)")
	fs.IntVar(&sc.uploadSize, "upload-size", 256<<10, "bytes per upload")
	fs.Float64Var(&sc.wsRate, "ws-rate", 2, "WebSocket sessions opened per second")
	fs.IntVar(&sc.wsMessages, "ws-messages", 10, "echoed messages per WebSocket session")
	fs.Float64Var(&sc.tolerance, "tolerance", 0.10, "allowed growth of RSS and goroutines, last window over first")
	fs.StringVar(&sc.pin, "pin", "auto", "CPU pinning, as for run")
	fs.BoolVar(&sc.keep, "keep", false, "keep the work directory (configs, logs, audit file)")
	fs.BoolVar(&sc.faults, "faults", false, "inject faults during the mix: Redis and Vault (behind Toxiproxy) down, slow, resetting, sealed; an OAuth2 token endpoint answering 503 and slow; STS throttling in front of a real MinIO (when built: scripts/minio-tools.sh); policy broken and fixed; SIGHUP storms; CA rotated; upstream resets mid-body; the origin behind Toxiproxy slow, throttled, cut mid-body, resetting and half-open")
	fs.BoolVar(&sc.sentinel, "sentinel", false, "with -faults: Redis as a master, a replica and three Sentinels, quorum 2 (cache.redis names the Sentinels); the Redis faults are failovers (SENTINEL FAILOVER, the master killed, one Sentinel killed then the master) instead of Toxiproxy's")
	fs.StringVar(&sc.faultOnly, "fault-only", "", "with -faults: inject only the faults whose name contains one of these comma-separated words (e.g. oauth2,vault)")
	fs.Float64Var(&sc.faultRate, "fault-rate", 20, "with -faults: requests per second to the Vault rule, to the OAuth2 rule, to the S3 rule and to the resetting path")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if sc.credgate == "" {
		return errors.New("-credgate: the binary under test is required")
	}
	if sc.duration < 2*sc.sample {
		return fmt.Errorf("-duration %s: want at least two -sample intervals (%s)", sc.duration, sc.sample)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := soak(ctx, sc)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("a verdict failed")
	}
	return nil
}

// Workers per kind of the mix. Upload and WebSocket workers open
// connections of their own, which the fd verdict allows for.
const (
	h1Workers     = 32
	h2Workers     = 32
	uploadWorkers = 4
	wsWorkers     = 4
	// fault mode: requests to the Vault and OAuth2 rules, and to the
	// resetting path.
	vaultWorkers  = 4
	oauth2Workers = 4
	s3Workers     = 4
	resetWorkers  = 2
	// toxWorkers (originfaults.go) request through the origin proxy.
)

// soakKinds are the request kinds of the mix, in table order. vault,
// oauth2, s3, reset and tox (downloads through the origin proxy) run in
// fault mode only (s3 when MinIO is there).
var soakKinds = []string{"h1", "h2", "upload", "ws", "vault", "oauth2", "s3", "reset", "tox"}

// Indexes of soakKinds.
const (
	kindH1 = iota
	kindH2
	kindUpload
	kindWS
	kindVault
	kindOAuth2
	kindS3
	kindReset
	kindTox
	numKinds
)

// sample is one reading of the gateway and what the mix did since the
// previous one.
type sample struct {
	at         time.Duration // since the mix started
	reqs       map[string]int64
	errs       map[string]int64 // by kind of error
	expected   map[string]int64 // fault mode: errors the faults make expected
	behind     int64            // requests not sent: every worker of their kind busy
	rss        int64
	goroutines int64
	fds        int64
	metricsErr error
	// redisUp is the lowest credgate_redis_up of the reads (-1 without
	// cache.redis); redisErrors is credgate_redis_errors_total (summed
	// over its labels) at the last read.
	redisUp     int64
	redisErrors int64
}

// soakStats counts what the workers did; the sampler takes and resets it.
type soakStats struct {
	reqs   [numKinds]atomic.Int64 // per soakKinds
	behind atomic.Int64
	mu     sync.Mutex
	errs   map[string]int64
	first  map[string]string // first error of each kind, for diagnosis
	// expected counts, by kind of error, the errors fault mode expects
	// (fe.expected): the gateway failing closed, a reset reaching the
	// client. fe is nil outside fault mode.
	expected map[string]int64
	fe       *faultEnv
	// unauthorized counts requests the origin refused 401: forwarded
	// without their credential.
	unauthorized atomic.Int64
}

func (s *soakStats) ok(kind int) { s.reqs[kind].Add(1) }

func (s *soakStats) fail(kind int, err error) {
	class := errorKind(err)
	s.failAs(kind, class, err, s.fe != nil && s.fe.expected(soakKinds[kind], class))
}

// failAs counts err of kind as class, among the errors fault mode
// expects when expected.
func (s *soakStats) failAs(kind int, class string, err error, expected bool) {
	if strings.HasPrefix(class, "status 401") {
		s.unauthorized.Add(1)
	}
	k := soakKinds[kind] + " " + class
	s.mu.Lock()
	defer s.mu.Unlock()
	if expected {
		s.expected[k]++
		return
	}
	s.errs[k]++
	if _, ok := s.first[k]; !ok {
		s.first[k] = err.Error()
	}
}

func (s *soakStats) take() (reqs map[string]int64, errs, expected map[string]int64, behind int64) {
	reqs = map[string]int64{}
	for i, k := range soakKinds {
		reqs[k] = s.reqs[i].Swap(0)
	}
	s.mu.Lock()
	errs, s.errs = s.errs, map[string]int64{}
	expected, s.expected = s.expected, map[string]int64{}
	s.mu.Unlock()
	return reqs, errs, expected, s.behind.Swap(0)
}

// errorKind names an error for the table: the status for a refused or
// failed response, otherwise the kind of transport failure.
func errorKind(err error) string {
	var se *loadgen.StatusError
	if errors.As(err, &se) {
		return "status " + strconv.Itoa(se.Code)
	}
	var ne net.Error
	s := err.Error()
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(s, "connection reset"):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), strings.Contains(s, "EOF"):
		return "eof"
	case strings.Contains(s, "refused"):
		return "refused"
	case strings.Contains(s, "tls:"), strings.Contains(s, "x509:"):
		return "tls"
	case strings.HasPrefix(s, "ws echo"):
		return "echo mismatch"
	case strings.HasPrefix(s, "not h2"):
		return "not h2"
	case strings.HasPrefix(s, "reset: complete"):
		return "complete"
	case strings.Contains(s, "stream error"):
		// HTTP/2: the stream was reset (RST_STREAM).
		return "stream reset"
	}
	return "other"
}

func soak(ctx context.Context, sc soakConfig) (ok bool, err error) {
	pins, err := parsePinning(sc.pin, runtime.NumCPU())
	if err != nil {
		return false, err
	}
	if pins.loadgen != "" {
		if err := pinSelf(pins.loadgen); err != nil {
			return false, err
		}
	}
	work, err := os.MkdirTemp("", "credgate-soak-")
	if err != nil {
		return false, fmt.Errorf("work directory: %w", err)
	}
	defer func() {
		if sc.keep || err != nil || !ok {
			fmt.Fprintf(os.Stderr, "work directory kept: %s\n", work)
			return
		}
		_ = os.RemoveAll(work)
	}()
	self, err := os.Executable()
	if err != nil {
		return false, fmt.Errorf("find own executable: %w", err)
	}
	token := randomHex(24)
	env := childEnv(token)
	fmt.Printf("# credgate soak\n\n- date: %s\n- machine: %s CPUs (%s), %s, load average before: %s\n",
		time.Now().UTC().Format(time.RFC3339), strconv.Itoa(runtime.NumCPU()), cpuModel(), memTotal(), loadAvg())

	rc := runConfig{credgate: sc.credgate, audit: "file"}
	variant := credgateVariant{name: report.Credgate}
	var fe *faultEnv
	var originArgs []string
	if sc.faults {
		if fe, err = startFaultEnv(ctx, work, pins, env, token, sc.sentinel); err != nil {
			return false, err
		}
		defer fe.close()
		variant = fe.variant()
		env = append(env, fe.childEnv()...)
		originArgs = fe.originArgs()
	}
	originAddr, originCA, originProc, err := startOrigin(ctx, self, work, pins, env, false, originArgs...)
	if err != nil {
		return false, err
	}
	defer originProc.stop(3 * time.Second)
	if fe != nil {
		if err := fe.startOriginProxy(originAddr); err != nil {
			return false, err
		}
		// MinIO's certificate comes from the origin's CA, which the
		// gateway trusts upstream.
		if err := fe.startS3(ctx, work, originCA, env); err != nil {
			return false, err
		}
		if fe.s3 != nil {
			env = append(env, fe.s3.gatewayEnv()...)
		}
		variant = fe.variant()
	}
	t, _, err := startCredgate(ctx, rc, work, originAddr, originCA, pins, env, variant)
	if err != nil {
		return false, err
	}
	defer t.proc.stop(5 * time.Second)
	var ca *caRotation
	if fe != nil {
		if ca, err = prepareCARotation(ctx, sc.credgate, t.dir, t.caCert, t.caKey, t.lg.Roots); err != nil {
			return false, err
		}
	}
	if err := loadgen.Check(ctx, t.lg); err != nil {
		return false, fmt.Errorf("check request through credgate: %w", err)
	}

	peak := loadgen.ClosedLoop(ctx, t.lg, 32, time.Second, sc.probe, false)
	if peak.Requests == 0 {
		return false, fmt.Errorf("peak probe: no request succeeded (%s)", peak.FirstError)
	}
	rate := peak.RPS * sc.fraction
	keepAlive := max(rate-sc.uploadRate-sc.wsRate*float64(sc.wsMessages), 1)
	fmt.Printf("- peak: %.0f rps (HTTP/1.1 keep-alive, 32 connections, closed loop, %s, %d errors)\n", peak.RPS, sc.probe, peak.Errors)
	fmt.Printf("- mix: %.0f%% of the peak = %.0f rps for %s: HTTP/1.1 GET %.0f/s on %d keep-alive connections, HTTP/2 GET %.0f/s on one connection (%d streams), uploads of %d KiB %.1f/s (HTTP/1.1 and HTTP/2), WebSocket sessions %.1f/s of %d echoed messages\n",
		sc.fraction*100, rate, sc.duration, keepAlive/2, h1Workers, keepAlive/2, h2Workers, sc.uploadSize>>10, sc.uploadRate, sc.wsRate, sc.wsMessages)
	fmt.Printf("- gateway: real binary, static bearer rule, identity by source CIDR, audit to a file; sampled every %s (RSS from /proc/%d/status; go_goroutines and process_open_fds from its /metrics, each the lowest of three reads 100 ms apart)\n\n", sc.sample, t.proc.pid())

	if fe != nil {
		fmt.Printf("- faults: Toxiproxy %s between the gateway and redis-server (the shared cache), the Vault emulator (a second rule on /vault/* injects a KV secret from it, cached %s), an OAuth2 token endpoint (a third rule on /oauth2/* injects a client-credentials token living %s, which the origin checks by introspection) and the origin (%s:%d, resolved to Toxiproxy by the gateway's resolve map: %d KiB downloads); cache.error_backoff 1s; upstream response_header_timeout and tls_handshake_timeout %s, idle_conn_timeout %s; each fault lasts %s, then %s without one; vault, oauth2, reset and origin-proxy requests %.0f/s each\n\n",
			"v2.5.0", vaultTTL, oauth2TTL, originHost, fe.originPort, toxBody>>10, upstreamTimeout, upstreamIdle, faultWindow, faultWindow, sc.faultRate)
		if fe.s3 != nil {
			fmt.Printf("- S3 leg: MinIO %s on %s (TLS, certificate from the origin CA) as the S3 origin, verifying every SigV4 signature; a fourth rule on https://%s:%d/%s/* injects an awssts credential (AssumeRole on MinIO's STS through a shim on %s that shortens the relayed Expiration to %s and, during the STS throttling fault, answers 400 Throttling \"Rate exceeded\" and 503 alternately) with sigv4; PUT and GET of a 1 KiB object %.0f/s\n\n",
				fe.s3.minio.Version, fe.s3.minio.Addr(), s3Host, fe.s3.minio.Port, s3Bucket, fe.s3.shimAddr, stsTTL, sc.faultRate)
		} else {
			fmt.Printf("- S3 leg and STS throttling: skipped: %s\n\n", fe.s3Skipped)
		}
		if fe.sentinel != nil {
			fmt.Printf("- Redis under Sentinel (-sentinel): a master, a replica and %d Sentinels (quorum %d), cache.redis names the Sentinels (%s) and master_name %s, not through Toxiproxy; the Redis faults are SENTINEL FAILOVER, the master killed, and one Sentinel killed (the one the gateway is subscribed to) then the master\n\n", sentinelCount, sentinelQuorum, strings.Join(fe.sentinel.addrs, ", "), sentinelMaster)
		}
	}
	samples := runMix(ctx, sc, t, keepAlive, fe, ca)
	var exitErr error
	select {
	case <-t.proc.exited:
		exitErr = fmt.Errorf("it exited: %v", t.proc.waitErr)
	default:
	}
	if n, err := countLines(filepath.Join(work, report.Credgate, "audit.jsonl")); err == nil {
		fmt.Printf("Audit: %d JSON lines written by the gateway during the run (peak probe included).\n\n", n)
	}
	ok = verdicts(os.Stdout, sc, samples, exitErr)
	if fe != nil {
		ok = faultVerdicts(os.Stdout, fe, samples, append([]string{token}, fe.secrets()...),
			filepath.Join(work, report.Credgate, "credgate.log"), filepath.Join(work, report.Credgate, "audit.jsonl")) && ok
	}
	return ok, nil
}

func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	buf := make([]byte, 64<<10)
	for {
		k, err := f.Read(buf)
		n += bytes.Count(buf[:k], []byte{'\n'})
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// runMix paces the mix for sc.duration and samples the gateway.
func runMix(ctx context.Context, sc soakConfig, t target, keepAlive float64, fe *faultEnv, ca *caRotation) []sample {
	// Cancelled, not timed out: a dial whose socket deadline came from a
	// context deadline can fail a moment before ctx.Err() says so, and
	// would count as an error.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopAt := time.AfterFunc(sc.duration, cancel)
	defer stopAt.Stop()
	st := &soakStats{errs: map[string]int64{}, first: map[string]string{}, expected: map[string]int64{}, fe: fe}
	var wg sync.WaitGroup

	h1 := make(chan struct{}, 64)
	h2 := make(chan struct{}, 64)
	up := make(chan struct{}, 8)
	ws := make(chan struct{}, 8)
	pace(ctx, &wg, st, h1, keepAlive/2)
	pace(ctx, &wg, st, h2, keepAlive/2)
	pace(ctx, &wg, st, up, sc.uploadRate)
	pace(ctx, &wg, st, ws, sc.wsRate)

	proxyURL := &url.URL{Scheme: "http", Host: t.lg.Proxy}
	h2Client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy:             http.ProxyURL(proxyURL),
		TLSClientConfig:   &tls.Config{RootCAs: t.lg.Roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}}
	h1Client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy:           http.ProxyURL(proxyURL),
		TLSClientConfig: &tls.Config{RootCAs: t.lg.Roots, MinVersion: tls.VersionTLS12},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
	}}
	defer h2Client.CloseIdleConnections()
	defer h1Client.CloseIdleConnections()
	base := "https://" + t.lg.Host

	worker := func(n int, ch <-chan struct{}, do func(i int)) {
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-ctx.Done():
						return
					case <-ch:
						do(i)
					}
				}
			}()
		}
	}
	// HTTP/1.1: the bench's lean client, one keep-alive connection per
	// worker, dialled again after an error.
	conns := make([]*loadgen.Conn, h1Workers)
	worker(h1Workers, h1, func(i int) {
		if conns[i] == nil || !conns[i].Usable() {
			if conns[i] != nil {
				_ = conns[i].Close()
			}
			c, err := loadgen.Dial(ctx, t.lg)
			if err != nil {
				conns[i] = nil
				if ctx.Err() == nil {
					st.fail(0, err)
				}
				return
			}
			conns[i] = c
		}
		if err := conns[i].Do(); err != nil {
			if ctx.Err() == nil {
				st.fail(0, err)
			}
			return
		}
		st.ok(0)
	})
	worker(h2Workers, h2, func(int) {
		if err := get(ctx, h2Client, base+t.lg.Path, nil, 2); err != nil {
			if ctx.Err() == nil {
				st.fail(1, err)
			}
			return
		}
		st.ok(1)
	})
	payload := bytes.Repeat([]byte("credgate-soak-upload\n"), sc.uploadSize/21+1)[:sc.uploadSize]
	worker(uploadWorkers, up, func(i int) {
		c, proto := h1Client, 1
		if i%2 == 1 {
			c, proto = h2Client, 2
		}
		if err := get(ctx, c, base+origin.UploadPath, payload, proto); err != nil {
			if ctx.Err() == nil {
				st.fail(2, err)
			}
			return
		}
		st.ok(2)
	})
	worker(wsWorkers, ws, func(int) {
		if err := wsSession(ctx, t.lg, sc.wsMessages); err != nil {
			if ctx.Err() == nil {
				st.fail(3, err)
			}
			return
		}
		st.ok(3)
	})

	if fe != nil {
		vaultCh := make(chan struct{}, 8)
		oauth2Ch := make(chan struct{}, 8)
		resetCh := make(chan struct{}, 8)
		pace(ctx, &wg, st, vaultCh, sc.faultRate)
		pace(ctx, &wg, st, oauth2Ch, sc.faultRate)
		pace(ctx, &wg, st, resetCh, sc.faultRate)
		// sourceRule requests a path of the rule whose credential comes
		// from a source the faults take down.
		sourceRule := func(kind int, path string) func(int) {
			return func(int) {
				if err := get(ctx, h1Client, base+path, nil, 1); err != nil {
					if ctx.Err() == nil {
						st.fail(kind, err)
					}
					return
				}
				fe.sourceOK(soakKinds[kind])
				st.ok(kind)
			}
		}
		worker(vaultWorkers, vaultCh, sourceRule(kindVault, "/vault/charges"))
		worker(oauth2Workers, oauth2Ch, sourceRule(kindOAuth2, "/oauth2/charges"))
		if fe.s3 != nil {
			s3Ch := make(chan struct{}, 8)
			pace(ctx, &wg, st, s3Ch, sc.faultRate)
			// Each worker PUTs its object, then GETs and PUTs it in turn.
			var calls [s3Workers]int
			worker(s3Workers, s3Ch, func(i int) {
				put := calls[i]%2 == 0
				calls[i]++
				if err := fe.s3.do(ctx, h1Client, fmt.Sprintf("object-%d", i), put); err != nil {
					if ctx.Err() == nil {
						st.fail(kindS3, err)
					}
					return
				}
				fe.sourceOK(soakKinds[kindS3])
				st.ok(kindS3)
			})
		}
		toxCh := make(chan struct{}, 8)
		pace(ctx, &wg, st, toxCh, sc.faultRate)
		toxURL := fe.toxURL()
		var toxCalls [toxWorkers]int
		worker(toxWorkers, toxCh, func(i int) {
			c, proto := h1Client, 1
			if toxCalls[i]%2 == 1 {
				c, proto = h2Client, 2
			}
			toxCalls[i]++
			rec, lastEnd := fe.toxStart()
			started := time.Now()
			err := toxGet(ctx, c, toxURL, proto)
			if ctx.Err() != nil {
				return
			}
			class := ""
			if err != nil {
				class = toxClass(err)
			}
			allowed := fe.toxDone(rec, lastEnd, started, class, err)
			if err != nil {
				st.failAs(kindTox, class, err, allowed)
				return
			}
			fe.sourceOK(soakKinds[kindTox])
			st.ok(kindTox)
		})
		worker(resetWorkers, resetCh, func(int) {
			err := get(ctx, h1Client, base+origin.ResetPath, nil, 1)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				// A complete answer to a reset upstream: the gateway hid
				// the truncation.
				st.fail(kindReset, errors.New("reset: complete answer"))
				return
			}
			st.fail(kindReset, err)
		})
		all := fe.schedule(ctx, t.dir, t.proc.pid(), ca)
		faults := filterFaults(all, sc.faultOnly)
		if sc.faultOnly != "" && len(faults) == len(all) {
			fmt.Fprintf(os.Stderr, "soak: -fault-only %q kept every fault (it matched all or none of their names)\n", sc.faultOnly)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fe.run(ctx, faults, time.Now())
		}()
	}
	start := time.Now()
	var samples []sample
	tick := time.NewTicker(sc.sample)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
		}
		s := readGateway(t)
		s.at = time.Since(start).Round(time.Second)
		s.reqs, s.errs, s.expected, s.behind = st.take()
		if done {
			// The last partial window ends with the load cut off
			// mid-request; its counts go to the previous window's row
			// only if they are meaningful: a window shorter than half a
			// sample is dropped from the table.
			if len(samples) > 0 && s.at-samples[len(samples)-1].at < sc.sample/2 {
				break
			}
		}
		samples = append(samples, s)
		fmt.Fprintf(os.Stderr, "soak: %s  %s\n", s.at, s.line())
	}
	cancel()
	wg.Wait()
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
	st.mu.Lock()
	for k, e := range st.first {
		fmt.Fprintf(os.Stderr, "soak: first %s error: %s\n", k, e)
	}
	st.mu.Unlock()
	return samples
}

// pace sends a token on ch rate times a second until ctx ends; a token
// finding every worker of its kind busy is counted as behind, not queued.
func pace(ctx context.Context, wg *sync.WaitGroup, st *soakStats, ch chan<- struct{}, rate float64) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		var sent float64
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			due := time.Since(start).Seconds() * rate
			for ; sent+1 <= due; sent++ {
				select {
				case ch <- struct{}{}:
				default:
					st.behind.Add(1)
				}
			}
		}
	}()
}

// get sends a GET (or, with a body, a POST) and reads the whole answer; a
// non-200 status is a *loadgen.StatusError, a response over another
// protocol than proto an error.
func get(ctx context.Context, c *http.Client, u string, body []byte, proto int) error {
	method, r := http.MethodGet, io.Reader(nil)
	if body != nil {
		method, r = http.MethodPost, bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &loadgen.StatusError{Code: resp.StatusCode, Reason: resp.Header.Get("X-Credgate-Reason"), Body: string(b)}
	}
	if resp.ProtoMajor != proto {
		return fmt.Errorf("not h%d: answered over %s", proto, resp.Proto)
	}
	return nil
}

// wsSession opens a WebSocket to the origin's echo endpoint through the
// gateway, sends n messages, checks each comes back, and closes.
func wsSession(ctx context.Context, t *loadgen.Target, n int) error {
	tc, err := loadgen.DialTLS(ctx, t, "http/1.1")
	if err != nil {
		return err
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(30 * time.Second))
	cfg, err := websocket.NewConfig("wss://"+t.Host+origin.EchoPath, "https://"+t.Host)
	if err != nil {
		return err
	}
	ws, err := websocket.NewClient(cfg, tc)
	if err != nil {
		var de *websocket.DialError
		if errors.As(err, &de) {
			return fmt.Errorf("ws handshake: %w", de.Err)
		}
		return fmt.Errorf("ws handshake: %w", err)
	}
	defer ws.Close()
	for i := range n {
		msg := fmt.Sprintf("soak message %d %s", i, strings.Repeat("x", 64))
		if err := websocket.Message.Send(ws, msg); err != nil {
			return fmt.Errorf("ws send: %w", err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil {
			return fmt.Errorf("ws receive: %w", err)
		}
		if got != msg {
			return fmt.Errorf("ws echo: got %q, want %q", got, msg)
		}
	}
	return nil
}

// readGateway reads the gateway's RSS and its goroutines and open fds
// from /metrics. Goroutines and fds move with the requests in flight at
// the instant of reading, so each is the lowest of three reads 100 ms
// apart: the floor a leak would raise.
func readGateway(t target) sample {
	s := sample{redisUp: -1}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for i := range 3 {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		m, err := readMetrics(c, "http://"+t.admin+"/metrics")
		if err != nil {
			s.metricsErr = err
			continue
		}
		g, f := m.goroutines, m.fds
		if m.redisUp >= 0 && (s.redisUp < 0 || m.redisUp < s.redisUp) {
			s.redisUp = m.redisUp
		}
		s.redisErrors = m.redisErrors
		if i == 0 || g < s.goroutines {
			s.goroutines = g
		}
		if i == 0 || f < s.fds {
			s.fds = f
		}
	}
	s.rss, _, _ = memStat(t.proc.pid())
	return s
}

// metricsRead is what the soak reads from the gateway's /metrics.
type metricsRead struct {
	goroutines, fds int64
	// redisUp is credgate_redis_up, -1 when absent (no cache.redis).
	redisUp int64
	// redisErrors is credgate_redis_errors_total, summed over its labels.
	redisErrors int64
}

func readMetrics(c *http.Client, u string) (metricsRead, error) {
	m := metricsRead{redisUp: -1}
	resp, err := c.Get(u)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	value := func(v string) int64 {
		f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return int64(f)
	}
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			m.goroutines = value(v)
		}
		if v, ok := strings.CutPrefix(line, "process_open_fds "); ok {
			m.fds = value(v)
		}
		if v, ok := strings.CutPrefix(line, "credgate_redis_up "); ok {
			m.redisUp = value(v)
		}
		if rest, ok := strings.CutPrefix(line, "credgate_redis_errors_total"); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
			if k := strings.LastIndexByte(rest, ' '); k >= 0 {
				m.redisErrors += value(rest[k+1:])
			}
		}
	}
	if m.goroutines == 0 || m.fds == 0 {
		return m, errors.New("go_goroutines or process_open_fds missing from /metrics")
	}
	return m, sc.Err()
}

func (s sample) total() (reqs, errs int64) {
	for _, n := range s.reqs {
		reqs += n
	}
	for _, n := range s.errs {
		errs += n
	}
	return reqs, errs
}

func (s sample) errString() string { return countsString(s.errs) }

// countsString is "kind: n, ..." sorted by kind, or "0".
func countsString(m map[string]int64) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func (s sample) line() string {
	r, e := s.total()
	var x int64
	for _, n := range s.expected {
		x += n
	}
	return fmt.Sprintf("requests %d (h1 %d, h2 %d, upload %d, ws %d, vault %d, oauth2 %d, s3 %d, tox %d), errors %d, expected %d, behind %d, RSS %.1f MiB, goroutines %d, fds %d",
		r, s.reqs["h1"], s.reqs["h2"], s.reqs["upload"], s.reqs["ws"], s.reqs["vault"], s.reqs["oauth2"], s.reqs["s3"], s.reqs["tox"], e, x, s.behind, mib(s.rss), s.goroutines, s.fds)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// verdicts prints the table and the verdicts and reports whether all
// passed. The first and last windows are a minute each, or a quarter of
// the run when it is shorter than four minutes; RSS and goroutines compare
// their medians.
// exited is why the gateway is no longer running, nil if it is.
func verdicts(w io.Writer, sc soakConfig, samples []sample, exited error) bool {
	if len(samples) == 0 {
		fmt.Fprintln(w, "- FAIL: no sample taken (the run stopped before its first -sample)")
		return false
	}
	faults := sc.faults
	if faults {
		fmt.Fprintln(w, "| at | requests | rps | h1 | h2 | upload | ws sessions | vault | oauth2 | s3 | tox | behind | errors | expected under faults | RSS MiB | goroutines | fds | redis up | redis errors |")
		fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|--:|--:|--:|--:|--:|")
	} else {
		fmt.Fprintln(w, "| at | requests | rps | h1 | h2 | upload | ws sessions | behind | errors | RSS MiB | goroutines | fds |")
		fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|")
	}
	prev := time.Duration(0)
	var allReqs, allErrs int64
	errKinds := map[string]int64{}
	metricsOK := true
	for _, s := range samples {
		r, e := s.total()
		allReqs, allErrs = allReqs+r, allErrs+e
		for k, n := range s.errs {
			errKinds[k] += n
		}
		if s.metricsErr != nil {
			metricsOK = false
		}
		if faults {
			fmt.Fprintf(w, "| %s | %d | %.0f | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s | %s | %.1f | %d | %d | %d | %d |\n",
				s.at, r, float64(r)/(s.at-prev).Seconds(), s.reqs["h1"], s.reqs["h2"], s.reqs["upload"], s.reqs["ws"], s.reqs["vault"], s.reqs["oauth2"], s.reqs["s3"], s.reqs["tox"], s.behind, s.errString(), countsString(s.expected), mib(s.rss), s.goroutines, s.fds, s.redisUp, s.redisErrors)
		} else {
			fmt.Fprintf(w, "| %s | %d | %.0f | %d | %d | %d | %d | %d | %s | %.1f | %d | %d |\n",
				s.at, r, float64(r)/(s.at-prev).Seconds(), s.reqs["h1"], s.reqs["h2"], s.reqs["upload"], s.reqs["ws"], s.behind, s.errString(), mib(s.rss), s.goroutines, s.fds)
		}
		prev = s.at
	}

	span := time.Minute
	if sc.duration < 4*time.Minute {
		span = sc.duration / 4
	}
	var first, last []sample
	end := samples[len(samples)-1].at
	for _, s := range samples {
		if s.at <= span {
			first = append(first, s)
		}
		if s.at > end-span {
			last = append(last, s)
		}
	}
	if len(first) == 0 {
		first = samples[:1]
	}
	// The median of a window's samples: one sample caught at a burst
	// does not decide a verdict.
	median := func(ss []sample, f func(sample) int64) float64 {
		v := make([]float64, len(ss))
		for i, s := range ss {
			v[i] = float64(f(s))
		}
		slices.Sort(v)
		if n := len(v); n%2 == 0 {
			return (v[n/2-1] + v[n/2]) / 2
		}
		return v[len(v)/2]
	}
	maxOf := func(ss []sample, f func(sample) int64) int64 {
		var m int64
		for _, s := range ss {
			m = max(m, f(s))
		}
		return m
	}
	rss := func(s sample) int64 { return s.rss }
	gor := func(s sample) int64 { return s.goroutines }
	fds := func(s sample) int64 { return s.fds }

	ok := true
	verdict := func(pass bool, what string, args ...any) {
		word := "PASS"
		if !pass {
			word, ok = "FAIL", false
		}
		fmt.Fprintf(w, "- %s: %s\n", word, fmt.Sprintf(what, args...))
	}
	fmt.Fprintf(w, "\nFirst window: samples at ≤ %s; last window: samples after %s; RSS and goroutines compare the windows' medians.\n\n", span, end-span)
	kinds := make([]string, 0, len(errKinds))
	for k, n := range errKinds {
		kinds = append(kinds, fmt.Sprintf("%s: %d", k, n))
	}
	slices.Sort(kinds)
	verdict(allErrs == 0 && allReqs > 0, "unexpected errors: %d of %d requests%s", allErrs, allReqs+allErrs, map[bool]string{true: "", false: " (" + strings.Join(kinds, ", ") + ")"}[len(kinds) == 0])
	verdict(metricsOK, "every sample read go_goroutines and process_open_fds from /metrics")
	growth := func(f func(sample) int64) float64 { return median(last, f)/median(first, f) - 1 }
	verdict(growth(rss) <= sc.tolerance, "RSS flat: last window %.1f MiB vs first %.1f MiB (%+.1f%%, allowed +%.0f%%)", median(last, rss)/(1<<20), median(first, rss)/(1<<20), growth(rss)*100, sc.tolerance*100)
	verdict(growth(gor) <= sc.tolerance, "goroutines flat: last window %.0f vs first %.0f (%+.1f%%, allowed +%.0f%%)", median(last, gor), median(first, gor), growth(gor)*100, sc.tolerance*100)
	// Upload and WebSocket workers open connections of their own, so the
	// count moves by a few between samples; growth is the last window's
	// highest above the first window's highest by more than those.
	slack := int64(2 * (uploadWorkers + wsWorkers))
	if sc.faults {
		slack += 2 * (vaultWorkers + oauth2Workers + s3Workers + resetWorkers + toxWorkers)
	}
	verdict(maxOf(last, fds) <= maxOf(first, fds)+slack, "no fd growth: highest in last window %d vs first %d (slack %d for the upload and WebSocket connections in flight)", maxOf(last, fds), maxOf(first, fds), slack)
	if exited != nil {
		verdict(false, "gateway still running at the end (%v)", exited)
	} else {
		verdict(true, "gateway still running at the end")
	}
	return ok
}
