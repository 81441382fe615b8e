package providers

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestLifetimeSeconds checks the class "a stated lifetime that is zero,
// negative or not a whole number of seconds is refused, naming the
// field; an absent one is reported absent (the provider's documented
// default applies); a plausible one is honoured exactly" over every
// shape of the JSON value a source may send.
func TestLifetimeSeconds(t *testing.T) {
	for _, tc := range []struct {
		raw     string
		want    time.Duration
		present bool
		bad     string // part of the error; "" for none
	}{
		{raw: "", present: false},
		{raw: "null", present: false},
		{raw: " null ", present: false},
		{raw: "3600", want: time.Hour, present: true},
		{raw: `"3600"`, want: time.Hour, present: true},
		{raw: "1", want: time.Second, present: true},
		{raw: "315360000", want: 315360000 * time.Second, present: true},
		{raw: "99999999999999999999999", want: MaxSeconds * time.Second, present: true},
		{raw: "0", present: true, bad: "expires_in is 0"},
		{raw: `"0"`, present: true, bad: "expires_in is 0"},
		{raw: "-1", present: true, bad: "expires_in is -1"},
		{raw: "-3600", present: true, bad: "expires_in is -3600"},
		{raw: "-99999999999999999999999", present: true, bad: "expires_in is -1"},
		{raw: "3600.0", present: true, bad: "expires_in is 3600.0, not a whole number"},
		{raw: "3600.5", present: true, bad: "expires_in is 3600.5, not a whole number"},
		{raw: "3.6e3", present: true, bad: "expires_in is 3.6e3, not a whole number"},
		{raw: `"soon"`, present: true, bad: "expires_in is a string, not a whole number"},
		{raw: `"eyJhbGciOiJSUzI1NiJ9.secret"`, present: true, bad: "expires_in is a string"},
		{raw: "true", present: true, bad: "expires_in is true"},
		{raw: "[3600]", present: true, bad: "expires_in is an array"},
		{raw: `{"s":3600}`, present: true, bad: "expires_in is an object"},
		{raw: `""`, present: true, bad: "expires_in is a string"},
	} {
		d, present, err := LifetimeSeconds("expires_in", json.RawMessage(tc.raw))
		if present != tc.present {
			t.Errorf("LifetimeSeconds(%s): present = %v, want %v", tc.raw, present, tc.present)
		}
		if tc.bad == "" {
			if err != nil || d != tc.want {
				t.Errorf("LifetimeSeconds(%s) = %v, %v; want %v", tc.raw, d, err, tc.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("LifetimeSeconds(%s) = %v, want an error containing %q", tc.raw, d, tc.bad)
			continue
		}
		if !strings.Contains(err.Error(), tc.bad) || !errors.Is(err, ErrBadLifetime) || !errors.Is(err, ErrUnavailable) {
			t.Errorf("LifetimeSeconds(%s): error %q, want one containing %q wrapping ErrBadLifetime and ErrUnavailable", tc.raw, err, tc.bad)
		}
		if strings.Contains(err.Error(), "eyJ") {
			t.Errorf("LifetimeSeconds(%s): the error quotes the string: %v", tc.raw, err)
		}
	}
}

// TestCheckExpiry: an expiry at or before the answer's arrival is
// refused, naming the field; a later one is kept.
func TestCheckExpiry(t *testing.T) {
	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		exp time.Time
		ok  bool
	}{
		{now.Add(time.Second), true},
		{now.Add(time.Hour), true},
		{now, false},
		{now.Add(-time.Second), false},
		{time.Unix(0, 0), false},
		{time.Time{}, false},
	} {
		err := CheckExpiry("expires_at", tc.exp, now)
		if (err == nil) != tc.ok {
			t.Errorf("CheckExpiry(%v) = %v, want ok %v", tc.exp, err, tc.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "expires_at is ") || !errors.Is(err, ErrBadLifetime)) {
			t.Errorf("CheckExpiry(%v): error %q does not name expires_at or wrap ErrBadLifetime", tc.exp, err)
		}
	}
}
