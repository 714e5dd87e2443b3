package runstate

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestNoLiteralNames: the packages that drive a run name stages and
// statuses by this package's constants, never by string literals, so that
// a renamed or added stage is one edit here and the compiler finds the
// rest. Struct tags are not names, nor are a spec's top-level keys, which
// happen to be stage names: map keys, and the first argument of the calls
// listed in keyArgs. Tests are not checked: they pin the values on the
// wire.
func TestNoLiteralNames(t *testing.T) {
	names := map[string]bool{string(WaitingForApproval): true, string(Paused): true}
	for _, s := range Stages {
		names[string(s)] = true
	}
	for _, s := range slices.Concat(StageStatuses, RunStatuses) {
		names[string(s)] = true
	}
	keyArgs := map[string][]string{"../runspec": {"bad"}} // Validate's bad(key, err)
	for _, dir := range []string{"../workflows", "../activities", "../runspec"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("no Go files in %s", dir)
		}
		fset := token.NewFileSet()
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			skip := map[*ast.BasicLit]bool{}
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.Field:
					if n.Tag != nil {
						skip[n.Tag] = true
					}
				case *ast.CallExpr:
					if fn, ok := n.Fun.(*ast.Ident); ok && slices.Contains(keyArgs[dir], fn.Name) && len(n.Args) > 0 {
						if lit, ok := n.Args[0].(*ast.BasicLit); ok {
							skip[lit] = true
						}
					}
				case *ast.CompositeLit:
					if _, ok := n.Type.(*ast.MapType); ok {
						for _, e := range n.Elts {
							if kv, ok := e.(*ast.KeyValueExpr); ok {
								if lit, ok := kv.Key.(*ast.BasicLit); ok {
									skip[lit] = true
								}
							}
						}
					}
				case *ast.BasicLit:
					if n.Kind != token.STRING || skip[n] {
						return true
					}
					if v, err := strconv.Unquote(n.Value); err == nil && names[v] {
						t.Errorf("%s: literal %s: use the runstate constant", fset.Position(n.Pos()), n.Value)
					}
				}
				return true
			})
		}
	}
}
