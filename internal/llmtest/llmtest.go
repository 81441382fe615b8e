// Package llmtest is a fake of three LLM APIs, served over TLS on
// 127.0.0.1 and told apart by the Host header, for testing the openai,
// anthropic and gemini injectors with the official SDKs as clients. Each
// checks the credential where its API documents it and answers as the
// API does when it is wrong:
//
//   - OpenAI (api.openai.com): "Authorization: Bearer KEY"; when
//     configured, OpenAI-Organization and OpenAI-Project must match.
//     401 {"error":{"code":"invalid_api_key",...}}. Serves POST
//     /v1/chat/completions and GET /v1/models.
//   - Anthropic (api.anthropic.com): x-api-key and an anthropic-version
//     header naming a documented version (400 without one or with
//     another). 401 {"type":"error","error":{"type":
//     "authentication_error",...}}. Serves POST /v1/messages.
//   - Gemini (generativelanguage.googleapis.com): x-goog-api-key or
//     ?key=. 400 {"error":{"status":"INVALID_ARGUMENT",...
//     "API_KEY_INVALID"}}. Serves POST /v1beta/models/MODEL:generateContent.
//
// Every credential presented is recorded, so a test can check that the
// real key arrived and the client's placeholder never did.
package llmtest

import (
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"

	"github.com/credgate/credgate/internal/fakekit"
)

// AnthropicVersions are the anthropic-version values the API documents
// ("Versions", docs.anthropic.com: 2023-06-01, and 2023-01-01 the
// initial release); any other value is refused with 400.
var AnthropicVersions = []string{"2023-06-01", "2023-01-01"}

// Options configure a Server.
type Options struct {
	// Certificate is the server's TLS certificate; default httptest's.
	Certificate *tls.Certificate
	// OpenAIKey is the OpenAI API key; OpenAIOrganization and
	// OpenAIProject, when set, must arrive too.
	OpenAIKey, OpenAIOrganization, OpenAIProject string
	// AnthropicKey is the Anthropic API key.
	AnthropicKey string
	// GeminiKey is the Gemini API key.
	GeminiKey string
}

// Seen is one request as the fake received it.
type Seen struct {
	Service string // openai, anthropic, gemini
	// Key is the credential presented (Bearer value, x-api-key,
	// x-goog-api-key or key=), OK whether it was the configured one.
	Key string
	OK  bool
	// Organization, Project and Version are the OpenAI-Organization,
	// OpenAI-Project and anthropic-version headers.
	Organization, Project, Version string
	Path                           string
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	// URL is https://127.0.0.1:PORT; Addr is 127.0.0.1:PORT.
	URL, Addr string

	srv  *httptest.Server
	opts Options

	mu   sync.Mutex
	seen []Seen
}

// New starts a Server; call Close when done.
func New(opts Options) *Server {
	s := &Server{opts: opts}
	s.srv = fakekit.StartTLS(http.HandlerFunc(s.serve), opts.Certificate)
	s.URL = s.srv.URL
	s.Addr = s.srv.Listener.Addr().String()
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Client returns an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Requests returns what the fake received, in order.
func (s *Server) Requests() []Seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Seen(nil), s.seen...)
}

func (s *Server) record(x Seen) {
	s.mu.Lock()
	s.seen = append(s.seen, x)
	s.mu.Unlock()
}

func same(a, b string) bool { return b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	host, _, _ := strings.Cut(r.Host, ":")
	switch host {
	case "api.openai.com":
		s.openai(w, r)
	case "api.anthropic.com":
		s.anthropic(w, r)
	case "generativelanguage.googleapis.com":
		s.gemini(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) openai(w http.ResponseWriter, r *http.Request) {
	key, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	x := Seen{Service: "openai", Key: key, Path: r.URL.Path,
		Organization: r.Header.Get("OpenAI-Organization"), Project: r.Header.Get("OpenAI-Project")}
	x.OK = same(key, s.opts.OpenAIKey)
	s.record(x)
	if !x.OK {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{
			"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": nil, "code": "invalid_api_key"}})
		return
	}
	if (s.opts.OpenAIOrganization != "" && x.Organization != s.opts.OpenAIOrganization) ||
		(s.opts.OpenAIProject != "" && x.Project != s.opts.OpenAIProject) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{
			"message": "OpenAI-Organization or OpenAI-Project header does not match the key.", "type": "invalid_request_error", "param": nil, "code": "mismatched_organization"}})
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/chat/completions":
		writeJSON(w, http.StatusOK, map[string]any{
			"id": "chatcmpl-fake", "object": "chat.completion", "created": 1764650000, "model": "gpt-4o-mini",
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop", "logprobs": nil,
				"message": map[string]any{"role": "assistant", "content": "pong", "refusal": nil}}},
			"usage": map[string]any{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
		})
	case r.Method == http.MethodGet && r.URL.Path == "/v1/models":
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []any{
			map[string]any{"id": "gpt-4o-mini", "object": "model", "created": 1, "owned_by": "system"}}})
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"message": "unknown route", "type": "invalid_request_error", "param": nil, "code": nil}})
	}
}

func (s *Server) anthropic(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("X-Api-Key")
	x := Seen{Service: "anthropic", Key: key, Version: r.Header.Get("Anthropic-Version"), Path: r.URL.Path}
	x.OK = same(key, s.opts.AnthropicKey) && r.Header.Get("Authorization") == ""
	s.record(x)
	if !x.OK {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"type": "error", "error": map[string]any{"type": "authentication_error", "message": "invalid x-api-key"}})
		return
	}
	if x.Version == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"type": "error", "error": map[string]any{"type": "invalid_request_error", "message": "anthropic-version: header is required"}})
		return
	}
	if !slices.Contains(AnthropicVersions, x.Version) {
		writeJSON(w, http.StatusBadRequest, map[string]any{"type": "error", "error": map[string]any{"type": "invalid_request_error", "message": "anthropic-version: " + x.Version + " is not a valid version"}})
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/messages" {
		writeJSON(w, http.StatusNotFound, map[string]any{"type": "error", "error": map[string]any{"type": "not_found_error", "message": "Not found"}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": "msg_fake", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
		"content":     []any{map[string]any{"type": "text", "text": "pong"}},
		"stop_reason": "end_turn", "stop_sequence": nil,
		"usage": map[string]any{"input_tokens": 1, "output_tokens": 1},
	})
}

func (s *Server) gemini(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("X-Goog-Api-Key")
	if key == "" {
		key = r.URL.Query().Get("key")
	}
	x := Seen{Service: "gemini", Key: key, Path: r.URL.Path}
	x.OK = same(key, s.opts.GeminiKey) && r.URL.Query().Get("key") == ""
	s.record(x)
	if !x.OK {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{
			"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
			"details": []any{map[string]any{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}}}})
		return
	}
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/v1beta/models/") || !strings.HasSuffix(r.URL.Path, ":generateContent") {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"code": 404, "message": "not found", "status": "NOT_FOUND"}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"candidates": []any{map[string]any{
		"content": map[string]any{"parts": []any{map[string]any{"text": "pong"}}, "role": "model"}, "finishReason": "STOP"}}})
}
