//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"
)

// The one-pass scan counts what counting each value over the whole text
// counts (the scan it replaced), with values planted across the reads'
// boundaries (the matcher's 4 KiB first read and 32 KiB chunks, and
// whatever sizes the source returns).
func TestScanSecretsCountsLikeBytesCount(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var secrets []string
	for i := range 40 {
		secrets = append(secrets, fmt.Sprintf("%x", rng.Uint64())+fmt.Sprintf("-s%02d-", i)+fmt.Sprintf("%x", rng.Uint64()))
	}
	secrets = append(secrets, "short1") // shorter than the scrubber's default minimum
	// Audit-like lines, with values planted so that one straddles each
	// boundary at every offset within it.
	var text bytes.Buffer
	for text.Len() < 400<<10 {
		fmt.Fprintf(&text, `{"time":"2026-12-02T10:00:00Z","rule":"bench-inject","host":"api.origin.test","status":200,"n":%d}`+"\n", rng.IntN(1e6))
	}
	b := text.Bytes()
	planted := 0
	for _, boundary := range []int{4 << 10, 32 << 10, 64 << 10, 96 << 10, 128<<10 + 3, 200 << 10, 256 << 10} {
		s := secrets[planted%len(secrets)]
		for off := 0; off <= len(s); off += 7 {
			at := boundary + (off * 64) - len(s) + off
			copy(b[at:], s)
			planted++
		}
	}
	copy(b[len(b)-len(secrets[0]):], secrets[0]) // at the very end
	copy(b, secrets[len(secrets)-1])             // and the very start
	var want int64
	for _, s := range secrets {
		want += int64(bytes.Count(b, []byte(s)))
	}
	if want < int64(planted) {
		t.Fatalf("planted %d, bytes.Count finds %d: the test overwrote its own plants", planted, want)
	}
	sc := newSecretScanner(secrets)
	for name, r := range map[string]func() io.Reader{
		"whole":    func() io.Reader { return bytes.NewReader(b) },
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
		"halves":   func() io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
		"odd":      func() io.Reader { return &oddReader{r: bytes.NewReader(b)} },
	} {
		got, err := sc.count(r())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got != want {
			t.Errorf("%s: scan counted %d, bytes.Count %d", name, got, want)
		}
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := sc.countFile(path); err != nil || got != want {
		t.Errorf("countFile = %d, %v; want %d", got, err, want)
	}
	if got, err := newSecretScanner(secrets[:3]).count(bytes.NewReader(text.Bytes()[1000:2000])); err != nil || got != 0 {
		t.Errorf("text without a value: %d, %v", got, err)
	}
}

// oddReader returns reads of sizes that never line up with the matcher's
// buffers.
type oddReader struct {
	r io.Reader
	i int
}

func (o *oddReader) Read(p []byte) (int, error) {
	sizes := []int{4093, 32771, 1, 17, 8190}
	n := min(len(p), sizes[o.i%len(sizes)])
	o.i++
	return o.r.Read(p[:n])
}
