package yamlstrict

import (
	"fmt"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// laughs is a "billion laughs" of the given depth and fan-out: anchor
// l0 is a list of fan scalars, each l(i) a list of fan aliases to
// l(i-1), so that it stands for fan^depth values.
func laughs(depth, fan int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "l0: &l0 [%s]\n", strings.TrimSuffix(strings.Repeat("x,", fan), ","))
	for i := 1; i <= depth; i++ {
		fmt.Fprintf(&b, "l%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d,", i-1), fan), ","))
	}
	return b.String()
}

// square is a list of n aliases to a mapping holding a list of n aliases
// to one scalar: n*n values from a file of a few times n bytes, the
// shape that made the policy parser work quadratically.
func square(n int) string {
	return "s: &s x\nm: &m {l: [" + strings.TrimSuffix(strings.Repeat("*s,", n), ",") + "]}\nr: [" + strings.TrimSuffix(strings.Repeat("*m,", n), ",") + "]\n"
}

// TestAliasExpansion is the class of aliases that expand a document
// beyond its written size: refused at the alias that crosses the
// budget, however deep or wide, in time linear in the file; aliases
// that stand for whole values within the budget stay allowed.
func TestAliasExpansion(t *testing.T) {
	// Many aliases to a value written once, adding less than the file
	// holds: what an author sharing a list of hosts writes, at scale.
	var shared strings.Builder
	shared.WriteString("hosts: &h [" + strings.TrimSuffix(strings.Repeat("a.test,", 50), ",") + "]\n")
	for i := range 3000 {
		fmt.Fprintf(&shared, "d%d: {hosts: *h, port: %d, name: n%d, note: a-long-enough-written-value}\n", i, i, i)
	}
	for _, c := range []struct {
		name, in string
		at       string // "LINE:COL" of the refusal; "" allowed
	}{
		{"no aliases", "a: [1, 2, 3]\nb: {c: d}\n", ""},
		{"an alias to a whole value", "a: &a {x: [1, 2]}\nb: *a\nc: *a\n", ""},
		{"shared value reused within the budget", shared.String(), ""},
		{"billion laughs, shallow", laughs(4, 9), ""},
		{"billion laughs", laughs(9, 10), "6:38"},
		{"billion laughs, deep and narrow", laughs(60, 2), "18:17"},
		{"billion laughs, 10^30", laughs(30, 10), "6:38"},
		{"quadratic", square(2000), "3:1499"},
		{"quadratic, within the budget", square(900), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(c.in), &doc); err != nil {
				t.Fatal(err)
			}
			p := AliasExpansion(&doc, "policy")
			switch {
			case c.at == "" && p != nil:
				t.Fatalf("refused at %d:%d: %s", p.Line, p.Col, p.Msg)
			case c.at != "" && p == nil:
				t.Fatalf("allowed; want a refusal at %s", c.at)
			case c.at != "":
				if got := fmt.Sprintf("%d:%d", p.Line, p.Col); got != c.at {
					t.Errorf("refused at %s, want %s", got, c.at)
				}
				if !strings.Contains(p.Msg, "YAML aliases (*name) expand this policy by more than") || !strings.Contains(p.Msg, "write the values out") {
					t.Errorf("message %q does not say what and how to fix", p.Msg)
				}
			}
		})
	}
}
