package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a policy file, at a position in it.
type Error struct {
	// File is the file name as given to Parse or LoadFile.
	File string
	// Line and Col are 1-based; 0 when unknown.
	Line, Col int
	// Msg names the offending field and says what to change.
	Msg string
	// Err is the underlying error, if any (for example a provider's
	// validation error), so that errors.Is and errors.As see through.
	Err error
}

// Error returns "FILE:LINE:COL: message".
func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Unwrap returns the underlying error, if any.
func (e *Error) Unwrap() error { return e.Err }

// ErrorList is every problem found in one policy file, sorted by position.
// Parse and LoadFile return an ErrorList (never an empty one) when the file
// is invalid.
type ErrorList []*Error

// Error returns one "FILE:LINE:COL: message" line per problem.
func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap returns the entries, so errors.As(err, &*Error) finds the first.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

func (l ErrorList) sort() {
	slices.SortStableFunc(l, func(a, b *Error) int {
		if c := cmp.Compare(a.Line, b.Line); c != 0 {
			return c
		}
		return cmp.Compare(a.Col, b.Col)
	})
}
