package pghash

import (
	"math"
	"strconv"
)

const (
	usecsPerSec  = 1000000
	usecsPerDay  = 86400 * usecsPerSec
	unixToPGDays = 10957 // days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch

	dateNoBegin      = math.MinInt32 // DATE_NOBEGIN, -infinity
	dateNoEnd        = math.MaxInt32 // DATE_NOEND, infinity
	timestampNoBegin = math.MinInt64 // DT_NOBEGIN, -infinity
	timestampNoEnd   = math.MaxInt64 // DT_NOEND, infinity

	// Valid finite ranges (datatype/timestamp.h): dates from Julian day 0 (4714-11-24 BC) up
	// to 5874898-01-01 exclusive, timestamps up to 294277-01-01 exclusive.
	dateMin      = -2451545
	dateEnd      = 2147483494 - 2451545
	timestampMin = -211813488000000000
	timestampEnd = 9223371331200000000

	maxTZDispHour = 15 // MAX_TZDISP_HOUR
	maxFracDigits = 100
)

// daysFromCivil returns the number of days from 2000-01-01 to the given proleptic Gregorian
// date (year >= 1).
func daysFromCivil(y, m, d int) int {
	if m <= 2 {
		y--
	}
	era := floorDiv(y, 400)
	yoe := y - era*400
	mp := (m + 9) % 12 // March = 0
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468 - unixToPGDays
}

func daysInMonth(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// digitsN reads exactly n ASCII digits at the start of s.
func digitsN(s []byte, n int) (int, bool) {
	if len(s) < n {
		return 0, false
	}
	v := 0
	for _, c := range s[:n] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// parseISODate reads YYYY-MM-DD (year 0001..9999) at the start of s: four-digit years make
// the field order independent of DateStyle.
func parseISODate(s []byte) (days int, rest []byte, ok bool) {
	y, ok1 := digitsN(s, 4)
	if !ok1 || len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return 0, nil, false
	}
	m, ok2 := digitsN(s[5:], 2)
	d, ok3 := digitsN(s[8:], 2)
	if !ok2 || !ok3 || y < 1 || m < 1 || m > 12 || d < 1 || d > daysInMonth(y, m) {
		return 0, nil, false
	}
	return daysFromCivil(y, m, d), s[10:], true
}

// specialDate recognizes the date/time keywords whose values are fixed: epoch, infinity and
// -infinity (now, today and the like depend on the clock and are not recognized).
func specialDate(s []byte) (epoch, inf, negInf bool) {
	return equalFoldASCII(s, "epoch"), equalFoldASCII(s, "infinity"), equalFoldASCII(s, "-infinity")
}

// parseDate is date_in for the forms read with certainty; the result is the day number
// since 2000-01-01.
func parseDate(s []byte) (int32, bool) {
	s = trimSpace(s)
	switch epoch, inf, negInf := specialDate(s); {
	case epoch:
		return -unixToPGDays, true
	case inf:
		return dateNoEnd, true
	case negInf:
		return dateNoBegin, true
	}
	d, rest, ok := parseISODate(s)
	if !ok || len(rest) != 0 {
		return 0, false
	}
	return int32(d), true
}

// parseTimeOfDay reads HH:MM[:SS[.fraction]] at the start of s and returns microseconds
// since midnight. Fractions are rounded as ParseFractionalSecond does: rint(strtod(".f") *
// 1000000). 24:00:00 is accepted when the fraction rounds to zero, as PostgreSQL does; leap
// seconds are refused.
func parseTimeOfDay(s []byte) (usec int64, rest []byte, ok bool) {
	h, ok1 := digitsN(s, 2)
	if !ok1 || len(s) < 5 || s[2] != ':' {
		return 0, nil, false
	}
	mi, ok2 := digitsN(s[3:], 2)
	if !ok2 || h > 24 || mi > 59 {
		return 0, nil, false
	}
	s = s[5:]
	sec := 0
	var fsec int64
	if len(s) > 0 && s[0] == ':' {
		var ok3 bool
		sec, ok3 = digitsN(s[1:], 2)
		if !ok3 || sec > 59 {
			return 0, nil, false
		}
		s = s[3:]
		if len(s) > 0 && s[0] == '.' {
			n := 1
			for n < len(s) && s[n] >= '0' && s[n] <= '9' {
				n++
			}
			if n == 1 || n-1 > maxFracDigits {
				return 0, nil, false
			}
			f, err := strconv.ParseFloat(string(s[:n]), 64)
			if err != nil {
				return 0, nil, false
			}
			fsec = int64(math.RoundToEven(f * usecsPerSec))
			s = s[n:]
		}
	}
	if h == 24 && (mi != 0 || sec != 0 || fsec != 0) {
		return 0, nil, false
	}
	return (int64(h*60+mi)*60+int64(sec))*usecsPerSec + fsec, s, true
}

// parseTime is time_in for HH:MM[:SS[.fraction]].
func parseTime(s []byte) (int64, bool) {
	t, rest, ok := parseTimeOfDay(trimSpace(s))
	if !ok || len(rest) != 0 {
		return 0, false
	}
	return t, true
}

// parseTimestamp is timestamp_in (withTZ false) or timestamptz_in (withTZ true) for the forms
// read with certainty. A timestamptz needs an explicit numeric UTC offset; a timestamp must
// have none (timestamp_in would silently ignore it). The result is microseconds since
// 2000-01-01 00:00:00 (UTC for timestamptz).
func parseTimestamp(s []byte, withTZ bool) (int64, bool) {
	s = trimSpace(s)
	switch epoch, inf, negInf := specialDate(s); {
	case epoch:
		return -int64(unixToPGDays) * usecsPerDay, true
	case inf:
		return timestampNoEnd, true
	case negInf:
		return timestampNoBegin, true
	}
	days, rest, ok := parseISODate(s)
	if !ok {
		return 0, false
	}
	var tod int64
	if len(rest) > 0 {
		if rest[0] != ' ' && rest[0] != 'T' {
			return 0, false
		}
		tod, rest, ok = parseTimeOfDay(rest[1:])
		if !ok {
			return 0, false
		}
	}
	t := int64(days)*usecsPerDay + tod
	if !withTZ {
		return t, len(rest) == 0
	}
	for len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	off, ok := parseTZOffset(rest)
	if !ok {
		return 0, false
	}
	return t - int64(off)*usecsPerSec, true
}

// parseTZOffset reads a whole ISO 8601 numeric offset, +HH, +HHMM, +HH:MM or +HH:MM:SS (or
// with -), as DecodeTimezone does, and returns it in seconds east of UTC.
func parseTZOffset(s []byte) (int, bool) {
	if len(s) < 3 || (s[0] != '+' && s[0] != '-') {
		return 0, false
	}
	neg := s[0] == '-'
	h, ok := digitsN(s[1:], 2)
	if !ok {
		return 0, false
	}
	s = s[3:]
	m, sec := 0, 0
	switch {
	case len(s) == 0:
	case len(s) == 2:
		if m, ok = digitsN(s, 2); !ok {
			return 0, false
		}
	case len(s) == 3 && s[0] == ':':
		if m, ok = digitsN(s[1:], 2); !ok {
			return 0, false
		}
	case len(s) == 6 && s[0] == ':' && s[3] == ':':
		var ok2 bool
		m, ok = digitsN(s[1:], 2)
		sec, ok2 = digitsN(s[4:], 2)
		if !ok || !ok2 {
			return 0, false
		}
	default:
		return 0, false
	}
	if h > maxTZDispHour || m > 59 || sec > 59 {
		return 0, false
	}
	off := (h*60+m)*60 + sec
	if neg {
		off = -off
	}
	return off, true
}
