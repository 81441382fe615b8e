package transform

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/credgate/credgate/secret"
)

// liveAlphabet is small, and holds bytes the encoders rewrite, so that
// random texts and secrets overlap, share prefixes and hold each other's
// forms.
const liveAlphabet = "ab+/c%"

// liveOpts are the options of the gateway's table (KeepLength), with a
// short MinLength so that short random secrets are scrubbed.
var liveOpts = ScrubOptions{KeepLength: true, MinLength: 3}

// randomSecrets returns 1 to 3 scrubbers of one random secret each.
func randomSecrets(r *rand.Rand) ([]*Scrubber, []string) {
	var ss []*Scrubber
	var vs []string
	for range 1 + r.IntN(3) {
		v := string(randomText(r, liveAlphabet, 3+r.IntN(8)))
		vs = append(vs, v)
		ss = append(ss, NewScrubber([]secret.Value{secret.New(v)}, liveOpts))
	}
	return ss, vs
}

// randomTable returns a table of one stage (a combined table) or two (a
// combined table and the layer of secrets added since), and the secrets.
func randomTable(t testing.TB, r *rand.Rand) (*Table, []string) {
	base, vs := randomSecrets(r)
	b := Combine(base...)
	stages := []*Scrubber{b}
	if r.IntN(2) == 0 {
		more, mvs := randomSecrets(r)
		stages = append(stages, Layer(b, more...))
		vs = append(vs, mvs...)
	}
	tb, err := NewTable(stages...)
	if err != nil {
		t.Fatal(err)
	}
	return tb, vs
}

// liveText is random text with forms of the given secrets planted in it,
// apart, side by side and overlapping.
func liveText(r *rand.Rand, vs []string) []byte {
	var b []byte
	for range r.IntN(12) {
		b = append(b, randomText(r, liveAlphabet, r.IntN(10))...)
		if len(vs) > 0 {
			fs := forms(vs[r.IntN(len(vs))], 3)
			f := fs[r.IntN(len(fs))]
			if k := r.IntN(4); k == 0 && len(b) > 0 {
				// Overlapping what came before.
				b = b[:len(b)-r.IntN(min(len(b), len(f)))]
			}
			b = append(b, f...)
		}
	}
	return b
}

// spansOf returns the replacements each stage of tb makes in x applied
// whole, in x's offsets (every stage keeps lengths).
func spansOf(tb *Table, x []byte) [][2]int {
	var spans [][2]int
	in := x
	for _, s := range tb.stages {
		var at int
		in, _ = s.m.applyAt(in, func(n *needle) error {
			spans = append(spans, [2]int{at, at + len(n.find)})
			return nil
		}, &at)
	}
	return spans
}

// checkLiveSwap reads x through a reader of old that follows a Tables,
// in reads of random sizes from a source of random sizes, publishes nw
// once swapAt bytes were passed on (never if swapAt > len(x)), and
// checks the output against the cut-over rule of Table:
//
//	out[:E]  == old applied to all of x, up to E (what was passed on)
//	out[E:c] is redaction marker bytes, c == E unless E splits an old
//	         redaction, c past every old redaction E splits
//	out[c:]  == nw applied to x[c:] from scratch
//
// where E is what was passed on before nw was published and c the
// cut-over the reader chose.
func checkLiveSwap(t *testing.T, r *rand.Rand, old, nw *Table, x []byte, swapAt int) {
	t.Helper()
	follow := &Tables{}
	follow.Store(old)
	cnt := &ScrubCount{}
	sizes := make([]int, 1+r.IntN(4))
	for i := range sizes {
		sizes[i] = 1 + r.IntN(20)
	}
	lr := old.Reader(&splitReader{data: bytes.Clone(x), sizes: sizes}, cnt, follow).(*liveReader)
	p := make([]byte, 64)
	var out []byte
	e := -1
	for {
		if e < 0 && len(out) >= swapAt {
			follow.Store(nw)
			e = len(out)
		}
		var b []byte
		var err error
		if r.IntN(2) == 0 {
			n, rerr := lr.Read(p[:1+r.IntN(len(p))])
			b, err = p[:n], rerr
		} else {
			b, err = lr.ReadChunk(p[:1+r.IntN(len(p))])
		}
		out = append(out, b...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	oldOut, oldN := old.Bytes(x)
	if e < 0 {
		if !bytes.Equal(out, oldOut) {
			t.Fatalf("no swap: got %q, want %q", out, oldOut)
		}
		if cnt.Count() != int64(oldN) {
			t.Fatalf("no swap: counted %d, want %d", cnt.Count(), oldN)
		}
		return
	}
	c := int(lr.cut)
	if lr.cut < 0 {
		c = len(x) // read to its end before the swap was seen
		if e != len(x) {
			t.Fatalf("swap at %d of %d not taken up", e, len(x))
		}
	}
	desc := fmt.Sprintf("x=%q swap after %d, cut-over %d, out=%q", x, e, c, out)
	if c < e || c > len(x) || len(out) != len(x) {
		t.Fatalf("cut-over out of range: %s", desc)
	}
	if !bytes.Equal(out[:e], oldOut[:e]) {
		t.Fatalf("passed on before the swap: got %q, want %q; %s", out[:e], oldOut[:e], desc)
	}
	spans := spansOf(old, x)
	splits := false
	for _, sp := range spans {
		if sp[0] < e && e < sp[1] {
			splits = true
			if c < sp[1] {
				t.Fatalf("the cut-over splits the old redaction %v: %s", sp, desc)
			}
		}
	}
	if !splits && c != e {
		t.Fatalf("the cut-over moved though no redaction was split: %s", desc)
	}
	for _, sp := range spansOf(&Table{stages: old.stages[:1]}, x) {
		if sp[0] < c && c < sp[1] {
			t.Fatalf("the cut-over splits the old first stage's redaction %v: %s", sp, desc)
		}
	}
	if strings.Trim(string(out[e:c]), "[]REDACT*") != "" {
		t.Fatalf("out[E:c] = %q is not redaction markers: %s", out[e:c], desc)
	}
	newOut, newN := nw.Bytes(bytes.Clone(x[c:]))
	if !bytes.Equal(out[c:], newOut) {
		t.Fatalf("after the cut-over: got %q, want %q; %s", out[c:], newOut, desc)
	}
	if c == e {
		want := int64(newN)
		for _, sp := range spans {
			if sp[1] <= e {
				want++
			}
		}
		if cnt.Count() != want {
			t.Fatalf("counted %d, want %d: %s", cnt.Count(), want, desc)
		}
	}
}

// TestLiveSwapDifferential: a body scrubbed by a Table that follows a
// Tables takes up a table published while it streams at the cut-over
// Table documents — for random secrets (one or two stages, the second a
// Layer over the first), random texts holding their forms, random reads
// from the source and by the caller, and a random swap point — against
// the tables applied whole. Before, a body kept the table it began with.
func TestLiveSwapDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 1500
	if testing.Short() {
		n = 500
	}
	for range n {
		old, ovs := randomTable(t, r)
		nw, nvs := randomTable(t, r)
		if r.IntN(3) == 0 {
			// The new table holds the old one's secrets and more (a
			// credential added), as the gateway's does.
			more, mvs := randomSecrets(r)
			base := Combine(old.stages...)
			var err error
			if nw, err = NewTable(base, Layer(base, more...)); err != nil {
				t.Fatal(err)
			}
			nvs = mvs
		}
		x := liveText(r, append(ovs, nvs...))
		checkLiveSwap(t, r, old, nw, x, r.IntN(len(x)+2))
	}
}

// FuzzLiveSwap is TestLiveSwapDifferential for texts the fuzzer writes.
func FuzzLiveSwap(f *testing.F) {
	f.Add([]byte("ab+/cab+/c%%ab"), uint64(1), uint16(3))
	f.Add([]byte("+++///aaabbbccc%%%"), uint64(7), uint16(0))
	f.Fuzz(func(t *testing.T, x []byte, seed uint64, swapAt uint16) {
		r := rand.New(rand.NewPCG(seed, 3))
		old, _ := randomTable(t, r)
		nw, _ := randomTable(t, r)
		if len(x) > 4096 {
			x = x[:4096]
		}
		checkLiveSwap(t, r, old, nw, x, int(swapAt)%(len(x)+2))
	})
}

// TestLiveSecretAfterSwap is the case the gateway meets: a stream begun
// under a table without a secret, the secret published, then sent —
// whole, split across the source's reads, and split where the old table
// had held back bytes that begin a form of it.
func TestLiveSecretAfterSwap(t *testing.T) {
	const v = "sk_live_midstream_42"
	oldS := NewScrubber([]secret.Value{secret.New("sk_live_other_value")}, ScrubOptions{KeepLength: true})
	newS := NewScrubber([]secret.Value{secret.New(v)}, ScrubOptions{KeepLength: true})
	old, err := NewTable(oldS)
	if err != nil {
		t.Fatal(err)
	}
	layered, err := NewTable(oldS, Layer(oldS, newS))
	if err != nil {
		t.Fatal(err)
	}
	for _, split := range []int{0, 1, 8, len(v) - 1} {
		t.Run(fmt.Sprint(split), func(t *testing.T) {
			follow := &Tables{}
			follow.Store(old)
			pr, pw := io.Pipe()
			cnt := &ScrubCount{}
			rc := old.Reader(pr, cnt, follow)
			go func() {
				_, _ = pw.Write([]byte("data: hello\n\n"))
				_, _ = pw.Write([]byte("data: " + v[:split])) // "sk_live_" may be held back
				_, _ = pw.Write([]byte(v[split:] + "\n\n"))
				_ = pw.Close()
			}()
			buf := make([]byte, 64)
			n, err := rc.Read(buf)
			if err != nil || string(buf[:n]) != "data: hello\n\n" {
				t.Fatalf("first event %q, %v", buf[:n], err)
			}
			follow.Store(layered)
			rest, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(rest), v) || !strings.Contains(string(rest), secret.Redacted) {
				t.Fatalf("after the swap: %q", rest)
			}
			if cnt.Count() != 1 {
				t.Fatalf("counted %d, want 1", cnt.Count())
			}
		})
	}
}

// TestLiveTableTransformResponse: Table.TransformResponse keeps an
// unencoded body's length, decodes an encoded one, scrubs headers and
// trailers (the trailers with the table in use at the body's end), and
// follows a gRPC body's messages as Scrubber.TransformResponse does.
func TestLiveTableTransformResponse(t *testing.T) {
	const v = "sk_live_transform_resp"
	s := NewScrubber([]secret.Value{secret.New(v)}, ScrubOptions{KeepLength: true})
	empty, _ := NewTable()
	full, _ := NewTable(s)
	follow := &Tables{}
	follow.Store(empty)
	body := "x " + v + " y"
	resp := &http.Response{Header: http.Header{"X-A": {v}}, Body: io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), Trailer: http.Header{}}
	cnt, err := empty.TransformResponse(resp, follow)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("X-A") != v {
		t.Fatalf("header scrubbed by a table without the secret")
	}
	follow.Store(full)
	resp.Trailer.Set("X-T", v)
	got, err := io.ReadAll(resp.Body)
	if err != nil || strings.Contains(string(got), v) || len(got) != len(body) || resp.ContentLength != int64(len(body)) {
		t.Fatalf("body %q, %v", got, err)
	}
	if resp.Trailer.Get("X-T") == v || cnt.Count() != 2 {
		t.Fatalf("trailer %q, count %d", resp.Trailer.Get("X-T"), cnt.Count())
	}

	gz := compress(t, "gzip", []byte(body))
	resp = &http.Response{Header: http.Header{"Content-Encoding": {"gzip"}}, Body: io.NopCloser(bytes.NewReader(gz)), ContentLength: int64(len(gz))}
	if _, err := full.TransformResponse(resp, follow); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(resp.Body); err != nil || strings.Contains(string(got), v) || len(got) != len(body) {
		t.Fatalf("decoded body %q, %v", got, err)
	}
	resp = &http.Response{Header: http.Header{"Content-Encoding": {"zstd"}}, Body: io.NopCloser(strings.NewReader("x"))}
	if _, err := full.TransformResponse(resp, follow); !errors.Is(err, ErrUnsupportedEncoding) {
		t.Fatalf("zstd: %v", err)
	}

	// A gRPC message ending in a form's first bytes is not held back.
	msg := grpcMessage("ends in s")
	pr, pw := io.Pipe()
	resp = &http.Response{Header: http.Header{"Content-Type": {"application/grpc"}}, Body: pr, ContentLength: -1}
	if _, err := full.TransformResponse(resp, follow); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = pw.Write([]byte(msg)) }()
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(resp.Body, buf, len(msg))
	if err != nil || string(buf[:n]) != msg {
		t.Fatalf("gRPC message %q, %v", buf[:n], err)
	}
	_ = pw.Close()

	if _, err := NewTable(NewScrubber([]secret.Value{secret.New(v)}, ScrubOptions{})); err == nil {
		t.Fatal("a table of a scrubber that changes lengths was built")
	}
}

// TestLiveResponseAllocs: a scrubbed response body of the gateway's
// common shape (a small JSON answer of declared length, one secret, read
// to its end so that the trailers are scrubbed too) costs the liveBody
// and its buffer, and no allocation for the end it runs (liveBody sets
// itself as its reader's ender, not a method value): 3 allocations, 4
// before.
func TestLiveResponseAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not kept under -race")
	}
	const v = "sk_live_transform_allocs"
	full, err := NewTable(NewScrubber([]secret.Value{secret.New(v)}, ScrubOptions{KeepLength: true}))
	if err != nil {
		t.Fatal(err)
	}
	follow := &Tables{}
	follow.Store(full)
	body := `{"id":"ch_1","object":"charge","amount":100,"currency":"usd","echo":"` + v + `"}`
	src := strings.NewReader(body)
	rc := io.NopCloser(src)
	resp := &http.Response{Header: http.Header{"Content-Type": {"application/json"}}, Trailer: http.Header{}}
	buf := make([]byte, 512)
	n := testing.AllocsPerRun(100, func() {
		src.Reset(body)
		resp.Body, resp.ContentLength = rc, int64(len(body))
		if _, err := full.TransformResponse(resp, follow); err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				break
			}
		}
	})
	if n > 3 {
		t.Errorf("TransformResponse and the body read to its end: %v allocations, want at most 3", n)
	}
}
