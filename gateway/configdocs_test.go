package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/audit/otlpsink"
	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/internal/otlp"
	"github.com/credgate/credgate/providers"
)

// docsDefaultsConfig turns on every section whose defaults are applied
// only when it is in use (Redis, tracing, run tokens, each identity
// factor), so that each documented default has a value to compare with.
const docsDefaultsConfig = `policy: p.yaml
ca: {cert: c.pem, key: k.pem}
admin: {token_env: CREDGATE_DOCS_TOKEN}
cache:
  redis: {addrs: ["redis.test:6379"], encryption_keys: [{id: a, env: CREDGATE_DOCS_KEY}]}
run_tokens: {workloads: ["*"]}
tracing: {enabled: true, endpoint: "collector.test:4317"}
audit:
  otlp: {endpoint: "collector.test:4317"}
identity:
  mtls:
    bundles: [{file: bundle.pem}]
    workload_api: {socket: "unix:///run/spire/agent.sock"}
  jwt:
    issuers: [{issuer: "https://issuer.test", audiences: [credgate], jwks_url: "https://issuer.test/jwks"}]
  kubernetes: {audiences: [credgate]}
  posture: {file: posture.json}
`

// TestDocumentedDefaults is the differential test of docs/config.md
// against the code: every row of its key tables whose default is a
// literal (`24h`, `1024`, `match`, `""`) must be the value the loaded
// config has when the key is left out, after the defaults the gateway
// applies (Config.ApplyDefaults, the identity and run-token
// WithDefaults) and, for the keys a component defaults itself, that
// component's default (codeDefaults). A row whose default is words
// (off, none, required) is not compared.
func TestDocumentedDefaults(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "config.md"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig("c.yaml", []byte(docsDefaultsConfig))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Identity = cfg.Identity.WithDefaults()
	rt := cfg.RunTokens.WithDefaults()
	cfg.RunTokens = &rt

	var root yaml.Node
	if err := yaml.Unmarshal([]byte(docsDefaultsConfig), &root); err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	setKeys(root.Content[0], "", set)

	rows := docDefaultRows(t, string(doc))
	compared := 0
	for _, r := range rows {
		want, ok := literal(r.def)
		if !ok || set[r.key] {
			continue
		}
		compared++
		v, found := fieldAt(reflect.ValueOf(cfg).Elem(), r.key)
		if !found {
			t.Errorf("docs/config.md:%d: %s: no such key in the gateway config", r.line, r.key)
			continue
		}
		if v.IsValid() && v.Kind() == reflect.Pointer && !v.IsNil() {
			v = v.Elem() // a setting whose 0 is not its default
		}
		var got any
		if v.IsValid() && !v.IsZero() {
			got = v.Interface()
		} else if d, ok := codeDefaults[r.key]; ok {
			got = d
		} else if v.IsValid() {
			got = v.Interface()
		}
		if !docMatches(want, got) {
			t.Errorf("docs/config.md:%d: %s: the docs say the default is %s, the code's is %v", r.line, r.key, want, describe(got))
		}
	}
	// The table parser must keep up with the document.
	if compared < 80 {
		t.Errorf("compared %d documented defaults of %d rows; the table format changed?", compared, len(rows))
	}
	t.Logf("compared %d of %d rows", compared, len(rows))
}

// setKeys records the key paths set in n, a list's items as "[]".
func setKeys(n *yaml.Node, path string, set map[string]bool) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			set[p] = true
			setKeys(n.Content[i+1], p, set)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			setKeys(c, path+"[]", set)
		}
	}
}

// codeDefaults are the defaults a component applies to a zero setting
// itself (the leaf issuer, the credential cache, the audit writer), not
// ApplyDefaults: the constants the code uses, by key.
var codeDefaults = map[string]any{
	"ca.leaf_ttl":             mitm.DefaultLeafTTL,
	"ca.leaf_cache_size":      mitm.DefaultLeafCacheSize,
	"session_tickets.enabled": SessionTickets{}.On(),
	"cache.default_ttl":       providers.DefaultCacheTTL,
	"cache.max_ttl":           providers.DefaultCacheMaxTTL,
	"cache.refresh_ahead":     providers.DefaultCacheRefreshAhead,
	"cache.error_backoff":     providers.DefaultCacheErrorBackoff,
	"cache.fetch_timeout":     providers.DefaultCacheFetchTimeout,
	"audit.chain":             Audit{}.Chained(),
	"audit.checkpoint.lines":  audit.DefaultCheckpointLines,
	"audit.checkpoint.every":  audit.DefaultCheckpointInterval,
	"audit.buffer_bytes":      audit.DefaultBufferBytes,
	"audit.stall_timeout":     audit.DefaultStallTimeout,
	"audit.on_stall":          mustStall("").String(),
	"audit.otlp.protocol":     otlp.ProtocolGRPC, // the exporter's for ""
	"audit.otlp.service_name": otlpsink.DefaultServiceName,
}

func mustStall(s string) audit.StallPolicy {
	p, err := audit.ParseStallPolicy(s)
	if err != nil {
		panic(err)
	}
	return p
}

// docRow is one key of a docs/config.md table with its default cell.
type docRow struct {
	line     int
	key, def string
}

var (
	tableRowRE   = regexp.MustCompile("^\\| (`[^|]*`) \\| ([^|]*) \\|")
	backtickedRE = regexp.MustCompile("`([^`]*)`")
)

// docDefaultRows reads the key tables: a row names one or more keys
// ("`a`, `b`", "`a` / `b`", "`x.a`, `.b`" for x.b) and its default (one
// for all, or one per key, comma separated). Keys in the identity
// sections are relative to the section heading ("### identity.jwt").
func docDefaultRows(t *testing.T, doc string) []docRow {
	t.Helper()
	var rows []docRow
	section := ""
	for i, line := range strings.Split(doc, "\n") {
		if h, ok := strings.CutPrefix(line, "### "); ok {
			section = ""
			if strings.HasPrefix(h, "identity.") {
				section = strings.TrimSpace(h)
			}
			continue
		}
		m := tableRowRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var keys []string
		for _, k := range backtickedRE.FindAllStringSubmatch(m[1], -1) {
			key := k[1]
			switch {
			case strings.HasPrefix(key, ".") && len(keys) > 0:
				key = keys[0][:strings.LastIndexByte(keys[0], '.')] + key
			case section != "":
				key = section + "." + key
			}
			keys = append(keys, key)
		}
		defs := []string{strings.TrimSpace(m[2])}
		if parts := strings.Split(defs[0], ", "); len(keys) > 1 && len(parts) == len(keys) {
			defs = parts
		}
		for j, k := range keys {
			d := defs[0]
			if len(defs) == len(keys) {
				d = defs[j]
			}
			rows = append(rows, docRow{line: i + 1, key: k, def: d})
		}
	}
	return rows
}

// literal is the value a default cell states, when it starts with one in
// backticks ("`1h` (`10s` for `jwks_file`)" is 1h).
func literal(cell string) (string, bool) {
	if !strings.HasPrefix(cell, "`") {
		return "", false
	}
	m := backtickedRE.FindStringSubmatch(cell)
	if m == nil || strings.HasPrefix(m[1], "$") {
		return "", false
	}
	return m[1], true
}

// fieldAt is the field at a dotted key path ("identity.jwt.issuers[].clock_skew",
// "[]" the first item), following yaml tags, ",inline" structs and
// pointers (a nil pointer: the zero value of its type).
func fieldAt(v reflect.Value, path string) (reflect.Value, bool) {
	for _, k := range strings.Split(path, ".") {
		k, item := strings.CutSuffix(k, "[]")
		var ok bool
		if v, ok = structField(v, k); !ok {
			return v, false
		}
		if item {
			if v.Kind() != reflect.Slice || v.Len() == 0 {
				return v, false
			}
			v = v.Index(0)
		}
	}
	return v, true
}

func structField(v reflect.Value, name string) (reflect.Value, bool) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v = reflect.Zero(v.Type().Elem())
		} else {
			v = v.Elem()
		}
	}
	if v.Kind() != reflect.Struct {
		return v, false
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if strings.Contains(opts, "inline") {
			if fv, ok := structField(v.Field(i), name); ok {
				return fv, true
			}
			continue
		}
		if tag == name && f.IsExported() {
			return v.Field(i), true
		}
	}
	return v, false
}

// docMatches compares a documented default with a Go value of any of the
// kinds settings have.
func docMatches(doc string, got any) bool {
	switch g := got.(type) {
	case nil:
		return doc == "" || doc == `""` || doc == "0" || doc == "false"
	case Duration:
		return docMatches(doc, g.D())
	case time.Duration:
		d, err := time.ParseDuration(doc)
		return err == nil && d == g
	case int, int64, uint64, int32:
		n, err := strconv.ParseInt(doc, 10, 64)
		return err == nil && reflect.ValueOf(g).Convert(reflect.TypeFor[int64]()).Int() == n
	case float64:
		f, err := strconv.ParseFloat(doc, 64)
		return err == nil && f == g
	case *float64:
		return g != nil && docMatches(doc, *g)
	case bool:
		b, err := strconv.ParseBool(doc)
		return err == nil && b == g
	case *bool:
		return g == nil && doc == "false" || g != nil && docMatches(doc, *g)
	case string:
		return g == strings.Trim(doc, `"`) || doc == `""` && g == ""
	}
	return doc == describe(got)
}

func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "unset (no default)"
	case Duration:
		return v.D().String()
	case string:
		return strconv.Quote(v)
	}
	return fmt.Sprint(v)
}
