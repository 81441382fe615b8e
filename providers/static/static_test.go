package static

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/providers"
)

const value = "sk_test_static_value"

func load(t *testing.T, settings string) (providers.Provider, error) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(settings), &doc); err != nil {
		t.Fatal(err)
	}
	return providers.Load(context.Background(), "static", doc.Content[0])
}

func token(t *testing.T, p providers.Provider) (string, error) {
	t.Helper()
	cred, err := p.Fetch(context.Background(), providers.Request{Credential: "c"})
	if err != nil {
		return "", err
	}
	if !cred.Expiry.IsZero() {
		t.Errorf("static credential has expiry %v, want none", cred.Expiry)
	}
	s, _ := cred.Field(providers.FieldToken)
	return s.Reveal(), nil
}

func TestRegistered(t *testing.T) {
	if _, ok := providers.Lookup("static"); !ok {
		t.Fatal(`provider "static" is not registered`)
	}
}

func TestSettings(t *testing.T) {
	tests := []struct {
		settings string
		wantErr  string
	}{
		{"env: X", ""},
		{"file: x.txt", ""},
		{"{}", "set one of env"},
		{"env: X\nfile: y", "only one of env and file"},
		{"env: A=B", "not a valid environment variable name"},
		{"env: X\npath: y", `line 2: unknown field "path"; known fields are env, file, fields`},
		{"fields: {api_key: {env: A}, app_key: {file: b}}", ""},
		{"fields: {}", "fields is empty"},
		{"env: X\nfields: {a: {env: A}}", "not both"},
		{"fields: {a: {}}", "field a: set one of env"},
		{"fields: {a: {env: A, file: b}}", "field a: set only one"},
		{"fields: {a: {env: 'A B'}}", "not a valid environment variable name"},
		{"fields: {a: {path: b}}", `unknown field "path"`},
	}
	for _, tt := range tests {
		t.Run(tt.settings, func(t *testing.T) {
			_, err := load(t, tt.settings)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if (tt.wantErr == "") != (got == "") || !strings.Contains(got, tt.wantErr) {
				t.Errorf("Load error = %q, want %q", got, tt.wantErr)
			}
		})
	}
}

func TestFetch(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("CREDGATE_TEST_STATIC", value)
	t.Setenv("CREDGATE_TEST_EMPTY", "")
	tests := []struct {
		name            string
		settings        string
		want            string
		wantUnavailable bool
		wantErrNames    string
	}{
		{"env", "env: CREDGATE_TEST_STATIC", value, false, ""},
		{"env unset", "env: CREDGATE_TEST_UNSET_VARIABLE", "", true, "CREDGATE_TEST_UNSET_VARIABLE"},
		{"env empty", "env: CREDGATE_TEST_EMPTY", "", true, "CREDGATE_TEST_EMPTY"},
		{"file", "file: " + write("tok", value+"\n"), value, false, ""},
		{"file crlf", "file: " + write("crlf", value+"\r\n"), value, false, ""},
		{"file no newline", "file: " + write("plain", value), value, false, ""},
		{"file missing", "file: " + filepath.Join(dir, "missing"), "", true, "missing"},
		{"file empty", "file: " + write("empty", "\n"), "", true, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := load(t, tt.settings)
			if err != nil {
				t.Fatal(err)
			}
			got, err := token(t, p)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("token (-want +got):\n%s", diff)
			}
			if got := errors.Is(err, providers.ErrUnavailable); got != tt.wantUnavailable {
				t.Errorf("error %v: ErrUnavailable = %v, want %v", err, got, tt.wantUnavailable)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantErrNames) {
				t.Errorf("error %q does not name %q", err, tt.wantErrNames)
			}
			if err != nil && strings.Contains(err.Error(), value) {
				t.Errorf("error contains the secret: %v", err)
			}
		})
	}
}

func TestFileRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	p, err := load(t, "file: "+path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, step := range []string{"", "first\n", "second\n", "-"} {
		switch step {
		case "":
		case "-":
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		default:
			// Write and rename, like a Kubernetes secret volume update.
			tmp := path + ".tmp"
			if err := os.WriteFile(tmp, []byte(step), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}
		v, err := token(t, p)
		if err != nil {
			v = "unavailable"
			if !errors.Is(err, providers.ErrUnavailable) {
				t.Errorf("error %v does not wrap ErrUnavailable", err)
			}
		}
		got = append(got, v)
	}
	if diff := cmp.Diff([]string{"unavailable", "first", "second", "unavailable"}, got); diff != "" {
		t.Errorf("values over rotation (-want +got):\n%s", diff)
	}
}

func TestRelativeFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rel.txt"), []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	p, err := load(t, "file: rel.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := token(t, p); err != nil || got != value {
		t.Errorf("relative file: %q, %v", got, err)
	}
	// A missing relative file: the error says where it was looked for.
	p, err = load(t, "file: missing.txt")
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if _, err := token(t, p); err == nil || !strings.Contains(err.Error(), "missing.txt (relative to the gateway's working directory "+wd+")") {
		t.Errorf("missing relative file: %v, want it to name the working directory %s", err, wd)
	}
}

func TestFetchFields(t *testing.T) {
	file := filepath.Join(t.TempDir(), "app")
	if err := os.WriteFile(file, []byte("app-"+value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDGATE_TEST_STATIC", value)
	p, err := load(t, "fields: {api_key: {env: CREDGATE_TEST_STATIC}, app_key: {file: "+file+"}}")
	if err != nil {
		t.Fatal(err)
	}
	cred, err := p.Fetch(context.Background(), providers.Request{Credential: "c"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for k, v := range cred.Fields {
		got[k] = v.Reveal()
	}
	if diff := cmp.Diff(map[string]string{"api_key": value, "app_key": "app-" + value}, got); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	p, err = load(t, "fields: {api_key: {env: CREDGATE_TEST_STATIC}, app_key: {env: CREDGATE_TEST_UNSET_VARIABLE}}")
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Fetch(context.Background(), providers.Request{Credential: "c"})
	if !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), "CREDGATE_TEST_UNSET_VARIABLE") || strings.Contains(err.Error(), value) {
		t.Errorf("one field unset: %v, want ErrUnavailable naming the variable and no value", err)
	}
}
