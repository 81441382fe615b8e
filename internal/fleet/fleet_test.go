package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestHealthTransitions(t *testing.T) {
	var buf bytes.Buffer
	var errs, changes []string
	h := &Health{Log: slog.New(slog.NewTextHandler(&buf, nil)), Down: "x down", Recovered: "x back",
		OnError: func(op string) { errs = append(errs, op) }, OnChange: func(up bool) { changes = append(changes, fmt.Sprint(up)) }}
	h.Set(true)
	h.Fail("get", errors.New("connection refused"))
	h.Fail("set", errors.New("connection refused"))
	h.Fail("get", fmt.Errorf("wrapped: %w", context.Canceled))
	h.Succeed()
	h.Succeed()
	if h.Up() != true {
		t.Error("not up after Succeed")
	}
	if got := strings.Count(buf.String(), "x down"); got != 1 {
		t.Errorf("%d down lines, want 1:\n%s", got, buf.String())
	}
	if got := strings.Count(buf.String(), "x back"); got != 1 {
		t.Errorf("%d recovered lines, want 1:\n%s", got, buf.String())
	}
	if fmt.Sprint(errs) != "[get set]" || fmt.Sprint(changes) != "[false true]" {
		t.Errorf("errors %v, changes %v", errs, changes)
	}
}

func TestNamespaceAndOrigin(t *testing.T) {
	for ns, ok := range map[string]bool{"credgate": true, "a:b.c_d-e": true, "": false, "a b": false, strings.Repeat("a", 65): false, "x{y}": false} {
		if ValidNamespace(ns) != ok {
			t.Errorf("ValidNamespace(%q) = %v", ns, !ok)
		}
	}
	if a, b := NewOrigin(8), NewOrigin(8); len(a) != 16 || a == b {
		t.Errorf("NewOrigin: %q %q", a, b)
	}
}
