-- Bound parameters ($1, $2): sent as text in the extended protocol, interpolated by pgx in
-- the simple protocol.
-- @args: {k1}
SELECT * FROM {t} WHERE k = $1;
-- @args: {k1} | {k2}
SELECT id FROM {t} WHERE k IN ($1, $2);
-- @args: {k3} | {k4}
SELECT id FROM {t} WHERE k = $1 OR k = $2;
-- @args: {kmiss}
SELECT count(*) FROM {t} WHERE k = $1;
-- @args: {{k1},{k3}}
SELECT id FROM {t} WHERE k = ANY($1);
-- @args: NULL
SELECT * FROM {t} WHERE k = $1;
-- @args: {k1}
SELECT * FROM {t} WHERE k = $1::{ktype};
-- @args: {k2} | 2
SELECT id FROM {t} WHERE k = $1 AND grp = $2;
-- @args: {k1} | 5
SELECT id, qty + $2 FROM {t} WHERE k = $1;
-- @args: {k4}
SELECT count(*) FROM {t} WHERE k <> $1;
-- @args: 3
SELECT id FROM {t} WHERE grp = $1;
-- @args: 3
SELECT count(*), sum(qty), avg(amount) FROM {t} WHERE grp = $1;
-- @args: 10 | 5
SELECT id FROM {t} ORDER BY id LIMIT $1 OFFSET $2;
-- @args: 100
SELECT grp, count(*) FROM {t} WHERE qty < $1 GROUP BY grp;
-- @args: alpha
SELECT count(*) FROM {t} WHERE cat = $1;
-- @args: 2024-01-01
SELECT count(*) FROM {t} WHERE created < $1;
-- @args: 2023-06-01 00:00:00+00
SELECT id FROM {t} WHERE ts < $1;
-- @args: 100.50
SELECT id FROM {t} WHERE amount > $1;
-- @args: true
SELECT count(*) FROM {t} WHERE flag = $1;
-- @args: 7
SELECT $1::int + count(*) FROM {t};
-- @args: a%
SELECT id FROM {t} WHERE note LIKE $1;
-- @on: int
-- @args: {k2}
SELECT o.id FROM d_int_8_2 t JOIN d_int_8_2_orders o ON o.k = t.k WHERE t.k = $1;
-- @args: 3
SELECT grp, sum(qty) FROM {t} GROUP BY grp HAVING count(*) > $1;
-- @args: 5 | beta
SELECT id, cat FROM {t} WHERE grp = $1 AND cat = $2 ORDER BY id;
-- @args: {k1} | 140
SELECT id FROM {t} WHERE k = $1 OR qty > $2;
-- @args: label
SELECT $1::text AS label, count(*) FROM {t};
-- @args: 1000
SELECT grp, count(*) + $1 FROM {t} GROUP BY grp;
-- @args: 7 | {k1}
SELECT $1::int AS p, id FROM {t} WHERE k = $2;
-- @args: 4
SELECT id FROM {t} ORDER BY id LIMIT $1;
-- @args: 100
SELECT count(*) FILTER (WHERE qty > $1) FROM {t};
-- @args: 3 | x
SELECT id, $2::text FROM {t} WHERE grp = $1 ORDER BY id LIMIT 3;
-- @args: 100
SELECT sum(qty) FROM {t} WHERE qty < $1 HAVING count(*) > 0;
