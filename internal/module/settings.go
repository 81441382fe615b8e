package module

import (
	"reflect"
	"strings"
	"time"
)

// Setting is one key a module accepts in its YAML settings.
type Setting struct {
	// Name is the YAML key.
	Name string
	// Type is a short type for people: string, int, bool, duration,
	// list of string, map of string, object...
	Type string
	// Doc is the module's one line for the key, "" when it gave none.
	Doc string
}

var durationType = reflect.TypeFor[time.Duration]()

// Settings lists the keys strict decoding accepts into v (the value a
// module's New returns), in field order: the yaml names of its exported
// fields, with ",inline" structs flattened, as gopkg.in/yaml.v3 decodes
// them. docs gives a line per key (Info.SettingDocs).
func Settings(v any, docs map[string]string) []Setting {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var out []Setting
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			name, opts, _ := strings.Cut(tag, ",")
			if tag == "-" || (!f.IsExported() && !f.Anonymous) {
				continue
			}
			if strings.Contains(","+opts+",", ",inline,") {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					walk(ft)
				}
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			out = append(out, Setting{Name: name, Type: typeName(f.Type), Doc: docs[name]})
		}
	}
	walk(t)
	return out
}

// typeName names t the way a policy author thinks of the YAML value.
func typeName(t reflect.Type) string {
	if t == durationType {
		return "duration"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "int"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "list of " + typeName(t.Elem())
	case reflect.Map:
		return "map of " + typeName(t.Elem())
	case reflect.Struct:
		return "object"
	default:
		return t.Kind().String()
	}
}
