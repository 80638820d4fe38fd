package sqllex

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// want is the expected classification of one statement.
type want struct {
	kw    string
	eff   Effect
	param string
	name  string
}

func (w want) String() string {
	return fmt.Sprintf("{%q %v param=%q name=%q}", w.kw, w.eff, w.param, w.name)
}

func got(st Statement) want { return want{st.Keyword, st.Effect, st.Param, st.Name} }

// one is the expectation for a query string of a single statement.
func one(kw string, eff Effect, paramName ...string) []want {
	w := want{kw: kw, eff: eff}
	if len(paramName) > 0 {
		w.param = paramName[0]
	}
	if len(paramName) > 1 {
		w.name = paramName[1]
	}
	return []want{w}
}

func many(ws ...want) []want { return ws }

const (
	none = EffectNone
	set  = EffectSet
	role = EffectSetRole
	adv  = EffectAdvisoryLock
	temp = EffectTempTable
)

var analyzeCases = []struct {
	sql  string
	want []want
}{
	// --- SET / RESET ---------------------------------------------------
	{"SET search_path = a", one("SET", set, "search_path")},
	{"set search_path to a, b", one("SET", set, "search_path")},
	{"SET SESSION search_path = a", one("SET", set, "search_path")},
	{"SET LOCAL search_path = a", one("SET", none, "search_path")},
	{"set local statement_timeout = '5s'", one("SET", none, "statement_timeout")},
	{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", one("SET", none)},
	{"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", one("SET", set)},
	{"SET CONSTRAINTS ALL DEFERRED", one("SET", none)},
	{"RESET ALL", one("RESET", set, "all")},
	{"RESET search_path", one("RESET", set, "search_path")},
	{"RESET TRANSACTION ISOLATION LEVEL", one("RESET", none)},
	{"SET TIME ZONE 'UTC'", one("SET", set, "timezone")},
	{"SET LOCAL TIME ZONE 'UTC'", one("SET", none, "timezone")},
	{"RESET TIME ZONE", one("RESET", set, "timezone")},
	{"SET NAMES 'UTF8'", one("SET", set, "client_encoding")},
	{"SET SCHEMA 'app'", one("SET", set, "search_path")},
	{"SET XML OPTION DOCUMENT", one("SET", set, "xmloption")},
	{`SET "Search_Path" = a`, one("SET", set, "search_path")},
	{"SET myapp.user_id = '42'", one("SET", set, "myapp.user_id")},
	{`SET MyApp."Tenant" TO 7`, one("SET", set, "myapp.tenant")},
	{"SET /* x */ search_path /* y */ = a", one("SET", set, "search_path")},
	{"SET statement_timeout FROM CURRENT", one("SET", set, "statement_timeout")},
	{"sEt StAtEmEnT_tImEoUt = 5", one("SET", set, "statement_timeout")},
	{"SET\tsearch_path\n=\na", one("SET", set, "search_path")},
	{"  -- leading comment\n  SET search_path = a", one("SET", set, "search_path")},
	{"SET", one("SET", set)},

	// --- role changes (refused) -----------------------------------------
	{"SET ROLE admin", one("SET", role, "role")},
	{"SET LOCAL ROLE admin", one("SET", role, "role")},
	{"SET SESSION ROLE admin", one("SET", role, "role")},
	{"set role none", one("SET", role, "role")},
	{"SET SESSION AUTHORIZATION bob", one("SET", role, "session_authorization")},
	{"SET SESSION AUTHORIZATION DEFAULT", one("SET", role, "session_authorization")},
	{"SET LOCAL SESSION AUTHORIZATION bob", one("SET", role, "session_authorization")},
	{"RESET ROLE", one("RESET", role, "role")},
	{"RESET SESSION AUTHORIZATION", one("RESET", role, "session_authorization")},
	{"SET role = admin", one("SET", role, "role")},
	{"SET role TO admin", one("SET", role, "role")},
	{`SET "role" TO admin`, one("SET", role, "role")},
	{`SET "ROLE" TO admin`, one("SET", role, "role")},
	{"SET session_authorization = 'bob'", one("SET", role, "session_authorization")},
	{"RESET role", one("RESET", role, "role")},
	{"SET ROLE", one("SET", role, "role")},
	{"SELECT set_config('role', 'admin', false)", one("SELECT", role, "role")},
	{"SELECT set_config('session_authorization', 'bob', true)", one("SELECT", role, "session_authorization")},
	{"SELECT set_config('ROLE', 'admin', true)", one("SELECT", role, "role")},
	{`SELECT set_config(E'r\x6fle', 'admin', true)`, one("SELECT", role, "role")},
	{`SELECT set_config(U&'r\006Fle', 'admin', true)`, one("SELECT", role, "role")},
	{`SELECT set_config(U&'r!006Fle' UESCAPE '!', 'admin', true)`, one("SELECT", role, "role")},
	{"SELECT set_config('ro'\n'le', 'admin', true)", one("SELECT", role, "role")},
	{"SELECT set_config($$role$$, 'admin', true)", one("SELECT", role, "role")},

	// --- set_config -------------------------------------------------------
	{"SELECT set_config('search_path', 'a', false)", one("SELECT", set, "search_path")},
	{"SELECT set_config('search_path', 'a', true)", one("SELECT", none, "search_path")},
	{"SELECT set_config('search_path', 'a', $1)", one("SELECT", set, "search_path")},
	{"SELECT set_config('x.y', 'a', TRUE)", one("SELECT", none, "x.y")},
	{"SELECT set_config('x.y', 'a', 'on')", one("SELECT", none, "x.y")},
	{"SELECT set_config('x.y', 'a', ' yes ')", one("SELECT", none, "x.y")},
	{"SELECT set_config('x.y', 'a', 'false'::boolean)", one("SELECT", set, "x.y")},
	{"SELECT set_config('x.y', 'a', true::pg_catalog.bool)", one("SELECT", none, "x.y")},
	{"SELECT set_config('x.y', 'a', NOT true)", one("SELECT", set, "x.y")},
	{"SELECT set_config('x.y', 'a', t) FROM (SELECT true AS t) s", one("SELECT", set, "x.y")},
	{"SELECT set_config('x.y', 'a')", one("SELECT", set, "x.y")},
	{"SELECT pg_catalog.set_config('x.y', 'a', false)", one("SELECT", set, "x.y")},
	{`SELECT "set_config"('x.y', 'a', false)`, one("SELECT", set, "x.y")},
	{`SELECT "SET_CONFIG"('x.y', 'a', false)`, one("SELECT", none)},
	{"SELECT SET_CONFIG('X.Y', 'a', false)", one("SELECT", set, "x.y")},
	{"SELECT set_config(setting_name => 'x.y', new_value => 'a', is_local => true)", one("SELECT", none, "x.y")},
	{"SELECT set_config(is_local => false, setting_name => 'x.y', new_value => 'a')", one("SELECT", set, "x.y")},
	{"SELECT set_config(name_col, 'a', true) FROM t", one("SELECT", none)},
	{"SELECT set_config(name_col, lower('A'), false) FROM t", one("SELECT", set)},
	{"SELECT set_config('x.y', (SELECT v FROM t LIMIT 1), true)", one("SELECT", none, "x.y")},
	{"WITH x AS (SELECT set_config('a.b', '1', false)) SELECT * FROM x", one("WITH", set, "a.b")},
	{"SELECT my_set_config('a.b', 'c', false)", one("SELECT", none)},
	{"SELECT current_setting('a.b'), set_config", one("SELECT", none)},
	{"UPDATE t SET v = set_config('a.b', v, false)", one("UPDATE", set, "a.b")},
	{"SELECT setseed(0.5)", one("SELECT", set, "seed")},
	{"select pg_catalog.SETSEED($1), random()", one("SELECT", set, "seed")},
	{"SELECT my_setseed(0.5)", one("SELECT", none)},

	// --- advisory locks ---------------------------------------------------
	{"SELECT pg_advisory_lock(1)", one("SELECT", adv)},
	{"SELECT pg_advisory_lock_shared(1)", one("SELECT", adv)},
	{"SELECT pg_try_advisory_lock(1, 2)", one("SELECT", adv)},
	{"select pg_try_advisory_lock_shared(1)", one("SELECT", adv)},
	{"SELECT pg_advisory_xact_lock(1)", one("SELECT", none)},
	{"SELECT pg_try_advisory_xact_lock(1)", one("SELECT", none)},
	{"SELECT pg_advisory_xact_lock_shared(1)", one("SELECT", none)},
	{"SELECT pg_advisory_unlock(1)", one("SELECT", none)},
	{"SELECT PG_CATALOG.PG_ADVISORY_LOCK(42)", one("SELECT", adv)},
	{`SELECT "pg_catalog"."pg_advisory_lock"(42)`, one("SELECT", adv)},
	{`SELECT mydb.pg_catalog.pg_advisory_lock(42)`, one("SELECT", adv)},
	{`SELECT U&"pg\005Fadvisory\005Flock"(1)`, one("SELECT", adv)},
	{`SELECT U&"pg!005Fadvisory!005Flock" UESCAPE '!' (1)`, one("SELECT", adv)},
	{"SELECT my_pg_advisory_lock(1)", one("SELECT", none)},
	{"SELECT pg_advisory_lock_custom(1)", one("SELECT", none)},
	{"SELECT pg_advisory_lock FROM t", one("SELECT", none)},
	{"SELECT pg_advisory_lock /* why not */ (1)", one("SELECT", adv)},
	{"WITH l AS (SELECT pg_advisory_lock(1)) SELECT 1", one("WITH", adv)},
	{"SELECT * FROM jobs WHERE pg_try_advisory_lock(id) LIMIT 1", one("SELECT", adv)},
	{"SELECT a FROM t WHERE b IN (SELECT pg_advisory_lock(c) FROM u)", one("SELECT", adv)},
	{"COPY (SELECT pg_advisory_lock(1)) TO STDOUT", one("COPY", adv)},
	{"DROP FUNCTION pg_advisory_lock(bigint)", one("DROP", none)},
	{"DROP FUNCTION IF EXISTS f(int), set_config(text, text, boolean)", one("DROP", none)},
	{"COMMENT ON FUNCTION set_config(text, text, boolean) IS 'x'", one("COMMENT", none)},
	{"GRANT EXECUTE ON FUNCTION pg_advisory_lock(bigint) TO app", one("GRANT", none)},
	{"ALTER FUNCTION pg_catalog.set_config(text, text, boolean) OWNER TO x", one("ALTER", none)},
	{"SELECT * FROM f() AS pg_advisory_lock(a int)", one("SELECT", none)},

	// --- PREPARE / DEALLOCATE ---------------------------------------------
	{"PREPARE q1 (int) AS SELECT $1", one("PREPARE", EffectPrepare, "", "q1")},
	{"PREPARE Q1 AS SELECT 1", one("PREPARE", EffectPrepare, "", "q1")},
	{`PREPARE "Q1" AS SELECT 1`, one("PREPARE", EffectPrepare, "", "Q1")},
	{"PREPARE p AS SELECT set_config('role', 'admin', false)", one("PREPARE", EffectPrepare|role, "role", "p")},
	{"PREPARE TRANSACTION 'gid1'", one("PREPARE", none)},
	{"DEALLOCATE q1", one("DEALLOCATE", EffectDeallocate, "", "q1")},
	{"DEALLOCATE PREPARE q1", one("DEALLOCATE", EffectDeallocate, "", "q1")},
	{"deallocate all", one("DEALLOCATE", EffectDeallocate)},
	{"DEALLOCATE PREPARE ALL", one("DEALLOCATE", EffectDeallocate)},
	{`DEALLOCATE "ALL"`, one("DEALLOCATE", EffectDeallocate, "", "ALL")},
	{`DEALLOCATE "a""b"`, one("DEALLOCATE", EffectDeallocate, "", `a"b`)},
	{"DEALLOCATE prepare", one("DEALLOCATE", EffectDeallocate, "", "prepare")},
	{"EXECUTE q1(1)", one("EXECUTE", none)},

	// --- LISTEN / LOAD / DISCARD ------------------------------------------
	{"LISTEN chan", one("LISTEN", EffectListen, "", "chan")},
	{`LISTEN "Chan"`, one("LISTEN", EffectListen, "", "Chan")},
	{"UNLISTEN chan", one("UNLISTEN", none)},
	{"UNLISTEN *", one("UNLISTEN", none)},
	{"NOTIFY chan, 'LISTEN x'", one("NOTIFY", none)},
	{"LOAD 'auto_explain'", one("LOAD", EffectLoad)},
	{"DISCARD ALL", one("DISCARD", EffectDiscardAll)},
	{"DISCARD PLANS", one("DISCARD", none)},
	{"discard temp", one("DISCARD", none)},

	// --- temporary objects ------------------------------------------------
	{"CREATE TEMP TABLE t (a int)", one("CREATE", temp)},
	{"CREATE TEMPORARY TABLE t (a int)", one("CREATE", temp)},
	{"CREATE LOCAL TEMP TABLE t (a int)", one("CREATE", temp)},
	{"CREATE GLOBAL TEMPORARY TABLE t (a int)", one("CREATE", temp)},
	{"CREATE TEMP TABLE IF NOT EXISTS t (a int)", one("CREATE", temp)},
	{"CREATE TEMP VIEW v AS SELECT 1", one("CREATE", temp)},
	{"CREATE OR REPLACE TEMP VIEW v AS SELECT 1", one("CREATE", temp)},
	{"CREATE TEMP RECURSIVE VIEW v (n) AS SELECT 1", one("CREATE", temp)},
	{"CREATE TEMP SEQUENCE s", one("CREATE", temp)},
	{"CREATE TEMP TABLE t AS SELECT 1", one("CREATE", temp)},
	{"CREATE TEMP TABLE t AS SELECT pg_advisory_lock(1)", one("CREATE", temp|adv)},
	{"CREATE TEMP TABLE t (a int) ON COMMIT DROP", one("CREATE", none)},
	{"CREATE TEMP TABLE t (a int) ON COMMIT DELETE ROWS", one("CREATE", temp)},
	{"CREATE TEMP TABLE t (a int) ON COMMIT PRESERVE ROWS", one("CREATE", temp)},
	{"CREATE TEMP TABLE t ON COMMIT DROP AS SELECT 1", one("CREATE", none)},
	{"CREATE TABLE pg_temp.t (a int)", one("CREATE", temp)},
	{`CREATE TABLE IF NOT EXISTS "pg_temp".t (a int)`, one("CREATE", temp)},
	{"CREATE VIEW pg_temp.v AS SELECT 1", one("CREATE", temp)},
	{"CREATE FUNCTION pg_temp.f() RETURNS int AS 'select 1' LANGUAGE sql", one("CREATE", temp)},
	{"CREATE TABLE t (a int)", one("CREATE", none)},
	{"CREATE TABLE temp (a int)", one("CREATE", none)},
	{"CREATE TABLE t AS SELECT * FROM pg_temp.x", one("CREATE", none)},
	{"CREATE UNLOGGED TABLE t (a int)", one("CREATE", none)},
	{"CREATE TABLE t AS SELECT pg_advisory_lock(1)", one("CREATE", adv)},
	{"CREATE VIEW v AS SELECT pg_advisory_lock(1)", one("CREATE", none)},
	{"SELECT * INTO TEMP t FROM x", one("SELECT", temp)},
	{"SELECT a INTO TEMPORARY TABLE t FROM x", one("SELECT", temp)},
	{"SELECT a INTO LOCAL TEMP t FROM x", one("SELECT", temp)},
	{`SELECT a INTO TEMP "T" FROM x`, one("SELECT", temp)},
	{"SELECT a INTO pg_temp.t FROM x", one("SELECT", temp)},
	{"SELECT a INTO TABLE pg_temp.t FROM x", one("SELECT", temp)},
	{"SELECT a INTO t FROM x", one("SELECT", none)},
	{"SELECT a INTO temp FROM x", one("SELECT", none)},
	{"SELECT a INTO UNLOGGED t FROM x", one("SELECT", none)},
	{"INSERT INTO temp VALUES (1)", one("INSERT", none)},
	{"WITH q AS (SELECT 1 AS a) SELECT * INTO TEMP t FROM q", one("WITH", temp)},
	{"WITH q AS (INSERT INTO pg_temp.t VALUES (1) RETURNING *) SELECT * FROM q", one("WITH", none)},
	{"(SELECT 1 INTO TEMP t)", one("SELECT", temp)},

	// --- cursors ------------------------------------------------------------
	{"DECLARE c CURSOR WITH HOLD FOR SELECT 1", one("DECLARE", EffectHoldCursor, "", "c")},
	{"DECLARE C NO SCROLL CURSOR WITH HOLD FOR SELECT 1", one("DECLARE", EffectHoldCursor, "", "c")},
	{"DECLARE c BINARY CURSOR WITHOUT HOLD FOR SELECT 1", one("DECLARE", none, "", "c")},
	{"DECLARE c CURSOR FOR SELECT 1", one("DECLARE", none, "", "c")},
	{"DECLARE c CURSOR FOR WITH hold AS (SELECT 1) SELECT * FROM hold", one("DECLARE", none, "", "c")},
	{"DECLARE c CURSOR WITH HOLD FOR SELECT pg_advisory_lock(1)", one("DECLARE", EffectHoldCursor|adv, "", "c")},

	// --- EXPLAIN ------------------------------------------------------------
	{"EXPLAIN ANALYZE SELECT * FROM t", one("EXPLAIN", none)},
	{"EXPLAIN ANALYZE SELECT pg_advisory_lock(1)", one("EXPLAIN", adv)},
	{"EXPLAIN SELECT set_config('a.b', 'c', false)", one("EXPLAIN", set, "a.b")},
	{"EXPLAIN ANALYZE SET search_path = a", one("EXPLAIN", none)},
	{"EXPLAIN (ANALYZE, BUFFERS) CREATE TEMP TABLE t AS SELECT 1", one("EXPLAIN", temp)},
	{"EXPLAIN (ANALYZE on, FORMAT json) SELECT 1 INTO TEMP t", one("EXPLAIN", temp)},
	{"EXPLAIN (ANALYZE false) CREATE TEMP TABLE t AS SELECT 1", one("EXPLAIN", none)},
	{"EXPLAIN CREATE TEMP TABLE t AS SELECT 1", one("EXPLAIN", none)},
	{"EXPLAIN ANALYZE VERBOSE SELECT 1 INTO TEMP t", one("EXPLAIN", temp)},
	{"EXPLAIN ANALYSE CREATE TEMP TABLE t ON COMMIT DROP AS SELECT 1", one("EXPLAIN", none)},

	// --- false positives: quotes, comments, identifiers -------------------
	{"SELECT 'SET ROLE admin'", one("SELECT", none)},
	{"SELECT 1 -- ; SET ROLE admin", one("SELECT", none)},
	{"SELECT 1 /* ; SET ROLE admin; */", one("SELECT", none)},
	{"SELECT /* outer /* inner */ ; SET ROLE x; still a comment */ 1", one("SELECT", none)},
	{"SELECT /*/ ; SET ROLE x; */ 1", one("SELECT", none)},
	{"SELECT 1 +/* ; SET ROLE x */ 2", one("SELECT", none)},
	{"SELECT 1 --- ; SET ROLE x\n", one("SELECT", none)},
	{"SELECT $$ ; SET ROLE admin; $$", one("SELECT", none)},
	{"SELECT $tag$ it's $$ ; SET ROLE x; $$ $tag$", one("SELECT", none)},
	{"SELECT $a$ x $b$ ; SET ROLE x; $b$ $a$", one("SELECT", none)},
	{"SELECT $_1$ ; SET ROLE x; $_1$", one("SELECT", none)},
	{`SELECT "set" FROM t`, one("SELECT", none)},
	{`SELECT set FROM t`, one("SELECT", none)},
	{`SELECT "pg_advisory_lock" FROM t`, one("SELECT", none)},
	{`SELECT "a; SET ROLE x"`, one("SELECT", none)},
	{`SELECT "a""; SET ROLE x"`, one("SELECT", none)},
	{"UPDATE t SET a = 1", one("UPDATE", none)},
	{"INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 2", one("INSERT", none)},
	{`"SET" search_path = a`, one("", none)},
	{"CREATE FUNCTION f() RETURNS void AS $$ BEGIN SET search_path = a; PERFORM pg_advisory_lock(1); END $$ LANGUAGE plpgsql", one("CREATE", none)},
	{"CREATE OR REPLACE FUNCTION f() RETURNS void LANGUAGE sql SET search_path = a AS 'SELECT pg_advisory_lock(1)'", one("CREATE", none)},
	{"CREATE FUNCTION f() RETURNS bigint LANGUAGE sql RETURN pg_advisory_lock(1)", one("CREATE", none)},
	{"ALTER ROLE bob SET search_path = a", one("ALTER", EffectAlterRole)},
	{"ALTER DATABASE d SET work_mem = '1MB'", one("ALTER", none)},
	{"ALTER SYSTEM SET work_mem = '1MB'", one("ALTER", none)},
	{"ALTER TABLE t ALTER COLUMN a SET DEFAULT 1", one("ALTER", none)},
	{"SELECT 'it''s; SET ROLE x; --'", one("SELECT", none)},
	{`SELECT E'it\'s; SET ROLE x; --'`, one("SELECT", none)},
	{`SELECT e'\\\'; SET ROLE x; '`, one("SELECT", none)},
	{`SELECT U&'\0041; SET ROLE x'`, one("SELECT", none)},
	{"SELECT 'a'\n'; SET ROLE x; '", one("SELECT", none)},
	{"SELECT 'a' -- c\n  '; SET ROLE x; '", one("SELECT", none)},
	{"SELECT 'a' 'b; SET ROLE x; '", one("SELECT", none)},
	{"SELECT ſet_config('role', 'x', false)", one("SELECT", none)},
	{"SELECT 'pg_advisory_lock(1)', 'set_config(''role'', ''x'', false)'", one("SELECT", none)},
	{"SELECT $1, $2 FROM t WHERE a = $3", one("SELECT", none)},

	// --- strings that end where PostgreSQL ends them ------------------------
	{`SELECT 'a\'; SET ROLE x`, many(want{kw: "SELECT"}, want{kw: "SET", eff: role, param: "role"})},
	{`SELECT E'\\'; SET search_path = a`, many(want{kw: "SELECT"}, want{kw: "SET", eff: set, param: "search_path"})},
	{"SELECT $1; SET search_path = a", many(want{kw: "SELECT"}, want{kw: "SET", eff: set, param: "search_path"})},
	{"SELECT a$b$c FROM t; SET x.y = 1", many(want{kw: "SELECT"}, want{kw: "SET", eff: set, param: "x.y"})},
	{"SELECT $1$x; SET x.y = 1", many(want{kw: "SELECT"}, want{kw: "SET", eff: set, param: "x.y"})},
	{"SELECT 'a'\n'b'; SET ROLE x", many(want{kw: "SELECT"}, want{kw: "SET", eff: role, param: "role"})},
	{"SELECT B'0101'; SET search_path = a", many(want{kw: "SELECT"}, want{kw: "SET", eff: set, param: "search_path"})},
	{"SELECT x'1F', n'abc'; SET search_path = a", many(want{kw: "SELECT"}, want{kw: "SET", eff: set, param: "search_path"})},
	{"SELECT 1.5e3, .5, 0x1F; LISTEN c", many(want{kw: "SELECT"}, want{kw: "LISTEN", eff: EffectListen, name: "c"})},

	// --- multi-statement strings ---------------------------------------------
	{"BEGIN; SET LOCAL a.b=1; COMMIT; SET b.c=2", many(
		want{kw: "BEGIN"},
		want{kw: "SET", param: "a.b"},
		want{kw: "COMMIT"},
		want{kw: "SET", eff: set, param: "b.c"})},
	{"SELECT 1;;SELECT 2;", many(want{kw: "SELECT"}, want{}, want{kw: "SELECT"})},
	{"SELECT 1; ", one("SELECT", none)},
	{"SELECT 1; -- done", one("SELECT", none)},
	{";", many(want{})},
	{"", nil},
	{"   ", nil},
	{"  -- only a comment", nil},
	{"/* only a comment */", many(want{})[:0]},
	{"SELECT (1; SET ROLE x)", one("SELECT", none)},
	{"SELECT 1); SET ROLE x", many(want{kw: "SELECT"}, want{kw: "SET", eff: role, param: "role"})},
	{"(SELECT 1) UNION (SELECT 2)", one("SELECT", none)},
	{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT pg_advisory_lock(1); END; SET search_path = a",
		many(want{kw: "CREATE"}, want{kw: "SET", eff: set, param: "search_path"})},
	{"CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END; LISTEN x",
		many(want{kw: "CREATE"}, want{kw: "LISTEN", eff: EffectListen, name: "x"})},
	{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT begin atomic FROM t; END; SET ROLE admin",
		many(want{kw: "CREATE"}, want{kw: "SET", eff: role, param: "role"})},
	{"BEGIN; SELECT 1; END; SET ROLE admin",
		many(want{kw: "BEGIN"}, want{kw: "SELECT"}, want{kw: "END"}, want{kw: "SET", eff: role, param: "role"})},
	{"SELECT pg_advisory_lock(1); SELECT pg_advisory_unlock(1)", many(want{kw: "SELECT", eff: adv}, want{kw: "SELECT"})},
	{"DISCARD ALL; DEALLOCATE ALL; RESET ALL", many(
		want{kw: "DISCARD", eff: EffectDiscardAll},
		want{kw: "DEALLOCATE", eff: EffectDeallocate},
		want{kw: "RESET", eff: set, param: "all"})},

	// --- unterminated input ---------------------------------------------------
	{"SELECT 'abc; SET ROLE x", one("SELECT", none)},
	{"SELECT $$abc; SET ROLE x", one("SELECT", none)},
	{"SELECT $q$abc $$; SET ROLE x", one("SELECT", none)},
	{"SELECT /* abc; SET ROLE x", one("SELECT", none)},
	{"SELECT /* /* */ abc; SET ROLE x", one("SELECT", none)},
	{`SELECT "abc; SET ROLE x`, one("SELECT", none)},
	{`SELECT E'abc\`, one("SELECT", none)},
	{`SELECT E'abc\'; SET ROLE x`, one("SELECT", none)},
	{"SELECT 'a'\n", one("SELECT", none)},
	{"SELECT 'a' --", one("SELECT", none)},
	{"SELECT pg_advisory_lock(", one("SELECT", adv)},
	{"SELECT set_config('a.b', 'c'", one("SELECT", set, "a.b")},
	{"SELECT set_config(", one("SELECT", set)},
	{"SET search_path = 'a", one("SET", set, "search_path")},
	{"SELECT $", one("SELECT", none)},
	{"SELECT U&", one("SELECT", none)},
	{`SELECT U&"pg\005Fadvisory\005Flock`, one("SELECT", none)},

	// --- DO blocks run immediately --------------------------------------------
	{"DO $$ BEGIN PERFORM pg_advisory_lock(1); END $$", one("DO", adv)},
	{"DO $$ BEGIN SET search_path = a; END $$", one("DO", set)},
	{"DO $$ BEGIN IF true THEN SET ROLE admin; END IF; END $$", one("DO", role)},
	{"DO $$ <<blk>> BEGIN LOOP SET search_path = a; EXIT; END LOOP; END $$", one("DO", set)},
	{"DO $do$ BEGIN EXECUTE 'SET search_path = ' || quote_ident('a'); END $do$", one("DO", set)},
	{"DO LANGUAGE plpgsql 'BEGIN PERFORM set_config(''a.b'', ''c'', false); END'", one("DO", set)},
	{"DO E'BEGIN PERFORM set_config(\\'role\\', \\'x\\', true); END'", one("DO", role)},
	{"DO $$ DECLARE x int; BEGIN SET LOCAL search_path = a; END $$", one("DO", none)},
	{"DO $$ DECLARE x text := set_config('a.b', 'c', false); BEGIN NULL; END $$", one("DO", set)},
	{"DO $$ BEGIN CREATE TEMP TABLE t (a int); END $$", one("DO", temp)},
	{"DO $$ BEGIN RAISE NOTICE 'SET ROLE x'; END $$", one("DO", none)},
	{"DO $$ BEGIN FOR i IN 1..pg_advisory_lock(1) LOOP NULL; END LOOP; END $$", one("DO", adv)},
	{"DO $$ BEGIN EXECUTE format('SET %I = %L', 'search_path', 'a'); END $$", one("DO", set)},
	{"DO LANGUAGE plpython3u $$ plpy.execute('SET ROLE x') $$", one("DO", none)},
	{"DO $$ plpy.execute('SET ROLE x') $$ LANGUAGE plperl", one("DO", none)},
	{`DO E'BEGIN PERFORM pg_\x61dvisory_lock(1); END'`, one("DO", adv)},
	{"DO 'BEGIN PERFORM pg_advi'\n'sory_lock(1); END'", one("DO", adv)},
	{"DO $$ BEGIN EXECUTE 'SE'\n'T ROLE x'; END $$", one("DO", role)},
	{"DO $$ BEGIN RETURN QUERY EXECUTE 'LISTEN c'; END $$", one("DO", EffectListen)},
	{"DO $$ BEGIN EXECUTE $x$ DO $y$ BEGIN PERFORM pg_advisory_lock(1); END $y$ $x$; END $$", one("DO", adv)},
	// SQL text built at run time may do anything: it counts as a SET.
	{"DO $$ DECLARE q text := 'SELECT 1'; BEGIN EXECUTE q; END $$", one("DO", set)},
	{"DO $$ BEGIN EXECUTE 'SELECT ' || 1; END $$", one("DO", set)},
	{"DO $$ BEGIN FOR r IN EXECUTE q LOOP NULL; END LOOP; END $$", one("DO", set)},
	{"DO $$ BEGIN EXECUTE 'SELECT 1'; END $$", one("DO", none)},
	{"DO $$ BEGIN EXECUTE 'SELECT $1' INTO STRICT x USING 1; END $$", one("DO", none)},
	{"DO $$ BEGIN EXECUTE 'SELECT 1'\n; END $$", one("DO", none)},
	{"EXECUTE q(1)", one("EXECUTE", none)},

	// --- hidden ways to a session-level effect ---------------------------------
	{"UPDATE pg_settings SET setting = '0' WHERE name = 'statement_timeout'", one("UPDATE", set)},
	{"update only pg_catalog.pg_settings set setting = 'x'", one("UPDATE", set)},
	{"UPDATE settings SET v = 1", one("UPDATE", none)},
	{"SET LOCAL search_path = pg_temp, public", one("SET", temp, "search_path")},
	{`SET search_path TO "pg_temp"`, one("SET", set|temp, "search_path")},
	{"SELECT set_config('search_path', 'pg_temp, public', true)", one("SELECT", temp, "search_path")},
	{"SELECT set_config('search_path', current_setting('x.y'), true)", one("SELECT", temp, "search_path")},
	{"SELECT set_config('search_path', 'public', true)", one("SELECT", none, "search_path")},

	// --- refused: the tenant's role belongs to the router ----------------------
	{"ALTER ROLE CURRENT_USER PASSWORD 'x'", one("ALTER", EffectAlterRole)},
	{"alter user u set work_mem = '1MB'", one("ALTER", EffectAlterRole)},
	{"DO $$ BEGIN EXECUTE 'ALTER USER x PASSWORD ''y'''; END $$", one("DO", EffectAlterRole)},
	{"ALTER USER MAPPING FOR u SERVER s OPTIONS (x 'y')", one("ALTER", none)},
	{"ALTER TABLE t ADD COLUMN c int", one("ALTER", none)},

	// --- plain statements ---------------------------------------------------------
	{"select 1", one("SELECT", none)},
	{"START TRANSACTION ISOLATION LEVEL REPEATABLE READ", one("START", none)},
	{"SHOW search_path", one("SHOW", none)},
	{"VALUES (1), (2)", one("VALUES", none)},
	{"TRUNCATE t", one("TRUNCATE", none)},
	{"ANALYZE t", one("ANALYZE", none)},
	{"checkpoint", one("CHECKPOINT", none)},
	{"frobnicate the widgets", one("FROBNICATE", none)},
	{"'just a string'", one("", none)},
	{"$1", one("", none)},
}

func TestAnalyze(t *testing.T) {
	if len(analyzeCases) < 80 {
		t.Fatalf("only %d cases", len(analyzeCases))
	}
	for _, c := range analyzeCases {
		sts := Analyze(c.sql)
		var gotW []want
		var union Effect
		for _, st := range sts {
			gotW = append(gotW, got(st))
			union |= st.Effect
		}
		if fmt.Sprint(gotW) != fmt.Sprint(c.want) {
			t.Errorf("Analyze(%q)\n got %v\nwant %v", c.sql, gotW, c.want)
		}
		if e := Effects(c.sql); e != union {
			t.Errorf("Effects(%q) = %v, union of Analyze = %v", c.sql, e, union)
		}
		checkSplit(t, c.sql, sts)
	}
}

// checkSplit checks that the statements tile the input: each ends at a
// ";" that the next one follows, and only a terminator and trivia follow
// the last one.
func checkSplit(t *testing.T, sql string, sts []Statement) {
	t.Helper()
	pos := 0
	for i, st := range sts {
		if st.Start != pos || st.End < st.Start || st.End > len(sql) {
			t.Errorf("%q: statement %d has range [%d,%d), want start %d", sql, i, st.Start, st.End, pos)
			return
		}
		if st.End < len(sql) && sql[st.End] != ';' {
			t.Errorf("%q: statement %d ends at %d, not at a ';'", sql, i, st.End)
			return
		}
		pos = st.End + 1
	}
	if pos < len(sql) {
		rest := NewLexer(sql[pos:])
		if tok := rest.Next(); tok.Kind != EOF {
			t.Errorf("%q: token %v after the last statement", sql, tok)
		}
	}
}

func TestEffectsUnion(t *testing.T) {
	var all strings.Builder
	var want Effect
	for _, c := range analyzeCases {
		for _, w := range c.want {
			want |= w.eff
		}
	}
	// Joined with "; " the cases would interact (unterminated quotes), so
	// only check a few well-formed ones together.
	parts := []string{"SET a.b = 1", "LISTEN c", "SELECT pg_advisory_lock(1)", "DISCARD ALL", "SELECT 1"}
	all.WriteString(strings.Join(parts, ";\n"))
	if got, w := Effects(all.String()), set|EffectListen|adv|EffectDiscardAll; got != w {
		t.Errorf("Effects(joined) = %v, want %v", got, w)
	}
	for _, e := range effectNames {
		if want&e.e == 0 {
			t.Errorf("no test case has effect %v", e.e)
		}
	}
}

func TestEffectString(t *testing.T) {
	for _, c := range []struct {
		e    Effect
		want string
	}{
		{EffectNone, "None"},
		{EffectSet, "Set"},
		{EffectSet | EffectSetRole, "Set|SetRole"},
		{EffectDeallocate | 1, "Deallocate|0x0001"},
	} {
		if got := c.e.String(); got != c.want {
			t.Errorf("%d.String() = %q, want %q", c.e, got, c.want)
		}
	}
	if !EffectListen.Pins() || EffectDiscardAll.Pins() || !EffectSetRole.Refused() || EffectSet.Refused() {
		t.Error("Pins/Refused")
	}
}

func TestStatementText(t *testing.T) {
	sql := "SELECT 1; /* c */ SET search_path = a ;SELECT ';'"
	sts := Analyze(sql)
	var texts []string
	for _, st := range sts {
		texts = append(texts, sql[st.Start:st.End])
	}
	want := []string{"SELECT 1", " /* c */ SET search_path = a ", "SELECT ';'"}
	if fmt.Sprintf("%q", texts) != fmt.Sprintf("%q", want) {
		t.Errorf("texts = %q, want %q", texts, want)
	}
}

// tok is a compact token description for lexer tests.
type tok struct {
	k    Kind
	text string
	f    Flags
}

func lexAll(src string) []tok {
	var out []tok
	lx := NewLexer(src)
	for {
		t := lx.Next()
		if t.Kind == EOF {
			return out
		}
		out = append(out, tok{t.Kind, t.Text(src), t.Flags})
	}
}

func TestLexer(t *testing.T) {
	cases := []struct {
		src  string
		want []tok
	}{
		{"SELECT a, \"B\"\"c\" FROM t;", []tok{
			{Ident, "SELECT", 0}, {Ident, "a", 0}, {Op, ",", 0}, {QuotedIdent, `"B""c"`, 0},
			{Ident, "FROM", 0}, {Ident, "t", 0}, {Semicolon, ";", 0}}},
		{"'it''s' E'\\'' $$x$$ $a$ $b$ $a$", []tok{
			{String, "'it''s'", 0}, {String, `E'\''`, EscapeString}, {String, "$$x$$", DollarQuoted},
			{String, "$a$ $b$ $a$", DollarQuoted}}},
		{"$1 $12abc a$1 $ $x", []tok{
			{Param, "$1", 0}, {Param, "$12abc", 0}, {Ident, "a$1", 0}, {Op, "$", 0}, {Op, "$", 0}, {Ident, "x", 0}}},
		{"1 1.5 .5 1e10 1.5E-3 0x1F 1..2 1_000", []tok{
			{Number, "1", 0}, {Number, "1.5", 0}, {Number, ".5", 0}, {Number, "1e10", 0},
			{Number, "1.5E-3", 0}, {Number, "0x1F", 0}, {Number, "1", 0}, {Op, "..", 0}, {Number, "2", 0},
			{Number, "1_000", 0}}},
		{"a::int := b => c <= d != e", []tok{
			{Ident, "a", 0}, {Op, "::", 0}, {Ident, "int", 0}, {Op, ":=", 0}, {Ident, "b", 0}, {Op, "=>", 0},
			{Ident, "c", 0}, {Op, "<=", 0}, {Ident, "d", 0}, {Op, "!=", 0}, {Ident, "e", 0}}},
		{"a+/*c*/b -- x\nc=-1 @- d", []tok{
			{Ident, "a", 0}, {Op, "+", 0}, {Ident, "b", 0}, {Ident, "c", 0}, {Op, "=", 0}, {Op, "-", 0},
			{Number, "1", 0}, {Op, "@-", 0}, {Ident, "d", 0}}},
		{"/* a /* b */ c */ x /* unterminated", []tok{{Ident, "x", 0}}},
		{"B'01' X'1f' N'n' U&'u' U&\"i\" u&x e'e' xe'x'", []tok{
			{String, "B'01'", BitString}, {String, "X'1f'", BitString}, {String, "N'n'", NationalString},
			{String, "U&'u'", UnicodeEscapes}, {QuotedIdent, `U&"i"`, UnicodeEscapes},
			{Ident, "u", 0}, {Op, "&", 0}, {Ident, "x", 0}, {String, "e'e'", EscapeString},
			{Ident, "xe", 0}, {String, "'x'", 0}}},
		{"'a'\n  'b' 'c'", []tok{{String, "'a'\n  'b'", 0}, {String, "'c'", 0}}},
		{"'a' -- c\n -- d\n 'b'", []tok{{String, "'a' -- c\n -- d\n 'b'", 0}}},
		{"'a' -- c", []tok{{String, "'a'", 0}}},
		{"'abc", []tok{{String, "'abc", Unterminated}}},
		{`"abc`, []tok{{QuotedIdent, `"abc`, Unterminated}}},
		{"$q$abc", []tok{{String, "$q$abc", DollarQuoted | Unterminated}}},
		{`E'abc\`, []tok{{String, `E'abc\`, EscapeString | Unterminated}}},
		{"é\x80x \\ {", []tok{{Ident, "é\x80x", 0}, {Op, `\`, 0}, {Op, "{", 0}}},
	}
	for _, c := range cases {
		if got := lexAll(c.src); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("lex(%q)\n got %v\nwant %v", c.src, got, c.want)
		}
	}
}

func TestValues(t *testing.T) {
	cases := []struct {
		src, want string
	}{
		{"'it''s'", "it's"},
		{`E'a\'b\\c\n\x41\101\u00e9\U0001F600\q'`, "a'b\\c\nAAé😀q"},
		{"'a'\n'b'", "ab"},
		{"$t$ x '' $t$", " x '' "},
		{`U&'d\0061t\+000061 \\'`, `data \`},
		{"N'x'", "x"},
		{"'unterminated", "unterminated"},
	}
	for _, c := range cases {
		lx := NewLexer(c.src)
		tk := lx.Next()
		if got := string(AppendStringValue(nil, c.src, tk, '\\')); got != c.want {
			t.Errorf("value of %q = %q, want %q", c.src, got, c.want)
		}
	}
	ids := []struct {
		src, want string
	}{
		{"FooBar", "foobar"},
		{`"FooBar"`, "FooBar"},
		{`"a""b"`, `a"b`},
		{`U&"d\0061t\+000061"`, "data"},
		{`"unterminated`, "unterminated"},
	}
	for _, c := range ids {
		lx := NewLexer(c.src)
		tk := lx.Next()
		if got := string(AppendIdentValue(nil, c.src, tk, '\\')); got != c.want {
			t.Errorf("ident value of %q = %q, want %q", c.src, got, c.want)
		}
	}
}

func TestEffectsAllocs(t *testing.T) {
	queries := []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = $1",
		"SELECT * FROM t ORDER BY a OFFSET 10", // passes the pre-scan ("set")
		"UPDATE settings SET v = 1 WHERE k = 'temp'",
		"SELECT pg_advisory_lock(1)",
		"SET search_path = a",
		"SET ROLE admin",
		"SELECT set_config('search_path', 'a', false)",
		"CREATE TEMP TABLE t (a int) ON COMMIT DROP",
		"DO $$ BEGIN SET search_path = a; END $$",
	}
	for _, q := range queries {
		if n := testing.AllocsPerRun(100, func() { Effects(q) }); n != 0 {
			t.Errorf("Effects(%q): %v allocs, want 0", q, n)
		}
	}
}

func TestPreScan(t *testing.T) {
	// Every case with an effect must pass the pre-scan (Effects would
	// otherwise miss it); this also follows from TestAnalyze, but say it.
	for _, c := range analyzeCases {
		for _, w := range c.want {
			if w.eff != 0 && !mayHaveEffects(c.sql) {
				t.Errorf("pre-scan rejects %q", c.sql)
			}
		}
	}
	if mayHaveEffects("SELECT abalance FROM pgbench_accounts WHERE aid = $1") {
		t.Error("pre-scan accepts the pgbench query")
	}
}

// TestLinearTime feeds inputs built to provoke quadratic behaviour (nested
// calls, unbalanced parentheses and quotes, nested DO and EXPLAIN); each
// must finish quickly.
func TestLinearTime(t *testing.T) {
	const n = 100000
	inputs := map[string]string{
		"parens":        "SELECT " + strings.Repeat("(", n),
		"set_config":    "SELECT " + strings.Repeat("set_config(", n/10),
		"advisory":      "SELECT " + strings.Repeat("pg_advisory_lock(", n/10),
		"dollar":        strings.Repeat("$a", n),
		"dollar2":       strings.Repeat("$a$ $b", n/4),
		"continuation":  strings.Repeat("'a'\n", n/2),
		"comments":      strings.Repeat("/*", n),
		"semicolons":    strings.Repeat("SET a.b = 1;", n/10),
		"explain":       strings.Repeat("EXPLAIN ANALYZE ", n/10) + "SELECT 1",
		"explainparen":  strings.Repeat("EXPLAIN (ANALYZE) ", n/10) + "SELECT 1",
		"do":            "DO $$ " + strings.Repeat("IF IF IF ", n/10) + " $$",
		"doexec":        "DO $$ BEGIN EXECUTE " + strings.Repeat("'SET a.b = 1' || ", n/10) + "''; END $$",
		"atomic":        "CREATE FUNCTION f() BEGIN ATOMIC " + strings.Repeat("CASE ", n/5),
		"intotemp":      "SELECT " + strings.Repeat("INTO TEMP ", n/10),
		"plsemis":       "DO $$ " + strings.Repeat("IF x THEN SET a.b = 1; ", n/20) + " $$",
		"backslashes":   "SELECT E'" + strings.Repeat(`\\`, n),
		"quoteidents":   strings.Repeat(`"a"""`, n/5),
		"uescape":       "SELECT " + strings.Repeat(`U&"x" UESCAPE '!' (`, n/20),
		"nesteddo":      "DO $a$ DO $b$ DO $c$ DO $d$ DO $e$ " + strings.Repeat("SET a.b = 1;", n/10) + " $e$ $d$ $c$ $b$ $a$",
		"setconfigargs": "SELECT set_config('a', 'b', " + strings.Repeat("x + ", n/4) + "true)",
	}
	for name, in := range inputs {
		start := time.Now()
		Analyze(in)
		Effects(in)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: %d bytes took %v", name, len(in), d)
		}
	}
}

// Past the whole-text bound on set_config argument scanning, a call is
// classified on the safe side: session-level, so the session is pinned.
func TestSetConfigScanBoundIsConservative(t *testing.T) {
	local := "SELECT set_config('search_path', 'x', true)"
	if Effects(local)&EffectSet != 0 {
		t.Fatalf("a transaction-local set_config pins: %v", Effects(local))
	}
	padding := "SELECT " + strings.Repeat("set_config('a', 'b', true), ", maxArgScans/4) + "1; "
	if got := Effects(padding + local); got&EffectSet == 0 {
		t.Errorf("after %d argument tokens the local call is not treated as session-level: %v", maxArgScans, got)
	}
}

// SET of one parameter to one constant gives its value as SET reads it;
// anything else gives none.
func TestSetValue(t *testing.T) {
	type v struct {
		param, value string
		def, simple  bool
	}
	for sql, w := range map[string]v{
		"SET extra_float_digits = 3":                      {"extra_float_digits", "3", false, true},
		"set extra_float_digits to -15":                   {"extra_float_digits", "-15", false, true},
		"set application_name = 007":                      {"application_name", "7", false, true},
		"set application_name = '007'":                    {"application_name", "007", false, true},
		"set work_mem = 1.50":                             {"work_mem", "1.50", false, true},
		"SET application_name = 'PostgreSQL JDBC Driver'": {"application_name", "PostgreSQL JDBC Driver", false, true},
		"SET SESSION application_name = 'it''s'":          {"application_name", "it's", false, true},
		"set DateStyle = ISO":                             {"datestyle", "iso", false, true},
		`set search_path = "MySchema"`:                    {"search_path", "MySchema", false, true},
		"set app.tenant = '42'":                           {"app.tenant", "42", false, true},
		"set work_mem to default":                         {"work_mem", "", true, true},
		"reset work_mem":                                  {"work_mem", "", true, true},
		"reset all":                                       {"all", "", false, false},
		"set search_path = a, b":                          {"search_path", "", false, false},
		"set statement_timeout = 1 + 1":                   {"statement_timeout", "", false, false},
		"set time zone 'UTC'":                             {"timezone", "", false, false},
		"set x = E'a\\nb'":                                {"x", "a\nb", false, true},
		"set x = U&'a'":                                   {"x", "", false, false},
		"set x = - 'a'":                                   {"x", "", false, false},
		"set local work_mem = '64MB'":                     {"work_mem", "64MB", false, true},
	} {
		sts := Analyze(sql)
		if len(sts) != 1 {
			t.Fatalf("%q: %d statements", sql, len(sts))
		}
		st := sts[0]
		if got := (v{st.Param, st.Value, st.Default, st.SimpleValue}); got != w {
			t.Errorf("%q: got %+v, want %+v", sql, got, w)
		}
	}
}
