package helm_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/gateway"
)

// monitoringValues render the Grafana dashboard and the PrometheusRule.
const monitoringValues = `
metrics:
  serviceMonitor:
    enabled: true
  grafanaDashboard:
    enabled: true
    namespace: monitoring
    labels: {team: platform}
    annotations: {grafana_folder: Egress}
  prometheusRule:
    enabled: true
    labels: {release: prometheus}
    additionalAlertLabels: {team: platform}
`

// alertRule is one rule of the rendered PrometheusRule.
type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// renderedRules returns the spec of the PrometheusRule the monitoring
// variant renders, as YAML, and its rules.
func renderedRules(t *testing.T) ([]byte, []alertRule) {
	t.Helper()
	objs := parse(t, render(t, variantByName(t, "monitoring")))
	spec, err := yaml.Marshal(get(mustFind(t, objs, "PrometheusRule", fullname), "spec"))
	if err != nil {
		t.Fatal(err)
	}
	var groups struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(spec, &groups); err != nil {
		t.Fatal(err)
	}
	var rules []alertRule
	for _, g := range groups.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatal("the PrometheusRule has no rules")
	}
	return spec, rules
}

// grafanaDashboard is the part of a dashboard's JSON the tests read.
type grafanaDashboard struct {
	UID    string `json:"uid"`
	Panels []struct {
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// renderedDashboard returns the dashboard the monitoring variant ships.
func renderedDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	objs := parse(t, render(t, variantByName(t, "monitoring")))
	cm := mustFind(t, objs, "ConfigMap", fullname+"-dashboard")
	raw, _ := get(cm, "data.[credgate.json]").(string)
	var d grafanaDashboard
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	return d
}

// dashboardQueries returns the PromQL of every panel target and query
// variable, with Grafana's variables replaced by values PromQL parses.
func dashboardQueries(t *testing.T, d grafanaDashboard) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for i, tg := range p.Targets {
			out[fmt.Sprintf("panel %q target %d", p.Title, i)] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		m := labelValues.FindStringSubmatch(s)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(SELECTOR, LABEL)", v.Name, s)
			continue
		}
		out["variable "+v.Name] = m[1]
	}
	for k, e := range out {
		out[k] = grafanaVars.Replace(e)
	}
	return out
}

var (
	labelValues = regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)
	// grafanaVars are the variables the dashboard's queries use.
	grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$namespace", "egress", "$pod", ".*")
)

// unknownMetrics parses each PromQL expression and returns, per
// expression, the metric names it selects that the gateway does not
// export (histogram series are their family's name plus _bucket, _sum or
// _count), and any expression that does not parse.
func unknownMetrics(exprs map[string]string, exported []string) []string {
	known := func(name string) bool {
		if slices.Contains(exported, name) {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && slices.Contains(exported, base) {
				return true
			}
		}
		return false
	}
	var bad []string
	for where, e := range exprs {
		expr, err := parser.ParseExpr(e)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		selectors := 0
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			selectors++
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" {
					name = m.Value
				}
			}
			if !known(name) {
				bad = append(bad, fmt.Sprintf("%s: %s is not a metric the gateway exports", where, name))
			}
			return nil
		})
		if selectors == 0 {
			bad = append(bad, fmt.Sprintf("%s: selects no metric", where))
		}
	}
	slices.Sort(bad)
	return bad
}

// TestMonitoringQueriesUseExportedMetrics checks every query of the
// dashboard and every alert expression against the metric families the
// gateway registers (gateway.MetricNames, every optional part enabled):
// each parses as PromQL and selects only metrics that exist.
func TestMonitoringQueriesUseExportedMetrics(t *testing.T) {
	exported := gateway.MetricNames()
	queries := dashboardQueries(t, renderedDashboard(t))
	_, rules := renderedRules(t)
	for _, r := range rules {
		queries["alert "+r.Alert] = r.Expr
	}
	for _, bad := range unknownMetrics(queries, exported) {
		t.Error(bad)
	}
	// The check means something: a misspelt metric and bad PromQL fail it.
	if bad := unknownMetrics(map[string]string{
		"misspelt": `sum(rate(credgate_request_total[5m]))`,
		"syntax":   `sum(rate(credgate_requests_total[5m])`,
	}, exported); len(bad) != 2 {
		t.Errorf("unknownMetrics accepted a misspelt metric or bad PromQL: %q", bad)
	}
	t.Logf("%d queries checked against %d exported metric families", len(queries), len(exported))
}

// TestDashboardCoversTheGateway checks the dashboard has a query on each
// area operators watch (issue 18): requests, refusals by reason,
// credential fetches and errors, cache hit ratio, kill switches, rate
// limiting, SVID expiry, audit sink health, long-lived connections.
func TestDashboardCoversTheGateway(t *testing.T) {
	d := renderedDashboard(t)
	if d.UID == "" {
		t.Error("the dashboard has no uid (Grafana would make a new one on each load)")
	}
	var all strings.Builder
	for _, e := range dashboardQueries(t, d) {
		all.WriteString(e + "\n")
	}
	for _, want := range []string{
		"credgate_requests_total", "credgate_refusals_total", "credgate_provider_fetch_duration_seconds_count",
		"credgate_provider_errors_total", `credgate_credential_cache_total{namespace="egress", pod=~".*", result="hit"}`,
		"credgate_switches_disabled", "credgate_switch_refusals_total", "credgate_rate_limited_total",
		"credgate_svid_expiry_timestamp_seconds", "credgate_audit_stalled", "credgate_audit_dropped_total",
		"credgate_long_lived_connections", "credgate_redis_up",
	} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("no dashboard query uses %s", want)
		}
	}
}

// unwatched names the metric families the gateway exports that neither
// the dashboard nor an alert uses, each with why: an operator reads them
// when investigating, not on the overview.
var unwatched = map[string]string{
	"credgate_leaf_certificates_signed_total":          "read when investigating leaf cache churn, beside credgate_leaf_certificates",
	"credgate_upstream_http2_connections":              "read when investigating descriptors held to upstreams; bounded by upstream.max_idle_conns",
	"credgate_upstream_http2_connections_closed_total": "read when investigating upstream connection churn (many HTTP/2 upstream names, upstream.max_idle_conns too low)",
}

// TestEveryMetricWatched: every credgate_ metric family the gateway
// exports (gateway.MetricNames, every optional part enabled) is used by a
// dashboard query or an alert, or is in unwatched with a reason — so a
// metric added to the gateway is not left off the dashboard by default.
// An entry of unwatched that the dashboard or the alerts use, or that is
// not exported, is an error too.
func TestEveryMetricWatched(t *testing.T) {
	queries := dashboardQueries(t, renderedDashboard(t))
	_, rules := renderedRules(t)
	for _, r := range rules {
		queries["alert "+r.Alert] = r.Expr
	}
	used := map[string]bool{}
	for where, q := range queries {
		expr, err := parser.ParseExpr(q)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				name := vs.Name
				for _, m := range vs.LabelMatchers {
					if m.Name == "__name__" {
						name = m.Value
					}
				}
				used[name] = true
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					used[strings.TrimSuffix(name, suffix)] = true
				}
			}
			return nil
		})
	}
	exported := gateway.MetricNames()
	for _, name := range exported {
		if !strings.HasPrefix(name, "credgate_") {
			// The Go runtime's and the process collector's standard
			// families (go_*, process_*): the Process panel shows the few
			// an operator watches; the rest are for investigation.
			continue
		}
		why, listed := unwatched[name]
		switch {
		case used[name] && listed:
			t.Errorf("%s is used by the dashboard or an alert but listed as unwatched (%s)", name, why)
		case !used[name] && !listed:
			t.Errorf("%s: no dashboard query or alert uses it; add a panel or an alert, or list it in unwatched with the reason", name)
		}
	}
	for name := range unwatched {
		if !slices.Contains(exported, name) {
			t.Errorf("unwatched lists %s, which the gateway does not export", name)
		}
	}
}

// TestAlertsExplainThemselves checks that each alert has a severity, a
// summary, a description of what to check, and a runbook_url pointing at
// its own section of docs/audit-and-metrics.md; and the alerts issue 18
// asks for exist.
func TestAlertsExplainThemselves(t *testing.T) {
	_, rules := renderedRules(t)
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "audit-and-metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rules {
		names = append(names, r.Alert)
		if r.Labels["severity"] == "" || r.Labels["team"] != "platform" {
			t.Errorf("%s: labels %v, want a severity and the additionalAlertLabels", r.Alert, r.Labels)
		}
		if len(r.Annotations["summary"]) < 20 || len(r.Annotations["description"]) < 80 {
			t.Errorf("%s: summary or description missing or too short to say what to check: %v", r.Alert, r.Annotations)
		}
		want := "https://github.com/credgate/credgate/blob/main/docs/audit-and-metrics.md#" + strings.ToLower(r.Alert)
		if got := r.Annotations["runbook_url"]; got != want {
			t.Errorf("%s: runbook_url %q, want %q", r.Alert, got, want)
		}
		if !strings.Contains(string(doc), "\n### "+r.Alert+"\n") {
			t.Errorf("%s: docs/audit-and-metrics.md has no section \"### %s\" for its runbook_url", r.Alert, r.Alert)
		}
		if !strings.Contains(r.Expr, `namespace="egress"`) {
			t.Errorf("%s: expression does not select the release's namespace: %s", r.Alert, r.Expr)
		}
	}
	for _, want := range []string{
		"CredgateCredentialFetchFailing", "CredgateSVIDNearExpiry", "CredgateRefusalSpike",
		"CredgateAuditSinkStalled", "CredgateRedisDown", "CredgateKillSwitchUnverified",
		"CredgatePolicyRejected", "CredgateInterceptionCANearExpiry",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("no alert %s; have %v", want, names)
		}
	}
}

// TestPrometheusRuleSelector checks that metrics.prometheusRule.selector
// replaces the default namespace matcher in every expression.
func TestPrometheusRuleSelector(t *testing.T) {
	out := run(t, helmBin, templateArgs("--set", "metrics.prometheusRule.enabled=true",
		"--set", `metrics.prometheusRule.selector=job="credgate"`, "--show-only", "templates/prometheusrule.yaml")...)
	if strings.Contains(string(out), `namespace="egress"`) || !strings.Contains(string(out), `credgate_redis_up{job="credgate"}`) {
		t.Errorf("the selector did not replace the namespace matcher:\n%s", out)
	}
}

// TestPromtoolCheckRules runs `promtool check rules` (Prometheus's own
// checker: syntax, templates of annotations, durations) on the rendered
// PrometheusRule's groups. promtool is built by scripts/promtool.sh (make
// tools); it takes minutes, so this test skips when it is missing.
func TestPromtoolCheckRules(t *testing.T) {
	promtool := filepath.Join(filepath.Dir(helmBin), "promtool")
	if !exists(promtool) {
		t.Skipf("%s missing: run bash scripts/promtool.sh (make tools) to check the alerts with promtool", promtool)
	}
	spec, _ := renderedRules(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "credgate.rules.yaml")
	if err := os.WriteFile(good, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", good).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	t.Logf("promtool: %s", strings.TrimSpace(string(out)))
	// And promtool does reject a bad rule.
	bad := filepath.Join(dir, "bad.rules.yaml")
	if err := os.WriteFile(bad, []byte("groups:\n- name: x\n  rules:\n  - alert: X\n    expr: sum(rate(x[5m])\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var exit *exec.ExitError
	if out, err := exec.Command(promtool, "check", "rules", bad).CombinedOutput(); !errors.As(err, &exit) {
		t.Errorf("promtool check rules accepted a bad rule (err %v):\n%s", err, out)
	}
}
