package proxy

import (
	"context"
	"strconv"

	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// computedDefaults computes, on the coordinator connection c that just ran the client's
// ALTER TABLE (in its transaction, so now() is the statement's), the values of the ADD
// COLUMN defaults that are not constants (router.DDLColumnDefaults), for the shards to
// fill their existing rows with (router.DDLCatalog.Defaults). PostgreSQL filled the
// coordinator's column with one value only when the default is not volatile
// (pg_attribute.atthasmissing): a volatile one is refused, and the block with it.
func (x *execution) computedDefaults(ctx context.Context, c *backend.Conn, w *ddlWork, exprs map[string]string) error {
	for col, expr := range exprs {
		rows, err := c.ExecRows(ctx, "SELECT a.atthasmissing::pg_catalog.text, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) "+
			strconv.FormatUint(uint64(w.t.OID), 10)+" AND a.attname OPERATOR(pg_catalog.=) "+router.QuoteLiteral(col)+" AND NOT a.attisdropped")
		if err != nil {
			return err
		}
		if len(rows) != 1 || len(rows[0]) != 2 {
			return pgerr.New(pgerr.InternalError, "could not find the new column %s of %s", router.QuoteIdent(col), router.QuoteIdent(w.t.Name))
		}
		if string(rows[0][0]) != "true" {
			return pgerr.New(pgerr.FeatureNotSupported, "ADD COLUMN with a volatile DEFAULT on distributed table %s is not supported", router.QuoteIdent(w.t.Name)).
				WithDetail("PostgreSQL gives each existing row its own value of a volatile default (random(), nextval(), clock_timestamp()); each placement would compute different ones.").
				WithHint("Add the column without a default, fill it with UPDATE, then ALTER COLUMN ... SET DEFAULT (the coordinator evaluates it for new rows).")
		}
		typ := string(rows[0][1])
		rows, err = c.ExecRows(ctx, "SELECT COALESCE(pg_catalog.quote_literal(("+expr+")::"+typ+"), 'NULL')")
		if err != nil {
			return err
		}
		if len(rows) != 1 || len(rows[0]) != 1 {
			return pgerr.New(pgerr.InternalError, "could not compute the default of the new column %s", router.QuoteIdent(col))
		}
		if w.cat.Defaults == nil {
			w.cat.Defaults = map[string]string{}
		}
		w.cat.Defaults[col] = string(rows[0][0]) + "::" + typ
	}
	return nil
}
