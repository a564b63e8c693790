package pghash

// PostgreSQL type OIDs of the types this package hashes.
const (
	OIDBool        uint32 = 16   // boolean
	OIDBytea       uint32 = 17   // bytea
	OIDChar        uint32 = 18   // "char" (the one-byte internal type)
	OIDName        uint32 = 19   // name
	OIDInt8        uint32 = 20   // bigint
	OIDInt2        uint32 = 21   // smallint
	OIDInt4        uint32 = 23   // integer
	OIDText        uint32 = 25   // text
	OIDOid         uint32 = 26   // oid
	OIDFloat4      uint32 = 700  // real
	OIDFloat8      uint32 = 701  // double precision
	OIDBPChar      uint32 = 1042 // character(n)
	OIDVarchar     uint32 = 1043 // character varying(n)
	OIDDate        uint32 = 1082 // date
	OIDTime        uint32 = 1083 // time without time zone
	OIDTimestamp   uint32 = 1114 // timestamp without time zone
	OIDTimestamptz uint32 = 1184 // timestamp with time zone
	OIDNumeric     uint32 = 1700 // numeric
	OIDUUID        uint32 = 2950 // uuid
)

// Supported reports whether typeOID is one of the types this package hashes (the OID*
// constants).
func Supported(typeOID uint32) bool {
	switch typeOID {
	case OIDBool, OIDBytea, OIDChar, OIDName, OIDInt8, OIDInt2, OIDInt4, OIDText, OIDOid,
		OIDFloat4, OIDFloat8, OIDBPChar, OIDVarchar, OIDDate, OIDTime, OIDTimestamp,
		OIDTimestamptz, OIDNumeric, OIDUUID:
		return true
	}
	return false
}
