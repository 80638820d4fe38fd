package proxy

import (
	"testing"
)

// pgbench's select-only transaction as the extended protocol sends it with
// the unnamed statement (-M extended), and with a named statement prepared
// earlier (-M prepared).
const benchSelect = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"

// benchBind binds stmt with one text parameter to the unnamed portal.
func benchBind(stmt string) []byte {
	param := []byte{0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 5, '1', '2', '3', '4', '5', 0, 0}
	return appendMsg(nil, 'B', []byte{0}, cstr(stmt), param)
}

// benchTail is the rest of the request: Describe portal, Execute, Sync.
func benchTail() []byte {
	tail := append(appendMsg(nil, 'D', []byte{'P', 0}), appendMsg(nil, 'E', []byte{0}, []byte{0, 0, 0, 0})...)
	return append(tail, appendMsg(nil, 'S')...)
}

func benchBatches() (extended, prepared []byte) {
	extended = appendMsg(nil, 'P', []byte{0}, cstr(benchSelect), []byte{0, 0})
	extended = append(extended, benchBind("")...)
	extended = append(extended, benchTail()...)
	prepared = append(benchBind("P0_1"), benchTail()...)
	return extended, prepared
}

// rewriteSession is a transaction-mode session whose client prepared P0_1,
// and a backend that holds it and the session's unnamed statement.
func rewriteSession() (*session, *backendState) {
	ss := &session{id: 1, tracking: true, stmts: map[string]*clientStmt{}}
	bs := stateOf(nil)
	def := benchSelect + "\x00\x00\x00"
	ss.stmts["P0_1"] = &clientStmt{def: def}
	bs.stmts[def] = &backendStmt{def: def, name: "pgbridge_1"}
	return ss, bs
}

// BenchmarkRewrite is the work the router adds to a transaction-mode
// request of the extended protocol: following statements and renaming the
// client's prepared statements to the backend's.
func BenchmarkRewrite(b *testing.B) {
	extended, prepared := benchBatches()
	for _, bc := range []struct {
		name  string
		batch []byte
	}{{"extended", extended}, {"prepared", prepared}} {
		b.Run(bc.name, func(b *testing.B) {
			ss, bs := rewriteSession()
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.batch)))
			for b.Loop() {
				ss.rewriteLocked(bc.batch, bs)
				ss.expect = ss.expect[:0]
			}
		})
	}
}

// The rewrite of a request that reuses known statements allocates
// nothing, and renames the client's statement to the backend's.
func TestRewriteAllocatesNothing(t *testing.T) {
	extended, prepared := benchBatches()
	ss, bs := rewriteSession()
	for name, batch := range map[string][]byte{"extended": extended, "prepared": prepared} {
		if n := testing.AllocsPerRun(100, func() {
			ss.rewriteLocked(batch, bs)
			ss.expect = ss.expect[:0]
		}); n != 0 {
			t.Errorf("%s: %v allocations per request", name, n)
		}
	}
	// A transaction around it: the simple Query BEGIN ends the unnamed
	// statement, whose text the next request repeats.
	begin, commit := appendMsg(nil, 'Q', cstr("begin")), appendMsg(nil, 'Q', cstr("commit"))
	if n := testing.AllocsPerRun(100, func() {
		ss.rewriteLocked(begin, bs)
		ss.rewriteLocked(extended, bs)
		ss.rewriteLocked(commit, bs)
		ss.expect = ss.expect[:0]
	}); n != 0 {
		t.Errorf("begin, extended, commit: %v allocations per transaction", n)
	}
	want := append(benchBind("pgbridge_1"), benchTail()...)
	if got := ss.rewriteLocked(prepared, bs); string(got) != string(want) {
		t.Errorf("prepared request rewritten to %q, want %q", got, want)
	}
	if got := ss.rewriteLocked(extended, bs); string(got) != string(extended) {
		t.Errorf("extended request rewritten to %q, want it unchanged", got)
	}
}
