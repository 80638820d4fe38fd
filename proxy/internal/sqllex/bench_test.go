package sqllex

import (
	"strings"
	"testing"
)

const plainSelect = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"

// longQuery is a report-style query of a few KB with comments, strings,
// a dollar quote and an OFFSET (which contains "set", so the pre-scan
// lets it through to the full lexer).
var longQuery = func() string {
	var b strings.Builder
	b.WriteString("/* monthly report */\nWITH recent AS (\n")
	for i := 0; i < 40; i++ {
		b.WriteString("  SELECT o.id, o.customer_id, o.total * 1.2 AS gross, 'it''s order -- not a comment' AS note,\n")
		b.WriteString("         CASE WHEN o.status = 'shipped' THEN $$done; really$$ ELSE \"Status\" END AS st -- trailing\n")
		b.WriteString("  FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.created_at > now() - interval '30 days'\n")
		b.WriteString("  UNION ALL\n")
	}
	b.WriteString("  SELECT 0, 0, 0, '', '' )\nSELECT * FROM recent ORDER BY gross DESC LIMIT 100 OFFSET 20")
	return b.String()
}()

func BenchmarkEffectsPlainSelect(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(plainSelect)))
	for b.Loop() {
		if Effects(plainSelect) != EffectNone {
			b.Fatal("effect")
		}
	}
}

func BenchmarkEffectsLongQuery(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(longQuery)))
	for b.Loop() {
		if Effects(longQuery) != EffectNone {
			b.Fatal("effect")
		}
	}
}

func BenchmarkEffectsLongQueryNoTrigger(b *testing.B) {
	q := strings.ReplaceAll(longQuery, "OFFSET 20", "")
	if mayHaveEffects(q) {
		b.Fatal("pre-scan should reject")
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(q)))
	for b.Loop() {
		Effects(q)
	}
}

func BenchmarkEffectsSetSearchPath(b *testing.B) {
	const q = "SET search_path = app, public"
	b.ReportAllocs()
	for b.Loop() {
		if Effects(q) != EffectSet {
			b.Fatal("no effect")
		}
	}
}

func BenchmarkAnalyzePlainSelect(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Analyze(plainSelect)
	}
}

func BenchmarkAnalyzeLongQuery(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(longQuery)))
	for b.Loop() {
		Analyze(longQuery)
	}
}

func TestPlainSelectZeroAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(1000, func() { Effects(plainSelect) }); n != 0 {
		t.Fatalf("Effects(plain select): %v allocs/op, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { Effects(longQuery) }); n != 0 {
		t.Fatalf("Effects(long query): %v allocs/op, want 0", n)
	}
}

// tpcbStatements are the statements of pgbench's TPC-B-like transaction as
// the simple protocol sends them (values inlined). The UPDATEs contain
// "SET", so the pre-scan hands them to the full lexer: this is the lexer's
// cost on the hot path of an ordinary OLTP workload.
var tpcbStatements = []string{
	"BEGIN;",
	"UPDATE pgbench_accounts SET abalance = abalance + -4172 WHERE aid = 731842;",
	"SELECT abalance FROM pgbench_accounts WHERE aid = 731842;",
	"UPDATE pgbench_tellers SET tbalance = tbalance + -4172 WHERE tid = 54;",
	"UPDATE pgbench_branches SET bbalance = bbalance + -4172 WHERE bid = 7;",
	"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (54, 7, 731842, -4172, CURRENT_TIMESTAMP);",
	"END;",
}

func BenchmarkEffectsTPCB(b *testing.B) {
	n := 0
	for _, q := range tpcbStatements {
		n += len(q)
	}
	b.ReportAllocs()
	b.SetBytes(int64(n))
	for b.Loop() {
		for _, q := range tpcbStatements {
			if Effects(q) != EffectNone {
				b.Fatalf("effect in %q", q)
			}
		}
	}
}

func TestTPCBZeroAllocs(t *testing.T) {
	for _, q := range tpcbStatements {
		if n := testing.AllocsPerRun(100, func() { Effects(q) }); n != 0 {
			t.Errorf("Effects(%q): %v allocs/op, want 0", q, n)
		}
	}
}
