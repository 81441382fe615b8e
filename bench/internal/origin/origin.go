// Package origin is the HTTPS server every benchmark target ends at: a
// stand-in for a SaaS API that answers a small fixed JSON body (and, for
// the soak, takes uploads and echoes WebSocket messages), but only to
// requests that carry the expected bearer token. A request without it gets
// 401, which the load generator counts as an error, so a run through a
// gateway that failed to inject shows up in the figures instead of passing
// silently.
package origin

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/websocket"
)

// Body is the fixed response body (100 bytes).
var Body = []byte(`{"ok":true,"object":"charge","id":"ch_0123456789abcdef","amount":4200,"currency":"eur","pad":"xxxx"}`)

// Config says how the origin serves.
type Config struct {
	// Certificate is the server certificate presented to clients.
	Certificate tls.Certificate
	// Token is the bearer token a request must carry.
	Token string
	// Introspection, if set, checks the bearer token of requests under
	// its Prefix at an OAuth2 introspection endpoint instead of comparing
	// it with Token.
	Introspection *Introspection
	// HTTP1Only disables HTTP/2 (by default the origin offers h2 and
	// http/1.1 through ALPN, like most public APIs).
	HTTP1Only bool
}

// Introspection is an RFC 7662 token introspection endpoint the origin
// asks about the bearer tokens of requests under Prefix (a resource server
// of an OAuth2 authorization server): a token it does not call active is
// refused 401, like a missing one.
type Introspection struct {
	// Prefix is the path prefix, e.g. "/oauth2/".
	Prefix string
	// URL is the introspection endpoint.
	URL string
	// ClientID and ClientSecret authenticate the origin there (HTTP
	// Basic).
	ClientID, ClientSecret string
	// Client makes the requests; nil is a client with a 5 s timeout.
	Client *http.Client
}

// active asks the endpoint whether tok is an active token.
func (in *Introspection) active(ctx context.Context, tok string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.URL, strings.NewReader(url.Values{"token": {tok}}.Encode()))
	if err != nil {
		return false, fmt.Errorf("introspection request to %s: %w", in.URL, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(in.ClientID), url.QueryEscape(in.ClientSecret))
	c := in.Client
	if c == nil {
		c = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, fmt.Errorf("introspection at %s: %w", in.URL, err)
	}
	defer resp.Body.Close()
	var answer struct {
		Active bool `json:"active"`
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("introspection at %s answered %s; check the origin's client id and secret there", in.URL, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&answer); err != nil {
		return false, fmt.Errorf("introspection at %s: decode the answer: %w", in.URL, err)
	}
	return answer.Active, nil
}

// Server is a running origin.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
	err  error // set before done is closed
}

// UploadPath reads the whole request body and answers 200 with Body if it
// holds as many bytes as Content-Length says (400 otherwise), so an upload
// cut short on the way is an error the client sees.
const UploadPath = "/v1/upload"

// DownloadPath answers 200 with a body of the size its query asks for
// (?bytes=N, at most MaxDownload) of Pattern's bytes, written through one
// 64 KiB buffer with a Content-Length, so a large download costs the
// origin no memory beyond that buffer.
const DownloadPath = "/v1/download"

// MaxDownload is the largest body DownloadPath sends (64 GiB).
const MaxDownload = 64 << 30

// EchoPath is a WebSocket (RFC 6455) endpoint that sends every message
// back unchanged.
const EchoPath = "/v1/echo"

// ResetPath answers 200 with a Content-Length of 64 KiB, sends 1 KiB of
// it and breaks the connection off: an upstream reset mid-body, which a
// client must see as an error, never as a complete answer.
const ResetPath = "/v1/reset"

func upload(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil || r.ContentLength < 0 || n != r.ContentLength {
		http.Error(w, fmt.Sprintf("read %d bytes of %d: %v", n, r.ContentLength, err), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(Body)
}

// download streams the body DownloadPath describes.
func download(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
	if err != nil || n < 0 || n > MaxDownload {
		http.Error(w, fmt.Sprintf("want ?bytes=N with 0 <= N <= %d", int64(MaxDownload)), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	_, _ = io.CopyBuffer(w, io.LimitReader(Pattern{}, n), make([]byte, 64<<10))
}

// Pattern is an endless reader of a repeating 64 KiB block of
// pseudo-random bytes: a body that takes no memory however long it is
// (io.LimitReader(Pattern{}, n)) and looks like the large bodies APIs
// move (archives, images, model files) rather than like text, whose
// bytes a response scrubber's prefilter matches far more often.
type Pattern struct{}

// patternBlock is the repeated block; it is written once, at start-up,
// and only read after.
var patternBlock = func() []byte {
	b := make([]byte, 64<<10)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range b {
		// xorshift64: deterministic, so every run sends the same bytes.
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x >> 56)
	}
	return b
}()

// Read fills p with the block, from its start. Every read starts the
// block afresh, which is all a throughput measurement needs.
func (Pattern) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], patternBlock)
	}
	return len(p), nil
}

// echo accepts any Origin: the credential check before it is the gate.
var echo = websocket.Server{
	Handshake: func(*websocket.Config, *http.Request) error { return nil },
	Handler: func(ws *websocket.Conn) {
		_, _ = io.Copy(ws, ws)
	},
}

// Start serves on ln until Close. It takes ownership of ln.
func Start(ln net.Listener, cfg Config) *Server {
	want := []byte("Bearer " + cfg.Token)
	contentLength := strconv.Itoa(len(Body))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		if in := cfg.Introspection; in != nil && strings.HasPrefix(r.URL.Path, in.Prefix) {
			tok, isBearer := strings.CutPrefix(got, "Bearer ")
			active := false
			if isBearer && tok != "" {
				var err error
				if active, err = in.active(r.Context(), tok); err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
			}
			if !active {
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte("missing or inactive bearer token\n"))
				return
			}
		} else if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte("missing or wrong bearer token\n"))
			return
		}
		switch r.URL.Path {
		case UploadPath:
			upload(w, r)
			return
		case DownloadPath:
			download(w, r)
			return
		case EchoPath:
			echo.ServeHTTP(w, r)
			return
		case ResetPath:
			w.Header().Set("Content-Length", strconv.Itoa(64<<10))
			_, _ = w.Write(make([]byte, 1<<10))
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
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
