package proxy

import "encoding/binary"

// A lineLog remembers the client's line number of each row sent on a COPY stream, for
// the rows a placement may still report an error about (those in flight: sent but not
// yet read by the server). It takes bounded memory whatever the size of the COPY: the
// line numbers as uvarint differences in chunks, the oldest chunks dropped past
// lineLogChunks. With the usual one-byte differences it remembers the last 200,000 rows
// or more, far more than the buffers between the proxy and a server hold.
type lineLog struct {
	chunks []lineChunk
	rows   int64 // rows logged
	last   int64 // the last row's line
}

type lineChunk struct {
	first     int64 // the stream's row number (from 1) of the chunk's first row
	firstLine int64
	deltas    []byte // uvarints: the line differences of the chunk's next rows
}

const (
	lineChunkBytes = 32 << 10
	lineLogChunks  = 8
)

// add logs the next row's line.
func (l *lineLog) add(line int64) {
	l.rows++
	if n := len(l.chunks); n == 0 || len(l.chunks[n-1].deltas) >= lineChunkBytes {
		var buf []byte
		if n == lineLogChunks {
			buf = l.chunks[0].deltas[:0]
			copy(l.chunks, l.chunks[1:])
			l.chunks = l.chunks[:n-1]
		}
		l.chunks = append(l.chunks, lineChunk{first: l.rows, firstLine: line, deltas: buf})
		l.last = line
		return
	}
	c := &l.chunks[len(l.chunks)-1]
	c.deltas = binary.AppendUvarint(c.deltas, uint64(line-l.last))
	l.last = line
}

// line returns the client's line of the stream's row n (from 1), if still remembered.
func (l *lineLog) line(n int64) (int64, bool) {
	if n < 1 || n > l.rows {
		return 0, false
	}
	for i := len(l.chunks) - 1; i >= 0; i-- {
		c := l.chunks[i]
		if n < c.first {
			continue
		}
		line, row, b := c.firstLine, c.first, c.deltas
		for row < n {
			d, k := binary.Uvarint(b)
			if k <= 0 {
				return 0, false
			}
			b, line, row = b[k:], line+int64(d), row+1
		}
		return line, true
	}
	return 0, false
}
