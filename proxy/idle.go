package proxy

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// Idle timeouts. PostgreSQL ends a session that waits for its client, after ReadyForQuery,
// longer than idle_in_transaction_session_timeout inside a transaction block (failed or
// not) or idle_session_timeout outside one. The proxy stands between the client and its
// backends, which each see only part of the session, so it keeps the time itself: with
// the values the coordinator gives the session (its server, database and role defaults,
// the startup packet's options, and the client's SETs), and pgshard's own
// IdleTransactionTimeout, which a client cannot lift, for the blocks that hold shard
// locks. Ending a session rolls back its block and releases its shard locks, which would
// otherwise make every other writer of those shards wait.

var (
	errIdleInTransaction = pgerr.New(pgerr.Code("25P03"), "terminating connection due to idle-in-transaction timeout").WithSeverity("FATAL")
	errIdleSession       = pgerr.New(pgerr.Code("57P05"), "terminating connection due to idle-session timeout").WithSeverity("FATAL")
)

// idleTimeoutsSQL reads the session's idle timeouts from its coordinator connection, and
// its statement_timeout, which bounds its waits for pooled connections (acquirePooled).
const idleTimeoutsSQL = "SELECT pg_catalog.current_setting('idle_in_transaction_session_timeout', true), pg_catalog.current_setting('idle_session_timeout', true), " +
	"pg_catalog.current_setting('statement_timeout', true), pg_catalog.current_setting('lock_timeout', true)"

// readIdleTimeouts takes the session's idle timeouts and statement_timeout from c, its
// coordinator connection. A failure keeps the values known so far.
func (t *txnState) readIdleTimeouts(ctx context.Context, c *backend.Conn) {
	rows, err := c.ExecRows(ctx, idleTimeoutsSQL)
	if err != nil || len(rows) != 1 || len(rows[0]) != 4 {
		if err != nil && !backend.Unavailable(err) {
			t.txLog.Warn("could not read the session's idle timeouts", "err", err)
		}
		return
	}
	t.idleInTx = parseMillis(string(rows[0][0]))
	t.idleSession = parseMillis(string(rows[0][1]))
	t.waits.stmtTimeout = parseMillis(string(rows[0][2]))
	t.waits.lockTimeout = parseMillis(string(rows[0][3]))
}

// idleSettingChanged is called after SET, RESET or DISCARD ran on the coordinator
// connection c: when it may have changed a timeout, the values are read again.
// Inside a transaction block they are read once more when the block ends or rolls back
// to a savepoint (idleInBlock), since the block may undo the change.
func (t *txnState) idleSettingChanged(ctx context.Context, c *backend.Conn, sql string) {
	l := strings.ToLower(sql)
	if !strings.Contains(l, "timeout") && !strings.Contains(l, "all") {
		return
	}
	t.readIdleTimeouts(ctx, c)
	if t.tx != txIdle {
		t.idleInBlock = true
	}
}

// idleAfterBlock reads the idle timeouts again after the block (or part of it) that
// changed them ended or was rolled back.
func (t *txnState) idleAfterBlock(ctx context.Context) {
	if !t.idleInBlock || t.coord == nil {
		return
	}
	if t.tx == txIdle {
		t.idleInBlock = false
	} else if !t.coordInTx {
		return
	}
	if c := t.coord.Value(); !c.Broken() {
		t.readIdleTimeouts(ctx, c)
	}
}

// idleDeadline is when the session, waiting for its client's next message, is to be
// ended, and with which error; zero when it may wait forever. The session's own settings
// count only after ReadyForQuery, as in PostgreSQL (a client between a Flush, or a Parse,
// and its Sync is not idle for them); pgshard's IdleTransactionTimeout counts whenever
// the block holds shard locks, so that a Flush cannot keep them forever.
func (t *txnState) idleDeadline() (time.Time, *pgerr.Error) {
	var d time.Duration
	e := errIdleSession
	if t.waitingClient {
		d = t.idleSession
	}
	if t.tx != txIdle {
		d, e = 0, errIdleInTransaction
		if t.waitingClient {
			d = t.idleInTx
		}
		if limit := t.idleTxLimit; limit > 0 && t.holdsShardLocks() && (d <= 0 || limit < d) {
			d = limit
		}
	}
	if d <= 0 {
		return time.Time{}, nil
	}
	return time.Now().Add(d), e
}

// holdsShardLocks reports whether the session's transaction block holds write locks on
// the coordinator (locks.go), taken by its writes and its SELECT ... FOR UPDATE / SHARE
// (txRowLocks), which keep other writers of those rows or shards waiting.
func (t *txnState) holdsShardLocks() bool {
	return len(t.txLocks) > 0 || t.txRowLocks && t.tx != txIdle
}

// parseMillis reads a time setting whose base unit is milliseconds as SHOW prints it
// ("0", "1500ms", "2s", "5min", "1h", "1d").
func parseMillis(v string) time.Duration {
	v = strings.TrimSpace(v)
	i := 0
	for i < len(v) && (v[i] >= '0' && v[i] <= '9' || v[i] == '-' || v[i] == '.') {
		i++
	}
	n, err := strconv.ParseFloat(v[:i], 64)
	if err != nil || n <= 0 {
		return 0
	}
	unit := time.Millisecond
	switch strings.TrimSpace(v[i:]) {
	case "", "ms":
	case "s":
		unit = time.Second
	case "min":
		unit = time.Minute
	case "h":
		unit = time.Hour
	case "d":
		unit = 24 * time.Hour
	default:
		return 0
	}
	return time.Duration(n * float64(unit))
}

// proxyOnlySet reports a SET or RESET of one of the settings the proxy keeps for itself
// (proxyOnly), which the workers of a transaction block do not run.
func proxyOnlySet(set *router.SetPlan) bool {
	return set != nil && proxyOnly[set.Variable()]
}
