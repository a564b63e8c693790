// Package store keeps pgshard's distribution metadata on the coordinator, in pg_shard's
// schema pgs_distribution_metadata: it creates the schema, loads snapshots, writes changes
// and listens for the notifications with which proxies tell each other that the metadata
// changed. It also guards the prototypes of distributed tables on the coordinator: triggers
// that refuse writes reaching them, an event trigger that refuses views, rules, policies and
// functions over them, and event triggers that refuse DDL on them that pgshard did not
// authorize (ddl_authorization: no drift between a table and its shards) (schema.sql,
// events.sql).
package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/qualify"
	"github.com/pgshard/pgshard/router/sqllex"
)

//go:embed schema.sql
var schemaSQL string

//go:embed events.sql
var eventsSQL string

//go:embed depguard.sql
var depGuardSQL string

//go:embed twophase.sql
var twophaseSQL string

// Channel is the LISTEN/NOTIFY channel that announces metadata changes.
const Channel = "pgshard_metadata"

// LeaseChannel is the channel on which a proxy asks the others to release a shard's
// write lease.
const LeaseChannel = "pgshard_lease"

// SearchPath is the search_path of pgshard's own connections (the metadata store, the
// notification listener, leases, repair): pg_catalog first and the temporary schema
// last, so that no schema a user may create objects in, whatever the role's or the
// database's configured search_path, supplies a function, operator, type or table to
// pgshard's own SQL. Startup parameters set after the URL's options win over them.
const SearchPath = "pg_catalog, pg_temp"

// Store reads and writes the metadata on the coordinator.
type Store struct {
	pool *pgxpool.Pool
	url  string
	log  *slog.Logger
	// reload serializes loading a snapshot and storing it in the cache.
	reload sync.Mutex
	// afterLoad, when set (by tests), runs in Reload between the load and the store.
	afterLoad func()
	// listening says Watch's listener is connected, listening, and has loaded the
	// metadata since: the cache then hears of every change (a NOTIFY) within moments.
	listening atomic.Bool
}

// Open connects to the coordinator database at url (a libpq URL or DSN).
func Open(ctx context.Context, url string, log *slog.Logger) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store: coordinator URL: %w", err)
	}
	cfg.MaxConns = 8
	cfg.ConnConfig.RuntimeParams["application_name"] = "pgshard metadata"
	cfg.ConnConfig.RuntimeParams["search_path"] = SearchPath
	// pgshard's own statements quote strings for the default reading, whatever a role's
	// or the database's default (ALTER ... SET standard_conforming_strings) says.
	cfg.ConnConfig.RuntimeParams["standard_conforming_strings"] = "on"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Store{pool: pool, url: url, log: log}, nil
}

// Close closes the store's connections.
func (s *Store) Close() { s.pool.Close() }

// Pool exposes the connection pool for packages that run their own coordinator queries.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Migrate creates or upgrades the metadata schema. It is idempotent and safe to run from
// several proxies at once.
func (s *Store) Migrate(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Migrations are serialized by a lock on a metadata table, which no role without
		// access to the schema can take (any role may take an advisory lock, and keep
		// proxies from starting); the first migration, before that table exists, by an
		// advisory lock.
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT pg_catalog.to_regclass('pgs_distribution_metadata.generation') IS NOT NULL").Scan(&exists); err != nil {
			return err
		}
		lock := "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgshard.migrate'))"
		if exists {
			lock = "LOCK TABLE pgs_distribution_metadata.generation IN SHARE ROW EXCLUSIVE MODE"
		}
		if _, err := tx.Exec(ctx, lock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, schemaSQL+"\n"+nodeIdentSQL+"\n"+blockDistSQL); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, twophaseSQL); err != nil {
			return fmt.Errorf("two-phase commit records: %w", err)
		}
		// Event triggers need superuser; run them in a savepoint and go on without them.
		if _, err := tx.Exec(ctx, "SAVEPOINT events"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, eventsSQL+"\n"+depGuardSQL); err != nil {
			s.log.Warn("coordinator event triggers not installed (needs superuser): proxies learn only of DDL they relay themselves, and DDL on distributed tables made elsewhere (in functions, straight on the coordinator) is not refused (SHOW DRIFT reports its effects)", "err", err)
			_, err = tx.Exec(ctx, "ROLLBACK TO SAVEPOINT events")
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: create metadata schema: %w", err)
	}
	// Objects made before pgshard refused them still read the empty prototypes.
	rows, err := s.pool.Query(ctx, `SELECT p.relation_id::pg_catalog.regclass::text, u
		FROM pgs_distribution_metadata.partition p
		JOIN pg_catalog.pg_class c ON c.oid = p.relation_id,
		LATERAL pgs_distribution_metadata.prototype_users(p.relation_id) u`)
	if err != nil {
		return fmt.Errorf("store: list objects over distributed tables: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var table, user string
		if err := rows.Scan(&table, &user); err != nil {
			return fmt.Errorf("store: list objects over distributed tables: %w", err)
		}
		s.log.Warn("an object on the coordinator refers to a distributed table: inside the coordinator it reads the table's empty prototype (and its writes fail); drop it",
			"table", table, "object", user)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: list objects over distributed tables: %w", err)
	}
	return nil
}

// Load reads all metadata into a new snapshot, in one repeatable-read transaction.
func (s *Store) Load(ctx context.Context) (*metadata.Snapshot, error) {
	var snap *metadata.Snapshot
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		snap, err = load(ctx, tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: load metadata: %w", err)
	}
	return snap, nil
}

// byteOrderLocales are the libc locales whose collation compares strings byte by byte
// (for UTF-8, in code point order).
const byteOrderLocales = `('C', 'POSIX', 'C.UTF-8', 'C.utf8')`

func load(ctx context.Context, tx pgx.Tx) (*metadata.Snapshot, error) {
	// With only pg_catalog on the search path, every name in type names and default
	// expressions comes out schema-qualified, so they mean the same in any session.
	// With standard_conforming_strings on, the strings in default expressions come out
	// as PostgreSQL reads them by default (made portable below).
	if _, err := tx.Exec(ctx, "SET LOCAL search_path = pg_catalog; SET LOCAL standard_conforming_strings = on"); err != nil {
		return nil, err
	}
	nodes, err := loadNodes(ctx, tx)
	if err != nil {
		return nil, err
	}
	tables, order, err := loadTables(ctx, tx)
	if err != nil {
		return nil, err
	}
	if err := loadColumns(ctx, tx, tables); err != nil {
		return nil, err
	}
	if err := loadPrimaryKeys(ctx, tx, tables); err != nil {
		return nil, err
	}
	shards, err := loadShards(ctx, tx, tables)
	if err != nil {
		return nil, err
	}
	if err := loadPlacements(ctx, tx, shards); err != nil {
		return nil, err
	}
	aggs, err := loadAggregates(ctx, tx)
	if err != nil {
		return nil, err
	}
	snap := metadata.NewSnapshot(nodes, order)
	snap.SetAggregates(aggs)
	// The generation, read in the same snapshot as everything above. A coordinator whose
	// schema predates the generation table is caught up by Migrate before any load.
	if err := tx.QueryRow(ctx, `SELECT value FROM pgs_distribution_metadata.generation`).Scan(&snap.Generation); err != nil {
		return nil, err
	}
	if err := tx.QueryRow(ctx, `SELECT datcollate IN `+byteOrderLocales+` FROM pg_database WHERE datname = current_database()`).Scan(&snap.DefaultByteOrder); err != nil {
		return nil, err
	}
	return snap, nil
}

// eachRow runs query in tx and calls row for every row of its result; a failed query
// reports its error through rows.Err.
func eachRow(ctx context.Context, tx pgx.Tx, query string, row func(pgx.Rows) error) error {
	rows, _ := tx.Query(ctx, query)
	defer rows.Close()
	for rows.Next() {
		if err := row(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// loadNodes reads the worker nodes.
func loadNodes(ctx context.Context, tx pgx.Tx) ([]metadata.Node, error) {
	var nodes []metadata.Node
	err := eachRow(ctx, tx, `SELECT node_name, node_port FROM pgs_distribution_metadata.node`, func(rows pgx.Rows) error {
		var n metadata.Node
		if err := rows.Scan(&n.Name, &n.Port); err != nil {
			return err
		}
		nodes = append(nodes, n)
		return nil
	})
	return nodes, err
}

// tablesSQL lists the distributed tables, with whether any unique or exclusion
// constraint is on them.
const tablesSQL = `
		SELECT p.relation_id, n.nspname, c.relname, p.partition_method::text, p.key,
		       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = p.relation_id AND (i.indisunique OR i.indisexclusion))
		FROM pgs_distribution_metadata.partition p
		JOIN pg_class c ON c.oid = p.relation_id
		JOIN pg_namespace n ON n.oid = c.relnamespace`

// loadTables reads the distributed tables, by OID and in the catalog's order.
func loadTables(ctx context.Context, tx pgx.Tx) (map[uint32]*metadata.Table, []*metadata.Table, error) {
	tables := map[uint32]*metadata.Table{}
	var order []*metadata.Table
	err := eachRow(ctx, tx, tablesSQL, func(rows pgx.Rows) error {
		t := &metadata.Table{KeyIndex: -1}
		var method string
		if err := rows.Scan(&t.OID, &t.Schema, &t.Name, &method, &t.Key, &t.HasUnique); err != nil {
			return err
		}
		if method != "" {
			t.Method = method[0]
		}
		tables[t.OID] = t
		order = append(order, t)
		return nil
	})
	return tables, order, err
}

// columnsSQL lists the columns of the distributed tables with what the proxy needs to
// hash, cast, default and compare their values.
const columnsSQL = `
		SELECT a.attrelid, a.attname, a.atttypid, b.base,
		       format_type(a.atttypid, a.atttypmod), a.attnotnull,
		       a.attidentity::text, a.attgenerated::text,
		       CASE WHEN a.attidentity <> '' THEN
		            format('nextval(%L::regclass)', pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname))
		            ELSE coalesce(pg_get_expr(d.adbin, d.adrelid), '') END,
		       coalesce(d.adbin::text LIKE '{CONST %', false),
		       coalesce((SELECT CASE co.collprovider
		                        WHEN 'd' THEN (SELECT datcollate IN ` + byteOrderLocales + ` FROM pg_database WHERE datname = current_database())
		                        WHEN 'c' THEN co.collcollate IN ` + byteOrderLocales + `
		                        ELSE false END
		                 FROM pg_collation co WHERE co.oid = a.attcollation), true),
		       format_type(b.base, -1), b.typmod,
		       coalesce(lf.name, ''), coalesce(lf.nargs, 0)
		FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		-- The base type under any domains, and the type modifier assignment applies
		-- (the column's, or the innermost domain's that has one).
		CROSS JOIN LATERAL (
		  WITH RECURSIVE chain(oid, typmod, depth) AS (
		    SELECT a.atttypid, a.atttypmod, 0
		    UNION ALL
		    SELECT bt.typbasetype, CASE WHEN ch.typmod >= 0 THEN ch.typmod ELSE bt.typtypmod END, ch.depth + 1
		    FROM chain ch JOIN pg_type bt ON bt.oid = ch.oid WHERE bt.typtype = 'd')
		  SELECT chain.oid AS base, chain.typmod FROM chain ORDER BY depth DESC LIMIT 1) b
		-- The base type's length coercion function (bpchar(bpchar, int, bool), ...).
		LEFT JOIN LATERAL (
		  SELECT format('%I.%I', pn.nspname, pp.proname) AS name, pp.pronargs::int AS nargs
		  FROM pg_cast pc JOIN pg_proc pp ON pp.oid = pc.castfunc JOIN pg_namespace pn ON pn.oid = pp.pronamespace
		  WHERE pc.castsource = b.base AND pc.casttarget = b.base AND pc.castmethod = 'f' LIMIT 1) lf ON true
		WHERE a.attrelid IN (SELECT relation_id FROM pgs_distribution_metadata.partition)
		  AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attrelid, a.attnum`

// loadColumns reads the columns of tables, in order, and each table's key column.
func loadColumns(ctx context.Context, tx pgx.Tx, tables map[uint32]*metadata.Table) error {
	return eachRow(ctx, tx, columnsSQL, func(rows pgx.Rows) error {
		var relid uint32
		var c metadata.Column
		var ident, gen string
		if err := rows.Scan(&relid, &c.Name, &c.TypeOID, &c.HashType, &c.TypeName, &c.NotNull, &ident, &gen, &c.Default, &c.DefaultOnShard, &c.ByteOrder, &c.BaseName, &c.Typmod, &c.LengthFunc, &c.LengthArgs); err != nil {
			return err
		}
		portableColumn(&c, ident, gen)
		if t := tables[relid]; t != nil {
			if c.Name == t.Key {
				t.KeyIndex = len(t.Columns)
			}
			t.Columns = append(t.Columns, c)
		}
		return nil
	})
}

// portableColumn completes a column read from the catalog: names qualified and strings
// made portable so that the proxy can use them in clients' sessions, and the identity and
// generated kinds (attidentity, attgenerated).
func portableColumn(c *metadata.Column, ident, gen string) {
	// The proxy evaluates defaults and casts to these types in clients' sessions,
	// under their search_path: pg_catalog's names, named. (Text the parser
	// does not take back stays as PostgreSQL printed it.)
	for _, s := range []*string{&c.Default, &c.TypeName, &c.BaseName} {
		if *s == "" {
			continue
		}
		qualified := qualify.TypeName
		if s == &c.Default {
			qualified = qualify.Expr
		}
		q, err := qualified(*s)
		if err == nil {
			*s = q
		}
	}
	// A default runs in client sessions whatever their standard_conforming_strings.
	c.Default = sqllex.PortableText(c.Default)
	if ident != "" {
		c.Identity = ident[0]
	}
	if gen != "" {
		c.Generated = gen[0]
	}
	if c.Generated != 0 {
		// A generated column's expression is not a default to send.
		c.DefaultOnShard = true
	}
}

// primaryKeysSQL lists the primary key columns of the distributed tables, in key order.
const primaryKeysSQL = `
		SELECT i.indrelid, a.attname
		FROM pg_index i
		JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, n) ON true
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indisprimary AND i.indrelid IN (SELECT relation_id FROM pgs_distribution_metadata.partition)
		ORDER BY i.indrelid, k.n`

// loadPrimaryKeys sets the tables' primary keys (column positions).
func loadPrimaryKeys(ctx context.Context, tx pgx.Tx, tables map[uint32]*metadata.Table) error {
	return eachRow(ctx, tx, primaryKeysSQL, func(rows pgx.Rows) error {
		var relid uint32
		var name string
		if err := rows.Scan(&relid, &name); err != nil {
			return err
		}
		if t := tables[relid]; t != nil {
			if i := t.ColumnIndex(name); i >= 0 {
				t.PrimaryKey = append(t.PrimaryKey, i)
			}
		}
		return nil
	})
}

// loadShards reads the shards of tables and adds them to their tables; it returns them
// by ID.
func loadShards(ctx context.Context, tx pgx.Tx, tables map[uint32]*metadata.Table) (map[int64]*metadata.Shard, error) {
	shards := map[int64]*metadata.Shard{}
	err := eachRow(ctx, tx, `SELECT id, relation_id, storage::text, min_value, max_value FROM pgs_distribution_metadata.shard`, func(rows pgx.Rows) error {
		var sh metadata.Shard
		var storage, minv, maxv string
		if err := rows.Scan(&sh.ID, &sh.TableID, &storage, &minv, &maxv); err != nil {
			return err
		}
		t := tables[sh.TableID]
		if t == nil {
			return nil
		}
		if storage != "" {
			sh.Storage = storage[0]
		}
		lo, err1 := strconv.ParseInt(minv, 10, 32)
		hi, err2 := strconv.ParseInt(maxv, 10, 32)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("shard %d has an invalid hash range [%s, %s]", sh.ID, minv, maxv)
		}
		sh.Min, sh.Max = int32(lo), int32(hi)
		p := &sh
		shards[sh.ID] = p
		t.Shards = append(t.Shards, p)
		return nil
	})
	return shards, err
}

// loadPlacements adds their placements to shards, in ID order.
func loadPlacements(ctx context.Context, tx pgx.Tx, shards map[int64]*metadata.Shard) error {
	return eachRow(ctx, tx, `SELECT id, shard_id, shard_state, node_name, node_port
		FROM pgs_distribution_metadata.shard_placement ORDER BY shard_id, id`, func(rows pgx.Rows) error {
		var p metadata.Placement
		if err := rows.Scan(&p.ID, &p.ShardID, &p.State, &p.Node.Name, &p.Node.Port); err != nil {
			return err
		}
		if sh := shards[p.ShardID]; sh != nil {
			sh.Placements = append(sh.Placements, p)
		}
		return nil
	})
}

// loadAggregates reads the names of the aggregate functions on the coordinator.
func loadAggregates(ctx context.Context, tx pgx.Tx) ([]string, error) {
	var aggs []string
	err := eachRow(ctx, tx, `SELECT DISTINCT proname FROM pg_proc WHERE prokind = 'a'`, func(rows pgx.Rows) error {
		var n string
		if err := rows.Scan(&n); err != nil {
			return err
		}
		aggs = append(aggs, n)
		return nil
	})
	return aggs, err
}

// Watch keeps cache current: it loads a snapshot, then reloads whenever a notification on
// Channel arrives, reconnecting (and reloading) after connection failures. Notifications
// on LeaseChannel go to onLease (if not nil). It returns when ctx is done. ready, if not
// nil, is closed after the first successful load.
func (s *Store) Watch(ctx context.Context, cache *metadata.Cache, ready chan<- struct{}, onLease func(payload string)) error {
	const firstBackoff = 100 * time.Millisecond
	backoff := firstBackoff
	for {
		listened, err := s.watchOnce(ctx, cache, &ready, onLease)
		s.listening.Store(false)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if listened {
			// The listener worked until now: a new loss starts the backoff afresh (it
			// grew only over consecutive failures; left grown, every later loss would
			// leave the proxy deaf to other proxies' marks for seconds: Current).
			backoff = firstBackoff
		}
		s.log.Warn("metadata listener lost; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

// watchOnce listens on one connection until it fails; listened says it got as far as
// listening and loading the metadata.
func (s *Store) watchOnce(ctx context.Context, cache *metadata.Cache, ready *chan<- struct{}, onLease func(string)) (listened bool, err error) {
	cfg, err := pgconn.ParseConfig(s.url)
	if err != nil {
		return false, err
	}
	cfg.RuntimeParams["search_path"] = SearchPath
	changed := false
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) {
		switch n.Channel {
		case Channel:
			changed = true
		case LeaseChannel:
			if onLease != nil {
				onLease(n.Payload)
			}
		}
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+Channel+"; LISTEN "+LeaseChannel).ReadAll(); err != nil {
		return false, err
	}
	changed = true
	for {
		if changed {
			changed = false
			if _, err := s.Reload(ctx, cache); err != nil {
				return listened, err
			}
			// Loaded after LISTEN: every later change comes as a notification.
			listened = true
			s.listening.Store(true)
			if *ready != nil {
				close(*ready)
				*ready = nil
			}
		}
		if err := conn.WaitForNotification(ctx); err != nil {
			return listened, err
		}
		// Coalesce a burst of notifications into one reload.
		drain, cancel := context.WithTimeout(ctx, 2*time.Millisecond)
		for conn.WaitForNotification(drain) == nil {
		}
		cancel()
	}
}

// Current brings cache up to date with the coordinator when Watch's listener is not
// listening (lost, reconnecting): a change another proxy committed meanwhile (a placement
// marked inactive) sends no notification here, and a statement planned from the cache
// would read from the placement marked. It asks for the metadata's generation (one
// query) and reloads when it moved past the cache's. While the listener listens it does
// nothing (a change arrives as a NOTIFY). An error (this proxy cannot reach the
// coordinator) leaves the cache as it is: a coordinator that is down commits no marks,
// but one that only this proxy cannot reach may (a known limit, in the README).
func (s *Store) Current(ctx context.Context, cache *metadata.Cache) error {
	var err error
	// Up to three attempts, each on a new connection if need be: what lost the listener
	// (a coordinator restart, terminated backends) broke the pool's idle connections too.
	for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
		if s.listening.Load() {
			return nil
		}
		var gen int64
		if err = s.pool.QueryRow(ctx, `SELECT value FROM pgs_distribution_metadata.generation`).Scan(&gen); err != nil {
			err = fmt.Errorf("store: metadata generation: %w", err)
			continue
		}
		if gen <= cache.Load().Generation {
			return nil
		}
		if _, err = s.Reload(ctx, cache); err == nil {
			return nil
		}
	}
	return err
}

// Reload loads a snapshot and stores it in cache at once (a proxy does this after its own
// metadata changes, so the client's next statement sees them).
// A snapshot loaded before a change that the cache already has (a placement state this
// proxy changed meanwhile) is not stored: Reload loads again. A coordinator whose
// generation went backwards (its metadata restored or recreated) is believed after a few
// loads.
func (s *Store) Reload(ctx context.Context, cache *metadata.Cache) (*metadata.Snapshot, error) {
	s.reload.Lock()
	defer s.reload.Unlock()
	for attempt := 1; ; attempt++ {
		snap, err := s.Load(ctx)
		if err != nil {
			return nil, err
		}
		if s.afterLoad != nil {
			s.afterLoad()
		}
		if cache.Store(snap) {
			return snap, nil
		}
		if attempt == 3 {
			if cur := cache.Load(); snap.Generation < cur.Generation {
				s.log.Warn("the coordinator's metadata generation went backwards; taking its metadata as it is",
					"loaded", snap.Generation, "had", cur.Generation)
				cache.Replace(snap)
				return snap, nil
			}
			// Loaded after the snapshot the cache holds, but before a change this proxy
			// committed and applied: with changes committed in quick succession (a burst
			// of marks, repairs one after another), every load can miss the latest one.
			// The load is taken with the proxy's newer changes kept on top; replacing
			// the cache with it would undo them until the next reload (a repaired
			// placement shown inactive again, and writes skipping it meanwhile).
			cache.Rebase(snap)
			return snap, nil
		}
	}
}

// AddNode registers a worker. It reports false when the node was already registered.
func (s *Store) AddNode(ctx context.Context, n metadata.Node) (bool, error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO pgs_distribution_metadata.node (node_name, node_port)
		VALUES ($1, $2) ON CONFLICT DO NOTHING`, n.Name, n.Port)
	if err != nil {
		return false, fmt.Errorf("store: add node: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// ErrAlreadyDistributed is returned by AddPartition for a table that has a partition row.
var ErrAlreadyDistributed = errors.New("store: table is already distributed")

// ErrNotEmpty is returned by AddPartition for a table that holds rows.
var ErrNotEmpty = errors.New("store: table is not empty")

// UsersError is returned by AddPartition for a table that views, rules, policies or
// functions on the coordinator refer to: they would read and write its empty prototype.
type UsersError struct {
	// Objects lists them, as pg_describe_object names them.
	Objects string
}

func (e *UsersError) Error() string { return "store: objects refer to the table: " + e.Objects }

// AddPartition records a distributed table (pg_shard's partition row) and, in the same
// transaction, adds the triggers that make its prototype on the coordinator refuse writes
// (see schema.sql), after which it checks that the prototype is empty. It refuses a table
// that views, rules, policies or functions refer to (*UsersError).
func (s *Store) AddPartition(ctx context.Context, relid uint32, method byte, key string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var users *string
		if err := tx.QueryRow(ctx, "SELECT pg_catalog.string_agg(u, ', ') FROM pgs_distribution_metadata.prototype_users($1) u", relid).Scan(&users); err != nil {
			return err
		}
		if users != nil {
			return &UsersError{Objects: *users}
		}
		_, err := tx.Exec(ctx, `INSERT INTO pgs_distribution_metadata.partition (relation_id, partition_method, key)
			VALUES ($1, $2::text::"char", $3)`, relid, string(method), key)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" {
			return ErrAlreadyDistributed
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SAVEPOINT guard"); err != nil {
			return err
		}
		var rows bool
		err = tx.QueryRow(ctx, "SELECT pgs_distribution_metadata.guard_prototype($1)", relid).Scan(&rows)
		if errors.As(err, &pe) && pe.Code == "42501" {
			// pgshard's coordinator user neither owns the table nor is a superuser.
			s.log.Warn("distributed table's prototype left without the triggers that refuse writes from inside the coordinator", "relation", relid, "err", err)
			_, err = tx.Exec(ctx, "ROLLBACK TO SAVEPOINT guard")
			return err
		}
		if err != nil {
			return err
		}
		if rows {
			return ErrNotEmpty
		}
		return nil
	})
	var ue *UsersError
	if err != nil && !errors.Is(err, ErrAlreadyDistributed) && !errors.Is(err, ErrNotEmpty) && !errors.As(err, &ue) {
		return fmt.Errorf("store: add partition: %w", err)
	}
	return err
}

// Advisory lock namespaces on the coordinator (the high byte of a bigint lock key; 1 was
// shard creation's, which locks the partition row now: any role may take an advisory
// lock).
const (
	// LockShard is the namespace of shard write locks (see the proxy's lock manager).
	LockShard = 2
	// LockRepair is the namespace of shard repair locks.
	LockRepair = 3
	// LockKeyValue is the namespace of the proxy's key locks: one per shard and hash of a
	// partition-key value (KeyLock).
	LockKeyValue = 4
)

// KeyLock returns the advisory lock key of the rows of a shard whose partition-key value
// hashes to hash: the shard id's low 24 bits and the hash (two shards or values that share
// a key only lock more than they need).
func KeyLock(shardID int64, hash int32) int64 {
	return LockKey(LockKeyValue, (shardID&0xFFFFFF)<<32|int64(uint32(hash)))
}

// LockKey returns the bigint advisory lock key for id in a namespace.
func LockKey(namespace int, id int64) int64 { return int64(namespace)<<56 | id&(1<<56-1) }

// ShardRange is the hash-token interval of a new shard.
type ShardRange struct{ Min, Max int32 }

// ErrCreatingShards is returned by CreateShards while another session creates the
// table's shards.
var ErrCreatingShards = errors.New("store: the table's shards are being created by another session")

// CreateShards inserts shard rows for relid, lets place create the shard tables on the
// workers, and records a finalized placement for every node place reports for each shard,
// all in one coordinator transaction, so that a failure leaves no metadata behind. ok is
// false, and nothing happens, when the table already has shards.
func (s *Store) CreateShards(ctx context.Context, relid uint32, ranges []ShardRange,
	place func(ctx context.Context, shardIDs []int64) ([][]metadata.Node, error)) (ok bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The table's partition row, locked: no other role can (an advisory lock, anyone
		// may take), and not waited for (a wait holds one of the few connections of this
		// pool).
		_, err := tx.Exec(ctx, `SELECT FROM pgs_distribution_metadata.partition
			WHERE relation_id OPERATOR(pg_catalog.=) $1::pg_catalog.oid FOR UPDATE NOWAIT`, relid)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "55P03" {
			return ErrCreatingShards
		}
		if err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM pgs_distribution_metadata.shard WHERE relation_id = $1", relid).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		ok = true
		ids := make([]int64, len(ranges))
		for i, r := range ranges {
			err := tx.QueryRow(ctx, `INSERT INTO pgs_distribution_metadata.shard (relation_id, storage, min_value, max_value)
				VALUES ($1, 't', $2, $3) RETURNING id`, relid, strconv.Itoa(int(r.Min)), strconv.Itoa(int(r.Max))).Scan(&ids[i])
			if err != nil {
				return err
			}
		}
		nodes, err := place(ctx, ids)
		if err != nil {
			return err
		}
		for i, id := range ids {
			for _, n := range nodes[i] {
				if _, err := tx.Exec(ctx, `INSERT INTO pgs_distribution_metadata.shard_placement (shard_id, shard_state, node_name, node_port)
					VALUES ($1, $2, $3, $4)`, id, int32(metadata.StateFinalized), n.Name, n.Port); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return ok, err
}

// SetPlacementStates changes placement states in one transaction and returns when the
// change is committed, with the metadata generation it committed at.
//
// A change that would leave a shard without a finalized placement is refused with a
// *LastPlacementError (and nothing changes): the placements of the shards concerned are
// locked first, so that two proxies marking the two placements of a shard at once cannot
// both succeed.
func (s *Store) SetPlacementStates(ctx context.Context, states map[int64]metadata.ShardState) (gen int64, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var ids []int64
		for id := range states {
			ids = append(ids, id)
		}
		rows, err := tx.Query(ctx, `SELECT id, shard_id, shard_state FROM pgs_distribution_metadata.shard_placement
			WHERE shard_id IN (SELECT shard_id FROM pgs_distribution_metadata.shard_placement WHERE id = ANY($1))
			ORDER BY id FOR UPDATE`, ids)
		if err != nil {
			return fmt.Errorf("store: lock placements: %w", err)
		}
		finalized := map[int64]int{} // shard -> finalized placements after the change
		var order []int64
		var placementOf = map[int64]int64{} // shard -> a placement of the change
		for rows.Next() {
			var id, shard int64
			var st int32
			if err := rows.Scan(&id, &shard, &st); err != nil {
				return err
			}
			if _, ok := finalized[shard]; !ok {
				finalized[shard] = 0
				order = append(order, shard)
			}
			if ns, ok := states[id]; ok {
				st = int32(ns)
				placementOf[shard] = id
			}
			if metadata.ShardState(st) == metadata.StateFinalized {
				finalized[shard]++
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: lock placements: %w", err)
		}
		for _, shard := range order {
			if finalized[shard] == 0 {
				return &LastPlacementError{ShardID: shard, PlacementID: placementOf[shard]}
			}
		}
		for id, st := range states {
			if _, err := tx.Exec(ctx, `UPDATE pgs_distribution_metadata.shard_placement SET shard_state = $2 WHERE id = $1`, id, int32(st)); err != nil {
				return fmt.Errorf("store: set placement %d state: %w", id, err)
			}
		}
		// Bump the generation now (the deferred triggers), and read it: nothing changes
		// after it in this transaction.
		if _, err := tx.Exec(ctx, `SET CONSTRAINTS ALL IMMEDIATE`); err != nil {
			return fmt.Errorf("store: set placement states: %w", err)
		}
		return tx.QueryRow(ctx, `SELECT value FROM pgs_distribution_metadata.generation`).Scan(&gen)
	})
	return gen, err
}

// LastPlacementError refuses a state change that would leave a shard without a finalized
// placement: the last one that holds the shard's data is never marked inactive.
type LastPlacementError struct {
	ShardID, PlacementID int64
}

func (e *LastPlacementError) Error() string {
	return fmt.Sprintf("placement %d is the last finalized placement of shard %d", e.PlacementID, e.ShardID)
}

// ChangePlacementStates changes placement states on the coordinator and, once that is
// committed, in cache (at the change's generation, so that no snapshot loaded before it
// replaces it).
func (s *Store) ChangePlacementStates(ctx context.Context, cache *metadata.Cache, states map[int64]metadata.ShardState) error {
	gen, err := s.SetPlacementStates(ctx, states)
	if err != nil {
		return err
	}
	cache.Apply(gen, states)
	return nil
}

// DropTable removes a distributed table's metadata rows.
func (s *Store) DropTable(ctx context.Context, relid uint32) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, q := range []string{
			`DELETE FROM pgs_distribution_metadata.shard_placement WHERE shard_id IN (SELECT id FROM pgs_distribution_metadata.shard WHERE relation_id = $1)`,
			`DELETE FROM pgs_distribution_metadata.shard WHERE relation_id = $1`,
			`DELETE FROM pgs_distribution_metadata.partition WHERE relation_id = $1`,
		} {
			if _, err := tx.Exec(ctx, q, relid); err != nil {
				return fmt.Errorf("store: drop table metadata: %w", err)
			}
		}
		return nil
	})
}

// DropTables removes distributed tables' metadata rows in a transaction that commits
// only after commitDrop (the client's DROP TABLE of the tables) has returned nil: the
// metadata goes after the client's role was allowed to drop the tables, and never
// before the tables are gone (a crash in between leaves rows naming dropped tables,
// which loads skip).
func (s *Store) DropTables(ctx context.Context, relids []uint32, commitDrop func() error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("store: drop table metadata: %w", err)
	}
	defer tx.Rollback(context.Background())
	for _, q := range []string{
		`DELETE FROM pgs_distribution_metadata.shard_placement WHERE shard_id OPERATOR(pg_catalog.=) ANY (SELECT id FROM pgs_distribution_metadata.shard WHERE relation_id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[]))`,
		`DELETE FROM pgs_distribution_metadata.shard WHERE relation_id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])`,
		`DELETE FROM pgs_distribution_metadata.partition WHERE relation_id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])`,
	} {
		if _, err := tx.Exec(ctx, q, relids); err != nil {
			return fmt.Errorf("store: drop table metadata: %w", err)
		}
	}
	if err := commitDrop(); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("store: drop table metadata: %w", err)
	}
	return nil
}

// Repair is a row of the repair history.
type Repair struct {
	ID          int64
	ShardID     int64
	PlacementID int64
	Source      metadata.Node
	Target      metadata.Node
	StartedAt   time.Time
	FinishedAt  time.Time // zero while running
	State       string    // running, succeeded, failed
	RowsCopied  int64
	BytesCopied int64
	// SourceBytes is the size of the source shard table when the copy started.
	SourceBytes int64
	Trigger     string // function, statement, background
	Error       string
}

// Progress is the copy's progress in percent, by bytes.
func (r *Repair) Progress() int {
	switch {
	case r.State == "succeeded":
		return 100
	case r.SourceBytes <= 0:
		return 0
	}
	p := int(r.BytesCopied * 100 / r.SourceBytes)
	if p > 99 {
		p = 99
	}
	return p
}

// Repairs returns the most recent repairs, newest first.
func (s *Store) Repairs(ctx context.Context, limit int) ([]Repair, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, shard_id, placement_id, source_node_name, source_node_port,
		target_node_name, target_node_port, started_at, coalesce(finished_at, 'epoch'), state, rows_copied,
		bytes_copied, source_bytes, trigger, coalesce(error, '')
		FROM pgs_distribution_metadata.repair ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("store: repairs: %w", err)
	}
	defer rows.Close()
	var out []Repair
	for rows.Next() {
		var r Repair
		if err := rows.Scan(&r.ID, &r.ShardID, &r.PlacementID, &r.Source.Name, &r.Source.Port, &r.Target.Name, &r.Target.Port,
			&r.StartedAt, &r.FinishedAt, &r.State, &r.RowsCopied, &r.BytesCopied, &r.SourceBytes, &r.Trigger, &r.Error); err != nil {
			return nil, err
		}
		if r.FinishedAt.Unix() == 0 {
			r.FinishedAt = time.Time{}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// StartRepair records a running repair and returns its id.
func (s *Store) StartRepair(ctx context.Context, shardID, placementID int64, source, target metadata.Node, trigger string) (int64, error) {
	var id int64
	err := s.pool.QueryRow(ctx, `INSERT INTO pgs_distribution_metadata.repair
		(shard_id, placement_id, source_node_name, source_node_port, target_node_name, target_node_port, trigger)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`, shardID, placementID, source.Name, source.Port, target.Name, target.Port, trigger).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("store: record repair: %w", err)
	}
	return id, nil
}

// RepairProgress records a running repair's progress.
func (s *Store) RepairProgress(ctx context.Context, id, bytes, sourceBytes int64) error {
	_, err := s.pool.Exec(ctx, `UPDATE pgs_distribution_metadata.repair SET bytes_copied = $2, source_bytes = $3 WHERE id = $1`, id, bytes, sourceBytes)
	return err
}

// FinishRepair records a repair's outcome.
func (s *Store) FinishRepair(ctx context.Context, id int64, state string, rows, bytes, sourceBytes int64, errText string) error {
	_, err := s.pool.Exec(ctx, `UPDATE pgs_distribution_metadata.repair SET finished_at = now(), state = $2,
		rows_copied = $3, bytes_copied = $4, source_bytes = $5, error = nullif($6, '') WHERE id = $1`, id, state, rows, bytes, sourceBytes, errText)
	if err != nil {
		return fmt.Errorf("store: record repair outcome: %w", err)
	}
	return nil
}
