package protocol

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/pgwire"
)

// script is a Handler that records the calls the Conn makes and answers as a session
// would (ParseComplete, BindComplete, ...), failing the calls named in fail.
type script struct {
	w     *pgwire.Writer
	calls []string
	fail  map[string]error // by call ("Execute p1", "Admit Q", ...)
	tx    byte
	// idle, if set, is Idle's deadline from now, and idleErr the error for it.
	idle    time.Duration
	idleErr *pgerr.Error
}

func (s *script) call(name string) error {
	s.calls = append(s.calls, name)
	return s.fail[name]
}

func (s *script) Idle() (time.Time, *pgerr.Error, bool) {
	if s.idle > 0 {
		return time.Now().Add(s.idle), s.idleErr, false
	}
	return time.Time{}, nil, false
}
func (s *script) Relay(*pgwire.Writer) bool { return false }
func (s *script) Busy()                     {}
func (s *script) Admit(typ byte, _ []byte) error {
	if err := s.fail["Admit "+string(typ)]; err != nil {
		s.calls = append(s.calls, "Admit "+string(typ))
		return err
	}
	return nil
}
func (s *script) Query(_ context.Context, sql string) {
	if err := s.call("Query " + sql); err != nil {
		s.Fail(err)
		return
	}
	s.w.Raw('C', []byte("SELECT 1\x00"))
}
func (s *script) Parse(_ context.Context, m *pgproto3.Parse) error {
	if err := s.call("Parse " + m.Name); err != nil {
		return err
	}
	s.w.Raw('1', nil)
	return nil
}
func (s *script) Bind(_ context.Context, m *pgproto3.Bind) error {
	if err := s.call("Bind " + m.DestinationPortal); err != nil {
		return err
	}
	s.w.Raw('2', nil)
	return nil
}
func (s *script) Describe(_ context.Context, m *pgproto3.Describe) error {
	if err := s.call("Describe " + m.Name); err != nil {
		return err
	}
	s.w.Raw('n', nil)
	return nil
}
func (s *script) Execute(_ context.Context, m *pgproto3.Execute) error {
	if err := s.call("Execute " + m.Portal); err != nil {
		return err
	}
	s.w.Raw('C', []byte("SELECT 1\x00"))
	return nil
}
func (s *script) Close(_ context.Context, m *pgproto3.Close) error {
	if err := s.call("Close " + m.Name); err != nil {
		return err
	}
	s.w.Raw('3', nil)
	return nil
}
func (s *script) Sync(context.Context) { s.calls = append(s.calls, "Sync") }
func (s *script) Fail(err error) {
	s.calls = append(s.calls, "Fail "+pgerr.From(err).Message)
	s.w.Msg(ErrorResponse(pgerr.From(err)))
}
func (s *script) Ready() byte {
	if s.tx == 0 {
		return 'I'
	}
	return s.tx
}

// writes records each write the Conn makes: a flush is one write.
type writes struct{ chunks [][]byte }

func (w *writes) Write(b []byte) (int, error) {
	w.chunks = append(w.chunks, append([]byte(nil), b...))
	return len(b), nil
}

// frames splits what was written into message types ('E' with its SQLSTATE).
func (w *writes) frames(t *testing.T) []string {
	t.Helper()
	r := pgwire.NewReader(bytes.NewReader(bytes.Join(w.chunks, nil)), 4096)
	var out []string
	for {
		typ, body, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading the answers: %v", err)
		}
		f := string(typ)
		switch typ {
		case 'E':
			var e pgproto3.ErrorResponse
			if err := e.Decode(body); err != nil {
				t.Fatal(err)
			}
			f += " " + e.Severity + " " + e.Code
		case 'Z':
			f += string(body)
		}
		out = append(out, f)
	}
}

// client encodes frontend messages.
func client(msgs ...pgproto3.FrontendMessage) []byte {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			panic(err)
		}
	}
	return b
}

// serve runs a Conn over the client's bytes to their end with a script.
func serve(t *testing.T, in []byte, s *script) *writes {
	t.Helper()
	out := &writes{}
	c := New(bytes.NewReader(in), out, 0, Counters{})
	s.w = c.Writer()
	c.Serve(context.Background(), s)
	return out
}

func pipeline(portal string) []pgproto3.FrontendMessage {
	return []pgproto3.FrontendMessage{
		&pgproto3.Parse{Name: portal, Query: "SELECT 1"},
		&pgproto3.Bind{DestinationPortal: portal, PreparedStatement: portal},
		&pgproto3.Execute{Portal: portal},
	}
}

func eq(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

// An error in the middle of a pipeline reaches the client at once, everything after it
// is skipped up to Sync, and Sync answers ReadyForQuery once; the next pipeline runs.
func TestPipelineErrorSkipsToSync(t *testing.T) {
	msgs := append(pipeline("a"), pipeline("b")...)
	msgs = append(msgs, &pgproto3.Describe{ObjectType: 'P', Name: "b"}, &pgproto3.Close{ObjectType: 'P', Name: "b"},
		&pgproto3.Flush{}, &pgproto3.Sync{})
	msgs = append(msgs, pipeline("c")...)
	msgs = append(msgs, &pgproto3.Sync{})
	s := &script{fail: map[string]error{"Execute a": pgerr.New(pgerr.Code("22012"), "division by zero")}}
	out := serve(t, client(msgs...), s)
	eq(t, "calls", s.calls, []string{"Parse a", "Bind a", "Execute a", "Fail division by zero", "Sync",
		"Parse c", "Bind c", "Execute c", "Sync"})
	eq(t, "answers", out.frames(t), []string{"1", "2", "E ERROR 22012", "ZI", "1", "2", "C", "ZI"})
	// The error is flushed when it happens, not held until Sync.
	first := &writes{chunks: out.chunks[:1]}
	eq(t, "first write", first.frames(t), []string{"1", "2", "E ERROR 22012"})
}

// A failed Parse or Bind skips the rest of the pipeline as a failed Execute does.
func TestPipelineParseBindErrors(t *testing.T) {
	for _, failing := range []string{"Parse a", "Bind a"} {
		s := &script{fail: map[string]error{failing: pgerr.New(pgerr.SyntaxError, "bad")}}
		out := serve(t, client(append(pipeline("a"), &pgproto3.Sync{})...), s)
		want := []string{"Parse a"}
		if failing == "Bind a" {
			want = append(want, "Bind a")
		}
		eq(t, failing+": calls", s.calls, append(want, "Fail bad", "Sync"))
		if f := out.frames(t); f[len(f)-1] != "ZI" || strings.Count(strings.Join(f, "|"), "Z") != 1 {
			t.Errorf("%s: answers %q", failing, f)
		}
	}
}

// Admit's error (a suspended portal that could not be settled) fails the message as its
// own would, without running it.
func TestAdmitErrorSkipsToSync(t *testing.T) {
	s := &script{fail: map[string]error{"Admit P": pgerr.New(pgerr.OutOfMemory, "temp file limit")}}
	out := serve(t, client(append(pipeline("a"), &pgproto3.Sync{})...), s)
	eq(t, "calls", s.calls, []string{"Admit P", "Fail temp file limit", "Sync"})
	eq(t, "answers", out.frames(t), []string{"E ERROR 53200", "ZI"})
}

// Sync reports the transaction status the Handler gives.
func TestSyncReportsHandlerStatus(t *testing.T) {
	s := &script{tx: 'E'}
	out := serve(t, client(&pgproto3.Sync{}, &pgproto3.Query{String: "SELECT 1"}), s)
	eq(t, "answers", out.frames(t), []string{"ZE", "C", "ZE"})
}

// Flush sends what is buffered without ending the pipeline; without it nothing is sent
// before Sync.
func TestFlush(t *testing.T) {
	s := &script{}
	msgs := []pgproto3.FrontendMessage{&pgproto3.Parse{Name: "a", Query: "SELECT 1"}, &pgproto3.Flush{},
		&pgproto3.Bind{PreparedStatement: "a"}, &pgproto3.Execute{}, &pgproto3.Sync{}}
	out := serve(t, client(msgs...), s)
	if len(out.chunks) != 2 || string(out.chunks[0]) != "1\x00\x00\x00\x04" {
		t.Fatalf("writes %q, want ParseComplete alone then the rest", out.chunks)
	}
	eq(t, "answers", out.frames(t), []string{"1", "2", "C", "ZI"})
	eq(t, "calls", s.calls, []string{"Parse a", "Bind ", "Execute ", "Sync"})
}

// Terminate ends the connection: nothing after it is handled.
func TestTerminate(t *testing.T) {
	s := &script{}
	out := serve(t, client(&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Terminate{}, &pgproto3.Query{String: "SELECT 2"}), s)
	eq(t, "calls", s.calls, []string{"Query SELECT 1"})
	eq(t, "answers", out.frames(t), []string{"C", "ZI"})
}

// A simple query's error is the Handler's to report; ReadyForQuery follows once, and a
// later query runs.
func TestSimpleQueryError(t *testing.T) {
	s := &script{fail: map[string]error{"Query SELECT 1/0": pgerr.New(pgerr.Code("22012"), "division by zero")}}
	out := serve(t, client(&pgproto3.Query{String: "SELECT 1/0"}, &pgproto3.Query{String: "SELECT 1"}), s)
	eq(t, "calls", s.calls, []string{"Query SELECT 1/0", "Fail division by zero", "Query SELECT 1"})
	eq(t, "answers", out.frames(t), []string{"E ERROR 22012", "ZI", "C", "ZI"})
}

// A Query whose settling fails does not run; one with a NUL inside is refused whole (the
// text after the NUL must never reach a backend).
func TestSimpleQueryRefused(t *testing.T) {
	s := &script{fail: map[string]error{"Admit Q": pgerr.New(pgerr.OutOfMemory, "temp file limit")}}
	out := serve(t, client(&pgproto3.Query{String: "SELECT 1"}), s)
	eq(t, "admit: calls", s.calls, []string{"Admit Q", "Fail temp file limit"})
	eq(t, "admit: answers", out.frames(t), []string{"E ERROR 53200", "ZI"})

	s = &script{}
	out = serve(t, client(&pgproto3.Query{String: "SELECT 1\x00; DROP TABLE t"}), s)
	eq(t, "NUL: calls", s.calls, []string{"Fail invalid message format"})
	eq(t, "NUL: answers", out.frames(t), []string{"E ERROR 08P01", "ZI"})
}

// Messages that break the protocol end the connection with a FATAL 08P01.
func TestProtocolViolations(t *testing.T) {
	big := client(&pgproto3.Query{String: "SELECT '" + strings.Repeat("x", 200) + "'"})
	cases := []struct {
		name string
		in   []byte
		max  int
	}{
		{"unknown type", []byte{'!', 0, 0, 0, 4}, 0},
		{"too large", big, 100},
		{"bad length", []byte{'Q', 0, 0, 0, 2}, 0},
		{"query without terminator", []byte{'Q', 0, 0, 0, 5, 'x'}, 0},
		{"undecodable parse", []byte{'P', 0, 0, 0, 5, 'x'}, 0},
		{"undecodable execute", []byte{'E', 0, 0, 0, 5, 0}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &script{}
			out := &writes{}
			in := append(tc.in, client(&pgproto3.Query{String: "SELECT 2"})...)
			c := New(bytes.NewReader(in), out, tc.max, Counters{})
			s.w = c.Writer()
			c.Serve(context.Background(), s)
			eq(t, "answers", out.frames(t), []string{"E FATAL 08P01"})
			eq(t, "calls", s.calls, nil)
		})
	}
}

// CopyData, CopyDone and CopyFail outside COPY are ignored, as PostgreSQL does.
func TestCopyMessagesOutsideCopy(t *testing.T) {
	s := &script{}
	out := serve(t, client(&pgproto3.CopyData{Data: []byte("x")}, &pgproto3.CopyDone{}, &pgproto3.CopyFail{Message: "no"},
		&pgproto3.Query{String: "SELECT 1"}), s)
	eq(t, "answers", out.frames(t), []string{"C", "ZI"})
}

// MoreBeforeSync looks only at what the client already sent.
func TestMoreBeforeSync(t *testing.T) {
	cases := []struct {
		msgs []pgproto3.FrontendMessage
		want bool
	}{
		{[]pgproto3.FrontendMessage{&pgproto3.Sync{}}, false},
		{[]pgproto3.FrontendMessage{&pgproto3.Close{ObjectType: 'P'}, &pgproto3.Sync{}}, false},
		{[]pgproto3.FrontendMessage{&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}}, true},
		{nil, true},
	}
	for i, tc := range cases {
		in := client(append([]pgproto3.FrontendMessage{&pgproto3.Execute{}}, tc.msgs...)...)
		c := New(bytes.NewReader(in), io.Discard, 0, Counters{})
		if _, _, err := c.r.Next(); err != nil {
			t.Fatal(err)
		}
		if got := c.MoreBeforeSync(); got != tc.want {
			t.Errorf("case %d: MoreBeforeSync() = %v, want %v", i, got, tc.want)
		}
	}
}

// A client that sends nothing by the Handler's deadline hears its error and is
// disconnected.
func TestIdleDeadline(t *testing.T) {
	srv, cl := net.Pipe()
	defer cl.Close()
	s := &script{idle: 50 * time.Millisecond, idleErr: pgerr.New(pgerr.IdleSessionTimeout, "idle").WithSeverity("FATAL")}
	c := New(srv, srv, 0, Counters{})
	s.w = c.Writer()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Serve(context.Background(), s)
	}()
	r := pgwire.NewReader(cl, 4096)
	cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, body, err := r.Next()
	if err != nil || typ != 'E' || !bytes.Contains(body, []byte(pgerr.IdleSessionTimeout)) {
		t.Fatalf("got %c %q %v, want the idle error", typ, body, err)
	}
	<-done
}

// Shutdown wakes a Conn waiting for its client and ends it; a Conn that was shut down
// before it reads again tells its client why (57P01).
func TestShutdown(t *testing.T) {
	srv, cl := net.Pipe()
	defer cl.Close()
	c := New(srv, srv, 0, Counters{})
	s := &script{w: c.Writer()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Serve(context.Background(), s)
	}()
	time.Sleep(20 * time.Millisecond)
	c.Shutdown()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still waits for the client after Shutdown")
	}

	w := &writes{}
	c = New(bytes.NewReader(client(&pgproto3.Query{String: "SELECT 1"})), w, 0, Counters{})
	s = &script{w: c.Writer()}
	c.Shutdown()
	c.Serve(context.Background(), s)
	eq(t, "answers", w.frames(t), []string{"E FATAL 57P01"})
	eq(t, "calls", s.calls, nil)
}

// The counters see every byte the client sent and every byte flushed to it.
func TestCounters(t *testing.T) {
	var cnt Counters
	cnt.Received, cnt.Sent = new(atomic.Int64), new(atomic.Int64)
	in := client(&pgproto3.Query{String: "SELECT 1"})
	out := &writes{}
	c := New(bytes.NewReader(in), out, 0, cnt)
	s := &script{w: c.Writer()}
	c.Serve(context.Background(), s)
	if got := cnt.Received.Load(); got != int64(len(in)) {
		t.Errorf("received %d, want %d", got, len(in))
	}
	if got := cnt.Sent.Load(); got != int64(len(bytes.Join(out.chunks, nil))) {
		t.Errorf("sent %d, want %d", got, len(bytes.Join(out.chunks, nil)))
	}
}

// Results redirected mid-way send what follows elsewhere; what was written before stays.
func TestResultsRedirect(t *testing.T) {
	out := &writes{}
	c := New(bytes.NewReader(nil), out, 0, Counters{})
	r := c.Results()
	r.Raw('D', nil)
	if !r.ToClient() {
		t.Fatal("Results of a Conn do not go to the client")
	}
	held := &writes{}
	r.Redirect(pgwire.NewWriter(held))
	r.CommandComplete("SELECT 1")
	r.Flush()
	c.Flush()
	if r.ToClient() {
		t.Fatal("redirected Results still go to the client")
	}
	eq(t, "client", out.frames(t), []string{"D"})
	eq(t, "held", held.frames(t), []string{"C"})
}
