package diff

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// entry is one corpus query (see testdata/README.md for the format).
type entry struct {
	name      string // file stem and number, e.g. agg_012
	seq       int    // position in the whole corpus
	file      string
	line      int
	sql       string   // template
	on        []string // config tags; empty: every config (when the template uses {t})
	args      []string // parameter templates (@args); nil: no parameters
	expectErr string   // SQLSTATE the oracle must give (@error)
	set       []string // session settings, "name = value" (@set)
}

// instance is an entry with its placeholders replaced for one config (nil: none).
type instance struct {
	cfg  *config
	sql  string
	args []string
}

func (in instance) label() string {
	if in.cfg == nil {
		return "-"
	}
	return in.cfg.table
}

var placeholder = regexp.MustCompile(`\{(t|ktype|kmiss|k[1-4])\}`)

// readCorpus reads every testdata/*.sql file.
func readCorpus(dir string) ([]*entry, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.sql"))
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	var all []*entry
	seen := map[string]string{}
	for _, f := range files {
		es, err := readFile(f)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			norm := strings.Join(strings.Fields(e.sql), " ") + " -- " + strings.Join(e.args, "|") + " -- " + strings.Join(e.set, ";")
			if prev, ok := seen[norm]; ok {
				return nil, fmt.Errorf("%s:%d: duplicate of %s", e.file, e.line, prev)
			}
			seen[norm] = e.name
		}
		all = append(all, es...)
	}
	for i, e := range all {
		e.seq = i
	}
	return all, nil
}

func readFile(path string) ([]*entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	stem := strings.TrimSuffix(filepath.Base(path), ".sql")
	var (
		out     []*entry
		cur     *entry
		pending = &entry{}
		buf     []string
	)
	sc := bufio.NewScanner(f)
	for ln := 1; sc.Scan(); ln++ {
		line := sc.Text()
		trim := strings.TrimSpace(line)
		if trim == "" && len(buf) == 0 {
			continue
		}
		if strings.HasPrefix(trim, "--") {
			d := strings.TrimSpace(strings.TrimPrefix(trim, "--"))
			if !strings.HasPrefix(d, "@") {
				continue
			}
			name, val, _ := strings.Cut(d[1:], ":")
			val = strings.TrimSpace(val)
			switch strings.TrimSpace(name) {
			case "on":
				for _, tag := range strings.Split(val, ",") {
					tag = strings.TrimSpace(tag)
					if tag == "numeric" {
						pending.on = append(pending.on, "int", "bigint", "small")
						continue
					}
					if !slices.ContainsFunc(configs, func(c *config) bool { return c.tag == tag }) {
						return nil, fmt.Errorf("%s:%d: unknown config %q", path, ln, tag)
					}
					pending.on = append(pending.on, tag)
				}
			case "args":
				pending.args = []string{}
				for _, a := range strings.Split(val, "|") {
					pending.args = append(pending.args, strings.TrimSpace(a))
				}
			case "error":
				pending.expectErr = val
			case "set":
				if !strings.Contains(val, "=") {
					return nil, fmt.Errorf("%s:%d: @set wants name = value", path, ln)
				}
				pending.set = append(pending.set, val)
			default:
				return nil, fmt.Errorf("%s:%d: unknown directive %q", path, ln, d)
			}
			continue
		}
		if cur == nil {
			cur, pending = pending, &entry{}
			cur.file, cur.line = path, ln
		}
		buf = append(buf, line)
		if strings.HasSuffix(trim, ";") {
			sql := strings.TrimSpace(strings.Join(buf, "\n"))
			cur.sql = strings.TrimSpace(strings.TrimSuffix(sql, ";"))
			cur.name = fmt.Sprintf("%s_%03d", stem, len(out)+1)
			out = append(out, cur)
			cur, buf = nil, nil
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s: unterminated statement at line %d", path, cur.line)
	}
	return out, sc.Err()
}

// instances expands an entry for every config it applies to.
func (e *entry) instances() []instance {
	if !strings.Contains(e.sql, "{t}") && !placeholder.MatchString(strings.Join(e.args, " ")) && !placeholder.MatchString(e.sql) {
		return []instance{{sql: e.sql, args: e.args}}
	}
	var out []instance
	for _, c := range configs {
		if len(e.on) > 0 && !slices.Contains(e.on, c.tag) {
			continue
		}
		in := instance{cfg: c, sql: c.subst(e.sql, true)}
		if e.args != nil {
			in.args = []string{}
			for _, a := range e.args {
				in.args = append(in.args, c.subst(a, false))
			}
		}
		out = append(out, in)
	}
	return out
}

// subst replaces the placeholders; keys become literals (sql) or raw values (arguments).
func (c *config) subst(s string, literal bool) string {
	return placeholder.ReplaceAllStringFunc(s, func(m string) string {
		name := m[1 : len(m)-1]
		var raw string
		switch {
		case name == "t":
			return c.table
		case name == "ktype":
			return c.ktype
		case name == "kmiss":
			raw = c.kmiss
		default:
			raw = c.keys[name[1]-'1']
		}
		if literal {
			return c.keyLiteral(raw)
		}
		return raw
	})
}

// shape reports whether the statement's top level has ORDER BY (then row order is part of
// the result) and whether it has LIMIT/OFFSET/FETCH without one (a corpus bug: the oracle
// itself would not be deterministic).
func shape(sql string) (ordered, limitUnordered bool, err error) {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return false, false, err
	}
	if len(tree.Stmts) != 1 {
		return false, false, fmt.Errorf("%d statements", len(tree.Stmts))
	}
	sel := tree.Stmts[0].Stmt.GetSelectStmt()
	if sel == nil {
		return false, false, nil
	}
	ordered = len(sel.SortClause) > 0
	return ordered, !ordered && (sel.LimitCount != nil || sel.LimitOffset != nil), nil
}
