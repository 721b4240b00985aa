package node

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/bytesize"
)

var update = flag.Bool("update", false, "rewrite README.md's configuration table from Settings")

// TestSettingsMatchConfig: each setting points at a field of Config whose
// yaml tag is its key, and every yaml key of Config is a setting, so the
// YAML decoder (which reads the tags) accepts exactly the table's keys.
func TestSettingsMatchConfig(t *testing.T) {
	var c Config
	cv := reflect.ValueOf(&c).Elem()
	covered := map[string]string{} // Go field → key
	keys, flags := map[string]bool{}, map[string]bool{}
	for _, s := range Settings() {
		if keys[s.Key] || flags[s.Flag] {
			t.Errorf("%s: key or flag --%s declared twice", s.Key, s.Flag)
		}
		keys[s.Key], flags[s.Flag] = true, true
		if s.Flag != strings.ReplaceAll(s.Key, "_", "-") {
			t.Errorf("%s: flag --%s, want the key with dashes", s.Key, s.Flag)
		}
		p := reflect.ValueOf(s.Field(&c))
		found := false
		for i := range cv.NumField() {
			f := cv.Field(i)
			if f.Addr().Pointer() != p.Pointer() || f.Addr().Type() != p.Type() {
				continue
			}
			found = true
			name := cv.Type().Field(i).Name
			if tag := cv.Type().Field(i).Tag.Get("yaml"); tag != s.Key {
				t.Errorf("%s: its field Config.%s has yaml tag %q", s.Key, name, tag)
			}
			if prev, ok := covered[name]; ok {
				t.Errorf("%s and %s both set Config.%s", prev, s.Key, name)
			}
			covered[name] = s.Key
		}
		if !found {
			t.Errorf("%s: Field does not point into the Config", s.Key)
		}
	}
	for i := range cv.NumField() {
		if f := cv.Type().Field(i); f.Tag.Get("yaml") != "" && covered[f.Name] == "" {
			t.Errorf("Config.%s (yaml %q) is in no setting: declare it in Settings", f.Name, f.Tag.Get("yaml"))
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig is invalid: %v", err)
	}
}

// TestSettingsHelpReferences: every {key} in a help text names a setting.
func TestSettingsHelpReferences(t *testing.T) {
	ref := regexp.MustCompile(`\{[a-z0-9_]+\}`)
	for _, s := range Settings() {
		for _, text := range []string{s.Help(), s.Default(), s.markdownRow()} {
			if r := ref.FindString(text); r != "" {
				t.Errorf("%s: %s is no setting, in %q", s.Key, r, text)
			}
		}
	}
}

// sample is a value of v's type other than v, for the setting key.
func sample(key string, v any) (value any, yaml string) {
	switch v := v.(type) {
	case string:
		return "x-" + key, "x-" + key
	case time.Duration:
		d := v + 1500*time.Millisecond
		return d, d.String()
	case bool:
		return !v, strconv.FormatBool(!v)
	case int:
		return v + 7, strconv.Itoa(v + 7)
	case bytesize.Size:
		sz := v + 3<<20
		return sz, sz.String()
	case []string:
		return []string{"a-" + key + ":1", "b:2"}, `["a-` + key + `:1", "b:2"]`
	}
	panic(fmt.Sprintf("no sample for %T", v))
}

// TestLoadFileEverySetting: a sampler.yaml setting every key of the table
// sets every field.
func TestLoadFileEverySetting(t *testing.T) {
	var yaml strings.Builder
	want := DefaultConfig()
	for _, s := range Settings() {
		v, text := sample(s.Key, s.def)
		fmt.Fprintf(&yaml, "%s: %s\n", s.Key, text)
		reflect.ValueOf(s.Field(&want)).Elem().Set(reflect.ValueOf(v))
	}
	path := filepath.Join(t.TempDir(), "sampler.yaml")
	if err := os.WriteFile(path, []byte(yaml.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	got := DefaultConfig()
	if err := got.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("from\n%s\ngot  %+v\nwant %+v", yaml.String(), got, want)
	}
}

const readmePath = "../README.md"

// readmeTable finds the configuration table in the README: the lines from
// its header to the first line that is not a table row.
func readmeTable(readme string) (start, end int, ok bool) {
	start = strings.Index(readme, "| key / flag | default | meaning |\n")
	if start < 0 {
		return 0, 0, false
	}
	end = start
	for end < len(readme) && strings.HasPrefix(readme[end:], "|") {
		nl := strings.IndexByte(readme[end:], '\n')
		if nl < 0 {
			return start, len(readme), true
		}
		end += nl + 1
	}
	return start, end, true
}

// TestREADMEConfigTable: the README's configuration table is the one
// Settings renders. After changing a setting, regenerate it with
//
//	go test ./node -run TestREADMEConfigTable -update
func TestREADMEConfigTable(t *testing.T) {
	data, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	start, end, ok := readmeTable(readme)
	if !ok {
		t.Fatalf("%s has no configuration table (a line \"| key / flag | default | meaning |\")", readmePath)
	}
	want := markdownTable()
	if readme[start:end] == want {
		return
	}
	if *update {
		if err := os.WriteFile(readmePath, []byte(readme[:start]+want+readme[end:]), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the configuration table of %s", readmePath)
		return
	}
	got := strings.Split(readme[start:end], "\n")
	for i, w := range strings.Split(want, "\n") {
		if i >= len(got) || got[i] != w {
			g := "(nothing)"
			if i < len(got) {
				g = got[i]
			}
			t.Fatalf("%s's configuration table differs from Settings at row %d:\n got: %s\nwant: %s\n"+
				"regenerate it: go test ./node -run TestREADMEConfigTable -update", readmePath, i+1, g, w)
		}
	}
	t.Fatalf("%s's configuration table has rows Settings does not; regenerate it: go test ./node -run TestREADMEConfigTable -update", readmePath)
}

// errorPackages are the packages whose errors a sampler run reports: the
// keys and flags they name must be the sampler's.
var errorPackages = []string{"node", "ingest", "buffer", "decision", "export", "cluster", "internal/store", "internal/otlpclient"}

// TestErrorsNameSettings reads the sources of errorPackages and checks
// the settings their error messages (fmt.Errorf, errors.New, and any string
// in a Validate method) name: a --flag must be a flag of "sampler run",
// "key (--flag)" must pair a key with its own flag, and a snake_case word
// in a Validate method, or in any of node's errors, must be a key (other
// errors name wire-format fields, as trace_id).
func TestErrorsNameSettings(t *testing.T) {
	keys, flags := map[string]string{}, map[string]bool{"config": true, "shutdown-timeout": true}
	for _, s := range Settings() {
		keys[s.Key] = s.Flag
		flags[s.Flag] = true
	}
	snake := regexp.MustCompile(`\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b`)
	flagRE := regexp.MustCompile(`(?:^|[^\w-])--([a-z][a-z0-9-]*)`)
	pair := regexp.MustCompile(`\b([a-z][a-z0-9_]*) \(--([a-z][a-z0-9-]*)`)
	var checked int
	for _, pkg := range errorPackages {
		files, err := filepath.Glob(filepath.Join("..", pkg, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no Go files (%v)", pkg, err)
		}
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			forEachMessage(f, func(lit *ast.BasicLit, msg string, inValidate bool) {
				checked++
				where := fset.Position(lit.Pos())
				for _, k := range snake.FindAllString(msg, -1) {
					if _, ok := keys[k]; !ok && (inValidate || pkg == "node") {
						t.Errorf("%s: %q names %s, which is no key of sampler.yaml", where, msg, k)
					}
				}
				for _, m := range flagRE.FindAllStringSubmatch(msg, -1) {
					if !flags[m[1]] {
						t.Errorf("%s: %q names --%s, which is no flag of sampler run", where, msg, m[1])
					}
				}
				for _, m := range pair.FindAllStringSubmatch(msg, -1) {
					if flag, ok := keys[m[1]]; (ok || strings.Contains(m[1], "_")) && flag != m[2] {
						t.Errorf("%s: %q pairs %s with --%s", where, msg, m[1], m[2])
					}
				}
			})
		}
	}
	if checked < 50 {
		t.Fatalf("only %d messages found: is the scan broken?", checked)
	}
}

// forEachMessage calls fn with every string literal of f that is an error
// message: an argument of fmt.Errorf or errors.New, or any string in a
// method named Validate (whose helpers take the names as arguments).
func forEachMessage(f *ast.File, fn func(lit *ast.BasicLit, msg string, inValidate bool)) {
	lits := func(n ast.Node, inValidate bool) {
		ast.Inspect(n, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					fn(lit, s, inValidate)
				}
			}
			return true
		})
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncDecl:
			if n.Name.Name == "Validate" && n.Recv != nil && n.Body != nil {
				lits(n.Body, true)
				return false
			}
		case *ast.CallExpr:
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && slices.Contains([]string{"fmt.Errorf", "errors.New"}, x.Name+"."+sel.Sel.Name) {
					for _, a := range n.Args {
						lits(a, false)
					}
					return false
				}
			}
		}
		return true
	})
}

// The scan finds what it looks for.
func TestErrorsNameSettingsFinds(t *testing.T) {
	src := `package p
func (c Config) Validate() error { positive(c.X, "kept_cache_size (--kept-cache-size)"); return nil }
func f() error { return fmt.Errorf("cluster key (--cluster-key-file) is %d", 1) }
`
	f, err := parser.ParseFile(token.NewFileSet(), "p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	forEachMessage(f, func(_ *ast.BasicLit, s string, _ bool) { got = append(got, s) })
	want := []string{"kept_cache_size (--kept-cache-size)", "cluster key (--cluster-key-file) is %d"}
	if !slices.Equal(got, want) {
		t.Fatalf("messages %q, want %q", got, want)
	}
}
