package gateway

import (
	"crypto/tls"
	"net/http"
	"testing"
)

// BenchmarkNewConn is one request on a new intercepted connection: TCP,
// CONNECT, the TLS handshake with the gateway's leaf (full, or resuming a
// session from a ticket the gateway issued), the request, close. Client,
// gateway and origin share the process; cpu-ns/op is the process's CPU
// per connection, the steadier figure on a shared machine, and the
// difference between the variants is the handshake work resumption saves
// (on both ends).
func BenchmarkNewConn(b *testing.B) {
	tg := startGateway(b)
	proxy := tg.gw.ProxyAddr().String()
	for _, v := range []struct {
		name  string
		cache tls.ClientSessionCache
	}{{"full", nil}, {"resumed", tls.NewLRUClientSessionCache(4)}} {
		b.Run(v.name, func(b *testing.B) {
			cfg := &tls.Config{ServerName: apiHost, RootCAs: tg.caPool, ClientSessionCache: v.cache, NextProtos: []string{"http/1.1"}}
			// A first connection fills the session cache and the
			// gateway's leaf and upstream pool.
			if r := newConnGet(b, proxy, nil, apiHost, cfg, "/v1/bench"); r.status != http.StatusOK {
				b.Fatalf("warm-up: %+v", r)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			resumed := 0
			for range b.N {
				r := newConnGet(b, proxy, nil, apiHost, cfg, "/v1/bench")
				if r.status != http.StatusOK {
					b.Fatalf("%+v", r)
				}
				if r.inner {
					resumed++
				}
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(resumed)/float64(b.N), "resumed/op")
		})
	}
}
