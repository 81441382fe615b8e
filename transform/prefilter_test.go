package transform

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// naiveApply is matcher.apply by brute force.
func naiveApply(m *matcher, b []byte) []byte {
	var out []byte
	for {
		at, w := naiveFirst(m, b)
		if at < 0 {
			return append(out, b...)
		}
		out = append(append(out, b[:at]...), m.needles[w].repl...)
		b = b[at+len(m.needles[w].find):]
	}
}

// randomNeedles returns 1 to 6 distinct needles of 1 to 12 bytes from
// alphabet (repl marks each, so a wrong choice shows).
func randomNeedles(r *rand.Rand, alphabet string) []needle {
	var ns []needle
	for i := range 1 + r.IntN(6) {
		find := make([]byte, 1+r.IntN(12))
		for j := range find {
			find[j] = alphabet[r.IntN(len(alphabet))]
		}
		ns = append(ns, needle{find: find, repl: []byte{'<', byte('0' + i), '>'}})
	}
	return ns
}

func randomText(r *rand.Rand, alphabet string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return b
}

// checkSearch compares first (prefiltered when m has a prefilter), scan
// (Wu-Manber) and apply with brute force on text, and the stream reader
// with brute force when text arrives in reads of the given sizes (read
// with Read and ReadChunk in turn).
func checkSearch(t *testing.T, m *matcher, text []byte, sizes ...[]int) {
	t.Helper()
	nat, nw := naiveFirst(m, text)
	if at, w := m.first(text); at != nat || at >= 0 && w != nw {
		t.Fatalf("needles %q, text %q: first = %d,%d; brute force %d,%d", finds(m), text, at, w, nat, nw)
	}
	if at, w := m.scan(text); at != nat || at >= 0 && w != nw {
		t.Fatalf("needles %q, text %q: scan = %d,%d; brute force %d,%d", finds(m), text, at, w, nat, nw)
	}
	want := naiveApply(m, text)
	if got, _ := m.apply(text, func(*needle) error { return nil }); !bytes.Equal(got, want) {
		t.Fatalf("needles %q, text %q: apply %q, brute force %q", finds(m), text, got, want)
	}
	for i, sz := range sizes {
		// Read and ReadChunk search alike and differ in how they hand
		// bytes on: each takes every other way of splitting the text.
		s := newStreamReader(&splitReader{data: text, sizes: sz}, m, func(*needle) error { return nil })
		how := "Read"
		var got []byte
		var err error
		if i%2 == 0 {
			got, err = io.ReadAll(s)
		} else {
			how = "ReadChunk"
			got, err = readChunks(s, 1+len(text)%7)
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("needles %q, text %q, reads %v: stream through %s %q (%v), brute force %q", finds(m), text, sz, how, got, err, want)
		}
	}
}

// readChunks reads s to its end through ReadChunk with a buffer of n
// bytes, as the gateway's copyBody does.
func readChunks(s *streamReader, n int) ([]byte, error) {
	var out []byte
	p := make([]byte, n)
	for {
		b, err := s.ReadChunk(p)
		out = append(out, b...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

func finds(m *matcher) []string {
	var s []string
	for _, n := range m.needles {
		s = append(s, string(n.find))
	}
	return s
}

// TestMatcherDifferential checks the prefiltered search, Wu-Manber and
// the stream reader against brute force over random needle sets and
// texts, with every needle planted at every offset and the stream split
// at every byte of the planted needle. Alphabets of rare bytes give
// needle sets the prefilter takes; texts made of the needles' own bytes
// make it give up and fall back mid-text; common letters give sets it
// refuses.
func TestMatcherDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 42))
	alphabets := []string{"QZ%", "QZX#~_", "ab", "abcCDE", "\x00\x01\xff"}
	prefiltered := 0
	for round := range 200 {
		alphabet := alphabets[round%len(alphabets)]
		m := newMatcher(randomNeedles(r, alphabet))
		if m.pf != nil {
			prefiltered++
		}
		text := randomText(r, alphabet+"....", r.IntN(120))
		checkSearch(t, m, text, nil, []int{1}, []int{2, 3}, []int{7, 1})
		for _, n := range m.needles {
			for off := 0; off+len(n.find) <= len(text); off += 1 + round%3 {
				planted := append([]byte(nil), text...)
				copy(planted[off:], n.find)
				var sizes [][]int
				for d := range len(n.find) + 1 {
					sizes = append(sizes, []int{max(1, off+d), 64})
				}
				checkSearch(t, m, planted, sizes...)
			}
		}
	}
	if prefiltered < 60 {
		t.Errorf("only %d of 200 needle sets were prefiltered: the test no longer covers the prefilter", prefiltered)
	}
}

// TestMatcherManyNeedles is TestMatcherDifferential for sets of more
// than manyNeedles needles (a secret scan's hundreds of values and their
// forms), which Wu-Manber and holdBack look up by hash and in byte order
// instead of comparing each: hex needles sharing prefixes over texts of
// the same digits, so that most windows are candidates and most ends of
// a read begin some needle.
func TestMatcherManyNeedles(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	for round := range 40 {
		alphabet := []string{"0123456789abcdef", "ab", "abc"}[round%3]
		var ns []needle
		for i := range manyNeedles + 1 + r.IntN(60) {
			find := make([]byte, 2+r.IntN(14))
			for j := range find {
				find[j] = alphabet[r.IntN(len(alphabet))]
			}
			if i%4 == 1 && len(ns) > 0 {
				// A longer needle that extends another: longest first.
				find = append(append([]byte(nil), ns[len(ns)-1].find...), find[:1+r.IntN(2)]...)
			}
			ns = append(ns, needle{find: find, repl: []byte{'<', byte('0' + i%10), '>'}})
		}
		m := newMatcher(ns)
		if len(m.needles) <= manyNeedles {
			continue
		}
		if m.sorted == nil || m.table().byLast == nil {
			t.Fatalf("round %d: %d needles without their lookup tables", round, len(m.needles))
		}
		text := randomText(r, alphabet+"..", 200+r.IntN(200))
		checkSearch(t, m, text, nil, []int{1}, []int{7, 3}, []int{64})
		for _, n := range m.needles[:min(len(m.needles), 12)] {
			off := r.IntN(len(text) - len(n.find))
			planted := append([]byte(nil), text...)
			copy(planted[off:], n.find)
			var sizes [][]int
			for d := range len(n.find) + 1 {
				sizes = append(sizes, []int{max(1, off+d), 64})
			}
			checkSearch(t, m, planted, sizes...)
		}
	}
}

// TestMatcherWindows plants needles around the prefilter's search windows
// in long texts that hold its rare bytes seldom or never.
func TestMatcherWindows(t *testing.T) {
	m := newMatcher([]needle{
		{find: []byte("CREDGATE_PH_api_key"), repl: []byte("1")},
		{find: []byte("CREDGATE_PH_dots"), repl: []byte("2")},
		{find: []byte("cgph_zq"), repl: []byte("3")},
		{find: []byte("sk%7Czz"), repl: []byte("4")},
	})
	if m.pf == nil || len(m.pf.rare) < 2 {
		t.Fatalf("the needles should take a prefilter of several bytes, got %+v", m.pf)
	}
	base := bytes.Repeat([]byte("lorem ipsum dolor sit amet "), 3*window/27+10)
	for _, n := range m.needles {
		for _, off := range []int{0, 1, window - len(n.find), window - 1, window, window + 1, 2*window - 3, len(base) - len(n.find)} {
			text := append([]byte(nil), base...)
			copy(text[off:], n.find)
			copy(text[len(text)-len(n.find):], n.find)
			checkSearch(t, m, text, nil, []int{off + 2, 100}, []int{window - 1})
		}
	}
}

// TestMatcherTableLazy checks that a matcher whose prefilter suits the
// text never builds its Wu-Manber table (16 KiB), and that one built on
// the first text that defeats the prefilter, from several goroutines at
// once, gives the same results (run with -race).
func TestMatcherTableLazy(t *testing.T) {
	m := newMatcher([]needle{{find: []byte("CREDGATE_PH_api_key"), repl: []byte("v")}, {find: []byte("CREDGATE_PH_dots"), act: trip}})
	if m.pf == nil {
		t.Fatal("the placeholders should take a prefilter")
	}
	text := []byte(`{"token":"CREDGATE_PH_api_key","note":"lorem ipsum dolor sit amet"}`)
	if got, _ := m.apply(text, func(*needle) error { return nil }); !bytes.Equal(got, naiveApply(m, text)) {
		t.Fatalf("apply %q", got)
	}
	if m.wm != nil {
		t.Fatal("the Wu-Manber table was built for a text the prefilter suits")
	}
	hostile := append(bytes.Repeat([]byte("CREDGATE_PX_"), 200), "CREDGATE_PH_dots"...)
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			if at, w := m.first(hostile); at != len(hostile)-16 || m.needles[w].act != trip {
				t.Errorf("first = %d,%d in the hostile text", at, w)
			}
		}()
	}
	for range 4 {
		<-done
	}
	if m.wm == nil {
		t.Error("the Wu-Manber table was not built for a text that defeats the prefilter")
	}
}

// TestMatcherBinary checks the prefilter's retreat for long needles in
// binary text, where every byte value is as frequent as any other: the
// forms of a hex token, planted around and far past the point where the
// search goes on with Wu-Manber, are found as brute force finds them,
// also by a stream reading the text in TLS-record-sized pieces; and
// Wu-Manber did take over (the table was built).
func TestMatcherBinary(t *testing.T) {
	var ns []needle
	for i, f := range forms("3f9a0c27e1b84d56a7c2e90f1b3d5a7c9e2f4a6b8d0c1e3f", DefaultMinLength) {
		ns = append(ns, needle{find: []byte(f), repl: []byte{'<', byte('0' + i), '>'}})
	}
	m := newMatcher(ns)
	if m.pf == nil {
		t.Fatal("the forms of a hex token should take a prefilter")
	}
	r := rand.New(rand.NewPCG(20, 1))
	base := make([]byte, 40<<10)
	for i := range base {
		base[i] = byte(r.Uint32())
	}
	if at, _ := m.first(base); at >= 0 {
		t.Fatalf("first = %d in a text without the token", at)
	}
	if m.wm == nil {
		t.Error("the prefilter kept visiting the rare bytes of a binary text: Wu-Manber never took over")
	}
	checkSearch(t, m, base, []int{16 << 10})
	for _, n := range m.needles {
		for _, off := range []int{0, 100, 2000, 4095, 9000, 16<<10 - 3, 30000, len(base) - len(n.find)} {
			text := append([]byte(nil), base...)
			copy(text[off:], n.find)
			checkSearch(t, m, text, nil, []int{16 << 10}, []int{off + 5, 16 << 10})
		}
	}
}

// FuzzMatcherMany checks matchers of any number of needles — past
// manyNeedles, where candidates are looked up by hash and binary search,
// and with prefilters that give way to Wu-Manber — against brute force,
// whole and streamed. The needles are cut from seed at the lengths in
// cuts; text is searched as given and with each needle planted in it.
func FuzzMatcherMany(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789abcdef0123456789abcdef"), []byte{2, 3, 4, 5, 6, 7}, []byte("xx0123yy89abzz"), byte(7))
	f.Add([]byte("ababababababababababababababababababababababab"), []byte{2, 2, 3, 2, 4}, []byte("abababa.bab"), byte(1))
	f.Fuzz(func(t *testing.T, seed, cuts, text []byte, size byte) {
		if len(cuts) == 0 || len(text) > 4096 {
			return
		}
		var ns []needle
		for i, off := 0, 0; off < len(seed) && len(ns) < 80; i++ {
			n := 2 + int(cuts[i%len(cuts)])%15
			if off+n > len(seed) {
				break
			}
			ns = append(ns, needle{find: seed[off : off+n], repl: []byte{'<', byte('0' + i%10), '>'}})
			// Overlapping cuts: needles that share prefixes and suffixes.
			off += 1 + int(cuts[i%len(cuts)])%max(1, n)
		}
		if len(ns) == 0 {
			return
		}
		m := newMatcher(ns)
		sizes := []int{1 + int(size)}
		checkSearch(t, m, text, sizes)
		for i, n := range m.needles {
			if i >= 8 {
				break
			}
			planted := append(append(append([]byte(nil), text[:len(text)/2]...), n.find...), text[len(text)/2:]...)
			checkSearch(t, m, planted, sizes, []int{max(1, len(text)/2+1), 3})
		}
	})
}

// cutReader returns data in reads of at most size bytes that never cross
// one of cuts (offsets in data): a stream's reads end exactly there.
type cutReader struct {
	data []byte
	off  int
	cuts []int
	size int
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.off == len(c.data) {
		return 0, io.EOF
	}
	end := min(len(c.data), c.off+c.size, c.off+len(p))
	for _, x := range c.cuts {
		if x > c.off && x < end {
			end = x
		}
	}
	n := copy(p, c.data[c.off:end])
	c.off += n
	return n, nil
}

// TestStreamPrefilterPause checks a stream that searches binary text
// (where the prefilter gives way to Wu-Manber in each read) against brute
// force: after the prefilter gave way, the stream searches its next
// prefilterPause fills with Wu-Manber alone, then tries the prefilter
// again. Needles are planted before and after the first give-way, in the
// pause, across the fill where the prefilter comes back and at the end,
// and the stream's reads are cut at every byte of each planted needle;
// it is read with Read and with ReadChunk (the gateway's copyBody).
func TestStreamPrefilterPause(t *testing.T) {
	const read = 8 << 10
	r := rand.New(rand.NewPCG(5, 8))
	for _, secret := range []string{"3f9a0c27e1b84d56a7c2e90f1b3d5a7c9e2f4a6b8d0c1e3f", `sk_live/Ab+c=d"e<f>&g h%z`} {
		var ns []needle
		for i, f := range forms(secret, DefaultMinLength) {
			ns = append(ns, needle{find: []byte(f), repl: []byte{'<', byte('a' + i), '>'}})
		}
		m := newMatcher(ns)
		if m.pf == nil {
			t.Fatalf("the forms of %q should take a prefilter", secret)
		}
		text := make([]byte, (prefilterPause+4)*read)
		for i := range text {
			text[i] = byte(r.Uint32())
		}
		spots := []int{100, 3 * read / 2, 3*read - 7, 20*read + 11, (prefilterPause+1)*read - 9, (prefilterPause+2)*read + 5, len(text) - 200}
		for i, off := range spots {
			copy(text[off:], m.needles[i%len(m.needles)].find)
		}
		want := naiveApply(m, text)

		// The stream gives way, pauses and tries the prefilter again.
		sr := newStreamReader(&cutReader{data: text, size: read}, m, func(*needle) error { return nil })
		var got []byte
		buf := make([]byte, 32<<10)
		gaveWay := 0
		for last := 0; ; {
			n, err := sr.Read(buf)
			got = append(got, buf[:n]...)
			if int(sr.scanOnly) > last {
				gaveWay++
			}
			last = int(sr.scanOnly)
			if err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%q: the stream differs from brute force", secret)
		}
		if gaveWay < 2 {
			t.Errorf("%q: the prefilter gave way %d times in %d fills of binary text, want 2 or more (once, then again after the pause)", secret, gaveWay, len(text)/read)
		}
		for i, off := range spots {
			for d := range len(m.needles[i%len(m.needles)].find) + 1 {
				// Read and ReadChunk search alike and differ in how they
				// hand bytes on: each takes every other cut.
				s := newStreamReader(&cutReader{data: text, size: read, cuts: []int{off + d}}, m, func(*needle) error { return nil })
				how := "Read"
				var got []byte
				var err error
				if d%2 == 0 {
					got, err = io.ReadAll(s)
				} else {
					how = "ReadChunk"
					got, err = readChunks(s, 32<<10)
				}
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%q, a read ending at %d (needle at %d): the stream through %s differs from brute force (%v)", secret, off+d, off, how, err)
				}
			}
		}
	}
}
