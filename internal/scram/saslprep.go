package scram

import (
	"sort"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// saslprep prepares a password as PostgreSQL does before hashing it for SCRAM
// (pg_saslprep, shared by the server and libpq), so that verifiers made here
// agree with PostgreSQL's and with what libpq clients compute:
//
//   - An ASCII password, the common case, is used as it is.
//   - A password that is not valid UTF-8 is used as raw bytes.
//   - Otherwise it goes through SASLprep (RFC 4013, a profile of RFC 3454
//     stringprep): non-ASCII spaces become ' ', characters "commonly mapped
//     to nothing" are dropped, and the result is normalised to NFKC, after
//     checks for prohibited characters (which include code points unassigned
//     in Unicode 3.2) and for the rules on right-to-left text.
//   - If a check fails, or nothing is left after mapping, the raw bytes are
//     used: PostgreSQL falls back to them rather than refusing the password.
//
// Like PostgreSQL, and unlike RFC 4013, which checks the normalised output,
// the checks look at the mapped string before normalisation. NFKC comes from
// golang.org/x/text/unicode/norm (Unicode 15), PostgreSQL brings its own
// tables; the two could only differ on characters whose decomposition changed
// between their Unicode versions.
func saslprep(password string) string {
	if isASCII(password) || !utf8.ValidString(password) {
		return password
	}
	mapped := make([]rune, 0, len(password))
	for _, r := range password {
		switch {
		case inRanges(r, nonASCIISpaceRanges):
			mapped = append(mapped, ' ')
		case inRanges(r, mappedToNothingRanges):
		default:
			mapped = append(mapped, r)
		}
	}
	if len(mapped) == 0 || !stringprepAllows(mapped) {
		return password
	}
	return norm.NFKC.String(string(mapped))
}

// stringprepAllows applies SASLprep's prohibition and bidirectional checks.
func stringprepAllows(rs []rune) bool {
	rightToLeft := false
	for _, r := range rs {
		if inRanges(r, prohibitedRanges) {
			return false
		}
		rightToLeft = rightToLeft || inRanges(r, randALCatRanges)
	}
	if !rightToLeft {
		return true
	}
	// RFC 3454 section 6: a string with right-to-left characters must have
	// no left-to-right ones, and must start and end with right-to-left ones.
	if !inRanges(rs[0], randALCatRanges) || !inRanges(rs[len(rs)-1], randALCatRanges) {
		return false
	}
	for _, r := range rs {
		if inRanges(r, lCatRanges) {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// runeRange is an inclusive range of code points. Tables of them are sorted
// and do not overlap.
type runeRange struct{ lo, hi rune }

func inRanges(r rune, table []runeRange) bool {
	i := sort.Search(len(table), func(i int) bool { return table[i].hi >= r })
	return i < len(table) && table[i].lo <= r
}

// nonASCIISpaceRanges is RFC 3454 table C.1.2, mapped to ' ' by SASLprep.
var nonASCIISpaceRanges = []runeRange{
	{0x00A0, 0x00A0}, {0x1680, 0x1680}, {0x2000, 0x200B}, {0x202F, 0x202F},
	{0x205F, 0x205F}, {0x3000, 0x3000},
}

// mappedToNothingRanges is RFC 3454 table B.1, dropped by SASLprep. U+200B
// is in C.1.2 as well; as in PostgreSQL, the mapping to ' ' wins.
var mappedToNothingRanges = []runeRange{
	{0x00AD, 0x00AD}, {0x034F, 0x034F}, {0x1806, 0x1806}, {0x180B, 0x180D},
	{0x200B, 0x200D}, {0x2060, 0x2060}, {0xFE00, 0xFE0F}, {0xFEFF, 0xFEFF},
}
