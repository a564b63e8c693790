package store

import "testing"

// TestLSNAndWentBack: WAL positions round-trip through their text form, and WentBack
// says a node went back exactly when its system identifier differs, its timeline is lower
// or its WAL position is lower than recorded.
func TestLSNAndWentBack(t *testing.T) {
	for _, s := range []string{"0/0", "0/150DA28", "16/B374D848", "FFFFFFFF/FFFFFFFF"} {
		v, err := ParseLSN(s)
		if err != nil {
			t.Fatal(err)
		}
		if back, _ := ParseLSN(FormatLSN(v)); back != v {
			t.Errorf("%s: %x round-trips to %x", s, v, back)
		}
	}
	if v, _ := ParseLSN("16/B374D848"); v != 0x16B374D848 {
		t.Errorf("16/B374D848 = %x", v)
	}
	for _, bad := range []string{"", "12", "x/1", "1/"} {
		if _, err := ParseLSN(bad); err == nil {
			t.Errorf("ParseLSN(%q) accepted", bad)
		}
	}
	rec := NodeIdentity{SystemID: 7, Timeline: 2, LSN: 1000}
	for _, tc := range []struct {
		id   NodeIdentity
		back bool
	}{
		{NodeIdentity{7, 2, 1000}, false},
		{NodeIdentity{7, 2, 2000}, false},
		{NodeIdentity{7, 3, 2000}, false},
		{NodeIdentity{7, 3, 999}, true}, // a promoted standby that lagged
		{NodeIdentity{7, 1, 2000}, true},
		{NodeIdentity{7, 2, 999}, true},
		{NodeIdentity{8, 2, 2000}, true}, // another data directory
	} {
		if got := WentBack(rec, tc.id) != ""; got != tc.back {
			t.Errorf("WentBack(%v, %v) = %q, want went back: %v", rec, tc.id, WentBack(rec, tc.id), tc.back)
		}
	}
}
