package policy

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
)

// laughs is a "billion laughs" nested depth times, ten wide, as a flow
// sequence: it stands for 10^depth values.
func laughs(depth int) string {
	s := "[&l0 x"
	for i := 1; i <= depth; i++ {
		s += fmt.Sprintf(", &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]", i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	return s + "]"
}

// TestParseYAMLHazards is the class of YAML input a policy author gets
// wrong without seeing it: each is refused at its position, with a fix.
// Before, a file that is not UTF-8 (or holds a control character) was
// reported at 1:1 whatever its line, a tab in an indentation had no fix,
// merge keys were refused as an unknown field "<<", and a port written
// with a leading zero (0443) was taken as octal (291), and aliases that
// multiply (a list of aliases to a rule holding a list of aliases) made
// the parser, which follows every alias, work for as long as the file's
// size squared or worse: 11 KB took 2.7 s and listed 255 KB of errors.
func TestParseYAMLHazards(t *testing.T) {
	ex, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base := string(ex)
	rep := func(old, new string) string {
		t.Helper()
		if !strings.Contains(base, old) {
			t.Fatalf("example.yaml has no %q", old)
		}
		return strings.Replace(base, old, new, 1)
	}
	for _, c := range []struct{ name, in, want string }{
		{"byte order mark", "\ufeff" + base, ""},
		{"not UTF-8", rep("billing-charges", "billing-\xff"), "p.yaml:18:19: invalid YAML: the file is not UTF-8 text (byte 0xFF here); save it as UTF-8"},
		{"control character", rep("billing-charges", "billing-\x01"), "p.yaml:18:19: invalid YAML: a control character (U+0001) is not allowed"},
		{"tab indentation", rep("    cidrs: [10.1", "\tcidrs: [10.1"), "p.yaml:4:1: invalid YAML: a tab in the indentation"},
		{"tab after spaces", rep("    require: [source]", "   \trequire: [source]"), "p.yaml:5:4: invalid YAML: a tab in the indentation"},
		{"unclosed quote", "\"abc\n", "invalid YAML: found unexpected end of stream: a quoted value, [list] or {mapping} opened earlier is not closed; close it"},
		{"error on line 1", "a: b: c\n", "p.yaml:1:1: invalid YAML: mapping values are not allowed in this context"},
		{"two documents", base + "---\ndefault: deny\n", "p.yaml:33:1: only one YAML document is allowed"},
		{"duplicate key", rep("    to: datadog-intake\n", "    to: datadog-intake\n    to: stripe\n"), `p.yaml:31:5: rules[1]: "to" is defined twice`},
		{"merge key", rep("  - name: telemetry\n    from: \"*\"\n", "  - <<: {from: \"*\"}\n    name: telemetry\n"), `p.yaml:28:5: YAML merge keys (<<) are not supported in a policy; write the fields out`},
		{"billion laughs", "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n" + base, `p.yaml:1:1: unknown field "a" in policy`},
		{"billion laughs in a section", rep("default: deny", "default: deny\nx-laughs: "+laughs(30)), "p.yaml:33:339: YAML aliases (*name) expand this policy by more than 1000000 values"},
		{"aliases that multiply", rep("default: deny", "  - &q {name: q, from: \"*\", to: stripe, action: tunnel, paths: [&p /a"+strings.Repeat(", *p", 1100)+"]}\n"+strings.Repeat("  - *q\n", 1100)+"default: deny"), "p.yaml:931:5: YAML aliases (*name) expand this policy by more than 1000000 values"},
		{"an alias shared by many rules", rep("default: deny", "  - &q {name: q, from: \"*\", to: stripe, action: tunnel, paths: [&p /a"+strings.Repeat(", *p", 300)+"]}\n"+strings.Repeat("  - *q\n", 3)+"default: deny"), `p.yaml:32:15: rules[3]: rule name "q" is already used by rules[2]`},
		{"port with a leading zero", rep("ports: [443]", "ports: [0443]"), `p.yaml:9:13: destination "stripe": port: a number with a leading zero is read by YAML as octal (0443 is 291); write it without the leading zero`},
		{"port in explicit octal", rep("ports: [443]", "ports: [0o673]"), ""},
		{"port in hexadecimal", rep("ports: [443]", "ports: [0x1BB]"), ""},
		{"port with a sign", rep("ports: [443]", "ports: [+443]"), ``},
		{"burst with a leading zero", rep("    action: tunnel\n", "    action: tunnel\n    rate_limit: {rps: 10, burst: 010}\n"), `burst: a number with a leading zero is read by YAML as octal`},
		{"port quoted", rep("ports: [443]", "ports: [\"443\"]"), `port "443" is quoted; write it as a plain number`},
		{"allow_private no", rep("allow_private: false", "allow_private: no"), "allow_private must be true or false"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := Parse(context.Background(), "p.yaml", []byte(c.in))
			if p != nil {
				defer p.Close()
			}
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && err == nil:
				t.Fatalf("accepted; want %q", c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Fatalf("got  %v\nwant %s", err, c.want)
			}
		})
	}
}
