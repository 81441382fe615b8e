//go:build unix

package cli

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"golang.org/x/sys/unix"
)

// captureStderr points the process's file descriptor 2 at a pipe until
// the test ends, and returns what was written to it so far: where
// libraries that log on their own (OpenTelemetry's default logger writes
// to os.Stderr) put their lines, which serve's stderr writer never sees.
func captureStderr(t *testing.T) func() string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved, err := unix.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup2(int(w.Fd()), 2); err != nil {
		t.Fatal(err)
	}
	var got syncBuffer
	done := make(chan struct{})
	go func() { _, _ = io.Copy(&got, r); close(done) }()
	t.Cleanup(func() {
		_ = unix.Dup2(saved, 2)
		_ = unix.Close(saved)
		_ = w.Close()
		<-done
		_ = r.Close()
	})
	return got.String
}

// TestServeRoutesOTelLog: what OpenTelemetry's SDK and exporters log
// themselves (otel.SetLogger's logger, not the error handler) goes to
// serve's JSON log, with the values it logs elided, while serve runs —
// from the exporters New builds on: an OTEL_EXPORTER_OTLP_HEADERS value
// the exporter cannot parse, whose value (a collector key) it logs — and
// nothing of it to the process's stderr; when serve returns,
// OpenTelemetry's default logger (stderr) is back. Before, both lines
// were plain text on stderr with the key in them.
func TestServeRoutesOTelLog(t *testing.T) {
	setEnv(t)
	const key = "otlp_collector_key_0123456789"
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=Bearer%zz"+key)
	path := gatewayDir(t)
	cfg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, "tracing:\n  enabled: true\n  endpoint: 127.0.0.1:4318\n  protocol: http\n  insecure: true\n"...)
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	fd2 := captureStderr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "-c", path}, &stdout, &stderr) }()
	waitFor(t, "credgate serving", func() bool { return strings.Contains(stderr.String(), `"msg":"credgate serving"`) })
	const msg = "otel: escape header value"
	// The exporter serve built logged as it was built, before the
	// gateway existed.
	waitFor(t, "the exporter's line in the JSON log", func() bool { return strings.Count(stderr.String(), msg) == 1 })
	// One built while serve runs logs through the gateway's LibraryLog.
	if _, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint("127.0.0.1:4318"), otlptracehttp.WithInsecure()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second exporter's line in the JSON log", func() bool { return strings.Count(stderr.String(), msg) == 2 })
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exit %d:\n%s", code, stderr.String())
	}
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, msg) && !strings.Contains(l, `value=\"[`) {
			t.Errorf("the value is not elided: %s", l)
		}
	}
	if strings.Contains(stderr.String(), key) {
		t.Errorf("the JSON log holds the key:\n%s", stderr.String())
	}
	// Restored: OpenTelemetry's default logger writes to stderr again.
	// The pipe is read in order, so once this line is in, all before it is.
	if _, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpoint("127.0.0.1:4318"), otlptracehttp.WithInsecure()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "OpenTelemetry's default logger back on stderr", func() bool { return strings.Contains(fd2(), "escape header value") })
	if n := strings.Count(fd2(), "escape header value"); n != 1 {
		t.Errorf("%d lines on the process's stderr, want 1 (after serve returned):\n%s", n, fd2())
	}
}
