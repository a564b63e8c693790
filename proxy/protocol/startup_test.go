package protocol

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/pgerr"
)

// startupConn is a Conn over a client's startup-phase bytes.
func startupConn(in ...[]byte) (*Conn, *writes) {
	w := &writes{}
	return New(bytes.NewReader(bytes.Join(in, nil)), w, 0, Counters{}), w
}

func untyped(code uint32, rest ...byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(rest)))
	b = binary.BigEndian.AppendUint32(b, code)
	return append(b, rest...)
}

func startupMsg(params map[string]string) []byte {
	b, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: params}).Encode(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// turns gives one of its byte strings per Read: a client that waits for each answer.
type turns [][]byte

func (t *turns) Read(b []byte) (int, error) {
	if len(*t) == 0 {
		return 0, io.EOF
	}
	n := copy(b, (*t)[0])
	if (*t)[0] = (*t)[0][n:]; len((*t)[0]) == 0 {
		*t = (*t)[1:]
	}
	return n, nil
}

// An SSLRequest or GSSENCRequest is declined with 'N'; the StartupMessage that follows
// gives the parameters.
func TestStartupDeclinesEncryption(t *testing.T) {
	w := &writes{}
	c := New(&turns{untyped(codeSSLRequest), untyped(codeGSSENCRequest), startupMsg(map[string]string{"user": "u", "database": "d"})}, w, 0, Counters{})
	params, ok := c.Startup(StartupOptions{})
	if !ok || params["user"] != "u" || params["database"] != "d" {
		t.Fatalf("Startup() = %v, %v", params, ok)
	}
	if got := string(bytes.Join(w.chunks, nil)); got != "NN" {
		t.Errorf("answers %q, want two N", got)
	}
}

// Bytes behind an encryption request, before its answer, may have been injected
// (CVE-2021-23222): the connection ends.
func TestStartupBytesAfterSSLRequest(t *testing.T) {
	c, w := startupConn(untyped(codeSSLRequest), startupMsg(map[string]string{"user": "u"}))
	if _, ok := c.Startup(StartupOptions{}); ok {
		t.Fatal("Startup went on")
	}
	eq(t, "answers", w.frames(t), []string{"E FATAL 08P01"})
}

// A CancelRequest is passed on, and ends the connection without an answer.
func TestStartupCancelRequest(t *testing.T) {
	c, w := startupConn(untyped(codeCancelRequest, 0, 0, 0, 7, 0, 0, 0, 9))
	var pid, secret uint32
	if _, ok := c.Startup(StartupOptions{Cancel: func(p, s uint32) { pid, secret = p, s }}); ok {
		t.Fatal("Startup went on")
	}
	if pid != 7 || secret != 9 {
		t.Errorf("cancel(%d, %d), want (7, 9)", pid, secret)
	}
	if len(w.chunks) != 0 {
		t.Errorf("answered %q", w.chunks)
	}
}

// A refused connection hears why at its StartupMessage.
func TestStartupRefused(t *testing.T) {
	c, w := startupConn(startupMsg(map[string]string{"user": "u"}))
	if _, ok := c.Startup(StartupOptions{Refuse: pgerr.New(pgerr.TooManyConnections, "sorry, too many clients already")}); ok {
		t.Fatal("Startup went on")
	}
	eq(t, "answers", w.frames(t), []string{"E FATAL 53300"})
}

// A newer minor version or protocol extensions are negotiated down to 3.0; another major
// version is refused.
func TestStartupVersions(t *testing.T) {
	b := startupMsg(map[string]string{"user": "u", "_pq_.x": "1"})
	c, w := startupConn(b)
	params, ok := c.Startup(StartupOptions{})
	if !ok || params["user"] != "u" || params["_pq_.x"] != "" {
		t.Fatalf("Startup() = %v, %v", params, ok)
	}
	c.Flush()
	eq(t, "answers", w.frames(t), []string{"v"})

	c, w = startupConn(untyped(4<<16, 0))
	if _, ok := c.Startup(StartupOptions{}); ok {
		t.Fatal("Startup accepted protocol 4.0")
	}
	eq(t, "answers", w.frames(t), []string{"E FATAL 0A000"})
}

// Malformed startup packets end the connection with 08P01.
func TestStartupMalformed(t *testing.T) {
	for name, in := range map[string][]byte{
		"short":          {0, 0, 0, 6, 0, 3},
		"no terminator":  untyped(3<<16, 'u', 's', 'e', 'r', 0, 'u', 0),
		"too long":       binary.BigEndian.AppendUint32(nil, 20000),
		"value unfinish": untyped(3<<16, 'u', 0, 'v'),
	} {
		c, w := startupConn(in)
		if _, ok := c.Startup(StartupOptions{}); ok {
			t.Errorf("%s: Startup went on", name)
			continue
		}
		if f := w.frames(t); len(f) != 1 || f[0] != "E FATAL 08P01" {
			t.Errorf("%s: answers %q", name, f)
		}
	}
}
