// pgjdbc against pgbridge: a transaction-mode tenant whose pool holds fewer
// backends (2) than this program opens connections, so that the connections
// share backends. Run by proxy/drivers_test.go (TestDrivers/jdbc) as
//
//   java -cp /usr/share/java/postgresql.jar jdbc/Check.java
//
// with the tenant's login in PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE
// and PGSSLMODE. It prints what it checks and "ok" as its last line when
// every check passed; the first failure exits 1 with a message.
//
// Every result is checked exactly against what PostgreSQL itself returns to
// pgjdbc (the program passes unchanged against a direct connection).
//
// The connections keep pgjdbc's defaults, so pgjdbc runs `SET
// extra_float_digits = 3` and `SET application_name = ...` after login: the
// router follows them as the client's parameters rather than pinning the
// connection (the last check counts on it). Two more connections run with
// autosave=always and autosave=conservative (section 11).

import java.io.StringReader;
import java.io.StringWriter;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.sql.Array;
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Savepoint;
import java.sql.Statement;
import java.sql.Timestamp;
import java.sql.Types;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicReference;

import org.postgresql.PGConnection;
import org.postgresql.PGStatement;
import org.postgresql.copy.CopyIn;
import org.postgresql.copy.CopyManager;

public class Check {
  static final String[] TABLES = {
    "jdbc_batch", "jdbc_rw", "jdbc_tx", "jdbc_big", "jdbc_types", "jdbc_copy", "jdbc_gk", "jdbc_evolve",
    "jdbc_auto",
  };

  static String url;
  static final long START = System.nanoTime();
  // Backend pids each connection's statements ran on (coverage, printed).
  static final Map<String, Set<Integer>> PIDS = new ConcurrentHashMap<>();

  // ---------------------------------------------------------------- helpers

  static class CheckFailed extends RuntimeException {
    CheckFailed(String m) { super(m); }
  }

  static void fail(String msg) { throw new CheckFailed(msg); }

  static void check(boolean ok, String what) { if (!ok) fail(what); }

  static void eq(Object got, Object want, String what) {
    if (!Objects.equals(got, want)) fail(what + ": got " + show(got) + ", want " + show(want));
  }

  static String show(Object o) {
    if (o instanceof Object[]) return Arrays.deepToString((Object[]) o);
    if (o instanceof int[]) return Arrays.toString((int[]) o);
    if (o instanceof String) return "\"" + o + "\"";
    return String.valueOf(o);
  }

  static void say(String s) {
    System.out.printf("[%5.1fs] %s%n", (System.nanoTime() - START) / 1e9, s);
    System.out.flush();
  }

  static Connection connect(String name, String... kv) throws SQLException {
    Properties p = new Properties();
    p.setProperty("user", env("PGUSER"));
    p.setProperty("password", env("PGPASSWORD"));
    p.setProperty("sslmode", System.getenv().getOrDefault("PGSSLMODE", "prefer"));
    p.setProperty("ApplicationName", "jdbc-check-" + name);
    p.setProperty("connectTimeout", "20");
    p.setProperty("socketTimeout", "60");
    for (int i = 0; i < kv.length; i += 2) p.setProperty(kv[i], kv[i + 1]);
    return DriverManager.getConnection(url, p);
  }

  static String env(String k) {
    String v = System.getenv(k);
    if (v == null || v.isEmpty()) fail("environment variable " + k + " is not set");
    return v;
  }

  static void exec(Connection c, String sql) throws SQLException {
    try (Statement s = c.createStatement()) { s.execute(sql); }
  }

  static long scalarLong(Connection c, String sql, Object... args) throws SQLException {
    try (PreparedStatement ps = c.prepareStatement(sql)) {
      for (int i = 0; i < args.length; i++) ps.setObject(i + 1, args[i]);
      try (ResultSet rs = ps.executeQuery()) {
        check(rs.next(), sql + ": no row");
        long v = rs.getLong(1);
        check(!rs.next(), sql + ": more than one row");
        return v;
      }
    }
  }

  static String scalarString(Connection c, String sql, Object... args) throws SQLException {
    try (PreparedStatement ps = c.prepareStatement(sql)) {
      for (int i = 0; i < args.length; i++) ps.setObject(i + 1, args[i]);
      try (ResultSet rs = ps.executeQuery()) {
        check(rs.next(), sql + ": no row");
        String v = rs.getString(1);
        check(!rs.next(), sql + ": more than one row");
        return v;
      }
    }
  }

  static List<Integer> ids(Connection c, String table, String where) throws SQLException {
    List<Integer> out = new ArrayList<>();
    try (Statement s = c.createStatement();
         ResultSet rs = s.executeQuery("select id from " + table + " where " + where + " order by id")) {
      while (rs.next()) out.add(rs.getInt(1));
    }
    return out;
  }

  static int pid(String name, Connection c) throws SQLException {
    int p = (int) scalarLong(c, "select pg_backend_pid()");
    PIDS.computeIfAbsent(name, k -> ConcurrentHashMap.newKeySet()).add(p);
    return p;
  }

  /** Runs body and expects an SQLException with the given SQLSTATE. */
  static SQLException expectError(String sqlstate, String what, SqlRunnable body) throws SQLException {
    try {
      body.run();
    } catch (SQLException e) {
      if (!sqlstate.equals(e.getSQLState())) {
        fail(what + ": got SQLSTATE " + e.getSQLState() + " (" + e.getMessage() + "), want " + sqlstate);
      }
      return e;
    }
    fail(what + ": no error, want SQLSTATE " + sqlstate);
    return null;
  }

  interface SqlRunnable { void run() throws SQLException; }

  static String md5(String s) throws Exception {
    byte[] d = MessageDigest.getInstance("MD5").digest(s.getBytes(StandardCharsets.UTF_8));
    StringBuilder b = new StringBuilder();
    for (byte x : d) b.append(String.format("%02x", x));
    return b.toString();
  }

  // ------------------------------------------------------------------- main

  public static void main(String[] args) {
    try {
      url = "jdbc:postgresql://" + env("PGHOST") + ":" + env("PGPORT") + "/" + env("PGDATABASE");
      run();
      say(String.format("all checks passed in %.1fs", (System.nanoTime() - START) / 1e9));
      System.out.println("ok");
      System.exit(0);
    } catch (CheckFailed e) {
      System.out.flush();
      System.out.println("FAIL: " + e.getMessage());
      System.exit(1);
    } catch (Throwable e) {
      System.out.flush();
      System.out.println("FAIL: unexpected " + e);
      e.printStackTrace(System.out);
      for (Throwable n = e instanceof SQLException ? ((SQLException) e).getNextException() : null; n != null;
           n = ((SQLException) n).getNextException()) {
        System.out.println("  next: " + n);
      }
      System.exit(1);
    }
  }

  static Connection setup, cA, cB, cC, cD, cE;

  static void run() throws Exception {
    say("connecting through " + url);
    // Plain prepared statements, server-prepared from the first execution.
    cA = connect("A", "prepareThreshold", "1");
    cB = connect("B", "prepareThreshold", "1");
    // prepareThreshold=-1: every statement server-prepared, binary transfer.
    cC = connect("C", "prepareThreshold", "-1");
    // A statement cache of 2: pgjdbc closes evicted server statements.
    cD = connect("D", "prepareThreshold", "1", "preparedStatementCacheQueries", "2");
    // Batched inserts rewritten into multi-row INSERTs.
    cE = connect("E", "prepareThreshold", "1", "reWriteBatchedInserts", "true");

    // Named server statements first, on fresh connections, so that each
    // connection's first texts are S_1, S_2, ... and differ between them.
    preparedStatements();
    // The setup connection is opened after: its DDL shares the backends too.
    setup = connect("setup");
    dropTables();
    createTables();
    concurrentPrepared();
    cacheEviction();
    batches();
    failingBatches();
    transactions();
    cursors();
    types(cA, "A (text)", 100);
    types(cC, "C (binary)", 200);
    copy();
    metadataAndGeneratedKeys();
    sessionState();
    say("backend pids per connection so far: " + new TreeMap<>(PIDS));
    planInvalidation();
    autosave();
    dropTables();
    for (Connection c : new Connection[] {cA, cB, cC, cD, cE, setup}) c.close();
    defaultUrl();
  }

  static void dropTables() throws SQLException {
    for (String t : TABLES) exec(setup, "drop table if exists " + t);
  }

  static void createTables() throws SQLException {
    say("creating tables");
    exec(setup, "create table jdbc_batch (id int primary key, v text not null)");
    exec(setup, "create table jdbc_rw (id int primary key, v text not null)");
    exec(setup, "create table jdbc_tx (id int primary key, v text)");
    exec(setup, "create table jdbc_big (id int primary key, h text not null)");
    exec(setup, "insert into jdbc_big select g, md5(g::text) from generate_series(1, 50000) g");
    exec(setup, "create table jdbc_types (id int primary key, i int, l bigint, n numeric, s text, b bytea,"
        + " ts timestamp, tz timestamptz, d date, j json, jb jsonb, ia int[], ta text[], bo boolean)");
    exec(setup, "create table jdbc_copy (id int primary key, t text not null, n numeric not null)");
    exec(setup, "create table jdbc_gk (id bigint generated always as identity primary key, v text not null)");
    exec(setup, "create table jdbc_evolve (id int primary key, a text not null)");
    exec(setup, "insert into jdbc_evolve values (1, 'one'), (2, 'two')");
    exec(setup, "create table jdbc_auto (id int primary key, v text not null)");
  }

  // ------------------------------------------------- 1. prepared statements

  // Per connection: two texts, prepared in this order, so S_1 and S_2 on
  // every connection name different statements with different parameter
  // and result types.
  static final String A1 = "select ?::int * 2 as v";
  static final String A2 = "select ?::text || '-A' as v";
  static final String B1 = "select ?::text || '-B' as v";
  static final String B2 = "select ?::int * 3 as v";
  static final String C1 = "select ?::bigint + 1000000000000 as v";
  static final String C2 = "select ?::int as n, ?::text as s, ?::numeric * 2 as d";

  static void runA(PreparedStatement a1, PreparedStatement a2, int i) throws SQLException {
    a1.setInt(1, i);
    try (ResultSet rs = a1.executeQuery()) { rs.next(); eq(rs.getInt(1), i * 2, "A1(" + i + ")"); }
    a2.setString(1, "a" + i);
    try (ResultSet rs = a2.executeQuery()) { rs.next(); eq(rs.getString(1), "a" + i + "-A", "A2(" + i + ")"); }
  }

  static void runB(PreparedStatement b1, PreparedStatement b2, int i) throws SQLException {
    b1.setString(1, "b" + i);
    try (ResultSet rs = b1.executeQuery()) { rs.next(); eq(rs.getString(1), "b" + i + "-B", "B1(" + i + ")"); }
    b2.setInt(1, i);
    try (ResultSet rs = b2.executeQuery()) { rs.next(); eq(rs.getInt(1), i * 3, "B2(" + i + ")"); }
  }

  static void runC(PreparedStatement c1, PreparedStatement c2, int i) throws SQLException {
    c1.setLong(1, i);
    try (ResultSet rs = c1.executeQuery()) { rs.next(); eq(rs.getLong(1), 1000000000000L + i, "C1(" + i + ")"); }
    c2.setInt(1, -i);
    c2.setString(2, "c" + i);
    c2.setBigDecimal(3, new BigDecimal(i + ".25"));
    try (ResultSet rs = c2.executeQuery()) {
      rs.next();
      eq(rs.getInt(1), -i, "C2(" + i + ").n");
      eq(rs.getString(2), "c" + i, "C2(" + i + ").s");
      eq(rs.getBigDecimal(3), new BigDecimal(i + ".25").multiply(BigDecimal.valueOf(2)), "C2(" + i + ").d");
    }
  }

  static void preparedStatements() throws Exception {
    say("1. server-prepared statements S_1, S_2 with different texts on A, B, C (prepareThreshold 1 and -1), interleaved");
    PreparedStatement a1 = cA.prepareStatement(A1), a2 = cA.prepareStatement(A2);
    PreparedStatement b1 = cB.prepareStatement(B1), b2 = cB.prepareStatement(B2);
    PreparedStatement c1 = cC.prepareStatement(C1), c2 = cC.prepareStatement(C2);
    for (int i = 0; i < 60; i++) {
      runA(a1, a2, i);
      runB(b1, b2, i);
      runC(c1, c2, i);
    }
    check(((PGStatement) a1).isUseServerPrepare(), "A1 is not server-prepared");
    check(((PGStatement) b1).isUseServerPrepare(), "B1 is not server-prepared");
    check(((PGStatement) c2).isUseServerPrepare(), "C2 is not server-prepared");

    say("1. same statements while other connections hold a backend in a transaction (statements follow the client)");
    // Rotate: one connection holds a backend in an open transaction while
    // the next runs its statements on the other backend, then commits.
    Connection[] cs = {cA, cB, cC};
    String[] names = {"A", "B", "C"};
    for (int round = 0; round < 12; round++) {
      Connection holder = cs[round % 3];
      String hn = names[round % 3];
      holder.setAutoCommit(false);
      int held = pid(hn, holder);
      int i = 1000 + round;
      if (holder == cA) runA(a1, a2, i); else if (holder == cB) runB(b1, b2, i); else runC(c1, c2, i);
      for (int k = 1; k <= 2; k++) {
        Connection other = cs[(round + k) % 3];
        String on = names[(round + k) % 3];
        other.setAutoCommit(false);
        int p = pid(on, other);
        check(p != held, "connection " + on + " ran on backend " + p + " held by " + hn + "'s open transaction");
        if (other == cA) runA(a1, a2, i); else if (other == cB) runB(b1, b2, i); else runC(c1, c2, i);
        other.commit();
        other.setAutoCommit(true);
      }
      // The holder's statements again inside its transaction.
      if (holder == cA) runA(a1, a2, i + 1); else if (holder == cB) runB(b1, b2, i + 1); else runC(c1, c2, i + 1);
      eq(pid(hn, holder), held, hn + "'s backend changed inside a transaction");
      holder.commit();
      holder.setAutoCommit(true);
    }
    // New PreparedStatement objects of the same texts reuse pgjdbc's cached
    // server statements (no new Parse).
    for (int i = 0; i < 20; i++) {
      try (PreparedStatement x = cA.prepareStatement(A1); PreparedStatement y = cA.prepareStatement(A2)) { runA(x, y, 2000 + i); }
      try (PreparedStatement x = cB.prepareStatement(B1); PreparedStatement y = cB.prepareStatement(B2)) { runB(x, y, 2000 + i); }
      try (PreparedStatement x = cC.prepareStatement(C1); PreparedStatement y = cC.prepareStatement(C2)) { runC(x, y, 2000 + i); }
    }
    for (PreparedStatement p : new PreparedStatement[] {a1, a2, b1, b2, c1, c2}) p.close();
    // Through the router (fewer backends than connections), some connection
    // must have run on both backends. Direct to PostgreSQL each has its own.
    Set<Integer> all = new HashSet<>();
    boolean moved = false;
    for (Set<Integer> s : PIDS.values()) { all.addAll(s); moved |= s.size() > 1; }
    if (all.size() < 3) check(moved, "no connection ran on more than one backend: the connections did not share the pool " + PIDS);
    else say("   (each connection has its own backend: not pooled)");
  }

  static void concurrentPrepared() throws Exception {
    say("1. three threads, one per connection, each running its own S_1/S_2 300 times at once over 2 backends");
    Connection[] cs = {cA, cB, cC};
    AtomicReference<Throwable> err = new AtomicReference<>();
    List<Thread> ts = new ArrayList<>();
    for (int t = 0; t < 3; t++) {
      final int n = t;
      Thread th = new Thread(() -> {
        try {
          Connection c = cs[n];
          String s1 = n == 0 ? A1 : n == 1 ? B1 : C1, s2 = n == 0 ? A2 : n == 1 ? B2 : C2;
          try (PreparedStatement p1 = c.prepareStatement(s1); PreparedStatement p2 = c.prepareStatement(s2)) {
            for (int i = 0; i < 300 && err.get() == null; i++) {
              if (n == 0) runA(p1, p2, 5000 + i); else if (n == 1) runB(p1, p2, 5000 + i); else runC(p1, p2, 5000 + i);
            }
          }
        } catch (Throwable e) {
          err.compareAndSet(null, e);
        }
      });
      ts.add(th);
      th.start();
    }
    for (Thread th : ts) th.join();
    if (err.get() != null) {
      if (err.get() instanceof CheckFailed) throw (CheckFailed) err.get();
      fail("concurrent prepared statements: " + err.get());
    }
  }

  // ------------------------------------------------- 2. statement cache eviction

  static void cacheEviction() throws Exception {
    say("2. preparedStatementCacheQueries=2: 40 distinct statements, 3 rounds, evicted ones closed and prepared again");
    PreparedStatement a1 = cA.prepareStatement(A1), a2 = cA.prepareStatement(A2);
    for (int round = 0; round < 3; round++) {
      for (int k = 0; k < 40; k++) {
        // Alternate result types between neighbouring texts.
        String sql = k % 2 == 0 ? "select ?::int + " + k + " as v" : "select 'k" + k + ":' || ?::text as v";
        try (PreparedStatement ps = cD.prepareStatement(sql)) {
          for (int rep = 0; rep < 2; rep++) {
            int x = round * 100 + rep;
            if (k % 2 == 0) {
              ps.setInt(1, x);
              try (ResultSet rs = ps.executeQuery()) { rs.next(); eq(rs.getInt(1), x + k, "D[" + k + "](" + x + ")"); }
            } else {
              ps.setString(1, "x" + x);
              try (ResultSet rs = ps.executeQuery()) { rs.next(); eq(rs.getString(1), "k" + k + ":x" + x, "D[" + k + "](" + x + ")"); }
            }
          }
        }
        if (k % 5 == 0) runA(a1, a2, round * 1000 + k);
        if (k % 7 == 0) {
          // Another connection holds a backend meanwhile: D's next
          // statements run on the other one.
          cB.setAutoCommit(false);
          pid("B", cB);
          try (PreparedStatement p = cD.prepareStatement("select ?::int - 1")) {
            p.setInt(1, k);
            try (ResultSet rs = p.executeQuery()) { rs.next(); eq(rs.getInt(1), k - 1, "D(minus)"); }
          }
          pid("D", cD);
          cB.commit();
          cB.setAutoCommit(true);
        }
      }
    }
    a1.close();
    a2.close();
  }

  // ------------------------------------------------------------- 3. batches

  static void batches() throws Exception {
    say("3. executeBatch of 1,000 inserts on A, rewritten batch of 1,000 on E, B querying, all at once");
    AtomicReference<Throwable> err = new AtomicReference<>();
    Thread ta = new Thread(() -> {
      try (PreparedStatement ps = cA.prepareStatement("insert into jdbc_batch (id, v) values (?, ?)")) {
        for (int i = 1; i <= 1000; i++) { ps.setInt(1, i); ps.setString(2, "v" + i + "-ü"); ps.addBatch(); }
        int[] n = ps.executeBatch();
        eq(n.length, 1000, "batch update count array length");
        for (int i = 0; i < n.length; i++) eq(n[i], 1, "batch update count " + i);
      } catch (Throwable e) { err.compareAndSet(null, e); }
    });
    Thread te = new Thread(() -> {
      try (PreparedStatement ps = cE.prepareStatement("insert into jdbc_rw (id, v) values (?, ?)")) {
        for (int i = 1; i <= 1000; i++) { ps.setInt(1, i); ps.setString(2, "r" + i); ps.addBatch(); }
        int[] n = ps.executeBatch();
        eq(n.length, 1000, "rewritten batch update count array length");
        for (int i = 0; i < n.length; i++) eq(n[i], Statement.SUCCESS_NO_INFO, "rewritten batch update count " + i);
      } catch (Throwable e) { err.compareAndSet(null, e); }
    });
    Thread tb = new Thread(() -> {
      try (PreparedStatement p1 = cB.prepareStatement(B1); PreparedStatement p2 = cB.prepareStatement(B2)) {
        for (int i = 0; i < 100; i++) runB(p1, p2, 7000 + i);
      } catch (Throwable e) { err.compareAndSet(null, e); }
    });
    ta.start(); te.start(); tb.start();
    ta.join(); te.join(); tb.join();
    if (err.get() instanceof CheckFailed) throw (CheckFailed) err.get();
    if (err.get() != null) fail("batches: " + err.get());
    for (String[] t : new String[][] {{"jdbc_batch", "v' || id || '-ü"}, {"jdbc_rw", "r' || id || '"}}) {
      try (Statement s = cC.createStatement();
           ResultSet rs = s.executeQuery("select id, v from " + t[0] + " order by id")) {
        int i = 0;
        while (rs.next()) {
          i++;
          eq(rs.getInt(1), i, t[0] + " id");
          String want = t[0].equals("jdbc_batch") ? "v" + i + "-ü" : "r" + i;
          eq(rs.getString(2), want, t[0] + " v of " + i);
        }
        eq(i, 1000, t[0] + " rows");
      }
    }
  }

  static void failingBatches() throws Exception {
    say("3. a batch failing in the middle (duplicate key), autocommit: nothing of it committed");
    exec(cA, "delete from jdbc_tx");
    try (PreparedStatement ps = cA.prepareStatement("insert into jdbc_tx (id, v) values (?, ?)")) {
      int[] rows = {1, 2, 3, 4, 3, 6, 7};
      for (int id : rows) { ps.setInt(1, id); ps.setString(2, "t" + id); ps.addBatch(); }
      try {
        ps.executeBatch();
        fail("batch with a duplicate key: no error");
      } catch (BatchUpdateException e) {
        SQLException cause = e.getNextException() != null ? e.getNextException() : e;
        eq(cause.getSQLState(), "23505", "failing batch SQLSTATE");
        // In autocommit mode the batch is one implicit transaction (one
        // Sync): pgjdbc reports every statement as failed.
        eq(Arrays.toString(e.getUpdateCounts()), "[-3, -3, -3, -3, -3, -3, -3]", "failing batch update counts");
      }
    }
    // In autocommit mode pgjdbc sends the whole batch before one Sync: one
    // implicit transaction, rolled back as a whole.
    eq(ids(cB, "jdbc_tx", "true"), List.of(), "rows left by the failed autocommit batch");
    eq(ids(cA, "jdbc_tx", "true"), List.of(), "rows left by the failed autocommit batch (same connection)");

    say("3. a batch failing in the middle inside a transaction: 25P02 after it, rollback leaves nothing");
    cB.setAutoCommit(false);
    exec(cB, "insert into jdbc_tx (id, v) values (100, 'before')");
    try (PreparedStatement ps = cB.prepareStatement("insert into jdbc_tx (id, v) values (?, ?)")) {
      for (int id : new int[] {101, 102, 100, 103}) { ps.setInt(1, id); ps.setString(2, "t" + id); ps.addBatch(); }
      try {
        ps.executeBatch();
        fail("batch with a duplicate key in a transaction: no error");
      } catch (BatchUpdateException e) {
        SQLException cause = e.getNextException() != null ? e.getNextException() : e;
        eq(cause.getSQLState(), "23505", "failing batch in a transaction SQLSTATE");
        eq(Arrays.toString(e.getUpdateCounts()), "[-3, -3, -3, -3]", "failing batch in a transaction update counts");
      }
    }
    expectError("25P02", "statement after the failed batch", () -> scalarLong(cB, "select 1"));
    // Another connection meanwhile (the aborted transaction holds a backend).
    eq(ids(cA, "jdbc_tx", "true"), List.of(), "rows seen by A while B's transaction is aborted");
    cB.rollback();
    cB.setAutoCommit(true);
    eq(ids(cB, "jdbc_tx", "true"), List.of(), "rows after rolling back the failed batch's transaction");
    eq(scalarLong(cB, "select 41 + 1"), 42L, "B after the rollback");
  }

  // -------------------------------------------------------- 4. transactions

  static void transactions() throws Exception {
    say("4. commit, rollback, interleaved with another connection");
    cA.setAutoCommit(false);
    exec(cA, "insert into jdbc_tx (id, v) values (200, 'c')");
    eq(ids(cB, "jdbc_tx", "id = 200"), List.of(), "uncommitted row seen by B");
    eq(ids(cA, "jdbc_tx", "id = 200"), List.of(200), "own uncommitted row");
    cA.commit();
    eq(ids(cB, "jdbc_tx", "id = 200"), List.of(200), "committed row seen by B");
    exec(cA, "insert into jdbc_tx (id, v) values (201, 'r')");
    cA.rollback();
    eq(ids(cB, "jdbc_tx", "id = 201"), List.of(), "rolled back row seen by B");
    eq(ids(cA, "jdbc_tx", "id = 201"), List.of(), "rolled back row seen by A");

    say("4. savepoints: setSavepoint, rollback(savepoint), release, error then rollback to savepoint");
    exec(cA, "insert into jdbc_tx (id, v) values (202, 's')");
    Savepoint sp1 = cA.setSavepoint();
    exec(cA, "insert into jdbc_tx (id, v) values (203, 's')");
    Savepoint sp2 = cA.setSavepoint("named");
    exec(cA, "insert into jdbc_tx (id, v) values (204, 's')");
    eq(ids(cA, "jdbc_tx", "id between 200 and 299"), List.of(200, 202, 203, 204), "rows before rollback(sp2)");
    cA.rollback(sp2);
    eq(ids(cA, "jdbc_tx", "id between 200 and 299"), List.of(200, 202, 203), "rows after rollback(sp2)");
    exec(cA, "insert into jdbc_tx (id, v) values (205, 's')");
    cA.rollback(sp1);
    eq(ids(cA, "jdbc_tx", "id between 200 and 299"), List.of(200, 202), "rows after rollback(sp1)");
    Savepoint sp3 = cA.setSavepoint();
    expectError("23505", "duplicate insert after a savepoint",
        () -> exec(cA, "insert into jdbc_tx (id, v) values (202, 'dup')"));
    expectError("25P02", "statement after the error, before rollback to savepoint", () -> scalarLong(cA, "select 1"));
    cA.rollback(sp3);
    exec(cA, "insert into jdbc_tx (id, v) values (206, 's')");
    Savepoint sp4 = cA.setSavepoint();
    exec(cA, "insert into jdbc_tx (id, v) values (207, 's')");
    cA.releaseSavepoint(sp4);
    eq(ids(cB, "jdbc_tx", "id between 200 and 299"), List.of(200), "B during A's transaction");
    cA.commit();
    cA.setAutoCommit(true);
    eq(ids(cB, "jdbc_tx", "id between 200 and 299"), List.of(200, 202, 206, 207), "rows after the savepoint transaction");

    say("4. an SQL error inside a transaction: 25P02 on the next statement, rollback, go on");
    cB.setAutoCommit(false);
    exec(cB, "insert into jdbc_tx (id, v) values (300, 'e')");
    expectError("22012", "division by zero", () -> scalarLong(cB, "select 1 / (? - ?)", 3, 3));
    expectError("25P02", "statement after the error", () -> scalarLong(cB, "select 1"));
    expectError("25P02", "prepared insert after the error",
        () -> { try (PreparedStatement p = cB.prepareStatement("insert into jdbc_tx (id) values (?)")) { p.setInt(1, 399); p.executeUpdate(); } });
    eq(ids(cA, "jdbc_tx", "id >= 300"), List.of(), "A during B's aborted transaction");
    cB.rollback();
    exec(cB, "insert into jdbc_tx (id, v) values (301, 'e')");
    cB.commit();
    cB.setAutoCommit(true);
    eq(ids(cA, "jdbc_tx", "id >= 300"), List.of(301), "rows after the aborted then committed transactions");
  }

  // ------------------------------------------------------------- 5. cursors

  static void cursors() throws Exception {
    say("5. setFetchSize(100) on 50,000 rows (portal with row limits) on A, B running statements meanwhile");
    PreparedStatement b1 = cB.prepareStatement(B1), b2 = cB.prepareStatement(B2);
    cA.setAutoCommit(false);
    try (PreparedStatement ps = cA.prepareStatement("select id, h from jdbc_big where id >= ? order by id")) {
      ps.setFetchSize(100);
      ps.setInt(1, 1);
      try (ResultSet rs = ps.executeQuery()) {
        int i = 0;
        while (rs.next()) {
          i++;
          if (rs.getInt(1) != i) fail("cursor row " + i + ": id " + rs.getInt(1));
          if (!rs.getString(2).equals(md5(Integer.toString(i)))) fail("cursor row " + i + ": h " + rs.getString(2));
          if (i % 2500 == 0) runB(b1, b2, 9000 + i);
          if (i % 10000 == 0) eq(rs.getFetchSize(), 100, "fetch size");
        }
        eq(i, 50000, "rows fetched through the cursor");
      }
    }
    cA.commit();
    cA.setAutoCommit(true);

    say("5. two cursors at once on A (text) and C (binary), read alternately, both backends busy");
    cA.setAutoCommit(false);
    cC.setAutoCommit(false);
    try (PreparedStatement pa = cA.prepareStatement("select id, h from jdbc_big order by id");
         PreparedStatement pc = cC.prepareStatement("select id, h from jdbc_big order by id desc")) {
      pa.setFetchSize(100);
      pc.setFetchSize(77);
      try (ResultSet ra = pa.executeQuery(); ResultSet rc = pc.executeQuery()) {
        for (int i = 1; i <= 50000; i++) {
          check(ra.next(), "A cursor ended at " + i);
          check(rc.next(), "C cursor ended at " + i);
          if (ra.getInt(1) != i) fail("A cursor row " + i + ": id " + ra.getInt(1));
          int j = 50001 - i;
          if (rc.getInt(1) != j) fail("C cursor row " + i + ": id " + rc.getInt(1));
          if (i % 997 == 0) {
            eq(ra.getString(2), md5(Integer.toString(i)), "A cursor h " + i);
            eq(rc.getString(2), md5(Integer.toString(j)), "C cursor h " + j);
          }
        }
        check(!ra.next(), "A cursor has more than 50,000 rows");
        check(!rc.next(), "C cursor has more than 50,000 rows");
      }
    }
    cA.commit();
    cC.commit();
    cA.setAutoCommit(true);
    cC.setAutoCommit(true);
    b1.close();
    b2.close();
  }

  // --------------------------------------------------------------- 6. types

  static void types(Connection c, String label, int id) throws Exception {
    say("6. types as parameters and results on " + label);
    Random rnd = new Random(id);
    byte[] small = new byte[256];
    for (int i = 0; i < 256; i++) small[i] = (byte) i;
    byte[] big = new byte[1 << 20];
    rnd.nextBytes(big);
    String uni = "héllo wörld – 日本語 😀 \u0001 'q' \"d\" \\";
    BigDecimal num = new BigDecimal("-12345678901234567890.0001234500");
    Timestamp ts = Timestamp.valueOf(LocalDateTime.of(2024, 2, 29, 13, 45, 12, 123456000));
    OffsetDateTime odt = OffsetDateTime.of(2024, 2, 29, 23, 45, 12, 654321000, ZoneOffset.ofHours(5));
    LocalDate date = LocalDate.of(1999, 12, 31);
    String json = "{\"a\": [1, 2.50, {\"b\": \"ü\"}],  \"c\": null}";
    String jsonbIn = "{\"z\": 1, \"a\": [true, {\"b\": \"ü\"}]}";
    String jsonbOut = "{\"a\": [true, {\"b\": \"ü\"}], \"z\": 1}";
    Integer[] ints = {1, null, 3, Integer.MIN_VALUE};
    String[] texts = {"a", "ü€😀", null, "with,comma", "quo\"te", "", "NULL", "back\\slash", "{brace}"};

    String ins = "insert into jdbc_types (id, i, l, n, s, b, ts, tz, d, j, jb, ia, ta, bo)"
        + " values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    try (PreparedStatement ps = c.prepareStatement(ins)) {
      for (int row = 0; row < 3; row++) {
        ps.setInt(1, id + row);
        if (row == 2) {
          // All NULLs, set with setNull and setObject(null).
          ps.setNull(2, Types.INTEGER);
          ps.setNull(3, Types.BIGINT);
          ps.setNull(4, Types.NUMERIC);
          ps.setNull(5, Types.VARCHAR);
          ps.setNull(6, Types.BINARY);
          ps.setNull(7, Types.TIMESTAMP);
          ps.setObject(8, null, Types.TIMESTAMP_WITH_TIMEZONE);
          ps.setNull(9, Types.DATE);
          ps.setNull(10, Types.OTHER);
          ps.setObject(11, null, Types.OTHER);
          ps.setNull(12, Types.ARRAY);
          ps.setNull(13, Types.ARRAY);
          ps.setNull(14, Types.BOOLEAN);
        } else {
          ps.setInt(2, row == 0 ? Integer.MAX_VALUE : Integer.MIN_VALUE);
          ps.setLong(3, row == 0 ? Long.MAX_VALUE : Long.MIN_VALUE);
          ps.setBigDecimal(4, row == 0 ? num : num.negate());
          ps.setString(5, uni);
          ps.setBytes(6, row == 0 ? small : big);
          ps.setTimestamp(7, ts);
          ps.setObject(8, odt);
          ps.setObject(9, date);
          ps.setObject(10, json, Types.OTHER);
          ps.setObject(11, jsonbIn, Types.OTHER);
          ps.setArray(12, c.createArrayOf("int4", ints));
          ps.setArray(13, c.createArrayOf("text", texts));
          ps.setBoolean(14, row == 0);
        }
        eq(ps.executeUpdate(), 1, label + " insert row " + row);
      }
    }
    try (PreparedStatement ps = c.prepareStatement(
        "select i, l, n, s, b, ts, tz, d, j, jb, ia, ta, bo, octet_length(b), md5(b) from jdbc_types where id between ? and ? order by id")) {
      ps.setInt(1, id);
      ps.setInt(2, id + 2);
      try (ResultSet rs = ps.executeQuery()) {
        for (int row = 0; row < 3; row++) {
          check(rs.next(), label + ": row " + row + " missing");
          String w = label + " row " + row + " ";
          if (row == 2) {
            eq(rs.getInt(1), 0, w + "i"); check(rs.wasNull(), w + "i not null");
            eq(rs.getLong(2), 0L, w + "l"); check(rs.wasNull(), w + "l not null");
            for (int col = 3; col <= 13; col++) eq(rs.getObject(col), null, w + "column " + col);
            eq(rs.getBoolean(13), false, w + "bo"); check(rs.wasNull(), w + "bo not null");
            eq(rs.getObject(14), null, w + "octet_length");
            continue;
          }
          eq(rs.getInt(1), row == 0 ? Integer.MAX_VALUE : Integer.MIN_VALUE, w + "i");
          eq(rs.getLong(2), row == 0 ? Long.MAX_VALUE : Long.MIN_VALUE, w + "l");
          eq(rs.getBigDecimal(3), row == 0 ? num : num.negate(), w + "n");
          eq(rs.getString(4), uni, w + "s");
          byte[] b = rs.getBytes(5);
          check(Arrays.equals(b, row == 0 ? small : big), w + "bytea differs (" + (b == null ? "null" : b.length + " bytes") + ")");
          eq(rs.getTimestamp(6), ts, w + "ts");
          eq(rs.getObject(6, LocalDateTime.class), ts.toLocalDateTime(), w + "ts as LocalDateTime");
          OffsetDateTime got = rs.getObject(7, OffsetDateTime.class);
          check(got != null && got.isEqual(odt), w + "tz: got " + got + ", want " + odt);
          eq(got.getOffset(), ZoneOffset.UTC, w + "tz offset");
          eq(rs.getObject(8, LocalDate.class), date, w + "d");
          eq(rs.getString(9), json, w + "json");
          eq(rs.getString(10), jsonbOut, w + "jsonb");
          Array ia = rs.getArray(11);
          eq(ia.getBaseTypeName(), "int4", w + "int[] base type");
          eq((Object) Arrays.asList((Integer[]) ia.getArray()), Arrays.asList(ints), w + "int[]");
          eq((Object) Arrays.asList((String[]) rs.getArray(12).getArray()), Arrays.asList(texts), w + "text[]");
          eq(rs.getBoolean(13), row == 0, w + "bo");
          eq(rs.getInt(14), row == 0 ? 256 : 1 << 20, w + "octet_length(b)");
          eq(rs.getString(15), md5hex(row == 0 ? small : big), w + "md5(b)");
        }
        check(!rs.next(), label + ": more than 3 rows");
      }
    }
    // Parameters echoed back as results, with server-side casts, including
    // NULLs of every type.
    try (PreparedStatement ps = c.prepareStatement(
        "select ?::int4 + 1, ?::int8 - 1, ?::numeric * 10, ?::text || '✓', length(?::bytea), ?::timestamp + interval '1 day',"
            + " ?::date + 1, (?::jsonb)->'a'->1->>'b', array_length(?::int4[], 1), cardinality(?::text[]), not ?::bool,"
            + " ?::int4 is null, ?::text is null, ?::bytea is null")) {
      ps.setInt(1, 41);
      ps.setLong(2, Long.MIN_VALUE + 1);
      ps.setBigDecimal(3, new BigDecimal("0.000001"));
      ps.setString(4, "ärger ü");
      ps.setBytes(5, big);
      ps.setTimestamp(6, ts);
      ps.setObject(7, LocalDate.of(2023, 12, 31));
      ps.setObject(8, jsonbIn, Types.OTHER);
      ps.setArray(9, c.createArrayOf("int4", ints));
      ps.setArray(10, c.createArrayOf("text", texts));
      ps.setBoolean(11, false);
      ps.setNull(12, Types.INTEGER);
      ps.setString(13, null);
      ps.setBytes(14, null);
      try (ResultSet rs = ps.executeQuery()) {
        check(rs.next(), label + ": echo row missing");
        eq(rs.getInt(1), 42, label + " echo int");
        eq(rs.getLong(2), Long.MIN_VALUE, label + " echo bigint");
        eq(rs.getBigDecimal(3), new BigDecimal("0.000010"), label + " echo numeric");
        eq(rs.getString(4), "ärger ü✓", label + " echo text");
        eq(rs.getInt(5), 1 << 20, label + " echo bytea length");
        eq(rs.getTimestamp(6), Timestamp.valueOf(LocalDateTime.of(2024, 3, 1, 13, 45, 12, 123456000)), label + " echo timestamp");
        eq(rs.getObject(7, LocalDate.class), LocalDate.of(2024, 1, 1), label + " echo date");
        eq(rs.getString(8), "ü", label + " echo jsonb path");
        eq(rs.getInt(9), 4, label + " echo int[] length");
        eq(rs.getInt(10), texts.length, label + " echo text[] cardinality");
        eq(rs.getBoolean(11), true, label + " echo bool");
        eq(rs.getBoolean(12), true, label + " echo int null");
        eq(rs.getBoolean(13), true, label + " echo text null");
        eq(rs.getBoolean(14), true, label + " echo bytea null");
      }
    }
  }

  static String md5hex(byte[] b) throws Exception {
    byte[] d = MessageDigest.getInstance("MD5").digest(b);
    StringBuilder s = new StringBuilder();
    for (byte x : d) s.append(String.format("%02x", x));
    return s.toString();
  }

  // ---------------------------------------------------------------- 7. COPY

  static void copy() throws Exception {
    say("7. CopyManager: copyIn 10,000 rows on B, copyOut back, A and C running statements between");
    StringBuilder sb = new StringBuilder();
    for (int i = 1; i <= 10000; i++) sb.append(i).append('\t').append("t").append(i).append("-ü€\\\\x").append('\t').append(i).append(".5\n");
    String data = sb.toString();
    CopyManager cm = cB.unwrap(PGConnection.class).getCopyAPI();
    eq(cm.copyIn("COPY jdbc_copy (id, t, n) FROM STDIN", new StringReader(data)), 10000L, "copyIn row count");
    PreparedStatement a1 = cA.prepareStatement(A1), a2 = cA.prepareStatement(A2);
    PreparedStatement c1 = cC.prepareStatement(C1), c2 = cC.prepareStatement(C2);
    runA(a1, a2, 11);
    runC(c1, c2, 11);
    eq(scalarString(cA, "select t from jdbc_copy where id = ?", 7), "t7-ü€\\x", "copied text");
    eq(scalarString(cC, "select sum(n)::text from jdbc_copy"), "50010000.0", "copied numeric sum");
    StringWriter out = new StringWriter();
    eq(cm.copyOut("COPY (select id, t, n from jdbc_copy order by id) TO STDOUT", out), 10000L, "copyOut row count");
    check(out.toString().equals(data), "copyOut differs from what copyIn sent (" + out.toString().length() + " chars, want " + data.length() + ")");

    say("7. a failing copyIn (bad data), then the connection still works");
    SQLException e = expectError("22P02", "copyIn of bad data",
        () -> { try { cm.copyIn("COPY jdbc_copy (id, t, n) FROM STDIN", new StringReader("20001\tok\t1\nnotanint\tbad\t1\n")); } catch (java.io.IOException io) { throw new SQLException(io); } });
    check(e.getMessage().contains("notanint"), "copy error message: " + e.getMessage());
    eq(scalarLong(cB, "select count(*) from jdbc_copy"), 10000L, "rows after the failed copyIn");
    runA(a1, a2, 12);
    PreparedStatement b1 = cB.prepareStatement(B1), b2 = cB.prepareStatement(B2);
    runB(b1, b2, 12);

    say("7. copyIn cancelled by the client (CopyFail), then the connection still works");
    CopyIn ci = cm.copyIn("COPY jdbc_copy (id, t, n) FROM STDIN");
    byte[] part = "30001\tx\t1\n30002\tx\t2\n".getBytes(StandardCharsets.UTF_8);
    ci.writeToCopy(part, 0, part.length);
    ci.cancelCopy();
    check(!ci.isActive(), "copy still active after cancelCopy");
    eq(scalarLong(cB, "select count(*) from jdbc_copy"), 10000L, "rows after the cancelled copyIn");
    runB(b1, b2, 13);

    say("7. copyIn inside a transaction on C (binary connection), rolled back; failing copyIn inside a transaction");
    CopyManager cmc = cC.unwrap(PGConnection.class).getCopyAPI();
    cC.setAutoCommit(false);
    eq(cmc.copyIn("COPY jdbc_copy (id, t, n) FROM STDIN", new StringReader("40001\ta\t1\n40002\tb\t2\n")), 2L, "copyIn in a transaction");
    eq(scalarLong(cC, "select count(*) from jdbc_copy"), 10002L, "rows inside the copy transaction");
    eq(scalarLong(cA, "select count(*) from jdbc_copy"), 10000L, "rows seen by A during C's copy transaction");
    cC.rollback();
    expectError("22P02", "failing copyIn in a transaction",
        () -> { try { cmc.copyIn("COPY jdbc_copy (id, t, n) FROM STDIN", new StringReader("x\ty\tz\n")); } catch (java.io.IOException io) { throw new SQLException(io); } });
    expectError("25P02", "statement after the failed copyIn in a transaction", () -> scalarLong(cC, "select 1"));
    cC.rollback();
    cC.setAutoCommit(true);
    eq(scalarLong(cC, "select count(*) from jdbc_copy"), 10000L, "rows after the rolled back copies");
    runC(c1, c2, 14);
    for (PreparedStatement p : new PreparedStatement[] {a1, a2, b1, b2, c1, c2}) p.close();
  }

  // ---------------------------------------- 8. metadata and generated keys

  static void metadataAndGeneratedKeys() throws Exception {
    say("8. DatabaseMetaData getTables, getColumns, getPrimaryKeys on D (cache of 2) and C (binary)");
    for (Connection c : new Connection[] {cD, cC}) {
      DatabaseMetaData md = c.getMetaData();
      Set<String> tables = new TreeSet<>();
      try (ResultSet rs = md.getTables(null, null, "jdbc\\_%", new String[] {"TABLE"})) {
        while (rs.next()) {
          tables.add(rs.getString("TABLE_NAME"));
          eq(rs.getString("TABLE_TYPE"), "TABLE", "TABLE_TYPE of " + rs.getString("TABLE_NAME"));
        }
      }
      eq(tables, new TreeSet<>(Arrays.asList(TABLES)), "getTables jdbc\\_%");
      List<String> cols = new ArrayList<>();
      try (ResultSet rs = md.getColumns(null, null, "jdbc_types", "%")) {
        while (rs.next()) {
          eq(rs.getInt("ORDINAL_POSITION"), cols.size() + 1, "ORDINAL_POSITION");
          cols.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME") + ":" + rs.getInt("DATA_TYPE"));
        }
      }
      eq(String.join(",", cols), "id:int4:4,i:int4:4,l:int8:-5,n:numeric:2,s:text:12,b:bytea:-2,ts:timestamp:93,"
          + "tz:timestamptz:93,d:date:91,j:json:1111,jb:jsonb:1111,ia:_int4:2003,ta:_text:2003,bo:bool:-7", "getColumns jdbc_types");
      try (ResultSet rs = md.getColumns(null, null, "jdbc_gk", "id")) {
        check(rs.next(), "getColumns jdbc_gk.id");
        eq(rs.getString("IS_AUTOINCREMENT"), "YES", "jdbc_gk.id IS_AUTOINCREMENT");
        eq(rs.getString("IS_NULLABLE"), "NO", "jdbc_gk.id IS_NULLABLE");
      }
      try (ResultSet rs = md.getPrimaryKeys(null, null, "jdbc_batch")) {
        check(rs.next(), "getPrimaryKeys jdbc_batch");
        eq(rs.getString("COLUMN_NAME"), "id", "primary key column");
        check(!rs.next(), "more than one primary key column");
      }
    }

    say("8. getGeneratedKeys: RETURN_GENERATED_KEYS, column names, batch, plain Statement");
    try (PreparedStatement ps = cA.prepareStatement("insert into jdbc_gk (v) values (?)", Statement.RETURN_GENERATED_KEYS)) {
      for (int i = 1; i <= 5; i++) {
        ps.setString(1, "g" + i);
        eq(ps.executeUpdate(), 1, "insert returning keys");
        try (ResultSet rs = ps.getGeneratedKeys()) {
          check(rs.next(), "no generated key");
          eq(rs.getLong("id"), (long) i, "generated id");
          eq(rs.getString("v"), "g" + i, "generated row v");
          check(!rs.next(), "more than one generated key");
        }
        if (i == 3) eq(scalarLong(cB, "select max(id) from jdbc_gk"), 3L, "B sees generated rows");
      }
    }
    try (PreparedStatement ps = cB.prepareStatement("insert into jdbc_gk (v) values (?)", new String[] {"id"})) {
      for (int i = 6; i <= 8; i++) { ps.setString(1, "g" + i); ps.addBatch(); }
      int[] n = ps.executeBatch();
      eq(Arrays.toString(n), "[1, 1, 1]", "batch with generated keys update counts");
      List<Long> keys = new ArrayList<>();
      try (ResultSet rs = ps.getGeneratedKeys()) {
        eq(rs.getMetaData().getColumnCount(), 1, "generated key columns");
        while (rs.next()) keys.add(rs.getLong(1));
      }
      eq(keys, List.of(6L, 7L, 8L), "batch generated keys");
    }
    try (Statement s = cC.createStatement()) {
      eq(s.executeUpdate("insert into jdbc_gk (v) values ('g9')", Statement.RETURN_GENERATED_KEYS), 1, "plain insert");
      try (ResultSet rs = s.getGeneratedKeys()) {
        check(rs.next(), "no generated key (plain Statement)");
        eq(rs.getLong(1), 9L, "generated id (plain Statement)");
      }
    }
  }

  // ---------------------------------------- 10. plan invalidation by DDL

  static void planInvalidation() throws Exception {
    say("10. a server-prepared select * across ALTER TABLE ADD COLUMN: as on PostgreSQL, pgjdbc gets the new columns"
        + " (0A000 'cached plan must not change result type' at most once, which pgjdbc heals)");
    String sql = "select * from jdbc_evolve where id >= ? order by id";
    // B's text is its own (the router shares a backend's statement among
    // its clients by text).
    PreparedStatement pa = cA.prepareStatement(sql), pb = cB.prepareStatement(sql.replace(">=", ">= 0 + "));
    // A runs its statement in autocommit, and while B holds a backend in a
    // transaction: A's statement exists on both backends. B runs its own
    // only inside that transaction, on one backend (px).
    cB.setAutoCommit(false);
    int px = pid("B", cB);
    for (int i = 0; i < 3; i++) {
      for (PreparedStatement p : new PreparedStatement[] {pa, pb}) {
        p.setInt(1, 1);
        try (ResultSet rs = p.executeQuery()) {
          eq(rs.getMetaData().getColumnCount(), 2, "columns before ALTER");
          check(rs.next() && rs.getInt(1) == 1 && rs.getString(2).equals("one"), "row 1 before ALTER");
          check(rs.next() && rs.getInt(1) == 2 && rs.getString(2).equals("two"), "row 2 before ALTER");
          check(!rs.next(), "extra row before ALTER");
        }
      }
    }
    cB.commit();
    cB.setAutoCommit(true);
    for (int i = 0; i < 3; i++) {
      pa.setInt(1, 1);
      pa.executeQuery().close();
    }
    exec(setup, "alter table jdbc_evolve add column extra int not null default 7");
    // Through the router, hold backend px in a transaction of C or D, so
    // that B's next execution runs on the other backend.
    Connection holder = null;
    cC.setAutoCommit(false);
    if (pid("C", cC) == px) {
      holder = cC;
    } else {
      cD.setAutoCommit(false);
      if (pid("D", cD) == px) holder = cD; else { cD.commit(); cD.setAutoCommit(true); }
      cC.commit();
      cC.setAutoCommit(true);
    }
    say("   B's statement was prepared on backend " + px + (holder != null ? ", now held by another connection's transaction" : " (not pooled)"));
    for (PreparedStatement p : new PreparedStatement[] {pb, pa}) {
      String who = p == pa ? "A" : "B";
      if (p == pa && holder != null) { holder.commit(); holder.setAutoCommit(true); }
      int errors = 0;
      for (int attempt = 0; ; attempt++) {
        p.setInt(1, 1);
        try (ResultSet rs = p.executeQuery()) {
          eq(rs.getMetaData().getColumnCount(), 3, who + ": columns after ALTER");
          check(rs.next(), who + ": row 1 after ALTER missing");
          eq(rs.getInt(1) + "|" + rs.getString(2) + "|" + rs.getInt(3), "1|one|7", who + ": row 1 after ALTER");
          check(rs.next(), who + ": row 2 after ALTER missing");
          eq(rs.getInt(1) + "|" + rs.getString(2) + "|" + rs.getInt(3), "2|two|7", who + ": row 2 after ALTER");
          check(!rs.next(), who + ": extra row after ALTER");
          break;
        } catch (SQLException e) {
          errors++;
          eq(e.getSQLState(), "0A000", who + ": error after ALTER (" + e.getMessage() + ")");
          check(errors == 1, who + ": second 0A000 after ALTER: " + e.getMessage());
        }
      }
      say("   " + who + ": " + errors + " error(s) before the new columns");
      // And again, several times, on whatever backend.
      for (int i = 0; i < 6; i++) {
        p.setInt(1, 2);
        try (ResultSet rs = p.executeQuery()) {
          check(rs.next(), who + ": row after ALTER (repeat)");
          eq(rs.getInt(1) + "|" + rs.getString(2) + "|" + rs.getInt(3), "2|two|7", who + ": row after ALTER (repeat " + i + ")");
          check(!rs.next(), who + ": extra row (repeat)");
        }
      }
    }
    pa.close();
    pb.close();
  }

  // ------------------------------------------------------------ 11. autosave

  static void autosave() throws Exception {
    say("11. autosave=always: pgjdbc's SAVEPOINT rides behind its BEGIN, before the Sync; an error rolls back to it"
        + " and the transaction goes on");
    try (Connection c = connect("autosave-always", "prepareThreshold", "1", "autosave", "always")) {
      c.setAutoCommit(false);
      exec(c, "insert into jdbc_auto (id, v) values (1, 'a')");
      expectError("23505", "duplicate insert", () -> exec(c, "insert into jdbc_auto (id, v) values (1, 'dup')"));
      eq(scalarLong(c, "select count(*) from jdbc_auto"), 1L, "rows after the error, in the transaction");
      expectError("22012", "division by zero", () -> scalarLong(c, "select 1 / (? - ?)", 3, 3));
      try (PreparedStatement p = c.prepareStatement("insert into jdbc_auto (id, v) values (?, ?)")) {
        for (int i = 2; i <= 4; i++) {
          p.setInt(1, i);
          p.setString(2, "a");
          eq(p.executeUpdate(), 1, "autosave insert " + i);
        }
      }
      eq(ids(cB, "jdbc_auto", "true"), List.of(), "B during the autosave transaction");
      c.commit();
      eq(ids(cB, "jdbc_auto", "true"), List.of(1, 2, 3, 4), "rows after the autosave transaction");
      exec(c, "insert into jdbc_auto (id, v) values (5, 'r')");
      c.rollback();
      eq(ids(c, "jdbc_auto", "id = 5"), List.of(), "rolled back row");
      c.setAutoCommit(true);
      eq(scalarLong(c, "select count(*) from jdbc_auto"), 4L, "rows in autocommit after");
    }
    say("11. autosave=conservative: a server-prepared select * across ALTER TABLE, inside a transaction:"
        + " pgjdbc rolls back to its savepoint, prepares it again and retries, and the transaction goes on");
    try (Connection c = connect("autosave-conservative", "prepareThreshold", "1", "autosave", "conservative")) {
      PreparedStatement p = c.prepareStatement("select * from jdbc_auto where id = ?");
      for (int i = 0; i < 3; i++) {
        p.setInt(1, 1);
        try (ResultSet rs = p.executeQuery()) { eq(rs.getMetaData().getColumnCount(), 2, "columns before ALTER"); }
      }
      exec(setup, "alter table jdbc_auto add column extra int not null default 9");
      c.setAutoCommit(false);
      exec(c, "insert into jdbc_auto (id, v) values (6, 'c')");
      p.setInt(1, 6);
      try (ResultSet rs = p.executeQuery()) {
        eq(rs.getMetaData().getColumnCount(), 3, "columns after ALTER");
        check(rs.next(), "row 6 missing");
        eq(rs.getInt(1) + "|" + rs.getString(2) + "|" + rs.getInt(3), "6|c|9", "row 6");
      }
      c.commit();
      c.setAutoCommit(true);
      eq(ids(cB, "jdbc_auto", "id = 6"), List.of(6), "row 6 committed");
      p.close();
    }
  }

  // ------------------------------------------------------- 9. session state

  static void sessionState() throws Exception {
    say("9. SET LOCAL / set_config(..., true) inside a transaction do not leak to other connections or outlive it");
    Connection[] cs = {cA, cB, cC, cD, cE};
    String q = "select current_setting('statement_timeout') || '|' || current_setting('TimeZone') || '|' || current_setting('work_mem')"
        + " || '|' || current_setting('search_path')";
    String[] base = new String[cs.length];
    String[] tzStatus = new String[cs.length];
    for (int i = 0; i < cs.length; i++) {
      base[i] = scalarString(cs[i], q);
      tzStatus[i] = cs[i].unwrap(PGConnection.class).getParameterStatus("TimeZone");
    }
    cA.setAutoCommit(false);
    exec(cA, "SET LOCAL statement_timeout = '4321ms'");
    exec(cA, "SET LOCAL TimeZone = 'Pacific/Chatham'");
    exec(cA, "SET LOCAL search_path = pg_catalog");
    scalarString(cA, "select set_config('work_mem', '7MB', true)");
    eq(scalarString(cA, q), "4321ms|Pacific/Chatham|7MB|pg_catalog", "settings inside A's transaction");
    eq(cA.unwrap(PGConnection.class).getParameterStatus("TimeZone"), "Pacific/Chatham", "A's TimeZone ParameterStatus inside the transaction");
    // The others meanwhile, on the other backend.
    for (int i = 1; i < cs.length; i++) eq(scalarString(cs[i], q), base[i], "connection " + i + " during A's SET LOCAL transaction");
    cA.commit();
    cA.setAutoCommit(true);
    for (int round = 0; round < 3; round++) {
      for (int i = 0; i < cs.length; i++) {
        eq(scalarString(cs[i], q), base[i], "connection " + i + " after A's SET LOCAL transaction (round " + round + ")");
        eq(cs[i].unwrap(PGConnection.class).getParameterStatus("TimeZone"), tzStatus[i], "connection " + i + " TimeZone ParameterStatus after");
      }
    }

    say("9. a session SET on its own connection stays there; the others never see it, also after it closes");
    Connection cF = connect("F", "prepareThreshold", "1");
    exec(cF, "SET statement_timeout = '9876ms'");
    for (int round = 0; round < 3; round++) {
      eq(scalarString(cF, "select current_setting('statement_timeout')"), "9876ms", "F's session SET");
      for (int i = 0; i < cs.length; i++) eq(scalarString(cs[i], q), base[i], "connection " + i + " beside F's session SET");
    }
    cF.close();
    for (int i = 0; i < cs.length; i++) eq(scalarString(cs[i], q), base[i], "connection " + i + " after F closed");
  }

  // ---------------------------------- 12. pgjdbc's default connection

  static void defaultUrl() throws Exception {
    say("12. three connections with pgjdbc's defaults (no assumeMinServerVersion: pgjdbc runs SET extra_float_digits"
        + " and SET application_name after login), each running a query");
    Properties p = new Properties();
    p.setProperty("user", env("PGUSER"));
    p.setProperty("password", env("PGPASSWORD"));
    p.setProperty("sslmode", System.getenv().getOrDefault("PGSSLMODE", "prefer"));
    List<Connection> cs = new ArrayList<>();
    try {
      for (int i = 0; i < 3; i++) {
        try {
          cs.add(DriverManager.getConnection(url, p));
        } catch (SQLException e) {
          fail("default pgjdbc connection " + (i + 1) + " of 3: " + e.getSQLState() + " " + e.getMessage());
        }
      }
      for (int i = 0; i < 3; i++) {
        eq(scalarString(cs.get(i), "select current_setting('extra_float_digits') || '|' || current_setting('application_name')"),
            "3|PostgreSQL JDBC Driver", "default connection " + (i + 1) + " settings");
      }
    } finally {
      for (Connection c : cs) c.close();
    }
  }
}
