package protocol

import (
	"bytes"
	"context"
	"io"
	"testing"
)

// FuzzConn drives a Conn with arbitrary bytes, from its startup phase on, over a
// scripted Handler: nothing may panic, and a Conn always ends when its input does.
func FuzzConn(f *testing.F) {
	f.Add(startupMsg(map[string]string{"user": "u"}))
	f.Add(append(startupMsg(map[string]string{"user": "u"}), client(pipeline("a")...)...))
	f.Add([]byte("user\x00postgres\x00options\x00-c search_path=a\\ b --x=y\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parseStartup(data)
		c := New(bytes.NewReader(data), io.Discard, 1<<16, Counters{})
		if _, ok := c.Startup(StartupOptions{}); !ok {
			c = New(bytes.NewReader(data), io.Discard, 1<<16, Counters{})
		}
		c.Serve(context.Background(), &script{w: c.Writer()})
	})
}
