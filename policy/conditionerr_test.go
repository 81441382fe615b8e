package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestConditionErrorsExplain: a `when:` expression that does not compile
// is reported at its FILE:LINE:COL with the rule (name and index path),
// the expression, the column in it, the cause in the policy's words and a
// hint; never the parser's list of expected tokens alone.
func TestConditionErrorsExplain(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string // in the message, beside the common parts
	}{
		{`request.method ==`, []string{"syntax error at column 18", "ends where a value", "complete the expression"}},
		{`request.method = "GET"`, []string{"syntax error", "compare with ==, not ="}},
		{`request.method == "GET" and request.port == 443`, []string{"syntax error", "&&, || and !"}},
		{`not workload.posture.patched`, []string{"syntax error", "&&, || and !"}},
		{`request.method == GET`, []string{"unknown name at column 19", `"GET" is not a name conditions know`, `a string value is quoted`}},
		{`workload.nme == "x"`, []string{"unknown name at column 1", `"workload.nme" is not a name`, "workload.name"}},
		{`(request.port == 443`, []string{"syntax error", `")" is missing at the end`, "close every ("}},
		{`request.method in ["GET", "HEAD"`, []string{"syntax error", "close every"}},
		{`request.method == "GET`, []string{"syntax error", `the string "GET is not closed`, "close every quoted string"}},
		{`request.path.startswith("/v1")`, []string{`"startswith" is not a function conditions have`, `startsWith("/v1/")`}},
		{`request.port == "443"`, []string{"type error at column 14", `"==" cannot be applied to int and string`, "numbers (request.port"}},
		{`now.getHours() < "22"`, []string{"type error", `"<" cannot be applied to int and string`}},
		{`request.path`, []string{"is of type string, but a condition must be true or false", "request.path.startsWith"}},
		{`workload.name == 'a' ||`, []string{"syntax error", "ends where a value"}},
		{"request.method == \"GET\" &&\n  request.port == \"443\"", []string{"type error at line 2, column 16", "compare with numbers (request.port == 443)"}},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			block := "    when: |\n      " + strings.ReplaceAll(tc.expr, "\n", "\n      ") + "\n"
			_, err := Parse(context.Background(), "p.yaml", []byte(condBase+"  - name: r\n    from: billing\n    to: stripe\n    action: deny\n"+block+"default: deny\n"))
			var list ErrorList
			if !errors.As(err, &list) || len(list) != 1 {
				t.Fatalf("Parse: %v, want one error", err)
			}
			e := list[0]
			msg := e.Error()
			want := append([]string{`p.yaml:`, `rule "r" (rules[0]) when: `, showCondition(tc.expr), "hint: "}, tc.want...)
			for _, w := range want {
				if !strings.Contains(msg, w) {
					t.Errorf("%s\nwant it to contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "expecting {") || strings.Contains(msg, "(in container") || strings.Contains(msg, "_==_") {
				t.Errorf("%s\nwant the parser's internals translated", msg)
			}
			if e.Line < 16 || e.Col == 0 {
				t.Errorf("%s: want the position of the expression in the file (line 16 or after)", fmt.Sprint(e.Line, ":", e.Col))
			}
		})
	}
}
