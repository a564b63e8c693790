package backend

import (
	"net"
	"time"

	"github.com/pgshard/pgshard/proxy/pgwire"
)

// Over returns a Conn speaking the protocol on nc, a connection to a server already past
// its startup (authenticated, ready for a query, not in a transaction), which Dial did
// not establish: one end of a net.Pipe whose other end plays a scripted server, in the
// proxy's executor tests. It cannot be cancelled (it has no backend key).
func Over(nc net.Conn, addr string) *Conn {
	c := &Conn{
		Addr:     addr,
		nc:       nc,
		r:        pgwire.NewReader(nc, 32<<10),
		w:        pgwire.NewWriter(nc),
		Params:   map[string]string{},
		TxStatus: 'I',
		Prepared: map[string]bool{},
		used:     time.Now(),
	}
	c.w.AutoFlush = 0
	c.w.Tap = func(typ byte, _ int) {
		if typ == 'S' || typ == 'Q' {
			c.inFlight++
		}
	}
	return c
}
