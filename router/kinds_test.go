package router

import "testing"

// TestKindProperties pins what the executor asks of each kind of plan (kinds.go), so
// that a new kind, or a changed answer, is a visible decision.
func TestKindProperties(t *testing.T) {
	// blockable, opens a pipeline block, streamable, row-less, runs in a failed block
	want := map[Kind][5]bool{
		Coordinator:   {true, true, true, false, false},
		Begin:         {false, false, false, true, false},
		Commit:        {false, false, false, true, true},
		Rollback:      {false, false, false, true, true},
		Savepoint:     {false, false, false, true, false},
		Release:       {false, false, false, true, false},
		RollbackTo:    {false, false, false, true, true},
		SetVar:        {true, true, false, true, false},
		Select:        {true, false, true, false, false},
		Insert:        {true, true, false, false, false},
		Update:        {true, true, false, false, false},
		Delete:        {true, true, false, false, false},
		Function:      {false, false, false, false, false},
		DropTable:     {false, false, false, true, false},
		Truncate:      {false, false, false, true, false},
		Error:         {true, false, false, true, false},
		PrepareSQL:    {false, false, false, true, false},
		ExecuteSQL:    {false, false, false, false, false},
		DeallocateSQL: {false, false, false, true, false},
		CopyIn:        {false, false, false, false, false},
		CopyOut:       {false, false, false, false, false},
		Gathered:      {true, true, true, false, false},
		Explain:       {true, false, false, false, false},
		Admin:         {false, false, false, false, true},
		DDL:           {false, false, false, true, false},
	}
	for k := Kind(0); int(k) < len(kindNames); k++ {
		w, ok := want[k]
		if !ok {
			t.Errorf("%v: no expected properties", k)
			continue
		}
		st := &Statement{Kind: k}
		got := [5]bool{st.Blockable(), st.OpensPipelineBlock(), st.Streamable(), st.RowLess(), st.RunsWhenFailed()}
		if got != w {
			t.Errorf("%v: blockable, opens block, streamable, row-less, runs when failed = %v, want %v", k, got, w)
		}
	}
	if (&Statement{Kind: SetVar, SetConfig: true}).RowLess() {
		t.Errorf("a query calling set_config returns rows")
	}
}
