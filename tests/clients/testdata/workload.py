"""The client workload through the pgshard proxy, with psycopg2.

Environment: TABLE, TX_IDS ("a,b": two ids on different shards), PGHOST, PGPORT, PGUSER,
PGDATABASE. Prints OK and exits 0 when every step checks out; otherwise prints what was
wrong and exits 1. See tests/clients/doc.go.
"""

import csv
import datetime
import io
import os
import re
import sys
import threading
import time
from decimal import Decimal

import psycopg2
import psycopg2.errors

TABLE = os.environ["TABLE"]
if not re.fullmatch(r"[a-z_][a-z0-9_]*", TABLE):
    sys.exit("bad TABLE %r" % TABLE)
TX_A, TX_B = (int(x) for x in os.environ["TX_IDS"].split(","))


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def name(i):
    # Some names carry quotes, a comma and non-ASCII characters.
    if i % 10 == 0:
        return "O'Brien-\u00e9-\"\u00df\", \u2713-%d" % i
    return "name-%d" % i


def amount(i):
    return Decimal(i) * Decimal("1.25")


def created(i):
    return datetime.date(2024, 1, 1) + datetime.timedelta(days=i % 30)


def connect():
    conn = psycopg2.connect(
        host=os.environ["PGHOST"],
        port=os.environ["PGPORT"],
        user=os.environ["PGUSER"],
        dbname=os.environ["PGDATABASE"],
        sslmode="disable",
        connect_timeout=10,
    )
    conn.autocommit = True
    return conn


def step_insert(conn):
    with conn.cursor() as cur:
        for i in range(1, 201):
            cur.execute(
                "INSERT INTO " + TABLE + " (id, name, amount, created) VALUES (%s, %s, %s, %s)",
                (i, name(i), amount(i), created(i)),
            )
            check(cur.rowcount == 1, "insert %d: rowcount %d, want 1" % (i, cur.rowcount))


def step_read_back(conn):
    with conn.cursor() as cur:
        for i in range(1, 201, 10):
            cur.execute("SELECT name, amount, created FROM " + TABLE + " WHERE id = %s", (i,))
            rows = cur.fetchall()
            want = [(name(i), amount(i), created(i))]
            check(rows == want, "read id %d: got %r, want %r" % (i, rows, want))
            check(isinstance(rows[0][1], Decimal), "amount is %r, want a Decimal" % type(rows[0][1]))
            check(isinstance(rows[0][2], datetime.date), "created is %r, want a date" % type(rows[0][2]))


def step_update_delete(conn):
    with conn.cursor() as cur:
        for i in range(1, 51):
            cur.execute("UPDATE " + TABLE + " SET amount = amount + 1 WHERE id = %s", (i,))
            check(cur.rowcount == 1, "update %d: rowcount %d, want 1" % (i, cur.rowcount))
        for i in range(191, 201):
            cur.execute("DELETE FROM " + TABLE + " WHERE id = %s", (i,))
            check(cur.rowcount == 1, "delete %d: rowcount %d, want 1" % (i, cur.rowcount))
        cur.execute("SELECT amount FROM " + TABLE + " WHERE id = %s", (7,))
        got = cur.fetchone()[0]
        check(got == amount(7) + 1, "amount of id 7 after update: %r, want %r" % (got, amount(7) + 1))


def step_aggregate(conn):
    want_sum = sum(amount(i) for i in range(1, 191)) + 50
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), sum(amount) FROM " + TABLE)
        got = cur.fetchone()
        check(got == (190, want_sum), "count, sum: got %r, want (190, %r)" % (got, want_sum))


def step_copy(conn):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for i in range(1001, 1301):
        w.writerow([i, name(i), amount(i), created(i).isoformat()])
    buf.seek(0)
    with conn.cursor() as cur:
        cur.copy_expert("COPY " + TABLE + " (id, name, amount, created) FROM STDIN WITH (FORMAT csv)", buf)
        check(cur.rowcount == 300, "COPY FROM: rowcount %d, want 300" % cur.rowcount)
        cur.execute("SELECT name, amount, created FROM " + TABLE + " WHERE id = %s", (1250,))
        got = cur.fetchone()
        want = (name(1250), amount(1250), created(1250))
        check(got == want, "row 1250 after COPY: got %r, want %r" % (got, want))

        out = io.StringIO()
        cur.copy_expert("COPY " + TABLE + " TO STDOUT", out)
    lines = out.getvalue().splitlines()
    check(len(lines) == 490, "COPY TO: %d lines, want 490" % len(lines))
    ids = sorted(int(line.split("\t", 1)[0]) for line in lines)
    want_ids = list(range(1, 191)) + list(range(1001, 1301))
    check(ids == want_ids, "COPY TO: ids differ from 1..190, 1001..1300")
    row = next(line for line in lines if line.startswith("1010\t"))
    want_row = "1010\t%s\t%s\t%s" % (name(1010), amount(1010), created(1010).isoformat())
    check(row == want_row, "COPY TO: row %r, want %r" % (row, want_row))


def step_cancel(conn):
    timer = threading.Timer(0.5, conn.cancel)
    start = time.monotonic()
    timer.start()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_sleep(30) FROM " + TABLE + " WHERE id = 1")
        raise Failure("pg_sleep(30) finished without being canceled")
    except psycopg2.Error as e:
        check(e.pgcode == "57014", "canceled query: got %s %s, want SQLSTATE 57014" % (e.pgcode, e))
    finally:
        timer.join()
    elapsed = time.monotonic() - start
    check(elapsed < 10, "cancel took %.1fs" % elapsed)
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        check(cur.fetchone() == (1,), "SELECT 1 after cancel")


def step_error_then_success(conn):
    with conn.cursor() as cur:
        try:
            cur.execute(
                "INSERT INTO " + TABLE + " (id, name, amount, created) VALUES (%s, %s, %s, %s)",
                (5, "dup", Decimal("1"), datetime.date(2024, 1, 1)),
            )
            raise Failure("duplicate insert succeeded")
        except psycopg2.errors.UniqueViolation as e:
            check(e.pgcode == "23505", "duplicate: SQLSTATE %s" % e.pgcode)
        cur.execute("SELECT count(*) FROM " + TABLE + " WHERE id = %s", (5,))
        got = cur.fetchone()[0]
        check(got == 1, "count of id 5 after the duplicate: %d, want 1" % got)


def read_name(cur, i):
    cur.execute("SELECT name FROM " + TABLE + " WHERE id = %s", (i,))
    return cur.fetchone()[0]


def step_transactions(conn):
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            for i in (TX_A, TX_B):
                cur.execute("UPDATE " + TABLE + " SET name = %s WHERE id = %s", ("tx-committed", i))
                check(cur.rowcount == 1, "tx update %d: rowcount %d" % (i, cur.rowcount))
            got = read_name(cur, TX_A)
            check(got == "tx-committed", "inside the transaction: name %r, want the update" % got)
        conn.commit()

        with conn.cursor() as cur:
            for i in (TX_A, TX_B):
                cur.execute("UPDATE " + TABLE + " SET name = %s WHERE id = %s", ("tx-rolled-back", i))
            got = read_name(cur, TX_B)
            check(got == "tx-rolled-back", "inside the second transaction: name %r" % got)
        conn.rollback()
    finally:
        conn.autocommit = True
    with conn.cursor() as cur:
        for i in (TX_A, TX_B):
            got = read_name(cur, i)
            check(got == "tx-committed", "after commit and rollback: name of %d is %r, want 'tx-committed'" % (i, got))


def step_named_cursor(conn):
    # A server-side (named) cursor: psycopg2 DECLAREs it and FETCHes in parts of
    # itersize rows, here inside a transaction, with another query in the middle.
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM " + TABLE)
        want = cur.fetchone()[0]
    conn.autocommit = False
    try:
        with conn.cursor(name="big read") as named:
            named.itersize = 7
            named.execute("SELECT id FROM " + TABLE + " ORDER BY id")
            seen, last = 0, None
            for (i,) in named:
                check(last is None or i > last, "named cursor: id %d after %r" % (i, last))
                last = i
                seen += 1
                if seen == 10:
                    with conn.cursor() as cur:
                        read_name(cur, TX_A)
            check(seen == want, "named cursor: %d rows, want %d" % (seen, want))
        conn.commit()
    finally:
        conn.rollback()
        conn.autocommit = True


STEPS = [
    step_insert,
    step_read_back,
    step_update_delete,
    step_aggregate,
    step_copy,
    step_cancel,
    step_error_then_success,
    step_transactions,
    step_named_cursor,
]


def main():
    conn = connect()
    for step in STEPS:
        try:
            step(conn)
        except Failure as e:
            print("FAIL %s: %s" % (step.__name__, e))
            return 1
        except Exception as e:
            print("FAIL %s: %s: %s" % (step.__name__, type(e).__name__, e))
            return 1
    conn.close()
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
