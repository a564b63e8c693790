package proxy

import (
	"fmt"
	"testing"

	"github.com/pgshard/pgshard/pgerr"
)

func TestTxTransitions(t *testing.T) {
	ss := &txnState{tx: txIdle}
	ss.failBlock()
	if ss.tx != txIdle {
		t.Fatalf("failBlock outside a block: %v", ss.tx)
	}
	ss.beginBlock("BEGIN ISOLATION LEVEL SERIALIZABLE")
	if ss.tx != txBlock || len(ss.txReplay) != 1 {
		t.Fatalf("beginBlock: %v %q", ss.tx, ss.txReplay)
	}
	ss.failBlock()
	ss.failedUndone = true
	if ss.tx != txFailed || ss.tx.wire() != 'E' {
		t.Fatalf("failBlock: %v", ss.tx)
	}
	ss.resumeBlock()
	if ss.tx != txBlock || ss.failedUndone {
		t.Fatalf("resumeBlock: %v %v", ss.tx, ss.failedUndone)
	}
	ss.failBlock()
	ss.endBlock()
	if ss.tx != txIdle || ss.tx.String() != "idle" {
		t.Fatalf("endBlock: %v", ss.tx)
	}
}

func TestSentError(t *testing.T) {
	if markSent(nil) != nil {
		t.Fatal("markSent(nil) is not nil")
	}
	if (relayResult{}).failed() != nil {
		t.Fatal("a relay without error failed")
	}
	e := pgerr.New(pgerr.UniqueViolation, "duplicate key")
	if errorSent(e) {
		t.Fatal("an error not yet sent counts as sent")
	}
	sent := markSent(e)
	if !errorSent(sent) || !errorSent(fmt.Errorf("in a block: %w", sent)) || markSent(sent) != sent {
		t.Fatal("a sent error is not recognized through wrapping")
	}
	if got := pgerr.From(sent); got.Code != pgerr.UniqueViolation {
		t.Fatalf("the sent error's SQLSTATE: %s", got.Code)
	}
}
