package proxy

import (
	"bytes"
	"encoding/binary"
	"maps"
	"slices"
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
// so the queue drops the entries of that segment: at the error, and again
// at the segment's ReadyForQuery for those the client sent after the error
// (a client that reads the error before its Sync). The books change when a
// Parse or Close is written, and a skipped one is undone (skipLocked); a
// Parse is unconfirmed until its ParseComplete.

const (
	// maxClientStatements bounds one client's named statements.
	maxClientStatements = 10000
	// maxBackendStatements bounds the statements the router keeps prepared
	// on one backend; the least recently used is closed beyond it.
	maxBackendStatements = 250
	noSuchStatement      = "pgbridge_none"
	noSuchPortal         = "pgbridge_none"
	// dupStatement is the empty statement a Parse of a name in use goes
	// out under, to be refused (42P05).
	dupStatement = "pgbridge_dup"
	// limitStatement is the router's statement that stands for a
	// client's past maxClientStatements: it raises 54000 when executed.
	// (Under the client's own name it would stay on the backend, for its
	// next clients to see.)
	limitStatement = "pgbridge_limit"
)

// limitRefusal prepares limitStatement afresh (its answers swallowed but
// the ParseComplete when client is set: the answer to the client's Parse).
func (ss *session) limitRefusal(dst []byte, client bool) []byte {
	q := refusalSQL("54000", "pgbridge: too many prepared statements in this session (limit "+strconv.Itoa(maxClientStatements)+")")
	dst = appendNamedMsg(dst, 'C', []byte{'S'}, limitStatement, nil)
	dst = appendNamedMsg(dst, 'P', nil, limitStatement, append(cstr(q), 0, 0))
	ss.expect = append(ss.expect, expectation{kind: '3', swallow: true, seg: ss.segSent},
		expectation{kind: '1', swallow: !client, seg: ss.segSent})
	return dst
}

var stmtSeq atomic.Uint64

// unnamedSeq numbers the unnamed statements clients define (a session's
// unnamedTok), so that a backend's record names which one it holds: the
// client's current one, or an older one of the same client.
var unnamedSeq atomic.Uint64

// clientStmt is a named statement as the client defined it: the body of its
// Parse after the name (query text, NUL, parameter types), which is also the
// key under which backends cache it.
type clientStmt struct {
	def string
	// parsed is 1 + the segment of the client's Parse that made it, until
	// its ParseComplete confirms it (then 0).
	parsed uint64
	// over is 1 + the segment of a later Parse of the same name, sent
	// while this one was unconfirmed under the same backend name (0:
	// none): it fails (42P05) if this one ran, and defines overDef if
	// this one was skipped.
	over    uint64
	overDef string
	overAct *stmtAction
	// act is what executing it does to the books (DISCARD ALL,
	// DEALLOCATE), nil for most statements.
	act *stmtAction
	// dead says its Parse never ran.
	dead bool
}

// backendState is the proxy's knowledge of one backend connection, stored
// in pool.Conn.State.
type backendState struct {
	stmts map[string]*backendStmt // def -> statement
	// reported are the ParameterStatus values the backend reported last
	// (from its login's, be.Params, on), written by whoever reads it.
	reported  map[string]string
	tick      uint64
	paramsKey string // canonical form of the client parameters set on it
	params    []string
	unnamed   uint64 // token of the client unnamed statement the backend holds (0: none; unnamedUnknown)
	discard   bool   // never reuse: answered 25006 (read-only), or may hold statements no book names
}

type backendStmt struct {
	def  string // its key in backendState.stmts
	name string
	// pkey are the client parameters it was prepared under that can
	// change what a Parse makes of its text (stmtParamsLocked).
	pkey string
	used uint64
	// parsed is 1 + the segment of the Parse that prepares it, until its
	// ParseComplete confirms it (then 0).
	parsed uint64
	dead   bool // its Parse never ran
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
	// def is, for a Parse, the definition to forget if it never ran (of the
	// client's unnamed statement too); for a client's Close of its named
	// statement, the definition to give the name back if it never ran.
	def    string
	name   string      // the client's statement name of a named Parse or Close
	closed *clientStmt // for a client's Close: its statement, given back if skipped
	// For a Parse of a named statement: the client's statement it defines
	// (if the client's) and the backend's. The books may no longer hold
	// them (a DISCARD ALL written after it), but a DISCARD ALL that fails
	// gives them back, unless they are dead (the Parse never ran).
	cs  *clientStmt
	bst *backendStmt
	// For a Close of a portal bound to an action: its name, and its place
	// among the Binds and Closes of such portals.
	portal       string
	closesPortal bool
	order        uint64
	unnamed      bool   // a Parse or Close of the unnamed statement
	tok          uint64 // for the client's Parse or Close of its unnamed statement: its token (of the one closed)
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

// routerPrefix starts the names of the statements the router prepares.
const routerPrefix = "pgbridge_"

// newBackendName names a statement the router prepares: the prefix and a
// decimal number, so that it is never one of the fixed names above
// (pgbridge_none, pgbridge_dup), which have letters.
func newBackendName() string { return backendName(stmtSeq.Add(1)) }

func backendName(n uint64) string { return routerPrefix + strconv.FormatUint(n, 10) }

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
	portal := ss.portalStart
	execs := ss.tailExecs // Executes written since the last sync point
	ss.segExecs = execs
	for pos := 0; pos+5 <= len(batch); {
		typ := batch[pos]
		end := pos + 1 + int(binary.BigEndian.Uint32(batch[pos+1:pos+5]))
		body := batch[pos+5 : end]
		if ss.fixPortal && portalStep(typ, body, &portal) {
			// The unnamed portal, not bound in this segment: a portal
			// that does not exist instead (see portalStep).
			splice(pos, end)
			if typ == 'E' {
				out = appendNamedMsg(out, 'E', nil, noSuchPortal, body[1:])
			} else {
				out = appendNamedMsg(out, 'D', []byte{'P'}, noSuchPortal, nil)
			}
			pos = end
			continue
		}
		switch typ {
		case 'Q':
			bs.unnamed = 0    // a simple Query destroys the unnamed statement
			ss.unnamedTok = 0 // (its text is kept: a driver repeats it)
			ss.unnamedOp = ss.segSent + 1
			ss.unnamedAct = nil
			ss.segExecs = execs
			if q, pre, ok, _ := ss.inspectQuery(bs, body[:max(len(body)-1, 0)], true); ok {
				splice(pos, end, pre, appendMsg(nil, 'Q', cstr(q)))
			}
			ss.segSent++
			execs = 0
		case 'S':
			ss.segSent++
			execs = 0
		case 'F':
			// A function called by the fastpath interface: the router
			// cannot tell what it does (set_config, an advisory lock, a
			// large object), so the session keeps its backend.
			ss.pinLocked(stats.PinFunctionCall)
			ss.segSent++
			execs = 0
		case 'P':
			nameC, rest, ok := splitCString(body)
			if !ok {
				break
			}
			query, types, _ := splitCString(rest)
			q, qpre, changed, act := ss.inspectQuery(bs, query, false)
			if act != nil {
				ss.acts = true
			}
			if changed {
				// A refused or rewritten statement: prepare the new text
				// (with the parameter types the client declared).
				rest = append(cstr(q), types...)
			}
			if !track || len(nameC) == 0 {
				if track { // (session mode keeps no expectations)
					// The unnamed statement can outlive a transaction too
					// (Parse and Describe, Sync, then Bind): remember it
					// (a driver repeats the same one: copy only a new one).
					if ss.unnamedDef != string(rest) {
						ss.unnamedDef, ss.unnamedTok = string(rest), unnamedSeq.Add(1)
					} else if ss.unnamedTok == 0 {
						ss.unnamedTok = unnamedSeq.Add(1)
					}
					ss.expect = append(ss.expect, expectation{kind: '1', seg: ss.segSent, unnamed: true, def: ss.unnamedDef, tok: ss.unnamedTok})
					bs.unnamed = ss.unnamedTok
					ss.unnamedAct = act
					ss.unnamedOp = ss.segSent + 1
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
					// Its Bind and Describe go to the refusal too
					// (ensureLocked).
					splice(pos, end)
					out = ss.limitRefusal(out, true)
					break
				}
			}
			if cs, exists := ss.stmts[name]; exists {
				// The name is taken: PostgreSQL refuses the Parse (42P05)
				// and the name keeps its statement. Make the backend
				// refuse it in its place in the pipeline: the statement
				// under its backend name, then this Parse under that name.
				if st, ok := bs.stmts[cs.def]; ok && cs.parsed != 0 && cs.parsed-1 != ss.segSent && st.parsed == cs.parsed && cs.over == 0 {
					// Its Parse is still in flight in an earlier request,
					// which an error may make the backend skip: this one
					// goes out under the same backend name without
					// preparing the first again, so the backend decides
					// as PostgreSQL would (skipLocked settles the books).
					cs.over, cs.overDef, cs.overAct = ss.segSent+1, string(rest), act
					ss.expect = append(ss.expect, expectation{kind: '1', seg: ss.segSent, def: cs.overDef, name: name, cs: cs, bst: st})
					splice(pos, end, qpre)
					out = appendNamedMsg(out, 'P', nil, st.name, rest)
					break
				}
				// Confirmed: an empty stand-in of the router's is prepared
				// afresh and this Parse goes out under its name, so the
				// backend refuses it whatever its books say, and no
				// statement a backend shares is ever redefined.
				pre := appendNamedMsg(nil, 'C', []byte{'S'}, dupStatement, nil)
				pre = appendNamedMsg(pre, 'P', nil, dupStatement, emptyStmt)
				ss.expect = append(ss.expect, expectation{kind: '3', swallow: true, seg: ss.segSent},
					expectation{kind: '1', swallow: true, seg: ss.segSent}, expectation{kind: '1', seg: ss.segSent})
				splice(pos, end, qpre, pre)
				out = appendNamedMsg(out, 'P', nil, dupStatement, rest)
				break
			}
			def := string(rest)
			cs := &clientStmt{def: def, parsed: ss.segSent + 1, act: act}
			ss.stmts[name] = cs
			var pre []byte
			if old, ok := bs.stmts[def]; ok {
				// Already prepared here (perhaps for another client):
				// close it and prepare it again, so the client gets the
				// ParseComplete it waits for, under a new name, so that
				// what follows this Parse finds the statement only if
				// this Parse ran (skipped after an error, it leaves the
				// old name in place, which the books then forget).
				pre = appendNamedMsg(nil, 'C', []byte{'S'}, old.name, nil)
				ss.expect = append(ss.expect, expectation{kind: '3', swallow: true, seg: ss.segSent})
			} else {
				pre = ss.evictLocked(bs)
			}
			bsName := newBackendName()
			bs.tick++
			st := &backendStmt{def: def, name: bsName, pkey: ss.stmtParamsLocked(), used: bs.tick, parsed: ss.segSent + 1}
			bs.stmts[def] = st
			ss.expect = append(ss.expect, expectation{kind: '1', seg: ss.segSent, def: def, name: name, cs: cs, bst: st})
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
			if ss.acts {
				ss.bindActLocked(unsafeString(portal), unsafeString(stmt))
			}
		case 'E':
			ss.segExecs = execs
			execs++
			if ps := ss.paramSet; ps != nil && ps.seg == ss.segSent {
				ps.more = true
			}
			if !track || len(ss.portalActs) == 0 {
				break
			}
			if portal, _, ok := splitCString(body); ok {
				if pa, ok := ss.portalActs[unsafeString(portal)]; ok {
					act, unsure := pa.act, pa.unsure
					switch {
					case pa.rebound == ss.segSent+1:
						// Bound again in this segment: had that Bind
						// failed, this Execute would be skipped.
						act, unsure = pa.next, pa.nextUnsure
					case pa.rebound != 0:
						unsure = true // that Bind may have failed
					}
					switch {
					case unsure:
						ss.unsureActLocked(bs)
						if pa.act.setsParam() || pa.next.setsParam() {
							ss.pinLocked(stats.PinSet) // a SET may run
						}
					case act != nil:
						splice(pos, pos, ss.actLocked(bs, act))
					}
				}
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
			e := expectation{kind: '3', seg: ss.segSent}
			if len(body) >= 2 && body[0] == 'S' && body[1] == 0 {
				// The client's unnamed statement: the backend closes
				// whichever it holds, and the client's is gone (given
				// back if the backend skips this Close).
				e.unnamed, e.def, e.tok = true, ss.unnamedDef, ss.unnamedTok
				bs.unnamed = 0
				ss.unnamedTok = 0 // (unnamedAct stays: a skipped Close gives the statement back)
				ss.unnamedOp = ss.segSent + 1
			} else if len(body) >= 2 && body[0] == 'P' && len(ss.portalActs) > 0 {
				// A portal's action ends with its CloseComplete.
				if portal, _, ok := splitCString(body[1:]); ok {
					if _, ok := ss.portalActs[unsafeString(portal)]; ok {
						ss.portalSeq++
						e.portal, e.closesPortal, e.order = string(portal), true, ss.portalSeq
					}
				}
			} else if len(body) >= 2 && body[0] == 'S' {
				if stmtC, _, ok := splitCString(body[1:]); ok && len(stmtC) > 0 {
					if cs, known := ss.stmts[string(stmtC)]; !known && bytes.HasPrefix(stmtC, []byte(routerPrefix)) {
						splice(pos, end) // one of the router's own names
						out = appendNamedMsg(out, 'C', []byte{'S'}, noSuchStatement, nil)
					} else if known {
						// Backend statements are shared by every client of
						// the backend: forget the client's name only (given
						// back if the backend skips this Close), and let the
						// backend answer a Close of a name that does not
						// exist.
						e.name, e.def, e.closed = string(stmtC), cs.def, cs
						delete(ss.stmts, e.name)
						splice(pos, end)
						out = appendNamedMsg(out, 'C', []byte{'S'}, noSuchStatement, nil)
					}
				}
			}
			ss.expect = append(ss.expect, e)
		}
		pos = end
	}
	ss.fixPortal = false
	if out == nil {
		return batch
	}
	out = append(out, batch[last:]...)
	ss.obuf = out[:0]
	return out
}

// portalStep follows the client's unnamed portal through one message: a
// Bind of it makes it usable up to the end of the Sync segment (a Sync or a
// Query; a FunctionCall leaves portals alone). It reports whether the message is an Execute or
// a Describe of the unnamed portal while none is: those go to a portal
// that does not exist (34000). A legitimate client never sends them (a
// simple Query drops the unnamed portal, a Sync ends it outside a
// transaction block, a failed Bind makes the backend skip the rest of the
// segment), but on PostgreSQL 15 an Execute of the unnamed portal left
// behind by a failed ROLLBACK TO SAVEPOINT in a transaction block, after
// another failed simple Query, reads freed memory and can crash the
// backend, and with it every tenant's sessions on the cluster.
func portalStep(typ byte, body []byte, bound *bool) bool {
	switch typ {
	case 'B':
		if len(body) > 0 && body[0] == 0 {
			*bound = true
		}
	case 'S', 'Q':
		*bound = false
	case 'E':
		return len(body) > 0 && body[0] == 0 && !*bound
	case 'D':
		return len(body) > 1 && body[0] == 'P' && body[1] == 0 && !*bound
	}
	return false
}

// ensureLocked makes sure the client's statement exists on the backend,
// returning the Parse to send first if it does not, and its backend name.
// ok is false for a name the client never prepared: the backend reports it.
func (ss *session) ensureLocked(bs *backendState, stmt string) (pre []byte, bsName string, ok bool) {
	cs, known := ss.stmts[stmt]
	if !known {
		if strings.HasPrefix(stmt, routerPrefix) {
			// One of the router's own names, which the backend holds
			// for other clients: not the client's to use.
			return nil, noSuchStatement, true
		}
		if len(ss.stmts) >= maxClientStatements && !ss.sqlPrepared {
			// Perhaps a statement refused past the limit: refused again
			// (not perhaps one of an SQL PREPARE of a pinned session).
			return ss.limitRefusal(nil, false), limitStatement, true
		}
		return nil, "", false
	}
	bs.tick++
	pkey := ss.stmtParamsLocked()
	if st, ok := bs.stmts[cs.def]; ok && st.pkey == pkey {
		st.used = bs.tick
		return nil, st.name, true
	} else if ok {
		// Prepared for a client with other parameters (search_path,
		// TimeZone, ...), which may have given the text another meaning
		// (another table, other constants): close it, prepare it again.
		pre = appendNamedMsg(nil, 'C', []byte{'S'}, st.name, nil)
		ss.expect = append(ss.expect, expectation{kind: '3', swallow: true, seg: ss.segSent})
	} else {
		pre = ss.evictLocked(bs)
	}
	bsName = newBackendName()
	st := &backendStmt{def: cs.def, name: bsName, pkey: pkey, used: bs.tick, parsed: ss.segSent + 1}
	bs.stmts[cs.def] = st
	pre = appendNamedMsg(pre, 'P', nil, bsName, []byte(cs.def))
	ss.expect = append(ss.expect, expectation{kind: '1', swallow: true, seg: ss.segSent, def: cs.def, bst: st})
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
	if op := ss.unnamedOp; ss.unsure || op != 0 && op-1 != ss.segSent && op-1 >= ss.segRecv {
		// What the backend holds follows a Parse, Close or Query of an
		// earlier segment not answered yet, which it skips after an error
		// before it, keeping the unnamed statement it had (another
		// client's, perhaps): set it again here. So too in a session
		// unsure of its count of answers (copysync.go).
		bs.unnamed = unnamedUnknown
	}
	if ss.unnamedTok != 0 && bs.unnamed == ss.unnamedTok {
		return nil
	}
	ss.unnamedOp = ss.segSent + 1
	if ss.unnamedTok == 0 {
		if bs.unnamed == 0 {
			return nil
		}
		bs.unnamed = 0
		ss.expect = append(ss.expect, expectation{kind: '3', swallow: true, seg: ss.segSent, unnamed: true})
		return appendMsg(nil, 'C', []byte{'S', 0})
	}
	bs.unnamed = ss.unnamedTok
	ss.expect = append(ss.expect, expectation{kind: '1', swallow: true, seg: ss.segSent, unnamed: true})
	return appendMsg(nil, 'P', []byte{0}, []byte(ss.unnamedDef))
}

// stmtNeutral are the followed parameters that do not change what a Parse
// makes of a text: a statement prepared under one value of them serves
// clients with another.
var stmtNeutral = map[string]bool{
	"application_name": true, "extra_float_digits": true, "client_min_messages": true, "bytea_output": true,
	"statement_timeout": true, "lock_timeout": true, "idle_in_transaction_session_timeout": true, "work_mem": true,
	"default_transaction_isolation": true, "default_transaction_read_only": true,
}

// stmtParamsLocked returns the client's parameters that can change what a
// Parse makes of a text (search_path its names, TimeZone or DateStyle the
// constants it folds): a backend's statement prepared for a client with
// others is not this client's.
func (ss *session) stmtParamsLocked() string {
	if ss.paramsKey == ss.stmtKeyOf {
		return ss.stmtKey
	}
	var b strings.Builder
	for _, kv := range strings.SplitAfter(ss.paramsKey, "\x00") {
		if k, _, _ := strings.Cut(kv, "="); kv != "" && !stmtNeutral[strings.ToLower(k)] {
			b.WriteString(kv)
		}
	}
	ss.stmtKeyOf, ss.stmtKey = ss.paramsKey, b.String()
	return ss.stmtKey
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

// A session-level SET pins a transaction-mode session: the setting stays
// on the backend. The most common ones need not: a Query or a prepared
// statement that is one SET (or RESET) of one of the followed parameters
// to one constant, run outside a transaction block with nothing else in
// flight and nothing before it in its segment (drivers send them after
// login: pgjdbc's extra_float_digits and application_name). The client's
// parameters follow it instead, as if it had asked for the value at login:
// the router sets it on each backend that serves the client and resets it
// before another client's request. The books change when the Query or
// Execute is written, and are put back unless its segment ends without an
// error and outside a transaction block; anything executed after it in its
// segment pins the session after all.

// paramSet is a followed SET in flight: what the client's parameters and
// the backend's were before it.
type paramSet struct {
	seg      uint64 // its segment
	more     bool   // an Execute followed it in its segment
	name     string
	bs       *backendState
	want     map[string]string
	key      string
	keys     []string
	bsParams []string
	// prev, prevKey, prevKeys: the client's parameters before the SET, which
	// a DISCARD ALL behind it does not change.
	prev     map[string]string
	prevKey  string
	prevKeys []string
}

// followed are the parameters whose SET is followed: those drivers and
// frameworks set after login, which set_config reads as SET does from one
// constant (not lists that SET quotes, such as search_path), may be set at
// any time (not transaction_isolation), do nothing but hold a value (not
// seed), and whose value does not depend on the one before (not DateStyle:
// SET DateStyle = 'SQL' keeps the order of days and months it had). Any
// other SET pins.
var followed = map[string]bool{
	"extra_float_digits": true, "application_name": true, "intervalstyle": true,
	"timezone": true, "client_min_messages": true, "bytea_output": true, "statement_timeout": true,
	"lock_timeout": true, "idle_in_transaction_session_timeout": true, "work_mem": true,
	"default_transaction_isolation": true, "default_transaction_read_only": true,
}

// followableLocked reports whether the session may follow a SET now:
// every earlier request is answered (those sent on this backend, or none
// was but the router's own), no transaction block is open, no other
// change to the books is in flight, and no Execute ran before it in its
// segment (a BEGIN there would make it a SET inside a block; segExecs).
func (ss *session) followableLocked() bool {
	return ss.tracking && ss.pinned == "" && (ss.segRecv == ss.segSent || ss.segSent == ss.attachSegs) &&
		ss.txStatus == 'I' && len(ss.undo) == 0 && ss.paramSet == nil && ss.segExecs == 0
}

// followableSet returns the SET of a Query text that is one SET or RESET
// of one parameter to one constant.
func followableSet(q string) (sqllex.Statement, bool) {
	var set sqllex.Statement
	n := 0
	for _, st := range sqllex.Analyze(q) {
		if st.Keyword == "" {
			continue
		}
		n++
		set = st
	}
	ok := n == 1 && (set.Keyword == "SET" || set.Keyword == "RESET") && set.Effect == sqllex.EffectSet &&
		set.SimpleValue && followed[set.Param] && !strings.ContainsRune(set.Value, 0)
	return set, ok
}

// queryAfterSetLocked accounts for a Query or FunctionCall written in the
// segment of a followed SET that an Execute ran, before its Sync
// (hold.go): it runs in the SET's implicit transaction, which a BEGIN
// there turns into a block, and the ReadyForQuery that settles the SET
// comes with it. Like an Execute after the SET, it pins the session.
func (ss *session) queryAfterSetLocked() {
	if ps := ss.paramSet; ps != nil && ps.seg == ss.segSent {
		ps.more = true
	}
}

// setParam is a followable SET: the parameter, and its value or default.
type setParam struct {
	name, value string
	def         bool
}

// followSetLocked makes the client's parameters, and bs's, what they are
// once set has run on bs.
func (ss *session) followSetLocked(bs *backendState, set *setParam) {
	ss.paramSet = &paramSet{seg: ss.segSent, name: set.name, bs: bs, want: ss.wantParams,
		key: ss.paramsKey, keys: ss.paramsKeys, bsParams: bs.params,
		prev: ss.wantParams, prevKey: ss.paramsKey, prevKeys: ss.paramsKeys}
	want := make(map[string]string, len(ss.wantParams)+1)
	for k, v := range ss.wantParams {
		if !strings.EqualFold(k, set.name) {
			want[k] = v
		}
	}
	login := false
	if !set.def {
		want[set.name] = set.value
	} else {
		// RESET: back to the session default, the login's value if it
		// gave one, else the server's (the backend's RESET).
		for k, v := range ss.startParams {
			if strings.EqualFold(k, set.name) {
				want[k], login = v, true
			}
		}
	}
	ss.wantParams = want
	ss.paramsKey, ss.paramsKeys = paramsKey(want)
	bs.paramsKey = ss.paramsKey
	if login {
		// The backend's RESET gives its own login's value: the client's
		// goes on before its next request there (statements pipelined
		// behind the RESET still see the backend's).
		bs.paramsKey = paramsUnknown
		ss.toldCheck = true
	}
	bs.params = withName(bs.params, set.name)
}

// settleParamSetLocked settles the followed SET whose segment bs answered:
// kept if it ran (ok), put back otherwise, the backend's parameters then
// unknown (the SET may have run and been rolled back, or not run). If an
// Execute followed it in its segment (a ROLLBACK would undo it, a COMMIT
// keep it), the session keeps its backend instead, as for any SET.
func (ss *session) settleParamSetLocked(bs *backendState, ok bool) {
	ps := ss.paramSet
	ss.paramSet = nil
	if ps.more {
		ss.pinLocked(stats.PinSet)
		if bs == ps.bs {
			bs.paramsKey, bs.params = paramsUnknown, withName(bs.params, ps.name)
		}
		return
	}
	if ok {
		ss.ts.setParamsKnown(ss.paramsKey, true)
		return
	}
	ss.wantParams, ss.paramsKey, ss.paramsKeys = ps.want, ps.key, ps.keys
	for i := range ss.undo {
		// A DISCARD ALL written after the SET recorded the SET's value
		// as the one to give back if it fails.
		if u := &ss.undo[i]; u.params && u.seg > ps.seg {
			u.cwant, u.ckey, u.ckeys = ps.prev, ps.prevKey, ps.prevKeys
		}
	}
	if bs == ps.bs {
		bs.paramsKey, bs.params = paramsUnknown, withName(ps.bsParams, ps.name)
	}
}

// withName returns names with name added if it is not there (names is not
// changed).
func withName(names []string, name string) []string {
	for _, n := range names {
		if strings.EqualFold(n, name) {
			return names
		}
	}
	return append(slices.Clip(names), name)
}

// inspectQuery classifies a statement text: it pins the session for
// statements whose effect outlives the transaction, and returns a
// replacement text (with messages to send before it) for statements the
// router refuses or rewrites.
//
// DISCARD ALL and DEALLOCATE change the statement books. In a simple Query
// (simple) they do so at once, and their CommandComplete follows in the
// same segment; the change is undone if none comes (they can fail:
// DISCARD ALL inside a transaction block, any of them in a failed
// transaction, or a statement before them). Prepared with Parse, they act
// when executed, which may be never, or many times, on other backends:
// inspectQuery then returns the action (stmtAction) that each Execute of
// the statement applies, and changes nothing yet.
func (ss *session) inspectQuery(bs *backendState, q []byte, simple bool) (string, []byte, bool, *stmtAction) {
	eff := sqllex.Effects(unsafeString(q)) // Effects keeps nothing of q
	if eff == sqllex.EffectNone {
		return "", nil, false, nil
	}
	if eff&sqllex.EffectSetRole != 0 {
		return refusalSQL("42501", "pgbridge: SET ROLE and SET SESSION AUTHORIZATION are not allowed: a tenant's sessions always run as its own role"), nil, true, nil
	}
	if eff&sqllex.EffectAlterRole != 0 {
		// A role may change its own password and session defaults: the
		// router's logins for the tenant would fail, or a client could
		// log in to the cluster past every guardrail.
		return refusalSQL("42501", "pgbridge: ALTER ROLE and ALTER USER are not allowed: the tenant's role belongs to the router; change it on the cluster directly"), nil, true, nil
	}
	if eff == sqllex.EffectSet && ss.tracking && ss.pinned == "" {
		if st, ok := followableSet(unsafeString(q)); ok {
			// (Param and Value may view the client's buffer.)
			set := &setParam{name: strings.Clone(st.Param), value: strings.Clone(st.Value), def: st.Default}
			switch {
			case !simple:
				// Prepared: it is followed (or pins) when executed.
				return "", nil, false, &stmtAction{tag: st.Keyword, set: set}
			case ss.followableLocked():
				ss.followSetLocked(bs, set)
				return "", nil, false, nil
			}
		}
	}
	if eff.Pins() {
		ss.pinLocked(pinReason(eff))
		if eff&sqllex.EffectLoad != 0 {
			ss.pinLocked(stats.PinLoad) // (a SET before it names the pin)
		}
		if eff&sqllex.EffectSet != 0 && !resetByDiscardAll(unsafeString(q)) {
			ss.pinKeep = true
		}
	}
	if eff&sqllex.EffectPrepare != 0 {
		ss.sqlPrepared = true
	}
	if eff&(sqllex.EffectDiscardAll|sqllex.EffectDeallocate) == 0 {
		return "", nil, false, nil
	}
	if !simple && ss.tracking {
		return ss.prepareActionLocked(string(q), eff)
	}
	if eff&sqllex.EffectDiscardAll != 0 {
		// DISCARD ALL drops every prepared statement and parameter of the
		// backend session, and the client's statements with them.
		if simple {
			u := stmtUndo{tag: "DISCARD ALL", whole: true, params: true}
			if ss.pinned != "" && !ss.pinKeep {
				u.unpin = ss.pinEvents + 1
			}
			ss.noteUndoLocked(bs, u)
		}
		ss.discardAllLocked(bs)
	}
	if eff&sqllex.EffectDeallocate == 0 || !ss.tracking {
		return "", nil, false, nil
	}
	src := string(q)
	var b strings.Builder
	var pre []byte
	last := 0
	for _, st := range sqllex.Analyze(src) {
		if st.Effect&sqllex.EffectDeallocate == 0 {
			continue
		}
		if st.Name == "" { // DEALLOCATE ALL: named statements only, not parameters
			// (Run by a DO block, say, it is confirmed by that
			// statement's own tag.)
			ss.noteUndoLocked(bs, stmtUndo{tag: deallocateTag(st), whole: true, clientOnly: st.Keyword != "DEALLOCATE"})
			clear(bs.stmts)
			clear(ss.stmts)
			continue
		}
		cs, ok := ss.stmts[st.Name]
		if !ok && strings.HasPrefix(st.Name, routerPrefix) && st.Keyword == "DEALLOCATE" {
			// One of the router's own names: not the client's to drop.
			last = spliceDeallocate(&b, src, last, st, noSuchStatement)
			continue
		}
		if !ok {
			continue // an SQL-level PREPARE of a pinned session
		}
		// The client's protocol-level statement: deallocate its backend
		// copy, so that the command succeeds with the tag the client
		// expects.
		u := stmtUndo{tag: deallocateTag(st), name: st.Name, cs: cs, clientOnly: st.Keyword != "DEALLOCATE"}
		delete(ss.stmts, st.Name)
		var bsName string
		if bst, ok := bs.stmts[cs.def]; ok {
			bsName, u.bst = bst.name, bst
			delete(bs.stmts, cs.def)
		} else {
			// This backend lacks it: prepare a stand-in first under a
			// fresh name. Its text is empty, the one Parse PostgreSQL
			// accepts even in a failed transaction, which the last
			// ReadyForQuery does not tell when the client pipelined this
			// behind other requests. Any Parse that can fail (the
			// client's text, after a dropped table, say) would make the
			// backend skip this Query, waiting for a Sync that never
			// comes; in a failed transaction the DEALLOCATE itself then
			// fails (25P02), as it would on PostgreSQL (the empty
			// stand-in stays, under a name no one uses). Known failed,
			// it is left out.
			bsName = newBackendName()
			if ss.txStatus != 'E' {
				ss.expect = append(ss.expect, expectation{kind: '1', swallow: true, seg: ss.segSent})
				pre = appendNamedMsg(pre, 'P', nil, bsName, emptyStmt)
			}
		}
		ss.noteUndoLocked(bs, u)
		last = spliceDeallocate(&b, src, last, st, bsName)
	}
	if last == 0 {
		return "", nil, false, nil
	}
	b.WriteString(src[last:])
	return b.String(), pre, true, nil
}

// spliceDeallocate writes src from last up to st, a DEALLOCATE, and st
// made to deallocate name instead; it returns where src goes on.
func spliceDeallocate(b *strings.Builder, src string, last int, st sqllex.Statement, name string) int {
	b.WriteString(src[last:st.Start])
	b.WriteString(" DEALLOCATE ")
	b.WriteString(quoteIdent(name))
	return st.End
}

// emptyStmt is the body of a Parse after the name for an empty statement
// without parameters.
var emptyStmt = []byte("\x00\x00\x00")

// deallocateTag is the CommandComplete tag that confirms st.
func deallocateTag(st sqllex.Statement) string {
	switch {
	case st.Keyword != "DEALLOCATE":
		return st.Keyword // DEALLOCATE run by a DO block, say
	case st.Name == "":
		return "DEALLOCATE ALL"
	}
	return "DEALLOCATE"
}

// discardAllLocked drops what DISCARD ALL drops from the books: every
// prepared statement and parameter of the backend session, and the
// client's statements with them. The unnamed statement stays (a simple
// Query, which drops it, says so itself).
func (ss *session) discardAllLocked(bs *backendState) {
	params, unnamed := bs.params, bs.unnamed
	bs.forget()
	bs.paramsKey, bs.params, bs.unnamed = paramsUnknown, params, unnamed
	clear(ss.stmts)
	// The client's parameters go back to its login's (RESET ALL), also
	// after a followed SET still in flight: this runs after it.
	ss.wantParams = ss.startParams
	ss.paramsKey, ss.paramsKeys = paramsKey(ss.startParams)
	ss.toldCheck = true
	if ps := ss.paramSet; ps != nil {
		ps.want, ps.key, ps.keys = ss.wantParams, ss.paramsKey, ss.paramsKeys
	}
}

// stmtAction is what executing a DISCARD ALL or DEALLOCATE prepared with
// Parse does to the books.
type stmtAction struct {
	tag     string // the CommandComplete that confirms it
	discard bool   // DISCARD ALL
	all     bool   // DEALLOCATE ALL
	// names are the client's statements it deallocates. The text names
	// stand-ins instead (actStandIn), prepared empty before each Execute:
	// the statement's backend name differs from backend to backend, and
	// its backend copy is shared.
	names []string
	// set is a followable SET (followSetLocked), nil for the others.
	set *setParam
}

// setsParam reports whether act is a followable SET.
func (act *stmtAction) setsParam() bool { return act != nil && act.set != nil }

// actStandIn names the stand-in of a prepared DEALLOCATE's i-th name (not
// a name newBackendName makes, which are numbers).
func actStandIn(i int) string { return routerPrefix + "dealloc_" + strconv.Itoa(i) }

// prepareActionLocked makes the action of a DISCARD ALL or DEALLOCATE the
// client prepares with Parse (one statement: a Parse takes no more), and
// the text to prepare instead when it names statements.
func (ss *session) prepareActionLocked(src string, eff sqllex.Effect) (string, []byte, bool, *stmtAction) {
	act := &stmtAction{discard: eff&sqllex.EffectDiscardAll != 0, tag: "DISCARD ALL"}
	var b strings.Builder
	last := 0
	for _, st := range sqllex.Analyze(src) {
		if st.Effect&sqllex.EffectDeallocate == 0 {
			continue
		}
		act.tag = deallocateTag(st)
		_, mine := ss.stmts[st.Name]
		var with string
		switch {
		case st.Name == "":
			act.all = true
			continue
		case mine || (!ss.sqlPrepared && !strings.HasPrefix(st.Name, routerPrefix)):
			// The client's statement now, or one it may prepare before
			// it executes this (or this statement itself, under the name
			// it deallocates): what exists then decides.
			with = actStandIn(len(act.names))
			act.names = append(act.names, st.Name)
		case strings.HasPrefix(st.Name, routerPrefix) && st.Keyword == "DEALLOCATE":
			with = noSuchStatement // one of the router's own names: not the client's to drop
		default:
			continue // perhaps an SQL-level PREPARE (of a pinned session)
		}
		last = spliceDeallocate(&b, src, last, st, with)
	}
	if last == 0 {
		return "", nil, false, act
	}
	b.WriteString(src[last:])
	return b.String(), nil, true, act
}

// portalAct is the action of a portal bound to a DISCARD ALL or DEALLOCATE
// the client prepared, or one the router is unsure of.
type portalAct struct {
	act    *stmtAction
	unsure bool   // it may run an action the router cannot name
	seg    uint64 // the segment of the Bind
	order  uint64 // its place among the Binds and Closes of such portals
	// rebound is 1 + the segment of a later Bind of the portal (0: none),
	// which fails if the portal exists; next and nextUnsure are what it
	// binds. An Execute in that segment runs what it bound (had the Bind
	// failed, the backend would skip the Execute); in a later one the
	// router is unsure until that segment ends without an error, which
	// proves the Bind ran.
	rebound    uint64
	next       *stmtAction
	nextUnsure bool
}

// stmtActionLocked returns the action of the client's statement stmt, and
// whether the router is unsure of it (a Parse of the name in flight behind
// another, either of which may define it).
func (ss *session) stmtActionLocked(stmt string) (*stmtAction, bool) {
	if stmt == "" {
		if ss.unnamedTok != 0 {
			return ss.unnamedAct, false
		}
		return nil, false
	}
	cs, ok := ss.stmts[stmt]
	if !ok {
		return nil, false
	}
	if cs.over != 0 && (cs.act != nil || cs.overAct != nil) {
		return nil, true
	}
	return cs.act, false
}

// bindActLocked follows a Bind of the client's statement stmt to portal.
// portal and stmt may share the client's read buffer.
//
// A record may outlive its portal, never the other way round, and the
// router must never miss an action that runs: a Bind of a named portal
// that exists fails (42P03) and leaves it as it was, so a Bind of a
// portal with a record is settled only once its segment ends (rebound); a
// Close takes the record away once its CloseComplete comes. An action
// applied to a portal that runs something else is undone, as no
// CommandComplete confirms it. The unnamed portal can only run in the
// Sync segment that binds it (see portalStep), and records go when the
// transaction ends (settlePortalActsLocked).
func (ss *session) bindActLocked(portal, stmt string) {
	act, unsure := ss.stmtActionLocked(stmt)
	pa, had := ss.portalActs[portal]
	if !had || portal == "" {
		if act == nil && !unsure {
			if had {
				delete(ss.portalActs, portal)
			}
			return
		}
		pa = portalAct{act: act, unsure: unsure, seg: ss.segSent}
	} else {
		pa.rebound, pa.next, pa.nextUnsure = ss.segSent+1, act, unsure
	}
	if ss.portalActs == nil {
		ss.portalActs = make(map[string]portalAct)
	}
	ss.portalSeq++
	pa.order = ss.portalSeq
	ss.portalActs[strings.Clone(portal)] = pa
}

// settlePortalActsLocked follows the portals with records through the
// ReadyForQuery of a segment (one, unless ignored Syncs made it several):
// outside a transaction block the portals of the segments answered are
// gone; a Bind of a portal with a record in a segment that ended without
// an error ran, and one in a segment with an error may have: the router is
// then unsure what the portal runs.
func (ss *session) settlePortalActsLocked(status byte, segs uint64, failed bool) {
	for name, pa := range ss.portalActs {
		switch {
		case status == 'I' && pa.seg < ss.segRecv && pa.rebound > ss.segRecv:
			// The portal is gone; a Bind of its name in a segment not
			// answered yet makes a new one.
			pa = portalAct{act: pa.next, unsure: pa.nextUnsure, seg: pa.rebound - 1, order: pa.order}
			if pa.act == nil && !pa.unsure {
				delete(ss.portalActs, name)
			} else {
				ss.portalActs[name] = pa
			}
		case status == 'I' && pa.seg < ss.segRecv:
			delete(ss.portalActs, name)
		case pa.rebound != 0 && pa.rebound <= ss.segRecv:
			if segs == 1 && !failed && pa.rebound == ss.segRecv {
				pa.act, pa.unsure = pa.next, pa.nextUnsure
			} else {
				pa.unsure = true
			}
			pa.rebound, pa.next, pa.nextUnsure = 0, nil, false
			if pa.act == nil && !pa.unsure {
				delete(ss.portalActs, name)
			} else {
				ss.portalActs[name] = pa
			}
		}
	}
}

// unsureActLocked accounts for an Execute that may drop any of the
// backend's statements: its books forget them all, for good, and the
// backend, which may keep statements no book names, is closed rather than
// reused once the session gives it back. The client's names stay (they
// are prepared again where used).
func (ss *session) unsureActLocked(bs *backendState) {
	clear(bs.stmts)
	bs.discard = true
}

// healLocked accounts for a 26000 (no such prepared statement) whose
// message (msg) names a statement the books hold as prepared on bs and
// confirmed: the backend lost it behind the router's back (a function or
// DO block that deallocates through EXECUTE, which no lexer sees), and may
// have lost any other. The request that met the gap has failed; the books
// forget the backend's statements (the next use of each prepares it
// again) and the backend is closed once given back. A router name the
// books do not hold as confirmed is the client's own doing (a Bind
// pipelined behind its failed Parse) and changes nothing. The name is
// looked for anywhere in msg, which the server may have translated.
func (ss *session) healLocked(bs *backendState, msg []byte) {
	for i := bytes.Index(msg, []byte(routerPrefix)); i >= 0; {
		j := i + len(routerPrefix)
		for j < len(msg) && msg[j] >= '0' && msg[j] <= '9' {
			j++
		}
		if name := unsafeString(msg[i:j]); j > i+len(routerPrefix) {
			for _, bst := range bs.stmts {
				if bst.name == name && bst.parsed == 0 && !bst.dead {
					ss.log.Warn("the backend lost a statement the router prepared on it (deallocated by a function or DO block?): preparing its statements again, closing it once released",
						zap.String("statement", name))
					ss.unsureActLocked(bs)
					return
				}
			}
		}
		k := bytes.Index(msg[j:], []byte(routerPrefix))
		if k < 0 {
			return
		}
		i = j + k
	}
}

// actLocked applies act, about to be executed, to the books, to be undone
// unless its CommandComplete comes, and returns the messages to send before
// the Execute (its stand-ins).
func (ss *session) actLocked(bs *backendState, act *stmtAction) (pre []byte) {
	if act.set != nil {
		if ss.followableLocked() {
			ss.followSetLocked(bs, act.set)
		} else {
			ss.pinLocked(stats.PinSet)
		}
		return nil
	}
	// Undone, it gives back the client's names only: the Execute may have
	// run something else (a portal the router took for another), and books
	// that lack a statement the backend has only cost a Parse.
	u := stmtUndo{tag: act.tag, whole: act.discard || act.all, params: act.discard, clientOnly: true}
	if !u.whole {
		for _, name := range act.names {
			if cs, ok := ss.stmts[name]; ok {
				if u.stmts == nil {
					u.stmts = make(map[string]*clientStmt, len(act.names))
				}
				u.stmts[name] = cs
			}
		}
	}
	ss.noteUndoLocked(bs, u)
	if act.discard {
		ss.discardAllLocked(bs)
	}
	if act.all {
		clear(bs.stmts)
		clear(ss.stmts)
	}
	for i, name := range act.names {
		// The stand-in exists when the client's statement does, so that
		// the DEALLOCATE fails (26000) when PostgreSQL's would.
		stand := actStandIn(i)
		ss.expect = append(ss.expect, expectation{kind: '3', swallow: true, seg: ss.segSent})
		pre = appendNamedMsg(pre, 'C', []byte{'S'}, stand, nil)
		if _, ok := ss.stmts[name]; ok {
			delete(ss.stmts, name)
			ss.expect = append(ss.expect, expectation{kind: '1', swallow: true, seg: ss.segSent})
			pre = appendNamedMsg(pre, 'P', nil, stand, emptyStmt)
		}
	}
	return pre
}

// stmtUndo is a change DISCARD ALL or DEALLOCATE made to the statement
// books when written, kept until its CommandComplete (tag) confirms it,
// and undone if none comes. One run by a DO block, or by an Execute of a
// prepared one, is undone on the client's side only, and the backend is
// closed rather than reused: the block may fail after the DEALLOCATE,
// which stays done (prepared statements are not transactional), the
// portal may have run something else, and books that lack a statement the
// backend has only cost a Parse, while the reverse fails every client of
// the backend.
type stmtUndo struct {
	seg        uint64
	tag        string
	whole      bool                    // every statement went: stmts and bstmts hold them
	params     bool                    // the backend's parameters too (DISCARD ALL)
	clientOnly bool                    // give back the client's statements only
	stmts      map[string]*clientStmt  // client statements before (whole), or those a prepared DEALLOCATE name drops
	bstmts     map[string]*backendStmt // backend statements before (whole)
	pkey       string                  // backend parameters before (params)
	pvals      []string
	cwant      map[string]string // and the client's (wantParams, paramsKey, paramsKeys)
	ckey       string
	ckeys      []string
	name       string       // DEALLOCATE name in a Query: the client's name
	cs         *clientStmt  // and statement
	bst        *backendStmt // and its backend statement, if the backend had it
	// unpin is 1 + pinEvents when a DISCARD ALL Query was written in a
	// session pinned for nothing but what it undoes (0: no such thing).
	unpin uint64
}

// noteUndoLocked records u, about to be applied to the books, with what
// it takes to undo it.
func (ss *session) noteUndoLocked(bs *backendState, u stmtUndo) {
	u.seg = ss.segSent
	if u.whole {
		u.stmts, u.bstmts = maps.Clone(ss.stmts), maps.Clone(bs.stmts)
	}
	if u.params {
		u.pkey, u.pvals = bs.paramsKey, bs.params
		u.cwant, u.ckey, u.ckeys = ss.wantParams, ss.paramsKey, ss.paramsKeys
	}
	ss.undo = append(ss.undo, u)
	ss.undoN.Store(int32(len(ss.undo)))
}

// confirmLocked accounts for a CommandComplete with tag while book changes
// wait for theirs. (One with the tag of the first change may come from
// another statement before it, confirming it early: if it then fails, the
// books lack what the backend has, which costs a Parse.)
func (ss *session) confirmLocked(tag string) {
	if len(ss.undo) > 0 && ss.undo[0].tag == tag {
		if u := ss.undo[0].unpin; u != 0 {
			ss.unpinAt = u
		}
		clear(ss.undo[:1])
		ss.undo = append(ss.undo[:0], ss.undo[1:]...)
		ss.undoN.Store(int32(len(ss.undo)))
	}
}

// undoLocked undoes the book changes of segments before upTo that got no
// CommandComplete, latest first; an entry something later redefined keeps
// its new value, and a statement whose Parse never ran is not given back.
// When a later DISCARD ALL or DEALLOCATE ALL is still in flight, what is
// undone goes into the books that one gives back if it fails: if it runs,
// it drops those statements on the backend too.
func (ss *session) undoLocked(bs *backendState, upTo uint64) {
	n := 0
	for n < len(ss.undo) && ss.undo[n].seg < upTo {
		n++
	}
	if n == 0 {
		return
	}
	stmts, bstmts := ss.stmts, bs.stmts
	pkey, pvals := &bs.paramsKey, &bs.params
	cwant, ckey, ckeys := &ss.wantParams, &ss.paramsKey, &ss.paramsKeys
	for i := len(ss.undo) - 1; i >= n; i-- { // the earliest pending wins
		w := &ss.undo[i]
		if w.whole {
			if w.stmts == nil {
				w.stmts = make(map[string]*clientStmt)
			}
			if w.bstmts == nil {
				w.bstmts = make(map[string]*backendStmt)
			}
			stmts, bstmts = w.stmts, w.bstmts
		}
		if w.params {
			pkey, pvals = &w.pkey, &w.pvals
			cwant, ckey, ckeys = &w.cwant, &w.ckey, &w.ckeys
		}
	}
	for i := n - 1; i >= 0; i-- {
		u := &ss.undo[i]
		for name, cs := range u.stmts {
			if _, ok := stmts[name]; !ok && !cs.dead {
				stmts[name] = cs
			}
		}
		if u.name != "" {
			if _, ok := stmts[u.name]; !ok && !u.cs.dead {
				stmts[u.name] = u.cs
			}
		}
		if u.params {
			*cwant, *ckey, *ckeys = u.cwant, u.ckey, u.ckeys
		}
		if u.clientOnly {
			if u.whole || u.bst != nil {
				// The backend may keep statements no book names now.
				bs.discard = true
			}
			continue
		}
		for _, st := range u.bstmts {
			if _, ok := bstmts[st.def]; !ok && !st.dead {
				bstmts[st.def] = st
			}
		}
		if u.bst != nil && !u.bst.dead {
			if _, ok := bstmts[u.bst.def]; !ok {
				bstmts[u.bst.def] = u.bst
			}
		}
		if u.params && *pkey == paramsUnknown {
			*pkey, *pvals = u.pkey, u.pvals
		}
	}
	clear(ss.undo[:n]) // (their maps and pointers)
	ss.undo = append(ss.undo[:0], ss.undo[n:]...)
	ss.undoN.Store(int32(len(ss.undo)))
}

// resetByDiscardAll reports whether DISCARD ALL undoes every SET of q: one
// of a parameter that RESET ALL resets, by name. Not seed (its generator
// stays seeded), nor a custom name (app.x stays defined, empty), nor
// set_config, whose names the lexer may not all know.
func resetByDiscardAll(q string) bool {
	for _, st := range sqllex.Analyze(q) {
		if st.Effect&sqllex.EffectSet == 0 {
			continue
		}
		if st.Keyword != "SET" && st.Keyword != "RESET" || st.Param == "" || st.Param == "seed" || strings.Contains(st.Param, ".") {
			return false
		}
	}
	return true
}

// unpinLocked gives a pinned session back to transaction pooling after a
// DISCARD ALL Query it sent succeeded, at a ReadyForQuery between
// transactions with nothing else in flight, if nothing pinned it since:
// DISCARD ALL undoes every session state that pins (SET, SQL PREPARE,
// LISTEN, temporary tables, session advisory locks, WITH HOLD cursors)
// but LOAD and what a FunctionCall did, and a Query drops the unnamed
// statement, whose text may pin. The backend goes back to the pool at
// this ReadyForQuery, its parameters unknown (discardAllLocked).
func (ss *session) unpinLocked() {
	at := ss.unpinAt
	ss.unpinAt = 0
	if at-1 != ss.pinEvents || ss.pinned == "" || ss.pinKeep || ss.unsure || ss.waiting {
		return
	}
	ss.pinned = ""
	ss.sqlPrepared = false
	ss.log.Debug("session unpinned by DISCARD ALL")
}

// pinLocked pins a transaction-mode session to its backend for reason,
// unless it is pinned already.
func (ss *session) pinLocked(reason string) {
	if !ss.tracking {
		return
	}
	ss.pinEvents++
	switch reason {
	case stats.PinLoad, stats.PinFunctionCall, stats.PinCopySync:
		ss.pinKeep = true // what DISCARD ALL does not undo
	}
	if ss.pinned != "" {
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
func (ss *session) expectLocked(bs *backendState, kind byte) (swallow bool) {
	for i, e := range ss.expect {
		if e.kind == kind {
			ss.expect = append(ss.expect[:i], ss.expect[i+1:]...)
			if e.closesPortal {
				if pa, ok := ss.portalActs[e.portal]; ok && pa.order < e.order {
					delete(ss.portalActs, e.portal)
				}
			}
			if kind == '1' && !e.unnamed && e.def != "" {
				st, cs := e.bst, e.cs
				if st == nil {
					st = bs.stmts[e.def]
				}
				if cs == nil && e.name != "" {
					if cs = ss.stmts[e.name]; cs != nil && cs.def != e.def {
						cs = nil
					}
				}
				if st != nil && st.parsed == e.seg+1 {
					st.parsed = 0 // confirmed
				}
				if cs != nil && cs.parsed == e.seg+1 {
					cs.parsed = 0
				}
			}
			return e.swallow
		}
	}
	return false
}

// skipSegmentLocked undoes the Parses and Closes of the segment being
// answered, which the backend skips after an error up to the next Sync.
func (ss *session) skipSegmentLocked(bs *backendState) {
	ss.segFailed = true
	ss.skipLocked(bs, ss.segRecv+1)
}

// skipLocked undoes the Parses and Closes in flight from segments before
// upTo: those the backend skipped (or, for a Parse, that failed). They are
// undone latest first, so that a Close of a statement whose Parse was
// skipped too gives back nothing.
func (ss *session) skipLocked(bs *backendState, upTo uint64) {
	n := 0
	for n < len(ss.expect) && ss.expect[n].seg < upTo {
		n++
	}
	for i := n - 1; i >= 0; i-- {
		e := &ss.expect[i]
		switch {
		case e.unnamed:
			// A Parse or Close of the unnamed statement, skipped: the
			// backend still holds whichever it had before. A client's
			// Parse that failed leaves none, one skipped the previous
			// one, which the router cannot tell apart: the client's
			// unnamed statement is gone (a Bind gets 26000, never the
			// wrong statement).
			bs.unnamed = unnamedUnknown
			switch {
			case e.kind == '1' && !e.swallow && ss.unnamedTok == e.tok:
				ss.unnamedTok = 0
			case e.kind == '3' && !e.swallow && e.tok != 0 && ss.unnamedTok == 0 && ss.unnamedDef == e.def && ss.unnamedOp == e.seg+1:
				ss.unnamedTok = e.tok // a skipped Close, nothing after it (a Query drops it too)
			}
		case e.kind == '3' && e.closed != nil:
			// A client's Close skipped: its statement lives on.
			if _, taken := ss.stmts[e.name]; !taken {
				ss.stmts[e.name] = e.closed
			}
		case e.kind == '1' && e.def != "":
			// A Parse the backend skipped: the statement does not exist
			// (unless a later Parse of it is in flight). What it defined
			// is dead wherever it is kept (also in the undo record of a
			// DISCARD ALL written after it, which took it out of the
			// books).
			cs, st := e.cs, e.bst
			if cs == nil && e.name != "" {
				cs = ss.stmts[e.name]
			}
			if st == nil {
				st = bs.stmts[e.def]
			}
			mine := cs != nil && cs.def == e.def && cs.parsed == e.seg+1
			stMine := st != nil && st.def == e.def && st.parsed == e.seg+1
			inBooks := stMine && bs.stmts[e.def] == st
			switch {
			case mine && cs.over != 0:
				// A later Parse of the name under the same backend name
				// defines it instead.
				if stMine {
					if inBooks {
						delete(bs.stmts, e.def)
						if _, taken := bs.stmts[cs.overDef]; !taken {
							bs.stmts[cs.overDef] = st
						}
					}
					st.def, st.parsed = cs.overDef, cs.over
				}
				cs.def, cs.parsed, cs.over, cs.overDef = cs.overDef, cs.over, 0, ""
				cs.act, cs.overAct = cs.overAct, nil
			case mine:
				if ss.stmts[e.name] == cs {
					delete(ss.stmts, e.name)
				}
				cs.dead = true
				if inBooks {
					delete(bs.stmts, e.def)
				}
				if stMine {
					st.dead = true
				}
			case cs != nil && e.name != "" && cs.over == e.seg+1 && cs.overDef == e.def:
				// A Parse of a taken name, refused (or skipped): the name
				// keeps its statement.
				cs.over, cs.overDef, cs.overAct = 0, "", nil
			case stMine:
				if inBooks {
					delete(bs.stmts, e.def)
				}
				st.dead = true
			}
		}
	}
	if n > 0 {
		clear(ss.expect[:n]) // (their strings and pointers)
		ss.expect = append(ss.expect[:0], ss.expect[n:]...)
	}
	if ss.undoN.Load() > 0 {
		ss.undoLocked(bs, upTo)
	}
}
