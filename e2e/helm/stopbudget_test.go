package helm_test

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// stopStep is one bounded wait of the gateway's stop, after SIGTERM: a
// timer or deadline the stop path of gateway/ starts (the call and its
// duration argument, as spelled in the source).
type stopStep struct {
	fn   string // the function, "Recv.Name"
	call string // the call that starts the wait, e.g. "time.AfterFunc"
	arg  string // its duration argument, as in the source
	// d is what the wait adds to the stop, beyond the drain: 0 for the
	// drain itself (shutdown_timeout, budgeted apart) and for a wait that
	// runs alongside a longer one.
	d time.Duration
	// when, if set, is the rendered config key that turns the wait on.
	when string
}

// gatewayStopSteps are the waits of the gateway's stop as the chart's
// credgate.stopBudget counts them. TestStopStepsMatchGateway fails when
// the gateway's source has a wait in its stop path this table lacks (or
// lacks one it has), so that a longer close cannot slip past the grace
// period the chart computes.
var gatewayStopSteps = []stopStep{
	// The drain itself: shutdown_timeout.
	{fn: "Gateway.shutdown", call: "context.WithTimeout", arg: "timeout"},
	// Requests cut at the end of the drain write their answer and audit line.
	{fn: "Gateway.shutdown", call: "time.AfterFunc", arg: "shutdownAnswerGrace", d: time.Second},
	// Tunnels and WebSockets cut then write their audit lines.
	{fn: "Gateway.shutdown", call: "context.WithTimeout", arg: "time.Second", d: time.Second},
	// The last spans are exported (config.tracing).
	{fn: "Gateway.Close", call: "context.WithTimeout", arg: "5*time.Second", d: 5 * time.Second, when: "tracing.enabled"},
	// The OTLP audit receiver is given up on, while the output is waited for.
	{fn: "auditor.Close", call: "time.AfterFunc", arg: "otlpShutdownGrace"},
	// The audit output takes the last lines and the final checkpoint.
	{fn: "auditor.Close", call: "time.NewTimer", arg: "outputCloseGrace", d: 10 * time.Second},
}

// gatewayStopConsts are the named durations gatewayStopSteps use, with
// the values the table assumes.
var gatewayStopConsts = map[string]time.Duration{
	"shutdownAnswerGrace": time.Second,
	"otlpShutdownGrace":   5 * time.Second,
	"outputCloseGrace":    10 * time.Second,
}

// stopClose is a call of the gateway's stop path whose wait is bounded in
// another package: by const bound, declared in file.
type stopClose struct {
	fn    string // the function of gateway/ that calls it, "Recv.Name"
	call  string // the call, as in the source
	bound string // the const that bounds it, "pkg.Name"
	file  string // the file of the repository declaring bound
	// users are the files of the repository whose code the call runs
	// that must bound it by the const (each names it).
	users []string
	d     time.Duration // what the chart counts for it
}

// gatewayStopCloses are the waits of the stop bounded outside gateway/,
// which the chart's credgate.stopBudget counts too.
var gatewayStopCloses = []stopClose{
	// The policy's providers' Cleanup (Vault's revoke_on_cleanup revokes
	// leases and its token): Store.Close releases every open policy
	// together, each Cleanup abandoned (and logged) at the bound.
	{fn: "Gateway.Close", call: "g.store.Close", bound: "module.CleanupTimeout", file: "internal/module/module.go",
		users: []string{"policy/policy.go"}, d: 5 * time.Second},
}

// stopWaitCalls are the calls that start a bounded wait.
var stopWaitCalls = []string{"context.WithTimeout", "context.WithDeadline", "time.AfterFunc", "time.NewTimer", "time.After", "time.Sleep"}

// TestStopStepsMatchGateway reads the stop path of gateway/ (Gateway.shutdown,
// Gateway.Close, auditor.Close) and checks that its waits and their
// durations are those gatewayStopSteps and gatewayStopConsts list, and
// that the waits bounded elsewhere (gatewayStopCloses: the policy's
// providers' cleanup) are still called and bounded by the const the
// table counts, read from its package's source; TestTimeBudgets holds
// terminationGracePeriodSeconds to their sum.
func TestStopStepsMatchGateway(t *testing.T) {
	fset := token.NewFileSet()
	var got []stopStep
	consts := map[string]string{}
	closeCalls := map[string][]string{} // every call of each stop function
	for _, file := range []string{"gateway.go", "audit.go"} {
		f, err := parser.ParseFile(fset, filepath.Join(repoRoot, "gateway", file), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.GenDecl:
				for _, s := range d.Specs {
					vs, ok := s.(*ast.ValueSpec)
					if !ok || d.Tok != token.CONST {
						continue
					}
					for i, n := range vs.Names {
						if _, want := gatewayStopConsts[n.Name]; want && i < len(vs.Values) {
							consts[n.Name] = exprString(t, fset, vs.Values[i])
						}
					}
				}
			case *ast.FuncDecl:
				if d.Recv == nil || len(d.Recv.List) != 1 {
					continue
				}
				fn := recvName(d.Recv.List[0].Type) + "." + d.Name.Name
				if !slices.Contains([]string{"Gateway.shutdown", "Gateway.Close", "auditor.Close"}, fn) {
					continue
				}
				ast.Inspect(d.Body, func(n ast.Node) bool {
					call, ok := n.(*ast.CallExpr)
					if !ok {
						return true
					}
					name := exprString(t, fset, call.Fun)
					closeCalls[fn] = append(closeCalls[fn], name)
					if !slices.Contains(stopWaitCalls, name) || len(call.Args) == 0 {
						return true
					}
					arg := call.Args[0]
					if strings.HasPrefix(name, "context.") {
						arg = call.Args[1]
					}
					got = append(got, stopStep{fn: fn, call: name, arg: exprString(t, fset, arg)})
					return true
				})
			}
		}
	}
	key := func(s stopStep) string { return s.fn + " " + s.call + "(" + s.arg + ")" }
	var gotKeys, wantKeys []string
	for _, s := range got {
		gotKeys = append(gotKeys, key(s))
	}
	for _, s := range gatewayStopSteps {
		wantKeys = append(wantKeys, key(s))
	}
	slices.Sort(gotKeys)
	slices.Sort(wantKeys)
	if !slices.Equal(gotKeys, wantKeys) {
		t.Errorf("the gateway's stop path waits in\n  %s\nbut gatewayStopSteps (and the chart's credgate.stopBudget) count\n  %s\nadd the new wait to both, so terminationGracePeriodSeconds covers it",
			strings.Join(gotKeys, "\n  "), strings.Join(wantKeys, "\n  "))
	}
	for name, want := range gatewayStopConsts {
		src, ok := consts[name]
		if !ok {
			t.Errorf("const %s not found in gateway/", name)
			continue
		}
		d, ok := parseDurationExpr(src)
		if !ok {
			t.Errorf("const %s = %s: not a constant duration this test reads", name, src)
			continue
		}
		if d != want {
			t.Errorf("const %s = %s (%s), the chart's credgate.stopBudget counts %s", name, src, d, want)
		}
	}
	for _, c := range gatewayStopCloses {
		if !slices.Contains(closeCalls[c.fn], c.call) {
			t.Errorf("%s no longer calls %s: remove it from gatewayStopCloses and the chart's credgate.stopBudget", c.fn, c.call)
		}
		pkg, name, _ := strings.Cut(c.bound, ".")
		src, ok := constIn(t, filepath.Join(repoRoot, c.file), name)
		if !ok {
			t.Errorf("const %s not found in %s", c.bound, c.file)
			continue
		}
		if d, ok := parseDurationExpr(src); !ok || d != c.d {
			t.Errorf("const %s = %s in %s, the chart's credgate.stopBudget counts %s for %s", c.bound, src, c.file, c.d, c.call)
		}
		for _, u := range c.users {
			b, err := os.ReadFile(filepath.Join(repoRoot, u))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), pkg+"."+name) {
				t.Errorf("%s no longer bounds %s's wait by %s: read what bounds it now and count that in the chart", u, c.call, c.bound)
			}
		}
	}
	for _, s := range gatewayStopSteps {
		if s.d == 0 || gatewayStopConsts[s.arg] != 0 {
			continue
		}
		if d, ok := parseDurationExpr(s.arg); !ok || d != s.d {
			t.Errorf("%s: %s is %v, the table says %s", key(s), s.arg, d, s.d)
		}
	}
}

// constIn returns the source of the value of const name declared in
// file.
func constIn(t *testing.T, file, name string) (string, bool) {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, decl := range f.Decls {
		d, ok := decl.(*ast.GenDecl)
		if !ok || d.Tok != token.CONST {
			continue
		}
		for _, sp := range d.Specs {
			vs := sp.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if n.Name == name && i < len(vs.Values) {
					return exprString(t, fset, vs.Values[i]), true
				}
			}
		}
	}
	return "", false
}

// stopBudget is how long the gateway the rendered config describes may
// take to exit after SIGTERM: shutdown_timeout, then the waits of its
// close (gatewayStopSteps) that the config turns on.
func stopBudget(t *testing.T, cfg map[string]any) time.Duration {
	t.Helper()
	drain, err := time.ParseDuration(strings.TrimSpace(toString(cfg["shutdown_timeout"])))
	if err != nil {
		t.Fatalf("shutdown_timeout %v: %v", cfg["shutdown_timeout"], err)
	}
	total := drain
	for _, s := range gatewayStopSteps {
		if s.when != "" && get(cfg, s.when) != true {
			continue
		}
		total += s.d
	}
	for _, c := range gatewayStopCloses {
		total += c.d
	}
	return total
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

// recvName is the type name of a method receiver (*T or T).
func recvName(e ast.Expr) string {
	if s, ok := e.(*ast.StarExpr); ok {
		e = s.X
	}
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// exprString prints an expression in gofmt's compact form ("5*time.Second").
func exprString(t *testing.T, fset *token.FileSet, e ast.Expr) string {
	t.Helper()
	var b bytes.Buffer
	if err := printer.Fprint(&b, fset, e); err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(b.String(), " ", "")
}

// parseDurationExpr evaluates "time.Second", "N*time.Second" and
// "N*time.Millisecond".
func parseDurationExpr(s string) (time.Duration, bool) {
	units := map[string]time.Duration{"time.Millisecond": time.Millisecond, "time.Second": time.Second, "time.Minute": time.Minute}
	n, unit, ok := strings.Cut(s, "*")
	if !ok {
		n, unit = "1", s
	}
	u, ok := units[unit]
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(n + "s")
	if err != nil {
		return 0, false
	}
	return time.Duration(d.Seconds() * float64(u)), true
}
