package transform

import (
	"net/http"
	"strings"
	"testing"

	"github.com/credgate/credgate/secret"
)

// TestScrubFieldNames is the class "an upstream echoes a secret as a
// response field name": for every form of a secret a field name can
// hold (token characters only), in any case — as written, lower case
// (HTTP/2), upper case, and as Go's HTTP/1.1 client canonicalises it —
// alone, after a prefix and before a suffix, a field whose name holds it
// is removed by Header, through a Scrubber, Combine, Layer and a Table,
// and counted; the other fields stay, their values scrubbed as before,
// and a name holding less than a whole form stays. Before, Header looked
// at values only: every removal case failed (the name reached the client
// with its case changed).
func TestScrubFieldNames(t *testing.T) {
	const token = "gw_Live-AbC123xyz789QrS"
	other := NewScrubber([]secret.Value{secret.New("unrelated-secret-value")}, ScrubOptions{KeepLength: true})
	type build struct {
		name string
		make func(v string) interface{ Header(http.Header) int }
	}
	builds := []build{
		{"scrubber", func(v string) interface{ Header(http.Header) int } {
			return NewScrubber([]secret.Value{secret.New(v)}, ScrubOptions{})
		}},
		{"combine", func(v string) interface{ Header(http.Header) int } {
			return Combine(other, NewScrubber([]secret.Value{secret.New(v)}, ScrubOptions{}))
		}},
		{"layer", func(v string) interface{ Header(http.Header) int } {
			return Layer(other, NewScrubber([]secret.Value{secret.New(v)}, ScrubOptions{KeepLength: true}))
		}},
		{"table", func(v string) interface{ Header(http.Header) int } {
			tb, err := NewTable(other, NewScrubber([]secret.Value{secret.New(v)}, ScrubOptions{KeepLength: true}))
			if err != nil {
				t.Fatal(err)
			}
			return tb
		}},
	}
	cases := map[string]func(string) string{
		"as written": func(s string) string { return s },
		"lower":      strings.ToLower,
		"upper":      strings.ToUpper,
		"canonical":  http.CanonicalHeaderKey,
	}
	places := map[string]func(string) string{
		"alone":  func(f string) string { return f },
		"prefix": func(f string) string { return "X-Echo-" + f },
		"suffix": func(f string) string { return f + "-Echo" },
	}
	checked := 0
	for _, v := range []string{token, testSecret} {
		for _, b := range builds {
			s := b.make(v)
			for _, f := range forms(v, DefaultMinLength) {
				if !isToken([]byte(f)) {
					continue // no field name holds it
				}
				for cn, c := range cases {
					for pn, p := range places {
						name := c(p(f))
						h := http.Header{name: {"1"}, "X-Keep": {"fine", "Bearer " + v}}
						n := s.Header(h)
						checked++
						if _, ok := h[name]; ok || n != 2 {
							t.Errorf("%s %q %s %s: field %q kept=%v, %d counted; want it removed and 2 counted (the name, the value)", b.name, f, cn, pn, name, ok, n)
						}
						if len(h["X-Keep"]) != 2 || h["X-Keep"][0] != "fine" || strings.Contains(h["X-Keep"][1], v) {
							t.Errorf("%s %q %s %s: X-Keep = %q, want it kept with its secret value scrubbed", b.name, f, cn, pn, h["X-Keep"])
						}
					}
				}
				// Less than a whole form is no secret.
				near := http.Header{http.CanonicalHeaderKey("X-" + f[1:]): {"1"}}
				if n := s.Header(near); n != 0 || len(near) != 1 {
					t.Errorf("%s: a name holding part of %q was removed (%d counted)", b.name, f, n)
				}
			}
		}
	}
	if checked < 200 {
		t.Fatalf("only %d name cases checked: the forms changed, revisit the test", checked)
	}
}

// TestScrubFieldNamesAllocs: searching the names of an ordinary
// response costs no allocation once the name index is built.
func TestScrubFieldNamesAllocs(t *testing.T) {
	s := NewScrubber([]secret.Value{secret.New("gw_Live-AbC123xyz789QrS")}, ScrubOptions{KeepLength: true})
	h := http.Header{"Content-Type": {"application/json"}, "Strict-Transport-Security": {"max-age=63072000"}, "X-Request-Id": {"abc"}}
	s.Header(h)
	if n := testing.AllocsPerRun(100, func() { s.Header(h) }); n != 0 {
		t.Errorf("%v allocations per header, want 0", n)
	}
}
