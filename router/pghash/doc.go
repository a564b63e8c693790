// Package pghash computes PostgreSQL's own hash of a partition-key value, bit for bit, without
// asking the server.
//
// The hash is the one of the column type's default hash operator class (support function 1:
// hashint4, hashint8, hashtext, hash_numeric, timestamp_hash, ...), the 32-bit hash that
// pg_shard and Citus use to place rows, reinterpreted as the signed int32 that PostgreSQL shows.
// It is not the "extended" 64-bit hash of declarative hash partitioning. The results are those
// of PostgreSQL 15 on a little-endian machine (x86_64, arm64) with a UTF8 database and a
// deterministic collation; the helpers hash_bytes (hash_any) and hash_bytes_uint32
// (hash_uint32) are Bob Jenkins' lookup3 as in src/common/hashfn.c.
//
// There are three ways to a hash:
//
//   - the typed functions (Int4, Int8, Text, Numeric, ...) hash a value already decoded;
//   - HashText parses a value in its text form (an SQL literal, a text-format Bind parameter, a
//     COPY text field) and HashBinary its binary wire form (typsend/typreceive);
//   - CanonicalExpr and HashCanonical are the fallback: when HashText answers ok == false,
//     the caller has PostgreSQL (under the client's session settings) evaluate
//     CanonicalExpr(type) with the text as $1 and hashes the result with HashCanonical.
//
// HashText accepts only forms whose meaning it knows for certain: it answers ok == false for
// invalid input and for any form whose value depends on session settings (DateStyle,
// TimeZone, timezone_abbreviations, IntervalStyle, ...), so that it never returns a hash of a
// value PostgreSQL would read differently. The input bytes are taken to be the value in the
// server encoding, UTF8; input that is not valid UTF-8, or that holds a NUL byte, is refused.
//
// Type modifiers are not applied: a value is hashed as it reads with typmod -1. A column
// declared numeric(p,s), timestamp(p), time(p) or varchar(n)/char(n) may round or truncate a
// value before it is stored (numeric(5,1) stores 1.25 as 1.3, varchar(2) stores 'ab ' as
// 'ab'), and then the stored value's hash differs; the caller must apply the modifier for
// such columns, as INSERT's assignment applies it (an error for a value too long, not an
// explicit cast's cut): pgshard's proxy evaluates the fallback over the column's assignment
// coercion (metadata.Column.Assign) for them.
package pghash
