package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestEveryFormIsRedacted(t *testing.T) {
	v := New("sk_live_do-not-print")
	var forms []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s"} {
		forms = append(forms, fmt.Sprintf(verb, v), fmt.Sprintf(verb, &v), fmt.Sprintf(verb, struct{ S Value }{v}))
	}
	forms = append(forms, v.String(), v.GoString(), fmt.Sprint(v), fmt.Sprintln(v))
	j, err := json.Marshal(map[string]Value{"k": v})
	if err != nil {
		t.Fatal(err)
	}
	forms = append(forms, string(j))
	y, err := yaml.Marshal(map[string]Value{"k": v})
	if err != nil {
		t.Fatal(err)
	}
	forms = append(forms, string(y))
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "v", v)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "v", v)
	forms = append(forms, buf.String())
	for _, f := range forms {
		if bytes.Contains([]byte(f), []byte("do-not-print")) {
			t.Errorf("leaked: %s", f)
		}
	}
	if v.Reveal() != "sk_live_do-not-print" || v.IsZero() || !(Value{}).IsZero() {
		t.Error("Reveal or IsZero wrong")
	}
	if !v.Equal(New("sk_live_do-not-print")) || v.Equal(New("other")) {
		t.Error("Equal wrong")
	}
}
