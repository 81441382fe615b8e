package freeport

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNoPickAndRelease keeps the racy pattern this package replaces out
// of the module: a listener on port 0 used only to read its address and
// then closed (the port is free for anything before the peer binds it).
// A listener counts as picked and released when it is only ever asked
// for its Addr and closed, and either the Close is not deferred or the
// function returns a result (the port) after a deferred Close. A
// listener held for the whole test (a deferred Close in a test that
// returns nothing, or a Close in a function literal such as a
// t.Cleanup) is not flagged.
func TestNoPickAndRelease(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	var bad []string
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || filepath.Dir(path) == filepath.Join(root, "internal", "freeport") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			for _, pos := range pickAndRelease(fn) {
				rel, _ := filepath.Rel(root, fset.Position(pos).Filename)
				bad = append(bad, rel+":"+strconv.Itoa(fset.Position(pos).Line)+" ("+fn.Name.Name+")")
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Errorf("%s: a port-0 listener is read for its address and closed; a peer that binds that port later races the kernel handing it out again: use freeport.Port (or keep the listener and hand it over)", b)
	}
}

// pickAndRelease returns the positions of the port-0 listeners in fn
// that are picked and released.
func pickAndRelease(fn *ast.FuncDecl) []token.Pos {
	returnsValue := fn.Type.Results != nil && len(fn.Type.Results.List) > 0
	type use struct {
		pos                         token.Pos
		other, closeNow, closeDefer bool
	}
	listeners := map[string]*use{} // by name: a shadowing listener in one function is rare enough
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		as, ok := n.(*ast.AssignStmt)
		if !ok || len(as.Rhs) != 1 || len(as.Lhs) == 0 {
			return true
		}
		call, ok := as.Rhs[0].(*ast.CallExpr)
		if !ok || !isPortZeroListen(call) {
			return true
		}
		if id, ok := as.Lhs[0].(*ast.Ident); ok && id.Name != "_" {
			listeners[id.Name] = &use{pos: call.Pos()}
		}
		return true
	})
	if len(listeners) == 0 {
		return nil
	}
	var walk func(n ast.Node, deferred bool)
	walk = func(n ast.Node, deferred bool) {
		ast.Inspect(n, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.DeferStmt:
				walk(n.Call, true)
				return false
			case *ast.FuncLit:
				walk(n.Body, true) // runs later: a cleanup, a goroutine
				return false
			case *ast.SelectorExpr:
				id, ok := n.X.(*ast.Ident)
				if !ok || listeners[id.Name] == nil {
					return true
				}
				u := listeners[id.Name]
				switch n.Sel.Name {
				case "Addr":
				case "Close":
					if deferred {
						u.closeDefer = true
					} else {
						u.closeNow = true
					}
				default:
					u.other = true
				}
				return false
			case *ast.Ident:
				if u := listeners[n.Name]; u != nil {
					u.other = true // passed on or assigned: someone else uses it
				}
			case *ast.AssignStmt:
				// The assignment that created the listener is not a use.
				if len(n.Rhs) == 1 {
					if call, ok := n.Rhs[0].(*ast.CallExpr); ok && isPortZeroListen(call) {
						walk(n.Rhs[0], deferred)
						for _, l := range n.Lhs[1:] {
							walk(l, deferred)
						}
						return false
					}
				}
			}
			return true
		})
	}
	walk(fn.Body, false)
	var out []token.Pos
	for _, u := range listeners {
		if u.other {
			continue
		}
		if u.closeNow || (u.closeDefer && returnsValue) {
			out = append(out, u.pos)
		}
	}
	return out
}

// isPortZeroListen reports whether call is net.Listen("tcp…", "HOST:0").
func isPortZeroListen(call *ast.CallExpr) bool {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Listen" || len(call.Args) != 2 {
		return false
	}
	if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "net" {
		return false
	}
	lit, ok := call.Args[1].(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return false
	}
	addr, err := strconv.Unquote(lit.Value)
	return err == nil && strings.HasSuffix(addr, ":0")
}
