// Package report turns benchmark results into the tables `make bench`
// prints and docs/performance.md quotes: one table per scenario with the
// three targets, the credgate/direct and credgate/goproxy ratios, and the
// issue's target for the scenario marked PASS or MISS. The figures are
// information, not a test: nothing here fails a build.
package report

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/credgate/credgate/bench/internal/loadgen"
)

// Target names used across the benchmark.
const (
	Direct   = "direct"
	Goproxy  = "goproxy"
	Credgate = "credgate"
	// Credgate2FA is credgate requiring two factors (an X.509-SVID on its
	// TLS listener and a JWT-SVID) instead of the source address.
	Credgate2FA = "credgate-2fa"
	// CredgateRedis is credgate with cache.redis (issue 7); its requests
	// are in-memory (L1) cache hits.
	CredgateRedis = "credgate-redis"
	// CredgateRedisRL adds a rate limit that never refuses, checked in
	// Redis on every request.
	CredgateRedisRL = "credgate-redis-rl"
	// CredgateRL is credgate in memory with that rate limit checked in
	// process.
	CredgateRL = "credgate-rl"
	// Floor is the least work any header-injecting MITM proxy does here
	// (bench/internal/floor): a bound on every proxy's figures, not a
	// peer.
	Floor = "floor"
	// Squid is Debian's squid-openssl with ssl-bump, adding the header
	// with request_header_add (issue 20's peer).
	Squid = "squid"
	// Mitmproxy is mitmdump with a header-adding addon (issue 20's peer).
	Mitmproxy = "mitmproxy"
)

// Thresholds from issue 20: clearly ahead of the bare MITM proxy and of
// the proxies users would pick instead.
const (
	// KeepAliveGoproxy20 is the minimum credgate/goproxy keep-alive ratio.
	KeepAliveGoproxy20 = 1.15
	// KeepAliveSquid20 is the minimum credgate/squid keep-alive ratio.
	KeepAliveSquid20 = 2.5
	// NewConnGoproxy20 is the minimum credgate/goproxy new-connection ratio.
	NewConnGoproxy20 = 1.5
	// AddedP50Goproxy20 is the maximum ratio of credgate's added p50 over
	// direct to goproxy's, at the fixed rate.
	AddedP50Goproxy20 = 0.8
	// H2Goproxy20 is the minimum credgate/goproxy rps ratio for one
	// HTTP/2 client with many concurrent streams.
	H2Goproxy20 = 1.0
	// BigBodyDirect20 is the minimum credgate/direct throughput ratio of
	// a 1 GiB upload and of a 1 GiB download.
	BigBodyDirect20 = 0.9
	// BigBodyRSSGrowth20 is what "RSS flat" during a 1 GiB transfer is
	// taken to mean: the gateway's sampled peak RSS at most this much
	// above its RSS at the start (a buffered body would add the whole
	// GiB).
	BigBodyRSSGrowth20 = 16 << 20
	// IdleRSS20 is the maximum gateway RSS with 10,000 idle keep-alive
	// clients.
	IdleRSS20 = 400 << 20
	// ActiveP99Ratio20 is the maximum ratio of the p99 with 2,000 active
	// clients to the p99 with 100, at the same per-client rate.
	ActiveP99Ratio20 = 3.0
)

// Peers are the proxies credgate is compared with, in table order.
var Peers = []string{Goproxy, Squid, Mitmproxy}

// Thresholds from issue 2 (Benchmark section).
const (
	// KeepAliveRatio is the minimum credgate/goproxy keep-alive rps ratio.
	KeepAliveRatio = 0.90
	// NewConnRatio is the minimum credgate/goproxy new-connection rps ratio.
	NewConnRatio = 0.90
	// AddedP50 is the maximum p50 credgate adds over direct at the fixed rate.
	AddedP50 = 350 * time.Microsecond
	// MaxRSS is the maximum gateway RSS with the idle connections open.
	MaxRSS = 64 << 20
	// TwoFactorRatio (issue 3) is the minimum keep-alive rps ratio of
	// credgate requiring mtls + jwt over its TLS listener to credgate
	// with the static source-address rule.
	TwoFactorRatio = 0.90
	// RedisRatio (issue 7) is the minimum keep-alive rps ratio of
	// credgate with cache.redis to credgate in memory.
	RedisRatio = 0.95
	// NewConnRatio20 (issue 20) is the minimum credgate/goproxy
	// new-connection rps ratio, for clients that resume TLS sessions and
	// for clients that do not.
	NewConnRatio20 = 1.5
)

// Run is one scenario's results, one entry per target.
type Run struct {
	// Results holds the per-target results, in target order.
	Results []loadgen.Result `json:"results"`
	// CPUPerRequest is the proxy process's CPU time (user+system) per
	// successful request, by target; empty for direct.
	CPUPerRequest map[string]time.Duration `json:"cpu_per_request_ns,omitempty"`
	// HelperCPUPerRequest is, for targets with a helper process (the
	// redis-server of credgate-redis*), the helper's CPU time per
	// successful request.
	HelperCPUPerRequest map[string]time.Duration `json:"helper_cpu_per_request_ns,omitempty"`
	// ClientCPUPerRequest is the load generator's CPU time (the benchmark
	// process: its client connections, TLS handshakes and certificate
	// checks) per successful request, by target. The client shares the
	// machine with the proxy, so what it spends per connection bounds
	// how far a cheaper proxy can raise the rate.
	ClientCPUPerRequest map[string]time.Duration `json:"client_cpu_per_request_ns,omitempty"`
	// Foreign is, by target, the largest share (0..1) of the machine's
	// CPU that processes outside the benchmark used during one of the
	// target's windows. More than a few percent means the figures are
	// disturbed.
	Foreign map[string]float64 `json:"foreign_cpu,omitempty"`
	// Skipped says why a target did not run, by target.
	Skipped map[string]string `json:"skipped,omitempty"`
}

// Get returns the result for a target.
func (r *Run) Get(target string) (loadgen.Result, bool) {
	if r == nil {
		return loadgen.Result{}, false
	}
	for _, x := range r.Results {
		if x.Target == target {
			return x, true
		}
	}
	return loadgen.Result{}, false
}

// TwoFactorRatio is credgate-2fa's rps over credgate's; ok is false when
// either was not measured.
func (r *Run) TwoFactorRatio() (x float64, ok bool) {
	c, okc := r.Get(Credgate)
	m, okm := r.Get(Credgate2FA)
	if !okc || !okm || c.RPS == 0 {
		return 0, false
	}
	return m.RPS / c.RPS, true
}

// Memory is one proxy's memory figures.
type Memory struct {
	// Target is the proxy's name.
	Target string `json:"target"`
	// Idle is VmRSS after start-up and one request.
	Idle int64 `json:"idle_rss_bytes"`
	// Loaded is VmRSS with Conns idle client connections open.
	Loaded int64 `json:"loaded_rss_bytes"`
	// LoadedFile is the file-backed part of Loaded (RssFile): the pages
	// of the binary and its libraries the process has mapped. How many
	// depends on how the page cache holds the file as much as on the code
	// run: with large folios (ext4 on Linux 6.16 and later) a fault maps
	// a whole folio, and two builds of the same code differed by 5 MiB.
	// Loaded − LoadedFile (RssAnon + RssShmem) is the part to compare
	// between builds.
	LoadedFile int64 `json:"loaded_file_rss_bytes,omitempty"`
	// Conns is the number of idle connections held open.
	Conns int `json:"conns"`
	// After is VmRSS after every scenario finished; Peak is VmHWM then.
	After int64 `json:"after_rss_bytes,omitempty"`
	Peak  int64 `json:"peak_rss_bytes,omitempty"`
	// Err is set when the measurement failed.
	Err string `json:"error,omitempty"`
}

// PerConn is the memory each idle connection added.
func (m Memory) PerConn() int64 {
	if m.Conns == 0 {
		return 0
	}
	return (m.Loaded - m.Idle) / int64(m.Conns)
}

// Results is everything one `make bench` measured.
type Results struct {
	// Env describes the machine and the set-up.
	Env map[string]string `json:"env"`
	// Order lists the environment keys in print order.
	Order []string `json:"-"`
	// KeepAlive, NewConn and FixedRate are the three load scenarios.
	KeepAlive *Run `json:"keep_alive,omitempty"`
	NewConn   *Run `json:"new_conn,omitempty"`
	FixedRate *Run `json:"fixed_rate,omitempty"`
	// KeepAlivePost is KeepAlive with a 1 KiB JSON POST per request
	// (opt-in: -scenarios keepalive-post).
	KeepAlivePost *Run `json:"keep_alive_post,omitempty"`
	// NewConnResume is the new-connection scenario with a client that
	// resumes TLS sessions (issue 20).
	NewConnResume *Run `json:"new_conn_resume,omitempty"`
	// Memory holds the proxies' RSS figures.
	Memory []Memory `json:"memory,omitempty"`
	// H2Streams, BigBody and Idle are issue 20's scale scenarios
	// (h2-streams, bigbody, idle10k).
	H2Streams *H2Streams `json:"h2_streams,omitempty"`
	BigBody   *BigBody   `json:"bigbody,omitempty"`
	Idle      *Idle      `json:"idle10k,omitempty"`
	// Titles are the scenario headings (they carry the parameters).
	Titles map[string]string `json:"titles"`
}

// Verdict is one target line of the summary.
type Verdict struct {
	Name   string
	Want   string
	Got    string
	Pass   bool
	Absent bool
}

// Verdicts evaluates the targets.
func (r *Results) Verdicts() []Verdict {
	var out []Verdict
	ratio := func(name string, run *Run, min float64) {
		v := Verdict{Name: name, Want: fmt.Sprintf("≥ %.2f× goproxy", min)}
		c, ok1 := run.Get(Credgate)
		g, ok2 := run.Get(Goproxy)
		if !ok1 || !ok2 || g.RPS == 0 {
			v.Absent = true
		} else {
			x := c.RPS / g.RPS
			v.Got = fmt.Sprintf("%.2f×", x)
			v.Pass = x >= min
		}
		out = append(out, v)
	}
	ratio("keep-alive rps", r.KeepAlive, KeepAliveRatio)
	ratio("new-connection rps", r.NewConn, NewConnRatio)
	tf := Verdict{Name: "keep-alive rps, two factors (issue 3)", Want: fmt.Sprintf("≥ %.2f× credgate static rule", TwoFactorRatio)}
	if x, ok := r.KeepAlive.TwoFactorRatio(); ok {
		tf.Got = fmt.Sprintf("%.2f×", x)
		tf.Pass = x >= TwoFactorRatio
	} else {
		tf.Absent = true
	}
	out = append(out, tf)
	v := Verdict{Name: "added p50 at fixed rate", Want: "≤ " + Dur(AddedP50) + " over direct"}
	c, ok1 := r.FixedRate.Get(Credgate)
	d, ok2 := r.FixedRate.Get(Direct)
	if !ok1 || !ok2 || c.Requests == 0 || d.Requests == 0 {
		v.Absent = true
	} else {
		added := c.P50 - d.P50
		v.Got = Dur(added)
		v.Pass = added <= AddedP50
	}
	out = append(out, v)
	v = Verdict{Name: "RSS with idle connections", Want: "≤ " + MiB(MaxRSS)}
	v.Absent = true
	for _, m := range r.Memory {
		if m.Target == Credgate && m.Err == "" {
			v.Absent = false
			v.Got = MiB(m.Loaded) + fmt.Sprintf(" (%d conns)", m.Conns)
			v.Pass = m.Loaded <= MaxRSS
		}
	}
	out = append(out, v)
	return out
}

// Verdicts20 evaluates issue 20's targets: credgate against goproxy and
// squid in the same run.
func (r *Results) Verdicts20() []Verdict {
	var out []Verdict
	ratio := func(name string, run *Run, peer string, min float64) {
		v := Verdict{Name: name, Want: fmt.Sprintf("≥ %.2f× %s", min, peer)}
		var c, p loadgen.Result
		ok1, ok2 := false, false
		if run != nil {
			c, ok1 = run.Get(Credgate)
			p, ok2 = run.Get(peer)
		}
		if !ok1 || !ok2 || p.RPS == 0 {
			v.Absent = true
		} else {
			x := c.RPS / p.RPS
			v.Got = fmt.Sprintf("%.2f×", x)
			v.Pass = x >= min
		}
		out = append(out, v)
	}
	ratio("keep-alive rps", r.KeepAlive, Goproxy, KeepAliveGoproxy20)
	ratio("keep-alive rps", r.KeepAlive, Squid, KeepAliveSquid20)
	ratio("new-connection rps", r.NewConn, Goproxy, NewConnGoproxy20)
	v := Verdict{Name: "added p50 at fixed rate", Want: fmt.Sprintf("≤ %.1f× goproxy's added p50", AddedP50Goproxy20)}
	var c, g, d loadgen.Result
	ok1, ok2, ok3 := false, false, false
	if r.FixedRate != nil {
		c, ok1 = r.FixedRate.Get(Credgate)
		g, ok2 = r.FixedRate.Get(Goproxy)
		d, ok3 = r.FixedRate.Get(Direct)
	}
	if !ok1 || !ok2 || !ok3 || g.P50 <= d.P50 {
		v.Absent = true
	} else {
		x := float64(c.P50-d.P50) / float64(g.P50-d.P50)
		v.Got = fmt.Sprintf("%.2f× (%s vs %s)", x, Dur(c.P50-d.P50), Dur(g.P50-d.P50))
		v.Pass = x <= AddedP50Goproxy20
	}
	out = append(out, v)
	out = append(out, r.H2Streams.verdict())
	out = append(out, r.BigBody.verdicts()...)
	out = append(out, r.Idle.verdicts()...)
	return out
}

// Write prints the whole report as Markdown.
func (r *Results) Write(w io.Writer) {
	fmt.Fprintf(w, "## Set-up\n\n")
	for _, k := range r.Order {
		fmt.Fprintf(w, "- %s: %s\n", k, r.Env[k])
	}
	fmt.Fprintf(w, "\nLatencies are per request (new-connection: including TCP, CONNECT and the TLS handshake). \"proxy CPU/req\" is the proxy process's user+system CPU time divided by the requests it served in the measured windows. \"other CPU\" is the largest share of the machine's CPU that processes outside the benchmark used during one of the target's windows: above a few percent, that target's figures are disturbed.\n\n")
	if r.KeepAlive != nil {
		writeRun(w, r.Titles["keep_alive"], r.KeepAlive, false)
		writeRatio(w, r.KeepAlive, KeepAliveRatio)
		if x, ok := r.KeepAlive.TwoFactorRatio(); ok {
			fmt.Fprintf(w, "Two factors (issue 3): credgate-2fa/credgate keep-alive rps **%.2f×** (target ≥ %.2f×: %s)\n\n", x, TwoFactorRatio, passMiss(x >= TwoFactorRatio))
		}
	}
	if r.KeepAlivePost != nil {
		writeRun(w, r.Titles["keep_alive_post"], r.KeepAlivePost, false)
		writeRatio(w, r.KeepAlivePost, KeepAliveRatio)
	}
	if r.NewConn != nil {
		writeRun(w, r.Titles["new_conn"], r.NewConn, false)
		writeRatio(w, r.NewConn, NewConnRatio)
	}
	if r.NewConnResume != nil {
		writeRun(w, r.Titles["new_conn_resume"], r.NewConnResume, false)
		writeRatio(w, r.NewConnResume, NewConnRatio)
		writeResumed(w, r.NewConnResume)
	}
	if r.NewConn != nil || r.NewConnResume != nil {
		writeNewConn20(w, r)
	}
	if r.FixedRate != nil {
		writeRun(w, r.Titles["fixed_rate"], r.FixedRate, true)
		writeAdded(w, r.FixedRate)
	}
	if len(r.Memory) > 0 {
		writeMemory(w, r.Titles["memory"], r.Memory)
	}
	if r.H2Streams != nil {
		r.H2Streams.write(w, r.Titles["h2_streams"])
	}
	if r.BigBody != nil {
		r.BigBody.write(w, r.Titles["bigbody"])
	}
	if r.Idle != nil {
		r.Idle.write(w, r.Titles["idle10k"])
	}
	writeFloor(w, r.FloorRows())
	writeVerdicts(w, "Targets (issues 2 and 3)", r.Verdicts())
	writeVerdicts(w, "Targets (issue 20)", r.Verdicts20())
	if r.hasRedisTargets() {
		writeRedis(w, r)
		writeVerdicts(w, "Targets (issue 7)", r.RedisVerdicts())
	}
}

func writeVerdicts(w io.Writer, title string, vs []Verdict) {
	fmt.Fprintf(w, "## %s\n\n| target | want | got | |\n|---|---|---|---|\n", title)
	for _, v := range vs {
		mark := "MISS"
		switch {
		case v.Absent:
			mark, v.Got = "not measured", "–"
		case v.Pass:
			mark = "PASS"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", v.Name, v.Want, v.Got, mark)
	}
	fmt.Fprintln(w)
}

// hasRedisTargets reports whether any issue 7 target ran or was skipped.
func (r *Results) hasRedisTargets() bool {
	for _, run := range []*Run{r.KeepAlive, r.NewConn, r.FixedRate} {
		if run == nil {
			continue
		}
		for _, t := range []string{CredgateRedis, CredgateRedisRL, CredgateRL} {
			if _, ok := run.Get(t); ok {
				return true
			}
			if _, ok := run.Skipped[t]; ok {
				return true
			}
		}
	}
	return false
}

// RedisVerdicts evaluates issue 7's benchmark target: keep-alive
// throughput with the Redis backend configured against in memory.
func (r *Results) RedisVerdicts() []Verdict {
	v := Verdict{Name: "keep-alive rps with cache.redis (L1 hits)", Want: fmt.Sprintf("≥ %.2f× in memory", RedisRatio)}
	c, ok1 := r.KeepAlive.Get(Credgate)
	x, ok2 := r.KeepAlive.Get(CredgateRedis)
	if !ok1 || !ok2 || c.RPS == 0 {
		v.Absent = true
	} else {
		q := x.RPS / c.RPS
		v.Got = fmt.Sprintf("%.2f×", q)
		v.Pass = q >= RedisRatio
	}
	return []Verdict{v}
}

// writeRedis prints the issue 7 comparisons: Redis backend against in
// memory, and the cost of a rate limit that never refuses.
func writeRedis(w io.Writer, r *Results) {
	fmt.Fprintf(w, "## Redis backend and rate limiter (issue 7)\n\n")
	ratio := func(run *Run, a, b string) (float64, bool) {
		x, ok1 := run.Get(a)
		y, ok2 := run.Get(b)
		if !ok1 || !ok2 || y.RPS == 0 {
			return 0, false
		}
		return x.RPS / y.RPS, true
	}
	var parts []string
	if q, ok := ratio(r.KeepAlive, CredgateRedis, Credgate); ok {
		parts = append(parts, fmt.Sprintf("credgate-redis/credgate **%.2f×** (target ≥ %.2f×: %s)", q, RedisRatio, passMiss(q >= RedisRatio)))
	}
	if q, ok := ratio(r.KeepAlive, CredgateRedisRL, CredgateRedis); ok {
		parts = append(parts, fmt.Sprintf("credgate-redis-rl/credgate-redis **%.2f×** (a shared rate limit that never refuses: one Redis script call per request)", q))
	}
	if q, ok := ratio(r.KeepAlive, CredgateRL, Credgate); ok {
		parts = append(parts, fmt.Sprintf("credgate-rl/credgate **%.2f×** (the same limit checked in process)", q))
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "Keep-alive rps: %s\n\n", strings.Join(parts, " · "))
	}
	parts = nil
	for _, p := range [][2]string{{CredgateRedis, Credgate}, {CredgateRedisRL, CredgateRedis}, {CredgateRL, Credgate}} {
		x, ok1 := r.FixedRate.Get(p[0])
		y, ok2 := r.FixedRate.Get(p[1])
		if ok1 && ok2 && x.Requests > 0 && y.Requests > 0 {
			parts = append(parts, fmt.Sprintf("%s adds p50 %s, p99 %s over %s", p[0], Dur(x.P50-y.P50), Dur(x.P99-y.P99), p[1]))
		}
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "Fixed rate: %s\n\n", strings.Join(parts, " · "))
	}
	if run := r.KeepAlive; run != nil {
		parts = nil
		for _, t := range []string{Credgate, CredgateRedis, CredgateRedisRL, CredgateRL} {
			d, ok := run.CPUPerRequest[t]
			if !ok {
				continue
			}
			s := fmt.Sprintf("%s %s", t, Dur(d))
			if h, ok := run.HelperCPUPerRequest[t]; ok {
				s += fmt.Sprintf(" + redis-server %s", Dur(h))
			}
			parts = append(parts, s)
		}
		if c, ok := run.CPUPerRequest[Credgate]; ok && c > 0 {
			if x, ok := run.CPUPerRequest[CredgateRedis]; ok {
				// CPU per request is far less disturbed by other load on
				// the machine than rps; on a CPU-bound machine it bounds
				// throughput.
				parts = append(parts, fmt.Sprintf("credgate-redis uses %.2f× the CPU of credgate per request", float64(x+run.HelperCPUPerRequest[CredgateRedis])/float64(c)))
			}
		}
		if len(parts) > 0 {
			fmt.Fprintf(w, "CPU per keep-alive request: %s\n\n", strings.Join(parts, " · "))
		}
	}
}

func writeRun(w io.Writer, title string, run *Run, fixed bool) {
	fmt.Fprintf(w, "## %s\n\n", title)
	if fixed {
		fmt.Fprintf(w, "| target | rps | p50 | p99 | p99.9 | max | errors | proxy CPU/req | sender lag p99 | extra dials | other CPU |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	} else {
		fmt.Fprintf(w, "| target | rps | rps per round | p50 | p99 | p99.9 | errors | proxy CPU/req | other CPU |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	}
	for _, x := range run.Results {
		cpu := "–"
		if d, ok := run.CPUPerRequest[x.Target]; ok {
			cpu = Dur(d)
			if h, ok := run.HelperCPUPerRequest[x.Target]; ok {
				cpu += " + " + Dur(h) + " redis"
			}
		}
		other := "–"
		if f, ok := run.Foreign[x.Target]; ok {
			other = fmt.Sprintf("%.0f%%", 100*f)
		}
		if fixed {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %d | %s | %s | %d | %s |\n", x.Target, Rate(x.RPS), Dur(x.P50), Dur(x.P99), Dur(x.P999), Dur(x.Max), x.Errors, cpu, Dur(x.LagP99), x.ExtraDials, other)
		} else {
			var per []string
			for _, r := range x.RoundRPS {
				per = append(per, Rate(r))
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %d | %s | %s |\n", x.Target, Rate(x.RPS), strings.Join(per, " / "), Dur(x.P50), Dur(x.P99), Dur(x.P999), x.Errors, cpu, other)
		}
	}
	fmt.Fprintln(w)
	for t, why := range run.Skipped {
		fmt.Fprintf(w, "%s not measured: %s\n\n", t, oneLine(why))
	}
	for _, x := range run.Results {
		if x.FirstError != "" {
			fmt.Fprintf(w, "first error (%s): %s\n\n", x.Target, oneLine(x.FirstError))
		}
	}
}

func writeRatio(w io.Writer, run *Run, want float64) {
	c, okc := run.Get(Credgate)
	d, okd := run.Get(Direct)
	g, okg := run.Get(Goproxy)
	var parts []string
	if okc && okd && d.RPS > 0 {
		parts = append(parts, fmt.Sprintf("credgate/direct **%.2f×**", c.RPS/d.RPS))
	}
	if okg && okd && d.RPS > 0 {
		parts = append(parts, fmt.Sprintf("goproxy/direct %.2f×", g.RPS/d.RPS))
	}
	if okc && okg && g.RPS > 0 {
		x := c.RPS / g.RPS
		parts = append(parts, fmt.Sprintf("credgate/goproxy **%.2f×** (target ≥ %.2f×: %s)", x, want, passMiss(x >= want)))
	}
	for _, peer := range Peers[1:] {
		if p, ok := run.Get(peer); okc && ok && p.RPS > 0 {
			parts = append(parts, fmt.Sprintf("credgate/%s **%.2f×**", peer, c.RPS/p.RPS))
		}
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "%s\n\n", strings.Join(parts, " · "))
	}
}

// writeResumed says how many of each target's new connections resumed
// their TLS session: a proxy that issues no usable tickets makes full
// handshakes whatever the client keeps.
func writeResumed(w io.Writer, run *Run) {
	var parts []string
	for _, x := range run.Results {
		if x.Requests > 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f%%", x.Target, 100*float64(x.Resumed)/float64(x.Requests)))
		}
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "Connections that resumed their TLS session (to the origin name): %s\n\n", strings.Join(parts, " · "))
	}
}

// writeNewConn20 prints issue 20's new-connection target, with and
// without session resumption, and the proxies' CPU per connection.
func writeNewConn20(w io.Writer, r *Results) {
	fmt.Fprintf(w, "## New connections (issue 20)\n\n| client | credgate/goproxy rps | want | | CPU per connection: goproxy | credgate | credgate/goproxy CPU | client CPU per connection: with goproxy | with credgate |\n|---|--:|---|---|--:|--:|--:|--:|--:|\n")
	for _, c := range []struct {
		name string
		run  *Run
	}{{"full handshake every time", r.NewConn}, {"resumes TLS sessions", r.NewConnResume}} {
		if c.run == nil {
			continue
		}
		x, ok1 := c.run.Get(Credgate)
		g, ok2 := c.run.Get(Goproxy)
		if !ok1 || !ok2 || g.RPS == 0 {
			fmt.Fprintf(w, "| %s | – | ≥ %.2f× | not measured | | | | | |\n", c.name, NewConnRatio20)
			continue
		}
		q := x.RPS / g.RPS
		cpuG, cpuC, cpuQ := "–", "–", "–"
		dg, okg := c.run.CPUPerRequest[Goproxy]
		dc, okc := c.run.CPUPerRequest[Credgate]
		if okg {
			cpuG = Dur(dg)
		}
		if okc {
			cpuC = Dur(dc)
		}
		if okg && okc && dg > 0 {
			cpuQ = fmt.Sprintf("%.2f×", float64(dc)/float64(dg))
		}
		clG, clC := "–", "–"
		if d, ok := c.run.ClientCPUPerRequest[Goproxy]; ok {
			clG = Dur(d)
		}
		if d, ok := c.run.ClientCPUPerRequest[Credgate]; ok {
			clC = Dur(d)
		}
		fmt.Fprintf(w, "| %s | %.2f× | ≥ %.2f× | %s | %s | %s | %s | %s | %s |\n", c.name, q, NewConnRatio20, passMiss(q >= NewConnRatio20), cpuG, cpuC, cpuQ, clG, clC)
	}
	fmt.Fprintln(w)
}

func writeAdded(w io.Writer, run *Run) {
	d, okd := run.Get(Direct)
	if !okd {
		return
	}
	var parts []string
	for _, t := range append(slices.Clone(Peers), Credgate) {
		x, ok := run.Get(t)
		if !ok {
			continue
		}
		s := fmt.Sprintf("%s adds p50 %s, p99 %s over direct", t, Dur(x.P50-d.P50), Dur(x.P99-d.P99))
		if t == Credgate {
			s += fmt.Sprintf(" (target p50 ≤ %s: %s)", Dur(AddedP50), passMiss(x.P50-d.P50 <= AddedP50))
		}
		parts = append(parts, s)
	}
	fmt.Fprintf(w, "%s\n\n", strings.Join(parts, " · "))
}

func writeMemory(w io.Writer, title string, mem []Memory) {
	fmt.Fprintf(w, "## %s\n\n| proxy | RSS idle | RSS with conns | of which file-backed | per connection | RSS after all scenarios | peak RSS | target ≤ %s |\n|---|--:|--:|--:|--:|--:|--:|---|\n", title, MiB(MaxRSS))
	for _, m := range mem {
		if m.Err != "" {
			fmt.Fprintf(w, "| %s | – | – | – | – | – | – | not measured: %s |\n", m.Target, oneLine(m.Err))
			continue
		}
		verdict := "–"
		if m.Target == Credgate {
			verdict = passMiss(m.Loaded <= MaxRSS)
		}
		file := "–"
		if m.LoadedFile > 0 {
			file = MiB(m.LoadedFile)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", m.Target, MiB(m.Idle), MiB(m.Loaded), file, KiB(m.PerConn()), MiB(m.After), MiB(m.Peak), verdict)
	}
	fmt.Fprintln(w, "\"of which file-backed\" is RssFile, the binary's and libraries' mapped pages: it moves by several MiB between builds of the same code with how the page cache holds the file (bench/README.md); compare RSS minus it between builds.")
	fmt.Fprintln(w)
}

func passMiss(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 240 {
		s = s[:240] + "…"
	}
	return s
}

// Dur formats a duration in milliseconds with three decimals.
func Dur(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

// Rate formats requests per second.
func Rate(x float64) string { return fmt.Sprintf("%.0f", x) }

// MiB formats bytes as MiB with one decimal.
func MiB(b int64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

// KiB formats bytes as KiB with one decimal.
func KiB(b int64) string { return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10)) }

// FloorRow is one line of the floor's table: how far the floor gets
// against the target's reference (goproxy, or direct for the 1 GiB
// transfers) in a scenario, next to issue 20's target for credgate.
// The floor does the least any intercepting proxy must, so its ratio is
// the best any proxy could reach in the same run.
type FloorRow struct {
	// Scenario names the figure ("keep-alive rps", …).
	Scenario string
	// Want is issue 20's target for credgate against goproxy (or direct).
	Want string
	// Floor is the floor's figure against the reference's: rps over
	// goproxy's, its added p50 over goproxy's added p50, or its throughput
	// over direct's.
	Floor string
	// Credgate is credgate's figure against the reference's ("–" when not
	// measured) and VsFloor credgate's against the floor's.
	Credgate, VsFloor string
	// CPU is the proxy CPU time per request (per GiB for the transfers)
	// of the floor, goproxy and credgate.
	CPU string
	// Reachable says whether the floor meets the target: if it does not,
	// no proxy can in this run.
	Reachable bool
}

// FloorRows compares the floor with goproxy and credgate in each
// scenario where the floor and goproxy were both measured.
func (r *Results) FloorRows() []FloorRow {
	var out []FloorRow
	cpu := func(run *Run) string {
		var parts []string
		for _, t := range []string{Floor, Goproxy, Credgate} {
			if d, ok := run.CPUPerRequest[t]; ok {
				parts = append(parts, Dur(d))
			} else {
				parts = append(parts, "–")
			}
		}
		return strings.Join(parts, " · ")
	}
	rps := func(name string, run *Run, want float64) {
		f, okf := run.Get(Floor)
		g, okg := run.Get(Goproxy)
		if !okf || !okg || g.RPS == 0 {
			return
		}
		row := FloorRow{Scenario: name, Want: fmt.Sprintf("≥ %.2f× goproxy", want), Floor: fmt.Sprintf("%.2f× goproxy", f.RPS/g.RPS), Credgate: "–", VsFloor: "–", CPU: cpu(run), Reachable: f.RPS/g.RPS >= want}
		if c, ok := run.Get(Credgate); ok {
			row.Credgate = fmt.Sprintf("%.2f× goproxy", c.RPS/g.RPS)
			if f.RPS > 0 {
				row.VsFloor = fmt.Sprintf("%.2f× its rps", c.RPS/f.RPS)
			}
		}
		out = append(out, row)
	}
	rps("keep-alive rps", r.KeepAlive, KeepAliveGoproxy20)
	rps("new-connection rps, full handshake", r.NewConn, NewConnGoproxy20)
	rps("new-connection rps, client resumes", r.NewConnResume, NewConnRatio20)
	f, okf := r.FixedRate.Get(Floor)
	g, okg := r.FixedRate.Get(Goproxy)
	d, okd := r.FixedRate.Get(Direct)
	if okf && okg && okd && f.Requests > 0 && g.Requests > 0 && d.Requests > 0 && g.P50 > d.P50 {
		fa, ga := f.P50-d.P50, g.P50-d.P50
		x := float64(fa) / float64(ga)
		row := FloorRow{Scenario: "added p50 at fixed rate", Want: fmt.Sprintf("≤ %.1f× goproxy's added p50", AddedP50Goproxy20), Floor: fmt.Sprintf("%.2f× goproxy's (%s vs %s)", x, Dur(fa), Dur(ga)), Credgate: "–", VsFloor: "–", CPU: cpu(r.FixedRate), Reachable: x <= AddedP50Goproxy20}
		if c, ok := r.FixedRate.Get(Credgate); ok && c.Requests > 0 {
			ca := c.P50 - d.P50
			row.Credgate = fmt.Sprintf("%.2f× goproxy's (%s)", float64(ca)/float64(ga), Dur(ca))
			if fa > 0 {
				row.VsFloor = fmt.Sprintf("%.2f× its added p50", float64(ca)/float64(fa))
			}
		}
		out = append(out, row)
	}
	if b := r.BigBody; b != nil {
		for _, dir := range []string{Upload, Download} {
			f, okf := b.get(Floor, dir)
			d, okd := b.get(Direct, dir)
			if !okf || !okd {
				continue
			}
			x := f.Throughput() / d.Throughput()
			var parts []string
			for _, t := range []string{Floor, Goproxy, Credgate} {
				if row, ok := b.get(t, dir); ok && row.cpuPerGiB() > 0 {
					parts = append(parts, fmt.Sprintf("%.2f s", row.cpuPerGiB().Seconds()))
				} else {
					parts = append(parts, "–")
				}
			}
			row := FloorRow{Scenario: Size(b.Bytes) + " " + dir + " throughput", Want: fmt.Sprintf("≥ %.2f× direct", BigBodyDirect20), Floor: fmt.Sprintf("%.2f× direct", x), Credgate: "–", VsFloor: "–", CPU: strings.Join(parts, " · ") + " per GiB", Reachable: x >= BigBodyDirect20}
			if c, ok := b.get(Credgate, dir); ok {
				row.Credgate = fmt.Sprintf("%.2f× direct", c.Throughput()/d.Throughput())
				row.VsFloor = fmt.Sprintf("%.2f× its throughput", c.Throughput()/f.Throughput())
			}
			out = append(out, row)
		}
	}
	return out
}

// writeFloor prints the floor's table when the floor was measured.
func writeFloor(w io.Writer, rows []FloorRow) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "## The floor: the least any intercepting proxy does here (issue 20)\n\n")
	fmt.Fprintf(w, "The floor (bench/internal/floor) answers CONNECT, terminates and originates TLS, relays bytes and inserts the header line; it reads nothing of HTTP but Content-Length and is not a correct proxy. No proxy does less on these requests, so the floor's ratio is the best any proxy could reach against the same reference (goproxy, or direct for the transfers) in this run.\n\n")
	fmt.Fprintf(w, "| figure | issue 20 target | floor | credgate | credgate against the floor | proxy CPU: floor · goproxy · credgate | the target is |\n|---|---|--:|--:|--:|--:|---|\n")
	for _, r := range rows {
		reach := "beyond the floor: no proxy reaches it in this run"
		if r.Reachable {
			reach = "within the floor's reach"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", r.Scenario, r.Want, r.Floor, r.Credgate, r.VsFloor, r.CPU, reach)
	}
	fmt.Fprintln(w)
}
