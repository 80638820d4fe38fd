package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"golang.org/x/time/rate"

	"github.com/pgbridge/pgbridge/internal/stats"
	"github.com/pgbridge/pgbridge/pool"
	"github.com/pgbridge/pgbridge/proxy/internal/sqllex"
	"github.com/pgbridge/pgbridge/proxy/internal/wire"
)

const (
	clientBufSize  = 8 << 10
	backendBufSize = 32 << 10
)

// backendReaders recycles the per-attachment read buffers of the backend
// direction, so an idle session holds none.
var backendReaders = sync.Pool{New: func() any { return wire.NewReader(nil, backendBufSize) }}

// clientBufs recycles client read buffers: a session parked by the
// watchdog (idle for parkAfter) lends its buffer back while it waits.
var clientBufs = sync.Pool{New: func() any { b := make([]byte, clientBufSize); return &b }}

func getClientBuf() []byte { return *clientBufs.Get().(*[]byte) }

func putClientBuf(b []byte) {
	if cap(b) == clientBufSize {
		b = b[:clientBufSize]
		clientBufs.Put(&b)
	}
}

// session is one client connection. Two goroutines work on it while a
// backend is attached: the client loop (run) forwards client messages to the
// backend, and the pump forwards backend messages to the client. Ownership
// of the attached backend is decided under mu: whoever sets be to nil owns
// the connection and must release or discard it.
type session struct {
	srv  *Server
	nc   net.Conn
	id   uint64
	log  *zap.Logger
	crd  *wire.Reader
	wbuf []byte
	// held is AuthenticationSASLFinal, kept back so that it reaches the
	// client in one write with what ends the login: the welcome or the
	// refusal. Only the session's own goroutine touches it.
	held  []byte
	key   cancelKey
	tls   bool
	start time.Time

	ts         *tenantState // the tenant's live state; set at login
	startup    *startupMessage
	registered bool
	admin      bool // an admin console session

	ctx    context.Context
	cancel context.CancelFunc

	wmu sync.Mutex // serialises writes to the client

	mu         sync.Mutex
	be         *pool.Conn    // attached backend, nil when none
	pumpDone   chan struct{} // closed when the current pump exits; nil in sync mode (be != nil, no pump)
	pending    int           // Query/Sync/FunctionCall sent but not yet answered by ReadyForQuery
	boundary   bool          // the last client message ended a request
	txStatus   byte          // status byte of the latest ReadyForQuery
	pumpFailed bool          // the pump could not write to the client
	answering  bool          // the relay counted the ReadyForQuery that made the session idle and has yet to write it
	drainErr   *clientError  // end the session with this at the next transaction boundary
	closing    bool
	skipToSync bool // after a router error in an extended-protocol batch

	// Sync mode (relaySync): the attached backend's reader while the
	// client loop reads responses itself, the responses still to hide, and
	// the relay's output buffer. Only the client loop touches them.
	syncRd  *wire.Reader
	swallow int
	robuf   []byte

	// Guardrail bookkeeping (watchdog.go), guarded by mu.
	busySince    time.Time     // when the request being served started
	idleSince    time.Time     // when the client last got its turn (pending reached 0)
	routerCancel time.Duration // max_statement_timeout that cancelled the running request; 0 = none
	guardFired   bool          // a time limit is closing the session
	guardErr     *clientError  // the watchdog's limit that fired (fireLocked); nil for other ends
	guardOnce    sync.Once     // endGuard
	inFill       bool          // the client loop waits for client bytes between requests
	parkReq      bool          // the watchdog woke the client loop to park it without a buffer
	parkedAt     time.Time     // when the watchdog last asked; once per idle period
	noPark       bool          // the router is closing the connection: no more parking (parker's mu)
	parkTok      int32         // the parker's token while parked, 0 otherwise (parker's mu)
	waiting      bool          // waiting for a query token or a backend
	endReason    Reason        // why the router ended the session, "" when the client did
	// endsExec says the last batch written ended with an Execute (Flush
	// aside); sent counts the batches written (Flushes aside); turnSince
	// is when the watchdog first saw the client's turn in the middle of a
	// request, sent being turnMark then.
	endsExec  bool
	copyDone  bool // CopyDone or CopyFail written since the last CopyInResponse
	sent      uint64
	turnSince time.Time
	turnMark  uint64

	// Transaction-mode statement handling (stmt.go). stmts and obuf belong
	// to the client loop; the rest is guarded by mu.
	tracking   bool                   // transaction mode: rename statements, pin on session state
	stmts      map[string]*clientStmt // the client's named statements
	unnamedDef string                 // the client's unnamed statement (Parse body after the name)
	unnamedTok uint64                 // and its token (unnamedSeq; 0: none)
	// portalBound says the client bound the unnamed portal in the current
	// Sync segment; portalStart is its value at the start of the batch
	// being forwarded, fixPortal that the batch uses the unnamed portal
	// without (see portalStep).
	portalBound, portalStart, fixPortal bool
	// acts says the client prepared a DISCARD ALL or DEALLOCATE with
	// Parse: the rewrite pass then follows Binds and Executes, and
	// portalActs holds the portals bound to such a statement.
	acts        bool
	portalActs  map[string]portalAct
	unnamedAct  *stmtAction // the action of the client's unnamed statement
	sqlPrepared bool        // the client ran an SQL PREPARE (its session is pinned)
	// pinEvents counts the session's pins (also those of a session pinned
	// already), pinKeep says one was for something DISCARD ALL does not
	// undo (LOAD, a FunctionCall, copy_sync), unpinAt is 1 + pinEvents
	// when a DISCARD ALL that can unpin the session has succeeded
	// (unpinLocked).
	pinEvents uint64
	pinKeep   bool
	unpinAt   uint64
	segFailed bool   // an ErrorResponse came in the segment being answered
	extOpen   bool   // extended-protocol messages written since the last Sync (client loop)
	portalSeq uint64 // Binds and Closes of portals with actions (portalAct.order)
	unnamedOp uint64 // 1 + the segment of the last Parse, Close or Query that set the backend's unnamed statement
	obuf      []byte
	pinned    string        // why the session keeps its backend ("" = not pinned)
	expect    []expectation // Parses and Closes in flight
	undo      []stmtUndo    // book changes of DISCARD ALL and DEALLOCATE awaiting their CommandComplete
	undoN     atomic.Int32  // len(undo), read by the relay without mu
	segSent   uint64        // sync points (Query, Sync, FunctionCall) written
	segRecv   uint64        // ReadyForQuery messages received
	// Syncs the backend ignores in copy-in mode (copysync.go): recs from
	// recHead are the sync points written and not answered yet; tailExecs
	// counts the Executes written since the last one, sinceQE that only
	// copy data, Flush and Sync were written since the last Query or
	// Execute. ignoredSyncs counts the Syncs the COPY in progress ignores,
	// copyRunOpen that the client's next Syncs are ignored too, copyErr
	// that the COPY failed; unsure that the counts may be wrong since.
	recs         []syncRec
	recHead      int
	sinceQE      bool
	ignoredSyncs int
	copyRunOpen  bool
	copyErr      bool
	copyByQuery  bool // the COPY was started by a Query
	copyLead     int  // of ignoredSyncs, those written before any CopyData
	runData      bool // CopyData was written since the last Query or Execute
	unsure       bool
	beWoken      bool // kill set a read deadline on be
	inCopy       bool // the backend sent CopyInResponse and no ReadyForQuery since
	// tailClean: nothing but COPY data was sent after the last sync point
	// (Query, Sync, FunctionCall). batch describes the batch the client
	// loop is about to attach (forwardClient).
	tailClean bool
	batch     batchFlags
	// prepaid says the request in progress paid query_rate tokens for
	// Executes sent ahead of its Sync (limitRate).
	prepaid bool
	// execsDone counts the Executes the backend finished since its last
	// ReadyForQuery (execsSettled after an error, which makes it skip the
	// rest up to the Sync): once every sync point is answered, an Execute
	// still running is one of the tailExecs.
	tailExecs int
	execsDone atomic.Int32
	// A Query or FunctionCall held back behind extended-protocol messages
	// (holdQuery): segMsgs counts the client's Parse, Bind, Describe,
	// Close and Execute messages since its last sync point (client loop),
	// answers the backend's answers to such messages since its last
	// ReadyForQuery (relay), holdCh the waiting client loop (mu), armed
	// that holdCh is set.
	segMsgs int
	answers atomic.Int32
	// copyActive: the backend started a COPY FROM STDIN (CopyInResponse)
	// that has not ended yet (CommandComplete or ErrorResponse), copyAt
	// is 1 + the answers before it: the place in its segment of the
	// Execute that started it (relay).
	copyActive atomic.Bool
	copyAt     atomic.Int32
	holdCh     chan holdResult
	armed      atomic.Bool
	// execLast says the client's last message but CopyData and Flush was
	// an Execute (client loop): a COPY FROM STDIN it started still waits
	// for data (any other message ends it, or fails it). holdExecLast is
	// its value for the held Query (mu), when that Execute is the
	// segMsgs-th message of the segment.
	execLast     bool
	holdExecLast bool
	copyEnded    bool // a COPY ended short of a boundary; only copy messages came since
	// beReads counts the relay's reads from the backend; the watchdog
	// compares it (progressReads, at progressAt) to see whether a request
	// it cancelled still makes progress.
	beReads       atomic.Uint64
	progressReads uint64
	progressAt    time.Time
	wantParams    map[string]string
	paramsKey     string
	paramsKeys    []string
	// stmtKey is stmtParamsLocked's answer for paramsKey stmtKeyOf.
	stmtKey, stmtKeyOf string
	// startParams is wantParams as the login left it: the session
	// defaults that RESET and DISCARD ALL go back to. told holds the
	// ParameterStatus values the client was sent last (guarded by mu).
	startParams map[string]string
	told        map[string]string
	// toldCheck says told may differ from what a backend with the
	// client's parameters reports (after a RESET or DISCARD ALL).
	toldCheck bool
	// paramSet is a SET the client's params follow, until the
	// ReadyForQuery of its segment settles it (stmt.go: followSetLocked);
	// nil when none is in flight. Guarded by mu.
	paramSet *paramSet
	// attachSegs are the segments the router sent ahead of the client's
	// first request on the backend attached last (its parameters);
	// segExecs are the Executes written before the message rewriteLocked
	// looks at, since the last sync point.
	attachSegs uint64
	// cancelAfter says a client cancel came while the router's own
	// segments sent ahead of the client's (attachSegs) were unanswered:
	// it goes out once they are, so it cannot cancel the router's
	// statement and let the client's run without its settings (mu).
	cancelAfter bool
	segExecs    int
	// A request waiting for a backend (query_rate, PAUSE, the pool, the
	// round trip that gives a backend the client's parameters) is
	// cancelled through waitCtx: requesting says one is under way and
	// waitCancelled that the client's CancelRequest hit it; waitCtx is
	// made again after it was cancelled (mu).
	requesting    bool
	waitCancelled bool
	waitCtx       context.Context
	waitCancel    context.CancelFunc
}

func newSession(srv *Server, nc net.Conn, id uint64, log *zap.Logger) *session {
	ctx, cancel := context.WithCancel(context.Background())
	ss := &session{
		srv: srv, nc: nc, id: id, log: log,
		crd:      wire.NewReaderBuf(nc, getClientBuf()),
		key:      newCancelKey(),
		start:    time.Now(),
		ctx:      ctx,
		cancel:   cancel,
		txStatus: 'I',
		boundary: true,
	}
	return ss
}

// beginRequestLocked marks a request that has no backend yet: until
// attach gives it one (or it is answered), a client cancel ends its wait.
// It returns the context its waits use, made on first use (an idle
// session holds none) and again after a cancel; kill cancels it.
func (ss *session) beginRequestLocked() context.Context {
	if !ss.requesting {
		ss.requesting, ss.waitCancelled = true, false
	}
	if ss.waitCtx == nil || ss.waitCtx.Err() != nil && !ss.waitCancelled {
		ss.waitCtx, ss.waitCancel = context.WithCancel(context.Background())
		if ss.ctx.Err() != nil {
			ss.waitCancel() // (the session is ending)
		}
	}
	return ss.waitCtx
}

// endRequestLocked ends what beginRequestLocked began and reports whether
// the client's cancel hit the request while it waited.
func (ss *session) endRequestLocked() (cancelled bool) {
	cancelled = ss.waitCancelled
	ss.requesting, ss.waitCancelled = false, false
	return cancelled
}

func (ss *session) endRequest() (cancelled bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.endRequestLocked()
}

// guard runs one stretch of the session's life on the current goroutine:
// the login and first stretch of serving (run), or a stretch after the
// parker resumed the session (resume). A panic ends the session. The
// connection's place in the server's wait group is released when the
// session ends, not when it is handed to the parker.
func (ss *session) guard(stretch func() (parked bool)) {
	parked := false
	defer func() {
		if r := recover(); r != nil {
			ss.log.Error("session panic", zap.Any("panic", r), zap.Stack("stack"))
			ss.kill(errInternal())
			ss.cleanup()
			parked = false
		}
		if !parked {
			ss.srv.wg.Done()
		}
	}()
	parked = stretch()
}

// run logs the client in and serves it. It reports true when the session
// was handed to the parker: the goroutine leaves it to the parker then.
func (ss *session) run() (parked bool) {
	lctx, lcancel := context.WithTimeout(ss.ctx, ss.srv.config().Listen.LoginTimeout)
	_ = ss.nc.SetDeadline(time.Now().Add(ss.srv.config().Listen.LoginTimeout))
	ok, err := ss.login(lctx)
	lcancel()
	if err != nil {
		if isTimeout(err) {
			err = fatal(ReasonLoginTimeout, "08006", "", "login not completed within login_timeout")
		}
		ss.refuse(err)
		ss.cleanup()
		return false
	}
	if !ok {
		ss.cleanup()
		return false
	}
	_ = ss.nc.SetDeadline(time.Time{})
	ss.log.Info("client connected", zap.Bool("tls", ss.tls))
	if ss.admin {
		reason := ss.serveAdmin()
		ss.log.Info("admin disconnected", zap.String("reason", reason), zap.Duration("duration", time.Since(ss.start)))
		ss.cleanup()
		return false
	}
	return ss.serveStretch()
}

// resume serves a session the parker woke: its client spoke or hung up, or
// the router is ending it.
func (ss *session) resume() (parked bool) {
	ss.crd.Attach(getClientBuf())
	return ss.serveStretch()
}

// serveStretch runs the client loop until the session ends (then cleans
// up) or is parked.
func (ss *session) serveStretch() (parked bool) {
	reason, parked := ss.serve()
	if parked {
		return true
	}
	ss.mu.Lock()
	if ss.endReason != "" {
		reason = string(ss.endReason)
	}
	ss.mu.Unlock()
	ss.log.Info("client disconnected", zap.String("reason", reason), zap.Duration("duration", time.Since(ss.start)))
	ss.cleanup()
	return false
}

// refuse reports a login failure to the client (when it is a Postgres
// error we can name) and logs it.
func (ss *session) refuse(err error) {
	var ce *clientError
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &ce):
		ss.log.Info("login refused", zap.String("reason", string(ce.reason)), zap.String("sqlstate", ce.code))
		if ss.ts != nil {
			ss.ts.stats.Rejections.Inc(string(ce.reason))
		}
		ss.writeError(ss.held, err)
	case errors.As(err, &pe):
		ss.log.Info("login refused by backend", zap.String("sqlstate", pe.Code))
		ss.writeError(ss.held, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		ss.log.Debug("client left during login")
	default:
		ss.log.Info("login failed", zap.Error(err))
	}
}

func (ss *session) cleanup() {
	ss.cancel()
	if b := ss.crd.Detach(); b != nil {
		putClientBuf(b)
	}
	if ss.registered {
		ss.srv.unregister(ss)
		ss.registered = false
	}
	_ = ss.nc.Close()
}

// serve is the client loop. It returns why the session ended, or parked
// when the session was handed to the parker (then nothing of the session
// may be touched on the way out).
func (ss *session) serve() (reason string, parked bool) {
	defer func() {
		if !parked {
			ss.detachAtExit()
		}
	}()
	// Bytes the login read past its last message (a client that sent its
	// first request without waiting for AuthenticationOk) are served
	// before the first read: a read could wait for bytes that never come.
	pipelined := ss.crd.Buffered() > 0
	for {
		var err error
		park := false
		if pipelined {
			pipelined = false
		} else {
			ss.mu.Lock()
			ss.inFill = true
			ss.mu.Unlock()
			err = ss.crd.Fill(0)
			ss.mu.Lock()
			ss.inFill = false
			park = ss.parkReq
			ss.parkReq = false
			ss.mu.Unlock()
		}
		if park {
			if err != nil && isTimeout(err) {
				switch ss.park() {
				case parkGone:
					return "client closed", false
				case parkAway:
					return "", true
				}
				continue
			}
			_ = ss.nc.SetReadDeadline(time.Time{}) // the client spoke first
		}
		if err != nil {
			if isClosedErr(err) {
				return "client closed", false
			}
			return "client read error", false
		}
		for ss.crd.Buffered() > 0 {
			reason, done, err := ss.forwardClient()
			if errors.Is(err, errGuardEnded) {
				return "", false // ended (endGuard): counted, reported, closed
			}
			if err != nil {
				ss.countClose(err)
				ss.settlePumpWithin(time.Second) // its answer goes before the error
				ss.kill(err)
				return reason, false
			}
			if done {
				return reason, false
			}
			if reason == "more" {
				break
			}
		}
	}
}

// countClose counts a session the client loop ends over err, which no
// guardrail counted: a client that broke the protocol, or a backend that
// failed under the session (a write to it failed, or none could be
// dialed within backend.resume_timeout). A session another path ended
// first (which counted it if it counts) is not counted again.
func (ss *session) countClose(err error) {
	var ce *clientError
	ss.mu.Lock()
	ended := ss.endReason != ""
	ss.mu.Unlock()
	if ended || !errors.As(err, &ce) {
		return
	}
	switch ce.reason {
	case ReasonProtocol:
		ss.ts.stats.SessionCloses.Inc(stats.CloseProtocol)
	case ReasonBackendDown:
		ss.ts.stats.SessionCloses.Inc(stats.CloseBackendLost)
	}
}

type parkResult int

const (
	parkReadOn parkResult = iota // bytes arrived: read on
	parkGone                     // the connection is gone
	parkAway                     // handed to the parker: leave the session alone
)

// park lets an idle session wait for its client's next bytes without a
// read buffer, and where the parker works, without a goroutine, so ten
// thousand idle clients hold neither.
func (ss *session) park() parkResult {
	_ = ss.nc.SetReadDeadline(time.Time{})
	if ss.crd.Detach() == nil {
		return parkReadOn // a partial message is buffered: just read on
	}
	// The buffer is dropped, not pooled: pooled buffers stay live until two
	// collections pass, and parking is about giving memory back.
	p := ss.srv.parker
	if p.park(ss) {
		return parkAway
	}
	p.onGo.Add(1)
	err := waitReadable(ss.nc)
	p.onGo.Add(-1)
	ss.crd.Attach(getClientBuf())
	if err != nil {
		return parkGone
	}
	return parkReadOn
}

// forwardClient handles the complete client messages at the front of the
// buffer. It returns "more" when a partial message needs more bytes.
func (ss *session) forwardClient() (reason string, done bool, err error) {
	maxMsg := ss.ts.tenant().Policy.MaxMessageSize
	logQueries := ss.srv.logQueries.Load()
	pos, syncs := 0, 0
	boundary := false
	ss.portalStart = ss.portalBound
	var flags batchFlags
	execs := ss.tailExecs // Executes written or read since the last sync point
	terminate := false
	rewrite := false
	query := false
	bigCopy := 0
	for {
		typ, total, ok, herr := ss.crd.Header(pos)
		if herr != nil {
			return "protocol violation", true, errProtocol("invalid message length")
		}
		if !ok {
			break
		}
		if total > maxMsg {
			ss.ts.stats.Rejections.Inc(string(ReasonTooLarge))
			return "message too large", true, errTooLarge(total, maxMsg)
		}
		if pos+total > ss.crd.Buffered() {
			if pos == 0 && total > clientBufSize && typ == 'd' {
				bigCopy = total // stream a large CopyData through
			}
			break
		}
		if (typ == 'Q' || typ == 'F') && ss.extOpen {
			// (Session mode too: the count of answers due decides when the
			// session is idle there as well, for the watchdog, a drain and
			// the reset of its backend.)
			if pos > 0 {
				break // what comes before it goes out first
			}
			switch ss.holdQuery() {
			case holdRun:
				ss.extOpen = false // its ReadyForQuery ends the segment
			case holdDrop:
				ss.crd.Discard(total)
				return "", false, nil
			case holdRefuse:
				if ss.tracking {
					return "protocol violation", true, errQueryInSegment()
				}
				// Session mode: the backend is the session's for life; it
				// goes out as it did before.
			default:
				return "backend error", true, nil
			}
		}
		if logQueries && (typ == 'Q' || typ == 'P') {
			ss.logQuery(ss.crd.Bytes()[pos : pos+total])
		}
		if portalStep(typ, ss.crd.Bytes()[pos+5:pos+total], &ss.portalBound) {
			rewrite, ss.fixPortal = true, true
		}
		switch typ {
		case 'X':
			terminate = true
		case 'Q':
			if total < 6 || ss.crd.Bytes()[pos+total-1] != 0 {
				// PostgreSQL would end the backend's session over it.
				return "protocol violation", true, errProtocol("invalid Query message: its text must end with a NUL byte")
			}
			syncs++
			boundary = true
			execs = 0
			ss.segMsgs = 0
			// Plain queries go out untouched; only statements with
			// session-level effects need the rewrite pass.
			rewrite = rewrite || sqllex.Effects(queryText(ss.crd.Bytes()[pos:pos+total])) != sqllex.EffectNone
			query = true
		case 'S':
			syncs++
			boundary = true
			execs = 0
			ss.extOpen = false
			ss.segMsgs = 0
		case 'F':
			syncs++
			boundary = true
			execs = 0
			ss.segMsgs = 0
			rewrite = rewrite || ss.tracking // it pins the session
		case 'c', 'f':
			// The end of a COPY run by a Query; one run by an Execute ends
			// with the Sync after it. (Outside a COPY PostgreSQL ignores
			// them: after extended-protocol messages the request goes on
			// up to the Sync, and its backend must not change hands.)
			boundary = execs == 0 && !ss.extOpen
			ss.execLast = false
		case 'P', 'B', 'D', 'C':
			boundary = false
			rewrite = rewrite || typ == 'P' || ss.tracking
			ss.extOpen = true
			ss.segMsgs++
			ss.execLast = false
		case 'E':
			boundary = false
			ss.extOpen = true
			ss.segMsgs++
			ss.execLast = true
			execs++
			rewrite = rewrite || ss.acts
		case 'd':
			boundary = false
		case 'H':
			// A Flush changes nothing: not the end of a request, nor the
			// start of one (PostgreSQL ignores it inside a COPY).
		default:
			return "protocol violation", true, errProtocol("invalid frontend message type %d", typ)
		}
		if terminate {
			break
		}
		flags = flags.add(typ)
		pos += total
	}
	if pos == 0 && !terminate && bigCopy == 0 {
		// Need more bytes for the next message.
		if _, total, ok, _ := ss.crd.Header(0); ok && total > clientBufSize {
			if err := ss.crd.Fill(total); err != nil {
				return "client read error", true, nil
			}
			return "", false, nil
		}
		return "more", false, nil
	}
	if pos > 0 {
		ss.ts.stats.BytesIn.Add(uint64(pos))
		ss.batch = flags
		if err := ss.toBackend(ss.crd.Bytes()[:pos], syncs, boundary, rewrite, query); err != nil {
			return "backend error", true, err
		}
		ss.crd.Discard(pos)
	}
	if terminate {
		ss.crd.Discard(ss.crd.Buffered())
		return "client terminated", true, nil
	}
	if bigCopy > 0 {
		ss.batch = batchCopy
		be, pre, err := ss.attach(ss.crd.Bytes()[:0], 0, false)
		if err != nil {
			return "backend error", true, err
		}
		if be == nil { // the COPY has ended: drop the stray data
			if err := ss.crd.StreamBody(io.Discard, bigCopy); err != nil {
				return "client read error", true, nil
			}
			return "", false, nil
		}
		ss.mu.Lock()
		ss.runData = true // as noteSentLocked would for the CopyData
		ss.mu.Unlock()
		if ss.syncRd != nil {
			ss.handOver(be) // the backend may answer while the stream goes on
		}
		if len(pre) > 0 {
			if _, err := be.Write(pre); err != nil {
				return "backend error", true, errBackendDown(err)
			}
		}
		if err := ss.crd.StreamBody(be, bigCopy); err != nil {
			// The backend has part of a message (the client left in its
			// middle, or the write failed): it is not reusable, even if
			// the COPY ended meanwhile and the session looks idle.
			ss.mu.Lock()
			ss.pumpFailed = true
			ss.mu.Unlock()
			return "copy stream error", true, errBackendDown(err)
		}
	}
	return "", false, nil
}

// toBackend writes a batch of complete client messages to the session's
// backend, acquiring one first if none is attached.
func (ss *session) toBackend(batch []byte, syncs int, boundary, rewrite, query bool) error {
	ss.settlePump()
	if ss.ctx.Err() != nil {
		// The session was ended (its FATAL sent) while this request
		// waited: it must not run.
		return errShutdown()
	}
	defer ss.endRequest()
	if ss.skipToSync {
		// A router error ended the previous extended-protocol batch: like
		// PostgreSQL, ignore everything up to the next Sync.
		i := syncIndex(batch)
		if i < 0 {
			return nil
		}
		ss.skipToSync = false
		if err := ss.writeClient(readyIdle); err != nil {
			return err
		}
		batch = batch[i:]
		syncs, boundary = countSyncs(batch, ss.tailExecs)
		ss.batch = classify(batch)
		if len(batch) == 0 {
			return nil
		}
		rewrite = true
	}
	if lim := ss.ts.queries.Load(); lim != nil {
		var err error
		if batch, rewrite, query, err = ss.limitRate(lim, batch, syncs, boundary, rewrite, query); err != nil || batch == nil {
			return err
		}
	}
	be, pre, err := ss.attach(batch, syncs, boundary)
	if err != nil || be == nil {
		return err
	}
	out := batch
	bs := be.State.(*backendState)
	ss.mu.Lock()
	if rewrite {
		out = ss.rewriteLocked(batch, bs)
	} else {
		ss.segSent += uint64(syncs)
		if query {
			bs.unnamed = 0 // a simple Query destroys the unnamed statement
			ss.unnamedTok = 0
			ss.unnamedOp = ss.segSent // (1 + the batch's last segment: at or after the Query's)
		}
	}
	ss.noteSentLocked(out)
	ss.mu.Unlock()
	if len(pre) > 0 {
		out = append(pre, out...)
	}
	if _, err := be.Write(out); err != nil {
		return errBackendDown(err)
	}
	if ss.syncRd != nil {
		ss.relaySync(be)
	}
	return nil
}

var readyIdle = []byte{'Z', 0, 0, 0, 5, 'I'}

// hangupCheckInterval is how often a session waiting without a time limit
// (for a RESUME) checks that its client is still there.
const hangupCheckInterval = 100 * time.Millisecond

// watchHangup returns a channel closed when the client hangs up, checked
// until stop is closed. Only while the client loop waits and reads
// nothing.
func (ss *session) watchHangup(stop <-chan struct{}) <-chan struct{} {
	gone := make(chan struct{})
	go func() {
		t := time.NewTicker(hangupCheckInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if peerClosed(ss.nc) {
				close(gone)
				return
			}
		}
	}()
	return gone
}

// settlePump waits, when no backend is attached, for the pump that gave
// the last one back: it may not have written its answer yet, and nothing
// of the next request's (its answer, a refusal) may reach the client
// first. The client loop calls it wherever it finds no backend attached.
func (ss *session) settlePump() {
	ss.mu.Lock()
	var prev chan struct{}
	if ss.be == nil {
		prev, ss.pumpDone = ss.pumpDone, nil
	}
	ss.mu.Unlock()
	if prev != nil {
		<-prev
	}
}

// settlePumpWithin is settlePump for a session about to end, bounded: a
// pump stuck on a client that does not read must not keep it open.
func (ss *session) settlePumpWithin(d time.Duration) {
	ss.mu.Lock()
	var prev chan struct{}
	if ss.be == nil {
		prev = ss.pumpDone
	}
	ss.mu.Unlock()
	if prev != nil {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-prev:
		case <-t.C:
		}
	}
}

// execsSettled is session.execsDone after an error: every Execute sent
// since the last sync point is over.
const execsSettled = 1 << 30

// queryText is the SQL of a whole Query message, without its terminator.
func queryText(frame []byte) string {
	if len(frame) < 6 {
		return ""
	}
	return unsafeString(frame[5 : len(frame)-1])
}

// limitRate takes query tokens for a batch: one per request it ends, and
// one for a batch that starts a transaction. Waiting is bounded by
// pool_wait_timeout; without a token the batch is refused with 53400 the
// way PostgreSQL would refuse its first message: by the router when no
// backend is attached, else by replacing each request with a statement
// the backend fails (so the transaction state stays the backend's). A
// batch that does not start a request (it finishes one that an earlier
// batch began, or carries COPY data) waits for its token without a bound:
// there is no way to refuse part of a request, and a Query in its place
// would be skipped by a backend waiting for a Sync after an error, or break
// a COPY. A nil batch with a nil error means the router answered.
func (ss *session) limitRate(lim *rate.Limiter, batch []byte, syncs int, boundary, rewrite, query bool) ([]byte, bool, bool, error) {
	if ss.batch&batchOther == 0 {
		return batch, rewrite, query, nil // COPY data: its COPY took the token
	}
	ss.mu.Lock()
	attached := ss.be != nil
	midRequest := attached && !ss.boundary || ss.batch&batchCopy != 0
	ss.mu.Unlock()
	n := syncs
	switch {
	case syncs == 0 && ss.batch&batchExecute != 0:
		// Statements run without a Sync (Execute, Flush, and so on): each
		// pays, and the Sync that ends their request pays nothing.
		n = countMsgs(batch, 'E')
		ss.prepaid = true
	case syncs > 0 && ss.prepaid:
		n--
		ss.prepaid = false
	}
	if !attached {
		n = max(n, 1)
	}
	if n == 0 {
		return batch, rewrite, query, nil
	}
	if n <= lim.Burst() && lim.AllowN(time.Now(), n) {
		return batch, rewrite, query, nil
	}
	if attached && endsTransaction(batch) {
		return batch, rewrite, query, nil // never keep a transaction open for want of a token
	}
	pol := ss.ts.tenant().Policy
	ctx := ss.ctx
	if !attached {
		ss.mu.Lock()
		ctx = ss.beginRequestLocked() // (a client cancel ends the wait)
		ss.mu.Unlock()
	}
	bounded := !attached || boundary && !midRequest
	if bounded && pol.PoolWaitTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, pol.PoolWaitTimeout)
		defer cancel()
	}
	ss.setWaiting(true)
	err := waitTokens(ctx, lim, n)
	ss.mu.Lock()
	ss.waiting = false
	if attached {
		// Inside a transaction the wait was the router's, not the
		// client's idleness (idle_in_transaction_timeout, watch): the
		// statement goes out now.
		ss.idleSince = ss.srv.now()
	}
	ss.mu.Unlock()
	if err == nil {
		return batch, rewrite, query, nil
	}
	if ss.ctx.Err() != nil {
		return nil, false, false, errShutdown()
	}
	if !attached && ss.endRequest() {
		ss.settlePump()
		return nil, false, false, ss.answerRefusal(batch, errWaitCancelled())
	}
	refusal := errRateLimit(ss.ts.name, pol.QueryRate, pol.PoolWaitTimeout)
	ss.ts.stats.Rejections.Inc(string(ReasonRateLimit))
	ss.log.Info("query refused", zap.String("reason", string(ReasonRateLimit)))
	ss.prepaid = false // (a refused request pays nothing more)
	if !attached {
		ss.settlePump()
		return nil, false, false, ss.answerRefusal(batch, refusal)
	}
	q := appendMsg(nil, 'Q', cstr(refusalSQL(refusal.code, refusal.message)))
	out := make([]byte, 0, syncs*len(q))
	for range syncs {
		out = append(out, q...)
	}
	ss.batch = batchOther
	return out, false, true, nil
}

// waitTokens takes n tokens from lim, a burst at a time (WaitN refuses
// more than the burst at once), so that a pipeline of many requests in one
// batch pays for every one of them. It fails as soon as the tokens cannot
// all come before ctx's deadline; those taken by then stay spent.
func waitTokens(ctx context.Context, lim *rate.Limiter, n int) error {
	burst := max(lim.Burst(), 1)
	if dl, ok := ctx.Deadline(); ok && n > burst {
		// The wait for all of them, judged up front: tokens come at the
		// limit's rate once the burst is spent.
		if r := float64(lim.Limit()); r > 0 && time.Duration(float64(n-burst)/r*float64(time.Second)) > time.Until(dl) {
			return context.DeadlineExceeded
		}
	}
	for n > 0 {
		k := min(n, burst)
		if err := lim.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// logQuery logs the SQL of a Query or Parse message (log.queries: true).
func (ss *session) logQuery(frame []byte) {
	if len(frame) < 6 {
		return // malformed: refused after this
	}
	body := frame[5 : len(frame)-1]
	name := ""
	if frame[0] == 'P' {
		nameC, rest, ok := splitCString(body)
		if !ok {
			return
		}
		name = string(nameC)
		body, _, _ = splitCString(rest)
	}
	ss.log.Info("query", zap.String("sql", string(body)), zap.String("statement", name))
}

// endsTransaction reports whether batch is one simple Query that only
// ends a transaction: COMMIT, ROLLBACK, END or ABORT with the optional
// words WORK, TRANSACTION, AND [NO] CHAIN (not ROLLBACK TO SAVEPOINT, not
// COMMIT PREPARED), comments allowed, nothing after it.
func endsTransaction(batch []byte) bool {
	if len(batch) < 6 || batch[0] != 'Q' || len(batch) != 1+int(binary.BigEndian.Uint32(batch[1:5])) {
		return false
	}
	q := queryText(batch)
	word := func(t sqllex.Token, words ...string) bool {
		return t.Kind == sqllex.Ident && slices.ContainsFunc(words, func(w string) bool { return strings.EqualFold(t.Text(q), w) })
	}
	lx := sqllex.NewLexer(q)
	if !word(lx.Next(), "commit", "rollback", "end", "abort") {
		return false
	}
	for t := lx.Next(); ; t = lx.Next() {
		switch {
		case t.Kind == sqllex.EOF:
			return true
		case t.Kind == sqllex.Semicolon:
			return lx.Next().Kind == sqllex.EOF
		case !word(t, "work", "transaction", "and", "no", "chain"):
			return false
		}
	}
}

func (ss *session) setWaiting(w bool) {
	ss.mu.Lock()
	ss.waiting = w
	ss.mu.Unlock()
}

// attach makes sure a backend is attached and accounts for the batch about
// to be written to it. A nil backend with a nil error means the batch was
// answered by the router (a pool timeout). pre is what must be written
// before the batch: the statement that gives a fresh backend this client's
// session parameters.
func (ss *session) attach(batch []byte, syncs int, boundary bool) (be *pool.Conn, pre []byte, err error) {
	ts := ss.ts
	ts.stats.Queries.Add(uint64(syncs))
	copyOnly := ss.batch&batchOther == 0
	ss.mu.Lock()
	if ss.guardFired && ss.guardErr != nil {
		// A time limit is ending the session (idle in a transaction, or
		// idle): what the client sent since must not run, neither on the
		// backend the session loses nor on a new one.
		ss.mu.Unlock()
		ss.endGuard()
		return nil, nil, errGuardEnded
	}
	if syncs > 0 {
		ss.tailClean = ss.batch&batchDirty == 0
	} else if ss.batch&batchDirty != 0 {
		ss.tailClean = false
	}
	be = ss.be
	if be != nil && !copyOnly {
		ss.copyEnded = false
	}
	if be != nil && ss.pending == 0 && ss.boundary && copyOnly {
		// COPY data or its end while no COPY runs: after a COPY an error
		// ended (copyEnded), or stray. The backend would ignore it and
		// answer nothing, so it starts no request: drop it. After a failed
		// COPY, give the backend back if the session is between
		// transactions: the ReadyForQuery that ended the COPY could not
		// (CopyData had left the session short of a request boundary),
		// and none will come now.
		if ss.copyEnded && ss.txStatus == 'I' && ss.tracking && ss.pinned == "" {
			ss.detachIdleLocked(be)
			return nil, nil, nil
		}
		ss.mu.Unlock()
		return nil, nil, nil
	}
	if be != nil && ss.batch == 0 {
		// Only Flush: it ends no request and starts none.
		ss.mu.Unlock()
		return be, nil, nil
	}
	if be != nil && ss.pinned != "" && ss.pending == 0 && ss.boundary && ss.txStatus == 'I' {
		// A pinned session's next transaction is admitted under
		// backend.max_active_transactions on the backend it keeps, after
		// a bounded wait at most (pool.Readmit). An unsure one too: its
		// count of answers errs low (copysync.go), so its count may end
		// early, never late.
		ss.waiting = true
		ss.mu.Unlock()
		err := ss.srv.pool.Readmit(ss.ctx, be, pinnedAdmitWait)
		ss.mu.Lock()
		ss.waiting = false
		if err == nil && ss.be != be {
			err = errBackendLost
		}
		if err != nil {
			ss.mu.Unlock()
			if err == errBackendLost {
				return nil, nil, errBackendDown(err)
			}
			return nil, nil, ss.acquireError(err, false)
		}
	}
	if be != nil {
		if ss.pending == 0 && (ss.boundary || ss.batch&batchExecute != 0 && int(ss.execsDone.Load()) >= ss.tailExecs) {
			// A new request: its time runs from now. Without Sync, an
			// Execute starts one too (a cursor fetched in steps: Execute
			// with a row limit, Flush), once the backend has finished
			// the ones sent before; a Flush alone does not.
			ss.busySince = ss.srv.now()
		}
		if ss.batch != 0 {
			// The next request of an open transaction, or more of one
			// whose client paused (see watch).
			ss.srv.pool.Busy(be)
			ss.sent++
		}
		if ss.batch&batchCopyEnd != 0 {
			ss.copyDone = true // the COPY's turn is the server's now
		}
		if ss.batch&batchOther != 0 {
			ss.endsExec = ss.batch&batchEndsExec != 0
		}
		ss.pending += syncs
		ss.boundary = boundary
		ss.mu.Unlock()
		return be, nil, nil
	}
	if copyOnly {
		// CopyData, CopyDone or CopyFail after the COPY ended and its
		// backend went back: a backend would ignore them, and no
		// ReadyForQuery would ever release it.
		ss.mu.Unlock()
		return nil, nil, nil
	}
	wctx := ss.beginRequestLocked()
	ss.mu.Unlock()
	// The backend may have gone back since toBackend looked (a wait for a
	// query_rate token in between).
	ss.settlePump()
	ss.setWaiting(true)

	t0 := ss.srv.now()
	if gate := ts.gate.Load(); gate != nil { // admin PAUSE
		stop := make(chan struct{})
		gone := ss.watchHangup(stop)
		select {
		case <-*gate:
			close(stop)
		case <-gone:
			// The client hung up while it waited (a PAUSE has no time
			// limit): nobody reads the answer, and the session would
			// count as a waiting client until RESUME.
			ss.setWaiting(false)
			ss.endRequest()
			return nil, nil, errClientLeft()
		case <-wctx.Done():
			close(stop)
			ss.setWaiting(false)
			if ss.ctx.Err() != nil {
				return nil, nil, errShutdown()
			}
			ss.endRequest()
			return nil, nil, ss.answerRefusal(batch, errWaitCancelled())
		}
	}
	be, err = ss.srv.pool.Acquire(wctx, ts.name)
	t1 := ss.srv.now()
	ts.stats.PoolWait.Observe(t1.Sub(t0))
	ss.setWaiting(false)
	if err != nil && ss.ctx.Err() == nil && wctx.Err() != nil {
		ss.endRequest()
		return nil, nil, ss.answerRefusal(batch, errWaitCancelled())
	}
	if err != nil {
		if errors.Is(err, pool.ErrWaitTimeout) {
			ts.stats.Rejections.Inc(string(ReasonPoolTimeout))
			ss.log.Info("pool wait timeout", zap.Duration("pool_wait_timeout", ts.tenant().Policy.PoolWaitTimeout))
			return nil, nil, ss.answerRefusal(batch, ss.poolTimeout(err))
		}
		return nil, nil, ss.acquireError(err, false)
	}
	ss.srv.hook(hookAcquired)
	bs := stateOf(be.State)
	be.State = bs
	if bs.reported == nil {
		bs.reported = maps.Clone(be.Params)
	}
	swallow := 0
	if bs.paramsKey == ss.paramsKey && ss.toldCheck {
		// No statement of the router's will report the client's values
		// on this backend, which has them: tell what the client was told
		// otherwise after a RESET or DISCARD ALL.
		if err := ss.tellReported(bs); err != nil {
			ss.srv.pool.Release(be)
			return nil, nil, err
		}
	}
	if bs.paramsKey != ss.paramsKey {
		// The backend carries another client's parameters (or none): give
		// it this client's. A set the tenant's backends have taken before
		// goes out in front of the batch, its answer hidden from the
		// client. A new one gets a round trip of its own first: if the
		// server refuses a value (PostgreSQL would have refused the login),
		// the batch must not run with the previous client's settings.
		sql := paramsSQL(bs.params, ss.wantParams, ss.paramsKeys)
		if ts.paramsKnown(ss.paramsKey) && len(bs.params) == 0 { // nothing of another client's to leave behind if it fails
			pre = appendMsg(nil, 'Q', cstr(sql))
			swallow = 1 // (the backend carries them once pre goes out: below)
		} else if err := ss.applyParams(be, sql); err != nil {
			return nil, nil, err
		} else {
			bs.paramsKey, bs.params = ss.paramsKey, ss.paramsKeys
			if ss.toldCheck {
				// What the router's statement left as it was reported
				// nothing (PostgreSQL reports changes only): the client,
				// told the backend's own default by a RESET or DISCARD
				// ALL, learns the value the backend now has.
				if err := ss.tellReported(bs); err != nil {
					ss.srv.pool.Release(be)
					return nil, nil, err
				}
			}
		}
		bs.unnamed = 0
	}
	if be.RanQuery { // a simple Query ran on it (the pool's validation, applyParams)
		be.RanQuery = false
		bs.unnamed = 0
	}
	ss.mu.Lock()
	if ss.guardFired && ss.guardErr != nil { // (client_idle_timeout fired as the wait ended)
		ss.mu.Unlock()
		ss.srv.pool.Release(be)
		ss.endGuard()
		return nil, nil, errGuardEnded
	}
	if ss.closing || ss.ctx.Err() != nil { // (Acquire hands out an idle backend whatever the context says)
		ss.mu.Unlock()
		ss.srv.pool.Release(be)
		return nil, nil, errShutdown()
	}
	if ss.endRequestLocked() {
		// The client cancelled the request while it waited; nothing of it
		// ran (what applyParams set stays on the backend, as the books say).
		ss.mu.Unlock()
		ss.srv.pool.Release(be)
		return nil, nil, ss.answerRefusal(batch, errWaitCancelled())
	}
	if pre != nil {
		// Not before: a backend given back above never got pre.
		bs.paramsKey, bs.params = ss.paramsKey, ss.paramsKeys
	}
	ss.be = be
	ss.pending = syncs
	ss.boundary = boundary
	ss.busySince = t1
	ss.endsExec = ss.batch&batchEndsExec != 0
	ss.sent++
	ss.expect = ss.expect[:0]
	ss.undo = ss.undo[:0] // (settled before the last backend went back; none owed to a new one)
	clear(ss.portalActs)  // (portals live on one backend)
	ss.segFailed = false
	ss.unnamedOp = 0
	ss.undoN.Store(0)
	ss.segSent = uint64(swallow)
	ss.attachSegs = ss.segSent
	ss.cancelAfter = false
	ss.segRecv = 0
	ss.resetRecsLocked(swallow)
	ss.execsDone.Store(0)
	ss.beWoken = false
	ss.inCopy, ss.copyEnded = false, false
	rd := backendReaders.Get().(*wire.Reader)
	rd.Reset(be)
	if ss.tracking && ss.pinned == "" {
		// Transaction mode: the client loop reads the answer itself (see
		// relaySync); a pump starts only when one is needed.
		ss.pumpDone = nil
		ss.mu.Unlock()
		ss.syncRd, ss.swallow = rd, swallow
		return be, pre, nil
	}
	done := make(chan struct{})
	ss.pumpDone = done
	ss.mu.Unlock()
	go ss.pump(be, rd, done, swallow)
	return be, pre, nil
}

// detachIdleLocked gives back be, attached to a session between
// transactions with nothing pending, whose pump (if any) is waiting for
// backend data that will not come. It is called with mu held and releases
// it.
func (ss *session) detachIdleLocked(be *pool.Conn) {
	ss.be = nil
	done := ss.pumpDone
	ss.pumpDone = nil
	ss.copyEnded = false
	ss.idleSince = ss.srv.now()
	ss.mu.Unlock()
	if done == nil && ss.syncRd != nil {
		backendReaders.Put(ss.syncRd)
		ss.syncRd = nil
	}
	ss.giveBackIdle(be, done)
}

// giveBackIdle stops the pump of be (done, if not nil), which the session
// no longer holds, and gives be back to the pool.
func (ss *session) giveBackIdle(be *pool.Conn, done chan struct{}) {
	if done != nil {
		_ = be.SetReadDeadline(time.Now()) // the pump sees it is no longer its backend and ends
		<-done
		_ = be.SetReadDeadline(time.Time{})
	}
	if stateOf(be.State).discard {
		ss.srv.pool.Discard(be)
		return
	}
	ss.srv.pool.Release(be)
}

// applyParams sets the client's startup parameters on be with sql and
// waits for the answer. A value the server refuses ends the session with
// the server's error as FATAL (the backend, whose implicit transaction
// rolled back, goes back to the pool as it was); a failed backend is
// discarded.
func (ss *session) applyParams(be *pool.Conn, sql string) error {
	ctx, cancel := context.WithTimeout(ss.ctx, paramsTimeout)
	defer cancel()
	var report []byte
	bs := stateOf(be.State)
	err := be.ExecReport(ctx, sql, func(name, value string) {
		bs.reported[name] = value
		ss.mu.Lock()
		report = ss.tellLocked(report, name, value)
		ss.mu.Unlock()
	})
	var pe *pgconn.PgError
	switch {
	case err == nil:
		ss.ts.setParamsKnown(ss.paramsKey, true)
		if len(report) > 0 {
			// Values the client was told otherwise (reportLocked).
			if err := ss.writeClient(report); err != nil {
				ss.srv.pool.Release(be)
				return err
			}
		}
		return nil
	case errors.As(err, &pe):
		ss.srv.pool.Release(be)
		ss.log.Info("backend refused the client's startup parameters", zap.String("sqlstate", pe.Code), zap.String("error", pe.Message))
		fe := *pe
		fe.Severity, fe.SeverityUnlocalized = "FATAL", "FATAL"
		return &fe
	default:
		ss.srv.pool.Discard(be)
		return errBackendDown(err)
	}
}

// paramsTimeout bounds applyParams.
const paramsTimeout = 15 * time.Second

// answerRefusal replies to a batch the router could not run: an
// ErrorResponse and a ReadyForQuery for each request it contained, each
// refused as PostgreSQL would refuse it, so that none of a pipeline looks
// as if it ran. A request the batch leaves unfinished gets the error
// alone, and later messages are skipped up to the next Sync.
func (ss *session) answerRefusal(batch []byte, refusal *clientError) error {
	n, boundary := countSyncs(batch, 0)
	var out []byte
	for range n {
		out = encodeError(out, refusal)
		out = append(out, readyIdle...)
	}
	if !boundary {
		out = encodeError(out, refusal)
		ss.skipToSync = true
	}
	ss.mu.Lock()
	ss.idleSince = ss.srv.now()
	ss.mu.Unlock()
	return ss.writeClient(out)
}

// acquireError turns a failed acquire into the client's error.
func (ss *session) acquireError(err error, login bool) error {
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.Is(err, pool.ErrWaitTimeout):
		e := ss.poolTimeout(err)
		if login {
			e.severity = "FATAL"
		}
		return e
	case errors.Is(err, pool.ErrTenantRemoved), errors.Is(err, pool.ErrUnknownTenant):
		return errTenantRemoved(ss.ts.name)
	case errors.Is(err, pool.ErrClosed), errors.Is(err, context.Canceled):
		return errShutdown()
	default:
		ss.log.Warn("backend connect failed", zap.Error(err))
		return errBackendDown(err)
	}
}

// poolTimeout is the client's error for an Acquire that ran out of
// pool_wait_timeout, waiting for a connection or for admission under
// backend.max_active_transactions.
func (ss *session) poolTimeout(err error) *clientError {
	wait := ss.ts.tenant().Policy.PoolWaitTimeout.String()
	if errors.Is(err, pool.ErrAdmitTimeout) {
		_, limit := ss.srv.pool.ActiveTransactions()
		return errAdmitTimeout(ss.ts.name, wait, limit)
	}
	return errPoolTimeout(ss.ts.name, wait)
}

// pump forwards backend messages to the client until the backend can go
// back to the pool, the client loop takes it, or either side fails.
func (ss *session) pump(be *pool.Conn, rd *wire.Reader, done chan struct{}, swallow int) {
	defer close(done)
	defer backendReaders.Put(rd)
	defer func() {
		if r := recover(); r != nil {
			ss.log.Error("pump panic", zap.Any("panic", r), zap.Stack("stack"))
			ss.kill(errInternal())
		}
	}()
	var obuf []byte
	ss.relay(be, rd, &swallow, &obuf, false)
}

// relaySync is the transaction-mode fast path: the client loop has just
// written a batch and reads the answer itself, so a one-round-trip
// transaction costs no goroutine and no hand-off. It returns when every
// request is answered. A pump takes over when one is needed: when the
// client must be able to send while the backend talks (COPY FROM STDIN, a
// batch without Sync), or when the session got pinned (notifications may
// arrive while it is idle).
func (ss *session) relaySync(be *pool.Conn) {
	ss.mu.Lock()
	waiting := ss.pending > 0 && ss.boundary
	ss.mu.Unlock()
	if !waiting {
		ss.handOver(be)
		return
	}
	switch ss.relay(be, ss.syncRd, &ss.swallow, &ss.robuf, true) {
	case relayDone:
		backendReaders.Put(ss.syncRd)
		ss.syncRd = nil
	case relayIdle:
		// Every request answered inside a transaction: the backend stays
		// attached and the next batch is relayed the same way.
	case relayHandOver:
		ss.handOver(be)
	}
}

// handOver starts a pump for the backend the client loop was reading.
func (ss *session) handOver(be *pool.Conn) {
	rd := ss.syncRd
	ss.syncRd = nil
	done := make(chan struct{})
	ss.mu.Lock()
	ss.pumpDone = done
	ss.mu.Unlock()
	go ss.pump(be, rd, done, ss.swallow)
}

// relayEnd says why relay returned.
type relayEnd int

const (
	relayDone     relayEnd = iota // the relay is over: backend released, discarded, lost, or the client failed
	relayIdle                     // sync: every request answered, the backend stays attached
	relayHandOver                 // sync: a pump must take over
)

// relay forwards backend messages to the client. The first *swallow
// response groups (up to their ReadyForQuery) answer statements the router
// sent itself and are not forwarded; neither are the ParseComplete and
// CloseComplete messages of Parses and Closes it added. In sync mode it
// returns once every request is answered; otherwise it runs until the
// backend goes back to the pool, the client loop takes it, or a side fails.
func (ss *session) relay(be *pool.Conn, rd *wire.Reader, swallowp *int, obufp *[]byte, sync bool) relayEnd {
	bs := be.State.(*backendState)
	swallow := *swallowp
	defer func() { *swallowp = swallow }()
	obuf := (*obufp)[:0] // used only when a batch has messages to drop
	defer func() { *obufp = obuf[:0] }()
	for {
		if err := rd.Fill(0); err != nil {
			ss.pumpReadFailed(be, err)
			return relayDone
		}
		ss.beReads.Add(1)
		pos, start := 0, 0
		dropped := false
		release := false
		drainNow := false
		answered := false
		copyIn := false
		finished := false // an Execute finished or failed: without a Sync, the client's turn
		var tell []byte   // ParameterStatus messages to send in place of a dropped frame
		var endErr *clientError
		for {
			typ, total, ok, err := rd.Header(pos)
			if err != nil {
				ss.pumpReadFailed(be, err)
				return relayDone
			}
			if !ok {
				break
			}
			if pos+total > rd.Buffered() {
				if pos == 0 && total > len(rd.Buf()) {
					// A frame larger than the buffer (a big row): stream it.
					var dst io.Writer = clientWriter{ss}
					if swallow > 0 {
						dst = io.Discard
					} else if typ == 'E' {
						ss.backendError(bs, rd.Bytes()[5:]) // (its start)
					} else if answersMsg(typ) {
						ss.answers.Add(1) // (a RowDescription of many columns)
					}
					if err := rd.StreamBody(dst, total); err != nil {
						ss.pumpStreamFailed(be, err)
						return relayDone
					}
					ss.beReads.Add(1)
					pos = -1
				}
				break
			}
			drop := swallow > 0
			switch typ {
			case 'Z':
				if total != 6 {
					ss.pumpReadFailed(be, errors.New("malformed ReadyForQuery from backend"))
					return relayDone
				}
				ss.execsDone.Store(0)
				ss.answers.Store(0)
				if swallow > 0 {
					swallow--
					ss.mu.Lock()
					ss.segRecv++
					ss.popRecsLocked(1)
					ss.skipLocked(bs, ss.segRecv)
					if swallow == 0 && ss.toldCheck && bs.paramsKey == ss.paramsKey {
						// The router's statement in front of the request
						// reported only what it changed: tell the client
						// the rest of what the backend has now (after a
						// RESET or DISCARD ALL, see attach).
						ss.toldCheck = false
						for name, v := range bs.reported {
							tell = ss.tellLocked(tell, name, v)
						}
					}
					late := ss.cancelAfter && ss.segRecv >= ss.attachSegs
					if late {
						ss.cancelAfter = false
					}
					ss.mu.Unlock()
					if late {
						go ss.cancelRunning()
					}
					break
				}
				var owned, idle, done bool
				release, owned, idle, done = ss.readyForQuery(be, rd.Bytes()[pos+5])
				drainNow = drainNow || idle
				answered = answered || done
				if !owned {
					return relayDone // the client loop took the backend
				}
				// A cancel taken while this request was still in flight
				// (up to the ReadyForQuery just counted) lands before its
				// client has the answer and can send its next request;
				// none is taken for a session with nothing in flight.
				be.WaitCancel()
			case 'C', 's', 'I':
				finished = true
				ss.execsDone.Add(1) // an Execute (or a Query's statement) finished
				if typ == 'C' && ss.copyActive.Load() {
					ss.copyActive.Store(false) // a COPY FROM STDIN ended
				}
				if typ == 'C' && ss.undoN.Load() > 0 {
					tag, _, _ := splitCString(rd.Bytes()[pos+5 : pos+total])
					ss.mu.Lock()
					ss.confirmLocked(string(tag))
					ss.mu.Unlock()
				}
			case 'S':
				ss.mu.Lock()
				drop = ss.reportLocked(bs, rd.Bytes()[pos+5:pos+total], drop)
				ss.mu.Unlock()
				if err := misreadParam(rd.Bytes()[pos+5 : pos+total]); err != nil {
					// The session changed how the server reads SQL: the
					// router's lexer would read it otherwise from here on
					// and could miss a statement with session effects. The
					// backend is never reused, so nothing the session hid
					// outlives it.
					bs.discard = true
					ss.mu.Lock()
					if !ss.guardFired {
						// Ended once what came before is written: a
						// write under way would keep the FATAL out.
						endErr = err
					}
					ss.guardFired = true
					ss.mu.Unlock()
				}
			case 'G', 'W':
				copyIn = true
				ss.copyAt.Store(ss.answers.Load() + 1)
				ss.copyActive.Store(true)
				ss.mu.Lock()
				ss.inCopy, ss.copyEnded, ss.copyDone = true, false, false
				ss.copyStartedLocked()
				ss.mu.Unlock()
			case '1', '3':
				if !drop && ss.tracking {
					ss.mu.Lock()
					drop = ss.expectLocked(bs, typ)
					ss.mu.Unlock()
				}
			case 'E':
				if swallow > 0 {
					// Parameters the tenant's backends took before were
					// refused now (a role lost a grant, say): the request
					// behind them runs without them. Drop the backend,
					// whose settings are not what the books say, and end
					// the session at its next boundary.
					var er pgproto3.ErrorResponse
					_ = er.Decode(rd.Bytes()[pos+5 : pos+total])
					ss.log.Warn("backend refused the client's startup parameters", zap.String("sqlstate", er.Code), zap.String("error", er.Message))
					bs.discard = true
					ss.ts.setParamsKnown(ss.paramsKey, false)
					ss.drain(fatal(ReasonBackendDown, er.Code, "", "the server refused this session's startup parameters: %s", er.Message))
					break
				}
				finished = true
				code := ss.backendError(bs, rd.Bytes()[pos+5:pos+total])
				if code == "57014" {
					if e := ss.takeRouterCancel(); e != nil {
						// The router cancelled it: say which limit did.
						obuf = append(obuf, rd.Bytes()[start:pos]...)
						obuf = encodeError(obuf, e)
						start = pos + total
						dropped = true
					}
				}
				if ss.tracking && code == "08P01" && string(errorField(rd.Bytes()[pos+5:pos+total], 'R')) == "PortalSetResultFormat" {
					// The client's result formats are for columns its
					// statement no longer has: the router prepared it
					// again on this backend after a schema change changed
					// its result. PostgreSQL would refuse the statement
					// itself; say so as it would, so that drivers prepare
					// it again (pgjdbc does).
					obuf = append(obuf, rd.Bytes()[start:pos]...)
					obuf = appendResultChanged(obuf, rd.Bytes()[pos:pos+total])
					start = pos + total
					dropped = true
				}
			}
			if drop {
				obuf = append(obuf, rd.Bytes()[start:pos]...)
				start = pos + total
				dropped = true
				if tell != nil {
					obuf = append(obuf, tell...)
					tell = nil
				}
			} else if answersMsg(typ) {
				ss.answers.Add(1)
			}
			pos += total
			if release || endErr != nil {
				break
			}
		}
		if pos < 0 {
			ss.pollHold()
			continue
		}
		out := rd.Bytes()[:pos]
		if dropped {
			obuf = append(obuf, rd.Bytes()[start:pos]...)
			out = obuf
		}
		if release {
			leftover := rd.Buffered() - pos
			giveBack := func() {
				if leftover == 0 && !bs.discard {
					ss.srv.pool.Release(be)
				} else if leftover == 0 {
					ss.srv.pool.Discard(be)
				} else {
					ss.log.Warn("backend sent data after ReadyForQuery; discarding it")
					ss.srv.pool.Discard(be)
				}
			}
			// The client loop relaying itself (sync) forwards nothing
			// until this returns, so the backend goes back before the
			// answer is written. A pump answers first: once the backend
			// is back, the client loop may attach the client's next
			// request and write its answer ahead of this one.
			if sync {
				giveBack()
				ss.srv.hook(hookSyncRelease)
			} else {
				ss.srv.hook(hookPumpRelease)
			}
			err := ss.writeClient(out)
			if !sync {
				giveBack()
			}
			rd.Discard(rd.Buffered())
			if err != nil {
				ss.clientWriteFailed()
			}
			ss.afterBoundary()
			return relayDone
		}
		if len(out) > 0 {
			if finished {
				// As at a ReadyForQuery: an Execute's end (a batch
				// without Sync, a cursor fetched in steps) gives the
				// client its turn too, and a cancel on its way for it
				// must land before the client can send its next one.
				be.WaitCancel()
			}
			if !sync {
				ss.srv.hook(hookPumpOut)
			}
			if err := ss.writeClient(out); err != nil {
				ss.clientWriteFailed()
				return relayDone
			}
		}
		rd.Discard(pos)
		obuf = obuf[:0]
		if endErr != nil {
			ss.end(endErr)
			return relayDone
		}
		ss.pollHold()
		if drainNow {
			ss.afterBoundary() // a session that keeps its backend, at a boundary
		}
		if sync {
			switch {
			case copyIn:
				return relayHandOver
			case answered:
				ss.mu.Lock()
				pinned := ss.pinned != ""
				ss.mu.Unlock()
				if pinned {
					return relayHandOver
				}
				return relayIdle
			}
		}
	}
}

// reportLocked accounts for a ParameterStatus (body p) on its way to the
// client, or in the answer to the router's own statements (hidden) that
// give a backend the client's parameters. The client learns a value that
// differs from the last one it was told (told): after a RESET or DISCARD
// ALL, the backend reported its own session default, and the client's
// comes back with its next request. It reports whether to drop p.
func (ss *session) reportLocked(bs *backendState, p []byte, hidden bool) (drop bool) {
	name, rest, ok := splitCString(p)
	if !ok {
		return hidden
	}
	value, _, _ := splitCString(rest)
	if bs.reported != nil && bs.reported[string(name)] != string(value) {
		bs.reported[string(name)] = string(value)
	}
	if hidden && ss.told[string(name)] == string(value) {
		return true
	}
	if ss.told == nil {
		ss.told = make(map[string]string)
	}
	ss.told[string(name)] = string(value)
	return false
}

// tellReported sends the client the values bs reports that differ from
// what it was told.
func (ss *session) tellReported(bs *backendState) error {
	var b []byte
	ss.mu.Lock()
	ss.toldCheck = false
	for name, v := range bs.reported {
		b = ss.tellLocked(b, name, v)
	}
	ss.mu.Unlock()
	if len(b) == 0 {
		return nil
	}
	return ss.writeClient(b)
}

// tellLocked appends to b a ParameterStatus of name if the client was told
// another value.
func (ss *session) tellLocked(b []byte, name, value string) []byte {
	if ss.told[name] == value {
		return b
	}
	ss.told[name] = value
	b, _ = (&pgproto3.ParameterStatus{Name: name, Value: value}).Encode(b)
	return b
}

// backendError accounts for an ErrorResponse that answers the client (body
// may be the start of one too big for the buffer) and returns its
// SQLSTATE: the backend skips the rest up to the Sync.
func (ss *session) backendError(bs *backendState, body []byte) string {
	ss.execsDone.Store(execsSettled)
	if ss.copyActive.Load() {
		ss.copyActive.Store(false)
	}
	code := sqlstate(body)
	ss.mu.Lock()
	if ss.inCopy {
		ss.copyErr = true
	}
	ss.mu.Unlock()
	if len(code) == 5 {
		ss.ts.stats.Errors.Inc(code[:2])
	}
	if code == "25006" {
		// Read-only: possibly the old writer after a failover. This
		// backend is not reused, and the pool checks the others before
		// handing them out.
		bs.discard = true
		ss.srv.suspectBackends()
	}
	if !ss.tracking {
		ss.mu.Lock()
		ss.segFailed = true // (a Query held behind it is dropped: holdQuery)
		ss.mu.Unlock()
		return code
	}
	ss.mu.Lock()
	ss.skipSegmentLocked(bs)
	switch code {
	case "26000":
		ss.healLocked(bs, errorField(body, 'M'))
	case "0A000":
		if string(errorField(body, 'R')) == "RevalidateCachedQuery" {
			// A statement the backend prepared before a schema change,
			// which changed its result: it fails at every use from now
			// on, for every client whose statement is that text. Prepare
			// them all again.
			ss.unsureActLocked(bs)
		}
	}
	ss.mu.Unlock()
	return code
}

// readyForQuery accounts for a ReadyForQuery. It reports whether the
// backend is to be released now (detaching it), whether the relay still
// owns it, whether the session is now between transactions, and whether
// every request sent so far is answered.
func (ss *session) readyForQuery(be *pool.Conn, status byte) (release, owned, idle, answered bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.be != be {
		return false, false, false, false
	}
	ss.segRecv++
	segs, failed := uint64(1+ss.ignoredSyncs), ss.segFailed
	ss.segFailed = false
	if ss.inCopy {
		ss.copyEndedLocked()
	}
	ss.popRecsLocked(1)
	// Nothing but copy messages follows the last sync point: the end of a
	// COPY (by an error), or copy data a client pipelined behind a COPY
	// Query that failed before it started (pgx's CopyFrom does not wait
	// for the CopyInResponse), which the backend ignores just the same.
	copyEnded := ss.tailClean
	ss.inCopy = false
	if ss.pending > 0 {
		ss.pending--
	}
	if ss.ignoredSyncs > 0 {
		// The ReadyForQuery that ends a COPY also stands for the Syncs
		// the backend ignored in copy-in mode (copysync.go).
		ss.segRecv += uint64(ss.ignoredSyncs)
		ss.popRecsLocked(ss.ignoredSyncs)
		ss.pending = max(ss.pending-ss.ignoredSyncs, 0)
		ss.ignoredSyncs = 0
	}
	if !ss.unsure {
		// Parses and Closes of the segments answered that got no answer
		// were skipped: sent after an error, before the Sync.
		ss.skipLocked(be.State.(*backendState), ss.segRecv)
	}
	ss.txStatus = status
	if len(ss.portalActs) > 0 {
		ss.settlePortalActsLocked(status, segs, failed)
	}
	if ps := ss.paramSet; ps != nil && ps.seg < ss.segRecv {
		ss.settleParamSetLocked(be.State.(*backendState), status == 'I' && !failed)
	}
	now := ss.srv.now()
	st := &ss.ts.stats
	st.QueryDuration.Observe(now.Sub(ss.busySince))
	if status == 'I' {
		st.Transactions.Add(1)
	}
	ss.routerCancel = 0
	if ss.pending > 0 {
		ss.busySince = now // the next request's turn
	} else {
		ss.idleSince = now
	}
	if copyEnded && ss.pending == 0 && !ss.boundary {
		// A COPY ended (by an error) while its client may still be
		// sending data, which kept the session short of a boundary. It is
		// between requests now; the backend stays attached all the same
		// (the client loop may be writing to it) until the client's next
		// message: more copy data is then dropped and the backend given
		// back (attach), anything else runs on it.
		ss.boundary = true
		ss.copyEnded = true
		ss.idleSince = now
		if status == 'I' && ss.pinned != "" && !ss.waiting {
			ss.srv.pool.Pinned(be) // its transaction is over (see below)
		}
		ss.answering = status == 'I'
		return false, true, status == 'I', true
	}
	answered = ss.pending == 0 && ss.boundary
	idle = answered && status == 'I'
	// Idle, but the answer is still to be written: drain leaves the
	// session's end to the relay's afterBoundary.
	ss.answering = idle
	if idle && ss.unpinAt != 0 {
		ss.unpinLocked()
	}
	if idle && ss.pinned != "" && !ss.waiting {
		// The transaction is over; the next one is readmitted (attach).
		// (Not while attach waits in Readmit, which owns the count then:
		// only an unsure session, whose count of answers errs low, gets a
		// ReadyForQuery then, for a request answered already.)
		ss.srv.pool.Pinned(be)
	}
	if idle && ss.tracking && ss.pinned == "" {
		ss.be = nil
		if ss.beWoken {
			// kill set a deadline to wake the client loop, which read this
			// ReadyForQuery first: the next client must not inherit it.
			_ = be.SetReadDeadline(time.Time{})
			ss.beWoken = false
		}
		return true, true, true, true
	}
	return false, true, idle, answered
}

// afterBoundary ends a draining session once its transaction is over and
// the reader has written the answer that says so.
func (ss *session) afterBoundary() {
	ss.mu.Lock()
	ss.answering = false // (the answer is written: a drain may end it now)
	draining := ss.drainErr != nil
	ss.mu.Unlock()
	if draining {
		ss.endDrained()
	}
}

// pumpReadFailed handles a backend read error: unless the client loop has
// taken the backend (it stops the pump that way), the backend is broken.
func (ss *session) pumpReadFailed(be *pool.Conn, err error) {
	ss.mu.Lock()
	mine := ss.be == be
	woken := ss.beWoken
	running := ss.pending > 0 || !ss.boundary
	if mine {
		ss.be = nil
	}
	ss.mu.Unlock()
	if !mine {
		return
	}
	if woken && isTimeout(err) {
		// kill's wake-up, not a failure: the session is ending already,
		// perhaps in the middle of a statement.
		if running {
			ss.cancelOrphan(be)
		}
		ss.srv.pool.Discard(be)
		return
	}
	ss.srv.pool.Discard(be)
	ss.srv.suspectBackends() // the cluster may have restarted or failed over
	ss.ts.stats.SessionCloses.Inc(stats.CloseBackendLost)
	ss.log.Warn("backend connection lost", zap.Error(err))
	ss.kill(errBackendDown(err))
}

func (ss *session) pumpStreamFailed(be *pool.Conn, err error) {
	var we clientWriteError
	if errors.As(err, &we) {
		ss.clientWriteFailed()
		return
	}
	ss.pumpReadFailed(be, err)
}

func (ss *session) clientWriteFailed() {
	ss.mu.Lock()
	ss.pumpFailed = true
	ss.mu.Unlock()
	ss.srv.parker.wake(ss)
	_ = ss.nc.Close() // wakes the client loop, which cleans up
}

// detachAtExit decides the fate of a backend still attached when the client
// loop ends: reset and reuse it if it is provably idle (session mode), else
// close it. It waits for the pump to exit.
func (ss *session) detachAtExit() {
	if rd := ss.syncRd; rd != nil {
		ss.syncRd = nil
		defer backendReaders.Put(rd)
		if rd.Buffered() > 0 {
			ss.mu.Lock()
			ss.pumpFailed = true // unread bytes: the backend is not reusable
			ss.mu.Unlock()
		}
	}
	ss.mu.Lock()
	ss.closing = true
	be, done := ss.be, ss.pumpDone
	ss.be = nil
	reuse := be != nil && !ss.pumpFailed && !ss.unsure && ss.pending == 0 && ss.boundary && ss.txStatus == 'I' && !stateOf(be.State).discard
	running := be != nil && (ss.pending > 0 || !ss.boundary)
	ss.mu.Unlock()
	if be != nil {
		if reuse {
			_ = be.SetReadDeadline(time.Now()) // stop the pump without closing
		} else {
			_ = be.Close()
		}
	}
	if done != nil {
		<-done
	}
	if be == nil {
		return
	}
	if !reuse {
		if running {
			ss.cancelOrphan(be)
		}
		ss.srv.pool.Discard(be)
		return
	}
	_ = be.SetReadDeadline(time.Time{})
	// Session mode and pinned sessions leave session state behind: reset
	// it (advisory locks survive DISCARD ALL, so release them first).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := be.Exec(ctx, "SELECT pg_catalog.pg_advisory_unlock_all()")
	if err == nil {
		// (What the backend reports now is what the next client that
		// gets it may be told: tellReported.)
		bs := stateOf(be.State)
		err = be.ExecReport(ctx, "DISCARD ALL", func(name, value string) {
			if bs.reported != nil {
				bs.reported[name] = value
			}
		})
	}
	if err != nil {
		ss.log.Info("backend reset failed; closing it", zap.Error(err))
		ss.srv.pool.Discard(be)
		return
	}
	be.State.(*backendState).forget()
	ss.srv.pool.Release(be)
}

// cancelRunning forwards a client's CancelRequest to the backend serving it
// right now. The backend is held for the cancel (pool.Conn.HoldForCancel)
// while mu shows the request still running, so that the cancel cannot hit
// another client's query (Release waits) nor this client's next one (the
// relay waits before taking an answer); mu itself is not held while the
// cancel connects, which can take seconds.
func (ss *session) cancelRunning() {
	ss.mu.Lock()
	be := ss.be
	if be == nil && ss.requesting && !ss.waitCancelled {
		// The request waits for a backend: it ends unrun (57014).
		ss.waitCancelled = true
		ss.waitCancel()
		ss.mu.Unlock()
		ss.ts.stats.Cancels.Inc(stats.CancelClient)
		return
	}
	if be == nil || ss.pending == 0 && ss.boundary {
		ss.mu.Unlock()
		return // nothing of the client's can be running
	}
	if ss.segRecv < ss.attachSegs {
		ss.cancelAfter = true // (relay)
		ss.mu.Unlock()
		return
	}
	unhold, ok := be.HoldForCancel()
	ss.mu.Unlock()
	if !ok {
		return // a cancel is on its way already
	}
	defer unhold()
	ss.ts.stats.Cancels.Inc(stats.CancelClient)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := be.Cancel(ctx); err != nil {
		ss.log.Info("cancel forward failed", zap.Error(err))
	}
}

// cancelOrphan cancels what a backend given up in the middle of a request
// still runs (the client left, or was ended, while its statement ran).
// Closing the socket does not stop it: PostgreSQL notices a client gone
// only when it next reads or writes, so a long statement would run on, a
// backend outside every pool and budget, after its slot was given to
// another. The slot stays taken until the server has the cancel.
func (ss *session) cancelOrphan(be *pool.Conn) {
	unhold, ok := be.HoldForCancel()
	if !ok {
		return // the client's own cancel is on its way
	}
	defer unhold()
	ss.ts.stats.Cancels.Inc(stats.CancelSessionEnd)
	ctx, cancel := context.WithTimeout(context.Background(), ss.srv.config().Backend.ConnectTimeout)
	defer cancel()
	if err := be.Cancel(ctx); err != nil {
		ss.log.Info("cancel of the departed client's statement failed", zap.Error(err))
	}
}

// drain ends the session with err now if it is between transactions, or
// marks it to end at its next boundary.
func (ss *session) drain(err *clientError) {
	ss.mu.Lock()
	// (Not while the relay that gave the backend back still writes its
	// answer: its afterBoundary ends the session then.)
	idle := !ss.answering && (ss.be == nil || (ss.pending == 0 && ss.boundary && ss.txStatus == 'I'))
	if ss.drainErr == nil {
		ss.drainErr = err
	}
	ss.mu.Unlock()
	if idle {
		ss.endDrained()
	}
}

// endDrained ends a draining session, counting why.
func (ss *session) endDrained() {
	ss.mu.Lock()
	err := ss.drainErr
	ss.mu.Unlock()
	if ss.ts != nil {
		ss.ts.stats.SessionCloses.Inc(string(err.reason))
	}
	ss.kill(err)
}

// kill sends err to the client (if it is one we can report) and closes the
// connection; the session's goroutines then wind down.
func (ss *session) kill(err error) {
	var ce *clientError
	ss.mu.Lock()
	if errors.As(err, &ce) && ss.endReason == "" {
		ss.endReason = ce.reason
	}
	if ss.be != nil && ss.pumpDone == nil {
		// The client loop may be waiting for the backend's answer: wake it.
		_ = ss.be.SetReadDeadline(time.Now())
		ss.beWoken = true
	}
	ss.mu.Unlock()
	ss.cancel()
	ss.mu.Lock()
	if ss.waitCancel != nil {
		ss.waitCancel() // (after ss.cancel: a wait it ends sees the session ending)
	}
	ss.mu.Unlock()
	if ss.lockWriteWithin(10 * time.Millisecond) {
		_ = ss.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = ss.nc.Write(encodeError(nil, err))
		ss.wmu.Unlock()
	}
	// Otherwise a write is under way, perhaps stuck on a client that stopped
	// reading; waiting for it could take forever, and an error spliced
	// into the middle of a message would be garbage anyway. Closing the
	// socket ends that write.
	ss.srv.parker.wake(ss) // a parked session wakes to see the connection closed
	_ = ss.nc.Close()
}

// lockWriteWithin takes the client write lock if it comes free within d:
// the watchdog holds it for an instant to see whether a write is under
// way, and a short answer may be on its way out; a write stuck on a client
// that stopped reading is not waited for.
func (ss *session) lockWriteWithin(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !ss.wmu.TryLock() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Microsecond)
	}
	return true
}

// writeError writes the messages in prefix, then err as an ErrorResponse,
// within a second.
func (ss *session) writeError(prefix []byte, err error) {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	_ = ss.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = ss.nc.Write(encodeError(prefix, err))
}

func (ss *session) writeClient(b []byte) error {
	if ss.ts != nil {
		ss.ts.stats.BytesOut.Add(uint64(len(b)))
	}
	ss.wmu.Lock()
	_, err := ss.nc.Write(b)
	ss.wmu.Unlock()
	return err
}

// clientWriter adapts the session's client side for streaming, marking
// write errors so they are not mistaken for backend failures.
type clientWriter struct{ ss *session }

type clientWriteError struct{ error }

func (w clientWriter) Write(b []byte) (int, error) {
	w.ss.beReads.Add(1) // a piece of a large frame read from the backend: progress
	if err := w.ss.writeClient(b); err != nil {
		return 0, clientWriteError{err}
	}
	return len(b), nil
}

// syncIndex returns the offset just past the first Sync in a batch of whole
// messages, or -1.
func syncIndex(batch []byte) int {
	for pos := 0; pos+5 <= len(batch); {
		n := 1 + int(uint32(batch[pos+1])<<24|uint32(batch[pos+2])<<16|uint32(batch[pos+3])<<8|uint32(batch[pos+4]))
		if batch[pos] == 'S' {
			return pos + n
		}
		pos += n
	}
	return -1
}

// batchFlags describe a batch of client messages. forwardClient sets them
// (session.batch) as it reads the headers, so that nothing downstream scans
// the batch again.
type batchFlags uint8

const (
	batchCopy     batchFlags = 1 << iota // CopyData, CopyDone or CopyFail
	batchOther                           // any other message
	batchExecute                         // an Execute
	batchDirty                           // a message other than COPY data after the batch's last sync point
	batchEndsExec                        // its last message other than Flush is an Execute
	batchCopyEnd                         // CopyDone or CopyFail
)

// add accounts for one more message, of type typ.
func (f batchFlags) add(typ byte) batchFlags {
	switch typ {
	case 'd':
		return f&^batchEndsExec | batchCopy
	case 'c', 'f':
		return f&^batchEndsExec | batchCopy | batchCopyEnd
	case 'H':
		return f
	case 'Q', 'S', 'F':
		return f&^(batchDirty|batchEndsExec) | batchOther
	case 'E':
		return f | batchOther | batchExecute | batchDirty | batchEndsExec
	}
	return f&^batchEndsExec | batchOther | batchDirty
}

// classify describes a batch of whole messages (for a batch the router cut).
func classify(batch []byte) (f batchFlags) {
	for pos := 0; pos+5 <= len(batch); {
		f = f.add(batch[pos])
		pos += 1 + int(binary.BigEndian.Uint32(batch[pos+1:pos+5]))
	}
	return f
}

// countMsgs counts the messages of type typ in a batch of whole messages.
func countMsgs(batch []byte, typ byte) (n int) {
	for pos := 0; pos+5 <= len(batch); pos += 1 + int(binary.BigEndian.Uint32(batch[pos+1:pos+5])) {
		if batch[pos] == typ {
			n++
		}
	}
	return n
}

// countSyncs counts request-ending messages in a batch of whole messages and
// tells whether the batch ends at a request boundary, as forwardClient does;
// execs is the number of Executes written since the last sync point, and
// the batch starts with no extended-protocol messages open.
func countSyncs(batch []byte, execs int) (n int, boundary bool) {
	open := false
	for pos := 0; pos+5 <= len(batch); {
		l := 1 + int(uint32(batch[pos+1])<<24|uint32(batch[pos+2])<<16|uint32(batch[pos+3])<<8|uint32(batch[pos+4]))
		switch batch[pos] {
		case 'Q', 'S', 'F':
			n++
			boundary = true
			execs = 0
			open = false
		case 'c', 'f':
			boundary = execs == 0 && !open
		case 'H', 'd':
			boundary = boundary && batch[pos] == 'H'
		case 'E':
			boundary = false
			execs++
			open = true
		default:
			boundary = false
			open = true
		}
		pos += l
	}
	return n, boundary
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
}

func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF)
}

// takeRouterCancel returns the error that replaces a 57014 the router
// caused with max_statement_timeout, or nil when the client (or the
// backend's own statement_timeout) cancelled.
func (ss *session) takeRouterCancel() *clientError {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.routerCancel <= 0 {
		return nil
	}
	lim := ss.routerCancel
	ss.routerCancel = -1 // reported; no second rewrite before the next request
	return errStatementTimeout(lim)
}

// appendResultChanged appends, in place of the ErrorResponse frame, the
// error PostgreSQL gives a prepared statement whose result a schema change
// changed (0A000 from RevalidateCachedQuery), keeping its severity.
func appendResultChanged(b, frame []byte) []byte {
	var src pgproto3.ErrorResponse
	if err := src.Decode(frame[5:]); err != nil {
		return append(b, frame...)
	}
	er := pgproto3.ErrorResponse{Severity: src.Severity, SeverityUnlocalized: src.SeverityUnlocalized,
		Code: "0A000", Message: "cached plan must not change result type", Routine: "RevalidateCachedQuery"}
	out, err := er.Encode(b)
	if err != nil {
		return append(b, frame...)
	}
	return out
}

// misreadParam returns the error that ends a session whose backend
// reports (ParameterStatus body p) a setting under which the router would
// read SQL other than the server does: standard_conforming_strings off, or
// a client-only encoding (see clientParams). Whatever set it (SET, SET
// LOCAL, set_config, a function) is caught here.
func misreadParam(p []byte) *clientError {
	name, rest, _ := splitCString(p)
	value, _, _ := splitCString(rest)
	switch string(name) {
	case "standard_conforming_strings":
		if string(value) != "on" {
			return fatal(ReasonProtocol, "0A000", "", "standard_conforming_strings was set to %s: pgbridge reads SQL with standard_conforming_strings on, and closes the session", value)
		}
	case "client_encoding":
		if clientOnlyEncoding(string(value)) {
			return fatal(ReasonProtocol, "0A000", "Use UTF8, the server's encoding, or another encoding PostgreSQL can use on the server.",
				"client_encoding was set to %s: pgbridge reads SQL in encodings whose characters never contain a quote or backslash byte, and closes the session", value)
		}
	}
	return nil
}

// sqlstate returns the SQLSTATE (field 'C') of an ErrorResponse or
// NoticeResponse body, "" when absent.
func sqlstate(body []byte) string { return string(errorField(body, 'C')) }

// errorField returns the field of type typ of an ErrorResponse or
// NoticeResponse body, nil when absent.
func errorField(body []byte, typ byte) []byte {
	for len(body) > 0 && body[0] != 0 {
		t := body[0]
		body = body[1:]
		end := 0
		for end < len(body) && body[end] != 0 {
			end++
		}
		if t == typ {
			return body[:end]
		}
		if end == len(body) {
			return nil
		}
		body = body[end+1:]
	}
	return nil
}

// unsafeString views b as a string without copying, for read-only calls
// that do not keep it (the lexer).
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
