// Package origin is the HTTPS server every benchmark target ends at: a
// stand-in for a SaaS API that answers a small fixed JSON body, but only to
// requests that carry the expected bearer token. A request without it gets
// 401, which the load generator counts as an error, so a run through a
// gateway that failed to inject shows up in the figures instead of passing
// silently.
package origin

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Body is the fixed response body (100 bytes).
var Body = []byte(`{"ok":true,"object":"charge","id":"ch_0123456789abcdef","amount":4200,"currency":"eur","pad":"xxxx"}`)

// Config says how the origin serves.
type Config struct {
	// Certificate is the server certificate presented to clients.
	Certificate tls.Certificate
	// Token is the bearer token a request must carry.
	Token string
	// HTTP1Only disables HTTP/2 (by default the origin offers h2 and
	// http/1.1 through ALPN, like most public APIs).
	HTTP1Only bool
}

// Server is a running origin.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
	err  error // set before done is closed
}

// Start serves on ln until Close. It takes ownership of ln.
func Start(ln net.Listener, cfg Config) *Server {
	want := []byte("Bearer " + cfg.Token)
	contentLength := strconv.Itoa(len(Body))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte("missing or wrong bearer token\n"))
			return
		}
		hdr := w.Header()
		hdr["Content-Type"] = []string{"application/json"}
		hdr["Content-Length"] = []string{contentLength}
		_, _ = w.Write(Body)
	})
	tcfg := &tls.Config{
		Certificates: []tls.Certificate{cfg.Certificate},
		MinVersion:   tls.VersionTLS12,
	}
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tcfg,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	if cfg.HTTP1Only {
		tcfg.NextProtos = []string{"http/1.1"}
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	s := &Server{srv: srv, ln: ln, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			s.err = fmt.Errorf("origin: serve: %w", err)
		}
	}()
	return s
}

// Addr is the address the origin listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server, waiting for in-flight requests until ctx ends.
func (s *Server) Close(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("origin: shutdown: %w", err)
	}
	return s.Wait()
}

// Done is closed when the server has stopped.
func (s *Server) Done() <-chan struct{} { return s.done }

// Wait blocks until the server stops and returns why.
func (s *Server) Wait() error {
	<-s.done
	return s.err
}
