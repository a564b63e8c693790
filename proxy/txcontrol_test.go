package proxy

import "testing"

func TestTxControlOnly(t *testing.T) {
	for sql, want := range map[string]bool{
		"ROLLBACK": true,
		"commit; begin isolation level serializable": true,
		"BEGIN; SAVEPOINT a; RELEASE a; END":         true,
		"start transaction read only":                true,
		"abort":                                      true,
		"/* c */ rollback to savepoint s1;":          true,
		"COMMIT PREPARED 'x'":                        true,
		"":                                           false,
		";":                                          false,
		"BEGIN; SELECT * FROM t":                     false,
		"SELECT 1":                                   false,
		"\"rollback\"":                               false,
		"rollback; update t set v = 1":               false,
	} {
		if got := txControlOnly(sql, 0); got != want {
			t.Errorf("txControlOnly(%q) = %v, want %v", sql, got, want)
		}
	}
}
