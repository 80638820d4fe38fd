#!/usr/bin/python3
"""psycopg 3 against pgbridge (see ../../drivers_test.go).

The libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE,
PGSSLMODE) names a transaction-mode tenant whose pool holds 2 backends. Every
section opens at least 3 connections and interleaves their work, so that they
share those backends: a client's prepared statements (psycopg names them
_pg3_0, _pg3_1, ... on every connection) follow it from backend to backend,
and one client's statements, DEALLOCATEs, SET LOCALs and errors must never
show in another's results. Every result is checked exactly; the expected
values are what PostgreSQL itself answers (the program passes run directly
against PostgreSQL too).

At most one transaction is left open while other connections run (two would
hold both backends, and a third connection would wait for one), except in
the threaded section, where waiting is the point. A failing COPY and a
session SET pin a backend to their session until it ends, so both run on
connections of their own, closed right after.

Prints what it checks; exits 0 with "ok" as its last line when all passed.
PSY_DIRECT=1 (when run straight against PostgreSQL) skips the one check that
connections shared a backend; PSY_ONLY=<section number> runs one section.
"""

import datetime as dt
import hashlib
import os
import random
import signal
import sys
import threading
import time
import traceback
import uuid
from decimal import Decimal

import psycopg
from psycopg import errors as E
from psycopg.pq import TransactionStatus as TS
from psycopg.types.json import Json, Jsonb

START = time.monotonic()
NCHECKS = 0
FAILURES = []
SECTION = ""


class CheckFailed(AssertionError):
    pass


class Boom(Exception):
    """An application exception, raised on purpose."""


def same(got, want):
    """Equal values of the same types, recursively (True is not 1)."""
    if type(got) is not type(want):
        return False
    if isinstance(got, (list, tuple)):
        return len(got) == len(want) and all(same(g, w) for g, w in zip(got, want))
    if isinstance(got, dict):
        return got.keys() == want.keys() and all(same(got[k], want[k]) for k in got)
    return got == want


def short(v, n=300):
    s = repr(v)
    return s if len(s) <= n else s[:n] + "...(%d chars)" % len(s)


def check(what, got, want):
    global NCHECKS
    NCHECKS += 1
    if not same(got, want):
        raise CheckFailed("%s: got %s, want %s" % (what, short(got), short(want)))


def check_raises(what, exc_type, fn):
    """fn() must raise exc_type (exactly that class or a subclass)."""
    global NCHECKS
    NCHECKS += 1
    try:
        fn()
    except exc_type as ex:
        return ex
    except Exception as ex:
        raise CheckFailed("%s: raised %s: %s, want %s" % (what, type(ex).__name__, ex, exc_type.__name__))
    raise CheckFailed("%s: raised nothing, want %s" % (what, exc_type.__name__))


def say(msg):
    print("[%5.2fs] %s" % (time.monotonic() - START, msg), flush=True)


def connect(**kw):
    kw.setdefault("connect_timeout", 10)
    return psycopg.connect(**kw)


def one(conn, query, params=None, **kw):
    return conn.execute(query, params, **kw).fetchone()


def val(conn, query, params=None, **kw):
    return one(conn, query, params, **kw)[0]


def names(conn):
    """The statement names psycopg holds as prepared on conn."""
    return sorted(conn._prepared._names.values())


TABLES = ["psy_tx", "psy_pipe", "psy_copy", "psy_copy_bin", "psy_types", "psy_conc"]


def drop_tables(admin):
    for t in TABLES:
        admin.execute("DROP TABLE IF EXISTS %s" % t)


def create_tables(admin):
    admin.execute("CREATE TABLE psy_tx (id int PRIMARY KEY, note text)")
    admin.execute("CREATE TABLE psy_pipe (id int PRIMARY KEY, v text NOT NULL)")
    admin.execute(
        "CREATE TABLE psy_copy (id int PRIMARY KEY, name text, amount numeric, at timestamptz, data bytea)")
    admin.execute(
        "CREATE TABLE psy_copy_bin (id bigint PRIMARY KEY, name text, amount numeric, at timestamptz,"
        " data bytea, flags bool[])")
    admin.execute(
        "CREATE TABLE psy_types (id int PRIMARY KEY, i int, b bigint, n numeric, f float8, t text, by bytea,"
        " ts timestamptz, tsn timestamp, d date, iv interval, j json, jb jsonb, ai int[], at text[],"
        " a2 int[], bo bool, u uuid)")
    admin.execute("CREATE TABLE psy_conc (worker int, seq int, v bigint, PRIMARY KEY (worker, seq))")


# ---------------------------------------------------------------------------
# 1. Server-side prepared statements under the same names on every connection

def sec_prepared():
    A = connect(autocommit=True, prepare_threshold=0)
    B = connect(autocommit=True)  # default threshold: prepares with prepare=True
    C = connect(prepare_threshold=0)  # not autocommit: commits each round
    try:
        # Statement k of each connection is _pg3_k there: same names,
        # different texts, parameter counts and result types.
        stmts = {
            "A": [
                ("select %s::int * 2 as v", lambda i: (i,), lambda i: (i * 2,)),
                ("select %s::text || '-a' as v", lambda i: ("x%d" % i,), lambda i: ("x%d-a" % i,)),
                ("select array[%s::int, %s::int] as v, 'A'::text as who",
                 lambda i: (i, -i), lambda i: ([i, -i], "A")),
                ("select %s as v", lambda i: (i,), lambda i: (i,)),  # int param
                ("select %s as v", lambda i: ("s%d" % i,), lambda i: ("s%d" % i,)),  # text param
            ],
            "B": [
                ("select %s::text || '-b' as v, %s::int + 1 as w",
                 lambda i: ("y%d" % i, i), lambda i: ("y%d-b" % i, i + 1)),
                ("select %s::bigint * 1000000000000 as v", lambda i: (i,), lambda i: (i * 1000000000000,)),
                ("select %s::numeric / 4 as v", lambda i: (i,), lambda i: (Decimal(i) / 4,)),
                ("select %s as v", lambda i: ("s%d" % i,), lambda i: ("s%d" % i,)),  # text first here
                ("select %s as v", lambda i: (i,), lambda i: (i,)),
            ],
            "C": [
                ("select 'C'::text as who, %s::int + 100 as v", lambda i: (i,), lambda i: ("C", i + 100)),
                ("select %s::bool and true as v", lambda i: (i % 2 == 0,), lambda i: (i % 2 == 0,)),
                ("select %s::date + 1 as v", lambda i: (dt.date(2024, 1, 1) + dt.timedelta(days=i),),
                 lambda i: (dt.date(2024, 1, 2) + dt.timedelta(days=i),)),
                ("select %s::int * 3 as v", lambda i: (i,), lambda i: (i * 3,)),
                ("select count(*) as n from generate_series(1, %s::int)", lambda i: (i,), lambda i: (i,)),
            ],
        }
        conns = {"A": A, "B": B, "C": C}
        binary = {"A": False, "B": True, "C": False}

        def run(who, k, i, use_binary=None):
            conn = conns[who]
            q, params, want = stmts[who][k]
            b = binary[who] if use_binary is None else use_binary
            cur = conn.cursor(binary=b)
            row = cur.execute(q, params(i), prepare=True if who == "B" else None).fetchone()
            exp = want(i)
            # numeric / 4 comes back with the server's scale; compare as Decimal values
            if who == "B" and k == 2:
                check("%s stmt %d i=%d" % (who, k, i), row[0] == exp[0] and type(row[0]) is Decimal, True)
            else:
                check("%s stmt %d i=%d (binary=%s)" % (who, k, i, b), row, exp)

        say("prepared: 3 connections, _pg3_0.._pg3_4 with different texts on each, interleaved")
        pids = {who: set() for who in conns}
        for i in range(60):
            for who in ("A", "B", "C"):
                pids[who].add(val(conns[who], "select pg_backend_pid()", prepare=False))
            order = ["A", "B", "C"] if i % 3 == 0 else ["C", "A", "B"] if i % 3 == 1 else ["B", "C", "A"]
            for k in range(5):
                for who in order:
                    run(who, k, i, use_binary=(i % 4 == 3) if who != "B" else None)
                    if k == 2:
                        pids[who].add(val(conns[who], "select pg_backend_pid()", prepare=False))
            C.commit()
            if i == 0:
                for who, conn in conns.items():
                    check("psycopg names on %s" % who, names(conn), [b"_pg3_%d" % n for n in range(5)])
        for who, conn in conns.items():
            check("psycopg still holds 5 statements on %s" % who, names(conn), [b"_pg3_%d" % n for n in range(5)])
        # Through the router the connections took turns on shared backends
        # (directly, each has a backend of its own).
        if not os.environ.get("PSY_DIRECT"):
            check("some backend served two of A, B, C", bool(pids["A"] & pids["B"] or pids["A"] & pids["C"]
                                                            or pids["B"] & pids["C"]), True)
        say("prepared: backends seen: " + ", ".join("%s %d" % (w, len(p)) for w, p in sorted(pids.items())))

        say("prepared: two transactions open at once (A and C), then B")
        with A.transaction():
            for i in range(20):
                run("A", i % 5, i)
                run("C", i % 5, i)
        C.commit()
        for i in range(20):
            run("B", i % 5, i)

        say("prepared: a statement of A's that fails at execution, then A's others still right")
        A.execute("select 1 / %s::int", (1,))  # prepared as _pg3_5
        check_raises("A: 1/0 prepared", E.DivisionByZero, lambda: A.execute("select 1 / %s::int", (0,)))
        check("A after error: status", A.info.transaction_status, TS.IDLE)
        for i in range(10):
            for who in ("B", "A", "C"):
                run(who, i % 5, i)
        C.commit()
        check("A: 1/x prepared again", val(A, "select 1 / %s::int", (1,)), 1)
    finally:
        for c in (A, B, C):
            c.close()


# ---------------------------------------------------------------------------
# 2. Statement cache eviction: psycopg DEALLOCATEs what falls out

def sec_eviction():
    D = connect(autocommit=True, prepare_threshold=0)
    D.prepared_max = 2
    A = connect(autocommit=True, prepare_threshold=0)
    B = connect(autocommit=True, prepare_threshold=0)
    try:
        say("eviction: prepared_max=2 on D over 12 texts, interleaved with A and B using the same names")
        rng = random.Random(7)
        # A and B hold _pg3_0.._pg3_2 for their whole life
        qa = ["select %%s::int + %d as v, 'a%d'::text as tag" % (k * 1000, k) for k in range(3)]
        qb = ["select %%s::text || '|b%d' as v" % k for k in range(3)]
        for k in range(3):
            check("A warm %d" % k, one(A, qa[k], (1,)), (1 + k * 1000, "a%d" % k))
            check("B warm %d" % k, one(B, qb[k], ("w",)), ("w|b%d" % k,))
        for it in range(240):
            k = rng.randrange(12)
            x = rng.randrange(10 ** 6)
            check("D query %d x=%d" % (k, x), one(D, "select %%s::int + %d as v, %d as k" % (k, k), (x,)), (x + k, k))
            if it % 3 == 0:
                j = it % 3 if it % 2 else (it // 3) % 3
                check("A %d" % j, one(A, qa[j], (x,)), (x + j * 1000, "a%d" % j))
                check("B %d" % j, one(B, qb[j], (str(x),)), ("%d|b%d" % (x, j),))
            check("D holds at most 2 statements", len(names(D)) <= 2, True)
        check("D went through many names", D._prepared._prepared_idx > 100, True)
        # (python ints are sent as int2, int4 or int8 by value: more than 3 keys)
        check("A never lost a name", names(A), sorted(b"_pg3_%d" % n for n in range(A._prepared._prepared_idx)))

        say("eviction: in a pipeline (DEALLOCATE sent inside the pipeline)")
        with D.pipeline():
            curs = [(k, D.execute("select %%s::int * %d as v" % (k + 2), (k,))) for k in range(30)]
            for j in range(3):  # B runs on the other backend meanwhile
                check("B during D's pipeline", one(B, qb[j], ("p",)), ("p|b%d" % j,))
        for k, cur in curs:
            check("D pipeline %d" % k, cur.fetchone(), (k * (k + 2),))
        check("D holds at most 2 statements after the pipeline", len(names(D)) <= 2, True)
        for j in range(3):
            check("A after D's pipeline", one(A, qa[j], (5,)), (5 + j * 1000, "a%d" % j))
            check("D after its pipeline", one(D, "select %s::int * 2 as v", (j,)), (j * 2,))
    finally:
        for c in (D, A, B):
            c.close()


# ---------------------------------------------------------------------------
# 3. Transactions

def ids(conn, lo, hi, table="psy_tx"):
    rows = conn.execute("select id from " + table + " where id between %s and %s order by id", (lo, hi)).fetchall()
    return [r[0] for r in rows]


def sec_transactions():
    T = connect(prepare_threshold=0)  # not autocommit
    U = connect(autocommit=True, prepare_threshold=0)
    V = connect(autocommit=True)
    try:
        ins = "insert into psy_tx (id, note) values (%s, %s)"

        say("transactions: with transaction(), isolation seen from other connections")
        with T.transaction():
            T.execute(ins, (1, "one"))
            check("T sees its row", ids(T, 1, 1), [1])
            check("U does not see T's uncommitted row", ids(U, 1, 1), [])
            check("V does not see T's uncommitted row", ids(V, 1, 1), [])
            check("T in transaction", T.info.transaction_status, TS.INTRANS)
        check("T idle after the block", T.info.transaction_status, TS.IDLE)
        check("U sees the committed row", ids(U, 1, 1), [1])

        say("transactions: nested blocks (savepoints), an exception in one, an SQL error in one")
        with T.transaction():
            T.execute(ins, (10, "outer"))
            with T.transaction():
                T.execute(ins, (11, "inner"))
            try:
                with T.transaction():
                    T.execute(ins, (12, "rolled back"))
                    check("U mid-savepoint", ids(U, 10, 19), [])
                    raise Boom()
            except Boom:
                pass
            try:
                with T.transaction():
                    T.execute(ins, (13, "rolled back too"))
                    T.execute("select 1 / %s::int", (0,))
            except E.DivisionByZero:
                pass
            check("T after the failed savepoint", T.info.transaction_status, TS.INTRANS)
            T.execute(ins, (14, "after"))
            check("T inside", ids(T, 10, 19), [10, 11, 14])
            check("V outside", ids(V, 10, 19), [])
        check("committed: savepoints rolled back their rows only", ids(U, 10, 19), [10, 11, 14])

        say("transactions: an exception rolls the whole block back; psycopg.Rollback")
        try:
            with T.transaction():
                T.execute(ins, (20, "x"))
                T.execute(ins, (21, "y"))
                raise Boom()
        except Boom:
            pass
        check("T idle after rollback", T.info.transaction_status, TS.IDLE)
        with T.transaction() as tx:
            T.execute(ins, (22, "z"))
            raise psycopg.Rollback(tx)
        check("nothing of 20..29", ids(V, 20, 29), [])
        check("T still has prepared statements right after rollbacks", ids(T, 1, 14), [1, 10, 11, 14])

        say("transactions: SQL error in an implicit transaction, aborted until rollback")
        T.execute(ins, (30, "first"))
        ex = check_raises("duplicate key", E.UniqueViolation, lambda: T.execute(ins, (30, "again")))
        check("sqlstate", ex.sqlstate, "23505")
        check("T in error", T.info.transaction_status, TS.INERROR)
        check_raises("statement in aborted transaction", E.InFailedSqlTransaction, lambda: T.execute("select 1"))
        check("U meanwhile", ids(U, 1, 1), [1])
        T.rollback()
        check("T idle after rollback()", T.info.transaction_status, TS.IDLE)
        check("30 rolled back", ids(T, 30, 30), [])
        T.execute(ins, (31, "after rollback"))
        T.commit()
        check("31 committed", ids(V, 30, 39), [31])

        say("transactions: on an autocommit connection")
        U.execute(ins, (40, "autocommit"))
        check("U idle after a statement", U.info.transaction_status, TS.IDLE)
        check("V sees U's row at once", ids(V, 40, 40), [40])
        with U.transaction():
            U.execute(ins, (41, "in block"))
            check("U in block", U.info.transaction_status, TS.INTRANS)
            check("V does not see 41 yet", ids(V, 41, 41), [])
        check("V sees 41", ids(V, 41, 41), [41])
        try:
            with U.transaction():
                U.execute(ins, (42, "dropped"))
                U.execute(ins, (40, "duplicate"))
        except E.UniqueViolation:
            pass
        else:
            raise CheckFailed("U: duplicate in a block raised nothing")
        check("U idle after the failed block", U.info.transaction_status, TS.IDLE)
        check("42 rolled back", ids(V, 42, 42), [])

        say("transactions: rollbacks make psycopg DEALLOCATE ALL; others' statements stay")
        for i in range(30):
            T.execute(ins, (100 + i, "t"))
            if i % 2:
                T.rollback()  # psycopg clears its cache: DEALLOCATE ALL
            else:
                T.commit()
            check("U prepared after T's %s" % ("rollback" if i % 2 else "commit"),
                  one(U, "select %s::int + 1, 'u'::text", (i,)), (i + 1, "u"))
            check("V", val(V, "select count(*) from psy_tx where id >= 100 and id < %s", (200,)), (i + 2) // 2)
        check("even ids committed", ids(U, 100, 199), list(range(100, 130, 2)))
    finally:
        for c in (T, U, V):
            c.close()


# ---------------------------------------------------------------------------
# 4. Pipeline mode

def sec_pipeline():
    P = connect(autocommit=True, prepare_threshold=0)
    Q = connect()  # not autocommit
    R = connect(autocommit=True)
    try:
        ins = "insert into psy_pipe (id, v) values (%s, %s) returning id, v"

        say("pipeline: 300 statements, results checked after the block, others running meanwhile")
        with P.pipeline() as p:
            curs = []
            for i in range(300):
                curs.append(("ins", i, P.execute(ins, (i, "v%d" % i))))
                if i % 10 == 9:
                    curs.append(("sum", i, P.execute("select count(*), sum(id) from psy_pipe where id <= %s", (i,))))
                if i == 150:
                    p.sync()
                    check("R after P's sync", val(R, "select count(*) from psy_pipe where id <= 150"), 151)
            check("R during P's pipeline", val(R, "select 'r'"), "r")
        for kind, i, cur in curs:
            if kind == "ins":
                check("pipeline insert %d" % i, cur.fetchone(), (i, "v%d" % i))
            else:
                check("pipeline sum %d" % i, cur.fetchone(), (i + 1, i * (i + 1) // 2))

        say("pipeline: a failing statement in the middle (autocommit, sync before it)")
        def failing():
            with P.pipeline() as p:
                P.execute(ins, (1000, "a"))
                P.execute(ins, (1001, "b"))
                p.sync()
                P.execute(ins, (1002, "c"))
                P.execute(ins, (1000, "duplicate"))
                P.execute(ins, (1003, "d"))  # skipped: psycopg may raise before queueing it
        check_raises("pipeline with a duplicate key", E.UniqueViolation, failing)
        check("P idle after the pipeline", P.info.transaction_status, TS.IDLE)
        check("what the sync committed stayed, the segment of the error did not", ids(R, 1000, 1009, "psy_pipe"), [1000, 1001])
        check("P usable after", one(P, ins, (1004, "e")), (1004, "e"))
        check("P prepared still right", one(P, "select count(*), sum(id) from psy_pipe where id <= %s", (9,)),
              (10, 45))

        say("pipeline: a failing statement in a transaction (not autocommit)")

        def failing_tx():
            with Q.pipeline():
                Q.execute(ins, (2000, "a"))
                Q.execute(ins, (2001, "b"))
                Q.execute("select 1 / %s::int", (0,))
                Q.execute(ins, (2002, "c"))
        check_raises("pipeline with 1/0", E.DivisionByZero, failing_tx)
        check("Q in error", Q.info.transaction_status, TS.INERROR)
        check("R meanwhile", ids(R, 2000, 2009, "psy_pipe"), [])
        Q.rollback()
        check("Q after rollback", ids(Q, 2000, 2009, "psy_pipe"), [])
        with Q.pipeline():
            c1 = Q.execute(ins, (2003, "after"))
            c2 = Q.execute("select count(*) from psy_pipe where id >= 2000 and id < 3000")
        check("Q pipeline after error", c1.fetchone(), (2003, "after"))
        check("Q count", c2.fetchone(), (1,))
        Q.commit()
        check("R sees 2003", ids(R, 2000, 2009, "psy_pipe"), [2003])

        say("pipeline: executemany (1000 rows), with returning, in a transaction, failing")
        cur = P.cursor()
        cur.executemany("insert into psy_pipe (id, v) values (%s, %s)", [(3000 + i, "m%d" % i) for i in range(1000)])
        check("executemany rowcount", cur.rowcount, 1000)
        check("executemany rows", one(R, "select count(*), sum(id), min(v), max(v) from psy_pipe where id between 3000 and 3999"),
              (1000, sum(range(3000, 4000)), "m0", "m999"))
        cur.executemany(ins, [(4000 + i, "r%d" % i) for i in range(50)], returning=True)
        got = []
        while True:
            got.append(cur.fetchone())
            if not cur.nextset():
                break
        check("executemany returning", got, [(4000 + i, "r%d" % i) for i in range(50)])
        qc = Q.cursor()
        qc.executemany("insert into psy_pipe (id, v) values (%s, %s)", [(4100 + i, "q") for i in range(100)])
        check("R does not see Q's uncommitted executemany", ids(R, 4100, 4199, "psy_pipe"), [])
        Q.commit()
        check("R sees Q's executemany", ids(R, 4100, 4199, "psy_pipe"), list(range(4100, 4200)))
        check_raises("executemany with a duplicate", E.UniqueViolation,
                     lambda: P.cursor().executemany("insert into psy_pipe (id, v) values (%s, %s)",
                                                    [(5000 + i, "x") for i in range(5)] + [(3000, "dup")] +
                                                    [(5006 + i, "y") for i in range(4)]))
        check("P idle after failed executemany", P.info.transaction_status, TS.IDLE)
        check("failed executemany left nothing", ids(R, 5000, 5999, "psy_pipe"), [])
        check("P usable after", one(P, ins, (5100, "ok")), (5100, "ok"))
    finally:
        for c in (P, Q, R):
            c.close()


# ---------------------------------------------------------------------------
# 5. COPY

TZ = dt.timezone(dt.timedelta(hours=2))


def copy_row(i):
    return (i, "név %d ☃" % i, Decimal(i) / Decimal(8),
            dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=i),
            bytes([i % 256, (i * 7) % 256, 0, 255]))


def sec_copy():
    K = connect(autocommit=True)
    L = connect(autocommit=True, prepare_threshold=0)
    M = connect()  # not autocommit
    try:
        say("copy: 10,000 rows in with write_row, other connections working meanwhile")
        cur = K.cursor()
        with cur.copy("COPY psy_copy (id, name, amount, at, data) FROM STDIN") as cp:
            for i in range(10000):
                cp.write_row(copy_row(i))
                if i % 2500 == 0:
                    check("L during COPY", one(L, "select %s::int * 2", (i,)), (i * 2,))
                    check("M during COPY (sees none yet)", val(M, "select count(*) from psy_copy"), 0)
                    M.commit()
        check("copy rowcount", cur.rowcount, 10000)
        check("count after copy", one(L, "select count(*), sum(id) from psy_copy"), (10000, sum(range(10000))))

        say("copy: 10,000 rows out, text, typed")
        with K.cursor().copy("COPY (select id, name, amount, at, data from psy_copy order by id) TO STDOUT") as cp:
            cp.set_types(["int4", "text", "numeric", "timestamptz", "bytea"])
            rows = list(cp.rows())
        check("copy out row count", len(rows), 10000)
        for i, row in enumerate(rows):
            check("copy out row %d" % i, row, copy_row(i))

        say("copy: binary in and out, in a transaction")
        with M.cursor().copy("COPY psy_copy_bin (id, name, amount, at, data, flags) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["int8", "text", "numeric", "timestamptz", "bytea", "bool[]"])
            for i in range(10000):
                r = copy_row(i)
                cp.write_row((i * 3,) + r[1:] + ([i % 2 == 0, None, True],))
                if i == 5000:
                    check("L during binary COPY", one(L, "select %s::int * 2", (i,)), (i * 2,))
        check("L does not see M's uncommitted COPY", val(L, "select count(*) from psy_copy_bin"), 0)
        M.commit()
        with L.cursor().copy("COPY (select id, name, amount, at, data, flags from psy_copy_bin order by id)"
                             " TO STDOUT (FORMAT BINARY)") as cp:
            cp.set_types(["int8", "text", "numeric", "timestamptz", "bytea", "bool[]"])
            # binary COPY hands bytea out as memoryview
            rows = [r[:4] + (bytes(r[4]),) + r[5:] for r in cp.rows()]
        check("binary copy out count", len(rows), 10000)
        for i, row in enumerate(rows):
            r = copy_row(i)
            check("binary copy out row %d" % i, row, (i * 3,) + r[1:] + ([i % 2 == 0, None, True],))

        # A failing COPY pins its session's backend in the router until the
        # session ends: run them on connections of their own.
        say("copy: bad data in the middle (autocommit), then the connection goes on")
        F = connect(autocommit=True, prepare_threshold=0)
        try:
            def bad_copy():
                with F.cursor().copy("COPY psy_copy (id, name) FROM STDIN") as cp:
                    for i in range(3000):
                        cp.write_row((20000 + i, "ok"))
                    cp.write_row(("not-an-int", "bad"))
                    for i in range(3000):
                        cp.write_row((30000 + i, "ok"))
            ex = check_raises("COPY of bad data", E.InvalidTextRepresentation, bad_copy)
            check("sqlstate", ex.sqlstate, "22P02")
            check("F idle", F.info.transaction_status, TS.IDLE)
            check("nothing of the failed COPY", one(F, "select count(*), max(id) from psy_copy"), (10000, 9999))
            check("K meanwhile", val(K, "select count(*) from psy_copy where id >= %s", (20000,)), 0)

            say("copy: an application exception inside the copy block (CopyFail)")

            def app_fails():
                with F.cursor().copy("COPY psy_copy (id, name) FROM STDIN") as cp:
                    for i in range(100):
                        cp.write_row((40000 + i, "ok"))
                    raise Boom("stop")
            # psycopg 3.1 sends CopyFail and raises the server's answer
            ex = check_raises("exception in copy block", E.QueryCanceled, app_fails)
            check("CopyFail message", "error from Python: Boom - stop" in str(ex), True)
            check("F idle after CopyFail", F.info.transaction_status, TS.IDLE)
            for i in range(5):
                check("F prepared after the failed COPYs", one(F, "select %s::int + 1", (i,)), (i + 1,))
                check("L", one(L, "select %s::int * 2", (i,)), (i * 2,))
                check("K", val(K, "select count(*) from psy_copy"), 10000)
        finally:
            F.close()

        say("copy: bad data in a transaction, aborted, rolled back, then a good COPY")
        F2 = connect()
        try:
            F2.execute("insert into psy_copy (id, name) values (50000, 'before')")

            def bad_copy_tx():
                with F2.cursor().copy("COPY psy_copy (id, name) FROM STDIN") as cp:
                    cp.write_row((50001, "ok"))
                    cp.write_row((50001, "duplicate"))
            check_raises("COPY with a duplicate key in a transaction", E.UniqueViolation, bad_copy_tx)
            check("F2 in error", F2.info.transaction_status, TS.INERROR)
            check_raises("F2 aborted", E.InFailedSqlTransaction, lambda: F2.execute("select 1"))
            F2.rollback()
            with F2.cursor().copy("COPY psy_copy (id, name) FROM STDIN") as cp:
                for i in range(10):
                    cp.write_row((50010 + i, "good"))
            F2.commit()
            check("after the good COPY", one(K, "select count(*), min(id) from psy_copy where id >= 50000"), (10, 50010))
        finally:
            F2.close()
        check("L after F2", one(L, "select %s::int * 2", (21,)), (42,))
    finally:
        for c in (K, L, M):
            c.close()


# ---------------------------------------------------------------------------
# 6. Types

def type_values():
    rng = random.Random(42)
    mib = rng.randbytes(1 << 20)
    tz = dt.timezone(dt.timedelta(hours=5, minutes=30))
    return [
        ("int4", 0), ("int4", 42), ("int4", -2147483648), ("int4", 2147483647),
        ("int8", 9223372036854775807), ("int8", -9223372036854775808),
        ("numeric", Decimal("12345678901234567890.123456789012")), ("numeric", Decimal("-0.000001")),
        ("numeric", Decimal("0")),
        ("float8", 1.5), ("float8", -2.25e-300),
        ("text", "héllo wörld ☃ 𝄞 日本語 'single' \"double\" \\back\\ $$ ;"), ("text", ""),
        ("bytea", b"\x00\x01\x02\xff'\\\"x"), ("bytea", b""), ("bytea", mib),
        ("timestamptz", dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=tz)),
        ("timestamptz", dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)),
        ("timestamp", dt.datetime(1999, 12, 31, 23, 59, 59, 1)),
        ("date", dt.date(2024, 2, 29)), ("date", dt.date(1, 1, 1)),
        ("interval", dt.timedelta(days=3, seconds=7, microseconds=5)),
        ("json", {"a": [1, 2, {"b": None}], "ü": "☃", "n": 1.5}),
        ("jsonb", {"a": [1, 2, {"b": None}], "ü": "☃", "t": True}),
        ("int4[]", [1, 2, None, 4]), ("int4[]", []),
        ("text[]", ["a", 'b"c', None, "ü,{}", "NULL", ""]),
        ("int4[]", [[1, 2], [3, 4]]),
        ("bool", True), ("bool", False),
        ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ]


def wrap(typ, v):
    if typ == "json":
        return Json(v)
    if typ == "jsonb":
        return Jsonb(v)
    return v


def sec_types():
    X = connect(autocommit=True, prepare_threshold=0)
    Y = connect(autocommit=True)
    Z = connect()  # not autocommit
    try:
        vals = type_values()
        say("types: %d values as parameters and results, text and binary, on 3 connections" % len(vals))
        for rnd in range(2):
            for n, (typ, v) in enumerate(vals):
                for conn, who in ((X, "X"), (Y, "Y"), (Z, "Z")):
                    for binary in (False, True):
                        for ph in ("%s", "%t", "%b"):
                            got = conn.cursor(binary=binary).execute(
                                "select %s::%s, %s::%s is null" % (ph, typ, ph, typ), (wrap(typ, v), None)).fetchone()
                            check("%s %s %r binary=%s %s" % (who, typ, short(v, 40), binary, ph), got, (v, True))
                Z.commit()

        say("types: through a table, every column, text and binary results")
        cols = ["i", "b", "n", "f", "t", "by", "ts", "tsn", "d", "iv", "j", "jb", "ai", "at", "a2", "bo", "u"]
        rows = [
            (1, 7, -7, Decimal("3.14159265358979323846264338327950288"), 0.1, "ünïcödé ☃", bytes(range(256)) * 4096,
             dt.datetime(2021, 6, 30, 12, 0, tzinfo=dt.timezone.utc), dt.datetime(2021, 6, 30, 12, 0),
             dt.date(2021, 6, 30), dt.timedelta(hours=25), {"k": "v"}, {"k": [1, "2"]}, [1, None], ["x", None],
             [[5, 6], [7, 8]], True, uuid.UUID(int=1)),
            (2,) + (None,) * len(cols),
        ]
        ins = "insert into psy_types (id, %s) values (%%s, %s)" % (", ".join(cols), ", ".join(["%s"] * len(cols)))

        def wrapped(r):
            out = list(r)
            if out[11] is not None:
                out[11] = Json(out[11])
                out[12] = Jsonb(out[12])
            return out
        Y.execute(ins, wrapped(rows[0]), prepare=True)
        X.cursor(binary=True).execute(ins, wrapped(rows[1]))
        sel = "select id, %s from psy_types where id = %%s" % ", ".join(cols)
        for conn, who in ((X, "X"), (Y, "Y"), (Z, "Z")):
            for binary in (False, True):
                for r in rows:
                    got = conn.cursor(binary=binary).execute(sel, (r[0],), prepare=True).fetchone()
                    check("%s row %d binary=%s" % (who, r[0], binary), got, r)
        Z.commit()
        check("bytea length on the server", val(X, "select length(by) from psy_types where id = 1"), 1 << 20)
        check("md5 of 1 MiB on the server", val(Y, "select md5(%b::bytea)", (vals[15][1],)),
              hashlib.md5(vals[15][1]).hexdigest())

        say("types: server-made values")
        check("server values", one(X, "select 'ü☃'::text, 12.50::numeric, '2024-02-29'::date, '{1,NULL}'::int[],"
                                   " null::text, true, 9007199254740993::int8, '\\x00ff'::bytea, '{\"a\":1}'::jsonb"),
              ("ü☃", Decimal("12.50"), dt.date(2024, 2, 29), [1, None], None, True, 9007199254740993, b"\x00\xff",
               {"a": 1}))
        check("server timestamptz", val(Y, "select '2024-02-29 12:34:56.789+05:30'::timestamptz", binary=True),
              dt.datetime(2024, 2, 29, 7, 4, 56, 789000, tzinfo=dt.timezone.utc))
    finally:
        for c in (X, Y, Z):
            c.close()


# ---------------------------------------------------------------------------
# 7. Server-side (named) cursors

def sec_named_cursors():
    N = connect()  # not autocommit
    A = connect(autocommit=True, prepare_threshold=0)
    B = connect(autocommit=True)
    try:
        say("named cursor: 50,000 rows, itersize 2000, other connections working between steps")
        with N.transaction():
            with N.cursor(name="psy_big") as cur:
                cur.itersize = 2000
                cur.execute("select g, md5(g::text), g::int8 * 3 from generate_series(1, 50000) g order by g")
                n = 0
                for row in cur:
                    n += 1
                    if row != (n, hashlib.md5(str(n).encode()).hexdigest(), n * 3):
                        check("named cursor row %d" % n, row, (n, hashlib.md5(str(n).encode()).hexdigest(), n * 3))
                    if n % 5000 == 0:
                        check("A between fetches", one(A, "select %s::int + 1", (n,)), (n + 1,))
                        check("B between fetches", one(B, "select %s::text", (str(n),), prepare=True), (str(n),))
                check("named cursor rows", n, 50000)

        say("named cursor: fetchmany steps, binary, two cursors open at once, scrollable")
        with N.transaction():
            c1 = N.cursor(name="psy_c1", binary=True)
            c2 = N.cursor(name="psy_c2", scrollable=True)
            c1.execute("select id, name, amount, at, data from psy_copy where id < 10000 order by id")
            c2.execute("select g from generate_series(1, 50000) g")
            got = 0
            c2_next = 1
            while True:
                rows = c1.fetchmany(997)
                if not rows:
                    break
                for row in rows:
                    if row != copy_row(got):
                        check("binary cursor row %d" % got, row, copy_row(got))
                    got += 1
                more = c2.fetchmany(1000)
                check("c2 step", [r[0] for r in more], list(range(c2_next, c2_next + 1000)))
                c2_next += 1000
                if got % (997 * 4) == 0:
                    check("A", one(A, "select %s::int + 1", (got,)), (got + 1,))
            check("binary cursor rows", got, 10000)
            c2.scroll(49990, mode="absolute")
            check("scroll absolute", c2.fetchone(), (49991,))
            c2.scroll(-11)
            check("scroll relative", c2.fetchone(), (49981,))
            c1.close()
            c2.close()

        say("named cursor: outside a transaction on an autocommit connection fails as on PostgreSQL")
        check_raises("DECLARE outside a transaction", E.NoActiveSqlTransaction,
                     lambda: A.cursor(name="psy_nope").execute("select 1"))
        check("A after", one(A, "select %s::int + 1", (1,)), (2,))
        N.commit()
    finally:
        for c in (N, A, B):
            c.close()


# ---------------------------------------------------------------------------
# 8. Session state

SETTINGS = "select current_setting('statement_timeout'), current_setting('search_path')," \
           " current_setting('TimeZone'), current_setting('application_name')"


def sec_session():
    base_conn = connect(autocommit=True)
    base = one(base_conn, SETTINGS)
    base_tz = base[2]
    base_conn.close()
    W1 = connect(application_name="psy_w1")  # not autocommit
    W2 = connect(autocommit=True, prepare_threshold=0)
    W3 = connect(autocommit=True)
    try:
        want_w1 = base[:3] + ("psy_w1",)
        check("baseline W1", one(W1, SETTINGS), want_w1)
        W1.commit()

        say("session: SET LOCAL inside a transaction does not outlive it, on any connection")
        for rnd in range(4):
            with W2.transaction():
                W2.execute("set local statement_timeout = '4321ms'")
                W2.execute("set local search_path = pg_catalog")
                W2.execute("set local timezone = 'Asia/Tokyo'")
                W2.execute("select set_config('application_name', 'psy_local', true)")
                check("W2 inside", one(W2, SETTINGS), ("4321ms", "pg_catalog", "Asia/Tokyo", "psy_local"))
                check("W2 ParameterStatus TimeZone inside", W2.info.parameter_status("TimeZone"), "Asia/Tokyo")
                check("W3 meanwhile", one(W3, SETTINGS), base)
            for i in range(6):
                check("W2 after (%d)" % i, one(W2, SETTINGS), base)
                check("W3 after (%d)" % i, one(W3, SETTINGS), base)
                check("W1 after (%d)" % i, one(W1, SETTINGS), want_w1)
                W1.commit()
            check("W2 ParameterStatus TimeZone after", W2.info.parameter_status("TimeZone"), base_tz)
            # SET LOCAL in a non-autocommit connection ended by rollback
            W1.execute("set local statement_timeout = '1234ms'")
            check("W1 inside", val(W1, "show statement_timeout"), "1234ms")
            W1.rollback()
            for i in range(4):
                check("W3 after W1's rollback", one(W3, SETTINGS), base)
                check("W1 after its rollback", one(W1, SETTINGS), want_w1)
                W1.commit()

        say("session: SET (session level) stays with its connection only")
        S = connect(autocommit=True, prepare_threshold=0)
        try:
            S.execute("set statement_timeout = '7654ms'")
            S.execute("set timezone = 'Asia/Tokyo'")
            S.execute("set application_name = 'psy_s'")
            want_s = ("7654ms", base[1], "Asia/Tokyo", "psy_s")
            utc = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
            for i in range(15):
                check("S (%d)" % i, one(S, SETTINGS), want_s)
                got = val(S, "select %s::timestamptz", (utc,))
                check("S timestamptz offset", got.utcoffset(), dt.timedelta(hours=9))
                check("S timestamptz instant", got, utc)
                check("W2 (%d)" % i, one(W2, SETTINGS), base)
                check("W3 (%d)" % i, one(W3, SETTINGS), base)
                check("W1 (%d)" % i, one(W1, SETTINGS), want_w1)
                W1.commit()
                if i == 7:
                    with S.transaction():
                        check("S in a transaction", one(S, SETTINGS), want_s)
                        check("W3 while S in a transaction", one(W3, SETTINGS), base)
            check("S ParameterStatus", S.info.parameter_status("TimeZone"), "Asia/Tokyo")
            check("W3 ParameterStatus", W3.info.parameter_status("TimeZone"), base_tz)
            S.execute("reset statement_timeout")
            check("S after RESET", val(S, "show statement_timeout"), base[0])
        finally:
            S.close()
        for i in range(8):
            check("W2 after S left (%d)" % i, one(W2, SETTINGS), base)
            check("W3 after S left (%d)" % i, one(W3, SETTINGS), base)
            check("W1 after S left (%d)" % i, one(W1, SETTINGS), want_w1)
            W1.commit()
    finally:
        for c in (W1, W2, W3):
            c.close()


# ---------------------------------------------------------------------------
# 4b. Prepared statements whose Parse is in a pipeline segment that fails

def sec_pipeline_prepare():
    P = connect(autocommit=True, prepare_threshold=0)
    A = connect(autocommit=True, prepare_threshold=0)
    B = connect(autocommit=True)
    try:
        say("pipeline+prepare: Parse before the error stays, Parse after it is skipped")
        s1 = "select %s::int + 7 as s1"
        s2 = "select %s::text || '-s2' as s2"
        s3 = "select %s::int * 11 as s3"
        # A prepares other texts under the same names meanwhile
        a_q = ["select %%s::int - %d as a" % k for k in range(6)]

        def a_round(x):
            for k, q in enumerate(a_q):
                check("A %d" % k, one(A, q, (x,)), (x - k,))
            check("B", val(B, "select %s::int + 1", (x,)), x + 1)

        a_round(1)
        check("s2 prepared before", one(P, s2, ("b",)), ("b-s2",))  # _pg3_0

        # psycopg 3.1.7 keeps in its cache the names of statements whose
        # Parse was skipped after an error in a pipeline (on PostgreSQL too
        # their next use fails with 26000): texts queued after the error are
        # never used again here.
        def failing():
            with P.pipeline():
                P.execute(s1, (1,))         # Parse _pg3_1, runs
                P.execute("select 1 / %s::int", (0,))  # Parse _pg3_2, fails at execution
                P.execute(s2, ("x",))       # Bind of _pg3_0, skipped
                P.execute("select %s::int * 13 as once", (2,))  # Parse _pg3_3, skipped
        check_raises("pipeline with 1/0", E.DivisionByZero, failing)
        a_round(2)
        for i in range(12):
            check("s1 after (%d)" % i, one(P, s1, (i,)), (i + 7,))
            check("s2 after (%d)" % i, one(P, s2, (str(i),)), ("%d-s2" % i,))
            with P.pipeline():
                c3 = P.execute(s3, (i,))
                c1 = P.execute(s1, (i,))
            check("s3 in a pipeline (%d)" % i, c3.fetchone(), (i * 11,))
            check("s1 in a pipeline (%d)" % i, c1.fetchone(), (i + 7,))
            a_round(i)
        check("1/x prepared after its failure", val(P, "select 1 / %s::int", (1,)), 1)

        say("pipeline+prepare: a Parse that fails (undefined table) in the middle of a pipeline")

        def failing_parse():
            with P.pipeline():
                P.execute(s1, (100,))
                P.execute("select * from psy_no_such_table where x = %s", (1,))
                P.execute(s2, ("y",))
                P.execute("select %s::int * 17 as once", (2,))
        check_raises("Parse of an unknown table", E.UndefinedTable, failing_parse)
        for i in range(6):
            check("s1 after failed Parse", one(P, s1, (i,)), (i + 7,))
            check("s2 after failed Parse", one(P, s2, ("z",)), ("z-s2",))
            a_round(i)

        say("pipeline+prepare: a DROP makes psycopg DEALLOCATE ALL, A's statements of the same names stay")
        # (not inside a pipeline: psycopg 3.1.7 then deallocates statements
        # it has already queued, failing with 26000 on PostgreSQL too)
        for rnd in range(6):
            with P.pipeline():
                c1 = P.execute(s1, (rnd,))
                c2 = P.execute(s2, ("d%d" % rnd,))
                c3 = P.execute(s3, (rnd,))
            check("s1 before DROP", c1.fetchone(), (rnd + 7,))
            check("s2 before DROP", c2.fetchone(), ("d%d-s2" % rnd,))
            check("s3 before DROP", c3.fetchone(), (rnd * 11,))
            P.execute("drop table if exists psy_no_such_table")
            check("psycopg forgot P's statements", names(P), [])
            a_round(rnd)
            for q, x, want in ((s1, 3, (10,)), (s2, "w", ("w-s2",)), (s3, 3, (33,))):
                check("after DROP round %d" % rnd, one(P, q, (x,)), want)
            a_round(rnd + 1)
    finally:
        for c in (P, A, B):
            c.close()


# ---------------------------------------------------------------------------
# 7b. WITH HOLD cursor (pins the session: a connection of its own)

def sec_withhold():
    H = connect(prepare_threshold=0)
    A = connect(autocommit=True, prepare_threshold=0)
    B = connect(autocommit=True)
    try:
        say("withhold cursor: declared in a transaction, read after its commit, others interleaved")
        cur = H.cursor(name="psy_hold", withhold=True)
        cur.itersize = 500
        cur.execute("select g, g::text as t from generate_series(1, 5000) g order by g")
        H.commit()
        n = 0
        while True:
            rows = cur.fetchmany(500)
            if not rows:
                break
            for r in rows:
                n += 1
                if r != (n, str(n)):
                    check("hold row %d" % n, r, (n, str(n)))
            check("A", one(A, "select %s::int + 1", (n,)), (n + 1,))
            check("B", val(B, "select %s::int * 2", (n,)), n * 2)
            H.commit()
        check("hold rows", n, 5000)
        cur.close()
        H.commit()
    finally:
        for c in (H, A, B):
            c.close()


# ---------------------------------------------------------------------------
# 10. Cancel

def sec_cancel():
    A = connect(autocommit=True, prepare_threshold=0)
    B = connect(autocommit=True, prepare_threshold=0)
    C = connect()  # not autocommit
    try:
        say("cancel: a running query is cancelled")
        res = {}

        def sleeper(conn, key, secs):
            t0 = time.monotonic()
            try:
                res[key] = ("ok", conn.execute("select pg_sleep(%s), 'slept'::text", (secs,)).fetchone()[1])
            except Exception as ex:
                res[key] = (type(ex).__name__, str(ex).splitlines()[0])
            res[key + "_t"] = time.monotonic() - t0

        for i in range(3):
            th = threading.Thread(target=sleeper, args=(A, "a", 5))
            th.start()
            time.sleep(0.3)
            A.cancel()
            th.join(10)
            check("A cancelled (%d)" % i, res["a"], ("QueryCanceled", "canceling statement due to user request"))
            check("A cancelled quickly", res["a_t"] < 3, True)
            check("A usable after cancel", one(A, "select %s::int + 1", (i,)), (i + 1,))
            check("B", one(B, "select %s::int + 2", (i,)), (i + 2,))

        say("cancel: an idle connection's cancel does not touch another's query")
        for i in range(4):
            one(A, "select %s::int + 1", (i,))  # A has used a backend, now idle
            th = threading.Thread(target=sleeper, args=(B, "b", 0.6))
            th.start()
            time.sleep(0.2)
            A.cancel()
            th.join(10)
            check("B's query not cancelled by A's cancel (%d)" % i, res["b"], ("ok", "slept"))
            check("A after its idle cancel", one(A, "select %s::int + 1", (i,)), (i + 1,))

        say("cancel: idle in transaction, the cancel is ignored as on PostgreSQL")
        C.execute("select 1")
        th = threading.Thread(target=sleeper, args=(B, "b", 0.6))
        th.start()
        time.sleep(0.2)
        C.cancel()
        th.join(10)
        check("B not cancelled by C's cancel", res["b"], ("ok", "slept"))
        check("C still in its transaction", C.info.transaction_status, TS.INTRANS)
        check("C goes on", val(C, "select 2"), 2)
        C.commit()

        say("cancel: statement_timeout by SET LOCAL")
        try:
            with C.transaction():
                C.execute("set local statement_timeout = '200ms'")
                C.execute("select pg_sleep(3)")
        except E.QueryCanceled as ex:
            check("timeout message", str(ex).splitlines()[0], "canceling statement due to statement timeout")
        else:
            raise CheckFailed("statement_timeout did not fire")
        check("C after the timeout", val(C, "select 3"), 3)
        C.commit()
    finally:
        for c in (A, B, C):
            c.close()


# ---------------------------------------------------------------------------
# 11. Notices, multi-statement queries, client-side binding

def sec_misc():
    A = connect(autocommit=True, prepare_threshold=0)
    B = connect(autocommit=True)
    C = connect()
    try:
        say("notices go to the connection that raised them")
        got = {"A": [], "B": [], "C": []}
        for who, c in (("A", A), ("B", B), ("C", C)):
            c.add_notice_handler(lambda d, who=who: got[who].append(d.message_primary))
        for i in range(5):
            A.execute("do $$ begin raise notice 'psy A %%', %d; end $$" % i)
            C.execute("do $$ begin raise notice 'psy C %%', %d; end $$" % i)
            B.execute("select 1")
        C.commit()
        check("A's notices", got["A"], ["psy A %d" % i for i in range(5)])
        check("C's notices", got["C"], ["psy C %d" % i for i in range(5)])
        check("B's notices", got["B"], [])

        say("several statements in one query (simple protocol), results via nextset")
        cur = B.cursor()
        cur.execute("select 1 as a; select 'two'::text as b, 2; insert into psy_tx values (9001, 'multi')")
        res = [cur.fetchall()]
        while cur.nextset():
            res.append(cur.fetchall() if cur.description else cur.statusmessage)
        check("multi results", res, [[(1,)], [("two", 2)], "INSERT 0 1"])
        check_raises("multi with an error", E.UniqueViolation,
                     lambda: B.execute("insert into psy_tx values (9002, 'x'); insert into psy_tx values (9001, 'dup')"))
        check("the implicit transaction of the failed multi rolled back", one(A, "select count(*) from psy_tx where id in (9001, 9002)"), (1,))

        say("client-side binding (ClientCursor)")
        cc = psycopg.ClientCursor(C)
        for i in range(10):
            check("ClientCursor", cc.execute("select %s::text, %s::int, %s, %s", ("it's ü", i, None, [1, 2])).fetchone(),
                  ("it's ü", i, None, [1, 2]))
            check("A between", one(A, "select %s::int + 1", (i,)), (i + 1,))
        C.commit()
    finally:
        for c in (A, B, C):
            c.close()


# ---------------------------------------------------------------------------
# 12. LISTEN/NOTIFY (LISTEN pins the session)

def sec_notify():
    Ln = connect(autocommit=True)
    A = connect(autocommit=True, prepare_threshold=0)
    B = connect()
    got = []
    try:
        say("LISTEN on one connection, NOTIFY from two others")
        # Ln now holds a backend of its own: one transaction at a time here
        Ln.add_notify_handler(lambda n: got.append((n.channel, n.payload)))
        Ln.execute("listen psy_chan")
        A.execute("select pg_notify('psy_chan', %s)", ("from A",))
        B.execute("notify psy_chan, 'from B in a transaction'")
        for i in range(3):
            Ln.execute("select 1")  # notifications arrive with answers too
        check("B's notification not delivered before its commit", got, [("psy_chan", "from A")])
        B.commit()
        check("A between", one(A, "select %s::int + 1", (1,)), (2,))
        for i in range(100):
            if len(got) == 2:
                break
            time.sleep(0.02)
            Ln.execute("select 1")
        check("notifications", got, [("psy_chan", "from A"), ("psy_chan", "from B in a transaction")])
        Ln.execute("unlisten *")
    finally:
        for c in (A, B):
            c.close()
        Ln.close()


# ---------------------------------------------------------------------------
# 9. Threads: more connections at work at once than backends

def sec_threads():
    say("threads: 5 connections in 5 threads, 40 transactions each, waiting for the 2 backends")
    errors = []

    def worker(w):
        try:
            with connect(prepare_threshold=0) as conn:
                total = 0
                for seq in range(40):
                    with conn.transaction():
                        v = w * 1000 + seq
                        conn.execute("insert into psy_conc (worker, seq, v) values (%s, %s, %s)", (w, seq, v))
                        total += v
                        got = conn.execute("select count(*), sum(v) from psy_conc where worker = %s", (w,)).fetchone()
                        if got != (seq + 1, Decimal(total)):
                            raise CheckFailed("worker %d seq %d: got %r, want %r" % (w, seq, got, (seq + 1, Decimal(total))))
                    conn.commit()
        except Exception as ex:  # reported by the main thread
            errors.append("worker %d: %s: %s" % (w, type(ex).__name__, ex))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    global NCHECKS
    NCHECKS += 5 * 40
    if errors:
        raise CheckFailed("; ".join(errors))
    with connect(autocommit=True) as c:
        check("all workers' rows", one(c, "select count(*), count(distinct worker) from psy_conc"), (200, 5))


# ---------------------------------------------------------------------------

SECTIONS = [
    ("1 prepared statements", sec_prepared),
    ("2 statement cache eviction", sec_eviction),
    ("3 transactions", sec_transactions),
    ("4 pipeline mode", sec_pipeline),
    ("4b prepared statements in failing pipelines", sec_pipeline_prepare),
    ("5 COPY", sec_copy),
    ("6 types", sec_types),
    ("7 named cursors", sec_named_cursors),
    ("7b WITH HOLD cursor", sec_withhold),
    ("8 session state", sec_session),
    ("9 threads", sec_threads),
    ("10 cancel", sec_cancel),
    ("11 notices, multi-statement queries, ClientCursor", sec_misc),
    ("12 LISTEN/NOTIFY", sec_notify),
]


def main():
    signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("psycopg_check: over 120 s")))
    signal.alarm(120)
    say("psycopg %s, libpq %d, %s:%s db %s" % (psycopg.__version__, psycopg.pq.version(),
                                                os.environ.get("PGHOST"), os.environ.get("PGPORT"),
                                                os.environ.get("PGDATABASE")))
    admin = connect(autocommit=True, prepare_threshold=None)
    drop_tables(admin)
    create_tables(admin)
    only = os.environ.get("PSY_ONLY", "")
    for name, fn in SECTIONS:
        if only and not name.startswith(only):
            continue
        say("== section %s" % name)
        try:
            fn()
        except Exception as ex:
            FAILURES.append("%s: %s: %s" % (name, type(ex).__name__, ex))
            say("FAIL %s: %s: %s" % (name, type(ex).__name__, ex))
            if not isinstance(ex, CheckFailed):
                traceback.print_exc(file=sys.stdout)
    drop_tables(admin)
    admin.close()
    signal.alarm(0)
    say("%d checks, %d failed sections" % (NCHECKS, len(FAILURES)))
    if FAILURES:
        for f in FAILURES:
            print("FAIL " + f)
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
