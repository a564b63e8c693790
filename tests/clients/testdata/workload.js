// The client workload through the pgshard proxy, with node-postgres (pg) and
// pg-copy-streams.
//
// Environment: TABLE, TX_IDS ("a,b": two ids on different shards), PGHOST, PGPORT, PGUSER,
// PGDATABASE. Prints OK and exits 0 when every step checks out; otherwise prints what was
// wrong and exits 1. See tests/clients/doc.go.
'use strict'

const { Readable } = require('node:stream')
const { pipeline } = require('node:stream/promises')
const pg = require('pg')
const { from: copyFrom, to: copyTo } = require('pg-copy-streams')

const TABLE = process.env.TABLE
if (!/^[a-z_][a-z0-9_]*$/.test(TABLE)) {
  console.log(`bad TABLE ${TABLE}`)
  process.exit(1)
}
const [TX_A, TX_B] = process.env.TX_IDS.split(',').map(Number)

const config = {
  host: process.env.PGHOST,
  port: Number(process.env.PGPORT),
  user: process.env.PGUSER,
  database: process.env.PGDATABASE,
  ssl: false,
  connectionTimeoutMillis: 10000,
}

class Failure extends Error {}

function check(cond, msg) {
  if (!cond) throw new Failure(msg)
}

// name(i): some names carry quotes, a comma and non-ASCII characters.
function name(i) {
  return i % 10 === 0 ? `O'Brien-\u00e9-"\u00df", \u2713-${i}` : `name-${i}`
}

// money(cents) is numeric(12,2)'s text for an amount in cents (pg returns numeric as a
// string); amount(i, plus) is i * 1.25 + plus.
function money(cents) {
  return `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`
}

function amount(i, plus = 0) {
  return money(i * 125 + plus * 100)
}

// created(i) is 2024-01-01 + i % 30 days, as 'YYYY-MM-DD'.
function created(i) {
  const d = new Date(Date.UTC(2024, 0, 1 + (i % 30)))
  return d.toISOString().slice(0, 10)
}

// pg returns a date column as a Date at local midnight.
function localDay(d) {
  const pad = (n) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`
}

async function stepInsert(client) {
  for (let i = 1; i <= 200; i++) {
    const res = await client.query(`INSERT INTO ${TABLE} (id, name, amount, created) VALUES ($1, $2, $3, $4)`, [
      i,
      name(i),
      amount(i),
      created(i),
    ])
    check(res.rowCount === 1, `insert ${i}: rowCount ${res.rowCount}, want 1`)
  }
}

async function stepReadBack(client) {
  for (let i = 1; i <= 200; i += 10) {
    const res = await client.query(`SELECT name, amount, created FROM ${TABLE} WHERE id = $1`, [i])
    check(res.rows.length === 1, `read id ${i}: ${res.rows.length} rows, want 1`)
    const row = res.rows[0]
    check(row.name === name(i), `read id ${i}: name ${JSON.stringify(row.name)}, want ${JSON.stringify(name(i))}`)
    check(row.amount === amount(i), `read id ${i}: amount ${JSON.stringify(row.amount)}, want ${amount(i)}`)
    check(row.created instanceof Date, `read id ${i}: created is ${typeof row.created}, want a Date`)
    check(localDay(row.created) === created(i), `read id ${i}: created ${row.created}, want ${created(i)}`)
  }
}

async function stepUpdateDelete(client) {
  for (let i = 1; i <= 50; i++) {
    const res = await client.query(`UPDATE ${TABLE} SET amount = amount + 1 WHERE id = $1`, [i])
    check(res.rowCount === 1, `update ${i}: rowCount ${res.rowCount}, want 1`)
  }
  for (let i = 191; i <= 200; i++) {
    const res = await client.query(`DELETE FROM ${TABLE} WHERE id = $1`, [i])
    check(res.rowCount === 1, `delete ${i}: rowCount ${res.rowCount}, want 1`)
  }
  const res = await client.query(`SELECT amount FROM ${TABLE} WHERE id = $1`, [7])
  check(res.rows[0].amount === amount(7, 1), `amount of id 7 after update: ${res.rows[0].amount}, want ${amount(7, 1)}`)
}

async function stepAggregate(client) {
  let cents = 50 * 100
  for (let i = 1; i <= 190; i++) cents += i * 125
  const wantSum = money(cents)
  const res = await client.query(`SELECT count(*), sum(amount) FROM ${TABLE}`)
  const { count, sum } = res.rows[0]
  // count(*) is a bigint, which pg returns as a string.
  check(count === '190' && sum === wantSum, `count, sum: got ${count}, ${sum}; want 190, ${wantSum}`)
}

function csvField(s) {
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
}

async function stepCopy(client) {
  let csv = ''
  for (let i = 1001; i <= 1300; i++) {
    csv += [i, csvField(name(i)), amount(i), created(i)].join(',') + '\n'
  }
  const ingest = client.query(copyFrom(`COPY ${TABLE} (id, name, amount, created) FROM STDIN WITH (FORMAT csv)`))
  await pipeline(Readable.from([Buffer.from(csv, 'utf8')]), ingest)
  check(ingest.rowCount === 300, `COPY FROM: rowCount ${ingest.rowCount}, want 300`)

  const res = await client.query(`SELECT name, amount, created FROM ${TABLE} WHERE id = $1`, [1250])
  const row = res.rows[0]
  check(
    row.name === name(1250) && row.amount === amount(1250) && localDay(row.created) === created(1250),
    `row 1250 after COPY: got ${JSON.stringify(row)}`
  )

  const chunks = []
  const out = client.query(copyTo(`COPY ${TABLE} TO STDOUT`))
  out.on('data', (c) => chunks.push(c))
  await new Promise((resolve, reject) => {
    out.on('end', resolve)
    out.on('error', reject)
  })
  const lines = Buffer.concat(chunks).toString('utf8').split('\n').filter((l) => l !== '')
  check(lines.length === 490, `COPY TO: ${lines.length} lines, want 490`)
  const ids = lines.map((l) => Number(l.split('\t')[0])).sort((a, b) => a - b)
  const wantIds = []
  for (let i = 1; i <= 190; i++) wantIds.push(i)
  for (let i = 1001; i <= 1300; i++) wantIds.push(i)
  check(ids.join(',') === wantIds.join(','), 'COPY TO: ids differ from 1..190, 1001..1300')
  const line = lines.find((l) => l.startsWith('1010\t'))
  const want = `1010\t${name(1010)}\t${amount(1010)}\t${created(1010)}`
  check(line === want, `COPY TO: row ${JSON.stringify(line)}, want ${JSON.stringify(want)}`)
}

// stepCancel cancels a running query with node-postgres' own cancel facility: a second
// Client's cancel(client, query) opens a connection to the same server and sends a
// CancelRequest with the first client's process ID and secret key (BackendKeyData).
async function stepCancel(client) {
  const query = new pg.Query(`SELECT pg_sleep(30) FROM ${TABLE} WHERE id = 1`)
  const settled = new Promise((resolve) => {
    query.on('error', (err) => resolve(err))
    query.on('end', () => resolve(null))
  })
  const start = Date.now()
  client.query(query)
  await new Promise((r) => setTimeout(r, 500))
  const canceller = new pg.Client(config)
  canceller.connection.on('error', () => {}) // the server closes the cancel connection
  canceller.cancel(client, query)
  const timeout = new Promise((resolve) => setTimeout(() => resolve('timeout'), 10000).unref())
  const err = await Promise.race([settled, timeout])
  check(err !== 'timeout', 'no answer 10 s after the cancel request')
  check(err !== null, 'pg_sleep(30) finished without being canceled')
  check(err.code === '57014', `canceled query: got ${err.code} ${err.message}, want SQLSTATE 57014`)
  check(Date.now() - start < 10000, `cancel took ${Date.now() - start} ms`)
  const res = await client.query('SELECT 1 AS one')
  check(res.rows[0].one === 1, 'SELECT 1 after cancel')
}

async function stepErrorThenSuccess(client) {
  let err = null
  try {
    await client.query(`INSERT INTO ${TABLE} (id, name, amount, created) VALUES ($1, $2, $3, $4)`, [5, 'dup', '1', '2024-01-01'])
  } catch (e) {
    err = e
  }
  check(err !== null, 'duplicate insert succeeded')
  check(err.code === '23505', `duplicate: got ${err.code} ${err.message}, want SQLSTATE 23505`)
  const res = await client.query(`SELECT count(*) FROM ${TABLE} WHERE id = $1`, [5])
  check(res.rows[0].count === '1', `count of id 5 after the duplicate: ${res.rows[0].count}, want 1`)
}

async function readName(client, id) {
  const res = await client.query(`SELECT name FROM ${TABLE} WHERE id = $1`, [id])
  return res.rows[0].name
}

async function stepTransactions(client) {
  await client.query('BEGIN')
  try {
    for (const id of [TX_A, TX_B]) {
      const res = await client.query(`UPDATE ${TABLE} SET name = $1 WHERE id = $2`, ['tx-committed', id])
      check(res.rowCount === 1, `tx update ${id}: rowCount ${res.rowCount}`)
    }
    const got = await readName(client, TX_A)
    check(got === 'tx-committed', `inside the transaction: name ${JSON.stringify(got)}, want the update`)
    await client.query('COMMIT')
  } catch (e) {
    await client.query('ROLLBACK')
    throw e
  }

  await client.query('BEGIN')
  try {
    for (const id of [TX_A, TX_B]) {
      await client.query(`UPDATE ${TABLE} SET name = $1 WHERE id = $2`, ['tx-rolled-back', id])
    }
    const got = await readName(client, TX_B)
    check(got === 'tx-rolled-back', `inside the second transaction: name ${JSON.stringify(got)}`)
  } finally {
    await client.query('ROLLBACK')
  }
  for (const id of [TX_A, TX_B]) {
    const got = await readName(client, id)
    check(got === 'tx-committed', `after commit and rollback: name of ${id} is ${JSON.stringify(got)}, want 'tx-committed'`)
  }
}

const STEPS = [
  stepInsert,
  stepReadBack,
  stepUpdateDelete,
  stepAggregate,
  stepCopy,
  stepCancel,
  stepErrorThenSuccess,
  stepTransactions,
]

async function main() {
  const client = new pg.Client(config)
  await client.connect()
  for (const step of STEPS) {
    try {
      await step(client)
    } catch (e) {
      if (e instanceof Failure) {
        console.log(`FAIL ${step.name}: ${e.message}`)
      } else {
        console.log(`FAIL ${step.name}: ${e.code || ''} ${e.stack}`)
      }
      return 1
    }
  }
  await client.end()
  console.log('OK')
  return 0
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.log(`FAIL: ${e.stack}`)
    process.exit(1)
  }
)
