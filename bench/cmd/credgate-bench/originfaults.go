//go:build linux

package main

// Faults between the gateway and the origin (issue 21): in fault mode a
// share of the requests (the "tox" kind, -fault-rate a second) goes to
// the origin through a Toxiproxy proxy. The clients ask for
// api.origin.test on a second port; the gateway's resolve map sends that
// port to Toxiproxy's listener, which relays to the origin (no DNS or
// /etc/hosts involved), and the policy's origin destination covers both
// ports, so the same static bearer rule injects the credential.
//
// Each request downloads toxBody bytes (origin.DownloadPath: a body with
// a Content-Length), alternately over HTTP/1.1 and HTTP/2, and reads it
// to its end: a body shorter than toxBody that the client read to a clean
// end is a truncation presented as complete, which fails the run under
// any fault. (The bytes themselves are not compared: origin.Pattern
// starts its block afresh at each of the origin's reads, whose sizes
// differ between HTTP/1.1 and HTTP/2.)
//
// The faults are Toxiproxy toxics on the origin proxy's downstream
// (origin to gateway): latency, a bandwidth limit, the connection cut
// mid-body with a TCP RST (limit_data), resets (reset_peer) and a
// half-open connection that swallows everything (timeout 0). Each says
// which errors a request that meets it (started while it is in force, or
// running when it began) may end with; any other request must succeed,
// and one failing within the recovery bound after an origin fault ended
// is reported on its own (a pooled upstream connection the fault left
// dead and the gateway reused).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"

	"github.com/credgate/credgate/bench/internal/loadgen"
	"github.com/credgate/credgate/bench/internal/origin"
)

const (
	// toxWorkers run the requests through the origin proxy: under the
	// half-open fault each waits up to upstreamTimeout.
	toxWorkers = 8
	// toxBody is the size of each download through the origin proxy.
	toxBody = 64 << 10
	// upstreamTimeout is the gateway's upstream.response_header_timeout
	// and tls_handshake_timeout in fault mode (60 s and 10 s by default):
	// short enough that a half-open origin is answered 504 within a
	// fault.
	upstreamTimeout = 5 * time.Second
	// upstreamIdle is upstream.idle_conn_timeout in fault mode (90 s by
	// default). Go's HTTP/2 client keeps a connection that broke for its
	// idle timeout (the idle timer is armed again when the broken
	// connection's last stream is forgotten), about 40 KiB each: under the
	// cut and reset faults, 20 broken connections a second would hold
	// tens of MiB for 90 s and fail the RSS verdict without a leak.
	upstreamIdle = 10 * time.Second
	// cutAfter is how many bytes of each connection the cut fault lets
	// through: the TLS handshake and the start of the body.
	cutAfter = 16 << 10
)

// originFault is what a fault between the gateway and the origin lets
// the requests through it see.
type originFault struct {
	// allow are the error classes (toxClass) a request started during the
	// fault may end with; none for a fault that must not fail a request.
	allow []string
	// bound, if set, is the longest a request started during the fault
	// may take to be answered (a half-open origin must not hang the
	// client).
	bound time.Duration
}

// toxRecord is what the requests during one origin fault saw: those
// started while it was in force, and those it began on while they ran.
type toxRecord struct {
	name    string
	fault   *originFault
	from    time.Duration // since the mix started
	n       int64
	ok      int64
	classes map[string]int64 // errors by class
	slowest time.Duration
	// disallowed counts errors not in fault.allow, late answers after
	// bound.
	disallowed, late int64
}

// startOriginProxy puts a Toxiproxy proxy in front of the origin at
// originAddr; the gateway reaches it as originHost on the proxy's port.
func (fe *faultEnv) startOriginProxy(originAddr string) error {
	addr, err := freePort()
	if err != nil {
		return err
	}
	_, port, _ := strings.Cut(addr, ":")
	if fe.originPort, err = strconv.Atoi(port); err != nil {
		return fmt.Errorf("origin proxy port %q: %w", port, err)
	}
	if fe.originProxy, err = fe.tox.CreateProxy("origin", addr, originAddr); err != nil {
		return fmt.Errorf("toxiproxy: create the origin proxy: %w", err)
	}
	fe.originProxyAddr = addr
	return nil
}

// originFaults are the faults of the origin proxy.
func (fe *faultEnv) originFaults() []fault {
	p := fe.originProxy
	add := func(name, typ string, toxicity float32, attrs toxiproxy.Attributes) error {
		_, err := p.AddToxic(name, typ, "downstream", toxicity, attrs)
		return err
	}
	one := func(name, typ string, attrs toxiproxy.Attributes) func() error {
		return func() error { return add(name, typ, 1, attrs) }
	}
	remove := func(names ...string) func() error {
		return func() error {
			var errs []error
			for _, n := range names {
				errs = append(errs, p.RemoveToxic(n))
			}
			return errors.Join(errs...)
		}
	}
	// A body cut off reaches an HTTP/1.1 client as a connection closed
	// before the announced length (eof, reset) and an HTTP/2 client as a
	// reset stream; a connection broken before the response headers as
	// 502 upstream_error.
	cut := []string{"status 502 upstream_error", "eof", "reset", "stream reset"}
	return []fault{
		{name: "origin slow (+200 ms)", source: "tox", origin: &originFault{},
			start: one("o-latency", "latency", toxiproxy.Attributes{"latency": 200}), stop: remove("o-latency")},
		{name: "origin bandwidth 128 KB/s", source: "tox", origin: &originFault{},
			start: one("o-bw", "bandwidth", toxiproxy.Attributes{"rate": 128}), stop: remove("o-bw")},
		// limit_data closes each connection after cutAfter bytes; the
		// reset_peer toxic that never applies (toxicity 0) is there
		// because Toxiproxy sets SO_LINGER 0 on the connections it opens
		// while a reset_peer toxic exists, so the close is a TCP RST
		// (connections opened before the fault are closed with a FIN).
		{name: "origin cut mid-body (limit_data 16 KiB, RST)", source: "tox", origin: &originFault{allow: cut},
			start: func() error {
				if err := add("o-rst", "reset_peer", 0, toxiproxy.Attributes{"timeout": 0}); err != nil {
					return err
				}
				return add("o-cut", "limit_data", 1, toxiproxy.Attributes{"bytes": cutAfter})
			}, stop: remove("o-cut", "o-rst")},
		// reset_peer drops the first bytes the origin sends on each
		// connection (a TLS ServerHello, a response's first bytes) and
		// resets the connection.
		{name: "origin resets (reset_peer)", source: "tox", origin: &originFault{allow: cut},
			start: one("o-reset", "reset_peer", toxiproxy.Attributes{"timeout": 0}), stop: remove("o-reset")},
		// timeout 0 swallows everything the origin sends and never closes:
		// a half-open connection. Removing it closes the connections it
		// held.
		{name: "origin half-open (timeout)", source: "tox", origin: &originFault{allow: []string{"status 504 upstream_timeout", "status 502 upstream_error"}, bound: upstreamTimeout + 5*time.Second},
			start: one("o-blackhole", "timeout", toxiproxy.Attributes{"timeout": 0}), stop: remove("o-blackhole")},
	}
}

// toxURL is the download the requests through the origin proxy make.
func (fe *faultEnv) toxURL() string {
	return fmt.Sprintf("https://%s:%d%s?bytes=%d", originHost, fe.originPort, origin.DownloadPath, toxBody)
}

// toxGet downloads u and checks the body is whole. A
// body read to a clean end but shorter than toxBody is a truncation the
// gateway presented as complete.
func toxGet(ctx context.Context, c *http.Client, u string, proto int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return &loadgen.StatusError{Code: resp.StatusCode, Reason: resp.Header.Get("X-Credgate-Reason"), Body: string(b)}
	}
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, toxBody+1))
	if err != nil {
		return err
	}
	if resp.ProtoMajor != proto {
		return fmt.Errorf("not h%d: answered over %s", proto, resp.Proto)
	}
	if n != toxBody {
		return fmt.Errorf("tox truncated: %d of %d bytes read to a clean end (Content-Length %d)", n, toxBody, resp.ContentLength)
	}
	return nil
}

// toxClass names the error of a request through the origin proxy: the
// status and the gateway's code for a refusal, else errorKind's class.
func toxClass(err error) string {
	var se *loadgen.StatusError
	if errors.As(err, &se) {
		return strings.TrimSpace("status " + strconv.Itoa(se.Code) + " " + se.Reason)
	}
	s := err.Error()
	switch {
	case strings.HasPrefix(s, "tox truncated"):
		return "truncated"
	}
	return errorKind(err)
}

// toxStart is called as a request through the origin proxy starts: it
// returns the record of the origin fault in force (nil for none) and
// when the last origin fault ended (zero for none yet).
func (fe *faultEnv) toxStart() (*toxRecord, time.Time) {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	return fe.toxNow, fe.toxEnded
}

// toxDone records how a request through the origin proxy ended (err nil:
// the whole body) and reports whether its error is one the fault it met
// allows: the fault in force at its start, else the one in force at its
// end (a toxic added while the body flowed). started is when it started,
// lastEnd what toxStart returned.
func (fe *faultEnv) toxDone(rec *toxRecord, lastEnd, started time.Time, class string, err error) bool {
	took := time.Since(started)
	fe.mu.Lock()
	defer fe.mu.Unlock()
	if rec == nil {
		rec = fe.toxNow
	}
	if rec == nil {
		if err != nil && !lastEnd.IsZero() && started.Sub(lastEnd) < recoveryBound {
			// Started after the toxic was removed: nothing should fail
			// any more, but a connection the fault broke may still be in
			// the gateway's pool.
			fe.toxAfter++
			if fe.toxAfterFirst == "" {
				fe.toxAfterFirst = fmt.Sprintf("%.1f s after the fault ended: %s", started.Sub(lastEnd).Seconds(), class)
			}
		}
		return false
	}
	rec.n++
	rec.slowest = max(rec.slowest, took)
	if rec.fault.bound > 0 && took > rec.fault.bound {
		rec.late++
	}
	if err == nil {
		rec.ok++
		return true
	}
	rec.classes[class]++
	if slices.Contains(rec.fault.allow, class) {
		return true
	}
	rec.disallowed++
	return false
}

// toxReport prints what the requests through the origin proxy saw during
// each origin fault and its verdicts; verdict prints one.
func (fe *faultEnv) toxReport(w io.Writer, samples []sample, verdict func(bool, string, ...any)) {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	if fe.originProxy == nil {
		return
	}
	var reqs int64
	classes := map[string]int64{}
	for _, s := range samples {
		reqs += s.reqs["tox"]
		for k, n := range s.errs {
			if c, ok := strings.CutPrefix(k, "tox "); ok {
				classes[c] += n
			}
		}
		for k, n := range s.expected {
			if c, ok := strings.CutPrefix(k, "tox "); ok {
				classes[c] += n
			}
		}
	}
	fmt.Fprintf(w, "\nRequests to the origin through Toxiproxy (%s:%d, %d KiB downloads, HTTP/1.1 and HTTP/2): %d whole, errors %s.\n", originHost, fe.originPort, toxBody>>10, reqs, countsString(classes))
	if len(fe.toxRecs) > 0 {
		fmt.Fprintln(w, "\n| origin fault | at | requests | whole | errors | slowest answer |\n|---|--:|--:|--:|---|--:|")
		for _, r := range fe.toxRecs {
			fmt.Fprintf(w, "| %s | %s | %d | %d | %s | %.1f s |\n", r.name, r.from, r.n, r.ok, countsString(r.classes), r.slowest.Seconds())
		}
		fmt.Fprintln(w)
	}
	verdict(classes["truncated"] == 0, "downloads through the origin proxy read to a clean end but shorter than the origin sent (a truncation presented as complete): %d", classes["truncated"])
	for _, r := range fe.toxRecs {
		allowed := "none"
		if len(r.fault.allow) > 0 {
			allowed = strings.Join(r.fault.allow, ", ")
		}
		bound := ""
		if r.fault.bound > 0 {
			bound = fmt.Sprintf("; answered within %s: %d late (slowest %.1f s)", r.fault.bound, r.late, r.slowest.Seconds())
		}
		verdict(r.disallowed == 0 && r.late == 0, "%s at %s: %d requests met it, %d whole, errors outside what it allows (%s): %d%s", r.name, r.from, r.n, r.ok, allowed, r.disallowed, bound)
	}
	first := ""
	if fe.toxAfterFirst != "" {
		first = " (first " + fe.toxAfterFirst + ")"
	}
	verdict(fe.toxAfter == 0, "requests through the origin proxy started within %s after an origin toxic was removed that failed (a dead pooled connection reused?): %d%s", recoveryBound, fe.toxAfter, first)
}
