package gateway

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/transform"
)

// tableCred returns a distinct credential with one secret field, as a
// per-workload provider (a Vault path per workload, an STS role, an
// OAuth2 client) issues them.
func tableCred(i int) *providers.Credential {
	return &providers.Credential{Fields: map[string]providers.Secret{
		providers.FieldToken: providers.NewSecret(fmt.Sprintf("wl_%06d_%x", i, uint64(i)*0x9e3779b97f4a7c15)),
	}}
}

// tableBody is a 2 KiB JSON answer echoing v once.
func tableBody(v string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < 2<<10; i++ {
		fmt.Fprintf(&b, `{"id":%d,"name":"item %d","note":"lorem ipsum dolor sit amet"},`, i, i)
	}
	fmt.Fprintf(&b, `{"echo":%q}]}`, v)
	return b.Bytes()
}

// scrubThrough scrubs body through ss as transformResponse does, and
// returns how many occurrences were redacted.
func scrubThrough(b testing.TB, ss []*transform.Scrubber, body []byte) int64 {
	resp := &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
	var counts []*transform.ScrubCount
	for _, s := range ss {
		c, err := s.TransformResponse(resp)
		if err != nil {
			b.Fatal(err)
		}
		counts = append(counts, c)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, c := range counts {
		n += c.Count()
	}
	return n
}

// BenchmarkScrubTable measures what a request of a scrubbing rule costs
// for the table of every held credential (scrubbers.forResponse: the
// registration of its own credential, the choice of its Scrubbers) and
// the scrubbing of a 2 KiB answer echoing its credential, with 1, 100
// and 1,000 credentials held, and with churn: a new credential (and one
// dropped) every N requests, the request injecting it. rebuild-1000 is
// the cost of one combined table of 1,000 credentials, search table
// included.
func BenchmarkScrubTable(b *testing.B) {
	for _, tc := range []struct {
		name        string
		held, every int
	}{
		{"held-1", 1, 0},
		{"held-100", 100, 0},
		{"held-1000", 1000, 0},
		{"held-1000/churn-every-100", 1000, 100},
		{"held-1000/churn-every-10", 1000, 10},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := &scrubbers{}
			creds := make([]*providers.Credential, tc.held)
			for i := range creds {
				creds[i] = tableCred(i)
				benchForResponse(s, creds[i])
			}
			bodies := make([][]byte, len(creds))
			for i, c := range creds {
				bodies[i] = tableBody(c.Fields[providers.FieldToken].Reveal())
			}
			// The table of the credentials held is built (in the
			// background) before the requests are measured.
			waitFor(b, time.Minute, "the combined table of the credentials held", func() bool {
				return s.current().pending == 0
			})
			next := len(creds)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				k := i % len(creds)
				if tc.every > 0 && i%tc.every == 0 {
					// The oldest is dropped, a new one is injected.
					creds[k] = tableCred(next)
					bodies[k] = tableBody(creds[k].Fields[providers.FieldToken].Reveal())
					next++
				}
				if n := scrubThrough(b, benchForResponse(s, creds[k]), bodies[k]); n != 1 {
					b.Fatalf("scrubbed %d occurrences, want 1", n)
				}
				i++
			}
		})
	}
	b.Run("rebuild-1000", func(b *testing.B) {
		vs := make([]*transform.Scrubber, 1000)
		for i := range vs {
			vs[i] = newCredScrubber(tableCred(i))
		}
		text := []byte(`{"id":1,"name":"nothing to redact here at all"}`)
		b.ReportAllocs()
		for b.Loop() {
			// The search table is built on first use: a text makes it.
			transform.Combine(vs...).Bytes(text)
		}
	})
}

// BenchmarkLogTextManyHeld is the cost of an exchange's logged error text
// (logText) with 1,000 other credentials held: pieces are looked for in
// the request's own secrets' forms, the table of every held credential
// applied to whole forms (linear in the text).
func BenchmarkLogTextManyHeld(b *testing.B) {
	g := &Gateway{}
	for i := range 1000 {
		g.scrubbers.register(keyOf(tableCred(i)), tableCred(i))
	}
	waitFor(b, time.Minute, "the combined table of the credentials held", func() bool {
		return g.scrubbers.current().pending == 0
	})
	own := tableCred(1000)
	st := &reqState{cred: own, resp: tablePrepare(&g.scrubbers, own)}
	secret := own.Fields[providers.FieldToken].Reveal()
	err := fmt.Errorf("malformed HTTP response %q", strings.Repeat("x", 900)+secret[:12])
	b.ReportAllocs()
	for b.Loop() {
		if strings.Contains(g.logText(st, err), secret[:12]) {
			b.Fatal("a piece of the request's own secret was logged")
		}
	}
}
