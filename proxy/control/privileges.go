package control

import (
	"context"

	"github.com/pgshard/pgshard/pgerr"
)

// insufficientPrivilege is PostgreSQL's SQLSTATE for permission denied.
const insufficientPrivilege pgerr.Code = "42501"

// superuser reports whether the client's current role (after SET ROLE, as PostgreSQL
// checks privileges) is a superuser on the coordinator, asked in the client's own
// coordinator session.
func (e *Env) superuser(ctx context.Context) (bool, error) {
	// is_superuser follows SET ROLE and SET SESSION AUTHORIZATION, and no client can set it.
	rows, err := e.Client.Query(ctx, "SELECT pg_catalog.current_setting('is_superuser')", nil)
	if err != nil {
		return false, err
	}
	return len(rows) == 1 && string(rows[0][0]) == "on", nil
}

// requireSuperuser refuses a client whose current role is not a superuser, with 42501,
// message and detail.
func (e *Env) requireSuperuser(ctx context.Context, message, detail string) error {
	su, err := e.superuser(ctx)
	if err != nil {
		return err
	}
	if !su {
		return pgerr.New(insufficientPrivilege, "%s", message).WithDetail("%s", detail)
	}
	return nil
}
