-- Gathered multi-table statements whose WHERE filters one distributed table: the filter
-- also narrows that table's copy (and prunes its shards), and must change nothing else;
-- outer joins, self joins and WITH keep whole copies.
SELECT t.id, l.label FROM {t} t JOIN lookup l ON l.grp = t.grp WHERE t.qty > 140 AND l.label <> 'g3';
SELECT t.id, l.label FROM {t} t, lookup l WHERE l.grp = t.grp AND t.k IN ({k1}, {k2}, {kmiss});
SELECT t.id, l.label FROM {t} t, lookup l WHERE t.k = {k3} AND l.grp = t.grp;
SELECT t.id, l.grp FROM lookup l JOIN {t} t USING (grp) WHERE t.qty BETWEEN 120 AND 130 AND l.grp > 2 AND t.flag;
SELECT t.id, l.grp FROM lookup l JOIN {t} t ON t.grp = l.grp WHERE (t.qty < 105 OR t.cat = 'b') AND t.note IS NOT NULL;
SELECT t.id FROM {t} t CROSS JOIN lookup l WHERE t.amount::int % 97 = 1 AND l.grp = 1;
SELECT l.label, count(*), sum(t.qty) FROM {t} t JOIN lookup l ON l.grp = t.grp WHERE t.created >= DATE '2024-02-01' GROUP BY l.label;
SELECT t.id, l.label FROM {t} t JOIN lookup l ON l.grp = t.grp WHERE t.qty > 140 ORDER BY t.id LIMIT 5;
SELECT t.id, l.label FROM {t} t JOIN lookup l ON l.grp = t.grp WHERE t.k = {kmiss};
SELECT t.id, l.label FROM {t} t JOIN lookup l ON l.grp = t.grp WHERE t.k IS NULL;
-- Outer joins: the preserved side takes any filter; the nullable side only filters that
-- reject NULL-extended rows (not IS NULL, IS NOT TRUE, IS DISTINCT FROM, OR with those).
SELECT l.grp, t.id FROM lookup l LEFT JOIN {t} t ON t.grp = l.grp WHERE t.id IS NULL;
SELECT l.grp, t.id FROM lookup l LEFT JOIN {t} t ON t.grp = l.grp WHERE t.qty IS NULL OR t.qty > 148;
SELECT l.grp, count(t.id) FROM {t} t RIGHT JOIN lookup l ON l.grp = t.grp WHERE t.flag IS NOT TRUE GROUP BY l.grp;
SELECT l.grp, t.id FROM lookup l LEFT JOIN {t} t ON t.grp = l.grp WHERE t.qty > 147;
SELECT l.grp, t.id FROM lookup l LEFT JOIN {t} t ON t.grp = l.grp AND t.qty > 140 WHERE t.cat = 'a' OR t.cat = 'b';
SELECT t.id, l.label FROM {t} t LEFT JOIN lookup l ON l.grp = t.grp WHERE t.qty > 146 AND l.label IS NULL;
SELECT t.id, l.label FROM {t} t LEFT JOIN lookup l ON l.grp = t.grp WHERE t.note IS NULL AND t.qty < 103;
SELECT l.grp, t.id FROM {t} t FULL JOIN lookup l ON l.grp = t.grp WHERE t.qty BETWEEN 100 AND 102;
SELECT l.grp, t.id FROM {t} t FULL JOIN lookup l ON l.grp = t.grp WHERE t.qty IS DISTINCT FROM 100 AND l.grp = 3;
SELECT l.grp, t.id FROM lookup l LEFT JOIN {t} t ON t.grp = l.grp WHERE NOT (t.qty > 101);
SELECT l.grp, t.id FROM lookup l LEFT JOIN {t} t ON t.grp = l.grp WHERE NOT (t.qty IS NOT NULL);
SELECT l.grp, t.id FROM lookup l LEFT JOIN {t} t ON t.grp = l.grp WHERE t.flag IS TRUE AND t.qty < 102;
SELECT l.grp, t.id FROM lookup l LEFT JOIN {t} t ON t.grp = l.grp WHERE t.flag IS NOT FALSE AND l.grp > 7;
SELECT l.grp, t.id, o.id FROM lookup l LEFT JOIN d_int_8_2 t ON t.grp = l.grp LEFT JOIN d_int_8_2_orders o ON o.id = t.id WHERE o.amount > 990;
-- @on: int
SELECT t.id, o.id FROM d_int_8_2 t LEFT JOIN d_other_5_1 o ON o.k = t.k WHERE t.qty > 145 AND o.tag IS NULL;
-- Not narrowed: the table is read twice; a WITH clause.
SELECT a.id, b.id FROM {t} a JOIN {t} b ON b.k = a.k AND b.id <> a.id WHERE a.qty > 145 AND b.qty < 110;
WITH x AS (SELECT grp FROM lookup WHERE grp < 5) SELECT t.id FROM {t} t JOIN x ON x.grp = t.grp WHERE t.qty > 145;
-- Unqualified and correlated references stay on the coordinator only.
SELECT t.id, l.label FROM {t} t JOIN lookup l ON l.grp = t.grp WHERE qty > 146 AND label IS NOT NULL;
SELECT t.id FROM {t} t JOIN lookup l ON l.grp = t.grp WHERE t.qty > (SELECT avg(qty) FROM {t}) + 45;
-- @args: 140
SELECT t.id, l.label FROM {t} t JOIN lookup l ON l.grp = t.grp WHERE t.qty > $1;
-- @args: {k1} | 2
SELECT t.id, l.label FROM {t} t JOIN lookup l USING (grp) WHERE t.k = $1 AND l.grp >= $2;
-- Two distributed tables, each narrowed by its own filter.
-- @on: int
SELECT t.id, x.id FROM d_int_8_2 t JOIN d_other_5_1 x ON x.k = t.k WHERE t.qty > 130 AND x.tag = 'tag3';
-- @on: int
SELECT o.id, x.tag FROM d_int_8_2_orders o, d_other_5_1 x WHERE o.id = x.id AND o.status = 'paid' AND x.val > 50.00 AND o.amount BETWEEN 100 AND 900;
