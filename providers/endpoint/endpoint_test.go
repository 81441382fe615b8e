package endpoint_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/credgate/credgate/internal/freeport"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/endpoint"
)

func TestDo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte(strings.Repeat("x", endpoint.MaxBody+10)))
	}))
	t.Cleanup(srv.Close)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/token?secret=s3cr3t", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, data, err := endpoint.Do(srv.Client(), req)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if resp.StatusCode != http.StatusTeapot || len(data) != endpoint.MaxBody {
		t.Errorf("status %d, %d bytes; want 418 and the body cut at %d", resp.StatusCode, len(data), endpoint.MaxBody)
	}

	// Nothing listens on a closed listener's port: unavailable, and the
	// error does not repeat the URL (its query may hold a secret).
	dead := "http://" + freeport.Addr(t) + "/token?secret=s3cr3t" // nothing listens there
	req, _ = http.NewRequestWithContext(context.Background(), http.MethodGet, dead, nil)
	if _, _, err := endpoint.Do(http.DefaultClient, req); !errors.Is(err, providers.ErrUnavailable) || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("Do(unreachable) = %v, want ErrUnavailable without the URL", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	if _, _, err := endpoint.Do(srv.Client(), req); !errors.Is(err, context.Canceled) || errors.Is(err, providers.ErrUnavailable) {
		t.Errorf("Do(cancelled) = %v, want context.Canceled and not ErrUnavailable", err)
	}
}

func TestUnavailable(t *testing.T) {
	for status, want := range map[int]bool{200: false, 400: false, 401: false, 403: false, 408: false, 429: true, 500: true, 503: true} {
		if got := endpoint.Unavailable(status); got != want {
			t.Errorf("Unavailable(%d) = %v, want %v", status, got, want)
		}
	}
}
