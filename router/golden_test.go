package router

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pgshard/pgshard/metadata"
)

// Golden plan tests: every router/testdata/NAME.sql holds statements, one case per
// paragraph (cases are separated by blank lines; lines starting with "--" before the
// statement are comments, kept in the output). The plan of each case, as describePlan
// prints it against goldenSnapshot, must equal router/testdata/NAME.golden. Regenerate
// the golden files after an intended change with
//
//	go test ./router -run TestGolden -update
//
// and read the diff: it is the change of behaviour.
var update = flag.Bool("update", false, "rewrite router/testdata/*.golden with the plans the router makes now")

// goldenSnapshot is the fixed metadata of the golden tests, over three workers
// w1..w3:5432:
//
//	public.customers  key id bigint, 4 shards, 2 placements each, primary key
//	public.orders     key customer_id bigint, 4 shards (co-located with customers), 2 placements
//	public.reviews    key customer_name text, 2 shards, 1 placement
//	app.events        key k varchar, 8 shards, 3 placements, unique index
//	public.sessions   key sid uuid, 3 shards, 1 placement
//	public.accounts   key code char(4) (a type modifier: applies before hashing), 2 shards
//	public.items      key id bigint GENERATED ALWAYS AS IDENTITY, 2 shards, 2 placements
//
// Any other table (public.regions in the cases) is a coordinator table.
func goldenSnapshot() *metadata.Snapshot {
	nodes := []metadata.Node{{Name: "w1", Port: 5432}, {Name: "w2", Port: 5432}, {Name: "w3", Port: 5432}}
	col := func(name string, typ uint32, typeName string) metadata.Column {
		return metadata.Column{Name: name, TypeOID: typ, HashType: typ, TypeName: typeName, Typmod: -1, ByteOrder: true}
	}
	serial := func(c metadata.Column, seq string) metadata.Column {
		c.Default = "nextval('" + seq + "'::regclass)"
		return c
	}
	notNull := func(c metadata.Column) metadata.Column { c.NotNull = true; return c }
	identity := func(c metadata.Column, seq string) metadata.Column {
		c = notNull(serial(c, seq))
		c.Identity = 'a'
		return c
	}
	onShard := func(c metadata.Column, def string) metadata.Column {
		c.Default, c.DefaultOnShard = def, true
		return c
	}
	type spec struct {
		t      *metadata.Table
		shards int
		rf     int
		first  int64
	}
	specs := []spec{
		{&metadata.Table{OID: 16384, Schema: "public", Name: "customers", Key: "id", HasUnique: true, PrimaryKey: []int{0},
			Columns: []metadata.Column{notNull(col("id", 20, "bigint")), col("name", 25, "text"), col("region", 23, "integer")}}, 4, 2, 102008},
		{&metadata.Table{OID: 16390, Schema: "public", Name: "orders", Key: "customer_id",
			Columns: []metadata.Column{col("customer_id", 20, "bigint"), serial(col("id", 20, "bigint"), "public.orders_id_seq"),
				col("amount", 1700, "numeric"), onShard(col("status", 25, "text"), "'new'::text"), col("placed", 1184, "timestamp with time zone")}}, 4, 2, 102012},
		{&metadata.Table{OID: 16400, Schema: "public", Name: "reviews", Key: "customer_name",
			Columns: []metadata.Column{notNull(col("customer_name", 25, "text")), col("rating", 23, "integer"), col("body", 25, "text")}}, 2, 1, 102016},
		{&metadata.Table{OID: 16410, Schema: "app", Name: "events", Key: "k", HasUnique: true,
			Columns: []metadata.Column{col("k", 1043, "character varying"), col("n", 20, "bigint"), col("at", 1114, "timestamp without time zone")}}, 8, 3, 102020},
		{&metadata.Table{OID: 16420, Schema: "public", Name: "sessions", Key: "sid",
			Columns: []metadata.Column{col("sid", 2950, "uuid"), col("user_id", 20, "bigint")}}, 3, 1, 102028},
		{&metadata.Table{OID: 16430, Schema: "public", Name: "accounts", Key: "code",
			Columns: []metadata.Column{{Name: "code", TypeOID: 1042, HashType: 1042, TypeName: "character(4)", BaseName: "bpchar", Typmod: 8, LengthFunc: "pg_catalog.bpchar", LengthArgs: 3, ByteOrder: true},
				col("balance", 1700, "numeric")}}, 2, 1, 102031},
		{&metadata.Table{OID: 16440, Schema: "public", Name: "items", Key: "id", HasUnique: true, PrimaryKey: []int{0},
			Columns: []metadata.Column{identity(col("id", 20, "bigint"), "public.items_id_seq"), col("name", 25, "text")}}, 2, 2, 102033},
	}
	var tables []*metadata.Table
	placement := int64(200000)
	for _, s := range specs {
		s.t.Method = 'h'
		for i := range s.t.Columns {
			if s.t.Columns[i].Name == s.t.Key {
				s.t.KeyIndex = i
			}
		}
		for i := 0; i < s.shards; i++ {
			lo, hi := metadata.HashRange(i, s.shards)
			sh := &metadata.Shard{ID: s.first + int64(i), TableID: s.t.OID, Storage: 't', Min: lo, Max: hi}
			on, err := metadata.PlacementNodes(nodes, i, s.rf)
			if err != nil {
				panic(err)
			}
			for _, n := range on {
				placement++
				sh.Placements = append(sh.Placements, metadata.Placement{ID: placement, ShardID: sh.ID, State: metadata.StateFinalized, Node: n})
			}
			s.t.Shards = append(s.t.Shards, sh)
		}
		tables = append(tables, s.t)
	}
	snap := metadata.NewSnapshot(nodes, tables)
	snap.DefaultByteOrder = true
	return snap
}

var goldenSession = &Session{User: "alice", SearchPath: `"$user", public, app`}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.sql: %v", err)
	}
	snap := goldenSnapshot()
	for _, file := range files {
		file := file
		t.Run(strings.TrimSuffix(filepath.Base(file), ".sql"), func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			for _, c := range splitCases(string(src)) {
				// A fresh router per case: the output must not depend on the plan
				// cache's state (TestGoldenCached checks the cached plans).
				b, in := New(Config{}).Plan(c.sql, snap, goldenSession)
				out.WriteString(c.comment)
				out.WriteString(c.sql)
				out.WriteString("\n----\n")
				out.WriteString(describeBatch(b, in, snap))
				out.WriteString("\n")
			}
			golden := strings.TrimSuffix(file, ".sql") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(out.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got := out.String(); got != string(want) {
				t.Errorf("plans differ from %s (go test ./router -run TestGolden -update rewrites it):\n%s", golden, firstDiff(string(want), got))
			}
		})
	}
}

// TestGoldenCached plans every case twice more through one router that has planned the
// cases before it: a plan taken from the cache must describe the same as a fresh one.
func TestGoldenCached(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.sql")
	snap := goldenSnapshot()
	r := New(Config{})
	for _, file := range files {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range splitCases(string(src)) {
			fresh, in := New(Config{}).Plan(c.sql, snap, goldenSession)
			want := describeBatch(fresh, in, snap)
			r.Plan(c.sql, snap, goldenSession)
			cached, in2 := r.Plan(c.sql, snap, goldenSession)
			if got := describeBatch(cached, in2, snap); got != want {
				t.Errorf("%s: %s: cached plan differs:\n%s", file, c.sql, firstDiff(want, got))
			}
		}
	}
}

type goldenCase struct{ comment, sql string }

func splitCases(src string) []goldenCase {
	var cases []goldenCase
	for _, para := range strings.Split(strings.ReplaceAll(src, "\r\n", "\n"), "\n\n") {
		var c goldenCase
		var sql []string
		for _, line := range strings.Split(para, "\n") {
			switch {
			case strings.TrimSpace(line) == "" && len(sql) == 0:
			case strings.HasPrefix(line, "--") && len(sql) == 0:
				c.comment += line + "\n"
			default:
				sql = append(sql, line)
			}
		}
		if len(sql) == 0 {
			continue
		}
		c.sql = strings.TrimRight(strings.Join(sql, "\n"), "\n ")
		cases = append(cases, c)
	}
	return cases
}

func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			from := i - 6
			if from < 0 {
				from = 0
			}
			ctx := strings.Join(g[from:i], "\n")
			return fmt.Sprintf("line %d:\n%s\n- want: %s\n+ got:  %s", i+1, ctx, wl, gl)
		}
	}
	return "(equal)"
}

// describeBatch prints a batch's plans in the golden files' form.
func describeBatch(b *Batch, in *Input, snap *metadata.Snapshot) string {
	var w planWriter
	w.in, w.snap = in, snap
	if len(b.Stmts) != 1 || b.AllCoordinator {
		w.line(0, "batch: %d statements, all on coordinator: %v", len(b.Stmts), b.AllCoordinator)
	}
	for i, st := range b.Stmts {
		if len(b.Stmts) > 1 {
			w.line(0, "[%d]", i+1)
		}
		w.stmt(0, st)
	}
	return w.b.String()
}

type planWriter struct {
	b    strings.Builder
	in   *Input
	snap *metadata.Snapshot
	// shard is the shard the templates are rendered for (SegShardName), 0 when not known.
	shard int64
}

func (w *planWriter) line(depth int, format string, args ...any) {
	w.b.WriteString(strings.Repeat("  ", depth))
	// Trailing blanks (some generated SQL ends with one) are left out: editors strip them.
	w.b.WriteString(strings.TrimRight(fmt.Sprintf(format, args...), " "))
	w.b.WriteString("\n")
}

func (w *planWriter) tableName(oid uint32) string {
	if t := w.snap.TableByOID(oid); t != nil {
		return t.Schema + "." + t.Name
	}
	return fmt.Sprintf("table %d", oid)
}

// holes renders SegTable hole i as tables[i]; evaluated values as $evalN, partial types
// as <typeN>.
func (w *planWriter) render(t Template, tables ...string) string {
	evals := make([]string, 64)
	for i := range evals {
		evals[i] = "$eval" + strconv.Itoa(i)
	}
	types := make([]string, 64)
	for i := range types {
		types[i] = "<type" + strconv.Itoa(i) + ">"
	}
	for len(tables) < 16 {
		tables = append(tables, "<table"+strconv.Itoa(len(tables))+">")
	}
	h := &Holes{In: w.in, Tables: tables, Evals: evals, Types: types, Shard: w.shard}
	var b strings.Builder
	for _, seg := range t {
		if seg.Kind == SegShardName && w.shard == 0 {
			// The shard's own name of a constraint, for a shard not known at plan time.
			b.WriteString(QuoteIdent(seg.Text + "_<shard>"))
			continue
		}
		b.WriteString(Template{seg}.String(h))
	}
	return b.String()
}

// shardName is the name a shard template uses for table oid: the shard itself when one
// is known, else the table's name with the suffix _<shard>.
func (w *planWriter) shardName(oid uint32, sh *metadata.Shard) string {
	t := w.snap.TableByOID(oid)
	if t == nil {
		return "<table>"
	}
	if sh != nil {
		// Co-located tables: the shard of the same index.
		if own := w.snap.TableByOID(sh.TableID); own != nil && own != t {
			for i, o := range own.Shards {
				if o == sh && i < len(t.Shards) {
					sh = t.Shards[i]
				}
			}
		}
		return ShardName(t.Schema, t.Name, sh.ID)
	}
	return QuoteIdent(t.Schema) + "." + QuoteIdent(t.Name+"_<shard>")
}

func flags(st *Statement) string {
	var f []string
	for _, x := range []struct {
		on   bool
		name string
	}{{st.DDL, "ddl"}, {st.TempDDL, "temp-ddl"}, {st.Chain, "chain"}, {st.SetConfig, "set_config"},
		{st.Unparsed, "unparsed: the coordinator only parses it"}, {st.Commutes, "commutes"}, {st.Returning, "returning"},
		{st.Listen, "listen"}, {st.CopyHeader, "header"}, {st.Analyze, "analyze"}} {
		if x.on {
			f = append(f, x.name)
		}
	}
	return strings.Join(f, ", ")
}

func (w *planWriter) stmt(d int, st *Statement) {
	w.line(d, "kind: %v", st.Kind)
	if f := flags(st); f != "" {
		w.line(d, "flags: %s", f)
	}
	switch st.Kind {
	case Coordinator, Begin, SetVar:
		w.line(d, "coordinator: %s", w.render(st.Text))
	case Commit, Rollback:
		w.line(d, "tag: %s", st.Tag)
	case Savepoint, Release, RollbackTo:
		w.line(d, "name: %s", st.Name)
	case Error:
		w.line(d, "error: %s %s", st.Err.Code, st.Err.Message)
	case Select, Update, Delete, CopyOut:
		w.readWrite(d, st)
	case Insert:
		w.insert(d, st)
	case Function:
		for _, c := range st.Calls {
			w.line(d, "call: %s(args %d..%d) -> column %d", c.Func, c.Arg0, c.Arg0+c.NArgs-1, c.Column)
		}
		w.line(d, "arguments (coordinator): %s", w.render(st.ArgQuery))
		var cols []string
		for _, c := range st.Columns {
			cols = append(cols, c.Name)
		}
		w.line(d, "columns: %s", strings.Join(cols, ", "))
	case DropTable, Truncate:
		var names []string
		for _, oid := range st.Tables {
			names = append(names, w.tableName(oid))
		}
		w.line(d, "tables: %s", strings.Join(names, ", "))
		w.line(d, "coordinator: %s", w.render(st.Text))
	case PrepareSQL:
		w.line(d, "name: %s  parameter types: %v", st.Name, st.ParamTypes)
		w.line(d, "query: %s", st.Query)
	case ExecuteSQL:
		var args []string
		for _, a := range st.Args {
			args = append(args, w.render(a))
		}
		w.line(d, "name: %s  arguments: %s", st.Name, strings.Join(args, ", "))
	case DeallocateSQL:
		w.line(d, "name: %q", st.Name)
	case CopyIn:
		w.line(d, "table: %s  columns: %v", w.tableName(st.Table), st.CopyCols)
		for _, o := range st.CopyOptions {
			w.line(d, "option: %s %s", o.Name, copyArg(o))
		}
	case Gathered:
		w.merge(d, st.Merge, nil)
	case Explain:
		w.line(d, "options: %q", st.Options)
		if st.Inner != nil {
			w.line(d, "inner:")
			w.stmt(d+1, st.Inner)
		}
	}
	if st.Set != nil {
		w.line(d, "set: %s", describeSet(st.Set))
	}
	if st.Command != nil {
		w.line(d, "command: %s  argument: %q (answered by the proxy)", st.Command.Name, st.Command.Arg)
	}
	w.evals(d, "evaluated on the coordinator first", st.Evals)
	if st.Err != nil && st.Kind != Error && st.Kind != Select && st.Kind != CopyOut {
		w.line(d, "error: %s %s", st.Err.Code, st.Err.Message)
	}
}

// describeSet prints what a SET, RESET or DISCARD changes, as the proxy reads it.
func describeSet(s *SetPlan) string {
	out := s.Action.String()
	if s.Name != "" {
		out += " " + s.Name
	}
	if s.Local {
		out += " (local)"
	}
	switch name, all := s.ResetsToDefault(); {
	case all:
		out += "; every setting back to the session's default"
	case name != "":
		out += "; back to the session's default: " + name
	}
	if s.Discards() {
		out += "; the coordinator connection's prepared statements are forgotten"
	}
	return out
}

func (w *planWriter) evals(d int, what string, evals []Eval) {
	for i, e := range evals {
		var extra []string
		if e.Key {
			extra = append(extra, fmt.Sprintf("partition key %s (hashed as type %d)", e.Column, e.KeyType))
		}
		if e.Unknown {
			extra = append(extra, "sent untyped")
		}
		if e.ColumnTypeName != "" {
			extra = append(extra, "as "+e.ColumnTypeName)
		}
		s := ""
		if len(extra) > 0 {
			s = "  [" + strings.Join(extra, "; ") + "]"
		}
		w.line(d, "%s: $eval%d = %s%s", what, i, w.render(e.Expr), s)
	}
}

// value prints a partition-key value.
func (w *planWriter) value(v Value) string {
	switch v.Kind {
	case ValLit:
		s := w.in.Lit(v.Index)
		if v.Neg {
			s = "-" + s
		}
		return s
	case ValParam:
		return "$" + strconv.Itoa(v.Index)
	case ValNull:
		return "NULL"
	case ValEval:
		return "$eval" + strconv.Itoa(v.Index)
	}
	return "?"
}

// bind hashes key values as the executor does before it asks the coordinator (Bind,
// with no parameters: they are not known at plan time). col is the partition column the
// values are assigned to, nil for comparisons. unknown is the first value whose hash is
// not known at plan time (a parameter, an evaluated value, a value needing the
// coordinator's reading or a type modifier), nil when every hash is.
func (w *planWriter) bind(vals []Value, col *metadata.Column) (hashes []int32, unknown *Value) {
	bd, err := Bind(vals, w.in, nil, col)
	first := len(vals)
	if err != nil {
		// Without parameters, Bind fails at the first parameter.
		for i, v := range vals {
			if v.Kind == ValParam {
				first = i
				break
			}
		}
	}
	if len(bd.Pending) > 0 && bd.Pending[0].Index < first {
		first = bd.Pending[0].Index
	}
	if first < len(vals) {
		return nil, &vals[first]
	}
	return bd.Hashes, nil
}

func (w *planWriter) cond(c *Cond) string {
	if c == nil {
		return "(none)"
	}
	switch c.Kind {
	case CondAll:
		return "all"
	case CondNone:
		return "none"
	case CondEq:
		return "key = " + w.value(c.Val)
	}
	var parts []string
	for _, a := range c.Args {
		parts = append(parts, w.cond(a))
	}
	op := " AND "
	if c.Kind == CondOr {
		op = " OR "
	}
	return "(" + strings.Join(parts, op) + ")"
}

// shards prints the shards a filter chooses, when its values are constants, and returns
// how many it chooses (-1: not known at plan time) and the one shard chosen (nil when
// the choice is not one shard known at plan time).
func (w *planWriter) shards(d int, t *metadata.Table, c *Cond) (*metadata.Shard, int) {
	if t == nil {
		return nil, -1
	}
	w.line(d, "filter: %s", w.cond(c))
	var vals []Value
	if c != nil {
		vals = c.Values(nil)
	}
	hashes, unknown := w.bind(vals, nil)
	if unknown != nil {
		w.line(d, "shards: chosen at execution (the hash of %s is not known at plan time)", w.value(*unknown))
		return nil, -1
	}
	var hs []string
	for i, v := range vals {
		if v.Kind == ValLit {
			hs = append(hs, fmt.Sprintf("hash(%s) = %d", w.value(v), hashes[i]))
		}
	}
	if len(hs) > 0 {
		w.line(d, "hashes: %s", strings.Join(hs, ", "))
	}
	chosen, all := c.Select(t, hashes)
	if all {
		chosen = t.Shards
		w.line(d, "shards: all %d", len(t.Shards))
	} else {
		w.line(d, "shards: %d of %d", len(chosen), len(t.Shards))
	}
	if !all || len(t.Shards) == 1 {
		for _, sh := range chosen {
			w.placements(d+1, sh)
		}
	}
	if len(chosen) == 1 {
		return chosen[0], 1
	}
	return nil, len(chosen)
}

func (w *planWriter) placements(d int, sh *metadata.Shard) {
	var on []string
	for _, p := range sh.Placements {
		on = append(on, p.Node.String())
	}
	w.line(d, "shard %d [%d, %d] on %s", sh.ID, sh.Min, sh.Max, strings.Join(on, ", "))
}

func (w *planWriter) readWrite(d int, st *Statement) {
	t := w.snap.TableByOID(st.Table)
	w.line(d, "table: %s", w.tableName(st.Table))
	sh, n := w.shards(d, t, st.Filter)
	if n == 0 && (st.Kind == Select || st.Kind == CopyOut) {
		w.line(d, "no shard: the coordinator runs it on the empty prototype: %s", w.render(st.Text))
		return
	}
	tables := []string{w.shardName(st.Table, sh)}
	if sh != nil {
		w.shard = sh.ID
		defer func() { w.shard = 0 }()
	}
	var anyShard []string
	for _, oid := range append([]uint32{st.Table}, st.Colocated...) {
		anyShard = append(anyShard, w.shardName(oid, nil))
	}
	if len(st.Colocated) > 0 {
		var names []string
		tables = tables[:0]
		for _, oid := range st.Colocated {
			names = append(names, w.tableName(oid))
			tables = append(tables, w.shardName(oid, sh))
		}
		anyShard = anyShard[1:]
		w.line(d, "co-located: %s (shard i of each together, on a node holding all of them)", strings.Join(names, ", "))
	}
	if st.Kind == Select || st.Kind == CopyOut {
		w.line(d, "one shard: %s", w.render(st.Shard, tables...))
		if n != 1 {
			if st.Merge == nil && st.Err != nil {
				w.line(d, "several shards: error %s %s", st.Err.Code, st.Err.Message)
			} else if st.Merge != nil {
				w.line(d, "several shards:")
				w.merge(d+1, st.Merge, anyShard)
			}
		}
	} else if len(st.Source) > 0 {
		// UPDATE/DELETE with rows chosen over other tables.
		w.merge(d, st.Merge, anyShard)
		var cols []string
		for _, i := range st.SourceCols {
			cols = append(cols, t.Columns[i].Name)
		}
		w.line(d, "rows to change (coordinator, then the key's canonical form): %s", w.render(st.Source, w.temps(st.Merge)...))
		w.line(d, "row columns: %s", strings.Join(cols, ", "))
		w.line(d, "per shard ($eval0: the rows of the shard): %s", w.render(st.Shard, tables...))
	} else {
		w.line(d, "per shard: %s", w.render(st.Shard, tables...))
		w.merge(d, st.Merge, anyShard)
	}
	if st.Fallback != nil {
		w.line(d, "when the tables are no longer co-located:")
		w.merge(d+1, st.Fallback, nil)
	}
}

func (w *planWriter) insert(d int, st *Statement) {
	t := w.snap.TableByOID(st.Table)
	w.line(d, "table: %s", w.tableName(st.Table))
	if len(st.Source) > 0 {
		w.merge(d, st.Merge, nil)
		var cols []string
		for _, i := range st.SourceCols {
			cols = append(cols, t.Columns[i].Name)
		}
		w.line(d, "source (coordinator, rows then the key's canonical form): %s", w.render(st.Source, w.temps(st.Merge)...))
		w.line(d, "source columns: %s", strings.Join(cols, ", "))
		w.line(d, "per shard: %s(rows of the shard)%s", w.render(st.InsertPrefix, w.shardName(st.Table, nil)), w.render(st.InsertSuffix))
		return
	}
	for i, r := range st.Rows {
		hashes, unknown := w.bind([]Value{r.Key}, t.KeyColumn())
		where := "shard chosen at execution"
		var sh *metadata.Shard
		if unknown == nil {
			h := hashes[0]
			if shards := t.ShardsFor(h); len(shards) == 1 {
				sh = shards[0]
				where = fmt.Sprintf("hash %d -> shard %d", h, sh.ID)
			} else {
				where = fmt.Sprintf("hash %d -> %d shards", h, len(shards))
			}
		}
		w.line(d, "row %d: key %s, %s", i+1, w.value(r.Key), where)
		if sh != nil {
			w.placements(d+1, sh)
			w.shard = sh.ID
		}
		w.line(d+1, "sql: %s%s%s", w.render(st.InsertPrefix, w.shardName(st.Table, sh)), w.render(r.Text), w.render(st.InsertSuffix))
		w.shard = 0
		w.evals(d+1, "evaluated first", r.Evals)
	}
}

// temps are the names of m's temporary tables on the coordinator.
func (w *planWriter) temps(m *Merge) []string {
	var temps []string
	if m != nil {
		for i := range m.Pulls {
			temps = append(temps, GatherTable(i))
		}
	}
	return temps
}

func (w *planWriter) merge(d int, m *Merge, tables []string) {
	if m == nil {
		return
	}
	names := [...]string{"Concat", "Aggregate", "Prototype", "Gather", "Sorted"}
	w.line(d, "merge: %s", names[m.Kind])
	d++
	if len(m.Shard) > 0 {
		w.line(d, "per shard: %s", w.render(m.Shard, tables...))
	}
	if m.HasLimit {
		w.line(d, "limit: %s", w.value(m.Limit))
	}
	if m.HasOffset {
		w.line(d, "offset: %s", w.value(m.Offset))
	}
	if m.Partials > 0 {
		w.line(d, "partial columns: %d", m.Partials)
	}
	if len(m.NotFloat4) > 0 {
		w.line(d, "not float4: %v", m.NotFloat4)
	}
	for i, k := range m.Keys {
		w.line(d, "sort key %d: desc=%v nulls first=%v byte order=%v", i+1, k.Desc, k.NullsFirst, k.ByteOrder)
	}
	if m.Visible > 0 {
		w.line(d, "visible columns: %d", m.Visible)
	}
	var temps []string
	for i, p := range m.Pulls {
		temps = append(temps, GatherTable(i))
		w.line(d, "pull %d into %s: %s", i+1, GatherTable(i), w.tableName(p.Table))
		if p.Filter != nil {
			w.shards(d+1, w.snap.TableByOID(p.Table), p.Filter)
		}
		w.line(d+1, "per shard: %s", w.render(p.Shard, w.shardName(p.Table, nil)))
		if len(p.Proto) > 0 {
			w.line(d+1, "defined by: %s", w.render(p.Proto, w.shardName(p.Table, nil)))
		}
	}
	if m.Keep {
		w.line(d, "temporary tables kept until the transaction ends (hold: %v)", m.Hold)
	}
	if len(m.Final) > 0 {
		w.line(d, "coordinator: %s", w.render(m.Final, temps...))
	}
	if m.Fallback != nil {
		w.line(d, "fallback:")
		w.merge(d+1, m.Fallback, nil)
	}
}

func copyArg(o CopyOption) string {
	switch o.Kind {
	case CopyArgString:
		return strconv.Quote(o.Value)
	case CopyArgNumber:
		return o.Value
	case CopyArgList:
		return "(" + strings.Join(o.List, ", ") + ")"
	case CopyArgStar:
		return "*"
	}
	return ""
}
