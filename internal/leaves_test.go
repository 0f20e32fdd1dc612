package internal

import (
	"bufio"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// moving names the packages under internal/ that still import feature packages, each with the
// change that takes it out; it only excuses a package while the package is here.
var moving = map[string]string{}

// TestLeaves parses the import lines of every Go file under internal/ (tests included, whatever
// their build tags) and fails for any import of this module outside internal/.
func TestLeaves(t *testing.T) {
	module := modulePath(t, filepath.Join("..", "go.mod"))
	allowed := module + "/internal/"
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "testdata" || moving[filepath.ToSlash(p)] != "" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		for _, imp := range f.Imports {
			ip, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return err
			}
			if (ip == module || strings.HasPrefix(ip, module+"/")) && !strings.HasPrefix(ip, allowed) {
				t.Errorf("%s: internal/%s imports %s; internal/ holds leaf helpers only, so move the package beside its users",
					fset.Position(imp.Pos()), path.Dir(filepath.ToSlash(p)), ip)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 10 {
		t.Fatalf("read only %d Go files under internal/: is the test running in internal/?", files)
	}
}

// modulePath reads the module line of a go.mod file.
func modulePath(t *testing.T, gomod string) string {
	t.Helper()
	f, err := os.Open(gomod)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(m), `"`)
		}
	}
	t.Fatalf("%s has no module line", gomod)
	return ""
}
