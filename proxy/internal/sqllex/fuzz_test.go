package sqllex

import (
	"strings"
	"testing"
)

// FuzzAnalyze checks that Analyze and Effects never panic, agree with each
// other, split the input consistently, and that the lexer's tokens are
// well-formed.
func FuzzAnalyze(f *testing.F) {
	for _, c := range analyzeCases {
		f.Add(c.sql)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		sts := Analyze(sql)

		// Effects is the union of the statements' effects.
		var union Effect
		for _, st := range sts {
			union |= st.Effect
		}
		if e := Effects(sql); e != union {
			t.Fatalf("Effects(%q) = %v, union of Analyze = %v", sql, e, union)
		}

		// The statements tile the input.
		pos := 0
		for i, st := range sts {
			if st.Start != pos || st.End < st.Start || st.End > len(sql) {
				t.Fatalf("%q: statement %d has range [%d,%d), want start %d", sql, i, st.Start, st.End, pos)
			}
			if st.End < len(sql) && sql[st.End] != ';' {
				t.Fatalf("%q: statement %d ends at %d, not at a ';'", sql, i, st.End)
			}
			if i < len(sts)-1 && st.End == len(sql) {
				t.Fatalf("%q: statement %d ends the input but is not the last", sql, i)
			}
			pos = st.End + 1
		}
		if pos < len(sql) {
			lx := NewLexer(sql[pos:])
			if tk := lx.Next(); tk.Kind != EOF {
				t.Fatalf("%q: token %v (%q) after the last statement", sql, tk.Kind, tk.Text(sql[pos:]))
			}
		}

		// Each statement, analysed on its own, is one statement that is
		// classified the same way (or none, if it is empty).
		for i, st := range sts {
			text := sql[st.Start:st.End]
			alone := Analyze(text)
			switch {
			case len(alone) > 1:
				t.Fatalf("%q: statement %d (%q) splits into %d on its own", sql, i, text, len(alone))
			case len(alone) == 0:
				if st.Keyword != "" || st.Effect != EffectNone {
					t.Fatalf("%q: statement %d (%q) vanishes on its own", sql, i, text)
				}
			default:
				a := alone[0]
				if a.Keyword != st.Keyword || a.Effect != st.Effect || a.Param != st.Param || a.Name != st.Name {
					t.Fatalf("%q: statement %d (%q) is %+v in context, %+v alone", sql, i, text, st, a)
				}
			}
		}

		// Leading whitespace changes nothing.
		if e := Effects("\n " + sql); e != union {
			t.Fatalf("Effects of %q with leading whitespace = %v, want %v", sql, e, union)
		}

		// Tokens are in order, non-empty, in bounds and shaped like their kind.
		lx := NewLexer(sql)
		prev := 0
		for {
			tk := lx.Next()
			if tk.Start < prev || tk.End < tk.Start || tk.End > len(sql) {
				t.Fatalf("%q: token %+v out of order (previous end %d)", sql, tk, prev)
			}
			if tk.Kind == EOF {
				if tk.Start != len(sql) {
					t.Fatalf("%q: EOF at %d", sql, tk.Start)
				}
				break
			}
			if tk.End == tk.Start {
				t.Fatalf("%q: empty token %+v", sql, tk)
			}
			if gap := strings.TrimLeft(sql[prev:tk.Start], " \t\n\r\f\v"); gap != "" &&
				!strings.HasPrefix(gap, "--") && !strings.HasPrefix(gap, "/*") {
				t.Fatalf("%q: text %q skipped before token %+v", sql, gap, tk)
			}
			text := tk.Text(sql)
			ok := true
			switch tk.Kind {
			case String:
				ok = strings.ContainsAny(text[:1], `'$`) || (len(text) > 1 && text[1] == '\'') ||
					(len(text) > 2 && text[1] == '&' && text[2] == '\'')
			case QuotedIdent:
				ok = text[0] == '"' || strings.HasPrefix(strings.ToUpper(text), `U&"`)
			case Param:
				ok = text[0] == '$' && len(text) > 1 && isDigit(text[1])
			case Semicolon:
				ok = text == ";"
			case Ident:
				ok = isIdentStart(text[0])
			case Number:
				ok = isDigit(text[0]) || text[0] == '.'
			}
			if !ok {
				t.Fatalf("%q: token %v %q is malformed", sql, tk.Kind, text)
			}
			// Decoding values never panics.
			AppendStringValue(nil, sql, tk, '\\')
			AppendIdentValue(nil, sql, tk, '!')
			prev = tk.End
		}
	})
}
