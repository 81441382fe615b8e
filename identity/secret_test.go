package identity

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestTokenRedacted(t *testing.T) {
	const raw = "eyJhbGciOiJFUzI1NiJ9.c2VjcmV0LWNsYWltcw.c2lnbmF0dXJl"
	f := Factor{Kind: KindJWT, Subject: "sub", Token: NewToken(raw)}
	w := Workload{Name: "billing", Factors: []Factor{f}}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		out = append(out, fmt.Sprintf(verb, w), fmt.Sprintf(verb, f), fmt.Sprintf(verb, f.Token))
	}
	j, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, string(j))
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", slog.Any("workload", w), slog.Any("token", f.Token))
	out = append(out, buf.String())
	for _, s := range out {
		if strings.Contains(s, "c2VjcmV0") || strings.Contains(s, "eyJhbGciOiJFUzI1NiJ9") {
			t.Errorf("token leaked: %s", s)
		}
	}
	if got := f.Token.Reveal(); got != raw {
		t.Errorf("Reveal() = %q, want the token", got)
	}
	if (Token{}).IsZero() != true || f.Token.IsZero() {
		t.Error("IsZero wrong")
	}
}
