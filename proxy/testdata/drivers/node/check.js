'use strict'
// node-postgres against a transaction-mode pgbridge tenant whose pool holds
// fewer backends (2) than this program opens connections (3 clients, a
// pipelining client, a pool of 4, and short-lived extra clients), so that
// every check runs over backends shared with the others: named prepared
// statements that must follow each connection from backend to backend,
// types, transactions, errors, concurrency, large results, multi-statement
// queries and session state. Run by proxy/drivers_test.go with the login in
// PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE and PGSSLMODE; prints each
// check, exits 1 at the first failure, prints "ok" last when all passed.

const assert = require('assert')
const crypto = require('crypto')
const pg = require('pg')

const started = Date.now()
let current = 'startup'

function check(name) {
  current = name
  console.log(`check: ${name}`)
}

function fail(err) {
  console.log(`FAIL in "${current}" after ${Date.now() - started} ms:`)
  console.log(err && err.stack ? err.stack : String(err))
  if (err && err.code) console.log(`SQLSTATE ${err.code}`)
  process.exit(1)
}

process.on('unhandledRejection', fail)
process.on('uncaughtException', fail)
// Never hang until the harness's 3-minute limit.
setTimeout(() => fail(new Error('the checks did not finish within 60 s')), 60000).unref()

function eq(actual, expected, what) {
  assert.deepStrictEqual(actual, expected, what)
}

// expectError awaits p and requires it to fail with SQLSTATE code.
async function expectError(p, code, what) {
  let res
  try {
    res = await p
  } catch (err) {
    if (err.code !== code) {
      throw new Error(`${what}: want SQLSTATE ${code}, got ${err.code}: ${err.message}`)
    }
    return err
  }
  throw new Error(`${what}: want SQLSTATE ${code}, got success: ${JSON.stringify(res && res.rows)}`)
}

async function newClient(config = {}) {
  const c = new pg.Client(config)
  c.on('error', fail)
  await c.connect()
  return c
}

const TABLES = ['node_items', 'node_accounts', 'node_types', 'node_blobs', 'node_multi']

async function dropTables(c) {
  for (const t of TABLES) await c.query(`drop table if exists ${t}`)
}

async function main() {
  check('connect 3 clients, a pipelining client and a pool of 4')
  const a = await newClient()
  const b = await newClient()
  const c = await newClient()
  const p = await newClient({ pipeline: true })
  const pool = new pg.Pool({ max: 4 })
  pool.on('error', fail)
  const clients = { a, b, c, p }

  check('setup: drop and create node_ tables')
  await dropTables(a)
  await a.query(`create table node_items (id int primary key, name text unique, qty int not null default 0)`)
  await a.query(`create table node_accounts (id int primary key, balance bigint not null)`)
  await a.query(`create table node_types (id int primary key, i int, b bigint, n numeric, t text,
    by bytea, ts timestamptz, d date, j json, jb jsonb, ia int[], ta text[], bo boolean)`)
  await a.query(`create table node_blobs (id int primary key, data bytea not null)`)
  await a.query(`create table node_multi (id int primary key, v text)`)

  // Session defaults, read from a connection that never changed anything.
  const defaults = (await pool.query(
    `select current_setting('work_mem') as work_mem, current_setting('search_path') as search_path,
            current_setting('DateStyle') as datestyle`)).rows[0]

  // ---------------------------------------------------------------------
  // 1. Named prepared statements: same name, different texts per connection.
  check('named statements: q1/q2 with different texts on each connection, interleaved')
  const texts = {
    a: { q1: `select $1::int * 2 as v, 'a' as who`, q2: `select $1::text || '-a2' as s` },
    b: { q1: `select $1::text || '-b' as s, 42 as n, 'b' as who`, q2: `select $1::int * 2 as v, 'a' as who` },
    c: { q1: `select $1::int + 1000 as v, $1::int as orig, 'c' as who`, q2: `select array[$1::int, $1::int] as arr` },
    p: { q1: `select $1::bigint as big, 'p' as who`, q2: `select $1::int - 1 as v, 'p2' as who` },
    pool: { q1: `select $1::int * 3 as tri, 'pool' as who` },
  }
  const want = {
    a: { q1: (i) => ({ v: i * 2, who: 'a' }), q2: (i) => ({ s: `${i}-a2` }) },
    b: { q1: (i) => ({ s: `${i}-b`, n: 42, who: 'b' }), q2: (i) => ({ v: i * 2, who: 'a' }) },
    c: { q1: (i) => ({ v: i + 1000, orig: i, who: 'c' }), q2: (i) => ({ arr: [i, i] }) },
    p: { q1: (i) => ({ big: String(i), who: 'p' }), q2: (i) => ({ v: i - 1, who: 'p2' }) },
    pool: { q1: (i) => ({ tri: i * 3, who: 'pool' }) },
  }
  for (let i = 0; i < 60; i++) {
    // a, b and c run q1 then q2, concurrently with each other; the
    // pipelining client puts both on the wire at once; the pool runs 4.
    const seq = async (k) => {
      for (const q of ['q1', 'q2']) {
        const r = await clients[k].query({ name: q, text: texts[k][q], values: [i] })
        eq(r.rows, [want[k][q](i)], `${k} ${q} iteration ${i}`)
      }
    }
    const piped = ['q1', 'q2'].map(async (q) => {
      const r = await p.query({ name: q, text: texts.p[q], values: [i] })
      eq(r.rows, [want.p[q](i)], `p ${q} iteration ${i}`)
    })
    const pooled = [0, 1, 2, 3].map(async (j) => {
      const r = await pool.query({ name: 'q1', text: texts.pool.q1, values: [i + j] })
      eq(r.rows, [want.pool.q1(i + j)], `pool q1 iteration ${i}`)
    })
    await Promise.all([seq('a'), seq('b'), seq('c'), ...piped, ...pooled])
  }

  {
    // Informational: how many backends served these connections (through
    // the router's transaction-mode pool of 2, at most 2).
    const pids = new Set()
    for (let i = 0; i < 3; i++) {
      const rs = await Promise.all([a, b, c, p].map((x) => x.query('select pg_backend_pid() as pid'))
        .concat([0, 1, 2, 3].map(() => pool.query('select pg_backend_pid() as pid'))))
      rs.forEach((r) => pids.add(r.rows[0].pid))
    }
    console.log(`  (8 connections were served by ${pids.size} backend(s))`)
  }

  check('named statements: result field types follow each connection\'s own text')
  {
    const ra = await a.query({ name: 'q1', text: texts.a.q1, values: [1] })
    const rb = await b.query({ name: 'q1', text: texts.b.q1, values: [1] })
    eq(ra.fields.map((f) => [f.name, f.dataTypeID]), [['v', 23], ['who', 25]], 'a q1 fields')
    eq(rb.fields.map((f) => [f.name, f.dataTypeID]), [['s', 25], ['n', 23], ['who', 25]], 'b q1 fields')
  }

  check('named statements: reused inside transactions on a pool client')
  for (let i = 0; i < 10; i++) {
    const pc = await pool.connect()
    try {
      await pc.query('begin')
      const r = await pc.query({ name: 'q1', text: texts.pool.q1, values: [i] })
      eq(r.rows, [want.pool.q1(i)], 'pool q1 in a transaction')
      const r2 = await pc.query({ name: 'ins_item', text: 'insert into node_items (id, name, qty) values ($1, $2, $3) returning id', values: [1000 + i, `tx-${i}`, i] })
      eq(r2.rows, [{ id: 1000 + i }], 'insert returning')
      await pc.query('commit')
    } finally {
      pc.release()
    }
  }
  eq((await b.query('select count(*)::int as n, sum(qty)::int as s from node_items where id >= 1000')).rows, [{ n: 10, s: 45 }], 'committed rows')
  await a.query('delete from node_items')

  // ---------------------------------------------------------------------
  // 2. Types.
  check('types: parameters round-trip (int, bigint, numeric, unicode text, bytea, timestamptz, date, json, jsonb, arrays, null, bool, float8)')
  const tsDate = new Date('2024-02-29T12:34:56.789Z')
  const unicode = `héllo wörld ✓ 日本語 🐘 'single' "double" back\\slash \t tab\nnewline`
  const smallBytes = Buffer.from([0, 1, 2, 0x27, 0x5c, 0x7f, 0x80, 0xff, 0])
  const jsonVal = { a: 1, b: [1, 2, 'x', null], c: null, d: { e: 'ü✓' } }
  const jsonbVal = { nested: { list: [true, false, 1.5], s: '日本' }, z: 0 }
  const textArr = ['a', 'b c', '"q"', 'back\\slash', null, '', 'NULL', '{braces}', 'comma,here']
  const typeSQL = `select $1::int as i, $2::bigint as b, $3::numeric as n, $4::text as t, $5::bytea as by,
    $6::timestamptz as ts, $7::date as d, $8::json as j, $9::jsonb as jb, $10::int[] as ia,
    $11::text[] as ta, $12::text as nul, $13::bool as bo, $14::float8 as f, $15::bool as bf,
    $16::int as ineg, $7::date::text as dtext,
    to_char($6::timestamptz at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS') as tsutc`
  const typeValues = [2147483647, '9223372036854775807', '12345678901234567890.123456789', unicode, smallBytes,
    tsDate, '2024-02-29', jsonVal, jsonbVal, [1, 2, null, -3], textArr, null, true, 1.5, false, -2147483648]
  const checkTypes = (row, what) => {
    eq(row.i, 2147483647, `${what} int`)
    eq(row.b, '9223372036854775807', `${what} bigint`)
    eq(row.n, '12345678901234567890.123456789', `${what} numeric`)
    eq(row.t, unicode, `${what} text`)
    assert.ok(Buffer.isBuffer(row.by) && row.by.equals(smallBytes), `${what} bytea: ${row.by && row.by.toString('hex')}`)
    assert.ok(row.ts instanceof Date && row.ts.getTime() === tsDate.getTime(), `${what} timestamptz: ${row.ts}`)
    assert.ok(row.d instanceof Date && row.d.getFullYear() === 2024 && row.d.getMonth() === 1 && row.d.getDate() === 29, `${what} date: ${row.d}`)
    eq(row.j, jsonVal, `${what} json`)
    eq(row.jb, jsonbVal, `${what} jsonb`)
    eq(row.ia, [1, 2, null, -3], `${what} int[]`)
    eq(row.ta, textArr, `${what} text[]`)
    eq(row.nul, null, `${what} null`)
    eq(row.bo, true, `${what} bool true`)
    eq(row.f, 1.5, `${what} float8`)
    eq(row.bf, false, `${what} bool false`)
    eq(row.ineg, -2147483648, `${what} negative int`)
    eq(row.dtext, '2024-02-29', `${what} date as text`)
    eq(row.tsutc, '2024-02-29 12:34:56.789', `${what} timestamptz in UTC`)
  }
  {
    const r = await a.query(typeSQL, typeValues)
    checkTypes(r.rows[0], 'client')
    eq(r.fields.map((f) => f.dataTypeID).slice(0, 15), [23, 20, 1700, 25, 17, 1184, 1082, 114, 3802, 1007, 1009, 25, 16, 701, 16], 'field type oids')
    const rp = await Promise.all([0, 1, 2, 3].map(() => pool.query(typeSQL, typeValues)))
    rp.forEach((x) => checkTypes(x.rows[0], 'pool'))
    checkTypes((await p.query({ name: 'types', text: typeSQL, values: typeValues })).rows[0], 'pipeline named')
    checkTypes((await p.query({ name: 'types', text: typeSQL, values: typeValues })).rows[0], 'pipeline named again')
  }

  check('types: rowMode array')
  {
    const r = await b.query({ text: typeSQL, values: typeValues, rowMode: 'array' })
    eq(r.rows.length, 1, 'one row')
    const row = r.rows[0]
    assert.ok(Array.isArray(row) && row.length === 18, 'row is an array of 18')
    const obj = {}
    r.fields.forEach((f, idx) => { obj[f.name] = row[idx] })
    checkTypes(obj, 'rowMode array')
    const r2 = await b.query({ text: 'select g, g * 2 from generate_series(1, 3) g', rowMode: 'array' })
    eq(r2.rows, [[1, 2], [2, 4], [3, 6]], 'rowMode array, simple query')
  }

  check('types: stored in a table on one connection, read back on others, nulls included')
  {
    await a.query(`insert into node_types values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
      [1, 2147483647, '9223372036854775807', '12345678901234567890.123456789', unicode, smallBytes, tsDate,
        '2024-02-29', jsonVal, jsonbVal, [1, 2, null, -3], textArr, true])
    await a.query(`insert into node_types (id) values ($1)`, [2])
    const rows = (await c.query('select * from node_types order by id')).rows
    eq(rows.length, 2, 'two rows')
    const r1 = rows[0]
    eq([r1.i, r1.b, r1.n, r1.t], [2147483647, '9223372036854775807', '12345678901234567890.123456789', unicode], 'scalars')
    assert.ok(r1.by.equals(smallBytes), 'stored bytea')
    eq(r1.ts.getTime(), tsDate.getTime(), 'stored timestamptz')
    eq([r1.j, r1.jb, r1.ia, r1.ta, r1.bo], [jsonVal, jsonbVal, [1, 2, null, -3], textArr, true], 'stored json, jsonb, arrays, bool')
    const r2 = rows[1]
    eq(Object.entries(r2).filter(([k]) => k !== 'id').every(([, v]) => v === null), true, 'all-null row')
  }

  check('types: 1 MiB bytea round-trips and is stored intact')
  {
    const big = crypto.randomBytes(1 << 20)
    const md5 = crypto.createHash('md5').update(big).digest('hex')
    const r = await a.query('select $1::bytea as data, length($1::bytea) as n, md5($1::bytea) as h', [big])
    assert.ok(r.rows[0].data.equals(big), '1 MiB bytea round-trip')
    eq([r.rows[0].n, r.rows[0].h], [1 << 20, md5], 'server saw the same bytes')
    await pool.query({ name: 'put_blob', text: 'insert into node_blobs values ($1, $2)', values: [1, big] })
    const back = await Promise.all([b.query('select data, md5(data) as h from node_blobs where id = 1'),
      p.query('select data from node_blobs where id = $1', [1])])
    assert.ok(back[0].rows[0].data.equals(big) && back[0].rows[0].h === md5, 'stored blob read back on b')
    assert.ok(back[1].rows[0].data.equals(big), 'stored blob read back on p')
    const bigText = '✓日本🐘'.repeat(1 << 16) // 1 MiB of UTF-8
    const rt = await c.query('select $1::text as t, octet_length($1::text) as n', [bigText])
    eq([rt.rows[0].t === bigText, rt.rows[0].n], [true, Buffer.byteLength(bigText)], '1 MiB unicode text')
  }

  // ---------------------------------------------------------------------
  // 3. Transactions.
  check('transactions: BEGIN/COMMIT visible to others, ROLLBACK not, transaction status')
  {
    eq(a.getTransactionStatus(), 'I', 'idle before begin')
    await a.query('begin')
    eq(a.getTransactionStatus(), 'T', 'in transaction after begin')
    await a.query('insert into node_items (id, name) values ($1, $2)', [1, 'one'])
    eq((await a.query('select count(*)::int as n from node_items')).rows, [{ n: 1 }], 'own insert seen')
    eq((await b.query('select count(*)::int as n from node_items')).rows, [{ n: 0 }], 'uncommitted insert not seen by b')
    const cm = await a.query('commit')
    eq([cm.command, a.getTransactionStatus()], ['COMMIT', 'I'], 'commit')
    eq((await b.query('select name from node_items where id = 1')).rows, [{ name: 'one' }], 'committed insert seen by b')
    await a.query('begin')
    await a.query('insert into node_items (id, name) values ($1, $2)', [2, 'two'])
    const rb = await a.query('rollback')
    eq(rb.command, 'ROLLBACK', 'rollback tag')
    eq((await c.query('select array_agg(id order by id) as ids from node_items')).rows, [{ ids: [1] }], 'rolled back insert gone')
  }

  check('transactions: SAVEPOINT, ROLLBACK TO, RELEASE, error inside a savepoint')
  {
    const pc = await pool.connect()
    try {
      await pc.query('begin')
      await pc.query('insert into node_items (id, name) values (10, $1)', ['ten'])
      await pc.query('savepoint s1')
      await pc.query('insert into node_items (id, name) values (11, $1)', ['eleven'])
      await pc.query('rollback to savepoint s1')
      await pc.query('insert into node_items (id, name) values (12, $1)', ['twelve'])
      await pc.query('savepoint s2')
      await expectError(pc.query('insert into node_items (id, name) values (10, $1)', ['dup']), '23505', 'duplicate inside savepoint')
      await expectError(pc.query('select 1'), '25P02', 'statement after error inside savepoint')
      // (An error settles its query before the ReadyForQuery behind it is
      // read, which may come in a later read: look once the next query,
      // sent after that ReadyForQuery, has failed.)
      eq(pc.getTransactionStatus(), 'E', 'failed transaction status')
      await pc.query('rollback to savepoint s2')
      eq(pc.getTransactionStatus(), 'T', 'status after rollback to savepoint')
      await pc.query({ name: 'ins_item', text: 'insert into node_items (id, name, qty) values ($1, $2, $3) returning id', values: [13, 'thirteen', 0] })
      await pc.query('savepoint s3')
      await pc.query('insert into node_items (id, name) values (14, $1)', ['fourteen'])
      await pc.query('release savepoint s3')
      await pc.query('commit')
    } finally {
      pc.release()
    }
    eq((await a.query('select array_agg(id order by id) as ids from node_items')).rows, [{ ids: [1, 10, 12, 13, 14] }], 'rows after savepoints')
  }

  check('transactions: SQL error inside a transaction gives 25P02 until ROLLBACK; COMMIT of a failed transaction rolls back')
  {
    await b.query('begin')
    await b.query('insert into node_items (id, name) values (20, $1)', ['twenty'])
    await expectError(b.query('select 1 / $1::int', [0]), '22012', 'division by zero in a transaction')
    await expectError(b.query('select 1'), '25P02', 'simple query after error')
    await expectError(b.query('select $1::int', [1]), '25P02', 'unnamed extended query after error')
    await expectError(b.query({ name: 'q1', text: texts.b.q1, values: [1] }), '25P02', 'named statement after error')
    const rb = await b.query('rollback')
    eq([rb.command, b.getTransactionStatus()], ['ROLLBACK', 'I'], 'rollback after error')
    eq((await b.query({ name: 'q1', text: texts.b.q1, values: [5] })).rows, [want.b.q1(5)], 'named statement after rollback')
    await c.query('begin')
    await c.query('insert into node_items (id, name) values (21, $1)', ['twenty-one'])
    await expectError(c.query('insert into node_items (id, name) values (1, $1)', ['dup']), '23505', 'unique violation in a transaction')
    const cm = await c.query('commit')
    eq(cm.command, 'ROLLBACK', 'COMMIT of a failed transaction reports ROLLBACK')
    eq((await a.query('select count(*)::int as n from node_items where id in (20, 21)')).rows, [{ n: 0 }], 'failed transactions left nothing')
  }

  check('transactions: 40 concurrent transfers on pool clients checked out for a transaction')
  {
    const N = 8
    await a.query('insert into node_accounts select g, 1000 from generate_series(1, $1::int) g', [N])
    const expected = new Array(N + 1).fill(1000)
    const transfers = []
    for (let i = 0; i < 40; i++) {
      const from = (i % N) + 1
      const to = ((i * 3 + 1) % N) + 1
      if (from === to) continue
      const amount = i + 1
      expected[from] -= amount
      expected[to] += amount
      transfers.push({ from, to, amount })
    }
    await Promise.all(transfers.map(async ({ from, to, amount }) => {
      const pc = await pool.connect()
      try {
        await pc.query('begin')
        // lock in id order: no deadlocks between opposite transfers
        for (const id of [from, to].sort((x, y) => x - y)) {
          await pc.query({ name: 'lock_acct', text: 'select balance from node_accounts where id = $1 for update', values: [id] })
        }
        const r1 = await pc.query({ name: 'debit', text: 'update node_accounts set balance = balance - $2 where id = $1 returning id', values: [from, amount] })
        const r2 = await pc.query({ name: 'credit', text: 'update node_accounts set balance = balance + $2 where id = $1 returning id', values: [to, amount] })
        eq([r1.rowCount, r2.rowCount], [1, 1], 'transfer updated both accounts')
        await pc.query('commit')
      } catch (err) {
        await pc.query('rollback').catch(() => {})
        throw err
      } finally {
        pc.release()
      }
    }))
    const rows = (await c.query('select id, balance from node_accounts order by id')).rows
    eq(rows, expected.slice(1).map((bal, idx) => ({ id: idx + 1, balance: String(bal) })), 'balances after transfers')
  }

  // ---------------------------------------------------------------------
  // 4. Errors.
  check('errors: syntax error, unique violation, division by zero; SQLSTATE, fields, connection stays usable')
  {
    const e1 = await expectError(a.query('selec 1'), '42601', 'syntax error')
    eq([e1.position, e1.severity], ['1', 'ERROR'], 'syntax error position and severity')
    eq((await a.query('select 1 as one')).rows, [{ one: 1 }], 'usable after syntax error')
    const e2 = await expectError(a.query('insert into node_items (id, name) values ($1, $2)', [1, 'again']), '23505', 'unique violation')
    eq([e2.constraint, e2.table, e2.detail], ['node_items_pkey', 'node_items', 'Key (id)=(1) already exists.'], 'unique violation fields')
    const e3 = await expectError(a.query('insert into node_items (id, name) values ($1, $2)', [99, 'one']), '23505', 'unique violation on name')
    eq(e3.constraint, 'node_items_name_key', 'second constraint')
    await expectError(a.query('select 1 / 0'), '22012', 'division by zero, simple')
    await expectError(a.query('select 1 / $1::int', [0]), '22012', 'division by zero, extended')
    await expectError(a.query('select $1::int', ['not a number']), '22P02', 'bad parameter value at Bind')
    await expectError(a.query('select $1::int + $2::int', [1]), '08P01', 'too few parameters at Bind')
    await expectError(a.query('select * from node_no_such_table'), '42P01', 'undefined table')
    eq(a.getTransactionStatus(), 'I', 'idle after errors outside a transaction')
    eq((await a.query('select $1::int + 1 as two', [1])).rows, [{ two: 2 }], 'usable after errors')
    eq((await a.query({ name: 'q1', text: texts.a.q1, values: [3] })).rows, [want.a.q1(3)], 'named statement usable after errors')
  }

  check('errors: a named statement whose Parse fails, then the name reused (same and other connections)')
  {
    await expectError(a.query({ name: 'shaky', text: 'select * from node_no_such_table where id = $1', values: [1] }), '42P01', 'Parse of shaky fails')
    await expectError(a.query({ name: 'shaky', text: 'select * from node_no_such_table where id = $1', values: [1] }), '42P01', 'Parse of shaky fails again')
    await expectError(b.query({ name: 'shaky', text: 'selec $1', values: [1] }), '42601', 'Parse of shaky fails on b')
    eq((await a.query({ name: 'shaky', text: 'select $1::int * 7 as seven', values: [1] })).rows, [{ seven: 7 }], 'shaky reused with a good text')
    eq((await b.query({ name: 'shaky', text: 'select $1::text as t', values: ['b'] })).rows, [{ t: 'b' }], 'shaky reused with a good text on b')
    for (let i = 0; i < 10; i++) {
      const [ra, rb] = await Promise.all([
        a.query({ name: 'shaky', text: 'select $1::int * 7 as seven', values: [i] }),
        b.query({ name: 'shaky', text: 'select $1::text as t', values: [`b${i}`] }),
        c.query('select pg_sleep(0.001)'),
      ])
      eq([ra.rows, rb.rows], [[{ seven: i * 7 }], [{ t: `b${i}` }]], 'shaky, Bind only, from backend to backend')
    }
    // pipelining: the failing Parse is followed by queries already on the wire
    const results = await Promise.allSettled([
      p.query({ name: 'pshaky', text: 'select nope_column from node_items', values: [] }),
      p.query('select 1 as one'),
      p.query({ name: 'q2', text: texts.p.q2, values: [9] }),
    ])
    eq(results.map((x) => x.status), ['rejected', 'fulfilled', 'fulfilled'], 'pipeline after a failed Parse')
    eq(results[0].reason.code, '42703', 'pipeline failed Parse code')
    eq([results[1].value.rows, results[2].value.rows], [[{ one: 1 }], [want.p.q2(9)]], 'pipeline results after a failed Parse')
    eq((await p.query({ name: 'pshaky', text: 'select count(*)::int as n from node_items', values: [] })).rows, [{ n: 5 }], 'pshaky reused')
  }

  check('errors: a named statement failing at Execute or Bind is reused without a new Parse')
  {
    await expectError(c.query({ name: 'div', text: 'select 10 / $1::int as r', values: [0] }), '22012', 'div by 0')
    eq((await c.query({ name: 'div', text: 'select 10 / $1::int as r', values: [2] })).rows, [{ r: 5 }], 'div reused')
    await expectError(c.query({ name: 'div', text: 'select 10 / $1::int as r', values: ['x'] }), '22P02', 'div with a bad value')
    eq((await c.query({ name: 'div', text: 'select 10 / $1::int as r', values: [5] })).rows, [{ r: 2 }], 'div reused again')
  }

  // ---------------------------------------------------------------------
  // 5. Concurrency.
  check('concurrency: 500 queries on the pool (max 4) plus the clients at once')
  {
    const work = []
    for (let i = 0; i < 500; i++) {
      switch (i % 5) {
        case 0:
          work.push(pool.query('select $1::int * $1::int as sq', [i]).then((r) => eq(r.rows, [{ sq: i * i }], `sq ${i}`)))
          break
        case 1:
          work.push(pool.query({ name: 'q1', text: texts.pool.q1, values: [i] }).then((r) => eq(r.rows, [want.pool.q1(i)], `pool q1 ${i}`)))
          break
        case 2:
          work.push(pool.query(`select ${i} as lit, 'x' || ${i} as s`).then((r) => eq(r.rows, [{ lit: i, s: `x${i}` }], `simple ${i}`)))
          break
        case 3:
          work.push(pool.query({ name: 'count_to', text: 'select count(*)::int as n from generate_series(1, $1::int)', values: [i] }).then((r) => eq(r.rows, [{ n: i }], `count_to ${i}`)))
          break
        case 4:
          work.push(pool.query({ text: 'select $1::text as t, $2::int[] as arr', values: [`t${i}`, [i, -i]], rowMode: 'array' }).then((r) => eq(r.rows, [[`t${i}`, [i, -i]]], `array ${i}`)))
          break
      }
    }
    for (let i = 0; i < 50; i++) {
      work.push(p.query({ name: 'q1', text: texts.p.q1, values: [i] }).then((r) => eq(r.rows, [want.p.q1(i)], `p q1 ${i}`)))
    }
    const loop = async (k, n) => {
      for (let i = 0; i < n; i++) {
        const r = await clients[k].query({ name: 'q1', text: texts[k].q1, values: [i] })
        eq(r.rows, [want[k].q1(i)], `${k} q1 ${i}`)
      }
    }
    work.push(loop('a', 40), loop('b', 40), loop('c', 40))
    await Promise.all(work)
  }

  // ---------------------------------------------------------------------
  // 6. Large results, many parameters.
  check('large results: 100,000 rows, extended and simple protocol')
  {
    const r = await a.query('select g as id, \'row \' || g as s from generate_series(1, $1::int) g', [100000])
    eq(r.rows.length, 100000, 'row count')
    for (let i = 0; i < r.rows.length; i++) {
      const row = r.rows[i]
      if (row.id !== i + 1 || row.s !== `row ${i + 1}`) throw new Error(`row ${i}: ${JSON.stringify(row)}`)
    }
    const [rs, other] = await Promise.all([
      b.query({ text: 'select g, md5(g::text) from generate_series(1, 100000) g', rowMode: 'array' }),
      c.query({ name: 'q1', text: texts.c.q1, values: [77] }),
    ])
    eq(rs.rows.length, 100000, 'simple row count')
    for (let i = 0; i < rs.rows.length; i += 997) {
      eq(rs.rows[i], [i + 1, crypto.createHash('md5').update(String(i + 1)).digest('hex')], `simple row ${i}`)
    }
    eq(other.rows, [want.c.q1(77)], 'query beside a large result')
  }

  check('large results: fetched in pages of 1,000 rows (Execute with a row limit, Flush until done)')
  {
    const [r, other] = await Promise.all([
      a.query({ text: 'select g from generate_series(1, $1::int) g', values: [10000], rows: 1000 }),
      b.query('select 2 as two'),
    ])
    eq(r.rows.length, 10000, 'paged row count')
    eq(r.rows[9999], { g: 10000 }, 'last paged row')
    eq(other.rows, [{ two: 2 }], 'query beside the paged one')
    eq((await a.query('select 1 as one')).rows, [{ one: 1 }], 'usable after paging')
  }

  check('many parameters: 1,000 in a select, 999 in an insert')
  {
    const vals = Array.from({ length: 1000 }, (_, i) => i * 3 - 500)
    const sql = 'select array[' + vals.map((_, i) => `$${i + 1}::int`).join(', ') + '] as arr'
    eq((await a.query(sql, vals)).rows[0].arr, vals, '1,000 parameters')
    eq((await pool.query({ name: 'thousand', text: sql, values: vals })).rows[0].arr, vals, '1,000 parameters, named')
    const ph = []
    const iv = []
    for (let i = 0; i < 333; i++) {
      ph.push(`($${i * 3 + 1}, $${i * 3 + 2}, $${i * 3 + 3})`)
      iv.push(5000 + i, `bulk-${i}`, i)
    }
    const ins = await b.query('insert into node_items (id, name, qty) values ' + ph.join(', '), iv)
    eq([ins.command, ins.rowCount], ['INSERT', 333], 'bulk insert')
    eq((await c.query('select count(*)::int as n, sum(qty)::int as s from node_items where id >= 5000')).rows, [{ n: 333, s: 333 * 332 / 2 }], 'bulk rows')
  }

  // ---------------------------------------------------------------------
  // 7. Multi-statement simple queries.
  check('multi-statement simple queries return one result per statement')
  {
    const r = await a.query(`select 1 as a; select 'two' as b, 2 as c`)
    assert.ok(Array.isArray(r) && r.length === 2, 'array of 2 results')
    eq([r[0].rows, r[1].rows], [[{ a: 1 }], [{ b: 'two', c: 2 }]], 'rows per statement')
    const m = await b.query(`insert into node_multi values (1, 'x'), (2, 'y'); update node_multi set v = v || '!'; select id, v from node_multi order by id; delete from node_multi where id = 2`)
    eq(m.map((x) => [x.command, x.rowCount]), [['INSERT', 2], ['UPDATE', 2], ['SELECT', 2], ['DELETE', 1]], 'commands and counts')
    eq(m[2].rows, [{ id: 1, v: 'x!' }, { id: 2, v: 'y!' }], 'select inside the batch')
    await expectError(c.query(`insert into node_multi values (10, 'a'); select 1 / 0; insert into node_multi values (11, 'b')`), '22012', 'error in the middle of a batch')
    eq((await a.query('select array_agg(id order by id) as ids from node_multi')).rows, [{ ids: [1] }], 'failed batch rolled back as one implicit transaction')
    const t = await c.query(`begin; insert into node_multi values (20, 'in tx'); commit; select count(*)::int as n from node_multi`)
    eq(t.map((x) => x.command), ['BEGIN', 'INSERT', 'COMMIT', 'SELECT'], 'transaction in one batch')
    eq([t[3].rows, c.getTransactionStatus()], [[{ n: 2 }], 'I'], 'after the batch')
    const open = await a.query(`begin; insert into node_multi values (30, 'open'); select 1 as still`)
    eq([open.length, a.getTransactionStatus()], [3, 'T'], 'batch leaves a transaction open')
    eq((await b.query('select count(*)::int as n from node_multi where id = 30')).rows, [{ n: 0 }], 'open batch transaction not visible')
    await a.query('rollback')
  }

  // ---------------------------------------------------------------------
  // 8. Session state.
  check('session state: SET LOCAL and set_config(..., true) inside a transaction do not leak')
  {
    const show = `select current_setting('work_mem') as work_mem, current_setting('search_path') as search_path,
                         current_setting('DateStyle') as datestyle`
    for (let round = 0; round < 5; round++) {
      const who = [a, b, c][round % 3]
      await who.query('begin')
      await who.query(`set local work_mem = '7777kB'`)
      await who.query(`select set_config('search_path', 'pg_catalog', true)`)
      await who.query(`set local datestyle = 'SQL, DMY'`)
      eq((await who.query(show)).rows, [{ work_mem: '7777kB', search_path: 'pg_catalog', datestyle: 'SQL, DMY' }], 'local settings inside the transaction')
      await who.query(round % 2 ? 'commit' : 'rollback')
      const all = await Promise.all([
        a.query(show), b.query(show), c.query(show), p.query(show),
        ...[0, 1, 2, 3].map(() => pool.query(show)),
      ])
      all.forEach((r, idx) => eq(r.rows, [defaults], `settings on connection ${idx} after round ${round}`))
    }
  }

  check('session state: a session SET stays with its connection (pinned) and never reaches the others')
  {
    const d = await newClient()
    await d.query(`set work_mem = '3333kB'`)
    for (let i = 0; i < 5; i++) {
      const [rd, ra, rpool] = await Promise.all([
        d.query(`select current_setting('work_mem') as w`),
        a.query(`select current_setting('work_mem') as w`),
        pool.query(`select current_setting('work_mem') as w`),
      ])
      eq([rd.rows[0].w, ra.rows[0].w, rpool.rows[0].w], ['3333kB', defaults.work_mem, defaults.work_mem], `pinned SET, round ${i}`)
      await d.query('begin')
      eq((await d.query(`select current_setting('work_mem') as w`)).rows[0].w, '3333kB', 'pinned SET inside a transaction')
      await d.query('commit')
    }
    await d.end()
    const after = await Promise.all([a, b, c].map((x) => x.query(`select current_setting('work_mem') as w`)).concat(
      [0, 1, 2, 3].map(() => pool.query(`select current_setting('work_mem') as w`))))
    after.forEach((r) => eq(r.rows[0].w, defaults.work_mem, 'work_mem after the pinned client left'))
  }

  check('teardown: drop node_ tables, close connections')
  await dropTables(a)
  await Promise.all([a.end(), b.end(), c.end(), p.end(), pool.end()])
  console.log(`all checks passed in ${Date.now() - started} ms`)
  console.log('ok')
}

main().catch(fail)
