package gateway

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkInjectKeepAlive measures one intercepted, injected request on
// a warm keep-alive connection (in-process: client, gateway and origin
// share the CPUs). make bench has the end-to-end figures against direct
// calls and a bare goproxy; this one is for profiling
// (go test -bench InjectKeepAlive -cpuprofile cpu.out ./gateway).
func BenchmarkInjectKeepAlive(b *testing.B) {
	benchKeepAlive(b, startGateway(b))
}

// BenchmarkInjectKeepAlivePost is BenchmarkInjectKeepAlive for the other
// common API call: a POST of about 1 KiB of JSON (an LLM chat request's
// shape), which the origin reads whole.
func BenchmarkInjectKeepAlivePost(b *testing.B) {
	benchPost(b, startGateway(b), postJSON1k)
}

// postJSON1k is a JSON request body of 1,024 bytes.
var postJSON1k = func() string {
	head, tail := `{"model":"gpt-bench","messages":[{"role":"user","content":"`, `"}],"temperature":0.2}`
	return head + strings.Repeat("x", 1024-len(head)-len(tail)) + tail
}()

// benchKeepAlive times intercepted, injected GETs through tg on warm
// keep-alive connections, from GOMAXPROCS client goroutines. Beside ns/op
// it reports the process's CPU time per request (cpu-ns/op): client,
// origin and gateway share the process, so the difference between two
// variants is the gateway's, and it is the steadier figure on a shared
// machine.
func benchKeepAlive(b *testing.B, tg *testGateway) {
	benchPost(b, tg, "")
}

// BenchmarkInjectKeepAliveHTTP2 is BenchmarkInjectKeepAlive over HTTP/2
// inside the tunnels: the client's requests share its connections as
// streams, served by one x/net/http2 Server per connection whose written
// frames h2Conn scans (configureHTTP2).
func BenchmarkInjectKeepAliveHTTP2(b *testing.B) {
	benchRequests(b, startGateway(b), "", true)
}

// benchPost is benchKeepAlive with a POST of body to the origin's /echo
// when body is not empty.
func benchPost(b *testing.B, tg *testGateway, body string) {
	benchRequests(b, tg, body, false)
}

// benchRequests is benchPost over HTTP/2 in the tunnels when h2 is set.
func benchRequests(b *testing.B, tg *testGateway, body string, h2 bool) {
	c := tg.client(b, h2)
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	url, want := "https://"+apiHost+"/v1/bench", ""
	if body != "" {
		url, want = "https://"+apiHost+"/echo", "len="+strconv.Itoa(len(body))
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	defer func() { b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op") }()
	b.RunParallel(func(pb *testing.PB) {
		rd := strings.NewReader(body)
		buf := make([]byte, 64)
		for pb.Next() {
			var resp *http.Response
			var err error
			if body == "" {
				resp, err = c.Get(url)
			} else {
				rd.Reset(body)
				resp, err = c.Post(url, "application/json", rd)
			}
			if err != nil {
				b.Error(err)
				return
			}
			n := 0
			if body != "" {
				// The origin says how much of the body it read.
				n, _ = io.ReadFull(resp.Body, buf)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || body != "" && string(buf[:n]) != want {
				b.Errorf("%s %q", resp.Status, buf[:n])
				return
			}
		}
	})
}

// BenchmarkInjectPaced is BenchmarkInjectKeepAlive at a fixed pace instead
// of as fast as it goes: 8 keep-alive connections, each sending its next
// request 5 ms after the last one's answer began, so that about 1,500
// requests a second arrive at a gateway that is otherwise idle, as in
// make bench's fixed-rate scenario. There every request finds the
// process asleep, and what it costs beyond its own work is waking it:
// the poller, timers, goroutines handed work. It reports CPU time per
// request (cpu-ns/op), context switches per request (switches/op, the
// wake-ups) and the client's median round trip (p50-µs); ns/op is the
// pace. Run it with a count, not a time: -benchtime 3000x.
func BenchmarkInjectPaced(b *testing.B) {
	tg := startGateway(b)
	c := tg.client(b, false)
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	const conns, gap = 8, 5 * time.Millisecond
	url := "https://" + apiHost + "/v1/bench"
	get := func() (time.Duration, error) {
		t0 := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("status %s", resp.Status)
		}
		return time.Since(t0), nil
	}
	// Warm: every connection open, every cache filled.
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() { _, _ = get() })
	}
	wg.Wait()
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, sw0 := processCPU(), processSwitches()
	for range conns {
		wg.Go(func() {
			tick := time.NewTicker(gap)
			defer tick.Stop()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				d, err := get()
				if err != nil {
					b.Error(err)
					return
				}
				lat[i] = d
				<-tick.C
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(processSwitches()-sw0)/float64(b.N), "switches/op")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
}
