package gateway

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkInjectKeepAlive measures one intercepted, injected request on
// a warm keep-alive connection (in-process: client, gateway and origin
// share the CPUs). make bench has the end-to-end figures against direct
// calls and a bare goproxy; this one is for profiling
// (go test -bench InjectKeepAlive -cpuprofile cpu.out ./gateway).
func BenchmarkInjectKeepAlive(b *testing.B) {
	benchKeepAlive(b, startGateway(b))
}

// benchKeepAlive times intercepted, injected GETs through tg on warm
// keep-alive connections, from GOMAXPROCS client goroutines. Beside ns/op
// it reports the process's CPU time per request (cpu-ns/op): client,
// origin and gateway share the process, so the difference between two
// variants is the gateway's, and it is the steadier figure on a shared
// machine.
func benchKeepAlive(b *testing.B, tg *testGateway) {
	c := tg.client(b, false)
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	url := "https://" + apiHost + "/v1/bench"
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	defer func() { b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op") }()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %s", resp.Status)
				return
			}
		}
	})
}
