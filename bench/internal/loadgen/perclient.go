package loadgen

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// PerClient makes every connection in conns one client that sends rate
// requests per second on its own schedule for warmup+window: an open loop
// per client, the clients' schedules spread evenly (client i starts
// i/(len(conns)·rate) s in, then sends every 1/rate s), so together they
// offer len(conns)·rate requests per second. HTTP/1.1 allows one request
// at a time per connection: a request whose connection is still busy
// waits for it, and LagP99 says how late requests were written against
// their schedule. A connection that broke is replaced by a new one
// (counted in ExtraDials), in conns, so the caller's CloseAll closes it.
// Latency is from writing the request to reading the end of its
// response; requests scheduled inside the window are counted.
func PerClient(ctx context.Context, t *Target, conns []*Conn, rate float64, warmup, window time.Duration) Result {
	n := len(conns)
	if n == 0 || rate <= 0 {
		return Result{Target: t.Name, Window: window}
	}
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	from := start.Add(warmup)
	until := from.Add(window)
	ctx, cancel := context.WithDeadline(ctx, until.Add(t.timeout()))
	defer cancel()
	var errs errorCount
	var extra atomic.Int64
	lats := make([][]time.Duration, n)
	lags := make([][]time.Duration, n)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			offset := time.Duration(float64(interval) * float64(i) / float64(n))
			var myLats, myLags []time.Duration
			defer func() { lats[i], lags[i] = myLats, myLags }()
			tm := time.NewTimer(0)
			defer tm.Stop()
			<-tm.C
			for k := 0; ; k++ {
				sched := start.Add(offset + time.Duration(k)*interval)
				if !sched.Before(until) {
					return
				}
				tm.Reset(time.Until(sched))
				select {
				case <-ctx.Done():
					return
				case <-tm.C:
				}
				counted := !sched.Before(from)
				if conns[i] == nil || !conns[i].Usable() {
					if conns[i] != nil {
						_ = conns[i].Close()
						conns[i] = nil
					}
					c, err := Dial(ctx, t)
					if err != nil {
						if counted && ctx.Err() == nil {
							errs.add(err)
						}
						continue
					}
					conns[i] = c
					if counted {
						extra.Add(1)
					}
				}
				t0 := time.Now()
				err := conns[i].Do()
				t1 := time.Now()
				if !counted {
					continue
				}
				myLags = append(myLags, t0.Sub(sched))
				if err != nil {
					errs.add(err)
					continue
				}
				myLats = append(myLats, t1.Sub(t0))
			}
		}()
	}
	wg.Wait()
	var all, lag []time.Duration
	for i := range n {
		all = append(all, lats[i]...)
		lag = append(lag, lags[i]...)
	}
	r := summarise(t.Name, all, window, &errs)
	r.ExtraDials = int(extra.Load())
	slices.Sort(lag)
	r.lags = lag
	r.LagP99 = percentile(lag, 0.99)
	return r
}
