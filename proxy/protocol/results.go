package protocol

import (
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/pgwire"
)

// Results is where one statement's results go (RowDescription, DataRow, CommandComplete,
// notices): the client's writer, or a writer of the statement's own (a spool that holds
// the results back). The executor writes through it and never learns which; whoever
// runs the statement may Redirect it while it runs. That is how a portal suspended part
// way through its result is settled: the rest of its rows go to a spool, or nowhere,
// from the statement's next write on, without the statement swapping any writer or the
// session's writer ever standing for something else than the client.
type Results struct {
	// Writer is the current destination; its methods (Raw, Msg, Len, Truncate, ...) are
	// the Results'.
	*pgwire.Writer
	conn *Conn // the client's Conn, for counted flushes; nil for Results made by NewResults
}

// Results returns results that go to the client.
func (c *Conn) Results() *Results { return &Results{Writer: c.w, conn: c} }

// NewResults returns results that go to w.
func NewResults(w *pgwire.Writer) *Results { return &Results{Writer: w} }

// Redirect sends the results written from now on to w (what was written before stays
// where it went).
func (r *Results) Redirect(w *pgwire.Writer) { r.Writer = w }

// ToClient reports whether the results go to the client now.
func (r *Results) ToClient() bool { return r.conn != nil && r.Writer == r.conn.w }

// Flush sends what is buffered on: to the client (counted), or to the writer's own
// destination.
func (r *Results) Flush() error {
	if r.ToClient() {
		r.conn.Flush()
		return r.conn.w.Err()
	}
	return r.Writer.Flush()
}

// CommandComplete ends a statement's results with its tag.
func (r *Results) CommandComplete(tag string) {
	r.Raw('C', append([]byte(tag), 0))
}

// Notice sends e as a NoticeResponse.
func (r *Results) Notice(e *pgerr.Error) {
	nr := pgproto3.NoticeResponse(*ErrorResponse(e))
	r.Msg(&nr)
}
