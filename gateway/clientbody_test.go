package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
)

// closingBody is a request body as a server delivers it: a read waits
// until the body is closed (by whoever holds it) or fails on its own.
type closingBody struct {
	closed  chan struct{}
	own     error // the read's own failure, when not nil
	onClose error // what a read returns once the body is closed
}

func (b *closingBody) Read([]byte) (int, error) {
	if b.own != nil {
		return 0, b.own
	}
	<-b.closed
	return 0, b.onClose
}

func (b *closingBody) Close() error { close(b.closed); return nil }

// TestClientBodyBlame: a failed read of the client's request body is
// blamed on the client (gone, or malformed framing) only when the gateway
// had not closed the body itself. The read a close fails (HTTP/2's server
// answers it "body closed by handler", HTTP/1.1's "http: invalid Read on
// closed Body") is the consequence of the exchange's own end, whose cause
// the audit line names: blaming the client turned a gRPC response cut as
// response_not_scrubbable into bad_request (TestGRPCCompressedNotPassed,
// 3 of 30 runs).
func TestClientBodyBlame(t *testing.T) {
	for _, tc := range []struct {
		name  string
		own   error // the read fails by itself with this
		close error // else: closed under a pending read, which fails with this
		want  uint32
	}{
		{"closed under a read, HTTP/2", nil, errors.New("body closed by handler"), bodyReadOK},
		{"closed under a read, HTTP/1.1", nil, errors.New("http: invalid Read on closed Body"), bodyReadOK},
		{"closed under a read, EOF", nil, io.ErrUnexpectedEOF, bodyReadOK},
		{"malformed before any close", errors.New("invalid byte in chunk length"), nil, bodyReadMalformed},
		{"gone before any close", io.ErrUnexpectedEOF, nil, bodyReadGone},
		{"reset before any close", &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, nil, bodyReadGone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			under := &closingBody{closed: make(chan struct{}), own: tc.own, onClose: tc.close}
			var b clientBody
			b.ReadCloser, b.ctx = under, context.Background()
			if tc.own != nil {
				if _, err := b.Read(make([]byte, 1)); err == nil {
					t.Fatal("the read did not fail")
				}
			} else {
				read := make(chan error, 1)
				go func() {
					_, err := b.Read(make([]byte, 1))
					read <- err
				}()
				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
				if err := <-read; err == nil {
					t.Fatal("the read under the close did not fail")
				}
				// A read after the close is the gateway's too.
				if _, err := b.Read(make([]byte, 1)); err == nil {
					t.Fatal("a read after the close did not fail")
				}
			}
			if got := b.failure(); got != tc.want {
				t.Errorf("failure() = %d, want %d", got, tc.want)
			}
		})
	}
}
