package audit

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestAppendTime: AppendTime writes what t.UTC().AppendFormat(b,
// TimeFormat) writes, over the edges of each field (years 0, 9999 and
// outside them, month and day ends, leap days, the last millisecond of a
// second and the nanoseconds under it, zones other than UTC) and random
// instants across years 0–9999.
func TestAppendTime(t *testing.T) {
	east := time.FixedZone("east", 5*3600+1800)
	west := time.FixedZone("west", -11*3600)
	times := []time.Time{
		{},
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(2024, 2, 29, 12, 0, 0, 1, time.UTC),
		time.Date(2026, 12, 4, 23, 59, 59, 999_000_000, time.UTC),
		time.Date(2026, 12, 4, 23, 59, 59, 998_999_999, time.UTC),
		time.Date(2026, 1, 1, 0, 30, 0, 5_000_000, east),
		time.Date(2026, 12, 31, 20, 0, 0, 0, west),
		time.Unix(1<<40, 0),
		time.Now(),
		time.Now().In(east),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	lo, hi := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()
	for range 20000 {
		times = append(times, time.Unix(lo+rng.Int64N(hi-lo+1), rng.Int64N(1e9)))
	}
	for _, tm := range times {
		want := string(tm.UTC().AppendFormat([]byte("x"), TimeFormat))
		if got := string(AppendTime([]byte("x"), tm)); got != want {
			t.Fatalf("AppendTime(%v) = %q, want %q", tm, got, want)
		}
	}
}

func BenchmarkAppendTime(b *testing.B) {
	buf := make([]byte, 0, 64)
	tm := time.Now()
	b.Run("AppendTime", func(b *testing.B) {
		for b.Loop() {
			buf = AppendTime(buf[:0], tm)
		}
	})
	b.Run("AppendFormat", func(b *testing.B) {
		for b.Loop() {
			buf = tm.UTC().AppendFormat(buf[:0], TimeFormat)
		}
	})
}
