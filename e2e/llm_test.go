package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/credgate/credgate/internal/llmtest"
)

const llmPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  openai:
    hosts: [api.openai.com]
    allow_private: true
  anthropic:
    hosts: [api.anthropic.com]
    allow_private: true
  gemini:
    hosts: [generativelanguage.googleapis.com]
    allow_private: true
credentials:
  openai-key:
    provider: static
    env: E2E_OPENAI_KEY
  anthropic-key:
    provider: static
    env: E2E_ANTHROPIC_KEY
  gemini-key:
    provider: static
    env: E2E_GEMINI_KEY
rules:
  - name: openai
    from: local
    to: openai
    methods: [GET, POST]
    paths: [/v1/chat/completions, /v1/models]
    inject: {credential: openai-key, as: openai, organization: org-e2e, project: proj_e2e}
  - name: anthropic
    from: local
    to: anthropic
    methods: [POST]
    paths: [/v1/messages]
    inject: {credential: anthropic-key, as: anthropic}
  - name: gemini
    from: local
    to: gemini
    methods: [POST]
    paths: ["/v1beta/models/*"]
    inject: {credential: gemini-key, as: gemini}
default: deny
`

// TestLLMProviders drives the official OpenAI and Anthropic Go SDKs
// (openai-go, anthropic-sdk-go), and plain net/http for Gemini (its Go
// SDK, google.golang.org/genai, is not a dependency), through the gateway to
// internal/llmtest, which checks each API's key where the API documents
// it. The clients hold a placeholder key only; the fake must see the real
// key and never the placeholder.
func TestLLMProviders(t *testing.T) {
	t.Parallel()
	const (
		placeholder  = "sk-placeholder-not-a-key"
		openaiKey    = "sk-proj-e2e-7c1d94f0a2"
		anthropicKey = "sk-ant-api03-e2e-52be0c"
		geminiKey    = "AIzaSy-e2e-d81f3a6b"
	)
	leaf, err := originCA.Leaf("api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	fake := llmtest.New(llmtest.Options{Certificate: &leaf,
		OpenAIKey: openaiKey, OpenAIOrganization: "org-e2e", OpenAIProject: "proj_e2e",
		AnthropicKey: anthropicKey, GeminiKey: geminiKey})
	t.Cleanup(fake.Close)
	reportPeer(t, "llm: fake OpenAI, Anthropic and Gemini APIs (internal/llmtest) at %s", fake.URL)
	e := startEnv(t, envOptions{
		Policy: llmPolicy,
		Resolve: map[string]string{"api.openai.com:443": fake.Addr, "api.anthropic.com:443": fake.Addr,
			"generativelanguage.googleapis.com:443": fake.Addr},
		Env: []string{"E2E_OPENAI_KEY=" + openaiKey, "E2E_ANTHROPIC_KEY=" + anthropicKey, "E2E_GEMINI_KEY=" + geminiKey},
	})
	e.secrets = append(e.secrets, openaiKey, anthropicKey, geminiKey)

	t.Run("openai-go SDK with a placeholder key", func(t *testing.T) {
		// The SDK's own defaults, plus the proxy and CA every application
		// sets, a placeholder key and an organization of its own choosing.
		client := openai.NewClient(
			option.WithAPIKey(placeholder),
			option.WithOrganization("org-client-chosen"),
			option.WithHTTPClient(newGoClient(t, e.proxyURL, gwCACert, false)),
			option.WithMaxRetries(0),
		)
		ctx := context.Background()
		resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:    openai.ChatModelGPT5_6Luna,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("ping")},
		})
		if err != nil {
			t.Fatalf("Chat.Completions.New: %v", err)
		}
		if len(resp.Choices) != 1 || resp.Choices[0].Message.Content != "pong" {
			t.Errorf("completion %+v, want one choice \"pong\"", resp.Choices)
		}
		models, err := client.Models.List(ctx)
		if err != nil || len(models.Data) != 1 {
			t.Errorf("Models.List: %v, %+v", err, models)
		}
	})

	c := newGoClient(t, e.proxyURL, gwCACert, false)
	post := func(t *testing.T, url string, h http.Header) int {
		t.Helper()
		req, err := http.NewRequest("POST", url, strings.NewReader(`{"contents":[{"parts":[{"text":"ping"}]}]}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = h
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("POST %s: %d %s", url, resp.StatusCode, b)
		}
		return resp.StatusCode
	}
	t.Run("anthropic-sdk-go with a placeholder key", func(t *testing.T) {
		client := anthropic.NewClient(
			anthropicoption.WithAPIKey(placeholder),
			anthropicoption.WithHeader("Anthropic-Version", "2001-01-01"),
			anthropicoption.WithHTTPClient(newGoClient(t, e.proxyURL, gwCACert, false)),
			anthropicoption.WithMaxRetries(0),
		)
		msg, err := client.Messages.New(context.Background(), anthropic.MessageNewParams{
			Model:     anthropic.ModelClaudeSonnet5_5,
			MaxTokens: 16,
			Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("ping"))},
		})
		if err != nil {
			t.Fatalf("Messages.New: %v", err)
		}
		if len(msg.Content) != 1 || msg.Content[0].Text != "pong" {
			t.Errorf("message content %+v, want one text block \"pong\"", msg.Content)
		}
	})
	t.Run("gemini with a placeholder key in the header and the query", func(t *testing.T) {
		post(t, "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent?key="+placeholder,
			http.Header{"X-Goog-Api-Key": {placeholder}, "Content-Type": {"application/json"}})
	})

	want := map[string]string{"openai": openaiKey, "anthropic": anthropicKey, "gemini": geminiKey}
	counts := map[string]int{}
	for _, s := range fake.Requests() {
		counts[s.Service]++
		if s.Key != want[s.Service] || !s.OK {
			t.Errorf("%s %s: the fake saw key %q (ok %v), want the real key", s.Service, s.Path, s.Key, s.OK)
		}
		if strings.Contains(s.Key, "placeholder") {
			t.Errorf("%s: the placeholder reached the API", s.Service)
		}
		switch s.Service {
		case "openai":
			if s.Organization != "org-e2e" || s.Project != "proj_e2e" {
				t.Errorf("openai organization %q project %q, want the policy's", s.Organization, s.Project)
			}
		case "anthropic":
			if s.Version != "2023-06-01" {
				t.Errorf("anthropic-version %q, want the policy's 2023-06-01", s.Version)
			}
		}
	}
	if diff := map[string]int{"openai": 2, "anthropic": 1, "gemini": 1}; counts["openai"] != diff["openai"] || counts["anthropic"] != 1 || counts["gemini"] != 1 {
		t.Errorf("requests per API %v, want %v", counts, diff)
	}
}
