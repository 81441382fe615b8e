package gateway

import "testing"

// TestSentQuery: the query reaches the upstream byte for byte, in its
// order, with only the '&'-separated pairs that hold a ';' removed. The
// old code re-encoded the whole query when it held a ';': 5 of the 9 cases
// failed there (pairs sorted, bytes re-escaped, undecodable pairs dropped).
func TestSentQuery(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""},
		{"b=2&a=1", "b=2&a=1"},
		{"a=1&b=%2F%3F&c=~!$'()*,:@/?&f=%zz+%20", "a=1&b=%2F%3F&c=~!$'()*,:@/?&f=%zz+%20"},
		{"a=1;b=2", ""},
		{"z=1&a=2;x&a=1", "z=1&a=1"},
		{"b=2&c=~!$'()*;&a=%zz&d=+", "b=2&a=%zz&d=+"},
		{"x=1&&y=2;&z", "x=1&&z"},
		{";&b", "b"},
		{"b=%41&a;=1&B=1", "b=%41&B=1"},
	}
	for _, c := range cases {
		if got := sentQuery(c.in); got != c.want {
			t.Errorf("sentQuery(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
