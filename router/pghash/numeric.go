package pghash

import "encoding/binary"

// Limits of PostgreSQL's numeric storage format (src/backend/utils/adt/numeric.c).
const (
	numericWeightMax = 32767  // the weight is an int16
	numericWeightMin = -32768 //
	numericDscaleMax = 0x3FFF // NUMERIC_DSCALE_MAX: the display scale has 14 bits
	numericNBase     = 10000  // NBASE
	numericExpLimit  = 1<<30 - 1

	numericPos  = 0x0000
	numericNeg  = 0x4000
	numericNaN  = 0xC000
	numericPInf = 0xD000
	numericNInf = 0xF000
)

// hashNumericText is numeric_in followed by hash_numeric: the text is ws* (special | number)
// ws*, where special is one of NaN, Infinity, +Infinity, -Infinity, inf, +inf, -inf (any case)
// and number is [+-] (digits [. digits*] | . digits) [(e|E) [+-] digits].
func hashNumericText(s []byte) (int32, bool) {
	s = trimSpace(s)
	switch {
	case equalFoldASCII(s, "nan"), equalFoldASCII(s, "infinity"), equalFoldASCII(s, "+infinity"),
		equalFoldASCII(s, "-infinity"), equalFoldASCII(s, "inf"), equalFoldASCII(s, "+inf"),
		equalFoldASCII(s, "-inf"):
		return NumericSpecialHash, true
	}
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	// The significant digits (leading zeros dropped) go to sig; point is the number of
	// digits of the integer part counted from the first significant digit, so that the
	// value is 0.sig * 10^point.
	var sigBuf [64]byte
	sig := sigBuf[:0]
	point, frac := 0, 0
	sawDigit, sawPoint := false, false
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			sawDigit = true
			if sawPoint {
				frac++
			}
			if len(sig) == 0 && c == '0' {
				if sawPoint {
					point--
				}
				continue
			}
			sig = append(sig, c-'0')
			if !sawPoint {
				point++
			}
			continue
		case c == '.' && !sawPoint:
			sawPoint = true
			continue
		}
		break
	}
	if !sawDigit {
		return 0, false
	}
	exp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		neg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			neg = s[i] == '-'
			i++
		}
		start := i
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			if exp < numericExpLimit {
				exp = exp*10 + int(s[i]-'0')
			}
		}
		if i == start || exp >= numericExpLimit {
			return 0, false
		}
		if neg {
			exp = -exp
		}
	}
	if i != len(s) {
		return 0, false
	}
	if dscale := frac - exp; dscale > numericDscaleMax {
		return 0, false // "value overflows numeric format", even for zero
	}
	for len(sig) > 0 && sig[len(sig)-1] == 0 {
		sig = sig[:len(sig)-1]
	}
	if len(sig) == 0 {
		return Numeric(0, nil), true
	}
	weight, digits, ok := decimalToNBase(sig, point+exp)
	if !ok {
		return 0, false
	}
	return Numeric(weight, digits), true
}

// decimalToNBase converts the decimal digits 0.sig * 10^point (sig without leading or
// trailing zeros) into base-10000 digits and a weight, as set_var_from_str does. ok is false
// when the weight does not fit the storage format.
func decimalToNBase(sig []byte, point int) (weight int, digits []int16, ok bool) {
	// The first digit has decimal place point-1; the base-10000 digit of weight w covers the
	// places 4w+3 down to 4w.
	first := point - 1
	weight = floorDiv(first, 4)
	if weight > numericWeightMax || weight < numericWeightMin {
		return 0, nil, false
	}
	lead := 4*weight + 3 - first // zeros before the first digit within its group
	n := (lead + len(sig) + 3) / 4
	digits = make([]int16, n)
	pos := lead
	for _, d := range sig {
		g := pos / 4
		digits[g] = digits[g]*10 + int16(d)
		pos++
	}
	// Scale the last, partly filled group.
	for ; pos%4 != 0; pos++ {
		digits[n-1] *= 10
	}
	return weight, digits, true
}

func floorDiv(a, b int) int {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// hashNumericBinary is numeric_recv followed by hash_numeric. The wire form is int16 ndigits,
// int16 weight, uint16 sign, uint16 dscale, then ndigits int16 base-10000 digits, all
// big-endian. numeric_recv truncates digits hidden by dscale.
func hashNumericBinary(b []byte) (int32, bool) {
	if len(b) < 8 {
		return 0, false
	}
	ndigits := int(binary.BigEndian.Uint16(b))
	weight := int(int16(binary.BigEndian.Uint16(b[2:])))
	sign := binary.BigEndian.Uint16(b[4:])
	dscale := int(binary.BigEndian.Uint16(b[6:]))
	if len(b) != 8+2*ndigits {
		return 0, false
	}
	if dscale&numericDscaleMax != dscale {
		return 0, false
	}
	digits := make([]int16, ndigits)
	for i := range digits {
		d := int16(binary.BigEndian.Uint16(b[8+2*i:]))
		if d < 0 || d >= numericNBase {
			return 0, false
		}
		digits[i] = d
	}
	switch sign {
	case numericNaN, numericPInf, numericNInf:
		return NumericSpecialHash, true
	case numericPos, numericNeg:
	default:
		return 0, false
	}
	// trunc_var(value, dscale): keep (weight+1)*4 + dscale decimal digits.
	di := (weight+1)*4 + dscale
	if di <= 0 {
		digits = nil
	} else if nd := (di + 3) / 4; nd <= len(digits) {
		digits = digits[:nd]
		if k := di % 4; k > 0 {
			pow := [4]int16{0, 1000, 100, 10}[k]
			digits[nd-1] -= digits[nd-1] % pow
		}
	}
	// make_result strips leading and trailing zero digits, then the weight must fit int16.
	for len(digits) > 0 && digits[0] == 0 {
		digits = digits[1:]
		weight--
	}
	for len(digits) > 0 && digits[len(digits)-1] == 0 {
		digits = digits[:len(digits)-1]
	}
	if len(digits) == 0 {
		return Numeric(0, nil), true
	}
	if weight < numericWeightMin || weight > numericWeightMax {
		return 0, false
	}
	return Numeric(weight, digits), true
}
