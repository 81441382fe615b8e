package gateway

import (
	"encoding/json"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func gaugeValue(t *testing.T, g prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// leafKeys lists the dotted YAML keys of t's settings, descending into
// structs.
func leafKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Struct {
			keys = append(keys, leafKeys(ft, prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

// TestReloadNamesEveryLimit: a config file re-read (SIGHUP) with any one
// limits.* setting changed names exactly that key as waiting for a
// restart, in the warning, in credgate_config_restart_pending and in
// /readyz's detail; never silently ignored, never just "limits". The
// table must cover every key of Limits. A file that matches the running
// config again clears it.
func TestReloadNamesEveryLimit(t *testing.T) {
	changes := map[string]string{
		"max_header_bytes":           "  max_header_bytes: 12345\n",
		"read_header_timeout":        "  read_header_timeout: 7s\n",
		"idle_timeout":               "  idle_timeout: 77s\n",
		"body_idle_timeout":          "  body_idle_timeout: 33s\n",
		"body_min_rate":              "  body_min_rate: 10\n",
		"write_idle_timeout":         "  write_idle_timeout: 44s\n",
		"long_lived.idle_timeout":    "  long_lived: {idle_timeout: 5m}\n",
		"long_lived.max_lifetime":    "  long_lived: {max_lifetime: 2h}\n",
		"in_flight_identity_grace":   "  in_flight_identity_grace: 9s\n",
		"max_connections":            "  max_connections: 99\n",
		"max_connections_per_source": "  max_connections_per_source: 9\n",
		"batch_buffer_bytes":         "  batch_buffer_bytes: 4194304\n",
	}
	keys := slices.Sorted(maps.Keys(changes))
	if diff := cmp.Diff(slices.Sorted(slices.Values(leafKeys(reflect.TypeOf(Limits{}), ""))), keys); diff != "" {
		t.Fatalf("the table must change every limits key (-Limits +table):\n%s", diff)
	}

	const token = "reload-token-0123456789abcdef"
	tokFile := filepath.Join(t.TempDir(), "admin.token")
	writeFile(t, filepath.Dir(tokFile), "admin.token", []byte(token))
	tg := startSwitchGateway(t, "admin:\n  token_file: "+tokFile+"\n")
	base, err := os.ReadFile(tg.gw.cfg.File())
	if err != nil {
		t.Fatal(err)
	}
	reread := func(t *testing.T, extra string) *Config {
		t.Helper()
		writeFile(t, tg.dir, "credgate-next.yaml", append(base[:len(base):len(base)], extra...))
		next, err := LoadConfig(filepath.Join(tg.dir, "credgate-next.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		return next
	}
	for _, key := range keys {
		t.Run(key, func(t *testing.T) {
			want := []string{"limits." + key}
			if diff := cmp.Diff(want, reloadConfig(t, tg.gw, reread(t, "limits:\n"+changes[key]))); diff != "" {
				t.Errorf("ReloadConfig (-want +got):\n%s", diff)
			}
			if !strings.Contains(tg.logs.String(), `"needs_restart":["limits.`+key+`"]`) {
				t.Errorf("no warning names limits.%s", key)
			}
			if got := gaugeValue(t, tg.gw.metrics.restartPending); got != 1 {
				t.Errorf("credgate_config_restart_pending = %v, want 1", got)
			}
			st, body, err := adminGetStatus(t, tg, "/readyz", token)
			var d readyzDetail
			if err == nil {
				err = json.Unmarshal([]byte(body), &d)
			}
			if err != nil || st != http.StatusOK || d.Config == nil || !cmp.Equal(want, d.Config.NeedsRestart) {
				t.Errorf("/readyz detail: %d %v %s, want config.needs_restart %v", st, err, body, want)
			}
		})
	}

	// The file as it runs again: nothing pending.
	if got := reloadConfig(t, tg.gw, reread(t, "")); len(got) != 0 {
		t.Errorf("the running file re-read: ReloadConfig = %v, want none", got)
	}
	if got := gaugeValue(t, tg.gw.metrics.restartPending); got != 0 {
		t.Errorf("credgate_config_restart_pending = %v after the file matched again, want 0", got)
	}
	if _, body, _ := adminGetStatus(t, tg, "/readyz", token); strings.Contains(body, "needs_restart") {
		t.Errorf("/readyz still names settings waiting for a restart: %s", body)
	}
}
