package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	for _, tt := range []struct {
		n        int
		min, max time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond},
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{4, 400 * time.Millisecond, 800 * time.Millisecond},
		{7, 500 * time.Millisecond, time.Second}, // capped
		{70, 500 * time.Millisecond, time.Second},
	} {
		for range 50 {
			if d := Delay(100*time.Millisecond, time.Second, tt.n); d < tt.min || d > tt.max {
				t.Fatalf("Delay(n=%d) = %v, want within [%v, %v]", tt.n, d, tt.min, tt.max)
			}
		}
	}
}

func TestWaitHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("stop")
	cancel(stop)
	if err := Wait(ctx, time.Hour, time.Hour, 1); !errors.Is(err, stop) {
		t.Fatalf("Wait = %v, want the context's cause", err)
	}
	if err := Wait(context.Background(), time.Millisecond, time.Millisecond, 1); err != nil {
		t.Fatalf("Wait = %v", err)
	}
}
