package pghash

import (
	"encoding/binary"
	"math"
)

// HashBinary hashes the value that PostgreSQL 15's receive function for typeOID makes of b,
// the type's binary wire form (as in a binary-format Bind parameter or the output of the
// type's send function).
//
// ok is false when typeOID is not supported or when b is not a form the receive function
// accepts: a fixed-size type of the wrong length, a date, timestamp or time out of range, a
// malformed numeric, or a text type (text, varchar, bpchar, name) that is not valid UTF-8
// without NUL bytes (textrecv converts from the client encoding, taken to be UTF8 here) or a
// name of 64 bytes or more. A numeric whose display scale hides digits is truncated first,
// as numeric_recv does.
func HashBinary(typeOID uint32, b []byte) (h int32, ok bool) {
	switch typeOID {
	case OIDInt2:
		if len(b) != 2 {
			return 0, false
		}
		return Int4(int32(int16(binary.BigEndian.Uint16(b)))), true
	case OIDInt4:
		if len(b) != 4 {
			return 0, false
		}
		return Int4(int32(binary.BigEndian.Uint32(b))), true
	case OIDInt8:
		if len(b) != 8 {
			return 0, false
		}
		return Int8(int64(binary.BigEndian.Uint64(b))), true
	case OIDOid:
		if len(b) != 4 {
			return 0, false
		}
		return Oid(binary.BigEndian.Uint32(b)), true
	case OIDFloat4:
		if len(b) != 4 {
			return 0, false
		}
		return Float4(math.Float32frombits(binary.BigEndian.Uint32(b))), true
	case OIDFloat8:
		if len(b) != 8 {
			return 0, false
		}
		return Float8(math.Float64frombits(binary.BigEndian.Uint64(b))), true
	case OIDBool:
		if len(b) != 1 {
			return 0, false
		}
		return Bool(b[0] != 0), true
	case OIDChar:
		if len(b) != 1 {
			return 0, false
		}
		return Char(b[0]), true
	case OIDText, OIDVarchar:
		if !validText(b) {
			return 0, false
		}
		return Text(b), true
	case OIDBPChar:
		if !validText(b) {
			return 0, false
		}
		return BPChar(b), true
	case OIDName:
		if !validText(b) || len(b) >= nameDataLen {
			return 0, false
		}
		return Text(b), true
	case OIDBytea:
		return Text(b), true
	case OIDUUID:
		if len(b) != 16 {
			return 0, false
		}
		return Text(b), true
	case OIDDate:
		if len(b) != 4 {
			return 0, false
		}
		d := int32(binary.BigEndian.Uint32(b))
		if d != dateNoBegin && d != dateNoEnd && (d < dateMin || d >= dateEnd) {
			return 0, false
		}
		return Int4(d), true
	case OIDTimestamp, OIDTimestamptz:
		if len(b) != 8 {
			return 0, false
		}
		t := int64(binary.BigEndian.Uint64(b))
		if t != timestampNoBegin && t != timestampNoEnd && (t < timestampMin || t >= timestampEnd) {
			return 0, false
		}
		return Int8(t), true
	case OIDTime:
		if len(b) != 8 {
			return 0, false
		}
		t := int64(binary.BigEndian.Uint64(b))
		if t < 0 || t > usecsPerDay {
			return 0, false
		}
		return Int8(t), true
	case OIDNumeric:
		return hashNumericBinary(b)
	}
	return 0, false
}
