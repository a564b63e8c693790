package control

import (
	"context"
	"strconv"
)

// Transactions is the server's transaction recovery, for the admin statements.
type Transactions interface {
	// Show lists the prepared transactions two-phase commits left on the workers and
	// what recovery did recently, as SHOW TRANSACTIONS' rows.
	Show(ctx context.Context) ([][]string, error)
	// Recover runs a recovery pass now and counts what it did: committed, rolled back,
	// records deleted, and prepared transactions whose coordinator transaction is still
	// in progress.
	Recover(ctx context.Context) (committed, rolledBack, deleted, pending int, err error)
}

// transactions answers SHOW TRANSACTIONS and RECOVER TRANSACTIONS (superusers only: Admin
// checked).
func (e *Env) transactions(ctx context.Context, cmd string) error {
	if cmd == "SHOW TRANSACTIONS" {
		rows, err := e.Transactions.Show(ctx)
		if err != nil {
			return err
		}
		e.adminRows("SHOW", adminColumns[cmd], rows)
		return nil
	}
	c, r, d, p, err := e.Transactions.Recover(ctx)
	if err != nil {
		return err
	}
	e.adminRows("RECOVER", adminColumns[cmd], [][]string{{strconv.Itoa(c), strconv.Itoa(r), strconv.Itoa(d), strconv.Itoa(p)}})
	return nil
}
