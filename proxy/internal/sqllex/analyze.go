package sqllex

import (
	"strconv"
	"strings"
)

// Effect is what a statement does beyond its transaction.
type Effect uint16

const (
	EffectNone Effect = 0
	// session state that pins the client to its backend:
	EffectSet          Effect = 1 << iota // SET / RESET without LOCAL (also SET SESSION ...), set_config(..., false), setseed(...)
	EffectPrepare                         // SQL PREPARE name AS ...
	EffectListen                          // LISTEN (UNLISTEN doesn't pin)
	EffectTempTable                       // CREATE TEMP TABLE/VIEW/SEQUENCE, objects in pg_temp, SELECT ... INTO TEMP
	EffectAdvisoryLock                    // pg_advisory_lock, pg_advisory_lock_shared, pg_try_advisory_lock[_shared]
	EffectHoldCursor                      // DECLARE ... CURSOR WITH HOLD
	EffectLoad                            // LOAD 'lib'
	// statements the router refuses:
	EffectSetRole   // SET [LOCAL|SESSION] ROLE, SET SESSION AUTHORIZATION, RESET ROLE, RESET SESSION AUTHORIZATION, set_config('role'|'session_authorization', ...)
	EffectAlterRole // ALTER ROLE, ALTER USER (not ALTER USER MAPPING): a role may change its own password and session defaults
	// statements that reset session state:
	EffectDiscardAll // DISCARD ALL
	EffectDeallocate // DEALLOCATE [PREPARE] name | ALL
)

// PinEffects are the effects that tie a client to its backend.
const PinEffects = EffectSet | EffectPrepare | EffectListen | EffectTempTable |
	EffectAdvisoryLock | EffectHoldCursor | EffectLoad

// RefuseEffects are the effects of statements the router refuses.
const RefuseEffects = EffectSetRole | EffectAlterRole

// Pins reports whether e includes an effect that pins the client.
func (e Effect) Pins() bool { return e&PinEffects != 0 }

// Refused reports whether e includes an effect the router refuses.
func (e Effect) Refused() bool { return e&RefuseEffects != 0 }

var effectNames = [...]struct {
	e    Effect
	name string
}{
	{EffectSet, "Set"},
	{EffectPrepare, "Prepare"},
	{EffectListen, "Listen"},
	{EffectTempTable, "TempTable"},
	{EffectAdvisoryLock, "AdvisoryLock"},
	{EffectHoldCursor, "HoldCursor"},
	{EffectLoad, "Load"},
	{EffectSetRole, "SetRole"},
	{EffectAlterRole, "AlterRole"},
	{EffectDiscardAll, "DiscardAll"},
	{EffectDeallocate, "Deallocate"},
}

func (e Effect) String() string {
	if e == EffectNone {
		return "None"
	}
	var b strings.Builder
	for _, n := range effectNames {
		if e&n.e != 0 {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(n.name)
			e &^= n.e
		}
	}
	if e != 0 {
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		b.WriteString("0x")
		const hex = "0123456789abcdef"
		for s := 12; s >= 0; s -= 4 {
			b.WriteByte(hex[(e>>s)&0xf])
		}
	}
	return b.String()
}

// Statement is one top-level statement of a query string.
type Statement struct {
	Effect Effect
	// Keyword is the first keyword, upper-cased ("SET", "SELECT", "BEGIN",
	// ...), skipping leading parentheses; "" for an empty statement or one
	// that does not start with a keyword.
	Keyword string
	// Param is the parameter name (lower-cased, unquoted, dotted names
	// joined with ".") of SET / RESET and of the first set_config call
	// with a literal name, whether or not the statement pins: it is filled
	// for SET LOCAL too, which pins nothing. SET ROLE gives "role", SET
	// SESSION AUTHORIZATION "session_authorization", SET TIME ZONE
	// "timezone", SET NAMES "client_encoding", SET SCHEMA "search_path",
	// RESET ALL "all"; "" when unknown.
	Param string
	// Value is, for a SET of one parameter to one constant (a number,
	// optionally negative, a word, or a string; not a list), the value as
	// SET reads it: unquoted words lower-cased, strings unquoted. Default
	// says the statement sets the parameter back to its default instead
	// (SET ... TO DEFAULT, RESET name). Simple says one of the two holds.
	Value       string
	Default     bool
	SimpleValue bool
	// Name is, for DEALLOCATE, the statement name or "" for ALL; it also
	// names the prepared statement of PREPARE, the cursor of DECLARE and
	// the channel of LISTEN. Unquoted names are lower-cased.
	Name string
	// Start and End are the byte range of the statement in the query
	// string, leading whitespace and comments included; End is the index
	// of the terminating ";" or the length of the input.
	Start, End int
}

// Analyze splits sql into statements and classifies each. It never panics,
// allocates little (no regexp), and treats unterminated quotes/comments as
// running to the end of the input.
//
// Statements are separated by ";" outside quotes, comments, parentheses
// and BEGIN ATOMIC bodies; empty statements between semicolons are
// reported with Keyword "", but an empty tail after the last ";" (or an
// input without tokens) is not.
//
// EXPLAIN is classified as EXPLAIN: only its function calls count, plus,
// with ANALYZE (which runs the statement), a temporary table created by
// CREATE TEMP TABLE ... AS or SELECT ... INTO TEMP.
//
// Limitations: the analysis is lexical. It does not know what user-defined
// functions, procedures (CALL), triggers, rules, views or SQL built at run
// time do (only string literals given to EXECUTE in a DO body are looked
// at, and DO / EXECUTE / EXPLAIN nesting is followed to a depth of 4). It
// assumes standard_conforming_strings is on, and it does not know whether
// a transaction is open. Function names match whatever their schema, so
// myschema.set_config(...) counts like pg_catalog.set_config(...); a
// set_config whose name is not a literal is a plain EffectSet. Only the
// first 256 tokens of a set_config argument list are looked at.
func Analyze(sql string) []Statement {
	a := analyzer{src: sql, detail: true}
	var out []Statement
	pos := 0
	for {
		end, semi, nonEmpty := splitNext(sql, pos, len(sql))
		if !semi && !nonEmpty {
			break
		}
		var st Statement
		if nonEmpty {
			st = a.classify(pos, end, 0, false)
		}
		st.Start, st.End = pos, end
		out = append(out, st)
		if !semi {
			break
		}
		pos = end + 1
	}
	return out
}

// Effects is the union of the effects of all statements in sql, the same
// as the union over Analyze(sql) but without building statements. Text
// that contains none of the trigger words (set, prepare, listen, load,
// temp, advisory, hold, discard, deallocate, execute, alter, u&) is dismissed by a quick
// pre-scan; otherwise the text is analysed without allocating, except to
// decode a DO body or EXECUTE literal that is not its source text verbatim.
func Effects(sql string) Effect {
	if !mayHaveEffects(sql) {
		return EffectNone
	}
	a := analyzer{src: sql}
	return a.effects(0, len(sql), 0, false)
}

// The trigger words of the pre-scan are words at least one of which
// occurs (ignoring ASCII case) in the text of every statement with an
// effect: "set" (SET, RESET, set_config, SET ROLE), "prepare", "listen",
// "load", "temp" (TEMP, TEMPORARY, pg_temp), "advisory", "hold",
// "discard", "deallocate", "execute" (PL/pgSQL's EXECUTE of SQL text
// built at run time, which counts as a SET), "alter" (ALTER ROLE, ALTER
// USER), and "u&" (a U&"..." name can spell anything).
//
// preScan marks the bytes the pre-scan stops at: the first letters of the
// trigger words, the backslash and the single quote.
var preScan = func() (t [256]bool) {
	for _, c := range []byte("spltahdeu\\'") {
		t[c] = true
		if 'a' <= c && c <= 'z' {
			t[c-'a'+'A'] = true
		}
	}
	return t
}()

// mayHaveEffects is the pre-scan of Effects: false when no trigger word
// occurs anywhere in s, quotes and comments included. The bodies of DO
// blocks and EXECUTE literals are analysed after decoding, which can
// assemble a trigger word from pieces (E'\x73et', 'se' + newline + 't'),
// so a backslash, or a quote that starts a line, also sends s to the
// full analysis.
func mayHaveEffects(s string) bool {
	n := len(s)
	for i := 0; i < n; i++ {
		c := s[i]
		if !preScan[c] {
			continue
		}
		// lower(k) is the k-th byte after c, lower-cased (0 past the end).
		lower := func(k int) byte {
			if i+k < n {
				return s[i+k] | 0x20
			}
			return 0
		}
		switch c | 0x20 {
		case 's':
			if lower(1) == 'e' && lower(2) == 't' {
				return true
			}
		case 'p':
			if lower(1) == 'r' && hasFoldPrefix(s[i:], "prepare") {
				return true
			}
		case 'l':
			if (lower(1) == 'i' && hasFoldPrefix(s[i:], "listen")) || (lower(1) == 'o' && hasFoldPrefix(s[i:], "load")) {
				return true
			}
		case 't':
			if lower(1) == 'e' && lower(2) == 'm' && lower(3) == 'p' {
				return true
			}
		case 'a':
			if lower(1) == 'd' && hasFoldPrefix(s[i:], "advisory") || lower(1) == 'l' && hasFoldPrefix(s[i:], "alter") {
				return true
			}
		case 'h':
			if lower(1) == 'o' && lower(2) == 'l' && lower(3) == 'd' {
				return true
			}
		case 'd':
			if lower(1) == 'i' && hasFoldPrefix(s[i:], "discard") || lower(1) == 'e' && hasFoldPrefix(s[i:], "deallocate") {
				return true
			}
		case 'e':
			if lower(1) == 'x' && hasFoldPrefix(s[i:], "execute") {
				return true
			}
		case 'u':
			if i+1 < n && s[i+1] == '&' {
				return true
			}
		case '\\' | 0x20: // '|' or '\\'
			if c == '\\' {
				return true
			}
		case '\'':
			j := i - 1
			for j >= 0 && (s[j] == ' ' || s[j] == '\t' || s[j] == '\f' || s[j] == '\v') {
				j--
			}
			if j >= 0 && (s[j] == '\n' || s[j] == '\r') {
				return true
			}
		}
	}
	return false
}

func hasFoldPrefix(s, lower string) bool {
	return len(s) >= len(lower) && foldEq(s[:len(lower)], lower)
}

// maxDepth bounds the nesting of DO bodies, EXECUTE literals and EXPLAIN
// targets that are analysed.
const maxDepth = 4

type analyzer struct {
	src    string
	detail bool // fill Keyword, Param and Name
	// argScans counts the set_config argument tokens looked at so far in
	// this text. Nested calls each look ahead, so without a total bound a
	// text of many nested calls would cost maxArgTokens per call.
	argScans int
}

// effects returns the union of the effects of the statements in
// a.src[start:end]; pl says the text is a PL/pgSQL body.
func (a *analyzer) effects(start, end, depth int, pl bool) Effect {
	var e Effect
	pos := start
	for {
		stEnd, semi, nonEmpty := splitNext(a.src, pos, end)
		if nonEmpty {
			e |= a.classify(pos, stEnd, depth, pl).Effect
		}
		if !semi {
			return e
		}
		pos = stEnd + 1
	}
}

// splitNext finds the end of the statement that starts at pos in
// src[:limit]: the index of its terminating ";" (semi true) or limit.
// nonEmpty says whether the statement has any token.
//
// Like psql, it does not split inside parentheses, nor inside the BEGIN
// ATOMIC ... END body of CREATE [OR REPLACE] FUNCTION|PROCEDURE, where it
// counts CASE ... END pairs. Unlike psql, only the BEGIN ATOMIC that opens
// the body counts, so that a column named "begin" cannot hide the rest of
// the query string from the analysis.
func splitNext(src string, pos, limit int) (end int, semi, nonEmpty bool) {
	lx := Lexer{src: src[:limit], pos: pos}
	paren := 0
	head := 0 // state of matching CREATE [OR REPLACE] FUNCTION|PROCEDURE
	routine := false
	atomic := 0
	afterBegin := false
	for {
		t := lx.Next()
		switch t.Kind {
		case EOF:
			return limit, false, nonEmpty
		case Semicolon:
			if paren == 0 && atomic == 0 {
				return t.Start, true, nonEmpty
			}
		case Op:
			switch src[t.Start:t.End] {
			case "(":
				paren++
			case ")":
				if paren > 0 {
					paren--
				}
			}
		}
		nonEmpty = true
		if head >= 0 {
			w := src[t.Start:t.End]
			switch {
			case t.Kind != Ident:
				head = -1
			case head == 0 && foldEq(w, "create"):
				head = 1
			case head == 1 && foldEq(w, "or"):
				head = 2
			case head == 2 && foldEq(w, "replace"):
				head = 3
			case (head == 1 || head == 3) && (foldEq(w, "function") || foldEq(w, "procedure")):
				routine = true
				head = -1
			default:
				head = -1
			}
			continue
		}
		if !routine || paren != 0 || t.Kind != Ident {
			afterBegin = false
			continue
		}
		w := src[t.Start:t.End]
		switch {
		case atomic == 0:
			if afterBegin && foldEq(w, "atomic") {
				atomic = 1
			}
			afterBegin = foldEq(w, "begin")
			continue
		case foldEq(w, "case"):
			atomic++
		case foldEq(w, "end"):
			atomic--
		}
		afterBegin = false
	}
}

// headSize is how many tokens of a statement are looked at directly.
const headSize = 16

// head holds the first tokens of a statement; missing ones are EOF.
type head struct {
	t [headSize]Token
}

func (h *head) fill(lx Lexer) {
	for i := range h.t {
		h.t[i] = lx.Next()
	}
}

// ring remembers the last tokens seen by a scan.
type ring struct {
	t [8]Token
	n int
}

func (r *ring) push(t Token) {
	r.t[r.n%len(r.t)] = t
	r.n++
}

// back returns the k-th last token pushed (0 is the last), or EOF.
func (r *ring) back(k int) Token {
	if k >= r.n || k >= len(r.t) {
		return Token{Kind: EOF}
	}
	return r.t[(r.n-1-k)%len(r.t)]
}

// kw reports whether t is the unquoted keyword kw (lower-case).
func (a *analyzer) kw(t Token, kw string) bool {
	return t.Kind == Ident && t.End-t.Start == len(kw) && foldEq(a.src[t.Start:t.End], kw)
}

// op reports whether t is the operator or punctuation op.
func (a *analyzer) op(t Token, op string) bool {
	return t.Kind == Op && a.src[t.Start:t.End] == op
}

func isName(t Token) bool { return t.Kind == Ident || t.Kind == QuotedIdent }

// nameIs reports whether the identifier token t names name (lower-case):
// unquoted identifiers match ignoring ASCII case, quoted ones exactly.
func (a *analyzer) nameIs(t Token, esc byte, name string) bool {
	switch t.Kind {
	case Ident:
		return a.kw(t, name)
	case QuotedIdent:
		if t.Flags == 0 {
			return t.End-t.Start == len(name)+2 && a.src[t.Start+1:t.End-1] == name
		}
		var buf [64]byte
		return string(AppendIdentValue(buf[:0], a.src, t, esc)) == name
	}
	return false
}

// identString returns the name t stands for (see AppendIdentValue).
func (a *analyzer) identString(t Token) string {
	switch {
	case t.Kind == Ident && !hasUpper(a.src[t.Start:t.End]):
		return a.src[t.Start:t.End]
	case t.Kind == QuotedIdent && t.Flags == 0 && !strings.Contains(a.src[t.Start+1:t.End-1], `"`):
		return a.src[t.Start+1 : t.End-1]
	}
	return string(AppendIdentValue(nil, a.src, t, '\\'))
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// keywordNames holds the upper-case spelling of common first keywords, so
// that Keyword usually costs no allocation.
var keywordNames = func() map[string]string {
	m := make(map[string]string)
	for _, k := range strings.Fields(`ABORT ALTER ANALYSE ANALYZE BEGIN CALL CHECKPOINT CLOSE CLUSTER
		COMMENT COMMIT COPY CREATE DEALLOCATE DECLARE DELETE DISCARD DO DROP END EXECUTE EXPLAIN
		FETCH GRANT IMPORT INSERT LISTEN LOAD LOCK MERGE MOVE NOTIFY PREPARE REASSIGN REFRESH
		REINDEX RELEASE RESET REVOKE ROLLBACK SAVEPOINT SECURITY SELECT SET SHOW START TABLE
		TRUNCATE UNLISTEN UPDATE VACUUM VALUES WITH`) {
		m[strings.ToLower(k)] = k
	}
	return m
}()

// keyword returns the upper-case spelling of the keyword token t.
func (a *analyzer) keyword(t Token) string {
	w := a.src[t.Start:t.End]
	if len(w) <= 16 {
		var buf [16]byte
		for i := 0; i < len(w); i++ {
			buf[i] = lowerASCII(w[i])
		}
		if k, ok := keywordNames[string(buf[:len(w)])]; ok {
			return k
		}
	}
	b := []byte(w)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}

// scanOpts says what scan looks for besides function calls.
type scanOpts struct {
	calls    bool // calls of set_config and the advisory lock functions
	intoTemp bool // SELECT ... INTO TEMP
	onCommit bool // ON COMMIT DROP
	declare  bool // WITH HOLD before FOR
	plExec   bool // string literals after EXECUTE are SQL (PL/pgSQL)
}

// classify analyses the statement in a.src[start:end], which has at least
// one token. pl says it is a statement of a PL/pgSQL body.
func (a *analyzer) classify(start, end, depth int, pl bool) Statement {
	var st Statement
	lx := Lexer{src: a.src[:end], pos: start}
	if pl {
		lx = a.skipPLPrefix(lx)
	}
	// Skip leading parentheses: (SELECT ...) UNION ...
	for {
		save := lx
		if t := lx.Next(); !a.op(t, "(") {
			lx = save
			break
		}
	}
	var h head
	h.fill(lx)
	k := h.t[0]
	if k.Kind != Ident {
		if k.Kind != EOF {
			a.scan(start, end, depth, scanOpts{calls: true, plExec: pl}, &st)
		}
		return st
	}
	if a.detail {
		st.Keyword = a.keyword(k)
	}
	// In PL/pgSQL, EXECUTE anywhere runs dynamic SQL (EXECUTE '...',
	// RETURN QUERY EXECUTE, FOR r IN EXECUTE, OPEN c FOR EXECUTE).
	o := scanOpts{calls: true, plExec: pl}
	temp := false
	if k.End-k.Start <= 16 {
		var buf [16]byte
		n := k.End - k.Start
		for i := 0; i < n; i++ {
			buf[i] = lowerASCII(a.src[k.Start+i])
		}
		switch string(buf[:n]) {
		case "set":
			a.classifySet(&st, &h)
			if a.setsSearchPath(&h) && containsFold(a.src[start:end], "pg_temp") {
				// With pg_temp first in search_path, CREATE TABLE and
				// the like create temporary objects: SET LOCAL too.
				st.Effect |= EffectTempTable
			}
		case "reset":
			a.classifyReset(&st, &h)
		case "prepare":
			a.classifyPrepare(&st, &h)
		case "deallocate":
			a.classifyDeallocate(&st, &h)
		case "discard":
			if a.kw(h.t[1], "all") {
				st.Effect |= EffectDiscardAll
			}
		case "listen":
			st.Effect |= EffectListen
			if a.detail && isName(h.t[1]) {
				st.Name = a.identString(h.t[1])
			}
		case "load":
			st.Effect |= EffectLoad
		case "declare":
			o.declare = true
			if a.detail && isName(h.t[1]) {
				st.Name = a.identString(h.t[1])
			}
		case "select", "with":
			o.intoTemp = true
		case "update":
			// UPDATE pg_settings SET setting = ... runs set_config(name,
			// value, false) through the view's rule: a session-level SET.
			if a.updatesPgSettings(&h) {
				st.Effect |= EffectSet
			}
		case "create":
			temp = a.classifyCreate(&h, &o)
		case "explain":
			if depth < maxDepth {
				a.classifyExplain(&st, lx, end, depth)
			}
		case "do":
			if depth < maxDepth {
				a.classifyDo(&st, lx, depth)
			}
		case "alter":
			if a.kw(h.t[1], "role") || a.kw(h.t[1], "user") && !a.kw(h.t[2], "mapping") {
				st.Effect |= EffectAlterRole
			}
		case "drop", "comment", "grant", "revoke", "security":
			// Functions named here are not called.
			o.calls = false
		}
	}
	from := lx.Pos()
	if pl {
		// Calls in the part skipped by skipPLPrefix (IF cond THEN ...) run too.
		from = start
	}
	dropped := a.scan(from, end, depth, o, &st)
	if temp && !dropped {
		st.Effect |= EffectTempTable
	}
	return st
}

// skipPLPrefix skips the PL/pgSQL block structure in front of a statement
// of a PL/pgSQL body: labels, BEGIN, DECLARE, ELSE, LOOP, EXCEPTION, and
// IF / ELSIF / WHILE / FOR / FOREACH / WHEN / CASE conditions up to their
// THEN or LOOP.
func (a *analyzer) skipPLPrefix(lx Lexer) Lexer {
	for {
		save := lx
		t := lx.Next()
		switch {
		case a.op(t, "<<"):
			for {
				u := lx.Next()
				if u.Kind == EOF {
					return save
				}
				if a.op(u, ">>") {
					break
				}
			}
		case a.kw(t, "begin"), a.kw(t, "declare"), a.kw(t, "else"), a.kw(t, "loop"), a.kw(t, "exception"):
		case a.kw(t, "if"), a.kw(t, "elsif"), a.kw(t, "elseif"), a.kw(t, "while"), a.kw(t, "for"),
			a.kw(t, "foreach"), a.kw(t, "when"), a.kw(t, "case"):
			paren := 0
			for {
				u := lx.Next()
				if u.Kind == EOF {
					return save
				}
				switch {
				case a.op(u, "("):
					paren++
				case a.op(u, ")"):
					if paren > 0 {
						paren--
					}
				}
				if paren == 0 && (a.kw(u, "then") || a.kw(u, "loop")) {
					break
				}
			}
		default:
			return save
		}
	}
}

// classifySet handles SET statements.
func (a *analyzer) classifySet(st *Statement, h *head) {
	i := 1
	local := false
	switch {
	case a.kw(h.t[i], "local"):
		local = true
		i++
	case a.kw(h.t[i], "session"):
		switch {
		case a.kw(h.t[i+1], "authorization"):
		case a.kw(h.t[i+1], "characteristics"):
			// SET SESSION CHARACTERISTICS AS TRANSACTION ...: session defaults.
			st.Effect |= EffectSet
			return
		default:
			i++
		}
	}
	t := h.t[i]
	isRole := false
	switch {
	case a.kw(t, "role"):
		a.setParam(st, "role")
		isRole = true
	case a.kw(t, "session") && a.kw(h.t[i+1], "authorization"):
		a.setParam(st, "session_authorization")
		isRole = true
	case a.kw(t, "transaction"), a.kw(t, "constraints"):
		return // transaction-local
	case a.kw(t, "time") && a.kw(h.t[i+1], "zone"):
		a.setParam(st, "timezone")
	case a.kw(t, "names"):
		a.setParam(st, "client_encoding")
	case a.kw(t, "schema"):
		a.setParam(st, "search_path")
	case a.kw(t, "xml") && a.kw(h.t[i+1], "option"):
		a.setParam(st, "xmloption")
	case isName(t):
		isRole = a.varName(st, h, i)
		if a.detail && !isRole {
			a.setValue(st, h, i)
		}
	}
	switch {
	case isRole:
		st.Effect |= EffectSetRole
	case !local:
		st.Effect |= EffectSet
	}
}

// setValue fills st.Value, Default and SimpleValue for SET name {=|TO}
// value, the dotted name starting at h.t[i], when nothing follows the one
// value.
func (a *analyzer) setValue(st *Statement, h *head, i int) {
	j := i
	for j+2 < headSize && a.op(h.t[j+1], ".") && isName(h.t[j+2]) {
		j += 2
	}
	j++
	if j+2 >= headSize || !a.op(h.t[j], "=") && !a.kw(h.t[j], "to") {
		return
	}
	v, end := h.t[j+1], j+2
	neg := false
	if a.op(v, "-") && h.t[j+2].Kind == Number && j+3 < headSize {
		v, end, neg = h.t[j+2], j+3, true
	}
	if h.t[end].Kind != EOF {
		return
	}
	switch {
	case v.Kind == Number:
		st.Value = a.src[v.Start:v.End]
		if neg {
			st.Value = "-" + st.Value
		}
		if n, err := strconv.ParseInt(st.Value, 10, 32); err == nil {
			st.Value = strconv.FormatInt(n, 10) // an integer constant, as SET reads it (007 is 7)
		}
	case neg:
		return
	case v.Kind == Ident && a.kw(v, "default"):
		st.Default = true
	case isName(v):
		st.Value = lowerString(a.identString(v))
		if v.Kind == QuotedIdent {
			st.Value = a.identString(v)
		}
	case v.Kind == String && v.Flags&(UnicodeEscapes|Unterminated) == 0:
		st.Value = string(AppendStringValue(nil, a.src, v, '\\'))
	default:
		return
	}
	st.SimpleValue = true
}

// classifyReset handles RESET statements.
func (a *analyzer) classifyReset(st *Statement, h *head) {
	t := h.t[1]
	switch {
	case a.kw(t, "all"):
		a.setParam(st, "all")
	case a.kw(t, "role"):
		a.setParam(st, "role")
		st.Effect |= EffectSetRole
		return
	case a.kw(t, "session") && a.kw(h.t[2], "authorization"):
		a.setParam(st, "session_authorization")
		st.Effect |= EffectSetRole
		return
	case a.kw(t, "transaction"):
		return // RESET TRANSACTION ISOLATION LEVEL: transaction-local
	case a.kw(t, "time") && a.kw(h.t[2], "zone"):
		a.setParam(st, "timezone")
	case isName(t):
		if a.varName(st, h, 1) {
			st.Effect |= EffectSetRole
			return
		}
		j := 1
		for j+2 < headSize && a.op(h.t[j+1], ".") && isName(h.t[j+2]) {
			j += 2
		}
		if a.detail && j+1 < headSize && h.t[j+1].Kind == EOF {
			st.Default, st.SimpleValue = true, true
		}
	}
	st.Effect |= EffectSet
}

func (a *analyzer) setParam(st *Statement, p string) {
	if a.detail {
		st.Param = p
	}
}

// varName reads the dotted parameter name starting at h.t[i] into
// st.Param and reports whether it is role or session_authorization.
func (a *analyzer) varName(st *Statement, h *head, i int) bool {
	t := h.t[i]
	if !a.op(h.t[i+1], ".") && (a.kw(t, "role") || a.kw(t, "session_authorization") ||
		quotedFoldIs(a, t, "role") || quotedFoldIs(a, t, "session_authorization")) {
		if a.detail {
			st.Param = lowerString(a.identString(t))
		}
		return true
	}
	if !a.detail {
		return false
	}
	var b []byte
	for j := i; j < headSize && isName(h.t[j]); j += 2 {
		if j > i {
			b = append(b, '.')
		}
		b = AppendIdentValue(b, a.src, h.t[j], '\\')
		if j+1 >= headSize || !a.op(h.t[j+1], ".") {
			break
		}
	}
	st.Param = lowerString(string(b))
	return false
}

// lowerString lower-cases ASCII letters only, as PostgreSQL does when it
// compares parameter names.
func lowerString(s string) string {
	if !hasUpper(s) {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		b[i] = lowerASCII(c)
	}
	return string(b)
}

// quotedFoldIs reports whether the quoted identifier t, ignoring ASCII
// case, is name: parameter names are looked up case-insensitively, so
// SET "ROLE" = x sets the role.
func quotedFoldIs(a *analyzer, t Token, name string) bool {
	if t.Kind != QuotedIdent {
		return false
	}
	var buf [64]byte
	return foldEq(string(AppendIdentValue(buf[:0], a.src, t, '\\')), name)
}

// classifyPrepare handles PREPARE name [(types)] AS statement; PREPARE
// TRANSACTION 'gid' is two-phase commit and does not pin.
func (a *analyzer) classifyPrepare(st *Statement, h *head) {
	t := h.t[1]
	if a.kw(t, "transaction") && h.t[2].Kind == String {
		return
	}
	st.Effect |= EffectPrepare
	if a.detail && isName(t) {
		st.Name = a.identString(t)
	}
}

// classifyDeallocate handles DEALLOCATE [PREPARE] name | ALL.
func (a *analyzer) classifyDeallocate(st *Statement, h *head) {
	i := 1
	if a.kw(h.t[1], "prepare") && isName(h.t[2]) {
		i = 2
	}
	t := h.t[i]
	switch {
	case a.kw(t, "all"):
		st.Effect |= EffectDeallocate
	case isName(t):
		st.Effect |= EffectDeallocate
		if a.detail {
			st.Name = a.identString(t)
		}
	}
}

// classifyCreate handles CREATE statements: it reports whether the
// statement creates a temporary object, and sets what the scan should
// look for.
func (a *analyzer) classifyCreate(h *head, o *scanOpts) bool {
	i := 1
	if a.kw(h.t[i], "or") && a.kw(h.t[i+1], "replace") {
		i += 2
	}
	if a.kw(h.t[i], "global") || a.kw(h.t[i], "local") {
		i++
	}
	temp := false
	if a.kw(h.t[i], "temp") || a.kw(h.t[i], "temporary") {
		temp = true
		i++
	}
	if a.kw(h.t[i], "unlogged") {
		i++
	}
	obj := h.t[i]
	table := a.kw(obj, "table")
	// Only CREATE TABLE ... AS and CREATE MATERIALIZED VIEW run a query
	// now; function bodies, view definitions, defaults and so on don't.
	o.calls = table || a.kw(obj, "materialized")
	o.onCommit = table
	// An object created in pg_temp is temporary: CREATE TABLE pg_temp.t.
	for j := i + 1; j+1 < headSize; j++ {
		t := h.t[j]
		if t.Kind == EOF || a.op(t, "(") || a.kw(t, "as") {
			break
		}
		if a.isPgTemp(t) && a.op(h.t[j+1], ".") {
			temp = true
			break
		}
	}
	return temp
}

// isPgTemp reports whether t names the session's temporary schema.
func (a *analyzer) isPgTemp(t Token) bool {
	var w string
	switch {
	case t.Kind == Ident:
		w = a.src[t.Start:t.End]
		if !hasFoldPrefix(w, "pg_temp") {
			return false
		}
	case t.Kind == QuotedIdent && t.Flags == 0:
		w = a.src[t.Start+1 : t.End-1]
		if !strings.HasPrefix(w, "pg_temp") {
			return false
		}
	default:
		return false
	}
	rest := w[len("pg_temp"):]
	if rest == "" {
		return true
	}
	if rest[0] != '_' || len(rest) == 1 {
		return false
	}
	for i := 1; i < len(rest); i++ {
		if !isDigit(rest[i]) {
			return false
		}
	}
	return true
}

// classifyExplain handles EXPLAIN: with ANALYZE the target runs, so a
// temporary table it creates (CREATE TEMP TABLE ... AS, SELECT INTO TEMP)
// counts. Function calls anywhere count in any case (see scan).
func (a *analyzer) classifyExplain(st *Statement, lx Lexer, end, depth int) {
	lx.Next() // EXPLAIN
	analyze := false
	save := lx
	if t := lx.Next(); a.op(t, "(") {
		paren := 0
		var opt, val Token
		done := false
		finish := func() {
			if a.kw(opt, "analyze") || a.kw(opt, "analyse") {
				analyze = val.Kind == EOF || a.boolLiteral(val, true) != boolFalse
			}
			opt, val = Token{}, Token{}
		}
		for !done {
			t := lx.Next()
			switch {
			case t.Kind == EOF:
				finish()
				done = true
			case a.op(t, "("):
				paren++
			case a.op(t, ")"):
				if paren == 0 {
					finish()
					done = true
				} else {
					paren--
				}
			case paren > 0:
			case a.op(t, ","):
				finish()
			case opt.Kind == EOF:
				opt = t
			case val.Kind == EOF:
				val = t
			}
		}
	} else {
		lx = save
		for {
			save = lx
			t := lx.Next()
			if a.kw(t, "analyze") || a.kw(t, "analyse") {
				analyze = true
			} else if !a.kw(t, "verbose") {
				lx = save
				break
			}
		}
	}
	if analyze {
		inner := a.classify(lx.Pos(), end, depth+1, false)
		st.Effect |= inner.Effect & EffectTempTable
	}
}

// classifyDo analyses the body of DO [LANGUAGE plpgsql] '...', which runs
// immediately.
func (a *analyzer) classifyDo(st *Statement, lx Lexer, depth int) {
	lx.Next() // DO
	var body Token
	plpgsql := true
	for {
		t := lx.Next()
		if t.Kind == EOF {
			break
		}
		if a.kw(t, "language") {
			l := lx.Next()
			switch l.Kind {
			case Ident, QuotedIdent:
				plpgsql = a.nameIs(l, '\\', "plpgsql")
			case String:
				var buf [64]byte
				plpgsql = foldEq(string(AppendStringValue(buf[:0], a.src, l, '\\')), "plpgsql")
			default:
				plpgsql = false
			}
			continue
		}
		if t.Kind == String && body.Kind == EOF {
			body = t
		}
	}
	if body.Kind == String && plpgsql {
		st.Effect |= a.literalEffects(body, depth+1, true)
	}
}

// literalEffects analyses the value of the string literal t as SQL (or,
// with pl, as a PL/pgSQL body).
func (a *analyzer) literalEffects(t Token, depth int, pl bool) Effect {
	if s, e, ok := a.rawBody(t); ok {
		return a.effects(s, e, depth, pl)
	}
	v := string(AppendStringValue(nil, a.src, t, '\\'))
	if !mayHaveEffects(v) {
		return EffectNone
	}
	sub := analyzer{src: v, argScans: a.argScans}
	e := sub.effects(0, len(v), depth, pl)
	a.argScans = sub.argScans // one bound for the whole text
	return e
}

// rawBody returns the byte range of the value of the string literal t in
// a.src when the value is that text verbatim.
func (a *analyzer) rawBody(t Token) (int, int, bool) {
	if t.Flags&DollarQuoted != 0 {
		s, e := dollarBody(a.src, t)
		return s, e, true
	}
	if t.Flags&(UnicodeEscapes|BitString) != 0 {
		return 0, 0, false
	}
	s := t.Start + 1
	if t.Flags&(EscapeString|NationalString) != 0 {
		s++
	}
	e := t.End
	if t.Flags&Unterminated == 0 {
		e--
	}
	if e < s {
		return s, s, true
	}
	body := a.src[s:e]
	if strings.IndexByte(body, '\'') >= 0 || (t.Flags&EscapeString != 0 && strings.IndexByte(body, '\\') >= 0) {
		return 0, 0, false
	}
	return s, e, true
}

// scan walks the tokens of a.src[from:end] looking for function calls and
// what o asks for. It reports whether ON COMMIT DROP was seen.
func (a *analyzer) scan(from, end, depth int, o scanOpts, st *Statement) (onCommitDrop bool) {
	lx := Lexer{src: a.src[:end], pos: from}
	var r ring
	paren := 0
	seenFor := false
	exec := false
	for {
		t := lx.Next()
		switch t.Kind {
		case EOF:
			return onCommitDrop
		case Op:
			switch a.src[t.Start:t.End] {
			case "(":
				if o.calls {
					st.Effect |= a.call(&r, lx, st)
				}
				paren++
			case ")":
				if paren > 0 {
					paren--
				}
			}
		case Ident, QuotedIdent:
			if o.intoTemp && a.intoTemp(&r, t, lx) {
				st.Effect |= EffectTempTable
			}
			if t.Kind != Ident {
				break
			}
			if o.onCommit && paren == 0 && a.kw(t, "drop") && a.kw(r.back(0), "commit") && a.kw(r.back(1), "on") {
				onCommitDrop = true
			}
			if o.declare && !seenFor && paren == 0 {
				if a.kw(t, "for") {
					seenFor = true
				} else if a.kw(t, "hold") && a.kw(r.back(0), "with") {
					st.Effect |= EffectHoldCursor
				}
			}
			if o.plExec && a.kw(t, "execute") {
				exec = true
				// Dynamic SQL the lexer cannot read (EXECUTE q, EXECUTE
				// 'LIS' || 'TEN x', EXECUTE format(...)) may do anything
				// that pins: count it as a session-level SET, so the
				// session pins and its backend is reset when it leaves.
				if !a.singleLiteral(lx) {
					st.Effect |= EffectSet
				}
			}
		case String:
			if exec && depth < maxDepth {
				st.Effect |= a.literalEffects(t, depth+1, false)
			}
		}
		r.push(t)
	}
}

// reservedAfterTemp are keywords that, following INTO TEMP, show that
// "temp" is the name of a plain table (SELECT 1 INTO temp FROM t).
var reservedAfterTemp = [...]string{"from", "where", "group", "having", "window", "order", "limit",
	"offset", "fetch", "for", "union", "intersect", "except", "on", "returning", "into"}

// intoTemp reports whether the name token t, just read by lx, makes
// SELECT ... INTO [LOCAL|GLOBAL] TEMP[ORARY] [TABLE] name or
// SELECT ... INTO [TABLE] pg_temp.name.
func (a *analyzer) intoTemp(r *ring, t Token, lx Lexer) bool {
	if a.kw(t, "temp") || a.kw(t, "temporary") {
		k := 0
		if a.kw(r.back(0), "local") || a.kw(r.back(0), "global") {
			k = 1
		}
		if !a.kw(r.back(k), "into") || a.kw(r.back(k+1), "insert") || a.kw(r.back(k+1), "merge") {
			return false
		}
		next := lx.Next()
		switch next.Kind {
		case QuotedIdent:
			return true
		case Ident:
			for _, w := range reservedAfterTemp {
				if a.kw(next, w) {
					return false
				}
			}
			return true
		}
		return false
	}
	if !a.isPgTemp(t) {
		return false
	}
	k := 0
	if a.kw(r.back(0), "table") {
		k = 1
	}
	if !a.kw(r.back(k), "into") || a.kw(r.back(k+1), "insert") || a.kw(r.back(k+1), "merge") {
		return false
	}
	return a.op(lx.Next(), ".")
}

// function identifiers
const (
	fnNone = iota
	fnAdvisory
	fnSetConfig
	fnSetSeed
)

var advisoryLockFuncs = [...]string{"pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared"}

// call is invoked at a "(" (not yet pushed on r; lx is just past it). If
// the tokens before it name a function of interest, it returns the call's
// effect.
func (a *analyzer) call(r *ring, lx Lexer, st *Statement) Effect {
	name := r.back(0)
	k := 0
	esc := byte('\\')
	// U&"name" UESCAPE '!' (
	if name.Kind == String && a.kw(r.back(1), "uescape") && r.back(2).Kind == QuotedIdent && r.back(2).Flags&UnicodeEscapes != 0 {
		esc = a.escChar(name)
		name = r.back(2)
		k = 2
	}
	if !isName(name) {
		return EffectNone
	}
	fn := fnNone
	if a.nameIs(name, esc, "set_config") {
		fn = fnSetConfig
	} else if a.nameIs(name, esc, "setseed") {
		fn = fnSetSeed
	} else {
		for _, f := range advisoryLockFuncs {
			if a.nameIs(name, esc, f) {
				fn = fnAdvisory
				break
			}
		}
	}
	if fn == fnNone {
		return EffectNone
	}
	// Skip the qualification (schema., db.schema.) and look at what
	// precedes the name: DROP FUNCTION f(...), ALTER FUNCTION f(...),
	// "AS f(...)" column definition lists and the like are not calls.
	j := k + 1
	for a.op(r.back(j), ".") && isName(r.back(j+1)) {
		j += 2
	}
	prev := r.back(j)
	for _, w := range [...]string{"function", "procedure", "routine", "aggregate", "as"} {
		if a.kw(prev, w) {
			return EffectNone
		}
	}
	switch fn {
	case fnAdvisory:
		return EffectAdvisoryLock
	case fnSetSeed:
		// setseed(x) seeds the session's random(), as SET seed does.
		if st.Param == "" {
			st.Param = "seed"
		}
		return EffectSet
	}
	return a.setConfig(lx, st)
}

// escChar returns the UESCAPE character given by the string token t.
func (a *analyzer) escChar(t Token) byte {
	var buf [8]byte
	v := AppendStringValue(buf[:0], a.src, t, '\\')
	if len(v) == 1 {
		return v[0]
	}
	return '\\'
}

// maxArgTokens bounds how many tokens of a set_config argument list are
// looked at; maxArgScans bounds them over a whole text. Past either bound
// an argument is "not a literal", which classifies the call on the safe
// side (session-level: the session is pinned).
const (
	maxArgTokens = 256
	maxArgScans  = 1 << 14
)

// arg describes one argument of a call.
type arg struct {
	present bool
	lit     Token // the literal, if the argument is one (Kind EOF if not)
	esc     byte  // UESCAPE character of a U&'...' literal
}

// setConfig classifies set_config(name, value, is_local); lx is just past
// the "(". A literal name of role or session_authorization makes it a role
// change; otherwise it is session-level unless is_local is literally true.
func (a *analyzer) setConfig(lx Lexer, st *Statement) Effect {
	var args [3]arg
	pos := 0  // positional index of the current argument
	slot := 0 // where the current argument goes (named notation may change it)
	cur := arg{esc: '\\'}
	n := 0 // tokens of the current argument at its top level
	inCast, uescape, bad := false, false, false
	paren := 0
	budget := maxArgTokens
	finish := func() {
		if slot < len(args) {
			args[slot] = arg{present: true, esc: cur.esc}
			if !bad {
				args[slot].lit = cur.lit
			}
		}
		pos++
		slot, n, cur = pos, 0, arg{esc: '\\'}
		inCast, uescape, bad = false, false, false
	}
loop:
	for {
		t := lx.Next()
		if t.Kind == EOF {
			if n > 0 || pos > 0 {
				finish()
			}
			break
		}
		a.argScans++
		if budget--; budget < 0 || a.argScans > maxArgScans {
			// Too long to look at (and nested calls would make the
			// analysis quadratic): what is left is not a literal.
			bad = true
			finish()
			break
		}
		if paren > 0 {
			switch {
			case a.op(t, "(") || a.op(t, "["):
				paren++
			case a.op(t, ")") || a.op(t, "]"):
				paren--
			}
			continue
		}
		switch {
		case a.op(t, "(") || a.op(t, "["):
			paren++
			if !inCast {
				bad = true
			}
			continue
		case a.op(t, ")") || a.op(t, "]"):
			if n > 0 || pos > 0 {
				finish()
			}
			break loop
		case a.op(t, ","):
			finish()
			continue
		}
		if n == 0 && t.Kind == Ident {
			// Named notation: set_config(setting_name => ..., ...).
			peek := lx
			if nt := peek.Next(); a.op(nt, "=>") || a.op(nt, ":=") {
				switch {
				case a.kw(t, "setting_name"):
					slot = 0
				case a.kw(t, "new_value"):
					slot = 1
				case a.kw(t, "is_local"):
					slot = 2
				default:
					slot = len(args)
				}
				lx = peek
				continue
			}
		}
		n++
		switch {
		case n == 1:
			if t.Kind == String || t.Kind == Ident {
				cur.lit = t
			} else {
				bad = true
			}
		case a.op(t, "::"):
			inCast = true
		case inCast:
			if !isName(t) && !a.op(t, ".") && t.Kind != Number {
				bad = true
			}
		case n == 2 && a.kw(t, "uescape") && cur.lit.Kind == String && cur.lit.Flags&UnicodeEscapes != 0:
			uescape = true
		case n == 3 && uescape && t.Kind == String:
			cur.esc = a.escChar(t)
		default:
			bad = true
		}
	}
	if name := args[0]; name.lit.Kind == String {
		var buf [64]byte
		v := AppendStringValue(buf[:0], a.src, name.lit, name.esc)
		for i := range v {
			v[i] = lowerASCII(v[i])
		}
		if a.detail && st.Param == "" {
			st.Param = string(v)
		}
		if string(v) == "role" || string(v) == "session_authorization" {
			return EffectSetRole
		}
	}
	var e Effect
	if name := args[0]; name.lit.Kind == String {
		var buf [64]byte
		v := AppendStringValue(buf[:0], a.src, name.lit, name.esc)
		if foldEq(string(v), "search_path") {
			// pg_temp in search_path makes CREATE TABLE temporary (see
			// classify); a value that is not a literal may name it.
			val := args[1]
			var vb [128]byte
			if val.lit.Kind != String || containsFold(string(AppendStringValue(vb[:0], a.src, val.lit, val.esc)), "pg_temp") {
				e |= EffectTempTable
			}
		}
	}
	if local := args[2]; local.present && a.boolLiteral(local.lit, false) == boolTrue {
		return e
	}
	return e | EffectSet
}

const (
	boolUnknown = iota
	boolTrue
	boolFalse
)

// boolLiteral interprets t as a boolean constant: the keywords TRUE and
// FALSE, or a string that boolean input accepts ('t', 'yes', 'on', '1',
// unique prefixes, surrounding spaces). With option, as in the options
// of EXPLAIN, any keyword or number is read the same way.
func (a *analyzer) boolLiteral(t Token, option bool) int {
	var v []byte
	var buf [16]byte
	switch t.Kind {
	case Ident, Number:
		if !option && t.Kind == Number {
			return boolUnknown
		}
		if !option && !a.kw(t, "true") && !a.kw(t, "false") {
			return boolUnknown
		}
		v = append(buf[:0], a.src[t.Start:t.End]...)
	case String:
		v = AppendStringValue(buf[:0], a.src, t, '\\')
	default:
		return boolUnknown
	}
	s := strings.TrimSpace(string(v))
	if len(s) == 0 || len(s) > 5 {
		return boolUnknown
	}
	var low [5]byte
	for i := 0; i < len(s); i++ {
		low[i] = lowerASCII(s[i])
	}
	l := string(low[:len(s)])
	switch {
	case strings.HasPrefix("true", l), strings.HasPrefix("yes", l), l == "1":
		return boolTrue
	case strings.HasPrefix("false", l), strings.HasPrefix("no", l), l == "0":
		return boolFalse
	case l == "on":
		return boolTrue
	case l == "of" || l == "off":
		return boolFalse
	}
	return boolUnknown
}

// updatesPgSettings reports whether the UPDATE in h targets the view
// pg_settings ([ONLY] [pg_catalog.]pg_settings, quoted or not).
func (a *analyzer) updatesPgSettings(h *head) bool {
	i := 1
	if a.kw(h.t[i], "only") {
		i++
	}
	if a.nameIs(h.t[i], '\\', "pg_catalog") && a.op(h.t[i+1], ".") {
		i += 2
	}
	return a.nameIs(h.t[i], '\\', "pg_settings")
}

// singleLiteral reports whether the tokens after EXECUTE (lx is just past
// it) are one string literal, ending the statement or followed by INTO or
// USING (whose expressions give values, never SQL text).
func (a *analyzer) singleLiteral(lx Lexer) bool {
	if t := lx.Next(); t.Kind != String {
		return false
	}
	t := lx.Next()
	return t.Kind == EOF || t.Kind == Semicolon || a.kw(t, "into") || a.kw(t, "using")
}

// setsSearchPath reports whether the SET statement in h sets search_path
// (SET [LOCAL|SESSION] search_path | SCHEMA ...).
func (a *analyzer) setsSearchPath(h *head) bool {
	i := 1
	if a.kw(h.t[i], "local") || a.kw(h.t[i], "session") {
		i++
	}
	t := h.t[i]
	return a.kw(t, "schema") || a.nameIs(t, '\\', "search_path") || quotedFoldIs(a, t, "search_path")
}

// containsFold reports whether s contains lower (lower-case ASCII),
// ignoring ASCII case.
func containsFold(s, lower string) bool {
	for i := 0; i+len(lower) <= len(s); i++ {
		if foldEq(s[i:i+len(lower)], lower) {
			return true
		}
	}
	return false
}
