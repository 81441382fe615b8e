package report

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/credgate/credgate/bench/internal/loadgen"
)

// H1Suffix marks, in the h2-streams scenario, a target's HTTP/1.1 row:
// the same concurrency on as many keep-alive connections.
const H1Suffix = "-h1"

// H2Streams is the h2-streams scenario (issue 20): one HTTP/2 client
// with Streams concurrent streams on one connection through each target,
// and, for comparison, the same concurrency over HTTP/1.1 on Streams
// keep-alive connections (targets named with H1Suffix).
type H2Streams struct {
	// Streams is the number of concurrent streams (and of HTTP/1.1
	// connections in the comparison rows).
	Streams int `json:"streams"`
	// Run holds the results.
	Run *Run `json:"run"`
	// Notes are printed under the table (each proxy's upstream protocol).
	Notes []string `json:"notes,omitempty"`
}

// peer returns the result credgate's h2 client is compared with and how
// to say so: goproxy with the same h2 client, or, when goproxy could not
// speak h2 to the client, goproxy over HTTP/1.1 with Streams connections.
func (h *H2Streams) peer() (loadgen.Result, string, bool) {
	if g, ok := h.Run.Get(Goproxy); ok && g.RPS > 0 {
		return g, "goproxy (the same h2 client)", true
	}
	if g, ok := h.Run.Get(Goproxy + H1Suffix); ok && g.RPS > 0 {
		return g, fmt.Sprintf("goproxy over HTTP/1.1 with %d connections (goproxy did not speak h2 to the client)", h.Streams), true
	}
	return loadgen.Result{}, "goproxy", false
}

func (h *H2Streams) verdict() Verdict {
	v := Verdict{Name: "one HTTP/2 client, concurrent streams", Want: fmt.Sprintf("≥ %.2f× goproxy", H2Goproxy20)}
	if h == nil || h.Run == nil {
		v.Absent = true
		return v
	}
	v.Name = fmt.Sprintf("one HTTP/2 client, %d concurrent streams", h.Streams)
	c, okc := h.Run.Get(Credgate)
	p, how, okp := h.peer()
	if !okc || !okp {
		v.Absent = true
		return v
	}
	v.Want = fmt.Sprintf("≥ %.2f× %s", H2Goproxy20, how)
	x := c.RPS / p.RPS
	v.Got = fmt.Sprintf("%.2f×", x)
	v.Pass = x >= H2Goproxy20
	return v
}

func (h *H2Streams) write(w io.Writer, title string) {
	fmt.Fprintf(w, "## %s\n\n| target | client | connections | rps | rps per round | p50 | p99 | p99.9 | errors | proxy CPU/req | other CPU |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n", title)
	run := h.Run
	for _, x := range run.Results {
		client, conns := fmt.Sprintf("h2, %d streams", h.Streams), fmt.Sprint(x.Conns)
		if strings.HasSuffix(x.Target, H1Suffix) {
			client, conns = "HTTP/1.1", fmt.Sprint(h.Streams)
		}
		var per []string
		for _, r := range x.RoundRPS {
			per = append(per, Rate(r))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s |\n", x.Target, client, conns, Rate(x.RPS), strings.Join(per, " / "),
			Dur(x.P50), Dur(x.P99), Dur(x.P999), x.Errors, cpuCell(run, x.Target), foreignCell(run, x.Target))
	}
	fmt.Fprintln(w)
	writeSkipped(w, run)
	v := h.verdict()
	if !v.Absent {
		fmt.Fprintf(w, "credgate/goproxy: **%s** (target %s: %s)", v.Got, v.Want, passMiss(v.Pass))
		c, _ := run.Get(Credgate)
		if c1, ok := run.Get(Credgate + H1Suffix); ok && c1.RPS > 0 {
			fmt.Fprintf(w, " · credgate h2/HTTP/1.1 %.2f×", c.RPS/c1.RPS)
		}
		if d, ok := run.Get(Direct); ok && d.RPS > 0 {
			fmt.Fprintf(w, " · credgate/direct (h2) %.2f×", c.RPS/d.RPS)
		}
		fmt.Fprintf(w, "\n\n")
	}
	for _, n := range h.Notes {
		fmt.Fprintf(w, "%s\n\n", n)
	}
}

// Transfer directions of the bigbody scenario.
const (
	Upload   = "upload"
	Download = "download"
)

// BigBody is the bigbody scenario (issue 20): large uploads and downloads
// through each target, one at a time, with the proxy's RSS sampled
// during each.
type BigBody struct {
	// Bytes is the size of every body.
	Bytes int64 `json:"bytes"`
	// Rows holds one row per target and direction.
	Rows []BigBodyRow `json:"rows"`
	// Interval is how often RSS was sampled.
	Interval time.Duration `json:"rss_interval_ns"`
	// Notes are printed under the table.
	Notes []string `json:"notes,omitempty"`
}

// BigBodyRow is one target's transfers in one direction (one per round).
type BigBodyRow struct {
	Target    string             `json:"target"`
	Direction string             `json:"direction"`
	Transfers []loadgen.Transfer `json:"transfers"`
	// RSSStart is the proxy's VmRSS just before the transfer whose RSS
	// grew most, RSSPeak the largest sample during it, RSSEnd the sample
	// at its end; zero for direct.
	RSSStart int64 `json:"rss_start_bytes,omitempty"`
	RSSPeak  int64 `json:"rss_peak_bytes,omitempty"`
	RSSEnd   int64 `json:"rss_end_bytes,omitempty"`
	// ProxyCPU is the proxy's CPU time (user+system) over all the
	// transfers of the row.
	ProxyCPU time.Duration `json:"proxy_cpu_ns,omitempty"`
	// Foreign is the largest share (0..1) of the machine's CPU that
	// processes outside the benchmark used during one of the transfers.
	Foreign float64 `json:"foreign_cpu,omitempty"`
	// Err is set when the transfers failed.
	Err string `json:"error,omitempty"`
}

// Throughput is the bytes moved over the time taken, all rounds together.
func (r BigBodyRow) Throughput() float64 {
	var b int64
	var d time.Duration
	for _, x := range r.Transfers {
		b += x.Bytes
		d += x.Elapsed
	}
	if d <= 0 {
		return 0
	}
	return float64(b) / d.Seconds()
}

// Growth is RSSPeak - RSSStart.
func (r BigBodyRow) Growth() int64 { return r.RSSPeak - r.RSSStart }

func (b *BigBody) get(target, dir string) (BigBodyRow, bool) {
	for _, r := range b.Rows {
		if r.Target == target && r.Direction == dir && r.Err == "" && r.Throughput() > 0 {
			return r, true
		}
	}
	return BigBodyRow{}, false
}

func (b *BigBody) verdicts() []Verdict {
	var out []Verdict
	size := "1 GiB"
	if b != nil {
		size = Size(b.Bytes)
	}
	for _, dir := range []string{Upload, Download} {
		v := Verdict{Name: size + " " + dir + " throughput", Want: fmt.Sprintf("≥ %.2f× direct", BigBodyDirect20)}
		var c, d BigBodyRow
		ok1, ok2 := false, false
		if b != nil {
			c, ok1 = b.get(Credgate, dir)
			d, ok2 = b.get(Direct, dir)
		}
		if !ok1 || !ok2 {
			v.Absent = true
		} else {
			x := c.Throughput() / d.Throughput()
			v.Got = fmt.Sprintf("%.2f× (%s vs %s)", x, mibps(c.Throughput()), mibps(d.Throughput()))
			v.Pass = x >= BigBodyDirect20
		}
		out = append(out, v)
	}
	v := Verdict{Name: "gateway RSS during the " + size + " transfers", Want: "flat: peak − start ≤ " + MiB(BigBodyRSSGrowth20)}
	var worst BigBodyRow
	v.Absent = true
	for _, dir := range []string{Upload, Download} {
		if b == nil {
			break
		}
		if c, ok := b.get(Credgate, dir); ok && (v.Absent || c.Growth() > worst.Growth()) {
			worst, v.Absent = c, false
		}
	}
	if !v.Absent {
		v.Got = signedMiB(worst.Growth()) + " (" + worst.Direction + ")"
		v.Pass = worst.Growth() <= BigBodyRSSGrowth20
	}
	return append(out, v)
}

// cpuPerGiB is the proxy CPU time per GiB moved in r's transfers, 0
// without a process or bytes.
func (r BigBodyRow) cpuPerGiB() time.Duration {
	var total int64
	for _, x := range r.Transfers {
		total += x.Bytes
	}
	if r.RSSStart == 0 || total == 0 {
		return 0
	}
	return time.Duration(float64(r.ProxyCPU) / (float64(total) / (1 << 30)))
}

func (b *BigBody) write(w io.Writer, title string) {
	fmt.Fprintf(w, "## %s\n\n| target | direction | throughput | per transfer | vs direct | proxy CPU per GiB | RSS at start | peak RSS | peak − start | end RSS | other CPU |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n", title)
	for _, r := range b.Rows {
		if r.Err != "" {
			fmt.Fprintf(w, "| %s | %s | – | – | – | – | – | – | – | – | not measured: %s |\n", r.Target, r.Direction, oneLine(r.Err))
			continue
		}
		var per []string
		for _, x := range r.Transfers {
			per = append(per, fmt.Sprintf("%s in %.2f s", mibps(x.BytesPerSecond()), x.Elapsed.Seconds()))
		}
		vs := "–"
		if d, ok := b.get(Direct, r.Direction); ok && r.Target != Direct {
			vs = fmt.Sprintf("%.2f×", r.Throughput()/d.Throughput())
		}
		cpu, start, peak, growth, end := "–", "–", "–", "–", "–"
		if r.RSSStart > 0 {
			if c := r.cpuPerGiB(); c > 0 {
				cpu = fmt.Sprintf("%.2f s", c.Seconds())
			}
			start, peak, growth, end = MiB(r.RSSStart), MiB(r.RSSPeak), signedMiB(r.Growth()), MiB(r.RSSEnd)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f%% |\n", r.Target, r.Direction, mibps(r.Throughput()), strings.Join(per, " / "), vs, cpu, start, peak, growth, end, 100*r.Foreign)
	}
	fmt.Fprintln(w)
	for _, v := range b.verdicts() {
		if !v.Absent {
			fmt.Fprintf(w, "%s: **%s** (target %s: %s)\n\n", v.Name, v.Got, v.Want, passMiss(v.Pass))
		}
	}
	for _, n := range b.Notes {
		fmt.Fprintf(w, "%s\n\n", n)
	}
}

// Idle is the idle10k scenario (issue 20): many idle keep-alive clients
// held open through a proxy, then some of them active at a per-client
// rate, against a small group of clients at the same rate.
type Idle struct {
	// Clients is the number of idle keep-alive clients asked for.
	Clients int `json:"clients"`
	// Active is how many of them send requests in the active phase.
	Active int `json:"active"`
	// Base is the size of the small group whose p99 is the reference.
	Base int `json:"base"`
	// PerClientRPS is the rate each active client sent at;
	// WantPerClientRPS the rate issue 20 names (lower when the machine
	// cannot serve Active × WantPerClientRPS; Notes say why).
	PerClientRPS     float64 `json:"per_client_rps"`
	WantPerClientRPS float64 `json:"want_per_client_rps"`
	// Rows holds one row per proxy.
	Rows []IdleRow `json:"rows"`
	// Notes are printed under the tables (scaling, descriptor limits,
	// source addresses).
	Notes []string `json:"notes,omitempty"`
}

// IdleRow is one proxy's figures.
type IdleRow struct {
	Target string `json:"target"`
	// Opened is how many idle clients were held open, OpenTime how long
	// opening them took (TCP, CONNECT, full TLS handshake, one request
	// each).
	Opened   int           `json:"opened"`
	OpenTime time.Duration `json:"open_ns"`
	// RSSBefore is the proxy's settled VmRSS before the idle clients were
	// opened, RSSIdle with them open, RSSActivePeak the largest sample
	// during the active phase.
	RSSBefore     int64 `json:"rss_before_bytes"`
	RSSIdle       int64 `json:"rss_idle_bytes"`
	RSSActivePeak int64 `json:"rss_active_peak_bytes,omitempty"`
	// FDs is the proxy's open file descriptors with the clients open,
	// FDsBefore before they were opened: the difference is how many of
	// them the proxy still held (it closes clients idle longer than its
	// idle timeout, 120 s for credgate, if opening took that long).
	FDs       int `json:"fds,omitempty"`
	FDsBefore int `json:"fds_before,omitempty"`
	// IdleCPU is the proxy's CPU use, in cores, over 3 s while the
	// clients were open and idle (after its RSS settled).
	IdleCPU float64 `json:"idle_cpu_cores"`
	// BaseForeign and ActiveForeign are the shares (0..1) of the
	// machine's CPU that processes outside the benchmark used during the
	// two runs.
	BaseForeign   float64 `json:"base_foreign_cpu"`
	ActiveForeign float64 `json:"active_foreign_cpu"`
	// BaseRun is the Base clients at the per-client rate, before the idle
	// clients were opened; ActiveRun the Active clients, with the rest
	// idle.
	BaseRun   loadgen.Result `json:"base"`
	ActiveRun loadgen.Result `json:"active_run"`
	// Err is set when the row is incomplete.
	Err string `json:"error,omitempty"`
}

func (x *Idle) credgate() (IdleRow, bool) {
	if x == nil {
		return IdleRow{}, false
	}
	for _, r := range x.Rows {
		if r.Target == Credgate {
			return r, true
		}
	}
	return IdleRow{}, false
}

func (x *Idle) verdicts() []Verdict {
	n := 10000
	if x != nil {
		n = x.Clients
	}
	v := Verdict{Name: fmt.Sprintf("gateway RSS with %s idle keep-alive clients", Count(n)), Want: "≤ " + MiB(IdleRSS20)}
	r, ok := x.credgate()
	if !ok || r.RSSIdle == 0 || r.Opened < x.Clients {
		v.Absent = true
	} else {
		v.Got = MiB(r.RSSIdle)
		v.Pass = r.RSSIdle <= IdleRSS20
		// Fewer held than opened (idle timeout while opening): say so
		// beside the figure, which then covers fewer clients.
		if held := r.FDs - r.FDsBefore; r.FDs > 0 && r.FDsBefore > 0 && held < x.Clients-100 {
			v.Got += fmt.Sprintf(" (only %s held)", Count(held))
		}
	}
	active, base, rate := 2000, 100, 50.0
	if x != nil {
		active, base, rate = x.Active, x.Base, x.PerClientRPS
	}
	p := Verdict{Name: fmt.Sprintf("p99, %s active clients at %s rps each", Count(active), PerClient(rate)), Want: fmt.Sprintf("≤ %.0f× the p99 of %d clients", ActiveP99Ratio20, base)}
	if !ok || r.BaseRun.Requests == 0 || r.ActiveRun.Requests == 0 {
		p.Absent = true
	} else {
		q := float64(r.ActiveRun.P99) / float64(r.BaseRun.P99)
		p.Got = fmt.Sprintf("%.2f× (%s vs %s)", q, Dur(r.ActiveRun.P99), Dur(r.BaseRun.P99))
		p.Pass = q <= ActiveP99Ratio20 && r.ActiveRun.Errors == 0
		if r.ActiveRun.Errors > 0 {
			p.Got += fmt.Sprintf(", %d errors", r.ActiveRun.Errors)
		}
	}
	return []Verdict{v, p}
}

func (x *Idle) write(w io.Writer, title string) {
	fmt.Fprintf(w, "## %s\n\n| proxy | idle clients | opened in | still open at the proxy | RSS before | RSS with them | per client | proxy fds | proxy CPU while idle | target ≤ %s |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n", title, MiB(IdleRSS20))
	for _, r := range x.Rows {
		verdict := "–"
		if r.Target == Credgate && r.RSSIdle > 0 {
			verdict = passMiss(r.RSSIdle <= IdleRSS20)
			if r.Opened < x.Clients {
				verdict = fmt.Sprintf("not measured: %d of %d clients", r.Opened, x.Clients)
			}
		}
		per := "–"
		if r.Opened > 0 && r.RSSIdle > 0 {
			per = KiB((r.RSSIdle - r.RSSBefore) / int64(r.Opened))
		}
		fds := "–"
		if r.FDs > 0 {
			fds = Count(r.FDs)
		}
		held := "–"
		if r.FDs > 0 && r.FDsBefore > 0 {
			held = Count(r.FDs - r.FDsBefore)
		}
		fmt.Fprintf(w, "| %s | %s | %.1f s | %s | %s | %s | %s | %s | %.0f%% of a core | %s |\n", r.Target, Count(r.Opened), r.OpenTime.Seconds(), held, MiB(r.RSSBefore), MiB(r.RSSIdle), per, fds, 100*r.IdleCPU, verdict)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "| proxy | active clients | per client | offered | served rps | p50 | p99 | p99.9 | max | errors | sender lag p99 | new conns | peak RSS | other CPU | p99 vs %d clients (≤ %.0f×) |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n", x.Base, ActiveP99Ratio20)
	for _, r := range x.Rows {
		for _, row := range []struct {
			n       int
			res     loadgen.Result
			peak    int64
			foreign float64
		}{{x.Base, r.BaseRun, 0, r.BaseForeign}, {x.Active, r.ActiveRun, r.RSSActivePeak, r.ActiveForeign}} {
			if row.res.Target == "" {
				continue
			}
			verdict := "–"
			if row.n == x.Active && r.BaseRun.P99 > 0 && row.res.Requests > 0 {
				q := float64(row.res.P99) / float64(r.BaseRun.P99)
				verdict = fmt.Sprintf("%.2f×", q)
				if r.Target == Credgate {
					verdict += " " + passMiss(q <= ActiveP99Ratio20 && row.res.Errors == 0)
				}
			}
			fmt.Fprintf(w, "| %s | %s | %s rps | %s rps | %s | %s | %s | %s | %s | %d | %s | %d | %s | %.0f%% | %s |\n", r.Target, Count(row.n), PerClient(x.PerClientRPS), Rate(float64(row.n)*x.PerClientRPS),
				Rate(row.res.RPS), Dur(row.res.P50), Dur(row.res.P99), Dur(row.res.P999), Dur(row.res.Max), row.res.Errors, Dur(row.res.LagP99), row.res.ExtraDials, MiB(row.peak), 100*row.foreign, verdict)
		}
	}
	fmt.Fprintln(w)
	for _, r := range x.Rows {
		if r.Err != "" {
			fmt.Fprintf(w, "%s: %s\n\n", r.Target, oneLine(r.Err))
		}
		for _, res := range []loadgen.Result{r.BaseRun, r.ActiveRun} {
			if res.FirstError != "" {
				fmt.Fprintf(w, "first error (%s): %s\n\n", r.Target, oneLine(res.FirstError))
			}
		}
	}
	for _, n := range x.Notes {
		fmt.Fprintf(w, "%s\n\n", n)
	}
}

func cpuCell(run *Run, target string) string {
	if d, ok := run.CPUPerRequest[target]; ok {
		return Dur(d)
	}
	return "–"
}

func foreignCell(run *Run, target string) string {
	if f, ok := run.Foreign[target]; ok {
		return fmt.Sprintf("%.0f%%", 100*f)
	}
	return "–"
}

func writeSkipped(w io.Writer, run *Run) {
	for t, why := range run.Skipped {
		fmt.Fprintf(w, "%s not measured: %s\n\n", t, oneLine(why))
	}
	for _, x := range run.Results {
		if x.FirstError != "" {
			fmt.Fprintf(w, "first error (%s): %s\n\n", x.Target, oneLine(x.FirstError))
		}
	}
}

// Size formats a byte count as whole GiB or MiB when it is one, in MiB
// with a decimal otherwise.
func Size(b int64) string {
	switch {
	case b > 0 && b%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", b>>30)
	case b > 0 && b%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", b>>20)
	}
	return MiB(b)
}

func mibps(bps float64) string { return fmt.Sprintf("%.0f MiB/s", bps/(1<<20)) }

func signedMiB(b int64) string { return fmt.Sprintf("%+.1f MiB", float64(b)/(1<<20)) }

// Count formats an integer with thousands separators (10,000).
func Count(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// PerClient formats a per-client rate: whole numbers plainly, fractions
// with two decimals.
func PerClient(r float64) string {
	if r == float64(int64(r)) {
		return fmt.Sprint(int64(r))
	}
	return fmt.Sprintf("%.2f", r)
}
