//go:build linux

package main

// Issue 20's scale scenarios: one HTTP/2 client with many streams
// (h2-streams), 1 GiB bodies (bigbody) and 10,000 idle keep-alive
// clients of which some become active (idle10k). They are opt-in
// (-scenarios h2-streams,bigbody,idle10k or all) because they take
// minutes; bench/README.md says how long each takes.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/credgate/credgate/bench/internal/loadgen"
	"github.com/credgate/credgate/bench/internal/origin"
	"github.com/credgate/credgate/bench/internal/report"
)

// scaleConfig holds the flags of the scale scenarios.
type scaleConfig struct {
	// h2Streams is the number of concurrent streams of the h2 client.
	h2Streams int
	// bigBytes is the size of each bigbody transfer; bigRounds how many
	// of each direction per target.
	bigBytes  int64
	bigRounds int
	// idleClients are held open, idleActive of them then send at
	// idleClientRPS each (scaled down so that idleActive × rate stays
	// within idleMaxRPS), against idleBase clients at the same rate.
	idleClients, idleActive, idleBase int
	idleClientRPS, idleMaxRPS         float64
	idleWindow                        time.Duration
}

// scaleScenarios are the opt-in scenarios, in run order.
var scaleScenarios = []string{"h2-streams", "bigbody", "idle10k"}

// pick returns the targets among ts named in names, in that order.
func pick(ts []target, names ...string) []target {
	var out []target
	for _, n := range names {
		for _, t := range ts {
			if t.lg.Name == n {
				out = append(out, t)
			}
		}
	}
	return out
}

// only returns the entries of skipped for names.
func only(skipped map[string]string, names ...string) map[string]string {
	out := map[string]string{}
	for _, n := range names {
		if why, ok := skipped[n]; ok {
			out[n] = why
		}
	}
	return out
}

// h2Streams runs one HTTP/2 client with sc.h2Streams concurrent streams
// on one connection through direct, goproxy and credgate, and the same
// concurrency over HTTP/1.1 keep-alive connections through the two
// proxies for comparison.
func h2Streams(ctx context.Context, rc runConfig, ts []target, skipped map[string]string, originPID int, progress func(string, ...any)) *report.H2Streams {
	sc := rc.scale
	sel := pick(ts, report.Direct, report.Goproxy, report.Credgate)
	for _, t := range pick(ts, report.Goproxy, report.Credgate) {
		lg := *t.lg
		lg.Name += report.H1Suffix
		t.lg = &lg
		sel = append(sel, t)
	}
	run := rounds(ctx, rc, sel, only(skipped, report.Direct, report.Goproxy, report.Credgate), func(round int, t target) (loadgen.Result, *cpuWindow, error) {
		h1 := strings.HasSuffix(t.lg.Name, report.H1Suffix)
		kind := fmt.Sprintf("h2, %d streams on one connection", sc.h2Streams)
		if h1 {
			kind = fmt.Sprintf("HTTP/1.1, %d connections", sc.h2Streams)
		}
		progress("h2-streams: %s, %s, %s (round %d/%d)", t.lg.Name, kind, rc.warmup+rc.window, round+1, rc.rounds)
		if h1 {
			cw := sampleCPU(t.proc, t.helpers, originPID, rc.warmup, rc.window)
			return loadgen.ClosedLoop(ctx, t.lg, sc.h2Streams, rc.warmup, rc.window, false), cw, nil
		}
		// One request before the CPU window starts tells a target that
		// does not speak h2 (ErrNotH2: skipped, and the report compares
		// with its -h1 row) from one that does.
		c := loadgen.NewH2Client(t.lg)
		err := c.Do(ctx)
		c.Close()
		if err != nil {
			return loadgen.Result{Target: t.lg.Name}, nil, err
		}
		cw := sampleCPU(t.proc, t.helpers, originPID, rc.warmup, rc.window)
		r, err := loadgen.H2ClosedLoop(ctx, t.lg, sc.h2Streams, rc.warmup, rc.window)
		return r, cw, err
	})
	gp := "HTTP/1.1 (its default transport: one upstream connection per concurrent request)"
	if rc.upstreamH2 {
		gp = "HTTP/2 allowed (-baseline-upstream-h2)"
	}
	h := &report.H2Streams{Streams: sc.h2Streams, Run: run, Notes: []string{
		"goproxy serves the h2 client with its embedded HTTP/2 server (`AllowHTTP2`); its upstream is " + gp +
			". credgate serves it with net/http's HTTP/2 server; its upstream follows `upstream.http2: match`: HTTP/2 for an HTTP/2 client, HTTP/1.1 for the `-h1` rows.",
	}}
	if _, ok := run.Get(report.Goproxy); !ok {
		if why, bad := run.Skipped[report.Goproxy]; bad && strings.Contains(why, loadgen.ErrNotH2.Error()) {
			h.Notes = append(h.Notes, "goproxy did not speak h2 to the client: credgate's h2 client is compared with goproxy over HTTP/1.1 with "+strconv.Itoa(sc.h2Streams)+" connections (the goproxy-h1 row), as issue 20 allows.")
		}
	}
	return h
}

// bigBody moves sc.bigBytes up and down through direct, the floor (when
// measured), goproxy and credgate, one transfer at a time, sampling the
// proxy's RSS every 50 ms.
func bigBody(ctx context.Context, rc runConfig, ts []target, skipped map[string]string, originPID int, progress func(string, ...any)) *report.BigBody {
	sc := rc.scale
	const interval = 50 * time.Millisecond
	b := &report.BigBody{Bytes: sc.bigBytes, Interval: interval}
	sel := pick(ts, report.Direct, report.Floor, report.Goproxy, report.Credgate)
	rows := map[string]*report.BigBodyRow{}
	key := func(t, dir string) string { return t + " " + dir }
	for _, t := range sel {
		for _, dir := range []string{report.Upload, report.Download} {
			b.Rows = append(b.Rows, report.BigBodyRow{Target: t.lg.Name, Direction: dir})
		}
	}
	for i := range b.Rows {
		rows[key(b.Rows[i].Target, b.Rows[i].Direction)] = &b.Rows[i]
	}
	// Even at 20 MiB/s a transfer finishes in this time.
	limit := time.Duration(sc.bigBytes/(20<<20)+30) * time.Second
	for round := range sc.bigRounds {
		order := slices.Clone(sel)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, t := range order {
			for _, dir := range []string{report.Upload, report.Download} {
				row := rows[key(t.lg.Name, dir)]
				if row.Err != "" || ctx.Err() != nil {
					continue
				}
				progress("bigbody: %s, %s %s (round %d/%d)", t.lg.Name, dir, report.Size(sc.bigBytes), round+1, sc.bigRounds)
				runtime.GC()
				var start int64
				var stop func() (int64, int64)
				if t.proc != nil {
					var err error
					if start, err = settledRSS(ctx, t.proc.pid()); err != nil {
						row.Err = err.Error()
						continue
					}
					stop = rssSampler(t.proc.pid(), interval)
				}
				meter := startCPUMeter(t.proc, originPID)
				tctx, cancel := context.WithTimeout(ctx, limit)
				var x loadgen.Transfer
				var err error
				if dir == report.Upload {
					x, err = loadgen.Upload(tctx, t.lg, origin.UploadPath, origin.Pattern{}, sc.bigBytes)
				} else {
					x, err = loadgen.Download(tctx, t.lg, origin.DownloadPath+"?bytes="+strconv.FormatInt(sc.bigBytes, 10), sc.bigBytes)
				}
				cancel()
				cpu, _, foreign := meter.result()
				row.ProxyCPU += cpu
				row.Foreign = max(row.Foreign, foreign)
				if stop != nil {
					peak, end := stop()
					if row.RSSStart == 0 || peak-start > row.Growth() {
						row.RSSStart, row.RSSPeak, row.RSSEnd = start, peak, end
					}
				}
				if err != nil {
					row.Err = err.Error()
					if t.proc != nil {
						row.Err += "; last output: " + t.proc.tail(3)
					}
					continue
				}
				row.Transfers = append(row.Transfers, x)
			}
		}
	}
	for _, n := range []string{report.Direct, report.Goproxy, report.Credgate} {
		if why, ok := skipped[n]; ok {
			b.Rows = append(b.Rows, report.BigBodyRow{Target: n, Direction: report.Upload + ", " + report.Download, Err: why})
		}
	}
	b.Notes = append(b.Notes, fmt.Sprintf("Each transfer is one HTTP/1.1 request on its own connection (set up before the clock starts): the upload a POST with Content-Length to `%s`, which reads and counts the body; the download a GET of `%s?bytes=N`, written from one 64 KiB buffer. The load generator streams through a 64 KiB buffer too: nothing holds a body whole. RSS is the proxy's VmRSS, settled before the transfer and sampled every %s during it (the row shows the transfer whose RSS grew most). CPU per GiB is the proxy's user+system time.",
		origin.UploadPath, origin.DownloadPath, interval))
	return b
}

// idle10k holds sc.idleClients idle keep-alive clients open through each
// proxy (goproxy, credgate), reads its RSS, then makes sc.idleActive of
// them send at the per-client rate while the rest stay idle, and compares
// their p99 with sc.idleBase clients at the same rate (measured first,
// with nothing else open).
func idle10k(ctx context.Context, rc runConfig, ts []target, skipped map[string]string, originPID int, progress func(string, ...any)) *report.Idle {
	sc := rc.scale
	x := &report.Idle{Clients: sc.idleClients, Active: min(sc.idleActive, sc.idleClients), Base: sc.idleBase, WantPerClientRPS: sc.idleClientRPS, PerClientRPS: sc.idleClientRPS}
	if offered := float64(x.Active) * sc.idleClientRPS; offered > sc.idleMaxRPS {
		x.PerClientRPS = sc.idleMaxRPS / float64(x.Active)
		x.Notes = append(x.Notes, fmt.Sprintf("**Per-client rate scaled down:** %s active clients × %s rps = %s rps offered is beyond this machine (%d CPUs shared by the load generator, the origin and the proxy; its keep-alive peak through a proxy is a few thousand rps). Each client sent %s rps instead, %s rps in all (`-idle-max-rps %.0f`), and the %d-client reference ran at the same %s rps each. The ratio still says how the proxy's tail latency grows from %d to %s concurrent clients; it does not say how it serves %s rps.",
			report.Count(x.Active), report.PerClient(sc.idleClientRPS), report.Count(int(offered)), runtime.NumCPU(), report.PerClient(x.PerClientRPS), report.PerClient(sc.idleMaxRPS), sc.idleMaxRPS, x.Base, report.PerClient(x.PerClientRPS), x.Base, report.Count(x.Active), report.Count(int(offered))))
	}
	// File descriptors: one per client connection in this process and
	// in the proxy, plus their upstream connections and a margin.
	clients := sc.idleClients
	const margin = 512
	soft, hard, err := raiseNoFile()
	switch {
	case err != nil:
		x.Notes = append(x.Notes, "RLIMIT_NOFILE: "+err.Error())
	case soft < uint64(clients+margin):
		clients = max(0, int(soft)-margin)
		x.Notes = append(x.Notes, fmt.Sprintf("**The hard RLIMIT_NOFILE (%d) is too low** for %s clients plus %d: %s opened (raise it with `ulimit -Hn` as root, or in limits.conf).", hard, report.Count(sc.idleClients), margin, report.Count(clients)))
	default:
		x.Notes = append(x.Notes, fmt.Sprintf("RLIMIT_NOFILE of the load generator: soft raised to the hard limit, %d.", soft))
	}
	// Ephemeral ports: every client connection comes from 127.0.0.1 to
	// the proxy's one port, so each needs its own source port.
	if lo, hi, err := portRange(); err == nil {
		if n := hi - lo + 1; n < clients+margin {
			clients = max(0, n-margin)
			x.Notes = append(x.Notes, fmt.Sprintf("**The ephemeral port range %d–%d (%d ports) is too small** for %s clients from one source address: %s opened.", lo, hi, n, report.Count(sc.idleClients), report.Count(clients)))
		} else {
			x.Notes = append(x.Notes, fmt.Sprintf("Every client connects from 127.0.0.1 (the bench policy identifies the workload by the source CIDR 127.0.0.1/32, so other 127.0.0.x addresses would be refused): %s source ports of the %d in %d–%d.", report.Count(clients), n, lo, hi))
		}
	}
	for _, t := range pick(ts, report.Goproxy, report.Credgate) {
		if ctx.Err() != nil {
			break
		}
		x.Rows = append(x.Rows, idleRow(ctx, rc, t, x, clients, originPID, progress))
	}
	for _, n := range []string{report.Goproxy, report.Credgate} {
		if why, ok := skipped[n]; ok {
			x.Rows = append(x.Rows, report.IdleRow{Target: n, Err: "not measured: " + why})
		}
	}
	return x
}

func idleRow(ctx context.Context, rc runConfig, t target, x *report.Idle, clients, originPID int, progress func(string, ...any)) report.IdleRow {
	sc := rc.scale
	row := report.IdleRow{Target: t.lg.Name}
	pid := t.proc.pid()
	if lim, err := fdLimit(pid); err == nil && lim < clients+512 {
		clients = max(0, lim-512)
		row.Err = fmt.Sprintf("the proxy's RLIMIT_NOFILE is %d: %d clients opened", lim, clients)
	}
	window := sc.idleWindow

	progress("idle10k: %s, %d clients at %s rps each, %s", t.lg.Name, x.Base, report.PerClient(x.PerClientRPS), rc.warmup+window)
	base, err := loadgen.OpenIdle(ctx, t.lg, x.Base, 16)
	if err != nil {
		row.Err = err.Error()
		return row
	}
	meter := startCPUMeter(t.proc, originPID)
	row.BaseRun = loadgen.PerClient(ctx, t.lg, base, x.PerClientRPS, rc.warmup, window)
	_, _, row.BaseForeign = meter.result()
	loadgen.CloseAll(base)

	runtime.GC()
	if row.RSSBefore, err = settledRSS(ctx, pid); err != nil {
		row.Err = err.Error()
		return row
	}
	row.FDsBefore, _ = openFDs(pid)
	progress("idle10k: %s, opening %d idle keep-alive clients", t.lg.Name, clients)
	conns := make([]*loadgen.Conn, 0, clients)
	defer func() { loadgen.CloseAll(conns) }()
	began := time.Now()
	for len(conns) < clients && ctx.Err() == nil {
		batch, err := loadgen.OpenIdle(ctx, t.lg, min(500, clients-len(conns)), 32)
		if err != nil {
			row.Err = fmt.Sprintf("after %d clients: %v", len(conns), err)
			break
		}
		conns = append(conns, batch...)
	}
	row.OpenTime = time.Since(began)
	row.Opened = len(conns)
	if row.OpenTime > 100*time.Second {
		row.Err = strings.TrimPrefix(row.Err+"; ", "; ") + fmt.Sprintf("opening took %.0f s: the proxy may have closed the first clients as idle for longer than its idle timeout (credgate: limits.idle_timeout, 120 s); \"still open at the proxy\" says how many it held", row.OpenTime.Seconds())
	}
	if row.RSSIdle, err = settledRSS(ctx, pid); err != nil {
		row.Err = err.Error()
		return row
	}
	// What the proxy spends on clients that send nothing (timers,
	// watchers per connection), once RSS has settled.
	meter = startCPUMeter(t.proc, originPID)
	if !sleepCtx(ctx, idleCPUSpan) {
		return row
	}
	if cpu, ok, _ := meter.result(); ok {
		row.IdleCPU = cpu.Seconds() / time.Since(meter.at).Seconds()
	}
	row.FDs, _ = openFDs(pid)
	active := min(x.Active, len(conns))
	if active == 0 {
		return row
	}
	progress("idle10k: %s, %d of them active at %s rps each, %s", t.lg.Name, active, report.PerClient(x.PerClientRPS), rc.warmup+window)
	stop := rssSampler(pid, 100*time.Millisecond)
	meter = startCPUMeter(t.proc, originPID)
	// The most recently opened clients are the active ones: the oldest
	// have been idle longest and are the first the proxy's idle timeout
	// would close.
	row.ActiveRun = loadgen.PerClient(ctx, t.lg, conns[len(conns)-active:], x.PerClientRPS, rc.warmup, window)
	_, _, row.ActiveForeign = meter.result()
	row.RSSActivePeak, _ = stop()
	return row
}

// idleCPUSpan is how long the proxy's CPU use with every client idle is
// measured.
const idleCPUSpan = 3 * time.Second

// sleepCtx waits for d or the end of ctx; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// portRange reads the kernel's ephemeral port range.
func portRange() (lo, hi int, err error) {
	f := strings.Fields(readTrim("/proc/sys/net/ipv4/ip_local_port_range"))
	if len(f) != 2 {
		return 0, 0, errors.New("read /proc/sys/net/ipv4/ip_local_port_range")
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("parse ip_local_port_range: %w", err)
	}
	return lo, hi, nil
}

// parseSize reads a byte count with an optional KiB, MiB or GiB suffix.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.m
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n > origin.MaxDownload/mult {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, KiB, MiB or GiB up to 64GiB", s)
	}
	return n * mult, nil
}
