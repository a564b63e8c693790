// Package protocol is the client side of PostgreSQL's frontend/backend protocol (3.0) in
// pgshard: it owns the client connection's bytes and the order of its messages, and asks
// a Handler (the proxy's session) what each message means. It knows nothing of shards,
// plans or backend connections, and it reads from an io.Reader and writes to an
// io.Writer, so that another I/O layer (an event loop instead of a goroutine per
// client) can drive it later.
//
// The lifecycle of a connection:
//
//	Startup (Conn.Startup)
//	  SSLRequest, GSSENCRequest --> 'N' (declined), read again
//	  CancelRequest --------------> Cancel(pid, secret), close
//	  StartupMessage -------------> params (authentication is the caller's)
//	        |
//	        v                          Handler.Idle: deadline, LISTEN relay
//	+---> idle <-----------------------------------------------------------+
//	|       |                                                              |
//	|       +-- Query --> Admit --> Query(sql) --------> ReadyForQuery ----+
//	|       |   (the Handler reports the statements' errors: Fail; after   |
//	|       |   a pipeline not ended by Sync, Sync is called before RFQ)   |
//	|       |                                                              |
//	|       +-- Parse, Bind, Describe, Execute, Close                      |
//	|       v                                                              |
//	|   pipeline --> Admit --> Parse(...) ... ok --> next message          |
//	|       |                      | error                                 |
//	|       |                      v                                       |
//	|       |           Fail, flush --> skipping: every message but        |
//	|       |                           Flush and Sync is dropped          |
//	|       |   Flush: flush what is buffered      |                       |
//	|       v                                      v                       |
//	|     Sync --> Handler.Sync --> ReadyForQuery(Handler.Ready) ----------+
//	|
//	+-- the connection ends: Terminate, end of input, a protocol violation
//	    (FATAL 08P01: unknown message type, bad length, message over the size
//	    limit, undecodable message), Idle's deadline (its FATAL error),
//	    Shutdown (57P01).
//
// ReadyForQuery carries the transaction status the Handler reports (Ready): the protocol
// does not keep transaction state. The writer (Writer) buffers messages until Flush,
// ReadyForQuery or an error; a Handler writes its results into it.
package protocol
