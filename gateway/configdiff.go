package gateway

import (
	"log/slog"
	"reflect"
	"slices"
	"strings"
)

// ConfigChanges names the settings whose values differ between a and b,
// as the dotted keys of the config file (limits.max_connections,
// admin.tls.cert), in the order of the Config struct. It descends into
// blocks (structs, and pointers to structs both set); a list, a map or a
// block set in one and not the other is named as a whole.
func ConfigChanges(a, b *Config) []string {
	var changed []string
	diffValues(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), "", &changed)
	return changed
}

// diffValues appends to changed the keys under prefix whose values differ
// between the structs a and b.
func diffValues(a, b reflect.Value, prefix string, changed *[]string) {
	t := a.Type()
	n := len(*changed)
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		key := prefix + name
		if opts == "inline" {
			key = strings.TrimSuffix(prefix, ".")
		}
		fa, fb := a.Field(i), b.Field(i)
		if reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			continue
		}
		if fa.Kind() == reflect.Pointer && !fa.IsNil() && !fb.IsNil() && fa.Elem().Kind() == reflect.Struct {
			fa, fb = fa.Elem(), fb.Elem()
		}
		if fa.Kind() == reflect.Struct {
			sub := prefix
			if opts != "inline" {
				sub = key + "."
			}
			before := len(*changed)
			diffValues(fa, fb, sub, changed)
			if len(*changed) > before {
				continue
			}
		}
		// A list, a map, a value, or a block that differs only in what
		// it keeps unexported: the key as a whole.
		if key != "" {
			*changed = append(*changed, key)
		}
	}
	if len(*changed) == n && prefix != "" && !reflect.DeepEqual(a.Interface(), b.Interface()) {
		*changed = append(*changed, strings.TrimSuffix(prefix, "."))
	}
}

// NoteConfig compares next, the gateway config file as re-read (on
// SIGHUP), with the config running. The gateway applies its settings only
// at start (the policy, and the CA and TLS files on their
// reload_interval, reload on their own), so every changed setting waits
// for a restart: each is named by its key in one warning, and the list is
// exposed until a restart or until the file matches the running config
// again, as credgate_config_restart_pending and in /readyz's detail
// (config.needs_restart). It returns the keys.
func (g *Gateway) NoteConfig(next *Config) []string {
	changed := ConfigChanges(g.cfg, next)
	prev := g.restartPending.Swap(&changed)
	g.metrics.restartPending.Set(float64(len(changed)))
	switch {
	case len(changed) > 0:
		g.log.Warn("gateway config settings changed that only a restart applies; the running values stay in force until credgate serve is restarted",
			slog.String("config", next.File()), slog.Any("needs_restart", changed))
	case prev != nil && len(*prev) > 0:
		g.log.Info("the gateway config file matches the running config again; no restart is pending",
			slog.String("config", next.File()))
	}
	return slices.Clone(changed)
}

// pendingRestart is what NoteConfig found last: the changed settings
// that wait for a restart (none: nil).
func (g *Gateway) pendingRestart() []string {
	if p := g.restartPending.Load(); p != nil && len(*p) > 0 {
		return *p
	}
	return nil
}
