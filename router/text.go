package router

// stmtText is the text of the statement being planned, read through its tokens: where
// a clause, a parenthesis, a name or an expression starts and ends, which literal a
// token is, and the templates that copy a stretch of text with holes for the literals.
// It makes no planning decision; the planner embeds it, and its methods are the
// planner's vocabulary for the text (clauses.go, and the token helpers of analyze.go,
// insert.go, insertselect.go, modify.go and select.go).
type stmtText struct {
	in     *Input
	litIdx map[int32]int // token index -> literal number
	// start and end are the byte range of the statement being planned within in.Text
	// (a query string holds several).
	start, end int
}
