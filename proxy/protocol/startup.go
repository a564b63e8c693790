package protocol

import (
	"encoding/binary"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/pgwire"
)

// Protocol codes of untyped startup-phase messages.
const (
	codeSSLRequest    = 80877103
	codeGSSENCRequest = 80877104
	codeCancelRequest = 80877102
)

// StartupOptions say how the startup phase answers what is not the protocol's to
// decide.
type StartupOptions struct {
	// Cancel is called with a CancelRequest's process ID and secret key.
	Cancel func(pid, secret uint32)
	// Refuse, if set, answers the StartupMessage (a connection beyond the server's
	// limit).
	Refuse *pgerr.Error
}

// Startup runs the startup phase's framing: encryption requests are declined ('N'), a
// CancelRequest is passed on, and the StartupMessage's parameters are returned
// (protocol versions and extensions the proxy does not speak are negotiated down to
// 3.0). ok is false when the connection must close: the client heard why, if it is to.
// Authentication is the caller's.
func (c *Conn) Startup(opt StartupOptions) (params map[string]string, ok bool) {
	for params == nil {
		body, err := c.r.Startup()
		if err != nil {
			if errors.Is(err, pgwire.ErrBadLength) || errors.Is(err, pgwire.ErrTooLarge) {
				c.Fatal(pgerr.New(pgerr.ProtocolViolation, "invalid length of startup packet"))
			}
			return nil, false
		}
		if len(body) < 4 {
			c.Fatal(pgerr.New(pgerr.ProtocolViolation, "invalid length of startup packet"))
			return nil, false
		}
		code := binary.BigEndian.Uint32(body)
		switch {
		case code == codeSSLRequest || code == codeGSSENCRequest:
			if c.r.Buffered() > 0 {
				// Bytes after an encryption request before its answer could have been
				// injected by a man in the middle (CVE-2021-23222).
				c.Fatal(pgerr.New(pgerr.ProtocolViolation, "received unencrypted data after SSL request"))
				return nil, false
			}
			c.w.Bytes([]byte{'N'})
			if c.w.Flush() != nil {
				return nil, false
			}
		case code == codeCancelRequest:
			if len(body) >= 12 && opt.Cancel != nil {
				opt.Cancel(binary.BigEndian.Uint32(body[4:]), binary.BigEndian.Uint32(body[8:]))
			}
			return nil, false
		case code>>16 == 3 && opt.Refuse != nil:
			c.Fatal(opt.Refuse)
			return nil, false
		case code>>16 == 3:
			var unknown []string
			params, unknown = parseStartup(body[4:])
			if params == nil {
				c.Fatal(pgerr.New(pgerr.ProtocolViolation, "invalid startup packet layout: expected terminator as last byte"))
				return nil, false
			}
			if code&0xffff > 0 || len(unknown) > 0 {
				// Newer minor versions and protocol extensions: offer 3.0.
				c.w.Msg(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unknown})
			}
		default:
			c.Fatal(pgerr.New(pgerr.FeatureNotSupported, "unsupported frontend protocol %d.%d: server supports 3.0 to 3.0", code>>16, code&0xffff))
			return nil, false
		}
	}
	return params, true
}

// parseStartup reads a StartupMessage's name/value pairs. Options named _pq_.* are
// protocol extensions the proxy does not support; they are returned separately.
func parseStartup(b []byte) (map[string]string, []string) {
	params := map[string]string{}
	var unknown []string
	for {
		i := indexZero(b)
		if i < 0 {
			return nil, nil
		}
		name := string(b[:i])
		b = b[i+1:]
		if name == "" {
			if len(b) != 0 {
				return nil, nil
			}
			return params, unknown
		}
		j := indexZero(b)
		if j < 0 {
			return nil, nil
		}
		if strings.HasPrefix(name, "_pq_.") {
			unknown = append(unknown, name)
		} else {
			params[name] = string(b[:j])
		}
		b = b[j+1:]
	}
}

func indexZero(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}
