package gateway

import (
	"net/http"
	"strconv"
	"testing"
)

// TestStatusLabelBounded: the status label of credgate_requests_total is
// the code for every registered status and the class for any other code
// an upstream may send, so that made-up codes add at most one series per
// class; every code 0–1000 gets a label, and registered codes keep their
// own.
func TestStatusLabelBounded(t *testing.T) {
	labels := map[string]bool{}
	registered := 0
	for code := 0; code <= 1000; code++ {
		l := statusLabel(statusClass(code))
		labels[l] = true
		switch {
		case http.StatusText(code) != "":
			registered++
			if l != strconv.Itoa(code) {
				t.Errorf("registered %d labelled %q", code, l)
			}
		case code >= 100 && code <= 999:
			if want := strconv.Itoa(code/100) + "xx"; l != want {
				t.Errorf("%d labelled %q, want %q", code, l, want)
			}
		default:
			if l != "other" {
				t.Errorf("%d labelled %q, want other", code, l)
			}
		}
	}
	if max := registered + 9 + 1; len(labels) > max {
		t.Errorf("%d labels for codes 0–1000, want at most %d", len(labels), max)
	}
}
