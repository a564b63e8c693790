package router

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// SetAction is what a SET, RESET or DISCARD statement does to the session's settings.
type SetAction uint8

// Set actions.
const (
	// SetValue gives Name a value: SET name = value, SET name FROM CURRENT, and the
	// statements PostgreSQL reads as several settings at once (SET TRANSACTION ..., SET
	// SESSION CHARACTERISTICS ...).
	SetValue SetAction = iota
	// SetDefault is SET name TO DEFAULT.
	SetDefault
	// Reset is RESET name (and SET SESSION AUTHORIZATION DEFAULT, which PostgreSQL
	// reads as RESET session_authorization).
	Reset
	// ResetAll is RESET ALL.
	ResetAll
	// DiscardAll, DiscardPlans, DiscardSequences and DiscardTemp are DISCARD's forms.
	DiscardAll
	DiscardPlans
	DiscardSequences
	DiscardTemp
)

var setActionNames = [...]string{"SET", "SET DEFAULT", "RESET", "RESET ALL", "DISCARD ALL", "DISCARD PLANS",
	"DISCARD SEQUENCES", "DISCARD TEMP"}

func (a SetAction) String() string {
	if int(a) < len(setActionNames) {
		return setActionNames[a]
	}
	return "SetAction(" + itoa(int(a)) + ")"
}

// SetPlan is what a SET, RESET or DISCARD statement changes, read from PostgreSQL's
// parse tree, so that the proxy need not read the statement's text again: which settings
// return to their session defaults (the proxy applied the client's startup settings
// with SET on a pooled connection, where RESET would return to the server's), whether
// prepared statements go, and whether the setting is one the proxy keeps for itself.
type SetPlan struct {
	Action SetAction
	// Name is the setting, in lower case as PostgreSQL looks settings up ("" for RESET
	// ALL and DISCARD; "transaction" and the like for the multi-setting forms).
	Name string
	// Local is set for SET LOCAL (which ends with the transaction).
	Local bool
}

// Discards reports whether the statement is a DISCARD: the coordinator connection's
// prepared statements may be gone.
func (s *SetPlan) Discards() bool { return s.Action >= DiscardAll }

// ResetsToDefault says which settings the statement returns to their session defaults:
// every one (all: RESET ALL, DISCARD ALL) or the one named (RESET name, SET name TO
// DEFAULT, and SET LOCAL name TO DEFAULT, which does so until the transaction ends: see
// Local); "", false for none.
func (s *SetPlan) ResetsToDefault() (name string, all bool) {
	switch s.Action {
	case ResetAll, DiscardAll:
		return "", true
	case Reset, SetDefault:
		return s.Name, false
	}
	return "", false
}

// Variable is the one setting a SET or RESET changes ("" for RESET ALL and DISCARD).
func (s *SetPlan) Variable() string {
	if s.Action <= Reset {
		return s.Name
	}
	return ""
}

// setPlan reads a SET, RESET or DISCARD statement's parse tree.
func setPlan(stmt any) *SetPlan {
	switch s := stmt.(type) {
	case *pg_query.VariableSetStmt:
		sp := &SetPlan{Name: strings.ToLower(s.Name), Local: s.IsLocal}
		switch s.Kind {
		case pg_query.VariableSetKind_VAR_SET_DEFAULT:
			sp.Action = SetDefault
		case pg_query.VariableSetKind_VAR_RESET:
			sp.Action = Reset
		case pg_query.VariableSetKind_VAR_RESET_ALL:
			sp.Action = ResetAll
		}
		return sp
	case *pg_query.DiscardStmt:
		switch s.Target {
		case pg_query.DiscardMode_DISCARD_PLANS:
			return &SetPlan{Action: DiscardPlans}
		case pg_query.DiscardMode_DISCARD_SEQUENCES:
			return &SetPlan{Action: DiscardSequences}
		case pg_query.DiscardMode_DISCARD_TEMP:
			return &SetPlan{Action: DiscardTemp}
		}
		return &SetPlan{Action: DiscardAll}
	}
	return nil
}
