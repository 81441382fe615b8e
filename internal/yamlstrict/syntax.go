package yamlstrict

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Syntax is a YAML syntax error worded for people, at its position.
type Syntax struct {
	// Line and Col are 1-based; 0 when not known.
	Line, Col int
	// Msg says what is wrong and, for the common mistakes, what to do.
	Msg string
}

var syntaxLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// DescribeSyntax words err, a syntax error yaml.v3 returned for data,
// with a position and a fix where yaml.v3 gives neither: a file that is
// not UTF-8 (yaml.v3 names no line) is reported at its first bad byte,
// and a tab in an indentation at the tab, with "indent with spaces".
// Other errors keep yaml.v3's words and line. The message never holds
// the file's content.
func DescribeSyntax(data []byte, err error) Syntax {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	s := Syntax{Msg: msg}
	if m := syntaxLineRE.FindStringSubmatch(err.Error()); m != nil {
		s.Line, _ = strconv.Atoi(m[1])
		s.Msg = m[2]
	}
	if strings.Contains(msg, "UTF-8") || strings.Contains(msg, "control characters") {
		if off, ok := firstInvalidUTF8(data); ok {
			line, col := lineCol(data, off)
			return Syntax{Line: line, Col: col, Msg: fmt.Sprintf("the file is not UTF-8 text (byte 0x%02X here); save it as UTF-8", data[off])}
		}
		if off, r, ok := firstControl(data); ok {
			line, col := lineCol(data, off)
			return Syntax{Line: line, Col: col, Msg: fmt.Sprintf("a control character (U+%04X) is not allowed in YAML; remove it (write it as an escape such as \\u%04X inside double quotes if it is meant)", r, r)}
		}
	}
	if strings.Contains(s.Msg, "unexpected end of stream") {
		s.Msg += ": a quoted value, [list] or {mapping} opened earlier is not closed; close it"
	}
	if s.Line == 0 {
		// yaml.v3 leaves the line out of errors on the first line.
		s.Line = 1
	}
	// yaml.v3 reports "found a tab character that violates indentation"
	// at the line before the tab's.
	for _, line := range []int{s.Line, s.Line + 1} {
		if s.Line <= 0 || line > s.Line && !strings.Contains(s.Msg, "tab character") {
			break
		}
		text := lineText(data, line)
		indent := text[:len(text)-len(strings.TrimLeft(text, " \t"))]
		if i := strings.IndexByte(indent, '\t'); i >= 0 {
			s.Line, s.Col = line, i+1
			s.Msg = "a tab in the indentation (" + s.Msg + "); YAML indents with spaces only: replace the tab with spaces"
			break
		}
	}
	return s
}

// Problem is s as the config and the policy report it: at its line and
// column (1 where not known), as "invalid YAML: ...".
func (s Syntax) Problem() Problem {
	return Problem{Line: max(s.Line, 1), Col: max(s.Col, 1), Msg: "invalid YAML: " + s.Msg}
}

// firstInvalidUTF8 returns the offset of the first byte of data that is
// not part of a valid UTF-8 sequence.
func firstInvalidUTF8(data []byte) (int, bool) {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return i, true
		}
		i += size
	}
	return 0, false
}

// firstControl returns the offset of the first character of data that
// YAML does not allow (C0 and C1 controls but tab, LF, CR and NEL; DEL;
// surrogates; U+FFFE and U+FFFF), as yaml.v3's reader checks.
func firstControl(data []byte) (int, rune, bool) {
	for i, r := range string(data) {
		switch {
		case r == 0x09, r == 0x0A, r == 0x0D, r >= 0x20 && r <= 0x7E, r == 0x85,
			r >= 0xA0 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= 0x10FFFF:
		default:
			return i, r, true
		}
	}
	return 0, 0, false
}

// lineCol returns the 1-based line and byte column of offset off.
func lineCol(data []byte, off int) (int, int) {
	line, start := 1, 0
	for i := 0; i < off; i++ {
		if data[i] == '\n' {
			line, start = line+1, i+1
		}
	}
	return line, off - start + 1
}

// lineText returns the 1-based line n of data without its newline, or ""
// past the end.
func lineText(data []byte, n int) string {
	for i := 1; i < n; i++ {
		j := bytes.IndexByte(data, '\n')
		if j < 0 {
			return ""
		}
		data = data[j+1:]
	}
	if j := bytes.IndexByte(data, '\n'); j >= 0 {
		data = data[:j]
	}
	return strings.TrimSuffix(string(data), "\r")
}
