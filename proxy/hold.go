package proxy

// A simple Query (or FunctionCall) sent after extended-protocol messages
// with no Sync between them (in session mode too: its count of answers
// tells when it is idle, for the watchdog, a drain and the reset of its
// backend; there a Query the router cannot hold goes out as it is).
//
// PostgreSQL runs such a Query and answers it with a ReadyForQuery of its
// own, unless one of the messages before it failed: then it ignores it,
// like everything else up to the Sync. pgjdbc sends this with
// autosave=always or conservative (its SAVEPOINT right behind an
// extended-protocol BEGIN). The router counts the ReadyForQuery messages
// due to know when a transaction is over, so it must know which case it
// is before the Query goes out: it holds the Query back, writes a Flush
// (which makes the backend send what it has buffered, and changes nothing
// else; a Sync would end the error state and commit an implicit
// transaction), and waits until the backend has answered every message
// of the segment or failed one of them. Each of the client's Parse, Bind,
// Describe, Close and Execute messages gets exactly one answer that ends
// it (answersMsg) unless an earlier one failed: the router adds messages
// of its own but never drops or answers one of the client's. Then the
// Query goes out, or is dropped as PostgreSQL would ignore it.
//
// It costs a round trip, only to the clients that send this. A COPY FROM
// STDIN still waiting for its data (the client sent only CopyData and
// Flush after the Execute that started it), or a session whose count of answers
// is unsure since a COPY failed (copysync.go), cannot be held this way:
// the session ends with 08P01 as before (errQueryInSegment).

// holdResult says what to do with a held Query.
type holdResult int

const (
	holdRun    holdResult = iota // every message before it succeeded: send it
	holdDrop                     // one failed: drop it, as the backend would ignore it
	holdRefuse                   // the router cannot tell: end the session (08P01)
	holdGone                     // the session or its backend ended while it waited
)

var flushMsg = []byte{'H', 0, 0, 0, 4}

// answersMsg reports whether a backend message of type typ ends the answer
// to one extended-protocol message: ParseComplete, BindComplete,
// CloseComplete, NoData or RowDescription (Describe; a statement's
// ParameterDescription comes before one of those), CommandComplete,
// EmptyQueryResponse or PortalSuspended (Execute). An ErrorResponse ends the
// rest of the segment (segFailed).
func answersMsg(typ byte) bool {
	switch typ {
	case '1', '2', '3', 'n', 'T', 'C', 'I', 's':
		return true
	}
	return false
}

// holdQuery holds back the Query or FunctionCall at the front of the client
// buffer, sent after extended-protocol messages with no Sync between, until
// the backend has answered them.
func (ss *session) holdQuery() holdResult {
	if ss.skipToSync {
		// The router failed the request, which never reached a backend:
		// everything up to the Sync is ignored.
		return holdDrop
	}
	ss.mu.Lock()
	be := ss.be
	ss.holdExecLast = ss.execLast
	if be == nil || ss.unsure {
		ss.mu.Unlock()
		return holdRefuse
	}
	ss.mu.Unlock()
	if ss.syncRd != nil {
		ss.handOver(be) // (a batch without Sync has a pump already)
	}
	if _, err := be.Write(flushMsg); err != nil {
		return holdGone
	}
	ch := make(chan holdResult, 1)
	ss.mu.Lock()
	ss.holdCh = ch
	ss.armed.Store(true)
	ss.checkHoldLocked()
	done := ss.pumpDone
	ss.mu.Unlock()
	select {
	case r := <-ch:
		if r == holdRun {
			ss.mu.Lock()
			ss.busySince = ss.srv.now() // the server's work on it starts now
			ss.queryAfterSetLocked()
			ss.mu.Unlock()
		}
		return r
	case <-ss.ctx.Done():
	case <-done:
	}
	ss.mu.Lock()
	ss.holdCh = nil
	ss.armed.Store(false)
	ss.mu.Unlock()
	return holdGone
}

// pollHold resolves a held Query if the answers allow; the relay
// calls it after each read.
func (ss *session) pollHold() {
	if ss.armed.Load() {
		ss.mu.Lock()
		ss.checkHoldLocked()
		ss.mu.Unlock()
	}
}

// checkHoldLocked resolves the held Query once the backend has answered
// every sync point written and every message of the open segment, or
// failed one. The relay calls it after each read while a Query is held;
// answers count what it relayed before it looks at armed, so that the
// client loop, arming after, sees them.
func (ss *session) checkHoldLocked() {
	if ss.holdCh == nil || ss.segRecv != ss.segSent {
		return
	}
	var r holdResult
	switch {
	case ss.unsure || ss.holdExecLast && ss.copyActive.Load() && int(ss.copyAt.Load()) == ss.segMsgs:
		// A COPY FROM STDIN that the client's last Execute started
		// waits for data that will not come before the Sync.
		r = holdRefuse
	case ss.segFailed:
		r = holdDrop
	case int(ss.answers.Load()) >= ss.segMsgs:
		r = holdRun
	default:
		return
	}
	ss.holdCh <- r
	ss.holdCh = nil
	ss.armed.Store(false)
}
