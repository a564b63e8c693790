// Package repair makes inactive shard placements whole again: it copies a finalized
// placement over an inactive one and marks it finalized, as pg_shard's
// master_copy_shard_placement did, with three differences: rows are streamed with COPY
// (so indexes are maintained), the copy is verified against the source by checksums each
// server computes, and the shard is locked against writes (through every proxy) only for
// the copy, while reads go on.
//
// A repair that fails half way leaves the placement inactive, with a record of the
// failure in SHOW REPAIRS, and can simply be run again. Only one session of one proxy
// repairs a given shard at a time (an advisory lock on the coordinator).
//
// Run is the background repairer: it repairs every inactive placement whose node is
// reachable again.
//
// # Whose rights
//
// Copying rows into a shard table runs its owner's code: CHECK constraints, domain
// constraints, index expressions and predicates, generated columns, and anything that code
// calls or sets off (triggers on other tables, say). The proxy's own role is usually a
// superuser, and neither SET ROLE nor SET SESSION AUTHORIZATION would confine that code on
// one of its connections: the code can RESET ROLE, SET ROLE back, or RESET SESSION
// AUTHORIZATION (a superuser's session may), and so become the superuser. So a repair
// never runs anything on a shard table with the proxy's rights: it connects to the source
// and to the target as the owner of the coordinator's table (with the credentials the
// proxy uses for every role on the workers), and everything that touches the shard —
// dropping and recreating it, COPY out and in, the checksums — runs in those sessions,
// whose session user is the owner. The recreated shard table is therefore owned by the
// owner (with the owner's default privileges applied, as when the shard was first
// created), and the owner's code can do no more than the owner could anyway. An owner that
// cannot log in cannot have its tables repaired: the repair fails with an error saying so.
// The proxy's own role is used on a worker only to test that it answers and to drop a
// target table that the owner does not own (a table of another owner in the shard's place,
// or one recreated by an older pgshard as the proxy's role), which runs no code of the
// table's owner.
//
// The statements a repair writes itself run with search_path set to pg_catalog, pg_temp
// and name everything by schema, so objects other roles create (in public, say) cannot
// stand in for them; the statements that run the owner's code (the shard's DDL and COPY
// FROM) run with the owner's own default search_path, as the owner's writes do, and the
// session's settings are reset after them. Rows are read with row_security off: a
// row-level security policy that would hide rows from the copy makes it fail instead.
package repair

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/ddl"
	"github.com/pgshard/pgshard/metadata/store"
	"github.com/pgshard/pgshard/pgerr"
)

// Repairer repairs placements.
type Repairer struct {
	Store *store.Store
	Cache *metadata.Cache
	// LockTimeout bounds the wait for the shard's write lock (default 30s): writers
	// queue behind a waiting repair, which must not wait for long.
	LockTimeout time.Duration
	// Connect returns the configuration for a connection to a worker, as the given user
	// (connections are made for each repair).
	Connect func(node metadata.Node, user string) *pgconn.Config
	// CheckSource, when set, verifies that a source placement's node may be trusted (its
	// data did not go back in time; see proxy/nodeident.go); an error refuses the source.
	CheckSource func(ctx context.Context, node metadata.Node) error
	// User is the proxy's own role (the coordinator URL's user). Repairs run as the table's
	// owner; User only probes whether a worker answers and drops a target table that the
	// table's owner does not own.
	User string
	Log  *slog.Logger
	// ProgressEvery is how often a running copy reports progress (default 1s).
	ProgressEvery time.Duration
}

// Progress describes a running repair.
type Progress struct {
	ShardID     int64
	Target      metadata.Node
	Rows        int64 // rows copied so far (known at the end)
	Bytes       int64 // bytes copied so far
	SourceBytes int64 // size of the source table
	Step        string
}

// Percent is the copy's progress by bytes.
func (p Progress) Percent() int {
	if p.SourceBytes <= 0 {
		return 0
	}
	n := int(p.Bytes * 100 / p.SourceBytes)
	if n > 100 {
		n = 100
	}
	return n
}

// Result is a finished repair.
type Result struct {
	ShardID     int64
	PlacementID int64
	Source      metadata.Node
	Target      metadata.Node
	Rows        int64
	Bytes       int64
	Duration    time.Duration
}

// Request is one repair: copy the placement of ShardID on Source over the one on Target.
type Request struct {
	ShardID int64
	Source  metadata.Node
	Target  metadata.Node
	Trigger string // "function", "statement" or "background"
	// User is the role that asked for the repair, if any. The copy runs as the table's
	// owner whoever asked (see the package comment).
	User     string
	Progress func(Progress)
}

// Copy repairs one placement, with pg_shard's checks and error texts.
func (r *Repairer) Copy(ctx context.Context, req Request) (Result, error) {
	snap := r.Cache.Load()
	sh := snap.Shard(req.ShardID)
	if sh == nil {
		return Result{}, pgerr.New(pgerr.UndefinedObject, "shard with ID %d does not exist", req.ShardID)
	}
	t := snap.TableByOID(sh.TableID)
	if len(sh.Placements) == 0 || t == nil {
		return Result{}, pgerr.New(pgerr.NoData, "no placements exist for shard with ID %d", req.ShardID)
	}
	find := func(n metadata.Node) (metadata.Placement, error) {
		for _, p := range sh.Placements {
			if p.Node == n {
				return p, nil
			}
		}
		return metadata.Placement{}, pgerr.New(pgerr.DataException, "could not find placement matching \"%s:%d\"", n.Name, n.Port).
			WithHint("Confirm the placement still exists and try again.")
	}
	src, err := find(req.Source)
	if err != nil {
		return Result{}, err
	}
	if src.State != metadata.StateFinalized {
		return Result{}, pgerr.New(pgerr.InvalidParameterValue, "source placement must be in finalized state")
	}
	if err := r.checkSource(ctx, src.Node); err != nil {
		return Result{}, err
	}
	tgt, err := find(req.Target)
	if err != nil {
		return Result{}, err
	}
	if tgt.State != metadata.StateInactive {
		return Result{}, pgerr.New(pgerr.InvalidParameterValue, "target placement must be in inactive state")
	}
	return r.copy(ctx, req, t, sh, src, tgt)
}

// checkSource refuses a source whose node is held, or whose data went back in time (its
// placements were just marked inactive; the caller's snapshot predates that).
func (r *Repairer) checkSource(ctx context.Context, n metadata.Node) error {
	if r.CheckSource == nil {
		return nil
	}
	err := r.CheckSource(ctx, n)
	if err == nil {
		return nil
	}
	var pe *pgerr.Error
	if !errors.As(err, &pe) {
		pe = pgerr.Wrap(err, pgerr.ObjectNotInPrereqState, "source placement on %s is not usable: %v", n, err)
	}
	return fmt.Errorf("%w: %w", errSourceUnavailable, pe)
}

// RepairShard repairs every inactive placement of a shard from its first reachable
// finalized placement.
func (r *Repairer) RepairShard(ctx context.Context, shardID int64, trigger, user string, progress func(Progress)) ([]Result, error) {
	snap := r.Cache.Load()
	sh := snap.Shard(shardID)
	if sh == nil {
		return nil, pgerr.New(pgerr.UndefinedObject, "shard with ID %d does not exist", shardID)
	}
	fin := sh.Finalized()
	if len(fin) == 0 {
		return nil, pgerr.New(pgerr.ObjectNotInPrereqState, "shard %d has no finalized placement to repair from", shardID)
	}
	var results []Result
	for _, p := range sh.Placements {
		if p.State != metadata.StateInactive {
			continue
		}
		var lastErr error
		done := false
		for _, src := range fin {
			res, err := r.Copy(ctx, Request{ShardID: shardID, Source: src.Node, Target: p.Node, Trigger: trigger, User: user, Progress: progress})
			if err == nil {
				results = append(results, res)
				done = true
				break
			}
			lastErr = err
			if !errors.Is(err, errSourceUnavailable) {
				break
			}
		}
		if !done {
			return results, lastErr
		}
	}
	return results, nil
}

// errSourceUnavailable marks repair failures caused by the source placement.
var errSourceUnavailable = errors.New("repair: source placement unavailable")

// errTargetStopped ends the source's COPY when the target's failed.
var errTargetStopped = errors.New("repair: the target placement stopped reading")

// copy does the work of one repair, recording it in the repair history: with the shard's
// repair lock (lockRepair) and then its write lock held, it recreates the target table
// (recreate), streams the rows into it (stream), compares both sides' checksums (verify)
// and marks the target finalized.
func (r *Repairer) copy(ctx context.Context, req Request, t *metadata.Table, sh *metadata.Shard, src, tgt metadata.Placement) (res Result, err error) {
	start := time.Now()
	res = Result{ShardID: sh.ID, PlacementID: tgt.ID, Source: src.Node, Target: tgt.Node}

	unlockRepair, err := r.lockRepair(ctx, sh.ID)
	if err != nil {
		return res, err
	}
	defer unlockRepair()

	id, err := r.Store.StartRepair(ctx, sh.ID, tgt.ID, src.Node, tgt.Node, req.Trigger)
	if err != nil {
		return res, err
	}
	var copied atomic.Int64
	var sourceBytes int64
	defer func() {
		state, msg := "succeeded", ""
		if err != nil {
			pe := pgerr.From(err)
			state, msg = "failed", pe.Message
			if pe.Detail != "" {
				msg += ": " + pe.Detail
			}
		}
		ferr := r.Store.FinishRepair(context.Background(), id, state, res.Rows, copied.Load(), sourceBytes, msg)
		if err == nil && ferr != nil {
			err = ferr
		}
	}()
	report := func(step string) {
		if req.Progress != nil {
			req.Progress(Progress{ShardID: sh.ID, Target: tgt.Node, Rows: res.Rows, Bytes: copied.Load(), SourceBytes: sourceBytes, Step: step})
		}
	}

	// Writes to the shard wait from here until the placement is finalized; so do schema
	// changes of its table, which take the shard's write locks exclusively.
	lock, err := r.lockShard(ctx, sh.ID)
	if err != nil {
		return res, err
	}
	defer lock.unlock()

	// Read under the lock: a schema change that committed while the repair waited for it
	// is in the definition the placement is recreated with.
	def, err := r.shardDefinition(ctx, t, sh.ID)
	if err != nil {
		return res, err
	}
	fks, err := r.shardForeignKeys(ctx, t, sh.ID) // foreignkeys.go
	if err != nil {
		return res, err
	}
	if fks.cascade {
		def.drop += " CASCADE"
	}
	def.afterCopy = append(def.afterCopy, fks.after...)

	// Both sessions are the owner's (see the package comment): nothing of the owner's runs
	// with the proxy's rights, and the recreated table is the owner's.
	source, err := r.connect(ctx, src.Node, def.owner)
	if err != nil {
		return res, fmt.Errorf("%w: %w", errSourceUnavailable, pgerr.Wrap(err, pgerr.ConnectionFailure, "could not connect to the source placement on %s as %q, the owner of %s: %v", src.Node, def.owner, t.QualifiedName(), err))
	}
	defer source.Close(context.Background())
	target, err := r.connect(ctx, tgt.Node, def.owner)
	if err != nil {
		return res, pgerr.Wrap(err, pgerr.ConnectionFailure, "could not connect to the target placement on %s as %q, the owner of %s: %v", tgt.Node, def.owner, t.QualifiedName(), err)
	}
	defer target.Close(context.Background())

	// A transaction's part prepared on the source whose COMMIT PREPARED has not reached it
	// yet (recovery finishes it) is not in what the copy reads, yet commits there later:
	// the copy waits until no prepared transaction holds a write lock on the source table.
	// Writers that still decide hold the shard's lock, so those left are finished ones.
	if err := r.awaitPrepared(ctx, source, def.name, sh.ID, src.Node); err != nil {
		return res, err
	}

	report("recreating")
	if err := r.recreate(ctx, target, tgt.Node, sh.ID, def); err != nil {
		return res, err
	}
	if rr := source.ExecParams(ctx, "SELECT pg_catalog.pg_total_relation_size($1::pg_catalog.regclass)", [][]byte{[]byte(def.name)}, nil, nil, nil).Read(); rr.Err == nil && len(rr.Rows) == 1 && len(rr.Rows[0]) == 1 {
		fmt.Sscan(string(rr.Rows[0][0]), &sourceBytes)
	}

	report("copying")
	stopProgress := r.progressTicker(ctx, id, &copied, &sourceBytes, report)
	tag, err := stream(ctx, source, target, def.name, &copied, src.Node, tgt.Node)
	stopProgress()
	if err != nil {
		return res, err
	}
	res.Rows = tag.RowsAffected()
	res.Bytes = copied.Load()
	if len(def.afterCopy) > 0 {
		if _, err := target.Exec(ctx, "BEGIN;\n"+strings.Join(def.afterCopy, ";\n")+";\nCOMMIT").ReadAll(); err != nil {
			return res, pgerr.Wrap(err, pgerr.InternalError, "could not recreate the triggers and foreign keys of shard %d on %s", sh.ID, tgt.Node).WithDetail("%v", err)
		}
	}

	report("verifying")
	if err := verify(ctx, source, target, def.name, sh.ID, tgt.Node); err != nil {
		return res, err
	}

	// Only now is the placement whole again.
	if err := r.Store.ChangePlacementStates(ctx, r.Cache, map[int64]metadata.ShardState{tgt.ID: metadata.StateFinalized}); err != nil {
		return res, err
	}
	// The lock must have been held throughout, up to the finalization: if its connection
	// is gone, writers may have written the shard without the target meanwhile.
	if err := lock.check(ctx); err != nil {
		if rerr := r.Store.ChangePlacementStates(context.Background(), r.Cache, map[int64]metadata.ShardState{tgt.ID: metadata.StateInactive}); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return res, err
	}
	res.Duration = time.Since(start)
	report("done")
	if r.Log != nil {
		r.Log.Info("placement repaired", "shard", sh.ID, "placement", tgt.ID, "from", src.Node.String(), "to", tgt.Node.String(),
			"rows", res.Rows, "bytes", res.Bytes, "duration", res.Duration)
	}
	return res, nil
}

// shardLock is the shard's write lock a repair holds: an exclusive advisory transaction
// lock (store.LockShard, the key writers take shared or exclusively) on a coordinator
// connection of its own, in a transaction that unlock ends.
type shardLock struct {
	conn *pgxpool.Conn
}

// lockTimeoutKey is the context key of a client's lock_timeout (WithLockTimeout).
type lockTimeoutKey struct{}

// WithLockTimeout returns ctx carrying the lock_timeout of the client that asked for a
// repair: its wait for the shard's write lock ends there, as the client's own lock waits
// end, with PostgreSQL's error (55P03 canceling statement due to lock timeout), when that
// comes before LockTimeout. Zero is none.
func WithLockTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, lockTimeoutKey{}, d)
}

// lockShard takes the shard's write lock exclusively: writes to the shard, through every
// proxy, wait from here until unlock (reads do not). The wait is bounded by LockTimeout,
// by the client's lock_timeout (WithLockTimeout) and by ctx.
func (r *Repairer) lockShard(ctx context.Context, shardID int64) (*shardLock, error) {
	conn, err := r.Store.Pool().Acquire(ctx)
	if err != nil {
		return nil, err
	}
	timeout := r.LockTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	clientTimeout := false
	if d, _ := ctx.Value(lockTimeoutKey{}).(time.Duration); d > 0 && d < timeout {
		timeout, clientTimeout = d, true
	}
	sql := fmt.Sprintf("BEGIN; SET LOCAL lock_timeout = %d; SELECT pg_catalog.pg_advisory_xact_lock(%d::pg_catalog.int8)",
		timeout.Milliseconds(), store.LockKey(store.LockShard, shardID))
	if err := conn.Conn().PgConn().Exec(ctx, sql).Close(); err != nil {
		conn.Conn().PgConn().Exec(context.Background(), "ROLLBACK").Close()
		conn.Release()
		if pe, ok := err.(*pgconn.PgError); ok && pe.Code == string(pgerr.LockNotAvailable) {
			if clientTimeout {
				return nil, pgerr.New(pgerr.LockNotAvailable, "canceling statement due to lock timeout")
			}
			return nil, pgerr.New(pgerr.LockNotAvailable, "could not obtain the write lock of shard %d within %s", shardID, timeout).
				WithHint("Transactions writing to the shard held it; try again.")
		}
		return nil, fmt.Errorf("repair: lock shard %d: %w", shardID, err)
	}
	return &shardLock{conn: conn}, nil
}

// awaitPrepared waits until no prepared transaction on the source holds a write lock on
// its shard table (name): transaction recovery commits or rolls back such parts. The wait
// is bounded as the wait for the shard's write lock.
func (r *Repairer) awaitPrepared(ctx context.Context, source *pgconn.PgConn, name string, shardID int64, n metadata.Node) error {
	timeout := r.LockTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if d, _ := ctx.Value(lockTimeoutKey{}).(time.Duration); d > 0 && d < timeout {
		timeout = d
	}
	deadline := time.Now().Add(timeout)
	for {
		// A prepared transaction's locks are the ones without a process.
		rr := source.ExecParams(ctx, `SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks
			WHERE pid IS NULL AND locktype OPERATOR(pg_catalog.=) 'relation' AND mode OPERATOR(pg_catalog.<>) 'AccessShareLock'
			AND relation OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1::pg_catalog.text)`,
			[][]byte{[]byte(name)}, nil, nil, nil).Read()
		if rr.Err != nil {
			return fmt.Errorf("repair: prepared transactions on the source of shard %d: %w", shardID, rr.Err)
		}
		if len(rr.Rows) == 1 && string(rr.Rows[0][0]) == "0" {
			return nil
		}
		if time.Now().After(deadline) {
			return pgerr.New(pgerr.ObjectNotInPrereqState, "the source placement of shard %d on %s has a prepared transaction that is not finished", shardID, n).
				WithDetail("Its writes would be missing from the copy.").
				WithHint("Transaction recovery finishes it (RECOVER TRANSACTIONS); then repair again.")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// check reports whether the lock is still held: its connection answers, in its
// transaction.
func (l *shardLock) check(ctx context.Context) error {
	if err := l.conn.Conn().PgConn().Exec(ctx, "SELECT 1").Close(); err != nil || l.conn.Conn().PgConn().TxStatus() != 'T' {
		return pgerr.New(pgerr.ConnectionFailure, "the repair lost its shard lock (its coordinator connection) before the placement was finalized; the placement stays inactive")
	}
	return nil
}

// unlock ends the lock's transaction, which releases it.
func (l *shardLock) unlock() {
	l.conn.Conn().PgConn().Exec(context.Background(), "COMMIT").Close()
	l.conn.Release()
}

// lockRepair takes the shard's repair lock, so that one repair of a shard runs at a time
// across every proxy: a session-level advisory lock held on a coordinator connection for
// the repair's duration. The returned function lets go of it.
func (r *Repairer) lockRepair(ctx context.Context, shardID int64) (unlock func(), err error) {
	lockConn, err := r.Store.Pool().Acquire(ctx)
	if err != nil {
		return nil, err
	}
	key := store.LockKey(store.LockRepair, shardID)
	var got bool
	if err := lockConn.QueryRow(ctx, "SELECT pg_catalog.pg_try_advisory_lock($1::pg_catalog.int8)", key).Scan(&got); err != nil {
		lockConn.Release()
		return nil, err
	}
	if !got {
		lockConn.Release()
		return nil, pgerr.New(pgerr.LockNotAvailable, "shard %d is being repaired by another session", shardID)
	}
	return func() {
		lockConn.Exec(context.Background(), "SELECT pg_catalog.pg_advisory_unlock($1::pg_catalog.int8)", key)
		lockConn.Release()
	}, nil
}

// shardDef is what a repair needs of a shard table's definition: the owner of its table
// (the role the repair runs as), the shard table's name, and the commands that drop and
// create it.
type shardDef struct {
	owner  string
	name   string
	drop   string
	create []string
	// afterCopy are the shard's triggers and FORCE ROW LEVEL SECURITY, run once the rows
	// are copied (the triggers must not change them).
	afterCopy []string
}

// shardDefinition reads the table's definition and owner from the coordinator; the owner
// must be able to log in.
func (r *Repairer) shardDefinition(ctx context.Context, t *metadata.Table, shardID int64) (shardDef, error) {
	coordConn, err := r.Store.Pool().Acquire(ctx)
	if err != nil {
		return shardDef{}, err
	}
	owner, canLogin, err := tableOwner(ctx, coordConn.Conn().PgConn(), t.OID)
	var def *ddl.Table
	if err == nil {
		def, err = ddl.Load(ctx, coordConn.Conn().PgConn(), t.OID)
	}
	coordConn.Release()
	if errors.Is(err, ddl.ErrUnsupported) {
		return shardDef{}, pgerr.Wrap(err, pgerr.FeatureNotSupported, "cannot repair shard %d: %s", shardID, strings.TrimPrefix(err.Error(), "ddl: "))
	}
	if err != nil {
		return shardDef{}, pgerr.Wrap(err, pgerr.InternalError, "could not read the definition of %s: %v", t.QualifiedName(), err)
	}
	if !canLogin {
		return shardDef{}, pgerr.New(pgerr.ObjectNotInPrereqState, "cannot repair shard %d: role %q, the owner of %s, cannot log in", shardID, owner, t.QualifiedName()).
			WithHint("pgshard repairs a shard as the owner of its table, never with its own rights.")
	}
	create, after, err := def.RepairCommands(shardID)
	if err != nil {
		return shardDef{}, pgerr.Wrap(err, pgerr.NameTooLong, "%v", err)
	}
	drop, _ := def.DropCommand(shardID)
	name, _ := def.QualifiedShardName(shardID)
	return shardDef{owner: owner, name: name, drop: drop, create: create, afterCopy: after}, nil
}

// recreate recreates the target table, empty, with its constraints and indexes, owner,
// privileges and comments, and the types it needs where they are missing, as the owner. A table the owner does not own in its place goes first, with the proxy's rights.
func (r *Repairer) recreate(ctx context.Context, target *pgconn.PgConn, n metadata.Node, shardID int64, def shardDef) error {
	if err := r.dropForeign(ctx, target, n, def.name, def.owner); err != nil {
		return pgerr.Wrap(err, pgerr.InternalError, "could not drop the table in the place of shard %d on %s", shardID, n).WithDetail("%v", err)
	}
	// The definition was printed with only pg_catalog on the search_path (metadata/ddl):
	// it runs with internalPath, where its unqualified names mean pg_catalog's again
	// (the owner's search_path could put another schema's "text" first).
	if _, err := target.Exec(ctx, "BEGIN;\n"+def.drop+";\n"+strings.Join(def.create, ";\n")+";\nCOMMIT").ReadAll(); err != nil {
		// An object the shard needs is missing on the worker, or differs there (the checks
		// of ddl.Table.CreateCommands): the worker's error says which.
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (pe.Code == string(pgerr.FeatureNotSupported) || pe.Code == string(pgerr.DatatypeMismatch)) {
			return pgerr.Wrap(err, pgerr.Code(pe.Code), "could not recreate shard table of shard %d on %s: %s", shardID, n, pe.Message).WithHint("%s", pe.Hint)
		}
		return pgerr.Wrap(err, pgerr.InternalError, "could not recreate shard table").
			WithHint("Consult recent messages in the server logs for details.").WithDetail("%v", err)
	}
	return nil
}

// stream copies the rows of table name: COPY TO on the source into COPY FROM on the
// target, in binary, counting the bytes in copied. A failure of the source wraps
// errSourceUnavailable.
func stream(ctx context.Context, source, target *pgconn.PgConn, name string, copied *atomic.Int64, srcNode, tgtNode metadata.Node) (pgconn.CommandTag, error) {
	pr, pw := io.Pipe()
	counter := &countingWriter{w: pw, n: copied}
	copyErr := make(chan error, 1)
	go func() {
		_, err := source.CopyTo(ctx, counter, "COPY "+name+" TO STDOUT (FORMAT binary)")
		pw.CloseWithError(err)
		copyErr <- err
	}()
	// COPY FROM runs the owner's code: with the owner's search_path, and the session's
	// settings are reset after it, whatever that code set.
	var tag pgconn.CommandTag
	_, err := target.Exec(ctx, "RESET search_path").ReadAll()
	if err == nil {
		tag, err = target.CopyFrom(ctx, pr, "COPY "+name+" FROM STDIN (FORMAT binary)")
	}
	if err != nil {
		// The source's COPY fails with errTargetStopped: the failure is the target's.
		pr.CloseWithError(errTargetStopped)
	} else {
		pr.Close()
		_, err = target.Exec(ctx, "RESET ALL; "+internalPath).ReadAll()
	}
	srcErr := <-copyErr
	if srcErr != nil && !errors.Is(srcErr, errTargetStopped) {
		return tag, fmt.Errorf("%w: %w", errSourceUnavailable, pgerr.Wrap(srcErr, pgerr.InternalError, "could not copy shard data").WithDetail("source %s: %v", srcNode, srcErr))
	}
	if err != nil {
		return tag, pgerr.Wrap(err, pgerr.InternalError, "could not copy shard data").WithDetail("target %s: %v", tgtNode, err)
	}
	return tag, nil
}

// verify compares the checksums of both servers' rows of table name; they must agree. A
// failure of the source wraps errSourceUnavailable.
func verify(ctx context.Context, source, target *pgconn.PgConn, name string, shardID int64, tgtNode metadata.Node) error {
	sc, err := checksum(ctx, source, name)
	if err != nil {
		return fmt.Errorf("%w: %w", errSourceUnavailable, pgerr.Wrap(err, pgerr.InternalError, "could not verify the copy on the source: %v", err))
	}
	tc, err := checksum(ctx, target, name)
	if err != nil {
		return pgerr.Wrap(err, pgerr.InternalError, "could not verify the copy on the target: %v", err)
	}
	if sc != tc {
		return pgerr.New(pgerr.InternalError, "the copy of shard %d on %s differs from its source", shardID, tgtNode).
			WithDetail("source %s, target %s", sc, tc)
	}
	return nil
}

// internalPath is the search_path of the statements a repair writes itself: only
// pg_catalog (and the session's own temporary schema, last), so that no other role's
// objects can stand in for the functions, operators and types they name.
const internalPath = "SET search_path TO pg_catalog, pg_temp"

// connect opens a connection to a worker with settings that make row text identical on
// every server (for checksums), row_security off (a policy that would hide rows from the
// copy makes it fail instead), and search_path set for the repair's own statements.
func (r *Repairer) connect(ctx context.Context, n metadata.Node, user string) (*pgconn.PgConn, error) {
	cfg := r.Connect(n, user)
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	for k, v := range map[string]string{"DateStyle": "ISO, YMD", "IntervalStyle": "postgres", "TimeZone": "UTC",
		"extra_float_digits": "3", "bytea_output": "hex", "application_name": "pgshard repair", "row_security": "off"} {
		cfg.RuntimeParams[k] = v
	}
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// Not a startup parameter: RESET search_path must give the role's own default.
	if _, err := c.Exec(ctx, internalPath).ReadAll(); err != nil {
		c.Close(context.Background())
		return nil, err
	}
	return c, nil
}

// tableOwner returns the name of the role that owns the coordinator's table oid, and
// whether it may log in.
func tableOwner(ctx context.Context, c *pgconn.PgConn, oid uint32) (name string, canLogin bool, err error) {
	res := c.ExecParams(ctx, `SELECT r.rolname, r.rolcanlogin FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) c.relowner
		WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid`,
		[][]byte{[]byte(strconv.FormatUint(uint64(oid), 10))}, nil, nil, nil).Read()
	if res.Err != nil {
		return "", false, res.Err
	}
	if len(res.Rows) != 1 {
		return "", false, fmt.Errorf("repair: relation with OID %d does not exist", oid)
	}
	return string(res.Rows[0][0]), string(res.Rows[0][1]) == "t", nil
}

// dropForeign drops the table named name on the target node when it exists and owner does
// not own it: a table the owner could not drop, left by an older pgshard's repair (as the
// proxy's role) or put in the shard's place by another role. It is dropped in a session of
// the proxy's own role; DROP TABLE runs none of the table owner's code.
func (r *Repairer) dropForeign(ctx context.Context, target *pgconn.PgConn, n metadata.Node, name, owner string) error {
	res := target.ExecParams(ctx, `SELECT pg_catalog.pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class c
		WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1::pg_catalog.text)`,
		[][]byte{[]byte(name)}, nil, nil, nil).Read()
	if res.Err != nil {
		return res.Err
	}
	if len(res.Rows) == 0 || string(res.Rows[0][0]) == owner || r.User == "" {
		return nil
	}
	if r.Log != nil {
		r.Log.Warn("repair: dropping a table in the place of a shard that its table's owner does not own",
			"table", name, "node", n.String(), "its owner", string(res.Rows[0][0]), "the table's owner", owner)
	}
	c, err := r.connect(ctx, n, r.User)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, "DROP TABLE IF EXISTS "+name).ReadAll()
	return err
}

// checksum is an order-independent digest of a table's rows: their count and the sum of
// the first 64 bits of each row text's md5. The session's search_path is internalPath;
// the names are qualified besides.
func checksum(ctx context.Context, c *pgconn.PgConn, table string) (string, error) {
	rr := c.ExecParams(ctx, "SELECT pg_catalog.count(*), COALESCE(pg_catalog.sum(('x' OPERATOR(pg_catalog.||) "+
		"pg_catalog.substr(pg_catalog.md5(t::pg_catalog.text), 1, 16))::pg_catalog.bit(64)::pg_catalog.int8), 0) FROM "+table+" t", nil, nil, nil, nil)
	var out string
	for rr.NextRow() {
		out = string(rr.Values()[0]) + "/" + string(rr.Values()[1])
	}
	_, err := rr.Close()
	return out, err
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// progressTicker records progress in the repair history and reports it until stopped.
func (r *Repairer) progressTicker(ctx context.Context, id int64, copied *atomic.Int64, sourceBytes *int64, report func(string)) (stop func()) {
	every := r.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				r.Store.RepairProgress(ctx, id, copied.Load(), *sourceBytes)
				report("copying")
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// Run is the background repairer: every interval it repairs the inactive placements whose
// nodes answer again, from a reachable finalized placement. It returns when ctx is done.
func (r *Repairer) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	failures := map[int64]*backoff{}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		r.sweep(ctx, failures, interval)
	}
}

// backoff is when the background repairer tries a shard again after failed repairs: the
// delay doubles with each failure, from twice the interval up to maxBackoff (or the
// interval, if longer), so a repair that keeps failing (the owner's code refuses the rows,
// say) does not copy the shard over and over.
type backoff struct {
	until time.Time
	delay time.Duration
}

// maxBackoff is the longest wait between background attempts at one shard.
const maxBackoff = 10 * time.Minute

func (b *backoff) fail(interval time.Duration) {
	switch {
	case b.delay == 0:
		b.delay = 2 * interval
	case b.delay < max(maxBackoff, interval):
		b.delay = min(2*b.delay, max(maxBackoff, interval))
	}
	b.until = time.Now().Add(b.delay)
}

// sweep runs one round of background repairs.
func (r *Repairer) sweep(ctx context.Context, failures map[int64]*backoff, interval time.Duration) {
	snap := r.Cache.Load()
	reachable := map[metadata.Node]bool{}
	probe := func(n metadata.Node) bool {
		ok, seen := reachable[n]
		if !seen {
			pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			c, err := pgconn.ConnectConfig(pctx, r.Connect(n, r.User))
			cancel()
			if err == nil {
				c.Close(context.Background())
			}
			ok = err == nil
			reachable[n] = ok
		}
		return ok
	}
	for _, t := range snap.Tables() {
		for _, sh := range t.Shards {
			if ctx.Err() != nil {
				return
			}
			if b, ok := failures[sh.ID]; ok && time.Now().Before(b.until) {
				continue
			}
			var target, source *metadata.Placement
			for i := range sh.Placements {
				p := &sh.Placements[i]
				switch {
				case p.State == metadata.StateInactive && target == nil && probe(p.Node):
					target = p
				case p.State == metadata.StateFinalized && source == nil && probe(p.Node):
					source = p
				}
			}
			if target == nil || source == nil {
				continue
			}
			_, err := r.Copy(ctx, Request{ShardID: sh.ID, Source: source.Node, Target: target.Node, Trigger: "background"})
			if err != nil {
				b := failures[sh.ID]
				if b == nil {
					b = &backoff{}
					failures[sh.ID] = b
				}
				b.fail(interval)
				if r.Log != nil && ctx.Err() == nil {
					pe := pgerr.From(err)
					r.Log.Warn("background repair failed", "shard", sh.ID, "target", target.Node.String(), "err", err,
						"detail", pe.Detail, "next attempt in", b.delay)
				}
				continue
			}
			delete(failures, sh.ID)
		}
	}
}
