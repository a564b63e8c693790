package control

import (
	"context"
	"fmt"
	"strconv"

	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/repair"
)

// repairShard handles REPAIR SHARD <id> (superusers only, checked by Admin): it repairs
// every inactive placement of the shard with the repairer, sending progress notices, and
// answers one row per repaired placement.
func (e *Env) repairShard(ctx context.Context, arg string) error {
	if e.Client.InTransactionBlock() {
		return pgerr.New(pgerr.ActiveSQLTransaction, "REPAIR SHARD cannot run inside a transaction block")
	}
	id, err := strconv.ParseInt(arg, 10, 64)
	if err != nil {
		return pgerr.New(pgerr.InvalidTextRep, "invalid shard id %q", arg)
	}
	if sh := e.Snapshots.Load().Shard(id); sh != nil {
		inactive := 0
		for _, p := range sh.Placements {
			if p.State != 1 {
				inactive++
			}
		}
		if inactive == 0 {
			e.Client.Notice(pgerr.New(pgerr.SuccessfulCompletion, "shard %d has no inactive placements", id).WithSeverity("NOTICE"))
		}
	}
	// Progress is reported from the copy's goroutines while this session waits for the
	// repair, so nothing else writes to the client meanwhile.
	progress := func(p repair.Progress) {
		msg := fmt.Sprintf("shard %d to %s: %s", p.ShardID, p.Target, p.Step)
		if p.Step == "copying" {
			msg += fmt.Sprintf(", %d of %d bytes (%d%%)", p.Bytes, p.SourceBytes, p.Percent())
		}
		if p.Step == "done" {
			msg += fmt.Sprintf(", %d rows", p.Rows)
		}
		e.Client.Notice(pgerr.New(pgerr.SuccessfulCompletion, "%s", msg).WithSeverity("NOTICE"))
		e.Client.Flush()
	}
	results, err := e.Repairer.RepairShard(ctx, id, "statement", e.Client.User(), progress)
	var rows [][]string
	for _, r := range results {
		rows = append(rows, []string{strconv.FormatInt(r.ShardID, 10), strconv.FormatInt(r.PlacementID, 10), r.Source.String(), r.Target.String(),
			strconv.FormatInt(r.Rows, 10), strconv.FormatInt(r.Bytes, 10), fmt.Sprintf("%.3f", r.Duration.Seconds())})
	}
	if err != nil {
		return err
	}
	e.adminRows("REPAIR SHARD", adminColumns["REPAIR SHARD"], rows)
	return nil
}
