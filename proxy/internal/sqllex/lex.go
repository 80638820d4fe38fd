package sqllex

import (
	"strings"
	"unicode/utf8"
)

// Kind is the kind of a token.
type Kind uint8

const (
	EOF         Kind = iota // end of input; Start == End == len(src)
	Ident                   // unquoted identifier or keyword (case-insensitive)
	QuotedIdent             // "..." or U&"..."
	String                  // '...', E'...', B'...', X'...', N'...', U&'...', $tag$...$tag$
	Number                  // numeric literal (with any trailing junk PostgreSQL would reject)
	Param                   // $1, $2, ...
	Op                      // operator or punctuation: ( ) , . [ ] :: := .. + <= ...
	Semicolon               // ;
)

var kindNames = [...]string{"EOF", "Ident", "QuotedIdent", "String", "Number", "Param", "Op", "Semicolon"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(?)"
}

// Flags qualify String and QuotedIdent tokens.
type Flags uint8

const (
	Unterminated   Flags = 1 << iota // the quote was not closed before the end of input
	EscapeString                     // E'...': backslash escapes
	DollarQuoted                     // $tag$...$tag$
	UnicodeEscapes                   // U&'...' or U&"..."
	BitString                        // B'...' or X'...'
	NationalString                   // N'...'
)

// Token is one token of the input: its kind and its byte range, quotes and
// prefixes included.
type Token struct {
	Kind  Kind
	Flags Flags
	Start int
	End   int
}

// Text returns the raw text of t in src.
func (t Token) Text(src string) string { return src[t.Start:t.End] }

// Lexer splits SQL text into tokens, skipping whitespace and comments.
// The zero Lexer is at the end of an empty input; a Lexer is a small value
// and may be copied to look ahead.
type Lexer struct {
	src string
	pos int
}

// NewLexer returns a lexer positioned at the start of src.
func NewLexer(src string) Lexer { return Lexer{src: src} }

// Pos returns the byte offset where the next call to Next starts looking.
func (l *Lexer) Pos() int { return l.pos }

// Next returns the next token, or a token of Kind EOF at the end.
func (l *Lexer) Next() Token {
	src := l.src
	n := len(src)
	i := skipTrivia(src, l.pos)
	if i >= n {
		l.pos = n
		return Token{Kind: EOF, Start: n, End: n}
	}
	t := Token{Start: i}
	c := src[i]
	switch {
	case c == '\'':
		t.Kind = String
		t.End, t.Flags = scanQuoted(src, i+1, false)
	case c == '"':
		t.Kind = QuotedIdent
		t.End, t.Flags = scanQuotedIdent(src, i+1)
	case c == '$':
		t = scanDollar(src, i)
	case isIdentStart(c):
		t = scanWord(src, i)
	case isDigit(c) || (c == '.' && i+1 < n && isDigit(src[i+1])):
		t.Kind = Number
		t.End = scanNumber(src, i)
	case c == ';':
		t.Kind = Semicolon
		t.End = i + 1
	default:
		t.Kind = Op
		t.End = scanOp(src, i)
	}
	l.pos = t.End
	return t
}

// skipTrivia skips whitespace and comments starting at i.
func skipTrivia(src string, i int) int {
	n := len(src)
	for i < n {
		c := src[i]
		switch {
		case isSpace(c):
			i++
		case c == '-' && i+1 < n && src[i+1] == '-':
			i = skipLineComment(src, i+2)
		case c == '/' && i+1 < n && src[i+1] == '*':
			i = skipBlockComment(src, i+2)
		default:
			return i
		}
	}
	return i
}

func skipLineComment(src string, i int) int {
	for i < len(src) && src[i] != '\n' && src[i] != '\r' {
		i++
	}
	return i
}

// skipBlockComment skips a (nested) block comment whose opening "/*" ends
// just before i.
func skipBlockComment(src string, i int) int {
	depth := 1
	n := len(src)
	for i < n {
		switch {
		case src[i] == '*' && i+1 < n && src[i+1] == '/':
			i += 2
			depth--
			if depth == 0 {
				return i
			}
		case src[i] == '/' && i+1 < n && src[i+1] == '*':
			i += 2
			depth++
		default:
			i++
		}
	}
	return n
}

// scanQuoted scans the body of a single-quoted literal whose opening
// quote ends just before i; backslash says whether backslash escapes are
// honoured (E'...'). Literals continued across a newline are one token.
func scanQuoted(src string, i int, backslash bool) (int, Flags) {
	n := len(src)
	for i < n {
		c := src[i]
		switch {
		case c == '\\' && backslash:
			i += 2
		case c == '\'':
			if i+1 < n && src[i+1] == '\'' {
				i += 2
				continue
			}
			if j := quoteContinuation(src, i+1); j >= 0 {
				i = j + 1
				continue
			}
			return i + 1, 0
		default:
			i++
		}
	}
	return n, Unterminated
}

// quoteContinuation reports where a string literal continues after a
// closing quote ending just before i: SQL joins 'a' and 'b' when only
// whitespace with at least one newline (and "--" comments that end in a
// newline) separates them. It returns the index of the opening quote of
// the continuation, or -1.
func quoteContinuation(src string, i int) int {
	n := len(src)
	newline := false
	for i < n {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\f' || c == '\v':
			i++
		case c == '\n' || c == '\r':
			newline = true
			i++
		case c == '-' && i+1 < n && src[i+1] == '-':
			i = skipLineComment(src, i+2)
			if i >= n {
				return -1 // a comment must end in a newline here
			}
		case c == '\'':
			if newline {
				return i
			}
			return -1
		default:
			return -1
		}
	}
	return -1
}

// scanQuotedIdent scans a double-quoted identifier whose opening quote ends
// just before i.
func scanQuotedIdent(src string, i int) (int, Flags) {
	n := len(src)
	for i < n {
		if src[i] == '"' {
			if i+1 < n && src[i+1] == '"' {
				i += 2
				continue
			}
			return i + 1, 0
		}
		i++
	}
	return n, Unterminated
}

// dollarTag returns the length of the dollar-quote delimiter ($$ or $tag$)
// starting at i, or 0 if there is none.
func dollarTag(src string, i int) int {
	n := len(src)
	j := i + 1
	if j < n && src[j] == '$' {
		return 2
	}
	if j >= n || !isIdentStart(src[j]) {
		return 0
	}
	j++
	for j < n && isDollarTagCont(src[j]) {
		j++
	}
	if j < n && src[j] == '$' {
		return j + 1 - i
	}
	return 0
}

func scanDollar(src string, i int) Token {
	n := len(src)
	if i+1 < n && isDigit(src[i+1]) {
		j := i + 1
		for j < n && isDigit(src[j]) {
			j++
		}
		// PostgreSQL rejects trailing junk ($1abc); keep it in the token.
		for j < n && isIdentCont(src[j]) {
			j++
		}
		return Token{Kind: Param, Start: i, End: j}
	}
	tl := dollarTag(src, i)
	if tl == 0 {
		// A lone "$" (or $ident without a closing $): just the "$".
		return Token{Kind: Op, Start: i, End: i + 1}
	}
	tag := src[i : i+tl]
	body := i + tl
	if k := strings.Index(src[body:], tag); k >= 0 {
		return Token{Kind: String, Flags: DollarQuoted, Start: i, End: body + k + tl}
	}
	return Token{Kind: String, Flags: DollarQuoted | Unterminated, Start: i, End: n}
}

// scanWord scans an identifier or keyword, or a prefixed literal (E'...',
// B'...', X'...', N'...', U&'...', U&"...") starting at i.
func scanWord(src string, i int) Token {
	n := len(src)
	c := src[i]
	if i+1 < n {
		c1 := src[i+1]
		switch c | 0x20 {
		case 'e':
			if c1 == '\'' {
				end, f := scanQuoted(src, i+2, true)
				return Token{Kind: String, Flags: EscapeString | f, Start: i, End: end}
			}
		case 'b', 'x':
			if c1 == '\'' {
				end, f := scanQuoted(src, i+2, false)
				return Token{Kind: String, Flags: BitString | f, Start: i, End: end}
			}
		case 'n':
			if c1 == '\'' {
				end, f := scanQuoted(src, i+2, false)
				return Token{Kind: String, Flags: NationalString | f, Start: i, End: end}
			}
		case 'u':
			if c1 == '&' && i+2 < n {
				switch src[i+2] {
				case '\'':
					end, f := scanQuoted(src, i+3, false)
					return Token{Kind: String, Flags: UnicodeEscapes | f, Start: i, End: end}
				case '"':
					end, f := scanQuotedIdent(src, i+3)
					return Token{Kind: QuotedIdent, Flags: UnicodeEscapes | f, Start: i, End: end}
				}
			}
		}
	}
	j := i + 1
	for j < n && isIdentCont(src[j]) {
		j++
	}
	return Token{Kind: Ident, Start: i, End: j}
}

// scanNumber scans a numeric literal starting at i: digits (with _
// separators), a fraction, an exponent, and any identifier characters
// glued to it (0x1F, 0b101, and the junk PostgreSQL rejects, like 1abc).
func scanNumber(src string, i int) int {
	n := len(src)
	j := i
	for j < n && (isDigit(src[j]) || src[j] == '_') {
		j++
	}
	if j < n && src[j] == '.' && !(j+1 < n && src[j+1] == '.') {
		j++
		for j < n && (isDigit(src[j]) || src[j] == '_') {
			j++
		}
	}
	if j < n && (src[j] == 'e' || src[j] == 'E') {
		k := j + 1
		if k < n && (src[k] == '+' || src[k] == '-') {
			k++
		}
		if k < n && isDigit(src[k]) {
			j = k
			for j < n && (isDigit(src[j]) || src[j] == '_') {
				j++
			}
		}
	}
	if j < n && isIdentStart(src[j]) {
		for j < n && isIdentCont(src[j]) {
			j++
		}
	}
	return j
}

// scanOp scans punctuation or an operator starting at i.
func scanOp(src string, i int) int {
	n := len(src)
	c := src[i]
	switch c {
	case ',', '(', ')', '[', ']':
		return i + 1
	case ':':
		if i+1 < n && (src[i+1] == ':' || src[i+1] == '=') {
			return i + 2
		}
		return i + 1
	case '.':
		if i+1 < n && src[i+1] == '.' {
			return i + 2
		}
		return i + 1
	}
	if !isOpChar(c) {
		return i + 1 // any other byte is a token of its own
	}
	j := i + 1
	for j < n && isOpChar(src[j]) {
		if j+1 < n && ((src[j] == '-' && src[j+1] == '-') || (src[j] == '/' && src[j+1] == '*')) {
			break // a comment starts inside the operator
		}
		j++
	}
	// As in PostgreSQL, a multi-character operator cannot end in + or -
	// unless it contains a character that SQL operators do not use.
	if j-i > 1 && (src[j-1] == '+' || src[j-1] == '-') {
		if !strings.ContainsAny(src[i:j], "~!@#^&|`?%") {
			for j-i > 1 && (src[j-1] == '+' || src[j-1] == '-') {
				j--
			}
		}
	}
	return j
}

// Character classes, looked up in charClass.
const (
	cSpace      = 1 << iota // whitespace
	cIdentStart             // A-Z a-z _ and bytes >= 0x80
	cDigit                  // 0-9
	cDollar                 // $
	cOpChar                 // characters of multi-character operators
)

var charClass = func() (t [256]uint8) {
	for _, c := range []byte(" \t\n\r\f\v") {
		t[c] |= cSpace
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] |= cIdentStart
		t[c-'a'+'A'] |= cIdentStart
	}
	t['_'] |= cIdentStart
	for c := 0x80; c < 0x100; c++ {
		t[c] |= cIdentStart
	}
	for c := '0'; c <= '9'; c++ {
		t[c] |= cDigit
	}
	t['$'] |= cDollar
	for _, c := range []byte("~!@#^&|`?+-*/%<>=") {
		t[c] |= cOpChar
	}
	return t
}()

func isSpace(c byte) bool { return charClass[c]&cSpace != 0 }

func isDigit(c byte) bool { return charClass[c]&cDigit != 0 }

func isIdentStart(c byte) bool { return charClass[c]&cIdentStart != 0 }

func isIdentCont(c byte) bool { return charClass[c]&(cIdentStart|cDigit|cDollar) != 0 }

func isDollarTagCont(c byte) bool { return charClass[c]&(cIdentStart|cDigit) != 0 }

func isOpChar(c byte) bool { return charClass[c]&cOpChar != 0 }

func isHex(c byte) bool {
	return isDigit(c) || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func hexVal(c byte) rune {
	switch {
	case isDigit(c):
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10)
	default:
		return rune(c - 'A' + 10)
	}
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// foldEq reports whether s equals lower (which must be lower-case ASCII),
// ignoring ASCII case only, as PostgreSQL does for keywords.
func foldEq(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lowerASCII(s[i]) != lower[i] {
			return false
		}
	}
	return true
}

// AppendIdentValue appends the name an identifier token stands for:
// unquoted identifiers lower-cased (ASCII only, like PostgreSQL), quoted
// ones with "" collapsed and, for U&"...", escapes decoded with esc (the
// UESCAPE character, normally '\\'). Other tokens append their raw text.
func AppendIdentValue(dst []byte, src string, t Token, esc byte) []byte {
	switch t.Kind {
	case Ident:
		for i := t.Start; i < t.End; i++ {
			dst = append(dst, lowerASCII(src[i]))
		}
		return dst
	case QuotedIdent:
		start := t.Start + 1
		if t.Flags&UnicodeEscapes != 0 {
			start = t.Start + 3
		}
		end := t.End
		if t.Flags&Unterminated == 0 {
			end--
		}
		if end < start {
			end = start
		}
		body := src[start:end]
		if t.Flags&UnicodeEscapes != 0 {
			var tmp []byte
			var arr [64]byte
			tmp = appendCollapsed(arr[:0], body, '"')
			return appendUnicodeEscapes(dst, tmp, esc)
		}
		return appendCollapsed(dst, body, '"')
	}
	return append(dst, src[t.Start:t.End]...)
}

// appendCollapsed appends s with doubled q characters collapsed.
func appendCollapsed(dst []byte, s string, q byte) []byte {
	for i := 0; i < len(s); i++ {
		dst = append(dst, s[i])
		if s[i] == q && i+1 < len(s) && s[i+1] == q {
			i++
		}
	}
	return dst
}

// AppendStringValue appends the value of a String token: quotes removed,
// doubled quotes collapsed, continuation lines joined, backslash escapes of E'...'
// and (with esc) Unicode escapes of U&'...' decoded; the body of a
// dollar-quoted string is appended verbatim. Other tokens append their
// raw text.
func AppendStringValue(dst []byte, src string, t Token, esc byte) []byte {
	if t.Kind != String {
		return append(dst, src[t.Start:t.End]...)
	}
	if t.Flags&DollarQuoted != 0 {
		s, e := dollarBody(src, t)
		return append(dst, src[s:e]...)
	}
	i := t.Start + 1
	switch {
	case t.Flags&UnicodeEscapes != 0:
		i = t.Start + 3
	case t.Flags&(EscapeString|BitString|NationalString) != 0:
		i = t.Start + 2
	}
	if t.Flags&UnicodeEscapes != 0 {
		var arr [64]byte
		raw := appendQuotedBody(arr[:0], src[:t.End], i, false)
		return appendUnicodeEscapes(dst, raw, esc)
	}
	return appendQuotedBody(dst, src[:t.End], i, t.Flags&EscapeString != 0)
}

// dollarBody returns the byte range of the body of a dollar-quoted token.
func dollarBody(src string, t Token) (int, int) {
	tl := dollarTag(src, t.Start)
	s := t.Start + tl
	e := t.End
	if t.Flags&Unterminated == 0 {
		e -= tl
	}
	if e < s {
		e = s
	}
	return s, e
}

// appendQuotedBody decodes a single-quoted literal body that starts at i
// and ends at len(src) (the closing quote, if any, included).
func appendQuotedBody(dst []byte, src string, i int, backslash bool) []byte {
	n := len(src)
	for i < n {
		c := src[i]
		switch {
		case c == '\'':
			if i+1 < n && src[i+1] == '\'' {
				dst = append(dst, '\'')
				i += 2
				continue
			}
			j := quoteContinuation(src, i+1)
			if j < 0 {
				return dst
			}
			i = j + 1
		case c == '\\' && backslash:
			dst, i = appendBackslashEscape(dst, src, i+1)
		default:
			dst = append(dst, c)
			i++
		}
	}
	return dst
}

// appendBackslashEscape decodes the escape sequence of an E'...' string whose
// backslash ends just before i.
func appendBackslashEscape(dst []byte, src string, i int) ([]byte, int) {
	n := len(src)
	if i >= n {
		return append(dst, '\\'), n
	}
	c := src[i]
	switch c {
	case 'b':
		return append(dst, '\b'), i + 1
	case 'f':
		return append(dst, '\f'), i + 1
	case 'n':
		return append(dst, '\n'), i + 1
	case 'r':
		return append(dst, '\r'), i + 1
	case 't':
		return append(dst, '\t'), i + 1
	case 'x':
		if i+1 < n && isHex(src[i+1]) {
			v := hexVal(src[i+1])
			j := i + 2
			if j < n && isHex(src[j]) {
				v = v<<4 | hexVal(src[j])
				j++
			}
			return append(dst, byte(v)), j
		}
		return append(dst, 'x'), i + 1
	case 'u', 'U':
		digits := 4
		if c == 'U' {
			digits = 8
		}
		var v rune
		ok := i+digits < n
		for k := 1; ok && k <= digits; k++ {
			if !isHex(src[i+k]) {
				ok = false
				break
			}
			v = v<<4 | hexVal(src[i+k])
		}
		if ok {
			return utf8.AppendRune(dst, v), i + 1 + digits
		}
		return append(dst, c), i + 1
	}
	if '0' <= c && c <= '7' {
		v := int(c - '0')
		j := i + 1
		for k := 0; k < 2 && j < n && '0' <= src[j] && src[j] <= '7'; k++ {
			v = v<<3 | int(src[j]-'0')
			j++
		}
		return append(dst, byte(v)), j
	}
	return append(dst, c), i + 1
}

// appendUnicodeEscapes decodes the escapes of a U&'...' or U&"..." body:
// esc esc is esc itself; esc and four hex digits, or esc, "+" and six hex digits, are code points.
// Malformed escapes are kept as they are.
func appendUnicodeEscapes(dst, s []byte, esc byte) []byte {
	n := len(s)
	for i := 0; i < n; i++ {
		c := s[i]
		if c != esc {
			dst = append(dst, c)
			continue
		}
		if i+1 < n && s[i+1] == esc {
			dst = append(dst, esc)
			i++
			continue
		}
		start, digits := i+1, 4
		if i+1 < n && s[i+1] == '+' {
			start, digits = i+2, 6
		}
		var v rune
		ok := start+digits <= n
		for k := 0; ok && k < digits; k++ {
			if !isHex(s[start+k]) {
				ok = false
				break
			}
			v = v<<4 | hexVal(s[start+k])
		}
		if !ok {
			dst = append(dst, c)
			continue
		}
		dst = utf8.AppendRune(dst, v)
		i = start + digits - 1
	}
	return dst
}
