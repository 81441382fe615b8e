package policy

import (
	"fmt"
	"testing"
	"time"
)

// The time zone rules of the zones TestConditionTimeDifferential checks,
// written out by hand from the laws in force for 2028 (not read from the
// time zone database the gateway uses): each returns the zone's offset
// from UTC at instant u.
func nthSunday(year int, month time.Month, n int) time.Time {
	d := time.Date(year, month, 1, 0, 0, 0, 0, time.UTC)
	for d.Weekday() != time.Sunday {
		d = d.AddDate(0, 0, 1)
	}
	return d.AddDate(0, 0, 7*(n-1))
}

func lastSunday(year int, month time.Month) time.Time {
	d := time.Date(year, month+1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, -1)
	for d.Weekday() != time.Sunday {
		d = d.AddDate(0, 0, -1)
	}
	return d
}

var refZones = []struct {
	name   string
	offset func(u time.Time) time.Duration
}{
	{"UTC", func(time.Time) time.Duration { return 0 }},
	// EU: summer time from the last Sunday of March to the last Sunday
	// of October, both at 01:00 UTC.
	{"Europe/Berlin", func(u time.Time) time.Duration {
		y := u.Year()
		if !u.Before(lastSunday(y, time.March).Add(time.Hour)) && u.Before(lastSunday(y, time.October).Add(time.Hour)) {
			return 2 * time.Hour
		}
		return time.Hour
	}},
	// US: from the second Sunday of March at 02:00 EST (07:00 UTC) to
	// the first Sunday of November at 02:00 EDT (06:00 UTC).
	{"America/New_York", func(u time.Time) time.Duration {
		y := u.Year()
		if !u.Before(nthSunday(y, time.March, 2).Add(7*time.Hour)) && u.Before(nthSunday(y, time.November, 1).Add(6*time.Hour)) {
			return -4 * time.Hour
		}
		return -5 * time.Hour
	}},
	// New South Wales (south: summer spans the new year): from the first
	// Sunday of October at 02:00 AEST to the first Sunday of April at
	// 03:00 AEDT, both 16:00 UTC the Saturday before.
	{"Australia/Sydney", func(u time.Time) time.Duration {
		y := u.Year()
		end := nthSunday(y, time.April, 1).Add(-8 * time.Hour)
		start := nthSunday(y, time.October, 1).Add(-8 * time.Hour)
		if u.Before(end) || !u.Before(start) {
			return 11 * time.Hour
		}
		return 10 * time.Hour
	}},
	// Lord Howe Island: +10:30, and a 30-minute summer time (+11) from
	// the first Sunday of October at 02:00 LHST (15:30 UTC the Saturday
	// before) to the first Sunday of April at 02:00 LHDT (15:00 UTC).
	{"Australia/Lord_Howe", func(u time.Time) time.Duration {
		y := u.Year()
		end := nthSunday(y, time.April, 1).Add(-9 * time.Hour)
		start := nthSunday(y, time.October, 1).Add(-8*time.Hour - 30*time.Minute)
		if u.Before(end) || !u.Before(start) {
			return 11 * time.Hour
		}
		return 10*time.Hour + 30*time.Minute
	}},
	{"Asia/Kolkata", func(time.Time) time.Duration { return 5*time.Hour + 30*time.Minute }},
	{"-03:30", func(time.Time) time.Duration { return -3*time.Hour - 30*time.Minute }},
}

// wall is the local time in a zone, as docs/policy.md documents the
// accessors: getFullYear, getMonth (0-11), getDate (1-31), getDayOfWeek
// (0 = Sunday), getHours, getMinutes.
type wall struct{ year, month, date, dow, hour, min int }

func wallAt(u time.Time, off time.Duration) wall {
	l := u.UTC().Add(off) // read as UTC: no zone database involved
	return wall{l.Year(), int(l.Month()) - 1, l.Day(), int(l.Weekday()), l.Hour(), l.Minute()}
}

func daysIn(year, month0 int) int {
	return time.Date(year, time.Month(month0+2), 0, 0, 0, 0, 0, time.UTC).Day()
}

// timeConditions are `when:` conditions over time, Z standing for the
// zone, with what each means on the local wall clock.
var timeConditions = []struct {
	name, src string
	ref       func(w wall) bool
}{
	{"night window across midnight (22:00-06:00)", `now.getHours(Z) >= 22 || now.getHours(Z) < 6`,
		func(w wall) bool { return w.hour >= 22 || w.hour < 6 }},
	{"business hours Monday to Friday (09:00-17:00)", `now.getDayOfWeek(Z) >= 1 && now.getDayOfWeek(Z) <= 5 && now.getHours(Z) >= 9 && now.getHours(Z) < 17`,
		func(w wall) bool { return w.dow >= 1 && w.dow <= 5 && w.hour >= 9 && w.hour < 17 }},
	{"the hour DST skips or repeats (02:00-03:00)", `now.getHours(Z) == 2`,
		func(w wall) bool { return w.hour == 2 }},
	{"minutes window 01:30-02:30", `now.getHours(Z) * 60 + now.getMinutes(Z) >= 90 && now.getHours(Z) * 60 + now.getMinutes(Z) < 150`,
		func(w wall) bool { m := w.hour*60 + w.min; return m >= 90 && m < 150 }},
	{"Monday in the zone", `now.getDayOfWeek(Z) == 1`,
		func(w wall) bool { return w.dow == 1 }},
	{"leap day", `now.getMonth(Z) == 1 && now.getDate(Z) == 29`,
		func(w wall) bool { return w.month == 1 && w.date == 29 }},
	{"last day of the month", `now.getDate(Z) == [31, now.getFullYear(Z) % 4 == 0 && (now.getFullYear(Z) % 100 != 0 || now.getFullYear(Z) % 400 == 0) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][now.getMonth(Z)]`,
		func(w wall) bool { return w.date == daysIn(w.year, w.month) }},
	{"window whose start equals its end (09:00-09:00) is empty", `now.getHours(Z) >= 9 && now.getHours(Z) < 9`,
		func(wall) bool { return false }},
	{"New Year's Eve evening", `now.getMonth(Z) == 11 && now.getDate(Z) == 31 && now.getHours(Z) >= 18`,
		func(w wall) bool { return w.month == 11 && w.date == 31 && w.hour >= 18 }},
}

// TestConditionTimeDifferential evaluates time conditions as the gateway
// does (compiled and evaluated like any `when:`) every 195 minutes of
// 2028 (a leap year), and every 5 minutes in the hours around each
// zone's DST transitions, and compares each verdict with an independent
// reference: the wall clock computed from the zone rules written out
// above, not from the time zone database. Zones north and south, a
// 30-minute DST (Lord Howe), fixed offsets (Kolkata, "-03:30"); windows
// across midnight, the skipped and the repeated hour, weekdays in the
// zone rather than in UTC, the leap day, the last day of a month, a
// window whose start equals its end. The semantics are docs/policy.md's
// (Time and time zones): the zone's wall clock, so the skipped hour does
// not happen and the repeated hour happens twice.
func TestConditionTimeDifferential(t *testing.T) {
	instants := map[time.Time]bool{}
	// Every 195 minutes: each day at seven times, over the year at
	// every hour and quarter hour.
	for u := time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC); u.Year() == 2028; u = u.Add(195 * time.Minute) {
		instants[u] = true
	}
	for _, z := range refZones {
		for u := time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC); u.Year() == 2028; u = u.Add(time.Hour) {
			if z.offset(u) != z.offset(u.Add(time.Hour)) { // a transition within the hour
				for m := u.Add(-2 * time.Hour); m.Before(u.Add(3 * time.Hour)); m = m.Add(5 * time.Minute) {
					instants[m] = true
				}
			}
		}
	}
	checked, mismatches := 0, 0
	for _, z := range refZones {
		for _, c := range timeConditions {
			cond, issues := compileCondition(substZone(c.src, z.name))
			if len(issues) > 0 {
				t.Fatalf("%s in %s: %v", c.name, z.name, issues)
			}
			bad := 0
			for u := range instants {
				got, err := cond.eval(newConditionVars(&Query{Now: u}))
				if err != nil {
					t.Fatalf("%s in %s at %s: %v", c.name, z.name, u, err)
				}
				want := c.ref(wallAt(u, z.offset(u)))
				checked++
				if got != want {
					bad++
					if bad <= 3 {
						t.Errorf("%s in %s at %s (reference wall clock %+v): gateway %v, reference %v", c.name, z.name, u.Format(time.RFC3339), wallAt(u, z.offset(u)), got, want)
					}
				}
			}
			mismatches += bad
		}
	}
	t.Logf("%d verdicts compared over %d instants, %d mismatches", checked, len(instants), mismatches)
}

// substZone replaces Z in src with the zone as a CEL string literal.
func substZone(src, zone string) string {
	out := make([]byte, 0, len(src)+8*len(zone))
	for i := 0; i < len(src); i++ {
		if src[i] == 'Z' && i > 0 && src[i-1] == '(' {
			out = append(out, fmt.Sprintf("%q", zone)...)
			continue
		}
		out = append(out, src[i])
	}
	return string(out)
}
