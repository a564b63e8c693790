-- Shard pruning: equality on the partition key, with literals.
SELECT * FROM {t} WHERE k = {k1};
SELECT id, grp, amount FROM {t} WHERE k = {k2};
SELECT count(*) FROM {t} WHERE k = {k1};
SELECT * FROM {t} WHERE k = {kmiss};
SELECT * FROM {t} WHERE k IN ({k1}, {k2}, {k3});
SELECT id FROM {t} WHERE k IN ({k1}, {kmiss});
SELECT * FROM {t} WHERE k = ANY(ARRAY[{k1}, {k2}]::{ktype}[]);
SELECT * FROM {t} WHERE k = {k1} OR k = {k4};
SELECT * FROM {t} WHERE k IS NULL;
SELECT count(*) FROM {t} WHERE k IS NULL;
SELECT * FROM {t} WHERE k = {k1} AND grp IS NOT NULL;
SELECT * FROM {t} WHERE (k = {k1} OR k = {k2}) AND qty > 0;
SELECT * FROM {t} WHERE k = {k1} AND k = {k2};
SELECT * FROM {t} WHERE {k3} = k;
SELECT id, k FROM {t} WHERE k IN ({k1}) OR k = ANY(ARRAY[{k2}, {k3}]::{ktype}[]);
SELECT * FROM {t} WHERE k = {k1}::{ktype};
SELECT sum(qty), max(ts) FROM {t} WHERE k IN ({k1}, {k2}, {k3}, {k4});
-- @on: text
SELECT * FROM {t} WHERE k = {k1}::varchar;
-- @on: text
SELECT * FROM {t} WHERE k = CAST({k2} AS varchar(20));
-- @on: text
SELECT * FROM {t} WHERE k IN ('O''Brien', '', 'with space');
-- @on: text
SELECT id, k FROM {t} WHERE k = 'Ärger' OR k = 'ключ';
-- @on: text
SELECT * FROM {t} WHERE k = ANY('{key0001,key0002,KEY0001}'::text[]);
-- @on: numeric
SELECT * FROM {t} WHERE k = ANY('{1,2,3,4,5}');
-- @on: numeric
SELECT id, k FROM {t} WHERE k IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
-- @on: bigint
SELECT * FROM {t} WHERE k = 9223372036854775807 OR k = -9223372036854775808;
-- @on: numeric
SELECT * FROM {t} WHERE k = '7';
-- @on: uuid
SELECT * FROM {t} WHERE k = upper({k1})::uuid;
-- @on: numeric
SELECT * FROM {t} WHERE k = 2 + 3;
-- @on: numeric
SELECT * FROM {t} WHERE k BETWEEN 10 AND 20;
SELECT k, id, qty FROM {t} WHERE k = {k4} AND qty > -100;
SELECT min(id), max(id) FROM {t} WHERE k = {k2} OR k = {k3} OR k = {kmiss};
SELECT * FROM {t} WHERE k IN ({kmiss});
SELECT * FROM {t} WHERE k = ANY(ARRAY[{kmiss}]::{ktype}[]);
SELECT count(*) FROM {t} WHERE k IS NOT NULL;
SELECT * FROM {t} WHERE k IS NULL OR k = {k1};
SELECT * FROM {t} WHERE NOT (k <> {k1});
SELECT id FROM {t} WHERE k = {k1} OR grp = 3;
SELECT * FROM {t} WHERE k IN ({k1}, {k2}) AND k IN ({k2}, {k3});
