package gateway

import (
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// BenchmarkScrubResponse measures a 1 MiB JSON response through the
// gateway (in-process: client, gateway and origin share the CPUs, both
// TLS legs included) from a rule that scrubs its responses (the default)
// and from one that opts out (scrub: {enabled: false}), with a body that
// echoes nothing and one that echoes the secret 64 times. The ratio of
// the MB/s figures is the cost of scrubbing on the whole response path.
func BenchmarkScrubResponse(b *testing.B) {
	tg := startScrubGateway(b)
	clean := benchJSON("tok_none", 256)
	echo := benchJSON(scrubSecret, 256)
	serve := func(w http.ResponseWriter, r *http.Request) {
		body := clean
		if r.URL.Query().Get("echo") == "1" {
			body = echo
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	}
	tg.origin.route("/raw/big", serve)
	tg.origin.route("/s/big", serve)
	c := tg.client(b, false)
	buf := make([]byte, 32<<10)
	for _, tc := range []struct{ name, path string }{
		{"unscrubbed", "/raw/big"},
		{"scrubbed", "/s/big"},
		{"scrubbed-64-echoes", "/s/big?echo=1"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(clean)))
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.Get("https://" + apiHost + tc.path)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{resp.Body}, buf)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || n < int64(len(clean))-int64(len(scrubSecret))*64 {
					b.Fatalf("status %d, %d bytes, %v", resp.StatusCode, n, err)
				}
			}
		})
	}
}

// BenchmarkScrubResponseRatio alternates the unscrubbed and the scrubbed
// 1 MiB response request by request (so that the load other processes
// put on a shared machine falls on both alike) and reports each one's
// MB/s and their ratio, scrubbed/unscrubbed (the target is >= 0.9).
func BenchmarkScrubResponseRatio(b *testing.B) {
	tg := startScrubGateway(b)
	body := benchJSON("tok_none", 256)
	serve := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	}
	tg.origin.route("/raw/big", serve)
	tg.origin.route("/s/big", serve)
	c := tg.client(b, false)
	buf := make([]byte, 32<<10)
	get := func(path string) time.Duration {
		t0 := time.Now()
		resp, err := c.Get("https://" + apiHost + path)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{resp.Body}, buf)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || n != int64(len(body)) {
			b.Fatalf("%s: status %d, %d bytes, %v", path, resp.StatusCode, n, err)
		}
		return time.Since(t0)
	}
	var plain, scrubbed time.Duration
	b.SetBytes(2 * int64(len(body)))
	for b.Loop() {
		plain += get("/raw/big")
		scrubbed += get("/s/big")
	}
	mb := float64(b.N) * float64(len(body)) / 1e6
	b.ReportMetric(mb/plain.Seconds(), "unscrubbed-MB/s")
	b.ReportMetric(mb/scrubbed.Seconds(), "scrubbed-MB/s")
	b.ReportMetric(plain.Seconds()/scrubbed.Seconds(), "ratio")
}
