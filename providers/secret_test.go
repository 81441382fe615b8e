package providers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const testSecretValue = "sk_live_do_not_print"

func TestSecretRedaction(t *testing.T) {
	s := NewSecret(testSecretValue)
	cred := &Credential{Fields: map[string]Secret{FieldToken: s}}
	type holder struct {
		Name   string
		Secret Secret
		Ptr    *Secret
	}
	h := holder{Name: "n", Secret: s, Ptr: &s}

	slogOut := func(json bool) string {
		var b bytes.Buffer
		var handler slog.Handler = slog.NewTextHandler(&b, nil)
		if json {
			handler = slog.NewJSONHandler(&b, nil)
		}
		l := slog.New(handler)
		l.Info("msg", "secret", s, "ptr", &s, "cred", cred, "holder", h, slog.Any("any", s), slog.Group("g", "s", s))
		return b.String()
	}
	marshal := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal: %v", err)
		}
		return string(b)
	}
	yamlOut := func(v any) string {
		b, err := yaml.Marshal(v)
		if err != nil {
			t.Fatalf("yaml.Marshal: %v", err)
		}
		return string(b)
	}
	wrapped := fmt.Errorf("op: %v: %w", s, errors.New("x"))

	tests := []struct {
		name string
		got  string
	}{
		{"%v", fmt.Sprintf("%v", s)},
		{"%+v", fmt.Sprintf("%+v", s)},
		{"%#v", fmt.Sprintf("%#v", s)},
		{"%s", fmt.Sprintf("%s", s)},
		{"%q", fmt.Sprintf("%q", s)},
		{"%x", fmt.Sprintf("%x", s)},
		{"%d", fmt.Sprintf("%d", s)},
		{"String", s.String()},
		{"struct %v", fmt.Sprintf("%v", h)},
		{"struct %+v", fmt.Sprintf("%+v", h)},
		{"struct %#v", fmt.Sprintf("%#v", h)},
		{"pointer %v", fmt.Sprintf("%v", &s)},
		{"credential %+v", fmt.Sprintf("%+v", *cred)},
		{"credential %#v", fmt.Sprintf("%#v", cred)},
		{"fields map", fmt.Sprint(cred.Fields)},
		{"slog text", slogOut(false)},
		{"slog json", slogOut(true)},
		{"json struct", marshal(h)},
		{"json credential", marshal(cred)},
		{"yaml struct", yamlOut(h)},
		{"error wrapping", wrapped.Error()},
		{"joined error", errors.Join(wrapped, fmt.Errorf("%s", s)).Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Contains(tt.got, testSecretValue) || strings.Contains(tt.got, fmt.Sprintf("%x", testSecretValue)) {
				t.Errorf("secret leaked: %s", tt.got)
			}
			if !strings.Contains(tt.got, Redacted) && !strings.HasPrefix(tt.name, "%") {
				t.Errorf("output does not show %s: %s", Redacted, tt.got)
			}
		})
	}
	if s.Reveal() != testSecretValue {
		t.Errorf("Reveal() = %q, want the value", s.Reveal())
	}
}

func TestSecretFormatVerbsExact(t *testing.T) {
	s := NewSecret(testSecretValue)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10s"} {
		if got := fmt.Sprintf(verb, s); got != Redacted {
			t.Errorf("Sprintf(%q) = %q, want %q", verb, got, Redacted)
		}
	}
}
