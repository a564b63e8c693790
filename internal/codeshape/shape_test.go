package codeshape

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// maxLines is the longest a function may be, counted from the line of its
// func keyword to the line of its closing brace.
const maxLines = 150

// allowlist names the functions that are still over maxLines, as
// "package-relative-dir.Receiver.Name" (see funcName). Each entry is a debt:
// split the function and delete the entry. Entries whose function is short
// enough make the test fail, so the list can only shrink.
var allowlist = map[string]bool{}

type funcLen struct {
	name  string // dir.Recv.Name
	pos   string // file:line
	lines int
}

// moduleRoot walks up from the test's directory to the directory holding
// go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// funcName gives a function a name that is unique enough across the module:
// its directory relative to the module root, its receiver type (if any) and
// its name.
func funcName(dir string, fd *ast.FuncDecl) string {
	name := fd.Name.Name
	if fd.Recv != nil && len(fd.Recv.List) == 1 {
		name = recvType(fd.Recv.List[0].Type) + "." + name
	}
	return filepath.ToSlash(dir) + "." + name
}

func recvType(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.StarExpr:
		return recvType(x.X)
	case *ast.IndexExpr: // generic receiver T[P]
		return recvType(x.X)
	case *ast.IndexListExpr:
		return recvType(x.X)
	case *ast.Ident:
		return x.Name
	}
	return "?"
}

// measure returns the length of every function declaration with a body in
// the module's non-test Go files.
func measure(t *testing.T) []funcLen {
	t.Helper()
	root := moduleRoot(t)
	fset := token.NewFileSet()
	var out []funcLen
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			start := fset.Position(fd.Pos())
			end := fset.Position(fd.End())
			relFile, _ := filepath.Rel(root, path)
			out = append(out, funcLen{
				name:  funcName(rel, fd),
				pos:   filepath.ToSlash(relFile) + ":" + itoa(start.Line),
				lines: end.Line - start.Line + 1,
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].lines != out[j].lines {
			return out[i].lines > out[j].lines
		}
		return out[i].name < out[j].name
	})
	return out
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(b[i:])
}

func TestFunctionLength(t *testing.T) {
	funcs := measure(t)
	for i, f := range funcs {
		if i == 10 {
			break
		}
		t.Logf("%4d  %s  (%s)", f.lines, f.name, f.pos)
	}
	seen := map[string]bool{}
	for _, f := range funcs {
		if f.lines <= maxLines {
			continue
		}
		seen[f.name] = true
		if !allowlist[f.name] {
			t.Errorf("%s (%s) is %d lines, over the limit of %d: split it", f.name, f.pos, f.lines, maxLines)
		}
	}
	for name := range allowlist {
		if !seen[name] {
			t.Errorf("allowlist entry %s is no longer over %d lines (or gone): delete it", name, maxLines)
		}
	}
}

// maxMethods is the most methods a type may declare. A type past it has become the
// place where everything goes (proxy's session had 159 before it was split into the
// protocol, transaction and executor layers): give the new concern a type of its own.
const maxMethods = 80

// TestMethodsPerType fails for a type that declares more than maxMethods methods, and
// reports (with -v) the five types with the most.
func TestMethodsPerType(t *testing.T) {
	counts := map[string]int{}
	for _, f := range measure(t) {
		// name is dir.Recv.Name for methods: strip the directory, keep Recv.
		dir, rest := splitDir(f.name)
		if i := strings.IndexByte(rest, '.'); i >= 0 {
			counts[dir+"."+rest[:i]]++
		}
	}
	types := make([]string, 0, len(counts))
	for k := range counts {
		types = append(types, k)
	}
	sort.Slice(types, func(i, j int) bool {
		if counts[types[i]] != counts[types[j]] {
			return counts[types[i]] > counts[types[j]]
		}
		return types[i] < types[j]
	})
	for i, k := range types {
		if i < 5 {
			t.Logf("%4d methods  %s", counts[k], k)
		}
		if counts[k] > maxMethods {
			t.Errorf("%s declares %d methods, over the limit of %d: give a concern its own type", k, counts[k], maxMethods)
		}
	}
}

// splitDir splits "a/b.Recv.Name" into "a/b" and "Recv.Name".
func splitDir(name string) (dir, rest string) {
	slash := strings.LastIndexByte(name, '/')
	dot := strings.IndexByte(name[slash+1:], '.')
	return name[:slash+1+dot], name[slash+1+dot+1:]
}
