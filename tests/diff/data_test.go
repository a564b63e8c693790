package diff

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// config is one distributed table holding the main data set; corpus queries written
// against {t} run once per config.
type config struct {
	tag    string // name used in @on directives
	table  string
	ktype  string
	shards int
	rf     int
	nrows  int
	seed   int64
	// keys are raw values of keys present in the table ({k1}..{k4}); kmiss is absent.
	keys  []string
	kmiss string
}

var configs = []*config{
	{tag: "int", table: "d_int_8_2", ktype: "int", shards: 8, rf: 2, nrows: 2000, seed: 1},
	{tag: "bigint", table: "d_bigint_3_1", ktype: "bigint", shards: 3, rf: 1, nrows: 2000, seed: 2},
	{tag: "text", table: "d_text_16_2", ktype: "text", shards: 16, rf: 2, nrows: 2000, seed: 3},
	{tag: "uuid", table: "d_uuid_5_1", ktype: "uuid", shards: 5, rf: 1, nrows: 2000, seed: 4},
	{tag: "small", table: "d_small_32_1", ktype: "int", shards: 32, rf: 1, nrows: 10, seed: 5},
}

// table is a table created identically in both databases.
type table struct {
	name string
	ddl  string
	// distributed: partition column, shard count and replication factor (none: a plain
	// coordinator table on the proxy side).
	key        string
	shards, rf int
	rows       [][]string // SQL literals
}

func mainDDL(name, ktype string) string {
	return fmt.Sprintf(`CREATE TABLE %s (
	k %s NOT NULL,
	id int NOT NULL,
	grp int,
	cat text,
	amount numeric(12,2),
	qty int,
	price bigint,
	flag boolean,
	created date,
	ts timestamptz,
	note varchar(20))`, name, ktype)
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// keyGen returns a generator of raw key values for a config.
func keyGen(c *config, r *rand.Rand) func(i int) string {
	switch c.tag {
	case "int":
		return func(int) string { return fmt.Sprint(r.Intn(1600) - 100) }
	case "bigint":
		return func(i int) string {
			switch i {
			case 7:
				return "9223372036854775807"
			case 8:
				return "-9223372036854775808"
			}
			return fmt.Sprint(r.Int63n(1<<41) - 1<<40)
		}
	case "text":
		special := []string{"", "O'Brien", "with space", "Ärger", "ключ", "KEY0001", "key 1", "z"}
		return func(i int) string {
			if i < len(special)*3 && i%3 == 0 {
				return special[i/3]
			}
			return fmt.Sprintf("key%04d", r.Intn(1500))
		}
	case "uuid":
		pool := make([]string, 1500)
		for i := range pool {
			b := make([]byte, 16)
			r.Read(b)
			b[6] = b[6]&0x0f | 0x40
			b[8] = b[8]&0x3f | 0x80
			pool[i] = fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
		}
		return func(int) string { return pool[r.Intn(len(pool))] }
	case "small":
		return func(i int) string { return fmt.Sprint(i + 1) }
	}
	panic(c.tag)
}

// keyLiteral is a raw key value as an SQL literal of the config's key type (untyped for
// strings, so that the query decides how it is coerced).
func (c *config) keyLiteral(raw string) string {
	switch c.ktype {
	case "int", "bigint":
		return raw
	}
	return quote(raw)
}

var (
	cats  = []string{"alpha", "beta", "gamma", "delta", "Beta", ""}
	words = []string{"apple", "Apple", "zebra", "Ärger", "it's", "pie", "x", "naïve", "10", "9", "b c", "ümlaut"}
)

// mainRows generates a config's rows deterministically and records its key placeholders.
func mainRows(c *config) [][]string {
	r := rand.New(rand.NewSource(c.seed))
	key := keyGen(c, r)
	base := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	nullOr := func(p float64, f func() string) string {
		if r.Float64() < p {
			return "NULL"
		}
		return f()
	}
	rows := make([][]string, c.nrows)
	raw := make([]string, c.nrows)
	for i := range rows {
		raw[i] = key(i)
		rows[i] = []string{
			c.keyLiteral(raw[i]),
			fmt.Sprint(i + 1),
			nullOr(0.1, func() string { return fmt.Sprint(r.Intn(12)) }),
			nullOr(0.1, func() string { return quote(cats[r.Intn(len(cats))]) }),
			nullOr(0.08, func() string {
				cents := r.Intn(200000) - 40000
				sign := ""
				if cents < 0 {
					sign, cents = "-", -cents
				}
				return fmt.Sprintf("%s%d.%02d", sign, cents/100, cents%100)
			}),
			fmt.Sprint(r.Intn(200) - 50),
			fmt.Sprint(r.Int63n(1_000_000_000_000) * int64(1+r.Intn(3)*3000)),
			nullOr(0.15, func() string { return fmt.Sprint(r.Intn(2) == 0) }),
			quote(base.AddDate(0, 0, r.Intn(730)).Format("2006-01-02")),
			quote(base.Add(time.Duration(r.Int63n(2*365*24*3600)) * time.Second).Format("2006-01-02 15:04:05+00")),
			nullOr(0.2, func() string {
				w := words[r.Intn(len(words))]
				if r.Intn(2) == 0 {
					w += " " + words[r.Intn(len(words))]
				}
				return quote(w)
			}),
		}
	}
	pick := []int{3, 500, 1000, 1500}
	if c.nrows < 1500 {
		pick = []int{1, 3, 5, 7}
	}
	c.keys = nil
	for _, i := range pick {
		c.keys = append(c.keys, raw[i])
	}
	switch c.ktype {
	case "int", "bigint":
		c.kmiss = "987654321"
	case "text":
		c.kmiss = "no such key"
	case "uuid":
		c.kmiss = "00000000-0000-0000-0000-000000000000"
	}
	return rows
}

// tables returns every table of the data set.
func tables() []*table {
	var ts []*table
	for _, c := range configs {
		ts = append(ts, &table{name: c.table, ddl: mainDDL(c.table, c.ktype), key: "k", shards: c.shards, rf: c.rf, rows: mainRows(c)})
	}
	r := rand.New(rand.NewSource(42))
	// Orders: co-located with d_int_8_2 (int key, 8 shards).
	orders := &table{name: "d_int_8_2_orders", key: "k", shards: 8, rf: 2,
		ddl: "CREATE TABLE d_int_8_2_orders (k int NOT NULL, id int NOT NULL, amount int, status text)"}
	statuses := []string{"'new'", "'paid'", "'shipped'", "NULL"}
	for i := 0; i < 3000; i++ {
		amount := fmt.Sprint(r.Intn(1000))
		if r.Intn(20) == 0 {
			amount = "NULL"
		}
		orders.rows = append(orders.rows, []string{fmt.Sprint(r.Intn(1700) - 100), fmt.Sprint(i + 1), amount, statuses[r.Intn(len(statuses))]})
	}
	// Other: int key like d_int_8_2 but 5 shards (not co-located).
	other := &table{name: "d_other_5_1", key: "k", shards: 5, rf: 1,
		ddl: "CREATE TABLE d_other_5_1 (k int NOT NULL, id int NOT NULL, tag text, val numeric(8,2))"}
	for i := 0; i < 600; i++ {
		val := fmt.Sprintf("%d.%02d", r.Intn(10000), r.Intn(100))
		if r.Intn(10) == 0 {
			val = "NULL"
		}
		other.rows = append(other.rows, []string{fmt.Sprint(r.Intn(1700) - 100), fmt.Sprint(i + 1), quote(fmt.Sprintf("tag%d", r.Intn(7))), val})
	}
	// Lookup: a plain coordinator table (grp 10 and 11 occur in the data but not here).
	lookup := &table{name: "lookup", ddl: "CREATE TABLE lookup (grp int PRIMARY KEY, label text)"}
	for g := 0; g < 10; g++ {
		lookup.rows = append(lookup.rows, []string{fmt.Sprint(g), quote(fmt.Sprintf("group %d", g))})
	}
	lookup.rows = append(lookup.rows, []string{"100", "'unused'"})
	return append(ts, orders, other, lookup)
}

// inserts returns multi-row INSERT statements for rows.
func inserts(name string, rows [][]string) []string {
	var out []string
	for len(rows) > 0 {
		n := min(250, len(rows))
		var b strings.Builder
		fmt.Fprintf(&b, "INSERT INTO %s VALUES ", name)
		for i, row := range rows[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(" + strings.Join(row, ", ") + ")")
		}
		out = append(out, b.String())
		rows = rows[n:]
	}
	return out
}

// loadRows loads big tables with COPY FROM STDIN (text format) and small ones with
// multi-row INSERTs, so that both write paths of the proxy are used.
func loadRows(ctx context.Context, conn *pgx.Conn, name string, rows [][]string) error {
	if len(rows) < 1000 {
		return execAll(ctx, conn, inserts(name, rows)...)
	}
	var b strings.Builder
	for _, row := range rows {
		for i, lit := range row {
			if i > 0 {
				b.WriteByte('\t')
			}
			switch {
			case lit == "NULL":
				b.WriteString(`\N`)
			case strings.HasPrefix(lit, "'"):
				b.WriteString(strings.ReplaceAll(lit[1:len(lit)-1], "''", "'"))
			default:
				b.WriteString(lit)
			}
		}
		b.WriteByte('\n')
	}
	sql := "COPY " + name + " FROM STDIN"
	if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(b.String()), sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

func reversed(rows [][]string) [][]string {
	out := make([][]string, len(rows))
	for i, r := range rows {
		out[len(rows)-1-i] = r
	}
	return out
}

func execAll(ctx context.Context, conn *pgx.Conn, sqls ...string) error {
	for _, sql := range sqls {
		if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			if len(sql) > 200 {
				sql = sql[:200] + "..."
			}
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	return nil
}

var loadOnce struct {
	sync.Once
	err error
}

// loaded loads the data set once for the package's tests.
func loaded(ctx context.Context) error {
	loadOnce.Do(func() { loadOnce.err = load(ctx) })
	return loadOnce.err
}

// load creates the oracle database and loads every table into it (plain tables, in
// public and, rows reversed, in schema rev) and through the proxy (distributed tables).
func load(ctx context.Context) error {
	ts := tables()
	admin, err := pgx.Connect(ctx, env.C.Coordinator.URL("postgres"))
	if err != nil {
		return err
	}
	err = execAll(ctx, admin, "CREATE DATABASE oracle")
	admin.Close(ctx)
	if err != nil {
		return err
	}
	oracle, err := pgx.Connect(ctx, oracleURL())
	if err != nil {
		return err
	}
	defer oracle.Close(ctx)
	proxy, err := pgx.Connect(ctx, proxyURL())
	if err != nil {
		return err
	}
	defer proxy.Close(ctx)
	if err := execAll(ctx, oracle, "CREATE SCHEMA rev"); err != nil {
		return err
	}
	for _, t := range ts {
		if err := execAll(ctx, oracle, t.ddl); err != nil {
			return err
		}
		if err := loadRows(ctx, oracle, t.name, t.rows); err != nil {
			return err
		}
		if err := execAll(ctx, oracle, "SET search_path = rev", t.ddl); err != nil {
			return err
		}
		if err := loadRows(ctx, oracle, t.name, reversed(t.rows)); err != nil {
			return err
		}
		if err := execAll(ctx, oracle, "RESET search_path", "ANALYZE "+t.name, "ANALYZE rev."+t.name); err != nil {
			return err
		}
		if err := execAll(ctx, proxy, t.ddl); err != nil {
			return err
		}
		if t.key != "" {
			if err := execAll(ctx, proxy,
				fmt.Sprintf("select master_create_distributed_table('%s', '%s')", t.name, t.key),
				fmt.Sprintf("select master_create_worker_shards('%s', %d, %d)", t.name, t.shards, t.rf)); err != nil {
				return err
			}
		}
		if err := loadRows(ctx, proxy, t.name, t.rows); err != nil {
			return err
		}
		// The load itself must agree before any query is worth comparing.
		var want, got int64
		q := "SELECT count(*) FROM " + t.name
		if err := oracle.QueryRow(ctx, q, pgx.QueryExecModeSimpleProtocol).Scan(&want); err != nil {
			return fmt.Errorf("oracle %s: %w", q, err)
		}
		if err := proxy.QueryRow(ctx, q, pgx.QueryExecModeSimpleProtocol).Scan(&got); err != nil {
			return fmt.Errorf("proxy %s: %w", q, err)
		}
		if want != got || want != int64(len(t.rows)) {
			return fmt.Errorf("%s: %d rows generated, oracle has %d, proxy counts %d", t.name, len(t.rows), want, got)
		}
	}
	return nil
}
