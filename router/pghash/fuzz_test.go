package pghash

import "testing"

// FuzzHashText checks that no input makes HashText, HashBinary or HashCanonical panic, for
// any supported type.
func FuzzHashText(f *testing.F) {
	for _, s := range []string{"", "0", "-2147483648", " 12 ", "1.5e-3", "NaN", "-Infinity", "1e131071",
		"0.0001e-16380", "true", "of", `\x0A 0b`, `a\101\\`, `\200`, "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
		"2020-02-29", "2020-01-02T03:04:05.9999995+15:59:59", "24:00:00", "epoch", "é日本", "\xff",
		"00000000000000000000000000000000000000000001.000000000000000000001e-16383"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, typ := range allTypes {
			HashText(typ, b)
			HashBinary(typ, b)
			HashCanonical(typ, b)
		}
		HashText(0, b)
	})
}
