package policy

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"
	"gopkg.in/yaml.v3"
)

// Condition variables. A `when:` expression sees the verified workload,
// the request and the time; nothing else.
var conditionVars = []struct {
	name string
	typ  *cel.Type
}{
	{"workload.name", cel.StringType},
	{"workload.source", cel.StringType},
	{"workload.factors", cel.MapType(cel.StringType, cel.MapType(cel.StringType, cel.StringType))},
	{"workload.attributes", cel.MapType(cel.StringType, cel.StringType)},
	{"workload.posture", cel.MapType(cel.StringType, cel.DynType)},
	{"request.method", cel.StringType},
	{"request.scheme", cel.StringType},
	{"request.host", cel.StringType},
	{"request.port", cel.IntType},
	{"request.path", cel.StringType},
	{"request.headers", cel.MapType(cel.StringType, cel.StringType)},
	{"now", cel.TimestampType},
}

// conditionCostLimit bounds the work of one evaluation, so that a
// condition cannot make Decide slow (comprehensions over large maps).
const conditionCostLimit = 100_000

// hiddenHeaders are never visible to conditions: they carry credentials.
var hiddenHeaders = map[string]bool{"authorization": true, "proxy-authorization": true, "cookie": true}

// conditionEnv is the CEL environment every condition is compiled in. It
// is immutable once built.
var conditionEnv = sync.OnceValues(func() (*cel.Env, error) {
	opts := []cel.EnvOption{cel.CrossTypeNumericComparisons(true), cel.DefaultUTCTimeZone(true)}
	for _, v := range conditionVars {
		opts = append(opts, cel.Variable(v.name, v.typ))
	}
	return cel.NewEnv(opts...)
})

// condition is a compiled `when:` expression.
type condition struct {
	src string
	prg cel.Program
	// usesRequest is true when the expression reads request.*, and
	// usesHeaders when it reads request.headers.
	usesRequest, usesHeaders bool
}

// conditionIssue is one compile error, at a 1-based line and 0-based
// column of the expression.
type conditionIssue struct {
	line, col int
	msg       string
}

// compileCondition parses and type-checks src; it must be a boolean.
func compileCondition(src string) (*condition, []conditionIssue) {
	env, err := conditionEnv()
	if err != nil {
		return nil, []conditionIssue{{1, 0, "condition environment: " + err.Error()}}
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		var errs []conditionParseError
		for _, e := range iss.Errors() {
			errs = append(errs, conditionParseError{e.Location.Line(), e.Location.Column(), e.Message})
		}
		return nil, conditionIssues(src, errs)
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, []conditionIssue{{1, 0, fmt.Sprintf("%s is of type %s, but a condition must be true or false; hint: compare it (request.path == \"/v1/x\", request.path.startsWith(\"/v1/\")) or test a key (\"patched\" in workload.posture)", showCondition(src), t)}}
	}
	if out := literalTimeZones(ast.NativeRep()); len(out) > 0 {
		return nil, out
	}
	c := &condition{src: src}
	for _, ref := range ast.NativeRep().ReferenceMap() {
		if strings.HasPrefix(ref.Name, "request.") {
			c.usesRequest = true
		}
		if ref.Name == "request.headers" {
			c.usesHeaders = true
		}
	}
	prg, err := env.Program(ast, cel.CostLimit(conditionCostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, []conditionIssue{{1, 0, err.Error()}}
	}
	c.prg = prg
	return c, nil
}

// timeAccessors are the timestamp methods that take a time zone argument.
var timeAccessors = map[string]bool{
	overloads.TimeGetFullYear: true, overloads.TimeGetMonth: true, overloads.TimeGetDayOfYear: true,
	overloads.TimeGetDate: true, overloads.TimeGetDayOfMonth: true, overloads.TimeGetDayOfWeek: true,
	overloads.TimeGetHours: true, overloads.TimeGetMinutes: true, overloads.TimeGetSeconds: true,
	overloads.TimeGetMilliseconds: true,
}

// literalTimeZones checks the time zones a condition names as string
// literals (now.getHours("Europe/Berlin")) as CEL will read them at
// evaluation: an IANA name, or an offset ±HH:MM. A zone that does not
// load would fail every evaluation, refusing every request the rule
// covers (condition_error), so it is a load error instead.
func literalTimeZones(a *celast.AST) []conditionIssue {
	var out []conditionIssue
	celast.PreOrderVisit(a.Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() != celast.CallKind {
			return
		}
		call := e.AsCall()
		if !timeAccessors[call.FunctionName()] || !call.IsMemberFunction() || len(call.Args()) != 1 {
			return
		}
		arg := call.Args()[0]
		if arg.Kind() != celast.LiteralKind {
			return
		}
		tz, ok := arg.AsLiteral().(types.String)
		if !ok {
			return
		}
		if err := checkTimeZone(string(tz)); err != nil {
			loc := a.SourceInfo().GetStartLocation(arg.ID())
			out = append(out, conditionIssue{loc.Line(), loc.Column(), err.Error()})
		}
	}))
	return out
}

// checkTimeZone reads tz as CEL's timestamp accessors do. "Local" loads
// but is refused: it is the gateway host's zone (its TZ variable,
// /etc/localtime), so one condition would decide differently on
// replicas set up differently, and in the container image, where it is
// UTC, differently from the operator's laptop.
func checkTimeZone(tz string) error {
	if tz == "Local" {
		return fmt.Errorf("time zone %q is the gateway host's own, which differs between hosts and is UTC in the container image: name the zone (\"Europe/Berlin\", \"UTC\") or an offset (\"+01:00\")", tz)
	}
	h, m, offset := strings.Cut(tz, ":")
	if !offset {
		if _, err := time.LoadLocation(tz); err != nil {
			return fmt.Errorf("unknown time zone %q: use an IANA name such as \"Europe/Berlin\" or \"UTC\", or an offset such as \"+01:00\"", tz)
		}
		return nil
	}
	hr, herr := strconv.Atoi(h)
	mins, merr := strconv.Atoi(m)
	if herr != nil || merr != nil || hr < -23 || hr > 23 || mins < 0 || mins > 59 {
		return fmt.Errorf("bad time zone offset %q: use ±HH:MM, hours -23 to 23, minutes 00 to 59 (e.g. \"+01:00\"), or an IANA name such as \"Europe/Berlin\"", tz)
	}
	return nil
}

func conditionNames() string {
	names := make([]string, len(conditionVars))
	for i, v := range conditionVars {
		names[i] = v.name
	}
	return strings.Join(names, ", ")
}

// errNotBool is returned by eval when a dyn expression yields a non-bool.
var errNotBool = errors.New("the condition did not evaluate to true or false")

// eval evaluates the condition for vars.
func (c *condition) eval(vars *conditionVarsFor) (bool, error) {
	out, _, err := c.prg.Eval(vars)
	if err != nil {
		msg := err.Error()
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		return false, errors.New(msg)
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, errNotBool
	}
	return bool(b), nil
}

// conditionVarsFor is the activation of one decision. Values are built
// when an expression first reads them, so a decision whose rules have no
// condition pays nothing.
type conditionVarsFor struct {
	q   *Query
	now time.Time

	factors map[string]map[string]string
	attrs   map[string]string
	headers map[string]string
	// repeated are the headers sent in more than one field line
	// (conditionHeaders); reading one is an error (repeatedHeaderMap).
	repeated map[string]int
}

func newConditionVars(q *Query) *conditionVarsFor {
	now := q.Now
	if now.IsZero() {
		now = time.Now()
	}
	return &conditionVarsFor{q: q, now: now}
}

// ResolveName implements interpreter.Activation.
func (v *conditionVarsFor) ResolveName(name string) (any, bool) {
	w := &v.q.Workload
	switch name {
	case "workload.name":
		return w.Name, true
	case "workload.source":
		if !w.Source.IsValid() {
			return "", true
		}
		return w.Source.String(), true
	case "workload.factors":
		if v.factors == nil {
			v.factors = make(map[string]map[string]string, len(w.Factors))
			for _, f := range w.Factors {
				m := make(map[string]string, len(f.Attributes)+1)
				for k, a := range f.Attributes {
					m[k] = a
				}
				m["subject"] = f.Subject
				v.factors[f.Kind] = m
			}
		}
		return v.factors, true
	case "workload.attributes":
		if v.attrs == nil {
			v.attrs = w.Attributes()
		}
		return v.attrs, true
	case "workload.posture":
		if w.Posture == nil {
			return map[string]any{}, true
		}
		return w.Posture, true
	case "request.method":
		return v.q.Method, true
	case "request.scheme":
		if v.q.Scheme == "" && !v.q.Connect {
			return "https", true
		}
		return v.q.Scheme, true
	case "request.host":
		return v.q.Host, true
	case "request.port":
		return int64(v.q.Port), true
	case "request.path":
		return v.q.Path, true
	case "request.headers":
		if v.headers == nil {
			v.headers, v.repeated = conditionHeaders(v.q.Header)
		}
		if v.repeated != nil {
			return repeatedHeaderMap{Mapper: types.DefaultTypeAdapter.NativeToValue(v.headers).(traits.Mapper), repeated: v.repeated}, true
		}
		return v.headers, true
	case "now":
		return v.now, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (v *conditionVarsFor) Parent() interpreter.Activation { return nil }

// conditionHeaders lower-cases header names and joins repeated values
// with ", ", leaving out headers that carry credentials. repeated are the
// fields sent in more than one field line (keys that differ only in case
// are one field), with their number of lines; nil when none is.
func conditionHeaders(h http.Header) (out map[string]string, repeated map[string]int) {
	out = make(map[string]string, len(h))
	for k, vs := range h {
		lk := strings.ToLower(k)
		if hiddenHeaders[lk] || len(vs) == 0 {
			continue
		}
		n := len(vs)
		if prev, ok := out[lk]; ok {
			// Another spelling of the same name (a header map not in
			// canonical form).
			out[lk] = prev + ", " + strings.Join(vs, ", ")
			n += repeated[lk]
			if n == len(vs) {
				n++ // the earlier spelling's line(s): at least one
			}
		} else {
			out[lk] = strings.Join(vs, ", ")
		}
		if n > 1 {
			if repeated == nil {
				repeated = make(map[string]int)
			}
			repeated[lk] = n
		}
	}
	return out, repeated
}

// repeatedHeaderMap is request.headers when the request repeats a field:
// reading a repeated field (index, select, has(), in, or a macro's
// value) is an evaluation error, so the rule refuses the request as
// condition_error. Its joined value is not what every upstream reads:
// with "X-Act-As: bob" and "X-Act-As: admin" a condition sees
// "bob, admin", which does not start with "admin", and an upstream that
// takes the last field acts as admin. A condition that does not read the
// repeated field decides as before.
type repeatedHeaderMap struct {
	traits.Mapper
	repeated map[string]int
}

// refuse is the error for key when it names a repeated field, else nil.
func (m repeatedHeaderMap) refuse(key ref.Val) ref.Val {
	k, ok := key.(types.String)
	if !ok {
		return nil
	}
	if n := m.repeated[string(k)]; n > 1 {
		return types.NewErr("request header %q is sent in %d field lines, and a condition does not judge a repeated field (upstreams differ in which one they read); send it once", string(k), n)
	}
	return nil
}

// Find implements traits.Mapper.
func (m repeatedHeaderMap) Find(key ref.Val) (ref.Val, bool) {
	if err := m.refuse(key); err != nil {
		return err, false
	}
	return m.Mapper.Find(key)
}

// Get implements traits.Indexer.
func (m repeatedHeaderMap) Get(key ref.Val) ref.Val {
	if err := m.refuse(key); err != nil {
		return err
	}
	return m.Mapper.Get(key)
}

// Contains implements traits.Container.
func (m repeatedHeaderMap) Contains(key ref.Val) ref.Val {
	if err := m.refuse(key); err != nil {
		return err
	}
	return m.Mapper.Contains(key)
}

// conditionPosition maps a position inside a `when:` expression to the
// file: exact for single-line plain and quoted scalars and for literal
// blocks (|), the scalar's start otherwise.
func (ps *parser) conditionPosition(n *yaml.Node, src string, line, col int) (int, int) {
	switch {
	case n.Style == yaml.LiteralStyle:
		// The block's content starts on the line after the indicator, at
		// the indentation of its first line; deeper indentation is part
		// of the expression.
		lines := ps.lines()
		if first := n.Line; first < len(lines) && n.Line+line-1 < len(lines) {
			text := lines[first]
			indent := len(text) - len(strings.TrimLeft(text, " "))
			return n.Line + line, indent + col + 1
		}
	case strings.Contains(src, "\n"):
	case n.Style == 0:
		return n.Line, n.Column + col
	case n.Style == yaml.SingleQuotedStyle && !strings.Contains(src, "'"),
		n.Style == yaml.DoubleQuotedStyle && !strings.ContainsAny(src, "\"\\"):
		return n.Line, n.Column + 1 + col
	}
	return n.Line, n.Column
}

// lines returns the policy source split into lines, computed once.
func (ps *parser) lines() []string {
	if ps.srcLines == nil {
		ps.srcLines = strings.Split(string(ps.src), "\n")
	}
	return ps.srcLines
}

var _ interpreter.Activation = (*conditionVarsFor)(nil)
