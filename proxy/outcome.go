package proxy

import (
	"sort"
	"strings"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
)

// The write failure model, as pure decisions over what each placement of a shard answered.
//
// Only unavailability — the connection refused or lost, the server shutting down or
// crashed (08xxx, 57P01, 57P02, 57P03) — is a reason to mark a placement inactive, and
// only when a sibling took the write, so the last placement that has the data is never
// marked. Any error a placement answers with is the client's: the statement is aborted on
// every placement and nothing is marked. That covers the transaction-level errors that
// one placement may give and its sibling not (40001 and 40P01: each placement has its
// own snapshot and its own lock waits; 55P03 and 57014: timeouts and cancels land on one
// server; 25P02), resource errors (53xxx), and everything else. The one exception is
// divergence of data: the placements run the statement in the same order (shard write
// locks) on what should be the same rows, so a constraint violation (class 23, decided
// by the rows that exist, whatever the snapshot) on one placement while a sibling
// succeeded shows that their rows differ. The odd placements are marked and the
// statement succeeds. Inside a transaction block the marked placement's worker has its
// part of the block aborted with it: the session treats that worker as lost for the
// rest of the block (txn.go: partAborted), so its other placements written in the
// block are marked at COMMIT. A different row count is divergence too outside blocks
// (the majority's answer wins, the first placement's on a tie), but not inside one: a
// REPEATABLE READ block took its snapshot on one placement at an earlier statement and
// on another only now, so the placements may see different rows, and the statement
// fails with a serialization failure (40001), marking nothing. When placements answer
// with different errors, none took the write and nothing is marked; the client gets the
// first that is not a constraint violation (a 40001 rather than a duplicate key:
// retrying may succeed).

// outcomeKind is what one placement did with a statement.
type outcomeKind uint8

const (
	outcomeOK          outcomeKind = iota // it answered with a command tag
	outcomeError                          // it answered with an ErrorResponse
	outcomeUnavailable                    // no answer: connection refused or lost, or a shutdown
)

// writeOutcome is one placement's answer to a write.
type writeOutcome struct {
	kind  outcomeKind
	tag   string       // outcomeOK: the command tag
	err   *pgerr.Error // outcomeError: the error
	cause error        // outcomeUnavailable: why
	// sent: outcomeUnavailable after the statement reached the connection, so that a
	// statement not inside a transaction may have been applied.
	sent bool
}

// markReason says why a placement is marked inactive.
type markReason uint8

const (
	markUnavailable markReason = iota + 1 // it did not answer while a sibling took the write
	markError                             // it answered with a constraint violation a sibling did not give
	markRowCount                          // it changed a different number of rows than the others
	markUnknown                           // its outcome is unknown and it is not the one kept
)

// writeDecision is the outcome of a write to one shard.
type writeDecision struct {
	// err, when not nil, is the statement's error: the write must be undone on every
	// placement (rolled back), and marks are still applied.
	err error
	// chosen is the index of the placement whose answer (tag, RETURNING rows) the client
	// gets, when err is nil.
	chosen int
	// marks are the indexes of the placements to mark inactive, with the reason for each.
	marks   []int
	reasons []markReason
}

func (d *writeDecision) mark(i int, r markReason) {
	d.marks = append(d.marks, i)
	d.reasons = append(d.reasons, r)
}

// divergence reports whether an error a placement answered, while a sibling placement
// took the same statement, shows that their data differ: an integrity constraint
// violation (class 23) is decided by the rows alone.
func divergence(e *pgerr.Error) bool { return strings.HasPrefix(string(e.Code), "23") }

// decideWrite decides a write to one shard from the answers of its placements (in
// placement order). inBlock is true inside a client's transaction block; atomic is true
// when every placement ran the statement inside a transaction that is not committed yet
// (a block, or the statement's own), so that a placement that did not answer has not
// applied it.
func decideWrite(outs []writeOutcome, inBlock, atomic bool) writeDecision {
	d := writeDecision{chosen: -1}
	var ok []int
	var clientErr, divErr *pgerr.Error
	for i, o := range outs {
		switch o.kind {
		case outcomeOK:
			ok = append(ok, i)
		case outcomeError:
			if !divergence(o.err) {
				if clientErr == nil {
					clientErr = o.err
				}
			} else if divErr == nil {
				divErr = o.err
			}
		}
	}
	if clientErr != nil {
		// The client's error: abort everywhere, mark nothing.
		d.err = clientErr
		return d
	}
	if len(ok) == 0 {
		if divErr != nil {
			// Every placement that answered refused the write: the client's error.
			d.err = divErr
			return d
		}
		return decideUnavailable(outs, atomic)
	}
	// The answer most placements gave is the shard's (the first on a tie).
	best, bestN := ok[0], 0
	for _, i := range ok {
		n := 0
		for _, j := range ok {
			if outs[j].tag == outs[i].tag {
				n++
			}
		}
		if n > bestN {
			best, bestN = i, n
		}
	}
	if inBlock && bestN != len(ok) {
		d.err = pgerr.New(pgerr.SerializationFailure, "could not serialize access: the placements of the shard changed different numbers of rows").
			WithDetail("One placement reported %q, another %q: their snapshots of the transaction differ.", outs[best].tag, otherTag(outs, ok, best)).
			WithHint("The transaction might succeed if retried.")
		return d
	}
	d.chosen = best
	for i, o := range outs {
		switch {
		case i == best:
		case o.kind == outcomeUnavailable:
			d.mark(i, markUnavailable)
		case o.kind == outcomeError:
			d.mark(i, markError)
		case o.tag != outs[best].tag:
			d.mark(i, markRowCount)
		}
	}
	return d
}

func otherTag(outs []writeOutcome, ok []int, best int) string {
	for _, i := range ok {
		if outs[i].tag != outs[best].tag {
			return outs[i].tag
		}
	}
	return ""
}

// decideUnavailable decides a write that no placement answered. Inside a transaction
// nothing was applied: an error, no marks. Outside one, a placement whose connection broke
// after the statement went out may have applied it: the first such placement is kept as
// the shard's truth and every other placement is marked, so that they are repaired from
// it rather than silently differ; the client hears that the outcome is unknown.
func decideUnavailable(outs []writeOutcome, atomic bool) writeDecision {
	d := writeDecision{chosen: -1}
	keep := -1
	if !atomic {
		for i, o := range outs {
			if o.kind == outcomeUnavailable && o.sent {
				keep = i
				break
			}
		}
	}
	if keep < 0 {
		d.err = errNoPlacement
		return d
	}
	for i := range outs {
		if i != keep {
			d.mark(i, markUnknown)
		}
	}
	d.err = errOutcomeUnknown
	return d
}

// Sentinels of decideUnavailable, replaced by the caller with errors naming the shard.
var (
	errNoPlacement    = pgerr.New(pgerr.InternalError, "could not modify any active placements")
	errOutcomeUnknown = pgerr.New(pgerr.ConnectionFailure, "the connection was lost while the write ran: it may or may not have been applied")
)

// commitOutcome is how one placement's COMMIT of a statement's own transaction ended.
type commitOutcome uint8

const (
	commitDone    commitOutcome = iota // COMMIT answered
	commitFailed                       // COMMIT answered with an error: rolled back
	commitUnknown                      // no answer: it may or may not have committed
	commitNone                         // the placement took no part (marked already, or the write failed there)
)

// decideCommit decides, after the COMMITs of one shard's placements, which placements to
// mark: when one committed, every other that took part (each now misses the write); when
// none is known to have committed but some may have, all but the first that may have.
// committed reports whether the write is known to be on a placement; unknown that it may
// or may not be.
func decideCommit(outs []commitOutcome) (marks []int, committed, unknown bool) {
	keep := -1
	for i, o := range outs {
		if o == commitDone {
			keep, committed = i, true
			break
		}
	}
	if keep < 0 {
		for i, o := range outs {
			if o == commitUnknown {
				keep, unknown = i, true
				break
			}
		}
	}
	if keep < 0 {
		return nil, false, false
	}
	for i, o := range outs {
		if i != keep && o != commitNone && o != commitDone {
			marks = append(marks, i)
		}
	}
	return marks, committed, unknown
}

// blockCommit is the outcome of a transaction block's COMMIT on the workers.
type blockCommit struct {
	// marks are the placements that miss the block's writes (their node failed to commit
	// while a sibling placement's node committed).
	marks []metadata.Placement
	// err, when not nil, is the client's answer: some shard the block wrote to has no
	// placement known to hold its writes.
	err error
}

// decideBlockCommit decides a block's COMMIT from each node's answer (nil: committed) and
// the placements the block wrote on each node. The COMMIT succeeds when every shard the
// block wrote to has a placement whose node committed; the others are marked. A shard
// with none fails the COMMIT: with 08006 when a node's outcome is unknown (its connection
// was lost during COMMIT; that placement is kept, the shard's other placements marked),
// with the node's own error otherwise (nothing of the shard was committed: no mark). The
// last placement that may hold a shard's data is never marked.
func decideBlockCommit(writes map[metadata.Node][]metadata.Placement, results map[metadata.Node]error, unavailable func(error) bool) blockCommit {
	byShard := map[int64][]metadata.Placement{}
	for _, ps := range writes {
		for _, p := range ps {
			byShard[p.ShardID] = append(byShard[p.ShardID], p)
		}
	}
	ids := make([]int64, 0, len(byShard))
	for id := range byShard {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var out blockCommit
	for _, id := range ids {
		ps := byShard[id]
		sort.Slice(ps, func(i, j int) bool { return ps[i].ID < ps[j].ID })
		outs := make([]commitOutcome, len(ps))
		for i, p := range ps {
			switch err := results[p.Node]; {
			case err == nil:
				outs[i] = commitDone
			case unavailable(err):
				outs[i] = commitUnknown
			default:
				outs[i] = commitFailed
			}
		}
		marks, committed, unknown := decideCommit(outs)
		for _, i := range marks {
			out.marks = append(out.marks, ps[i])
		}
		if committed || out.err != nil {
			continue
		}
		if unknown {
			var lost []string
			for i, p := range ps {
				if outs[i] == commitUnknown {
					lost = append(lost, p.Node.String())
				}
			}
			out.err = pgerr.New(pgerr.ConnectionFailure, "the connection to %s was lost during COMMIT", strings.Join(lost, ", ")).
				WithDetail("No placement of shard %d is known to have committed the transaction: it may or may not have been applied there, and other shards may have committed it.", id)
			continue
		}
		for _, p := range ps {
			if err := results[p.Node]; err != nil {
				out.err = err
				break
			}
		}
	}
	return out
}
