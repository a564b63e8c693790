-- Errors: the proxy must fail exactly where PostgreSQL fails, with the same SQLSTATE.
-- @error: 42703
SELECT nosuchcol FROM {t};
-- @error: 42703
SELECT id FROM {t} WHERE nosuch = 1;
-- @error: 42703
SELECT id FROM {t} ORDER BY nosuch;
-- @error: 42703
SELECT id FROM {t} WHERE k = {k1} AND nosuch > 0;
-- @error: 42703
SELECT count(nosuch) FROM {t};
-- @error: 22012
SELECT qty / 0 FROM {t};
-- @error: 22012
SELECT id, 1 / (qty - qty) FROM {t} WHERE k = {k1};
-- @error: 22012
SELECT sum(qty) / 0 FROM {t};
-- @error: 22012
SELECT grp, count(*) / (count(*) - count(*)) FROM {t} GROUP BY grp;
-- @error: 42803
SELECT grp, qty FROM {t} GROUP BY grp;
-- @error: 42803
SELECT id, count(*) FROM {t};
-- @error: 42803
SELECT grp FROM {t} GROUP BY grp ORDER BY qty;
-- @error: 42803
SELECT id FROM {t} WHERE count(*) > 1;
-- @error: 42P01
SELECT * FROM no_such_table;
-- @error: 42883
SELECT sum(cat) FROM {t};
-- @error: 21000
SELECT (SELECT id FROM {t}) AS one;
-- @error: 22003
SELECT price::int FROM {t};
-- @error: 42P10
SELECT grp, count(*) FROM {t} GROUP BY 5;
-- @error: 42601
SELECT id FROM {t} WHERE;
-- @error: 42P20
SELECT id FROM {t} WHERE row_number() OVER () > 1;
-- @on: numeric
-- @error: 22P02
SELECT * FROM {t} WHERE k = 'abc';
-- @on: uuid
-- @error: 22P02
SELECT * FROM {t} WHERE k = 'not-a-uuid';
-- @on: text, uuid
-- @error: 42804
SELECT k FROM {t} UNION SELECT 1;
-- @error: 2201W
SELECT id FROM {t} ORDER BY id LIMIT -1;
-- @error: 42702
SELECT id FROM {t} a, {t} b;
-- @error: 22P02
SELECT cat::int FROM {t} WHERE cat = 'alpha';
