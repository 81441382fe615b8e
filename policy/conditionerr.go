package policy

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// A `when:` expression that does not compile is reported with the rule
// (by the caller), the expression, the column in it, what is wrong in
// the policy's words rather than the parser's, and a hint. The parser's
// message is kept only where no plainer one is known, without its list
// of expected tokens.

// maxShownCondition is how much of an expression a message quotes.
const maxShownCondition = 120

var (
	reMismatched  = regexp.MustCompile(`^Syntax error: (?:mismatched|extraneous) input '(.*?)' expecting`)
	reTokenError  = regexp.MustCompile(`(?s)^Syntax error: token recognition error at: '(.*?)'`)
	reMissing     = regexp.MustCompile(`^Syntax error: missing '(.*?)' at '(.*?)'`)
	reNoViable    = regexp.MustCompile(`^Syntax error: no viable alternative at input '(.*?)'`)
	reUndeclared  = regexp.MustCompile(`^undeclared reference to '(.*?)'`)
	reNoOverload  = regexp.MustCompile(`^found no matching overload for '(.*?)' applied to '\((.*?)\)'`)
	reUnknownFunc = regexp.MustCompile(`^undeclared reference to '(.*?)' \(in container`)
	reWord        = regexp.MustCompile(`(?i)(^|[\s(])(and|or|not)([\s(]|$)`)
	reSingleEq    = regexp.MustCompile(`[^=!<>]=[^=~]`)
)

// operatorNames spells CEL's internal operator names as written.
var operatorNames = map[string]string{
	"_+_": "+", "_-_": "-", "_*_": "*", "_/_": "/", "_%_": "%",
	"_==_": "==", "_!=_": "!=", "_<_": "<", "_<=_": "<=", "_>_": ">", "_>=_": ">=",
	"_&&_": "&&", "_||_": "||", "!_": "!", "-_": "-", "_[_]": "[...]", "_?_:_": "?:", "@in": "in",
}

// conditionIssues turns the parser's errors of src into issues. After a
// syntax error the parser's further errors are its attempts to recover
// from the first; only the first is reported. A position past the end of
// the expression (a YAML literal block's final line break) is put at its
// end.
func conditionIssues(src string, errs []conditionParseError) []conditionIssue {
	var out []conditionIssue
	for _, e := range errs {
		line, col := clampPosition(src, e.line, e.col)
		out = append(out, conditionIssue{line, col, describeCondition(src, line, col, e.msg)})
		if strings.HasPrefix(e.msg, "Syntax error") {
			break
		}
	}
	return out
}

// conditionParseError is one of the parser's errors, at a 1-based line
// and 0-based column of the expression.
type conditionParseError struct {
	line, col int
	msg       string
}

// clampPosition moves a position past the expression's last character
// (ignoring trailing white space) to just after it.
func clampPosition(src string, line, col int) (int, int) {
	lines := strings.Split(strings.TrimRight(src, " \t\n"), "\n")
	last := lines[len(lines)-1]
	if line > len(lines) || line == len(lines) && col > len(last) {
		return len(lines), len(last)
	}
	return line, col
}

// describeCondition words one compile issue of src at its 1-based line
// and 0-based column: "<what> at column N of "<src>": <cause>; hint: ...".
func describeCondition(src string, line, col int, raw string) string {
	cause, hint := conditionCause(src, raw, tokenAt(src, line, col))
	if hint == "" {
		hint = conditionHint(src)
	}
	where := fmt.Sprintf("column %d", col+1)
	if strings.Contains(strings.TrimRight(src, " \t\n"), "\n") {
		where = fmt.Sprintf("line %d, column %d", line, col+1)
	}
	kind := "error"
	switch {
	case strings.HasPrefix(raw, "Syntax error"):
		kind = "syntax error"
	case strings.HasPrefix(raw, "found no matching overload"):
		kind = "type error"
	case strings.HasPrefix(raw, "undeclared reference"):
		kind = "unknown name"
	}
	msg := fmt.Sprintf("%s at %s of %s: %s", kind, where, showCondition(src), cause)
	if hint != "" {
		msg += "; hint: " + hint
	}
	return msg
}

// showCondition quotes src for a message, on one line, shortened.
func showCondition(src string) string {
	s := strings.Join(strings.Fields(src), " ")
	if len(s) > maxShownCondition {
		s = s[:maxShownCondition] + "..."
	}
	return strconv.Quote(s)
}

// conditionCause translates the parser's message; hint is "" when the
// cause suggests none of its own.
func conditionCause(src, raw, token string) (cause, hint string) {
	switch {
	case strings.HasPrefix(raw, "Syntax error: mismatched input '<EOF>'"):
		return "the condition ends where a value or a closing bracket is expected", "complete the expression after its last operator (request.method == \"GET\"), or close every ( [ {"
	case reMissing.MatchString(raw):
		m := reMissing.FindStringSubmatch(raw)
		if m[2] == "<EOF>" {
			return fmt.Sprintf("%q is missing at the end", m[1]), ""
		}
		return fmt.Sprintf("%q is missing before %q", m[1], m[2]), ""
	case reTokenError.MatchString(raw):
		m := reTokenError.FindStringSubmatch(raw)
		tok := strings.TrimSpace(m[1])
		switch {
		case tok == "=":
			return "a single \"=\" is not an operator", "compare with ==, not ="
		case strings.HasPrefix(tok, `"`) || strings.HasPrefix(tok, "'"):
			return fmt.Sprintf("the string %s is not closed", strings.TrimSpace(tok)), "close every quoted string"
		}
		return fmt.Sprintf("%q is not part of the condition language", tok), "strings are quoted with \" or ', and, or and not are &&, || and !"
	case reMismatched.MatchString(raw):
		m := reMismatched.FindStringSubmatch(raw)
		return fmt.Sprintf("%q is not expected here", m[1]), ""
	case reNoViable.MatchString(raw):
		m := reNoViable.FindStringSubmatch(raw)
		return fmt.Sprintf("the condition cannot be read from %q on", lastToken(m[1])), ""
	case reUnknownFunc.MatchString(raw) && strings.Contains(src, reUnknownFunc.FindStringSubmatch(raw)[1]+"("):
		m := reUnknownFunc.FindStringSubmatch(raw)
		return fmt.Sprintf("%q is not a function conditions have", m[1]), "string functions are written on the value: request.path.startsWith(\"/v1/\"), request.host.endsWith(\".example.com\"), request.path.matches(\"^/v[0-9]+/\")"
	case reUndeclared.MatchString(raw):
		m := reUndeclared.FindStringSubmatch(raw)
		name := m[1]
		if strings.HasPrefix(token, name+".") {
			name = token // workload.nme, not workload
		}
		return fmt.Sprintf("%q is not a name conditions know", name), "conditions can use " + conditionNames() + "; a string value is quoted (request.method == \"GET\")"
	case reNoOverload.MatchString(raw):
		m := reNoOverload.FindStringSubmatch(raw)
		op := operatorNames[m[1]]
		if op == "" {
			op = m[1]
		}
		types := strings.Split(m[2], ", ")
		cause = fmt.Sprintf("%s cannot be applied to %s", strconv.Quote(op), strings.Join(types, " and "))
		if len(types) == 1 {
			cause = fmt.Sprintf("%s cannot be applied to a %s", strconv.Quote(op), types[0])
		}
		if strings.Contains(m[2], "int") && strings.Contains(m[2], "string") {
			return cause, "numbers (request.port, now.getHours()) compare with numbers (request.port == 443), strings with quoted strings (request.method == \"GET\")"
		}
		return cause, "compare values of one type; workload.posture values are compared as their JSON type (true, 1, \"x\")"
	}
	return strings.TrimPrefix(trimExpecting(raw), "Syntax error: "), ""
}

// conditionHint is a hint from the spelling of src, for causes that
// bring none of their own.
func conditionHint(src string) string {
	switch {
	case reWord.MatchString(src):
		return "and, or and not are written &&, || and !"
	case reSingleEq.MatchString(" " + src + " "):
		return "compare with ==, not ="
	case strings.Count(src, "(") != strings.Count(src, ")"):
		return "close every ( with )"
	case strings.Count(src, "[") != strings.Count(src, "]"):
		return "close every [ with ]"
	case strings.Count(src, `"`)%2 == 1 || strings.Count(src, "'")%2 == 1:
		return "close every quoted string"
	}
	return "see docs/policy.md#conditions-when for what a condition can use"
}

// trimExpecting drops the parser's list of expected tokens.
func trimExpecting(raw string) string {
	if i := strings.Index(raw, " expecting "); i >= 0 {
		return raw[:i]
	}
	return raw
}

// lastToken is the last word of the parser's input excerpt.
func lastToken(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return s
	}
	return f[len(f)-1]
}

var reIdent = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*`)

// tokenAt is the dotted identifier of src at its 1-based line and
// 0-based column, or "".
func tokenAt(src string, line, col int) string {
	lines := strings.Split(src, "\n")
	if line < 1 || line > len(lines) || col < 0 || col > len(lines[line-1]) {
		return ""
	}
	return reIdent.FindString(lines[line-1][col:])
}
