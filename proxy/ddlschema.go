package proxy

import (
	"context"
	"fmt"
	"strings"

	"github.com/pgshard/pgshard/metadata/ddl"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// Triggers of distributed tables (router/ddltrigger.go). CREATE TRIGGER runs on the
// coordinator first; then each shard's statement makes sure the trigger's function
// exists on the worker as the coordinator defines it (pg_get_functiondef: created, or
// replaced where it differs) and creates the trigger on the shard table, in one DO
// block. A trigger other than BEFORE ... FOR EACH ROW needs the setting
// pgshard.enable_unsafe_triggers on (SET it in the session): it runs on every placement
// of a shard, and whatever it does beyond its row (writes to other tables, notifications,
// calls out) happens once per placement, on the workers, outside pgshard's view.

// shardPrelude returns what wraps each shard's statement of a DDL plan, run after the
// coordinator's statement on c: the identity but for CREATE TRIGGER.
func (x *execution) shardPrelude(ctx context.Context, c *backend.Conn, sql string, work []*ddlWork) (func(string) string, error) {
	same := func(s string) string { return s }
	if x.st.Tag != "CREATE TRIGGER" || len(work) != 1 {
		return same, nil
	}
	t := work[0].t
	if router.UnsafeTrigger(sql) {
		rows, err := c.ExecRows(ctx, "SELECT pg_catalog.current_setting('pgshard.enable_unsafe_triggers', true)")
		if err != nil {
			return nil, err
		}
		on := false
		if len(rows) == 1 && len(rows[0]) == 1 {
			switch strings.ToLower(string(rows[0][0])) {
			case "on", "true", "yes", "1":
				on = true
			}
		}
		if !on {
			return nil, pgerr.New(pgerr.FeatureNotSupported, "triggers other than BEFORE ... FOR EACH ROW on distributed table %s are not supported when pgshard.enable_unsafe_triggers is off", router.QuoteIdent(t.Name)).
				WithDetail("The trigger runs on every placement of a shard, on the workers: its effects beyond the row it is given happen once per placement, where pgshard cannot keep them consistent.").
				WithHint("SET pgshard.enable_unsafe_triggers TO on to create it anyway.")
		}
	}
	rows, err := c.ExecRows(ctx, fmt.Sprintf(`SELECT n.nspname, pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(p.proname)
			OPERATOR(pg_catalog.||) '(' OPERATOR(pg_catalog.||) pg_catalog.pg_get_function_identity_arguments(p.oid) OPERATOR(pg_catalog.||) ')',
			pg_catalog.pg_get_functiondef(p.oid)
		FROM pg_catalog.pg_trigger tg JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) tg.tgfoid
		JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
		WHERE tg.tgrelid OPERATOR(pg_catalog.=) %d AND tg.tgname OPERATOR(pg_catalog.=) %s AND n.nspname OPERATOR(pg_catalog.<>) 'pg_catalog'`,
		t.OID, router.QuoteLiteral(router.TriggerName(sql))))
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 || len(rows[0]) != 3 {
		// A function of pg_catalog: on every worker already.
		return same, nil
	}
	ensure := ddl.EnsureFunction(string(rows[0][0]), string(rows[0][1]), string(rows[0][2]))
	return func(shardSQL string) string {
		return ddl.DoBlock("BEGIN\n" + ensure + "EXECUTE " + router.QuoteLiteral(shardSQL) + ";\nEND")
	}, nil
}
