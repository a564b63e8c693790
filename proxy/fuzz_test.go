package proxy

import (
	"bytes"
	"testing"

	"github.com/pgshard/pgshard/proxy/pgwire"
	"github.com/pgshard/pgshard/router"
)

// FuzzFrontendParsing drives the proxy's own front-end parsing (framing, startup packets,
// options, admin statements; the startup message's layout is package protocol's fuzz test) with arbitrary bytes: nothing may panic, and framing must
// never return more bytes than it was given. The end-to-end FuzzFrontend in package tests
// drives a running proxy.
func FuzzFrontendParsing(f *testing.F) {
	f.Add([]byte("Q\x00\x00\x00\x0dselect 1\x00"))
	f.Add([]byte("\x00\x00\x00\x08\x04\xd2\x16\x2f"))
	f.Add([]byte("user\x00postgres\x00options\x00-c search_path=a\\ b --x=y\x00\x00"))
	f.Add([]byte("SHOW SHARDS \"My\".\"T\""))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := pgwire.NewReader(bytes.NewReader(data), 64)
		r.SetMaxMessage(1 << 16)
		total := 0
		for {
			typ, body, err := r.Next()
			if err != nil {
				break
			}
			_ = typ
			total += len(body) + 5
			if total > len(data) {
				t.Fatalf("framing returned %d bytes of %d", total, len(data))
			}
		}
		r2 := pgwire.NewReader(bytes.NewReader(data), 64)
		r2.Startup()
		parseOptions(string(data))
		router.PlanAdmin(string(data))
		cstring(data)
		decodeBackendError(data)
	})
}
