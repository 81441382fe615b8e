package llmtest_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/credgate/credgate/internal/llmtest"
)

// TestFakeRefusesWrongCredentials: each API of the fake accepts its key
// where the API documents it and refuses a wrong, missing or misplaced
// one with the API's own status and error; a repeated credential field,
// a key in two places and an undocumented anthropic-version are refused.
func TestFakeRefusesWrongCredentials(t *testing.T) {
	s := llmtest.New(llmtest.Options{OpenAIKey: "sk-right", OpenAIProject: "proj_1", AnthropicKey: "sk-ant-right", GeminiKey: "AIza-right"})
	t.Cleanup(s.Close)
	client := s.Client()
	type h = map[string]string
	const (
		chat     = "/v1/chat/completions"
		messages = "/v1/messages"
		generate = "/v1beta/models/gemini-2.5-flash:generateContent"
	)
	tests := []struct {
		name, host, path string
		header           h
		want             int
		wantBody         string
	}{
		{"openai right key and project", "api.openai.com", chat, h{"Authorization": "Bearer sk-right", "OpenAI-Project": "proj_1"}, 200, ""},
		{"openai wrong key", "api.openai.com", chat, h{"Authorization": "Bearer sk-wrong", "OpenAI-Project": "proj_1"}, 401, "invalid_api_key"},
		{"openai right key, another project", "api.openai.com", chat, h{"Authorization": "Bearer sk-right", "OpenAI-Project": "proj_2"}, 401, "mismatched_organization"},
		{"openai key in x-api-key", "api.openai.com", chat, h{"X-Api-Key": "sk-right", "OpenAI-Project": "proj_1"}, 401, "invalid_api_key"},
		{"anthropic right key", "api.anthropic.com", messages, h{"X-Api-Key": "sk-ant-right", "Anthropic-Version": "2023-06-01"}, 200, ""},
		{"anthropic wrong key", "api.anthropic.com", messages, h{"X-Api-Key": "sk-ant-wrong", "Anthropic-Version": "2023-06-01"}, 401, "authentication_error"},
		{"anthropic no version", "api.anthropic.com", messages, h{"X-Api-Key": "sk-ant-right"}, 400, "anthropic-version"},
		{"gemini right key", "generativelanguage.googleapis.com", generate, h{"X-Goog-Api-Key": "AIza-right"}, 200, ""},
		{"gemini wrong key", "generativelanguage.googleapis.com", generate, h{"X-Goog-Api-Key": "AIza-wrong"}, 400, "API_KEY_INVALID"},
		{"gemini no key", "generativelanguage.googleapis.com", generate, nil, 400, "API_KEY_INVALID"},
		{"gemini key in the query too", "generativelanguage.googleapis.com", generate + "?key=AIza-right", h{"X-Goog-Api-Key": "AIza-right"}, 400, "API_KEY_INVALID"},
		{"anthropic undocumented version", "api.anthropic.com", messages, h{"X-Api-Key": "sk-ant-right", "Anthropic-Version": "2024-13-01"}, 400, "not a valid version"},
		{"anthropic key also as Bearer", "api.anthropic.com", messages, h{"X-Api-Key": "sk-ant-right", "Anthropic-Version": "2023-06-01", "Authorization": "Bearer sk-ant-right"}, 401, "authentication_error"},
		// A "+" name adds a second field line: the client's value left
		// beside the injected one.
		{"openai a second Authorization", "api.openai.com", chat, h{"Authorization": "Bearer sk-right", "+Authorization": "Bearer sk-client", "OpenAI-Project": "proj_1"}, 400, "more than once"},
		{"anthropic a second x-api-key", "api.anthropic.com", messages, h{"X-Api-Key": "sk-ant-right", "+X-Api-Key": "sk-client", "Anthropic-Version": "2023-06-01"}, 400, "more than once"},
		{"anthropic a second anthropic-version", "api.anthropic.com", messages, h{"X-Api-Key": "sk-ant-right", "Anthropic-Version": "2023-06-01", "+Anthropic-Version": "2023-01-01"}, 400, "more than once"},
		{"gemini a second x-goog-api-key", "generativelanguage.googleapis.com", generate, h{"X-Goog-Api-Key": "AIza-right", "+X-Goog-Api-Key": "AIza-client"}, 400, "more than once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := http.NewRequest("POST", s.URL+tt.path, strings.NewReader(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			r.Host = tt.host
			for k, v := range tt.header {
				if !strings.HasPrefix(k, "+") {
					r.Header.Set(k, v)
				}
			}
			for k, v := range tt.header {
				if name, ok := strings.CutPrefix(k, "+"); ok {
					r.Header.Add(name, v)
				}
			}
			resp, err := client.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.want || !strings.Contains(string(b), tt.wantBody) {
				t.Errorf("%d %s, want %d with %q", resp.StatusCode, b, tt.want, tt.wantBody)
			}
		})
	}
}
