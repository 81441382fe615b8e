package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkGatewayAllocs counts the heap allocations the gateway makes
// for one request of BenchmarkInjectKeepAlive's kind (an intercepted,
// injected GET on a warm keep-alive HTTP/1.1 connection), apart from
// those of the test's own client and origin, which share the process:
// gw-allocs/op and gw-B/op. Every allocation is recorded
// (runtime.MemProfileRate 1) and those whose stack runs through the
// gateway's connection goroutine (h1.(*conn)) are counted: the whole of
// a request's work, from reading its head to relaying the answer and
// writing the audit line, runs there, the upstream round trip included
// (package h1client sends it on the caller's goroutine). One client
// sends the requests one after the other, so the figure does not depend
// on the machine's load; allocs/op is the whole process's, as in
// BenchmarkInjectKeepAlive. The same figure from a profile:
//
//	go test -run XXX -bench 'InjectKeepAlive$' -benchtime 5000x -memprofilerate 1 -memprofile mem.prof ./gateway
//	go tool pprof -sample_index=alloc_objects -top -focus='h1\.\(\*conn\)' gateway.test mem.prof
//
// (the focused total divided by the requests, 5,001).
func BenchmarkGatewayAllocs(b *testing.B) {
	tg := startGateway(b)
	c := tg.client(b, false)
	url := "https://" + apiHost + "/v1/bench"
	get := func() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %s", resp.Status)
		}
	}
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = old }()
	// Warm: the connections, the credential's cache, and the rate in
	// force (each P's next sample was drawn at the old rate).
	for range 300 {
		get()
	}
	n0, bytes0 := gatewayAllocs(b)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		get()
	}
	b.StopTimer()
	n1, bytes1 := gatewayAllocs(b)
	b.ReportMetric(float64(n1-n0)/float64(b.N), "gw-allocs/op")
	b.ReportMetric(float64(bytes1-bytes0)/float64(b.N), "gw-B/op")
}

// gatewayAllocs returns the objects and bytes allocated so far whose
// stack runs through the gateway's HTTP/1.1 connection goroutine, from
// the heap profile's text form (its counts unscaled: exact at
// MemProfileRate 1). A garbage collection first publishes every
// allocation made until now.
func gatewayAllocs(b *testing.B) (objects, bytes_ int64) {
	b.Helper()
	runtime.GC()
	var buf bytes.Buffer
	if err := pprof.Lookup("heap").WriteTo(&buf, 1); err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var recObjects, recBytes int64
	var counted bool
	flush := func() {
		if counted {
			objects += recObjects
			bytes_ += recBytes
		}
		recObjects, recBytes, counted = 0, 0, false
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#\t"):
			if strings.Contains(line, "/gateway/internal/h1.(*conn).") {
				counted = true
			}
		case strings.Contains(line, "] @"):
			// "inuse: inuse-bytes [allocs: alloc-bytes] @ stack"
			flush()
			l, r := strings.IndexByte(line, '['), strings.IndexByte(line, ']')
			o, by, ok := strings.Cut(line[l+1:r], ": ")
			if !ok {
				b.Fatalf("heap profile record %q", line)
			}
			var err1, err2 error
			recObjects, err1 = strconv.ParseInt(o, 10, 64)
			recBytes, err2 = strconv.ParseInt(by, 10, 64)
			if err1 != nil || err2 != nil {
				b.Fatalf("heap profile record %q", line)
			}
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return objects, bytes_
}
