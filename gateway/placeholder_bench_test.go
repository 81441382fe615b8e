package gateway

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
)

// benchJSON is about 1 MiB of JSON records, one in every `every` carrying
// tok (a placeholder, a secret echoed back; as transform's BenchmarkRequestJSON).
func benchJSON(tok string, every int) []byte {
	var b bytes.Buffer
	b.WriteString("[")
	for i := 0; b.Len() < 1<<20; i++ {
		t := "tok_" + strconv.Itoa(i)
		if i%every == 0 {
			t = tok
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"customer %d","email":"c%d@example.com","token":%q,"note":"lorem ipsum dolor sit amet"},`, i, i, i, t)
	}
	b.WriteString("{}]")
	return b.Bytes()
}

// BenchmarkPlaceholderJSONBody sends a 1 MiB JSON body through the
// gateway's whole request path (interception, decision, injection,
// upstream TLS; in-process, client, gateway and origin sharing the CPUs):
// "plain" through a gateway whose policy has no placeholders (the body
// passes as is), "substitute" through one where the body's placeholders
// are replaced (streamed, sent chunked) and every other placeholder of
// the policy is looked for. The target: substitute ≥ 0.9× plain
// (compare the MB/s, and cpu-ns/op, which load on a shared machine moves
// less).
func BenchmarkPlaceholderJSONBody(b *testing.B) {
	body := benchJSON(phAPI, 64)
	run := func(b *testing.B, tg *testGateway, chunked bool) {
		c := tg.client(b, false)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := processCPU()
		for b.Loop() {
			req, _ := http.NewRequest("POST", "https://"+apiHost+"/echo", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if chunked {
				req.ContentLength, req.Body = -1, io.NopCloser(req.Body)
			}
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %s", resp.Status)
			}
		}
		// CPU per request (client, gateway and origin together): on a
		// shared machine it moves far less than wall time.
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	}
	b.Run("plain", func(b *testing.B) { run(b, startGateway(b), false) })
	// The body sent chunked, as a substituted body of changed length is
	// sent upstream: the share of the difference that is the framing.
	b.Run("plain_chunked", func(b *testing.B) { run(b, startGateway(b), true) })
	b.Run("substitute", func(b *testing.B) {
		tg, _ := startPlaceholderGateway(b, false)
		run(b, tg, false)
	})
}
