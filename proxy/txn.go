package proxy

import (
	"errors"
)

// The transaction layer: the state of the session's transaction block and its
// transitions. Every change of the state goes through beginBlock, failBlock, resumeBlock
// and endBlock (grep for them); the block's backend connections, savepoints and shard
// locks are in session.go, exec.go and locks.go.
//
//	          beginBlock                failBlock
//	txIdle ───────────────▶ txBlock ─────────────▶ txFailed
//	   ▲                      ▲  │                    │
//	   │                      │  └── resumeBlock ◀────┘ (ROLLBACK TO)
//	   └──────── endBlock (COMMIT, ROLLBACK, endTx) ───┘

// txStatus is the state of the session's transaction block, as ReadyForQuery reports it.
type txStatus byte

const (
	txIdle   txStatus = 'I' // no transaction block
	txBlock  txStatus = 'T' // in a transaction block
	txFailed txStatus = 'E' // in a failed transaction block: only ROLLBACK (TO) runs
)

func (s txStatus) String() string {
	switch s {
	case txIdle:
		return "idle"
	case txBlock:
		return "in transaction block"
	case txFailed:
		return "in failed transaction block"
	}
	return "txStatus(" + string(rune(s)) + ")"
}

// wire is the status byte of ReadyForQuery.
func (s txStatus) wire() byte { return byte(s) }

// beginBlock opens a transaction block; replay are the statements that start it on each
// backend that joins it (BEGIN with its options, SET TRANSACTION ...).
func (ss *session) beginBlock(replay ...string) {
	ss.tx = txBlock
	ss.txReplay = replay
}

// failBlock fails the transaction block, if one is open and has not failed yet: until
// ROLLBACK (or ROLLBACK TO a savepoint) every statement is refused.
func (ss *session) failBlock() {
	if ss.tx == txBlock {
		ss.tx = txFailed
	}
}

// resumeBlock brings the block back after ROLLBACK TO a savepoint.
func (ss *session) resumeBlock() {
	ss.tx = txBlock
	ss.failedUndone = false
}

// endBlock returns to the idle state (endTx releases what the block held first).
func (ss *session) endBlock() {
	ss.tx = txIdle
	ss.failedUndone = false
}

// sentError is a statement's error whose ErrorResponse already reached the client (a
// backend's error relayed as it came): the statement failed, and the rest of its query
// string or pipeline must not run, but the error is not to be sent again.
type sentError struct{ err error }

func (e *sentError) Error() string { return e.err.Error() }
func (e *sentError) Unwrap() error { return e.err }

// markSent says that err (if any) already reached the client.
func markSent(err error) error {
	if err == nil || errorSent(err) {
		return err
	}
	return &sentError{err}
}

// errorSent reports whether err already reached the client.
func errorSent(err error) bool {
	var se *sentError
	return errors.As(err, &se)
}

// statementFailed is where a statement fails: its error reaches the client (unless it
// did already) and the transaction block, if any, fails. It returns the error marked as
// sent.
func (ss *session) statementFailed(err error) error {
	if !errorSent(err) {
		ss.sendError(err)
	}
	ss.failBlock()
	return markSent(err)
}
