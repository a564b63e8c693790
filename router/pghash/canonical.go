package pghash

// CanonicalExpr returns an SQL expression over $1, a text parameter holding a value of type
// typeOID in text form, that PostgreSQL evaluates to a canonical text whose hash
// HashCanonical computes. It is the fallback for values HashText refuses: the caller runs
// "SELECT " + CanonicalExpr(typeOID) on a session with the client's settings (DateStyle,
// TimeZone, ...), so that the value is read exactly as the client's statement would read it.
//
// The canonical text is the lower-case hexadecimal form of the value's binary send form (for
// instance encode(timestamptz_send($1::timestamptz), 'hex'), microseconds since 2000-01-01
// UTC), and for the text types that of its bytes in the server encoding. It does not depend
// on any output setting (DateStyle, extra_float_digits, bytea_output, client_encoding), and it
// carries the special values (infinity, NaN) as PostgreSQL stores them. The result is "" when
// typeOID is not supported.
func CanonicalExpr(typeOID uint32) string {
	switch typeOID {
	case OIDText, OIDVarchar:
		return "pg_catalog.encode(pg_catalog.convert_to($1::pg_catalog.text, 'UTF8'), 'hex')"
	case OIDBPChar:
		// bpchar to text drops the trailing spaces, which hashbpchar ignores anyway.
		return "pg_catalog.encode(pg_catalog.convert_to($1::pg_catalog.bpchar::pg_catalog.text, 'UTF8'), 'hex')"
	case OIDName:
		return "pg_catalog.encode(pg_catalog.convert_to($1::pg_catalog.name::pg_catalog.text, 'UTF8'), 'hex')"
	case OIDBytea:
		return "pg_catalog.encode($1::pg_catalog.bytea, 'hex')"
	}
	if send, typ := sendFunc(typeOID); send != "" {
		return "pg_catalog.encode(pg_catalog." + send + "($1::pg_catalog." + typ + "), 'hex')"
	}
	return ""
}

// sendFunc names the send function and the SQL type name of the fixed-size types and numeric.
func sendFunc(typeOID uint32) (send, typ string) {
	switch typeOID {
	case OIDBool:
		return "boolsend", "bool"
	case OIDChar:
		return "charsend", `"char"`
	case OIDInt2:
		return "int2send", "int2"
	case OIDInt4:
		return "int4send", "int4"
	case OIDInt8:
		return "int8send", "int8"
	case OIDOid:
		return "oidsend", "oid"
	case OIDFloat4:
		return "float4send", "float4"
	case OIDFloat8:
		return "float8send", "float8"
	case OIDNumeric:
		return "numeric_send", "numeric"
	case OIDUUID:
		return "uuid_send", "uuid"
	case OIDDate:
		return "date_send", "date"
	case OIDTime:
		return "time_send", "time"
	case OIDTimestamp:
		return "timestamp_send", "timestamp"
	case OIDTimestamptz:
		return "timestamptz_send", "timestamptz"
	}
	return "", ""
}

// HashCanonical hashes canon, the result of evaluating CanonicalExpr(typeOID) in PostgreSQL.
// ok is false when typeOID is not supported or canon is not such a result.
func HashCanonical(typeOID uint32, canon []byte) (h int32, ok bool) {
	if !Supported(typeOID) || len(canon)%2 != 0 {
		return 0, false
	}
	var buf [64]byte
	var b []byte
	if n := len(canon) / 2; n <= len(buf) {
		b = buf[:n]
	} else {
		b = make([]byte, n)
	}
	for i := range b {
		hi, ok1 := unhex(canon[2*i])
		lo, ok2 := unhex(canon[2*i+1])
		if !ok1 || !ok2 {
			return 0, false
		}
		b[i] = hi<<4 | lo
	}
	return HashBinary(typeOID, b)
}
