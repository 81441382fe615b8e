package all

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/credgate/credgate/providers"
)

// sourceSettings appends to out the paths (yaml keys joined by dots) of
// the string settings of t named env or file or ending in _env or _file:
// the variables and files a provider reads. A map's keys are NAME.
func sourceSettings(t reflect.Type, prefix string, depth int, out *[]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		if t.Kind() == reflect.Map {
			prefix += "NAME."
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || depth > 8 {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case tag == "-" || !f.IsExported():
		case tag == "" && (f.Anonymous || strings.Contains(opts, "inline")):
			sourceSettings(f.Type, prefix, depth+1, out)
		case tag == "":
		case f.Type.Kind() == reflect.String && isSource(tag):
			*out = append(*out, prefix+tag)
		default:
			sourceSettings(f.Type, prefix+tag+".", depth+1, out)
		}
	}
}

func isSource(key string) bool {
	return key == "env" || key == "file" || strings.HasSuffix(key, "_env") || strings.HasSuffix(key, "_file")
}

// setSetting sets the string setting at path in the struct v points to,
// allocating the pointers on the way; false if path is not there.
func setSetting(v reflect.Value, path []string, value string) bool {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	if len(path) == 0 {
		if v.Kind() != reflect.String {
			return false
		}
		v.SetString(value)
		return true
	}
	if v.Kind() != reflect.Struct {
		return false
	}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || tag == "-" {
			continue
		}
		if tag == "" && (f.Anonymous || strings.Contains(opts, "inline")) {
			if setSetting(v.Field(i), path, value) {
				return true
			}
			continue
		}
		if tag == path[0] {
			return setSetting(v.Field(i), path[1:], value)
		}
	}
	return false
}

// TestEverySourceIsChecked is the class test of providers.SourceChecker:
// every setting of every compiled-in provider that names an environment
// variable or a file (found from the settings' yaml keys, so a new one
// counts) is reported by CheckSources, at that setting, when the variable
// is unset or the file is missing or empty, and not when it is there.
// Settings under a map (static's fields.NAME) are covered by the cli's
// TestValidateCredentialSources.
func TestEverySourceIsChecked(t *testing.T) {
	os.Unsetenv("CREDGATE_TEST_SOURCE_UNSET")
	t.Setenv("CREDGATE_TEST_SOURCE_SET", "x")
	dir := t.TempDir()
	present := filepath.Join(dir, "present")
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(present, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	checked := 0
	for _, name := range providers.Names() {
		m, _ := providers.Lookup(name)
		var paths []string
		sourceSettings(reflect.TypeOf(m.New()), "", 0, &paths)
		for _, path := range paths {
			if strings.Contains(path, "NAME.") {
				continue
			}
			key := path[strings.LastIndex(path, ".")+1:]
			isEnv := key == "env" || strings.HasSuffix(key, "_env")
			bad := []string{missing, empty}
			good := present
			if isEnv {
				bad, good = []string{"CREDGATE_TEST_SOURCE_UNSET"}, "CREDGATE_TEST_SOURCE_SET"
			}
			for _, value := range append(bad, good) {
				p := m.New()
				sc, ok := p.(providers.SourceChecker)
				if !ok {
					t.Errorf("%s: setting %s names a variable or file, but the provider does not implement providers.SourceChecker", name, path)
					break
				}
				v := reflect.ValueOf(p)
				if !setSetting(v, strings.Split(path, "."), value) {
					t.Fatalf("%s: cannot set %s", name, path)
				}
				if i := strings.Index(path, "auth."); i >= 0 { // the vault login method that reads it
					method := "token"
					if strings.HasPrefix(key, "role_id") || strings.HasPrefix(key, "secret_id") {
						method = "approle"
					}
					setSetting(v, strings.Split(path[:i]+"auth.method", "."), method)
				}
				var got []string
				for _, sp := range sc.CheckSources() {
					got = append(got, sp.Setting)
					if !strings.Contains(sp.Err.Error(), path) || !strings.Contains(sp.Err.Error(), strings.TrimPrefix(value, dir+"/")) {
						t.Errorf("%s: %s = %s: the error %q does not name the setting and the variable or file", name, path, value, sp.Err)
					}
				}
				want := []string{path}
				if value == good {
					want = nil
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s: %s = %s: CheckSources reported %q, want %q", name, path, value, got, want)
				}
				checked++
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d settings checked; the walk over the providers' settings is broken", checked)
	}
}
