package pgwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
	"testing/iotest"
)

func frame(typ byte, body []byte) []byte {
	out := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(len(body)+4))
	return append(out, body...)
}

// TestLargeAnnouncedLength: a message that announces a body of up to the limit (1GiB) but
// sends little costs memory for what it sends, not for what it announces; large messages
// that do arrive, in pieces, are read whole.
func TestLargeAnnouncedLength(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < 8; i++ {
		hdr := []byte{'Q', 0x3f, 0xff, 0xff, 0xff}
		r := NewReader(bytes.NewReader(append(hdr, make([]byte, 1000)...)), 8192)
		if _, _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("announced 1GiB, sent 1000 bytes: %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 64<<20 {
		t.Errorf("8 messages announcing 1GiB each allocated %d MB", d>>20)
	}
	body := make([]byte, 5<<20+123)
	for i := range body {
		body[i] = byte(i * 7)
	}
	stream := append(frame('d', body), frame('S', nil)...)
	r := NewReader(iotest.HalfReader(bytes.NewReader(stream)), 8192)
	typ, got, err := r.Next()
	if err != nil || typ != 'd' || !bytes.Equal(got, body) {
		t.Fatalf("5MB message: %c %d bytes, %v", typ, len(got), err)
	}
	if typ, got, err := r.Next(); err != nil || typ != 'S' || len(got) != 0 {
		t.Fatalf("after it: %c %v", typ, err)
	}
}
