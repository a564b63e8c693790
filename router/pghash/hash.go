package pghash

import (
	"encoding/binary"
	"math"
	"math/bits"
)

// lookup3's initial state is 0x9e3779b9 + length + 3923095, as in PostgreSQL's hash_bytes.
const hashInit = 0x9e3779b9 + 3923095

// mix is lookup3's reversible mixing of three words.
func mix(a, b, c uint32) (uint32, uint32, uint32) {
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	return a, b, c
}

// final is lookup3's final mixing of three words into c.
func final(a, b, c uint32) uint32 {
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return c
}

// Bytes is PostgreSQL's hash_any (hash_bytes): lookup3 over k, with the words read in
// little-endian order as on x86_64.
func Bytes(k []byte) uint32 {
	a := uint32(hashInit) + uint32(len(k))
	b, c := a, a
	for len(k) >= 12 {
		a += binary.LittleEndian.Uint32(k)
		b += binary.LittleEndian.Uint32(k[4:])
		c += binary.LittleEndian.Uint32(k[8:])
		a, b, c = mix(a, b, c)
		k = k[12:]
	}
	// The last 0 to 11 bytes; the lowest byte of c is not used (it once held the length).
	switch len(k) {
	case 11:
		c += uint32(k[10]) << 24
		fallthrough
	case 10:
		c += uint32(k[9]) << 16
		fallthrough
	case 9:
		c += uint32(k[8]) << 8
		fallthrough
	case 8:
		b += uint32(k[7]) << 24
		fallthrough
	case 7:
		b += uint32(k[6]) << 16
		fallthrough
	case 6:
		b += uint32(k[5]) << 8
		fallthrough
	case 5:
		b += uint32(k[4])
		fallthrough
	case 4:
		a += uint32(k[3]) << 24
		fallthrough
	case 3:
		a += uint32(k[2]) << 16
		fallthrough
	case 2:
		a += uint32(k[1]) << 8
		fallthrough
	case 1:
		a += uint32(k[0])
	}
	return final(a, b, c)
}

// Uint32 is PostgreSQL's hash_uint32 (hash_bytes_uint32): the same as Bytes of the four
// little-endian bytes of k, but faster.
func Uint32(k uint32) uint32 {
	a := uint32(hashInit) + 4
	b, c := a, a
	a += k
	return final(a, b, c)
}

// Int4 is hashint4. It is also the hash of int2 (hashint2 of the widened value) and of date
// (date_ops uses hashint4 on the day number, days since 2000-01-01, with infinity =
// math.MaxInt32 and -infinity = math.MinInt32).
func Int4(v int32) int32 { return int32(Uint32(uint32(v))) }

// Int8 is hashint8: it equals Int4 for values in the int4 range. It is also timestamp_hash and
// time_hash, the hash of timestamp and timestamptz (microseconds since 2000-01-01 00:00:00,
// UTC for timestamptz; infinity = math.MaxInt64, -infinity = math.MinInt64) and of time
// (microseconds since midnight).
func Int8(v int64) int32 {
	lo := uint32(v)
	hi := uint32(uint64(v) >> 32)
	if v >= 0 {
		lo ^= hi
	} else {
		lo ^= ^hi
	}
	return int32(Uint32(lo))
}

// Text is hashtext (and hashvarlena, hashname) under a deterministic collation: hash_any over
// the bytes of the value. It hashes text, varchar, name and bytea values.
func Text(b []byte) int32 { return int32(Bytes(b)) }

// BPChar is hashbpchar: hash_any over the value with its trailing spaces removed.
func BPChar(b []byte) int32 { return Text(trimTrailingSpaces(b)) }

func trimTrailingSpaces(b []byte) []byte {
	n := len(b)
	for n > 0 && b[n-1] == ' ' {
		n--
	}
	return b[:n]
}

// Bool is the hash of boolean (bool_ops uses hashchar: true hashes as 1, false as 0).
func Bool(b bool) int32 {
	if b {
		return Int4(1)
	}
	return Int4(0)
}

// Char is hashchar, the hash of "char". char is signed on x86_64, so bytes 0x80-0xFF hash as
// the negative values -128..-1.
func Char(c byte) int32 { return Int4(int32(int8(c))) }

// Oid is hashoid.
func Oid(v uint32) int32 { return int32(Uint32(v)) }

// float8NaN is the bit pattern of PostgreSQL's get_float8_nan(), to which hashfloat4 and
// hashfloat8 map every NaN.
const float8NaN = 0x7ff8000000000000

// Float8 is hashfloat8: 0 for both zeros, every NaN hashed as the standard quiet NaN,
// otherwise hash_any over the eight little-endian bytes of the value.
func Float8(f float64) int32 {
	if f == 0 {
		return 0
	}
	u := math.Float64bits(f)
	if f != f {
		u = float8NaN
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], u)
	return Text(b[:])
}

// Float4 is hashfloat4: the value is widened to float8 and hashed as Float8 does, so that
// equal float4 and float8 values hash alike.
func Float4(f float32) int32 { return Float8(float64(f)) }

// UUID is uuid_hash: hash_any over the 16 bytes.
func UUID(u [16]byte) int32 { return Text(u[:]) }

// NumericSpecialHash is what hash_numeric returns for NaN, Infinity and -Infinity.
const NumericSpecialHash int32 = 0

// Numeric is hash_numeric of a finite numeric given in PostgreSQL's storage form: digits are
// the base-10000 digits (each 0..9999), most significant first, and the first one is
// multiplied by 10000^weight. The value is sum(digits[i] * 10000^(weight-i)); for example
// 12345.678 is weight 1, digits {1, 2345, 6780}, and 0.0001 is weight -1, digits {1}.
//
// Like hash_numeric, Numeric ignores the sign and the display scale (1, 1.00 and -1 hash
// alike) and leading and trailing zero digits; a zero value hashes to -1. NaN and the
// infinities hash to NumericSpecialHash (0). The digits are hashed as the little-endian int16
// values they are in memory on x86_64, and the weight is then mixed in by XOR.
func Numeric(weight int, digits []int16) int32 {
	for len(digits) > 0 && digits[0] == 0 {
		digits = digits[1:]
		weight--
	}
	for len(digits) > 0 && digits[len(digits)-1] == 0 {
		digits = digits[:len(digits)-1]
	}
	if len(digits) == 0 {
		return -1
	}
	var buf [64]byte
	var b []byte
	if n := 2 * len(digits); n <= len(buf) {
		b = buf[:n]
	} else {
		b = make([]byte, n)
	}
	for i, d := range digits {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(d))
	}
	return int32(Bytes(b) ^ uint32(int32(weight)))
}
