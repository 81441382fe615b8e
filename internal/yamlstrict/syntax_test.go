package yamlstrict

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestDescribeSyntax: every syntax error gets a line; the mistakes
// yaml.v3 words without a position or a fix get both; no message holds
// the file's content beyond one byte's value.
func TestDescribeSyntax(t *testing.T) {
	for _, c := range []struct {
		in        string
		line, col int
		want      string
	}{
		{"a: \"SECRET\xff\"\n", 1, 11, "the file is not UTF-8 text (byte 0xFF here); save it as UTF-8"},
		{"a: b\n# \xc3\n", 2, 3, "not UTF-8"},
		{"a: b\nc: d\x07\n", 2, 5, "a control character (U+0007) is not allowed in YAML"},
		{"a:\n\tb: 2\n", 2, 1, "a tab in the indentation"},
		{"a: 1\n\tb: 2\n", 2, 1, "a tab in the indentation (found a tab character that violates indentation); YAML indents with spaces only"},
		{"a:\n  b: 1\n \t c: 2\n", 3, 2, "a tab in the indentation"},
		{"a: b: c\n", 1, 0, "mapping values are not allowed"},
		{"\"SECRET\n", 0, 0, "is not closed; close it"},
		{"a: [1, 2\n", 0, 0, "did not find expected"},
	} {
		dec := yaml.NewDecoder(bytes.NewReader([]byte(c.in)))
		var n yaml.Node
		err := dec.Decode(&n)
		if err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("%q: no syntax error", c.in)
		}
		s := DescribeSyntax([]byte(c.in), err)
		if s.Line < 1 || !strings.Contains(s.Msg, c.want) || c.line > 0 && (s.Line != c.line || s.Col != c.col) {
			t.Errorf("%q: got %d:%d %q, want %d:%d %q", c.in, s.Line, s.Col, s.Msg, c.line, c.col, c.want)
		}
		if strings.Contains(s.Msg, "SECRET") {
			t.Errorf("%q: message holds the content: %q", c.in, s.Msg)
		}
	}
}

// TestPlainInt: integers yaml.v3 reads as octal for a leading zero are
// refused; other numbers and non-integers are not.
func TestPlainInt(t *testing.T) {
	for in, want := range map[string]bool{
		"443": true, "0": true, "-1": true, "+443": true, "443.0": true, "x": true, "\"0443\"": true,
		"0o443": true, "0x1BB": true, "4_43": true, "0b1": true,
		"0443": false, "00": false, "-010": false, "0_443": false,
	} {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(in), &n); err != nil {
			t.Fatal(err)
		}
		if got := PlainInt(n.Content[0]); got != want {
			t.Errorf("PlainInt(%s) = %v, want %v", in, got, want)
		}
	}
}
