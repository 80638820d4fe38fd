package proxy

import (
	"bytes"
	"encoding/binary"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"

	"go.uber.org/zap"

	"github.com/pgbridge/pgbridge/internal/stats"
	"github.com/pgbridge/pgbridge/proxy/internal/sqllex"
)

// Transaction pooling moves a client between backends, but protocol-level
// prepared statements live on one backend. The router therefore keeps each
// client's statements itself (name -> definition) and each backend's
// (definition -> backend name), renames statements on the way through, and
// prepares a statement on a backend that lacks it just before it is used.
//
// Responses to messages the router adds or rewrites are matched by kind:
// ParseComplete ('1') answers only Parse and CloseComplete ('3') only
// Close, so the session keeps one ordered queue of the Parses and Closes in
// flight and knows for each whether the client is waiting for its answer.
// After an ErrorResponse the backend skips everything up to the next Sync,
// so the queue drops the entries of that segment.

const (
	// maxClientStatements bounds one client's named statements.
	maxClientStatements = 10000
	// maxBackendStatements bounds the statements the router keeps prepared
	// on one backend; the least recently used is closed beyond it.
	maxBackendStatements = 250
	noSuchStatement      = "pgbridge_none"
)

var stmtSeq atomic.Uint64

// clientStmt is a named statement as the client defined it: the body of its
// Parse after the name (query text, NUL, parameter types), which is also the
// key under which backends cache it.
type clientStmt struct {
	def string
}

// backendState is the proxy's knowledge of one backend connection, stored
// in pool.Conn.State.
type backendState struct {
	stmts     map[string]*backendStmt // def -> statement
	tick      uint64
	paramsKey string // canonical form of the client parameters set on it
	params    []string
	unnamed   uint64 // id of the session whose unnamed statement the backend holds (0: none; unnamedUnknown)
	discard   bool   // answered 25006 (read-only): never reuse
}

type backendStmt struct {
	name string
	used uint64
}

func stateOf(v any) *backendState {
	if bs, ok := v.(*backendState); ok {
		return bs
	}
	return &backendState{stmts: make(map[string]*backendStmt)}
}

// unnamedUnknown is a backendState.unnamed that matches no session: the
// backend may hold any client's unnamed statement, or none.
const unnamedUnknown = ^uint64(0)

// paramsUnknown is a backendState.paramsKey that matches no client: the
// parameters in params may or may not still be set.
const paramsUnknown = "\x00unknown"

// forget drops everything the backend's session had (after DISCARD ALL).
func (bs *backendState) forget() {
	clear(bs.stmts)
	bs.paramsKey, bs.params = "", nil
	bs.unnamed = 0
}

// expectation is one Parse or Close in flight.
type expectation struct {
	kind    byte // '1' ParseComplete or '3' CloseComplete
	swallow bool // added by the router: the client does not expect it
	seg     uint64
	def     string // for a Parse: the definition to forget if it never ran
	name    string // for a client's named Parse: its name, likewise
	unnamed bool   // a Parse or Close of the unnamed statement
}

func appendMsg(dst []byte, typ byte, parts ...[]byte) []byte {
	n := 4
	for _, p := range parts {
		n += len(p)
	}
	dst = append(dst, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(n))
	for _, p := range parts {
		dst = append(dst, p...)
	}
	return dst
}

func cstr(s string) []byte { return append([]byte(s), 0) }

// appendNamedMsg appends a message of type typ whose body is head, the C
// string name, then tail: a Parse, Bind, Describe or Close that names a
// statement, appended where it goes (the outgoing batch) without
// intermediate buffers (name is not copied to make its C string).
func appendNamedMsg(dst []byte, typ byte, head []byte, name string, tail []byte) []byte {
	return appendMsg(dst, typ, head, unsafe.Slice(unsafe.StringData(name), len(name)), nul, tail)
}

var nul = []byte{0}

// splitCString returns the C string at the start of b (without its NUL,
// sharing b's memory) and the rest.
func splitCString(b []byte) ([]byte, []byte, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, false
	}
	return b[:i], b[i+1:], true
}

// paramsKey renders client parameters canonically.
func paramsKey(p map[string]string) (string, []string) {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(p[k])
		b.WriteByte(0)
	}
	return b.String(), keys
}

// paramsSQL builds the statement that turns a backend's session parameters
// from what a previous client set (prev) into what this client wants.
func paramsSQL(prev []string, want map[string]string, wantKeys []string) string {
	var b strings.Builder
	for _, k := range prev {
		if _, ok := want[k]; !ok {
			b.WriteString("RESET ")
			b.WriteString(quoteIdent(k))
			b.WriteString("; ")
		}
	}
	if len(wantKeys) > 0 {
		b.WriteString("SELECT ")
		for i, k := range wantKeys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("pg_catalog.set_config(")
			b.WriteString(quoteLiteral(k))
			b.WriteString(", ")
			b.WriteString(quoteLiteral(want[k]))
			b.WriteString(", false)")
		}
	}
	return b.String()
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteLiteral(s string) string {
	if strings.ContainsRune(s, '\\') {
		return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func newBackendName() string { return "pgbridge_" + strconv.FormatUint(stmtSeq.Add(1), 36) }

// refusalSQL is a statement that makes the backend itself raise err, so the
// error arrives in order and aborts a transaction block as PostgreSQL would.
func refusalSQL(code, msg string) string {
	return "DO $pgbridge$BEGIN RAISE EXCEPTION USING ERRCODE = " + quoteLiteral(code) + ", MESSAGE = " + quoteLiteral(msg) + "; END$pgbridge$"
}

// rewriteLocked applies statement renaming, pinning and refusals to a batch
// of whole client messages about to go to the attached backend, and
// records the Parses and Closes in flight. It returns the bytes to send
// (batch itself when nothing changed). ss.mu is held.
func (ss *session) rewriteLocked(batch []byte, bs *backendState) []byte {
	track := ss.tracking
	var out []byte
	last := 0
	splice := func(at, end int, repl ...[]byte) {
		if out == nil {
			out = ss.obuf[:0]
		}
		out = append(out, batch[last:at]...)
		for _, r := range repl {
			out = append(out, r...)
		}
		last = end
	}
	for pos := 0; pos+5 <= len(batch); {
		typ := batch[pos]
		end := pos + 1 + int(binary.BigEndian.Uint32(batch[pos+1:pos+5]))
		body := batch[pos+5 : end]
		switch typ {
		case 'Q':
			bs.unnamed = 0 // a simple Query destroys the unnamed statement
			if q, pre, ok := ss.inspectQuery(bs, body[:max(len(body)-1, 0)]); ok {
				splice(pos, end, pre, appendMsg(nil, 'Q', cstr(q)))
			}
			ss.segSent++
		case 'S':
			ss.segSent++
		case 'F':
			// A function called by the fastpath interface: the router
			// cannot tell what it does (set_config, an advisory lock, a
			// large object), so the session keeps its backend.
			ss.pinLocked(stats.PinFunctionCall)
			ss.segSent++
		case 'P':
			nameC, rest, ok := splitCString(body)
			if !ok {
				break
			}
			query, _, _ := splitCString(rest)
			q, qpre, changed := ss.inspectQuery(bs, query)
			if changed {
				// A refused or rewritten statement: prepare the new text.
				rest = append(cstr(q), 0, 0)
			}
			if !track || len(nameC) == 0 {
				if track { // (session mode keeps no expectations)
					ss.expect = append(ss.expect, expectation{kind: '1', seg: ss.segSent, unnamed: true})
					// The unnamed statement can outlive a transaction too
					// (Parse and Describe, Sync, then Bind): remember it
					// (a driver repeats the same one: copy only a new one).
					if ss.unnamedDef != string(rest) {
						ss.unnamedDef = string(rest)
					}
					bs.unnamed = ss.id
				}
				if changed {
					splice(pos, end, qpre)
					out = appendNamedMsg(out, 'P', nil, string(nameC), rest)
				}
				break
			}
			name := string(nameC)
			if len(ss.stmts) >= maxClientStatements {
				if _, exists := ss.stmts[name]; !exists {
					q := refusalSQL("54000", "pgbridge: too many prepared statements in this session (limit "+strconv.Itoa(maxClientStatements)+")")
					splice(pos, end, appendMsg(nil, 'P', cstr(name), cstr(q), []byte{0, 0}))
					ss.expect = append(ss.expect, expectation{kind: '1', seg: ss.segSent})
					break
				}
			}
			def := string(rest)
			ss.stmts[name] = &clientStmt{def: def}
			var pre []byte
			bsName := ""
			if st, ok := bs.stmts[def]; ok {
				// Already prepared here: close and prepare again so the
				// client gets the ParseComplete it waits for.
				bsName = st.name
				pre = appendNamedMsg(nil, 'C', []byte{'S'}, bsName, nil)
				ss.expect = append(ss.expect, expectation{kind: '3', swallow: true, seg: ss.segSent})
				bs.tick++
				st.used = bs.tick
			} else {
				pre = ss.evictLocked(bs)
				bsName = newBackendName()
				bs.tick++
				bs.stmts[def] = &backendStmt{name: bsName, used: bs.tick}
			}
			ss.expect = append(ss.expect, expectation{kind: '1', seg: ss.segSent, def: def, name: name})
			splice(pos, end, qpre, pre)
			out = appendNamedMsg(out, 'P', nil, bsName, rest)
		case 'B':
			if !track {
				break
			}
			portal, rest, ok := splitCString(body)
			if !ok {
				break
			}
			stmt, rest2, ok := splitCString(rest)
			if !ok {
				break
			}
			if pre, bsName, rename := ss.useStmtLocked(bs, unsafeString(stmt)); rename {
				splice(pos, end, pre)
				out = appendNamedMsg(out, 'B', body[:len(portal)+1], bsName, rest2)
			} else if pre != nil {
				splice(pos, pos, pre)
			}
		case 'D':
			if !track || len(body) < 2 || body[0] != 'S' {
				break
			}
			stmt, _, ok := splitCString(body[1:])
			if !ok {
				break
			}
			if pre, bsName, rename := ss.useStmtLocked(bs, unsafeString(stmt)); rename {
				splice(pos, end, pre)
				out = appendNamedMsg(out, 'D', []byte{'S'}, bsName, nil)
			} else if pre != nil {
				splice(pos, pos, pre)
			}
		case 'C':
			if !track {
				break
			}
			ss.expect = append(ss.expect, expectation{kind: '3', seg: ss.segSent})
			if len(body) < 2 || body[0] != 'S' {
				break
			}
			stmtC, _, ok := splitCString(body[1:])
			if !ok || len(stmtC) == 0 {
				break
			}
			if _, known := ss.stmts[string(stmtC)]; known {
				// Backend statements are shared by every client of the
				// backend: forget the client's name only, and let the
				// backend answer a Close of a name that does not exist.
				delete(ss.stmts, string(stmtC))
				splice(pos, end)
				out = appendNamedMsg(out, 'C', []byte{'S'}, noSuchStatement, nil)
			}
		}
		pos = end
	}
	if out == nil {
		return batch
	}
	out = append(out, batch[last:]...)
	ss.obuf = out[:0]
	return out
}

// ensureLocked makes sure the client's statement exists on the backend,
// returning the Parse to send first if it does not, and its backend name.
// ok is false for a name the client never prepared: the backend reports it.
func (ss *session) ensureLocked(bs *backendState, stmt string) (pre []byte, bsName string, ok bool) {
	cs, known := ss.stmts[stmt]
	if !known {
		return nil, "", false
	}
	bs.tick++
	if st, ok := bs.stmts[cs.def]; ok {
		st.used = bs.tick
		return nil, st.name, true
	}
	pre = ss.evictLocked(bs)
	bsName = newBackendName()
	bs.stmts[cs.def] = &backendStmt{name: bsName, used: bs.tick}
	pre = appendNamedMsg(pre, 'P', nil, bsName, []byte(cs.def))
	ss.expect = append(ss.expect, expectation{kind: '1', swallow: true, seg: ss.segSent, def: cs.def})
	return pre, bsName, true
}

// useStmtLocked prepares what a Bind or Describe of the client's statement
// needs on this backend: the Parse to send first, if any, and the backend's
// name for it. rename is false when the message goes out unchanged (the
// unnamed statement, or a name the client never prepared: the backend
// reports that). stmt may share the client's read buffer: neither this nor
// ensureLocked keeps it.
func (ss *session) useStmtLocked(bs *backendState, stmt string) (pre []byte, bsName string, rename bool) {
	if stmt == "" {
		return ss.ensureUnnamedLocked(bs), "", false
	}
	return ss.ensureLocked(bs, stmt)
}

// ensureUnnamedLocked re-creates the client's unnamed statement on a
// backend whose unnamed statement is not the client's. A client that never
// made one must not use another client's: that is closed instead, so the
// backend reports it missing, as PostgreSQL would.
func (ss *session) ensureUnnamedLocked(bs *backendState) []byte {
	if bs.unnamed == ss.id {
		return nil
	}
	if ss.unnamedDef == "" {
		if bs.unnamed == 0 {
			return nil
		}
		bs.unnamed = 0
		ss.expect = append(ss.expect, expectation{kind: '3', swallow: true, seg: ss.segSent, unnamed: true})
		return appendMsg(nil, 'C', []byte{'S', 0})
	}
	bs.unnamed = ss.id
	ss.expect = append(ss.expect, expectation{kind: '1', swallow: true, seg: ss.segSent, unnamed: true})
	return appendMsg(nil, 'P', []byte{0}, []byte(ss.unnamedDef))
}

// evictLocked closes the least recently used statement of a full backend.
func (ss *session) evictLocked(bs *backendState) []byte {
	if len(bs.stmts) < maxBackendStatements {
		return nil
	}
	var oldDef string
	var old *backendStmt
	for d, st := range bs.stmts {
		if old == nil || st.used < old.used {
			oldDef, old = d, st
		}
	}
	delete(bs.stmts, oldDef)
	ss.expect = append(ss.expect, expectation{kind: '3', swallow: true, seg: ss.segSent})
	return appendNamedMsg(nil, 'C', []byte{'S'}, old.name, nil)
}

// inspectQuery classifies a statement text: it pins the session for
// statements whose effect outlives the transaction, and returns a
// replacement text (with messages to send before it) for statements the
// router refuses or rewrites.
func (ss *session) inspectQuery(bs *backendState, q []byte) (string, []byte, bool) {
	eff := sqllex.Effects(unsafeString(q)) // Effects keeps nothing of q
	if eff == sqllex.EffectNone {
		return "", nil, false
	}
	if eff&sqllex.EffectSetRole != 0 {
		return refusalSQL("42501", "pgbridge: SET ROLE and SET SESSION AUTHORIZATION are not allowed: a tenant's sessions always run as its own role"), nil, true
	}
	if eff.Pins() {
		ss.pinLocked(pinReason(eff))
	}
	if eff&sqllex.EffectDiscardAll != 0 {
		// DISCARD ALL drops every prepared statement and parameter of the
		// backend session, and the client's statements with them. It can
		// still fail (inside a transaction block): the parameters set
		// before are then reset again by the next client of the backend.
		params := bs.params
		bs.forget()
		bs.paramsKey, bs.params = paramsUnknown, params
		clear(ss.stmts)
	}
	if eff&sqllex.EffectDeallocate == 0 || !ss.tracking {
		return "", nil, false
	}
	stmts := sqllex.Analyze(string(q))
	if len(stmts) != 1 || stmts[0].Effect&sqllex.EffectDeallocate == 0 {
		// DEALLOCATE among other statements: the backend sees the
		// client's names as they are.
		return "", nil, false
	}
	name := stmts[0].Name
	if name == "" { // DEALLOCATE ALL: named statements only, not parameters
		clear(bs.stmts)
		clear(ss.stmts)
		return "", nil, false
	}
	if _, ok := ss.stmts[name]; !ok {
		return "", nil, false // an SQL-level PREPARE of a pinned session
	}
	// The client's protocol-level statement: deallocate its backend copy,
	// so that the command succeeds with the tag the client expects.
	def := ss.stmts[name].def
	delete(ss.stmts, name)
	if st, ok := bs.stmts[def]; ok {
		delete(bs.stmts, def)
		return "DEALLOCATE " + quoteIdent(st.name), nil, true
	}
	// This backend lacks it: prepare a stand-in first under a fresh name.
	// Its text is empty, the one Parse PostgreSQL accepts even in a failed
	// transaction, which the last ReadyForQuery does not tell when the
	// client pipelined this behind other requests. Any Parse that can fail
	// (the client's text, after a dropped table, say) would make the
	// backend skip this Query, waiting for a Sync that never comes; in a
	// failed transaction the DEALLOCATE itself then fails (25P02), as it
	// would on PostgreSQL (the empty stand-in stays, under a name no one
	// uses). Known failed, it is left out.
	bsName := newBackendName()
	if ss.txStatus == 'E' {
		return "DEALLOCATE " + quoteIdent(bsName), nil, true
	}
	ss.expect = append(ss.expect, expectation{kind: '1', swallow: true, seg: ss.segSent})
	return "DEALLOCATE " + quoteIdent(bsName), appendNamedMsg(nil, 'P', nil, bsName, []byte("\x00\x00\x00")), true
}

// pinLocked pins a transaction-mode session to its backend for reason,
// unless it is pinned already.
func (ss *session) pinLocked(reason string) {
	if !ss.tracking || ss.pinned != "" {
		return
	}
	ss.pinned = reason
	ss.ts.stats.Pins.Inc(reason)
	ss.log.Debug("session pinned to its backend", zap.String("reason", reason))
}

func pinReason(e sqllex.Effect) string {
	switch {
	case e&sqllex.EffectSet != 0:
		return stats.PinSet
	case e&sqllex.EffectPrepare != 0:
		return stats.PinPrepare
	case e&sqllex.EffectListen != 0:
		return stats.PinListen
	case e&sqllex.EffectTempTable != 0:
		return stats.PinTempTable
	case e&sqllex.EffectAdvisoryLock != 0:
		return stats.PinAdvisoryLock
	case e&sqllex.EffectHoldCursor != 0:
		return stats.PinHoldCursor
	default:
		return stats.PinLoad
	}
}

// expectLocked accounts for a ParseComplete or CloseComplete from the
// backend and reports whether the router added the message it answers.
func (ss *session) expectLocked(kind byte) (swallow bool) {
	for i, e := range ss.expect {
		if e.kind == kind {
			ss.expect = append(ss.expect[:i], ss.expect[i+1:]...)
			return e.swallow
		}
	}
	return false
}

// skipSegmentLocked forgets the Parses and Closes that the backend skips
// after an error, up to the next Sync.
func (ss *session) skipSegmentLocked(bs *backendState) {
	keep := ss.expect[:0]
	for _, e := range ss.expect {
		if e.seg != ss.segRecv {
			keep = append(keep, e)
			continue
		}
		if e.unnamed {
			// A Parse or Close of the unnamed statement, skipped: the
			// backend still holds whichever it had before.
			bs.unnamed = unnamedUnknown
			continue
		}
		if e.kind != '1' || e.def == "" {
			continue
		}
		// A Parse the backend skipped: the statement does not exist.
		delete(bs.stmts, e.def)
		if cs, ok := ss.stmts[e.name]; ok && e.name != "" && cs.def == e.def {
			delete(ss.stmts, e.name)
		}
	}
	ss.expect = keep
}
