package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Transfer is one large body moved through a target.
type Transfer struct {
	// Bytes is the body's length.
	Bytes int64 `json:"bytes"`
	// Elapsed runs from writing the request head to reading the end of
	// the response, on a connection already set up (TCP, CONNECT and TLS
	// are not in it).
	Elapsed time.Duration `json:"elapsed_ns"`
}

// BytesPerSecond is the transfer's throughput.
func (x Transfer) BytesPerSecond() float64 {
	if x.Elapsed <= 0 {
		return 0
	}
	return float64(x.Bytes) / x.Elapsed.Seconds()
}

// transferBuffer is the copy buffer of one transfer: what the load
// generator holds of a body, however large it is.
const transferBuffer = 64 << 10

// Upload POSTs n bytes read from body to path on a new connection to t
// and reads the answer, which must be 200. The body is streamed through a
// 64 KiB buffer with a Content-Length of n; nothing holds it whole. ctx
// bounds the whole transfer (t.Timeout bounds only the set-up).
func Upload(ctx context.Context, t *Target, path string, body io.Reader, n int64) (Transfer, error) {
	return transfer(ctx, t, http.MethodPost, path, body, n, -1)
}

// Download GETs path on a new connection to t and reads the whole body
// through a 64 KiB buffer; the answer must be 200 and want bytes long.
// ctx bounds the whole transfer.
func Download(ctx context.Context, t *Target, path string, want int64) (Transfer, error) {
	return transfer(ctx, t, http.MethodGet, path, nil, -1, want)
}

func transfer(ctx context.Context, t *Target, method, path string, body io.Reader, n, want int64) (Transfer, error) {
	c, err := Dial(ctx, t)
	if err != nil {
		return Transfer{}, err
	}
	defer c.Close()
	// A cancelled ctx interrupts a blocked read or write by closing the
	// connection.
	stop := context.AfterFunc(ctx, func() { _ = c.tc.Close() })
	defer stop()
	buf := make([]byte, transferBuffer)
	start := time.Now()
	if _, err := c.tc.Write(t.head(method, path, n)); err != nil {
		return Transfer{}, fmt.Errorf("loadgen: %s %s via %s: write request head: %w", method, path, t.Name, err)
	}
	if body != nil {
		sent, err := io.CopyBuffer(c.tc, io.LimitReader(body, n), buf)
		if err == nil && sent != n {
			err = fmt.Errorf("the body reader ended after %d bytes", sent)
		}
		if err != nil {
			return Transfer{}, fmt.Errorf("loadgen: %s %s via %s: write body (%d bytes): %w", method, path, t.Name, n, err)
		}
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return Transfer{}, fmt.Errorf("loadgen: %s %s via %s: read response: %w", method, path, t.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return Transfer{}, &StatusError{Code: resp.StatusCode, Reason: resp.Header.Get("X-Credgate-Reason"), Body: string(b)}
	}
	got, err := io.CopyBuffer(io.Discard, resp.Body, buf)
	elapsed := time.Since(start)
	if err != nil {
		return Transfer{}, fmt.Errorf("loadgen: %s %s via %s: read body after %d bytes: %w", method, path, t.Name, got, err)
	}
	if want >= 0 && got != want {
		return Transfer{}, fmt.Errorf("loadgen: %s %s via %s: body of %d bytes, want %d", method, path, t.Name, got, want)
	}
	size := n
	if want >= 0 {
		size = want
	}
	return Transfer{Bytes: size, Elapsed: elapsed}, nil
}
