package proxy

import "testing"

// keyHasher.charPos answers as charPos for offsets met in any order, in one pass over the
// text when they come in text order (a 100,000-value IN list took minutes when every value
// counted the characters before it from the start).
func TestKeyHasherCharPos(t *testing.T) {
	text := "select 'é', 1, 'ü€', 2 from t where k in ('a', 'ö', 3)"
	offs := []int{0, 7, 8, 12, 15, 16, 22, 40, 41, len(text), len(text) + 5, 3, 12, 12}
	var kh keyHasher
	for _, off := range offs {
		if got, want := kh.charPos(text, off), int32(charPos(text, off)); got != want {
			t.Errorf("charPos at byte %d: %d, want %d", off, got, want)
		}
	}
	// In text order, the bytes are counted once.
	kh = keyHasher{}
	for off := 0; off <= len(text); off++ {
		kh.charPos(text, off)
	}
	if kh.posOff != len(text) {
		t.Errorf("posOff %d after a pass, want %d", kh.posOff, len(text))
	}
}
