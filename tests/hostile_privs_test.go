package tests

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/tests/testproxy"
)

// Issue 10, items 3, 4, 7 and the SHOW part of 9: who may call pgshard's functions and
// admin statements, as an ordinary role (LOGIN, CREATE on public, nothing more).

// wantSQLState fails the test unless err is a PostgreSQL error with code (and, when msg
// is not empty, a message containing msg).
func wantSQLState(t *testing.T, what string, err error, code, msg string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Errorf("%s: got %v, want error %s", what, err, code)
		return
	}
	if pe.Code != code || (msg != "" && !strings.Contains(pe.Message, msg)) {
		t.Errorf("%s: got %s %q, want %s %q", what, pe.Code, pe.Message, code, msg)
	}
}

// shardOwners returns the owners of the shard tables of table (named table_<id>) on every
// worker, counted.
func shardOwners(t *testing.T, table string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, w := range env.C.Workers {
		conn := connectServer(t, w)
		rows, err := conn.Query(context.Background(), `SELECT tableowner FROM pg_tables
			WHERE schemaname = 'public' AND tablename ~ ('^' || $1 || '_[0-9]+$')`, table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var o string
			if err := rows.Scan(&o); err != nil {
				t.Fatal(err)
			}
			out[o]++
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
	}
	return out
}

// Item 3: distributing, or creating the shards of, another role's table needs ownership
// (or membership in the owning role, or superuser); the shards belong to the table's owner.
func TestHostileDistributeOthersTable(t *testing.T) {
	ctx := context.Background()
	alice := unprivilegedRole(t, "alice")
	app := unprivilegedRole(t, "app")
	member := unprivilegedRole(t, "member")
	for _, s := range env.C.Servers() {
		if _, err := s.Exec(ctx, "postgres", fmt.Sprintf("GRANT %s TO %s", alice, member)); err != nil {
			t.Fatal(err)
		}
	}
	ac := connectAs(t, env.P, alice)
	pc := connectAs(t, env.P, app)
	mc := connectAs(t, env.P, member)
	su := connect(t)
	secret := uniqueName("secret")
	mine := uniqueName("mine")
	bymember := uniqueName("bymember")
	mustExec(t, ac,
		fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v text)", secret),
		fmt.Sprintf("GRANT SELECT ON %s TO %s", secret, app),
		fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v text)", bymember))
	t.Cleanup(func() {
		su.Exec(context.Background(), fmt.Sprintf("DROP TABLE IF EXISTS %s, %s, %s", secret, mine, bymember))
	})

	_, err := pc.Exec(ctx, fmt.Sprintf("select master_create_distributed_table('%s', 'id')", secret))
	wantSQLState(t, "app distributes alice's table", err, "42501", "must be owner of table "+secret)
	if n := queryString(t, su, fmt.Sprintf("SELECT count(*)::text FROM pgs_distribution_metadata.partition WHERE relation_id = '%s'::regclass", secret)); n != "0" {
		t.Errorf("app's refused call left %s partition rows", n)
	}

	// alice distributes her own table; app may not create its shards.
	mustExec(t, ac, fmt.Sprintf("select master_create_distributed_table('%s', 'id')", secret))
	_, err = pc.Exec(ctx, fmt.Sprintf("select master_create_worker_shards('%s', 4, 2)", secret))
	wantSQLState(t, "app creates the shards of alice's table", err, "42501", "must be owner of table "+secret)
	if got := shardOwners(t, secret); len(got) != 0 {
		t.Errorf("app's refused call created shard tables: %v", got)
	}

	// A member of the owning role may, as in PostgreSQL; the shards belong to alice.
	mustExec(t, mc,
		fmt.Sprintf("select master_create_distributed_table('%s', 'id')", bymember),
		fmt.Sprintf("select master_create_worker_shards('%s', 4, 2)", bymember))
	if got := shardOwners(t, bymember); len(got) != 1 || got[alice] != 8 {
		t.Errorf("shards created by a member of the owning role belong to %v, want 8 to %s", got, alice)
	}

	// A superuser may do anything; the shards still belong to alice, who can use them.
	mustExec(t, su, fmt.Sprintf("select master_create_worker_shards('%s', 4, 2)", secret))
	if got := shardOwners(t, secret); len(got) != 1 || got[alice] != 8 {
		t.Errorf("shards created by a superuser for alice's table belong to %v, want 8 to %s", got, alice)
	}
	mustExec(t, ac, fmt.Sprintf("INSERT INTO %s VALUES (1, 'a'), (2, 'b')", secret))
	if n := queryString(t, ac, fmt.Sprintf("SELECT count(*)::text FROM %s", secret)); n != "2" {
		t.Errorf("alice reads %s rows of her table, want 2", n)
	}
	// app was granted SELECT on the coordinator only (GRANT does not reach shards, see the
	// README), but her own table is hers: she created it, and owns it everywhere.
	mine2 := mine
	mustExec(t, pc,
		fmt.Sprintf("CREATE TABLE %s (id int, v text)", mine2),
		fmt.Sprintf("select master_create_distributed_table('%s', 'id')", mine2),
		fmt.Sprintf("select master_create_worker_shards('%s', 2, 1)", mine2),
		fmt.Sprintf("INSERT INTO %s VALUES (1, 'x')", mine2))
	if got := shardOwners(t, mine2); len(got) != 1 || got[app] != 2 {
		t.Errorf("app's own shards belong to %v, want 2 to %s", got, app)
	}
}

// fakeServer is a TCP listener that answers every startup with a request for a
// cleartext password and records what it receives.
type fakeServer struct {
	ln   net.Listener
	port int
	mu   sync.Mutex
	got  []string // passwords received
	conn int      // connections accepted
	wg   sync.WaitGroup
}

func startFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{ln: ln, port: ln.Addr().(*net.TCPAddr).Port}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conn++
			f.mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.serve(nc)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		f.wg.Wait()
	})
	return f
}

func (f *fakeServer) serve(nc net.Conn) {
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	be := pgproto3.NewBackend(nc, nc)
	for {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		switch msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := nc.Write([]byte{'N'}); err != nil {
				return
			}
			continue
		case *pgproto3.StartupMessage:
		default:
			return
		}
		break
	}
	be.Send(&pgproto3.AuthenticationCleartextPassword{})
	if be.Flush() != nil {
		return
	}
	be.SetAuthType(pgproto3.AuthTypeCleartextPassword)
	msg, err := be.Receive()
	if err != nil {
		return
	}
	if pm, ok := msg.(*pgproto3.PasswordMessage); ok {
		f.mu.Lock()
		f.got = append(f.got, pm.Password)
		f.mu.Unlock()
	}
	be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: "password authentication failed"})
	be.Flush()
}

func (f *fakeServer) received() (int, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conn, append([]string(nil), f.got...)
}

// Item 4: an ordinary role cannot make the proxy connect anywhere with the proxy's own
// credentials: cluster-changing functions and statements are for superusers.
func TestHostileAddNodeLeaksNoPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const password = "coordinator-s3cret"
	url := strings.Replace(env.C.Coordinator.URL("postgres"), "postgres@", "postgres:"+password+"@", 1)
	p, err := testproxy.Start(ctx, url, testproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	fake := startFakeServer(t)
	app := unprivilegedRole(t, "app")
	pc := connectAs(t, p, app)

	_, err = pc.Exec(ctx, fmt.Sprintf("select master_add_node('127.0.0.1', %d)", fake.port))
	wantSQLState(t, "master_add_node as an ordinary role", err, "42501", "permission denied")
	// The node list of a SELECT over a table, as in the seed's repair query.
	_, err = pc.Exec(ctx, fmt.Sprintf("select master_add_node('127.0.0.1', p) from generate_series(%d, %d) p", fake.port, fake.port))
	wantSQLState(t, "master_add_node over rows as an ordinary role", err, "42501", "permission denied")
	n, got := fake.received()
	for _, pw := range got {
		if strings.Contains(pw, password) {
			t.Errorf("the coordinator's password reached a server an ordinary role chose: %q", pw)
		}
	}
	if n != 0 {
		t.Errorf("the proxy connected %d times to a server an ordinary role chose", n)
	}
	if snap := p.Server().Snapshot(); len(snap.Nodes) != len(env.C.Workers) {
		t.Errorf("nodes after refused calls: %v", snap.Nodes)
	}

	// The other cluster-changing calls are refused before anything happens.
	_, err = pc.Exec(ctx, fmt.Sprintf("select master_copy_shard_placement(10000, '127.0.0.1', %d, '127.0.0.1', %d)", fake.port, fake.port))
	wantSQLState(t, "master_copy_shard_placement as an ordinary role", err, "42501", "permission denied")
	_, err = pc.Exec(ctx, "REPAIR SHARD 10000")
	wantSQLState(t, "REPAIR SHARD as an ordinary role", err, "42501", "permission denied")
	if n, _ := fake.received(); n != 0 {
		t.Errorf("the proxy connected %d times to a server an ordinary role chose", n)
	}
}

// Item 4: master_add_node takes a host name or address (no Unix-socket directory, no
// connection string) and refuses a server registered under another name.
func TestHostileAddNodeValidatesHost(t *testing.T) {
	ctx := context.Background()
	su := connect(t)
	w := env.C.Workers[0]
	for _, host := range []string{"/tmp", "/var/run/postgresql", "@abstract", "127.0.0.1,127.0.0.2", "host=127.0.0.1 sslmode=disable", "127.0.0.1 ", "0.0.0.0", "::", ""} {
		_, err := su.Exec(ctx, fmt.Sprintf("select master_add_node('%s', %d)", host, w.Port))
		wantSQLState(t, fmt.Sprintf("master_add_node(%q)", host), err, "22023", "")
	}
	// The same server under another name (localhost for 127.0.0.1).
	_, err := su.Exec(ctx, fmt.Sprintf("select master_add_node('localhost', %d)", w.Port))
	wantSQLState(t, "master_add_node of a registered worker under another name", err, "42710", "already registered")
	// The same name and port again stays a no-op with a notice.
	mustExec(t, su, fmt.Sprintf("select master_add_node('%s', %d)", w.Host, w.Port))
	// Through the extended protocol, with binary parameters (pgx sends the port so): the
	// function read them as text (22021, invalid byte sequence).
	xc, err := pgx.Connect(ctx, env.P.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer xc.Close(ctx)
	if _, err := xc.Exec(ctx, "select master_add_node($1, $2)", w.Host, w.Port); err != nil {
		t.Errorf("master_add_node($1, $2) with a binary port: %v", err)
	}
	_, err = xc.Exec(ctx, "select master_add_node($1, $2)", "/tmp", w.Port)
	wantSQLState(t, "master_add_node($1, $2) of a socket directory", err, "22023", "invalid node name")
	if snap := env.P.Server().Snapshot(); len(snap.Nodes) != len(env.C.Workers) {
		t.Errorf("nodes: %v, want %d", snap.Nodes, len(env.C.Workers))
	}
}

// Item 9 (SHOW): worker addresses, repairs and every role's pools and counters are for
// superusers; an ordinary role sees its own pools (without addresses), the shards and
// the version.
func TestHostileAdminStatementsAsOrdinaryRole(t *testing.T) {
	ctx := context.Background()
	app := unprivilegedRole(t, "app")
	pc := connectAs(t, env.P, app)
	su := connect(t)
	mustExec(t, su, "SELECT 1") // a pool of postgres's exists
	for _, q := range []string{"SHOW NODES", "SHOW PLACEMENTS", "SHOW PLACEMENTS 10000", "SHOW REPAIRS", "SHOW STATS", "REPAIR SHARD 10000"} {
		_, err := pc.Exec(ctx, q)
		wantSQLState(t, q+" as an ordinary role", err, "42501", "permission denied")
	}
	mustExec(t, pc, "SELECT 1")
	rows, err := pc.Query(ctx, "SHOW POOLS")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		n++
		if vals[1] != app {
			t.Errorf("SHOW POOLS as %s shows a pool of %v", app, vals[1])
		}
		if vals[2] != nil || vals[3] != nil {
			t.Errorf("SHOW POOLS as %s shows a server address: %v:%v", app, vals[2], vals[3])
		}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if n == 0 {
		t.Errorf("SHOW POOLS as %s shows none of its own pools", app)
	}
	for _, q := range []string{"SHOW SHARDS", "SHOW VERSION"} {
		if _, err := pc.Exec(ctx, q); err != nil {
			t.Errorf("%s as an ordinary role: %v", q, err)
		}
	}
	// Superusers see everything, also after SET ROLE to an ordinary role they do not.
	for _, q := range []string{"SHOW NODES", "SHOW PLACEMENTS", "SHOW REPAIRS", "SHOW STATS", "SHOW POOLS"} {
		if _, err := su.Exec(ctx, q); err != nil {
			t.Errorf("%s as a superuser: %v", q, err)
		}
	}
	// The extended protocol (Parse, Describe, Execute) is refused alike.
	xc, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable", app, env.P.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer xc.Close(ctx)
	_, err = xc.Exec(ctx, "SHOW PLACEMENTS")
	wantSQLState(t, "SHOW PLACEMENTS (extended protocol) as an ordinary role", err, "42501", "permission denied")
	_, err = xc.Exec(ctx, "select master_add_node($1, $2)", "127.0.0.1", 1)
	wantSQLState(t, "master_add_node($1, $2) (extended protocol) as an ordinary role", err, "42501", "permission denied")
	_, err = xc.Exec(ctx, "select master_copy_shard_placement($1, $2, $3, $4, $5)", 10000, "127.0.0.1", 1, "127.0.0.1", 2)
	wantSQLState(t, "master_copy_shard_placement (extended protocol) as an ordinary role", err, "42501", "permission denied")
	mustExec(t, su, "SET ROLE "+app)
	_, err = su.Exec(ctx, "SHOW NODES")
	wantSQLState(t, "SHOW NODES after SET ROLE to an ordinary role", err, "42501", "permission denied")
	_, err = su.Exec(ctx, "select master_add_node('127.0.0.1', 1)")
	wantSQLState(t, "master_add_node after SET ROLE to an ordinary role", err, "42501", "permission denied")
	mustExec(t, su, "RESET ROLE")
}

// Item 7: an ordinary role's DDL, temporary tables, gathers, cursors and DROP TABLE of
// its own distributed table work through the proxy.
func TestHostileOrdinaryRoleDDL(t *testing.T) {
	ctx := context.Background()
	app := unprivilegedRole(t, "app")
	pc := connectAs(t, env.P, app)
	su := connect(t)
	local := uniqueName("own_local")
	dist := uniqueName("own_dist")
	t.Cleanup(func() {
		su.Exec(context.Background(), fmt.Sprintf("DROP TABLE IF EXISTS %s, %s", local, dist))
	})
	mustExec(t, pc,
		"CREATE TEMP TABLE scratch (a int)",
		"INSERT INTO scratch VALUES (1)",
		fmt.Sprintf("CREATE TABLE %s (id int, v text)", local),
		fmt.Sprintf("CREATE INDEX ON %s (v)", local),
		fmt.Sprintf("ALTER TABLE %s ADD COLUMN w int", local),
		fmt.Sprintf("DROP TABLE %s", local),
		fmt.Sprintf("CREATE TABLE %s (id int, v text)", dist),
		fmt.Sprintf("select master_create_distributed_table('%s', 'id')", dist),
		fmt.Sprintf("select master_create_worker_shards('%s', 4, 2)", dist),
		fmt.Sprintf("INSERT INTO %s SELECT g, 'v' || g FROM generate_series(1, 20) g", dist))
	// A gather (window function) and a grouping: temporary tables on the coordinator.
	if got := queryString(t, pc, fmt.Sprintf("SELECT max(r)::text FROM (SELECT row_number() OVER (ORDER BY id) r FROM %s) s", dist)); got != "20" {
		t.Errorf("gather: %s", got)
	}
	if got := queryString(t, pc, fmt.Sprintf("SELECT count(*)::text FROM (SELECT v FROM %s GROUP BY v) s", dist)); got != "20" {
		t.Errorf("grouping: %s", got)
	}
	// A cursor.
	tx, err := pc.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf("DECLARE c CURSOR FOR SELECT id FROM %s ORDER BY id", dist)); err != nil {
		t.Fatalf("DECLARE: %v", err)
	}
	var first int
	if err := tx.QueryRow(ctx, "FETCH 1 FROM c").Scan(&first); err != nil || first != 1 {
		t.Errorf("FETCH: %d, %v", first, err)
	}
	tx.Rollback(ctx)
	mustExec(t, pc, "TRUNCATE "+dist)
	if got := queryString(t, pc, "SELECT count(*)::text FROM "+dist); got != "0" {
		t.Errorf("rows after TRUNCATE: %s", got)
	}
	// DROP TABLE of its own distributed table: metadata and shards gone.
	var oid uint32
	if err := su.QueryRow(ctx, fmt.Sprintf("SELECT '%s'::regclass::oid", dist), pgx.QueryExecModeSimpleProtocol).Scan(&oid); err != nil {
		t.Fatal(err)
	}
	mustExec(t, pc, "DROP TABLE "+dist)
	if n := queryString(t, su, fmt.Sprintf("SELECT count(*)::text FROM pgs_distribution_metadata.partition WHERE relation_id = %d", oid)); n != "0" {
		t.Errorf("partition rows after DROP TABLE: %s", n)
	}
	if n := queryString(t, su, fmt.Sprintf("SELECT count(*)::text FROM pgs_distribution_metadata.shard WHERE relation_id = %d", oid)); n != "0" {
		t.Errorf("shard rows after DROP TABLE: %s", n)
	}
	if got := shardOwners(t, dist); len(got) != 0 {
		t.Errorf("shard tables after DROP TABLE: %v", got)
	}
	// Another role cannot drop it (PostgreSQL's check on the coordinator).
	other := unprivilegedRole(t, "other")
	oc := connectAs(t, env.P, other)
	mustExec(t, pc,
		fmt.Sprintf("CREATE TABLE %s (id int, v text)", dist),
		fmt.Sprintf("select master_create_distributed_table('%s', 'id')", dist),
		fmt.Sprintf("select master_create_worker_shards('%s', 2, 1)", dist))
	_, err = oc.Exec(ctx, "DROP TABLE "+dist)
	wantSQLState(t, "DROP TABLE of another role's distributed table", err, "42501", "must be owner of table "+dist)
	if got := shardOwners(t, dist); got[app] != 2 {
		t.Errorf("shard tables after a refused DROP TABLE: %v", got)
	}
}
