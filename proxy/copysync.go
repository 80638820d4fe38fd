package proxy

import (
	"encoding/binary"

	"github.com/pgbridge/pgbridge/internal/stats"
)

// Syncs a backend ignores in copy-in mode.
//
// PostgreSQL ignores every Sync (and Flush) it reads while a COPY FROM
// STDIN waits for data: such a Sync gets no ReadyForQuery. libpq sends one
// right behind the Execute of every extended-protocol statement, COPY or
// not, and other clients may send them anywhere. The router counts one
// ReadyForQuery per sync point it wrote (segSent, pending), so it must
// know which Syncs the backend will skip, or it would wait for answers
// that never come (the backend never given back) or take the session for
// idle while answers are still due (the backend given back with them).
//
// The backend ignores exactly the Syncs in the run of CopyData, Flush and
// Sync messages right after the message that started the COPY (a Query,
// or an Execute); CopyDone, CopyFail or any other message ends the run
// (anything but copy messages makes the COPY fail). The client loop keeps
// a record of every sync point it writes (syncRec), popped as they are
// answered; when the CopyInResponse comes, the relay finds the statement
// that started the COPY (the segment being answered, and among its
// Executes the one after those already finished) and counts the Syncs of
// the run among those written; while the run goes on, the client loop
// counts the Syncs it adds. The ReadyForQuery that ends the COPY stands
// for all of them.
//
// That holds when the COPY ends by CopyDone. When it ends by an error, the
// Syncs the backend had not read yet are answered in the normal way, and
// nothing the router sees tells how far it had read: bad data, the
// client's CopyFail, a statement trigger or a cancel before the first read
// all end the COPY with an ErrorResponse, and a trigger may raise any
// SQLSTATE (a first version took classes 22 and 23, and 57014 after a
// CopyFail, for proof that the Syncs before the data had been read; a
// statement trigger raising 22012 made the router give the backend back
// with an answer still owed, which the tenant's next client received). One
// case is certain: for a COPY run by an Execute, with no Sync among the
// data, a ReadyForQuery that comes before the client wrote the Sync it
// would answer shows that the backend failed before reading any. Every
// other error with Syncs in the run (and a segment of more Executes than a
// record counts) leaves the router unable to tell how many answers are
// due: the session is then pinned to its backend, which is closed when the
// client leaves rather than reused (stats.PinCopySync), so that whatever
// the backend sends goes to the client that asked for it, as without the
// router. A COPY run as a simple Query with no Sync in flight (psql's
// \copy, pgx's CopyFrom) never meets this; libpq's extended-protocol COPY
// (PQexecParams) that fails pins its session.

// syncRec describes a sync point the client loop wrote.
type syncRec uint32

const (
	recExecs syncRec = 1<<24 - 1 // Executes in its segment (recExecs: that many or more)
	recQuery syncRec = 1 << 24   // a Query (which may start a COPY itself), not a Sync
	recSync  syncRec = 1 << 25   // a Sync
	recRun   syncRec = 1 << 26   // only copy data, Flush and Sync since the last Query or Execute
	recData  syncRec = 1 << 27   // CopyData among them
)

// noteSentLocked accounts for the messages about to be written to the
// backend (whole messages, in order): it records their sync points and
// follows the run of a COPY in progress.
func (ss *session) noteSentLocked(out []byte) {
	for pos := 0; pos+5 <= len(out); {
		typ := out[pos]
		pos += 1 + int(binary.BigEndian.Uint32(out[pos+1:pos+5]))
		switch typ {
		case 'H':
			// Inside a COPY's run, and harmless outside one.
		case 'd':
			ss.runData = true
		case 'f':
			ss.sinceQE = false
			ss.copyRunOpen = false
		case 'S':
			rec := recSync | syncRec(min(ss.tailExecs, int(recExecs)))
			if ss.sinceQE {
				rec |= recRun
				if ss.runData {
					rec |= recData
				}
			}
			ss.recs = append(ss.recs, rec)
			ss.tailExecs = 0
			if ss.copyRunOpen {
				ss.ignoredSyncs++
				if !ss.runData {
					ss.copyLead++
				}
			}
		case 'Q', 'F':
			rec := syncRec(min(ss.tailExecs, int(recExecs)))
			if typ == 'Q' {
				rec |= recQuery
			}
			ss.recs = append(ss.recs, rec)
			ss.tailExecs = 0
			ss.sinceQE, ss.runData = typ == 'Q', false
			ss.copyRunOpen = false
		case 'E':
			ss.tailExecs++
			ss.sinceQE, ss.runData = true, false
			ss.copyRunOpen = false
		default:
			ss.sinceQE = false
			ss.copyRunOpen = false
		}
	}
}

// popRecsLocked forgets the records of n answered (or ignored) sync points.
func (ss *session) popRecsLocked(n int) {
	ss.recHead = min(ss.recHead+n, len(ss.recs))
	if ss.recHead == len(ss.recs) {
		ss.recs, ss.recHead = ss.recs[:0], 0
	}
}

// resetRecsLocked starts the records of a newly attached backend, whose
// first swallow sync points are the router's own Queries.
func (ss *session) resetRecsLocked(swallow int) {
	ss.recs, ss.recHead = ss.recs[:0], 0
	for range swallow {
		ss.recs = append(ss.recs, recQuery)
	}
	ss.tailExecs, ss.sinceQE, ss.runData = 0, false, false
	ss.ignoredSyncs, ss.copyLead, ss.copyRunOpen = 0, 0, false
	ss.copyErr = false
}

// copyStartedLocked accounts for a CopyInResponse: it counts the Syncs
// written so far that the backend will ignore, and whether the client is
// still inside the COPY's run (its next Syncs are ignored too).
func (ss *session) copyStartedLocked() {
	recs := ss.recs[ss.recHead:]
	done := int(ss.execsDone.Load()) // Executes of this segment finished before the COPY
	ss.ignoredSyncs, ss.copyLead, ss.copyRunOpen = 0, 0, false
	ss.copyErr, ss.copyByQuery = false, false
	start := 0 // index in recs of the first sync point that may be in the run
	switch {
	case len(recs) == 0:
		// Started by an Execute the client has not followed with a sync
		// point yet: by the last one, unless a later Execute ended it.
		ss.copyRunOpen = ss.sinceQE && done == ss.tailExecs-1
		return
	case recs[0]&recExecs == recExecs:
		ss.unsureLocked() // too many Executes to tell which started it
		return
	case recs[0]&recQuery != 0 && done >= int(recs[0]&recExecs):
		start = 1 // started by the Query itself
		ss.copyByQuery = true
	case recs[0]&recSync != 0 && done == int(recs[0]&recExecs)-1:
		// Started by the segment's last Execute.
	default:
		return // a later Execute or Query ended it at once
	}
	for i := start; i < len(recs); i++ {
		r := recs[i]
		if r&recSync == 0 || r&recRun == 0 || i > 0 && r&recExecs != 0 {
			return
		}
		ss.ignoredSyncs++
		if r&recData == 0 {
			ss.copyLead++
		}
	}
	// Every sync point written is in the run: it goes on if nothing but
	// copy messages and Syncs followed them (no other Execute either).
	ss.copyRunOpen = ss.sinceQE && ss.tailExecs == 0
}

// copyEndedLocked accounts for the ReadyForQuery that ends a COPY, before
// its record is popped: it settles how many of the Syncs counted as
// ignored it stands for (see above).
func (ss *session) copyEndedLocked() {
	defer func() { ss.copyRunOpen, ss.copyErr, ss.copyLead = false, false, 0 }()
	if !ss.copyErr || ss.ignoredSyncs == 0 {
		return
	}
	if !ss.copyByQuery && ss.ignoredSyncs == ss.copyLead && len(ss.recs)-ss.recHead <= ss.ignoredSyncs {
		// The answer came before the client wrote the Sync it would
		// answer: the backend failed before it read any, and answers them
		// all.
		ss.ignoredSyncs = 0
		return
	}
	ss.unsureLocked()
}

// unsureLocked gives up counting the session's answers (see above).
func (ss *session) unsureLocked() {
	if ss.unsure {
		return
	}
	ss.unsure = true
	ss.pinLocked(stats.PinCopySync)
	ss.log.Info("Syncs in flight around a COPY that the server may or may not answer; the session keeps its backend, which is closed when it leaves")
}
