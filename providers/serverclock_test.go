package providers

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestServerExpiryBounded: the lifetime an answer states is counted from
// the request whatever the service's Date says ahead of the gateway's
// clock, and up to MaxDateLag behind it; a Date further behind would
// stretch the credential's life by as much, so the stated expiry is kept
// and one line is logged. Before the bound, the 3 cases past MaxDateLag
// failed (a Date a day behind gave a credential a day more).
func TestServerExpiryBounded(t *testing.T) {
	sent := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	const life = 15 * time.Minute
	for _, tc := range []struct {
		name    string
		lag     time.Duration // the gateway's clock minus the service's
		noDate  bool
		want    time.Time
		logLine bool
	}{
		{name: "same clock", lag: 0, want: sent.Add(life - time.Second)},
		{name: "Date a day ahead", lag: -24 * time.Hour, want: sent.Add(life - time.Second)},
		{name: "Date a minute behind", lag: time.Minute, want: sent.Add(life - time.Second)},
		{name: "Date at the bound", lag: MaxDateLag, want: sent.Add(life - time.Second)},
		{name: "Date a second past the bound", lag: MaxDateLag + time.Second, want: sent.Add(-MaxDateLag - time.Second + life), logLine: true},
		{name: "Date an hour behind", lag: time.Hour, want: sent.Add(-time.Hour + life), logLine: true},
		{name: "Date a day behind", lag: 24 * time.Hour, want: sent.Add(-24*time.Hour + life), logLine: true},
		{name: "no Date", lag: time.Hour, noDate: true, want: sent.Add(-time.Hour + life)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			date := sent.Add(-tc.lag)
			expiry := date.Add(life) // on the service's clock
			if tc.noDate {
				date = time.Time{}
			}
			if got := ServerExpiry(log, "test source", expiry, date, sent); !got.Equal(tc.want) {
				t.Errorf("ServerExpiry = %s, want %s", got, tc.want)
			}
			if n := strings.Count(buf.String(), "\n"); n != map[bool]int{false: 0, true: 1}[tc.logLine] {
				t.Errorf("%d log lines, want %v:\n%s", n, tc.logLine, buf.String())
			}
			if tc.logLine && !strings.Contains(buf.String(), "test source") {
				t.Errorf("the log line does not name the source:\n%s", buf.String())
			}
		})
	}
}
