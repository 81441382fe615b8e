package gateway

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// TestAppendMS: appendMS writes what strconv.AppendFloat(b, ms(d), 'f',
// -1, 64) writes, the audit line's duration_ms and upstream_ms as they
// were: whole milliseconds, every count of trailing zeros in the
// fraction, sub-microsecond remainders, the edges of the fast path
// (10^12 µs and either side), negative durations, the extremes, and
// random durations of every magnitude.
func TestAppendMS(t *testing.T) {
	ds := []time.Duration{
		0, 1, 999, time.Microsecond, 10 * time.Microsecond, 100 * time.Microsecond,
		time.Millisecond, 1001 * time.Microsecond, 1010 * time.Microsecond, 1100 * time.Microsecond,
		1234567 * time.Nanosecond, time.Second, time.Hour, 1e12*time.Microsecond - 1,
		1e12 * time.Microsecond, 1e12*time.Microsecond + time.Microsecond, 1e12*time.Microsecond - time.Microsecond,
		-1, -time.Microsecond, -1500 * time.Microsecond, math.MaxInt64, math.MinInt64,
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 100000 {
		ds = append(ds, time.Duration(rng.Int64N(1<<uint(rng.IntN(62)+1))))
	}
	for _, d := range ds {
		want := string(strconv.AppendFloat([]byte("x"), ms(d), 'f', -1, 64))
		if got := string(appendMS([]byte("x"), d)); got != want {
			t.Fatalf("appendMS(%d) = %q, want %q", int64(d), got, want)
		}
	}
}

// FuzzAppendMS is TestAppendMS's comparison on any duration.
func FuzzAppendMS(f *testing.F) {
	f.Add(int64(1234567))
	f.Add(int64(-1))
	f.Fuzz(func(t *testing.T, n int64) {
		d := time.Duration(n)
		want := string(strconv.AppendFloat(nil, ms(d), 'f', -1, 64))
		if got := string(appendMS(nil, d)); got != want {
			t.Fatalf("appendMS(%d) = %q, want %q", n, got, want)
		}
	})
}

func BenchmarkAppendMS(b *testing.B) {
	buf := make([]byte, 0, 32)
	d := 1234567 * time.Nanosecond
	b.Run("appendMS", func(b *testing.B) {
		for b.Loop() {
			buf = appendMS(buf[:0], d)
		}
	})
	b.Run("AppendFloat", func(b *testing.B) {
		for b.Loop() {
			buf = strconv.AppendFloat(buf[:0], ms(d), 'f', -1, 64)
		}
	})
}
