package copyfmt

import (
	"bytes"
	"strconv"
	"testing"
)

// pgbenchAccounts is COPY text data shaped like pgbench_accounts as pgbench -i sends it:
// aid, bid, abalance, then an 84-space filler.
func pgbenchAccounts(rows int, csv bool) []byte {
	var b bytes.Buffer
	filler := bytes.Repeat([]byte(" "), 84)
	sep := byte('\t')
	if csv {
		sep = ','
	}
	for i := 1; i <= rows; i++ {
		b.WriteString(strconv.Itoa(i))
		b.WriteByte(sep)
		b.WriteString(strconv.Itoa((i-1)/100000 + 1))
		b.WriteByte(sep)
		b.WriteByte('0')
		b.WriteByte(sep)
		b.Write(filler)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// benchSplit splits data, fed in messages of msgSize bytes (0: one message per row, as
// psql and pgbench send them), and reads the key (field 0) of every row.
func benchSplit(b *testing.B, o *Options, data []byte, msgSize int) {
	var msgs [][]byte
	if msgSize == 0 {
		for rest := data; len(rest) > 0; {
			i := bytes.IndexByte(rest, '\n') + 1
			msgs = append(msgs, rest[:i])
			rest = rest[i:]
		}
	} else {
		for rest := data; len(rest) > 0; {
			n := min(msgSize, len(rest))
			msgs = append(msgs, rest[:n])
			rest = rest[n:]
		}
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var rows, keyBytes int
	for b.Loop() {
		s := NewSplitter(o)
		rows, keyBytes = 0, 0
		for _, m := range msgs {
			s.Write(m)
			for {
				row, ok, err := s.Next()
				if err != nil {
					b.Fatal(err)
				}
				if !ok {
					break
				}
				key, _, err := o.Field(row, 0)
				if err != nil {
					b.Fatal(err)
				}
				rows++
				keyBytes += len(key)
			}
		}
		if _, ok, err := s.Finish(); ok || err != nil {
			b.Fatal(ok, err)
		}
	}
	b.ReportMetric(float64(rows), "rows/op")
}

// utf8Options are the default options of f for a UTF8 client: the input is verified.
func utf8Options(f Format) *Options {
	o := NewOptions(f)
	o.ClientEncoding = "UTF8"
	return o
}

func BenchmarkSplitKeyText64K(b *testing.B) {
	benchSplit(b, utf8Options(Text), pgbenchAccounts(100000, false), 64<<10)
}

func BenchmarkSplitKeyText64KUnverified(b *testing.B) {
	benchSplit(b, NewOptions(Text), pgbenchAccounts(100000, false), 64<<10)
}

func BenchmarkSplitKeyTextRowMessages(b *testing.B) {
	benchSplit(b, utf8Options(Text), pgbenchAccounts(100000, false), 0)
}

func BenchmarkSplitKeyCSV64K(b *testing.B) {
	benchSplit(b, utf8Options(CSV), pgbenchAccounts(100000, true), 64<<10)
}

func BenchmarkSplitKeyCSVRowMessages(b *testing.B) {
	benchSplit(b, utf8Options(CSV), pgbenchAccounts(100000, true), 0)
}
