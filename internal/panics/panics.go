// Package panics describes a recovered panic for a log line without its
// value. A panic's value may be anything the panicking code had at hand:
// a message formatted with a credential, an error wrapping a token, a
// struct holding a secret. The gateway logs where a panic happened and
// what kind of value it was, never the value (invariant 4); and not
// runtime/debug.Stack either, whose frames print argument words, which
// can be the bytes of a key passed by value.
package panics

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
)

// Describe returns p as a log line may show it: the message of a Go
// runtime error (an index out of range, a nil map or pointer: it holds
// no data of the program), else only p's type.
func Describe(p any) string {
	if re, ok := p.(runtime.Error); ok {
		return re.Error()
	}
	return fmt.Sprintf("a panic with a value of type %T (the value is not logged: it may hold a secret)", p)
}

// maxFrames bounds Where's output.
const maxFrames = 32

// Where returns the stack of the panicking goroutine as function names
// and file:line, one frame per line, innermost first, without the
// runtime's own frames nor any argument value. Call it from the deferred
// function that recovered the panic; skip is the number of frames to
// leave out from Where's caller on (1 leaves out that deferred function,
// so the first line is the function that panicked).
func Where(skip int) string {
	pcs := make([]uintptr, maxFrames)
	n := runtime.Callers(2+skip, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	var b strings.Builder
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "runtime.") {
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(f.Function)
			b.WriteByte(' ')
			b.WriteString(f.File)
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(f.Line))
		}
		if !more {
			break
		}
	}
	return b.String()
}
