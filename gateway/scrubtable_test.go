package gateway

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/transform"
)

// TestScrubTableChurn: under concurrent churn of credentials — writers
// injecting new ones (each kept by the upstream once injected, as a
// gist or a request-bin keeps what it received), old ones dropped and
// collected, the combined table rebuilt in the background meanwhile —
// readers whose responses echo every credential the upstream kept, in
// its raw, URL-encoded and JSON-escaped forms, never pass one still held
// on to the client: not one injected before the reader's request, nor
// one injected while the reader's request was on its way to the
// upstream. Run it with -race. The differential reference is the
// upstream's own record of what it was sent.
func TestScrubTableChurn(t *testing.T) {
	s := &scrubbers{}
	// upstream is what the upstream keeps: the credentials it received,
	// held (as the provider cache holds them) while they are kept.
	var mu sync.Mutex
	stored := sync.NewCond(&mu)
	var kept []*providers.Credential
	var keptTotal int
	writing := 0
	const keepAtMost = 64
	store := func(c *providers.Credential) {
		mu.Lock()
		defer mu.Unlock()
		defer stored.Broadcast()
		keptTotal++
		kept = append(kept, c)
		if len(kept) > keepAtMost {
			kept = append(kept[:0:0], kept[len(kept)-keepAtMost:]...)
		}
	}
	// echo answers once the upstream kept a credential more than it had
	// when the request was prepared (or the writers are done): the
	// request was on its way while another one injected a credential.
	echo := func(since int) ([]string, []*providers.Credential) {
		mu.Lock()
		defer mu.Unlock()
		for keptTotal <= since && writing > 0 {
			stored.Wait()
		}
		var vs []string
		for _, c := range kept {
			v := c.Fields[providers.FieldToken].Reveal()
			vs = append(vs, v)
		}
		return vs, append([]*providers.Credential(nil), kept...)
	}
	var next atomic.Int64
	newCred := func() *providers.Credential {
		n := next.Add(1)
		return &providers.Credential{Fields: map[string]providers.Secret{
			providers.FieldToken: providers.NewSecret(fmt.Sprintf("churn/%06d+%x", n, uint64(n)*0x9e3779b97f4a7c15)),
		}}
	}
	writers, readers, rounds := 3, 3, 150
	if testing.Short() {
		rounds = 40
	}
	var wg sync.WaitGroup
	var leaks atomic.Int64
	var firstLeak atomic.Value
	writing = writers
	for range writers {
		wg.Go(func() {
			defer func() {
				mu.Lock()
				writing--
				stored.Broadcast()
				mu.Unlock()
			}()
			for i := range rounds {
				c := newCred()
				// The injection registers the credential before the
				// request leaves; the upstream keeps it after.
				tablePrepare(s, c)
				store(c)
				if i%16 == 0 {
					runtime.GC() // dropped credentials are collected: rebuilds
				}
			}
		})
	}
	for range readers {
		wg.Go(func() {
			own := newCred()
			for range rounds {
				mu.Lock()
				since := keptTotal
				mu.Unlock()
				h := tablePrepare(s, own)
				// The round trip: the upstream answers with what it
				// keeps by now, writers' credentials injected after
				// this request was prepared included.
				vs, held := echo(since)
				var body strings.Builder
				for _, v := range vs {
					fmt.Fprintf(&body, "%s %s {\"k\":%q}\n", v, url.QueryEscape(v), v)
				}
				ss := tableTransform(s, h)
				got := string(scrubThroughT(t, ss, []byte(body.String())))
				for _, v := range vs {
					for _, f := range []string{v, url.QueryEscape(v)} {
						if strings.Contains(got, f) {
							leaks.Add(1)
							firstLeak.CompareAndSwap(nil, "a kept credential reached the client in the form "+f)
						}
					}
				}
				runtime.KeepAlive(held)
			}
		})
	}
	wg.Wait()
	if n := leaks.Load(); n > 0 {
		t.Fatalf("%d leaks; first: %v", n, firstLeak.Load())
	}
	// Quiet again, the background rebuild folds every pending credential
	// into the combined table.
	waitFor(t, 10*time.Second, "the background rebuild to fold every pending credential into the combined table", func() bool {
		return s.current().pending == 0
	})
}

// scrubThroughT is scrubThrough returning the scrubbed body.
func scrubThroughT(t *testing.T, ss []*transform.Scrubber, body []byte) []byte {
	t.Helper()
	resp := &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
	for _, s := range ss {
		if _, err := s.TransformResponse(resp); err != nil {
			t.Fatal(err)
		}
	}
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEveryPublishedTableFollowable: every table of every held credential
// the gateway publishes can be followed by a streaming body (its live
// Table is built, and is the one published to followers), from the first
// credential on — whose pending layer sits on the empty base, before any
// rebuild — and through each addition, and scrubs every credential
// registered so far, whatever the background rebuild has folded in.
// Before, a table whose base was empty (the gateway's first credentials,
// before the first rebuild published; or after every credential was
// dropped) had no live Table: a long WebSocket payload or a stream that
// began then kept a fixed table and passed on a credential injected
// while it streamed (TestWebSocketLongPayloadScrubsCredentialInjectedLater
// failed that way under load: 0 redactions).
func TestEveryPublishedTableFollowable(t *testing.T) {
	var s scrubbers
	var creds []*providers.Credential
	for i := range 4 {
		v := fmt.Sprintf("followable-secret-%d-value", i)
		c := &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(v)}}
		creds = append(creds, c)
		s.register(keyOf(c), c)
		tbl := s.table.Load()
		if tbl == nil || tbl.live == nil {
			t.Fatalf("after credential %d: the published table has no live Table (pending %d)", i, tbl.pending)
		}
		live := s.live.Load()
		if live == nil {
			t.Fatalf("after credential %d: no live Table published to followers", i)
		}
		for j, c := range creds {
			want, _ := c.Field(providers.FieldToken)
			out, _ := live.Bytes([]byte("<" + want.Reveal() + ">"))
			if bytes.Contains(out, []byte("secret")) {
				t.Errorf("after credential %d: the live Table passes credential %d on: %q", i, j, out)
			}
		}
	}
	runtime.KeepAlive(creds)
}
