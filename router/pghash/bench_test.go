package pghash

import "testing"

var sink int32

func BenchmarkText(b *testing.B) {
	k := []byte("HN802")
	for b.Loop() {
		sink = Text(k)
	}
}

func BenchmarkInt4(b *testing.B) {
	for i := int32(0); b.Loop(); i++ {
		sink = Int4(i)
	}
}

func BenchmarkHashText(b *testing.B) {
	for _, c := range []struct {
		name string
		typ  uint32
		val  string
	}{
		{"int4", OIDInt4, "32743"},
		{"int8", OIDInt8, "9223372036854775807"},
		{"text", OIDText, "HN802"},
		{"numeric", OIDNumeric, "12345.678"},
		{"uuid", OIDUUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{"timestamptz", OIDTimestamptz, "2020-01-02 03:04:05.123456+02"},
	} {
		k := []byte(c.val)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h, ok := HashText(c.typ, k)
				if !ok {
					b.Fatal("refused")
				}
				sink = h
			}
		})
	}
}
