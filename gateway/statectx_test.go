package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/gateway/internal/h1client"
	"github.com/credgate/credgate/internal/canonical"
	"github.com/credgate/credgate/internal/poll"
)

// TestStateCtxAsWithValue holds stateCtx to what it replaces,
// context.WithValue(parent, stateKey, st), over a table of parents and
// what is asked of the context: every key's value, Done, Err, Deadline,
// Cause after the parent is cancelled with a cause, and AfterFunc and
// WithCancel children, which must see the cancellation the same way.
func TestStateCtxAsWithValue(t *testing.T) {
	type otherKey struct{}
	cause := errors.New("switched off")
	deadline := time.Now().Add(time.Hour)
	parents := map[string]func() (context.Context, func()){
		"background": func() (context.Context, func()) { return context.Background(), func() {} },
		"cancel cause": func() (context.Context, func()) {
			ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), otherKey{}, "v"))
			return ctx, func() { cancel(cause) }
		},
		"deadline": func() (context.Context, func()) {
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			return ctx, cancel
		},
		"value over cancel": func() (context.Context, func()) {
			ctx, cancel := context.WithCancelCause(context.Background())
			return context.WithValue(ctx, otherKey{}, "w"), func() { cancel(cause) }
		},
	}
	for name, mk := range parents {
		t.Run(name, func(t *testing.T) {
			st := &reqState{}
			parentA, cancelA := mk()
			parentB, cancelB := mk()
			want := context.WithValue(parentA, stateKey, st)
			st.ctx = stateCtx{Context: parentB, st: st}
			got := context.Context(&st.ctx)
			for _, k := range []any{stateKey, tunnelKey, otherKey{}, "stateKey", 1} {
				if g, w := got.Value(k), want.Value(k); g != w {
					t.Errorf("Value(%#v) = %v, want %v", k, g, w)
				}
			}
			gd, gok := got.Deadline()
			wd, wok := want.Deadline()
			if gok != wok || !gd.Equal(wd) && gok {
				t.Errorf("Deadline() = %v %v, want %v %v", gd, gok, wd, wok)
			}
			if (got.Done() == nil) != (want.Done() == nil) {
				t.Fatalf("Done() nil %v, want nil %v", got.Done() == nil, want.Done() == nil)
			}
			if got.Done() == nil {
				return
			}
			ran := make(chan struct{})
			context.AfterFunc(got, func() { close(ran) })
			child, stopChild := context.WithCancel(got)
			defer stopChild()
			if got.Err() != nil || child.Err() != nil {
				t.Fatalf("cancelled before the parent was: %v %v", got.Err(), child.Err())
			}
			cancelA()
			cancelB()
			<-ran
			<-child.Done()
			if g, w := got.Err(), want.Err(); !errors.Is(g, w) {
				t.Errorf("Err() = %v, want %v", g, w)
			}
			if g, w := context.Cause(got), context.Cause(want); !errors.Is(g, w) {
				t.Errorf("Cause() = %v, want %v", g, w)
			}
			if g, w := context.Cause(child), context.Cause(want); !errors.Is(g, w) {
				t.Errorf("Cause(child) = %v, want %v", g, w)
			}
		})
	}
}

// TestStateCtxAllocs: the outbound request's context costs no allocation
// of its own, and a child of it is registered on its parent as a child of
// WithValue's would be (the context package found the parent's
// cancellation: no goroutine watching both, which would allocate more).
func TestStateCtxAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &reqState{}
	n := testing.AllocsPerRun(100, func() {
		st.ctx = stateCtx{Context: parent, st: st}
		_ = context.Context(&st.ctx).Value(stateKey)
	})
	if n != 0 {
		t.Errorf("stateCtx: %v allocations, want 0", n)
	}
	viaValue := testing.AllocsPerRun(100, func() {
		_, c := context.WithCancel(context.WithValue(parent, stateKey, st))
		c()
	})
	viaState := testing.AllocsPerRun(100, func() {
		_, c := context.WithCancel(&st.ctx)
		c()
	})
	if viaState > viaValue-1 {
		t.Errorf("WithCancel under stateCtx: %v allocations, under WithValue %v (its own one included): want at most %v", viaState, viaValue, viaValue-1)
	}
}

// TestOutboundAllocs: the outbound request and its URL are the exchange's
// own fields, made without an allocation for a request to the default
// port, and they are what outbound always made: the incoming request's
// fields with the destination's URL, the checked path, the outbound
// context, no Host, no gateway-scoped field, no trailers; the incoming
// request and its URL untouched.
func TestOutboundAllocs(t *testing.T) {
	in := httptest.NewRequest(http.MethodGet, "https://api.example.com/v1/x?a=1", nil)
	in.Header.Set("Proxy-Authorization", "Basic eA==")
	in.Header.Set("Accept", "*/*")
	in.Trailer = http.Header{"X-T": nil}
	inURL := *in.URL
	x := &exchange{r: in, scheme: "https", dest: target{host: "api.example.com", port: 443}}
	cp := canonical.Path{Decoded: "/v1/x", Raw: "/v1/x"}
	ctx := context.WithValue(context.Background(), tunnelKey, 1)
	out := x.outbound(ctx, cp)
	if out == in || out.URL == in.URL || *in.URL != inURL {
		t.Fatalf("outbound shares or changed the incoming request: %p %p, URL %v", out, in, in.URL)
	}
	if out.Context() != ctx || out.URL.String() != "https://api.example.com/v1/x?a=1" || out.Host != "" || out.Trailer != nil ||
		out.Header.Get("Proxy-Authorization") != "" || out.Header.Get("Accept") != "*/*" || out.Method != http.MethodGet {
		t.Errorf("outbound request: ctx %v, URL %v, Host %q, Trailer %v, header %v", out.Context(), out.URL, out.Host, out.Trailer, out.Header)
	}
	if raceEnabled {
		return
	}
	if n := testing.AllocsPerRun(100, func() { x.outbound(ctx, cp) }); n != 0 {
		t.Errorf("outbound: %v allocations, want 0", n)
	}
}

// TestStateCtxAttempts: the outbound request's context carries no
// ClientTrace (an allocation per request), and the h1client finds the
// request's attempt counter (upstreamTries) under h1client.AttemptsKey:
// the attempt past upstreamAttempts cancels the request with
// errUpstreamRetries, as it does through net/http's GotConn hook
// (h1client.WithTrace, TestHTTP2HostileOrigin).
func TestStateCtxAttempts(t *testing.T) {
	parent, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	st := &reqState{}
	st.ctx = stateCtx{Context: parent, st: st}
	ctx := context.Context(&st.ctx)
	if trace := httptrace.ContextClientTrace(ctx); trace != nil {
		t.Fatalf("the outbound request's context carries a ClientTrace: %+v", trace)
	}
	a, ok := ctx.Value(h1client.AttemptsKey{}).(h1client.Attempts)
	if !ok {
		t.Fatal("no h1client.Attempts under h1client.AttemptsKey")
	}
	st.tries.start(0, cancelFunc(cancel))
	defer st.tries.stop()
	for i := range upstreamAttempts {
		a.GotConn(httptrace.GotConnInfo{})
		if err := ctx.Err(); err != nil {
			t.Fatalf("attempt %d cancelled the request: %v", i+1, context.Cause(ctx))
		}
	}
	a.GotConn(httptrace.GotConnInfo{})
	if cause := context.Cause(ctx); !errors.Is(cause, errUpstreamRetries) {
		t.Fatalf("attempt %d: cause %v, want errUpstreamRetries", upstreamAttempts+1, cause)
	}
	traced := h1client.WithTrace(httptest.NewRequest("GET", "https://example.com/", nil).WithContext(ctx))
	if trace := httptrace.ContextClientTrace(traced.Context()); trace == nil || trace.GotConn == nil || trace.Got1xxResponse != nil {
		t.Errorf("WithTrace without a 1xx relay: trace %+v, want GotConn alone", trace)
	}
}

// TestFlightCancellation: the outbound request's context holds the
// flight's h1client.Cancellation, for the h1client to abort a round
// trip without an AfterFunc on the per-request context: every
// cancellation of the flight (cancelCause: the kill switch, a timeout,
// the request's end) calls the abort registered, once, after the context
// is cancelled with its cause; registered after the cancellation, it is
// called at once; StopOnCancel reports whether it had not been called,
// and the next cancellation calls nothing. A context derived from the
// outbound one (a tracer's) does not offer it as its own.
func TestFlightCancellation(t *testing.T) {
	newState := func() *reqState {
		st := &reqState{}
		f := &st.flight
		f.parent = context.Background()
		f.ctx, f.ctxCancel = context.WithCancelCause(f.parent)
		st.ctx = stateCtx{Context: f.ctx, st: st}
		return st
	}
	st := newState()
	ctx := context.Context(&st.ctx)
	own, ok := ctx.Value(h1client.CancellationKey{}).(h1client.Cancellation)
	if !ok || own.Context() != ctx || own.Parent() != context.Background() {
		t.Fatalf("the outbound context's Cancellation: %v (ok %v), want the flight's, for this context", own, ok)
	}
	aborts := 0
	own.OnCancel(func() {
		aborts++
		if cause := context.Cause(ctx); !errors.Is(cause, errSwitchedOff) {
			t.Errorf("abort called before the context was cancelled with its cause (cause %v)", cause)
		}
	})
	st.flight.cancelCause(errSwitchedOff)
	st.flight.cancelCause(errors.New("again"))
	if aborts != 1 {
		t.Errorf("abort called %d times, want 1", aborts)
	}
	if own.StopOnCancel() {
		t.Error("StopOnCancel reports the abort had not been called")
	}
	own.OnCancel(func() { aborts++ })
	if aborts != 2 {
		t.Error("an abort registered after the cancellation was not called at once")
	}

	st = newState()
	own = context.Context(&st.ctx).Value(h1client.CancellationKey{}).(h1client.Cancellation)
	own.OnCancel(func() { t.Error("abort called after StopOnCancel") })
	if !own.StopOnCancel() {
		t.Error("StopOnCancel reports the abort had been called, before any cancellation")
	}
	st.flight.cancelCause(nil)

	type spanKey struct{}
	st = newState()
	traced := context.WithValue(&st.ctx, spanKey{}, "span")
	if own, ok := traced.Value(h1client.CancellationKey{}).(h1client.Cancellation); ok && own.Context() == traced {
		t.Error("a context derived from the outbound one offers the flight's Cancellation as its own")
	}
	st.ctx.Context = context.Background()
	if _, ok := context.Context(&st.ctx).Value(h1client.CancellationKey{}).(h1client.Cancellation); ok {
		t.Error("a stateCtx over another context than the flight's offers the flight's Cancellation")
	}
}

// TestFlightWatch: a tunnel's flightWatch serves its HTTP/1.1 requests'
// flights, one at a time, on its connection's context: it covers that
// context's cancellation, so that the h1client registers nothing per
// request on it (Parent nil): the context's cancellation calls the
// covered flight's abort, or, for one registered after it, OnCancel
// calls it at once; and it lends each flight one flight context. A
// flight on another context, or beside the one covered, is not covered
// and gets its own context (the h1client then watches its Parent
// itself).
func TestFlightWatch(t *testing.T) {
	conn, cancelConn := context.WithCancel(context.Background())
	defer cancelConn()
	var g Gateway
	var w flightWatch
	first := newWatchedState(&w, conn)
	if first.Parent() != nil {
		t.Fatal("the first flight on the connection's context is not covered")
	}
	if beside := newWatchedState(&w, conn); beside.Parent() != conn || beside.flight.ctx == first.flight.ctx {
		t.Error("a second flight beside the one covered is covered too, or shares its context")
	}
	other, cancelOther := context.WithCancel(context.Background())
	defer cancelOther()
	if st := newWatchedState(&w, other); st.Parent() != other {
		t.Error("a flight on another context than the watched one is covered")
	}
	first.OnCancel(func() { t.Error("the abort of a flight that ended was called") })
	if !first.StopOnCancel() {
		t.Fatal("StopOnCancel: the abort was called")
	}
	g.endFlight(&first.flight)

	second := newWatchedState(&w, conn)
	if second.Parent() != nil {
		t.Fatal("the next flight on the connection's context is not covered")
	}
	var aborted atomic.Bool
	second.OnCancel(func() { aborted.Store(true) })
	cancelConn()
	poll.True(t, 5*time.Second, "the covered flight's abort was called", aborted.Load)
	if second.StopOnCancel() {
		t.Error("StopOnCancel reports the abort had not been called")
	}
	late := false
	second.OnCancel(func() { late = true })
	if !late {
		t.Error("an abort registered after the connection's context ended was not called at once")
	}
}

// TestFlightWatchSharesNothing is the class test of the flight context a
// tunnel lends its requests one after the other: every way a request's
// flight is cancelled (the kill switch and the loss of its identity or
// of its policy through cutWith, upstreamTries, uploadWatch and the
// response's stall watch through their canceller, the request's end)
// reaches the next request on the tunnel neither while it waits (a
// cancellation of the ended flight, as a late timer's: nothing) nor
// afterwards (a cut flight's context is not lent again: the next flight
// gets a new one, without its cause). Requests that end uncut share one
// context.
func TestFlightWatchSharesNothing(t *testing.T) {
	ways := map[string]func(st *reqState){
		"cut":        func(st *reqState) { st.flight.cutWith(refusal{Code: codeDisabledInFlight}, errSwitchedOff) },
		"tries":      func(st *reqState) { st.tries.start(0, &st.flight); st.tries.cancel.cancelCause(errUpstreamRetries) },
		"upload":     func(st *reqState) { st.flight.cancelCause(errUpstreamBodyStall) },
		"stall":      func(st *reqState) { (&upstreamBody{cancel: &st.flight}).cutStalled() },
		"end-cancel": func(st *reqState) { st.flight.cancelCause(nil) },
	}
	for name, cancel := range ways {
		t.Run(name, func(t *testing.T) {
			conn, cancelConn := context.WithCancel(context.Background())
			defer cancelConn()
			var g Gateway
			var w flightWatch

			a := newWatchedState(&w, conn)
			g.endFlight(&a.flight)
			b := newWatchedState(&w, conn)
			if b.flight.ctx != a.flight.ctx {
				t.Fatal("two requests that ended uncut did not share the tunnel's flight context")
			}
			// A late cancellation of the ended flight a.
			cancel(a)
			if err := context.Cause(&b.ctx); err != nil {
				t.Fatalf("the ended request's cancellation reached the next one: %v", err)
			}
			// b is cancelled in flight, then ends; c comes next.
			cancel(b)
			if b.ctx.Err() == nil {
				t.Fatal("the flight's cancellation did not cancel its context")
			}
			g.endFlight(&b.flight)
			c := newWatchedState(&w, conn)
			if err := context.Cause(&c.ctx); err != nil || c.flight.ctx == b.flight.ctx {
				t.Fatalf("the request after a cancelled one got its context (cause %v)", err)
			}
			cancel(b)
			cancel(a)
			if err := c.ctx.Err(); err != nil {
				t.Fatalf("an ended request's cancellation reached the one in flight: %v", err)
			}
		})
	}
}

// newWatchedState is a request's state whose flight starts on parent as
// startFlight starts it, under the tunnel watch w.
func newWatchedState(w *flightWatch, parent context.Context) *reqState {
	st := &reqState{}
	f := &st.flight
	f.parent = parent
	if !w.enter(parent, f) {
		f.ctx, f.ctxCancel = context.WithCancelCause(parent)
	}
	st.ctx = stateCtx{Context: f.ctx, st: st}
	return st
}

// TestAbortAfterContextCancelled is the class test of "the client left"
// racing "the upstream failed": whatever cancels a flight — its tunnel's
// connection ending (flightWatch.fire), a cut (cancelCause) — calls the
// round trip's abort (a deadline in the past on the upstream connection)
// only once the flight's context reports the cancellation, with its
// cause: the round trip's failure is then found to be the context's
// doing (upstreamError's r.Context().Err(): 499 client_aborted), never
// the upstream's (a 504 upstream_timeout, which TestH1ClientLeavesLongPoll
// met in CI). The connection's context is a laggingParent, whose cancel
// reaches the flight context only after the abort ran, or after a
// second: a parent's cancel starts its AfterFuncs and cancels its
// children in no set order. (The h1client's abort on a Cancellation's
// Parent: its TestAbortFollowsContext.)
func TestAbortAfterContextCancelled(t *testing.T) {
	errLeft := errors.New("the client left")
	for _, tc := range []struct {
		name   string
		cancel func(p *laggingParent, st *reqState)
		cause  error
	}{
		{"tunnel connection ends", func(p *laggingParent, _ *reqState) { p.cancel(errLeft) }, errLeft},
		{"cut", func(_ *laggingParent, st *reqState) { st.flight.cancelCause(errSwitchedOff) }, errSwitchedOff},
		{"cut, then the connection ends", func(p *laggingParent, st *reqState) {
			st.flight.cancelCause(errSwitchedOff)
			p.cancel(errLeft)
		}, errSwitchedOff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newLaggingParent()
			var w flightWatch
			st := newWatchedState(&w, p)
			own := context.Context(&st.ctx).Value(h1client.CancellationKey{}).(h1client.Cancellation)
			if own.Parent() != nil {
				t.Fatal("the flight is not covered by its tunnel's watch")
			}
			// cause is what the flight's context reported when the abort
			// ran (called once: OnCancel).
			var cause error
			aborted := make(chan struct{})
			own.OnCancel(func() {
				cause = context.Cause(own.Context())
				close(aborted)
			})
			p.after = func() {
				select {
				case <-aborted:
				case <-time.After(time.Second):
				}
			}
			tc.cancel(p, st)
			select {
			case <-aborted:
				if !errors.Is(cause, tc.cause) {
					t.Fatalf("the abort ran while the flight's context reported cause %v, want %v", cause, tc.cause)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the flight's abort was not called")
			}
		})
	}
}

// laggingParent is a context whose cancel runs the functions registered
// on it (context.AfterFunc's, and its children's cancellation, through
// its AfterFunc method) in the order they were registered, calling after
// (when set) after each: an order a parent's cancel may take.
type laggingParent struct {
	done  chan struct{}
	after func()

	mu    sync.Mutex
	err   error
	funcs []func()
}

func newLaggingParent() *laggingParent { return &laggingParent{done: make(chan struct{})} }

func (p *laggingParent) Deadline() (time.Time, bool) { return time.Time{}, false }
func (p *laggingParent) Done() <-chan struct{}       { return p.done }
func (p *laggingParent) Value(any) any               { return nil }

func (p *laggingParent) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// AfterFunc is what context.AfterFunc and context.WithCancelCause use on
// a parent that has it.
func (p *laggingParent) AfterFunc(f func()) func() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := len(p.funcs)
	p.funcs = append(p.funcs, f)
	return func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		stopped := p.funcs[i] != nil && p.err == nil
		p.funcs[i] = nil
		return stopped
	}
}

func (p *laggingParent) cancel(err error) {
	p.mu.Lock()
	if p.err != nil {
		p.mu.Unlock()
		return
	}
	p.err = err
	close(p.done)
	funcs := p.funcs
	p.mu.Unlock()
	for _, f := range funcs {
		if f != nil {
			f()
			if p.after != nil {
				p.after()
			}
		}
	}
}
