-- Query shapes that rewriting by keyword scanning got wrong (issue 9, defect 11): each
-- clause, conjunct and output column must be located from the parse tree.

-- ORDER BY a bare name resolves to an output column first (also its implicit name, as
-- for val::int), then to an input column; expressions use input columns.
SELECT id, qty::text FROM {t} ORDER BY qty, id LIMIT 10;
SELECT id, qty::text FROM {t} ORDER BY qty DESC, id LIMIT 10 OFFSET 3;
SELECT id, price::text FROM {t} ORDER BY price, id LIMIT 10;
SELECT id, grp::text FROM {t} ORDER BY grp NULLS FIRST, id LIMIT 10;
SELECT id, (qty * -1)::int FROM {t} ORDER BY int4, id LIMIT 10;
SELECT id, coalesce(grp, -1) FROM {t} ORDER BY coalesce, id LIMIT 10;
SELECT id, -qty AS qty FROM {t} ORDER BY qty, id LIMIT 10;
SELECT id, qty::text FROM {t} ORDER BY qty + 0, id LIMIT 10;
SELECT id, qty::text AS q FROM {t} ORDER BY qty, id LIMIT 10;
SELECT id, qty::text FROM {t} ORDER BY 2, id LIMIT 10;
SELECT id, qty::text FROM {t} ORDER BY qty, id;
-- @error: 42702
SELECT id AS qty, qty FROM {t} ORDER BY qty LIMIT 10;
SELECT id, qty AS last, grp AS first FROM {t} ORDER BY last, first NULLS FIRST, id LIMIT 10;
SELECT qty::text, id FROM {t} WHERE grp = 3 ORDER BY qty, id;
SELECT id, created::text FROM {t} ORDER BY created DESC, id LIMIT 10;
SELECT id, last, first FROM (SELECT id, qty AS last, grp AS first FROM {t}) s ORDER BY last, first, id LIMIT 10;
-- @error: 42702
SELECT id, qty::text, qty FROM {t} ORDER BY qty, id;
-- @error: 42702
SELECT *, qty::text FROM {t} ORDER BY qty, id;
SELECT *, qty FROM {t} ORDER BY qty, id LIMIT 10;

-- IS [NOT] DISTINCT FROM and other FROMs in the select list.
SELECT id, grp IS DISTINCT FROM qty FROM {t} ORDER BY id LIMIT 20;
SELECT id, grp IS NOT DISTINCT FROM 3 AS three FROM {t} ORDER BY id LIMIT 20;
SELECT count(*) FILTER (WHERE grp IS NOT DISTINCT FROM 3), sum(qty) FILTER (WHERE grp IS DISTINCT FROM NULL) FROM {t};
SELECT grp, grp IS DISTINCT FROM NULL, count(*) FROM {t} GROUP BY grp ORDER BY grp;
SELECT DISTINCT grp IS DISTINCT FROM 2 FROM {t};
SELECT id, extract(year FROM created), substring(cat FROM 1 FOR 2) FROM {t} ORDER BY id LIMIT 20;
SELECT max(extract(month FROM created)), min(trim(BOTH FROM note)) FROM {t};

-- Keywords as unquoted aliases.
SELECT id AS limit, qty AS from, grp AS for FROM {t} ORDER BY id LIMIT 5;
SELECT id AS limit, qty AS from, grp AS for FROM {t} WHERE k = {k1} ORDER BY id;
SELECT count(*) AS from, sum(qty) AS limit, max(grp) AS offset FROM {t};
SELECT grp AS order, count(*) AS where FROM {t} GROUP BY grp ORDER BY 1;
SELECT DISTINCT grp AS offset FROM {t} ORDER BY 1;
SELECT id AS fetch, qty AS having FROM {t} ORDER BY id DESC LIMIT 7;
SELECT id AS window, qty AS group FROM {t} ORDER BY qty, id LIMIT 7;
SELECT id, row_number() OVER (ORDER BY id) AS from FROM {t} ORDER BY id LIMIT 5;
SELECT id AS select, qty AS union FROM {t} WHERE grp = 1 ORDER BY 1;
SELECT min(id) AS for FROM {t} HAVING count(*) > 0;

-- Joined WHERE clauses: conjuncts are the parse tree's, not the text split at AND.
-- @on: int
SELECT count(*) FROM {t} a JOIN d_other_5_1 o ON a.id = o.id WHERE (a.grp > 2 AND o.val > 10) AND CASE WHEN a.flag AND o.tag = 'tag1' THEN true ELSE a.qty > 0 END;
-- @on: int
SELECT a.id, o.id FROM {t} a JOIN d_other_5_1 o ON a.id = o.id WHERE (a.qty > 0 AND (a.grp < 5 OR a.grp IS NULL)) AND o.val < 5000 ORDER BY a.id LIMIT 20;
-- @on: int
SELECT count(*) FROM {t} a JOIN d_other_5_1 o ON a.id = o.id WHERE a.qty BETWEEN 1 AND 50 AND CASE WHEN a.grp BETWEEN 2 AND 4 AND a.flag THEN o.val > 100 ELSE o.tag <> 'tag3' END AND a.cat <> 'beta';
-- @on: int
SELECT count(*) FROM {t} a JOIN d_other_5_1 o ON a.id = o.id WHERE ((a.qty > 10)) AND ((o.val > 10 AND a.grp > 1) AND (a.flag OR o.tag = 'tag2'));
-- @on: int
SELECT count(*) FROM {t} a LEFT JOIN d_other_5_1 o ON a.id = o.id WHERE (a.qty > 10 AND o.val > 10) AND CASE WHEN a.qty > 50 AND a.grp > 3 THEN true END;
-- @on: int
SELECT count(*) FROM {t} a, d_other_5_1 o WHERE a.id = o.id AND NOT (a.grp = 1 AND a.qty < 0) AND (o.val IS NOT NULL AND CASE o.tag WHEN 'tag1' THEN a.qty > 0 ELSE true END);

-- Qualified names, schema-qualified too.
SELECT public.{t}.grp, count(*) FROM public.{t} GROUP BY public.{t}.grp ORDER BY 1;
SELECT public.{t}.id, public.{t}.qty FROM public.{t} ORDER BY public.{t}.qty, public.{t}.id LIMIT 10;
SELECT public.{t}.id FROM public.{t} WHERE public.{t}.k = {k1} ORDER BY 1;
SELECT count(public.{t}.grp), sum(public.{t}.qty) FROM public.{t} WHERE public.{t}.qty > 0;
SELECT {t}.grp, max({t}.qty) FROM public.{t} GROUP BY {t}.grp ORDER BY {t}.grp;
SELECT DISTINCT public.{t}.cat FROM public.{t} ORDER BY 1;
SELECT public.{t}.id, rank() OVER (ORDER BY public.{t}.qty, public.{t}.id) FROM public.{t} ORDER BY 1 LIMIT 10;
-- @error: 42P01
SELECT public.{t}.id FROM public.{t} x;

-- LIMIT and OFFSET are rounded to bigint, as PostgreSQL coerces them.
SELECT id FROM {t} ORDER BY id LIMIT 10.0;
SELECT id FROM {t} ORDER BY id LIMIT 2.5;
SELECT id FROM {t} ORDER BY id LIMIT 2.4 OFFSET 1997.4;
SELECT id FROM {t} ORDER BY id OFFSET 1996.5;
SELECT id FROM {t} ORDER BY id LIMIT 1e1;
SELECT count(*) FROM (SELECT id FROM {t} ORDER BY id LIMIT 3.7) s;
SELECT grp, count(*) FROM {t} GROUP BY grp ORDER BY grp LIMIT 3.5;
-- @error: 22P02
SELECT id FROM {t} ORDER BY id LIMIT '2.5';

-- Aggregates in DISTINCT ON.
SELECT DISTINCT ON (count(*)) grp, count(*) FROM {t} GROUP BY grp ORDER BY count(*), grp;
SELECT DISTINCT ON (max(qty) > 140) grp, max(qty) FROM {t} GROUP BY grp ORDER BY max(qty) > 140, grp;

-- FOR UPDATE/SHARE with ORDER BY and LIMIT (the job-queue pattern).
SELECT id FROM {t} ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED;
SELECT id, qty FROM {t} WHERE qty > 100 ORDER BY qty DESC, id LIMIT 3 FOR UPDATE SKIP LOCKED;
SELECT id, qty FROM {t} WHERE qty > 140 ORDER BY id FOR SHARE;
SELECT id FROM {t} WHERE grp = 2 ORDER BY id LIMIT 2 OFFSET 1 FOR NO KEY UPDATE SKIP LOCKED;
SELECT id FROM {t} ORDER BY id FOR KEY SHARE SKIP LOCKED LIMIT 3;

-- Every numeric type in every combinable aggregate (generated: one line per type, plain,
-- grouped, and with FILTER/DISTINCT).
SELECT count(qty::int2), sum(qty::int2), min(qty::int2), max(qty::int2), avg(qty::int2) FROM {t};
SELECT grp, count(qty::int2), sum(qty::int2), min(qty::int2), max(qty::int2), avg(qty::int2) FROM {t} GROUP BY grp ORDER BY grp;
SELECT avg(qty::int2) FILTER (WHERE flag), sum(DISTINCT qty::int2) FROM {t};
SELECT count(qty), sum(qty), min(qty), max(qty), avg(qty) FROM {t};
SELECT grp, count(qty), sum(qty), min(qty), max(qty), avg(qty) FROM {t} GROUP BY grp ORDER BY grp;
SELECT avg(qty) FILTER (WHERE flag), sum(DISTINCT qty) FROM {t};
SELECT count(price), sum(price), min(price), max(price), avg(price) FROM {t};
SELECT grp, count(price), sum(price), min(price), max(price), avg(price) FROM {t} GROUP BY grp ORDER BY grp;
SELECT avg(price) FILTER (WHERE flag), sum(DISTINCT price) FROM {t};
SELECT count(qty::int8 * 3), sum(qty::int8 * 3), min(qty::int8 * 3), max(qty::int8 * 3), avg(qty::int8 * 3) FROM {t};
SELECT grp, count(qty::int8 * 3), sum(qty::int8 * 3), min(qty::int8 * 3), max(qty::int8 * 3), avg(qty::int8 * 3) FROM {t} GROUP BY grp ORDER BY grp;
SELECT avg(qty::int8 * 3) FILTER (WHERE flag), sum(DISTINCT qty::int8 * 3) FROM {t};
SELECT count(amount), sum(amount), min(amount), max(amount), avg(amount) FROM {t};
SELECT grp, count(amount), sum(amount), min(amount), max(amount), avg(amount) FROM {t} GROUP BY grp ORDER BY grp;
SELECT avg(amount) FILTER (WHERE flag), sum(DISTINCT amount) FROM {t};
SELECT count((amount * 2)::numeric(14,2)), sum((amount * 2)::numeric(14,2)), min((amount * 2)::numeric(14,2)), max((amount * 2)::numeric(14,2)), avg((amount * 2)::numeric(14,2)) FROM {t};
SELECT grp, count((amount * 2)::numeric(14,2)), sum((amount * 2)::numeric(14,2)), min((amount * 2)::numeric(14,2)), max((amount * 2)::numeric(14,2)), avg((amount * 2)::numeric(14,2)) FROM {t} GROUP BY grp ORDER BY grp;
SELECT avg((amount * 2)::numeric(14,2)) FILTER (WHERE flag), sum(DISTINCT (amount * 2)::numeric(14,2)) FROM {t};
SELECT count(qty::real), sum(qty::real), min(qty::real), max(qty::real), avg(qty::real) FROM {t};
SELECT grp, count(qty::real), sum(qty::real), min(qty::real), max(qty::real), avg(qty::real) FROM {t} GROUP BY grp ORDER BY grp;
SELECT avg(qty::real) FILTER (WHERE flag), sum(DISTINCT qty::real) FROM {t};
SELECT count(CAST(grp AS float4)), sum(CAST(grp AS float4)), min(CAST(grp AS float4)), max(CAST(grp AS float4)), avg(CAST(grp AS float4)) FROM {t};
SELECT grp, count(CAST(grp AS float4)), sum(CAST(grp AS float4)), min(CAST(grp AS float4)), max(CAST(grp AS float4)), avg(CAST(grp AS float4)) FROM {t} GROUP BY grp ORDER BY grp;
SELECT avg(CAST(grp AS float4)) FILTER (WHERE flag), sum(DISTINCT CAST(grp AS float4)) FROM {t};
SELECT count(qty::float8), sum(qty::float8), min(qty::float8), max(qty::float8), avg(qty::float8) FROM {t};
SELECT grp, count(qty::float8), sum(qty::float8), min(qty::float8), max(qty::float8), avg(qty::float8) FROM {t} GROUP BY grp ORDER BY grp;
SELECT avg(qty::float8) FILTER (WHERE flag), sum(DISTINCT qty::float8) FROM {t};
SELECT count((qty + 1)::double precision), sum((qty + 1)::double precision), min((qty + 1)::double precision), max((qty + 1)::double precision), avg((qty + 1)::double precision) FROM {t};
SELECT grp, count((qty + 1)::double precision), sum((qty + 1)::double precision), min((qty + 1)::double precision), max((qty + 1)::double precision), avg((qty + 1)::double precision) FROM {t} GROUP BY grp ORDER BY grp;
SELECT avg((qty + 1)::double precision) FILTER (WHERE flag), sum(DISTINCT (qty + 1)::double precision) FROM {t};
SELECT count((qty * 100)::money), sum((qty * 100)::money), min((qty * 100)::money), max((qty * 100)::money) FROM {t};
SELECT grp, count((qty * 100)::money), sum((qty * 100)::money), min((qty * 100)::money), max((qty * 100)::money) FROM {t} GROUP BY grp ORDER BY grp;
SELECT count(qty * interval '1 hour'), sum(qty * interval '1 hour'), min(qty * interval '1 hour'), max(qty * interval '1 hour'), avg(qty * interval '1 hour') FROM {t};
SELECT grp, count(qty * interval '1 hour'), sum(qty * interval '1 hour'), min(qty * interval '1 hour'), max(qty * interval '1 hour'), avg(qty * interval '1 hour') FROM {t} GROUP BY grp ORDER BY grp;
SELECT avg(qty * interval '1 hour') FILTER (WHERE flag), sum(DISTINCT qty * interval '1 hour') FROM {t};
-- float4 averages accumulate in float8 (values whose float4 sums would round).
SELECT avg((qty * 1000003)::real) FROM {t};
SELECT avg(CAST(qty * 1000003 AS float4)), avg((qty * 1000003)::float4) FILTER (WHERE grp > 3) FROM {t};
SELECT grp, avg((qty * 1000003)::real) FROM {t} GROUP BY grp ORDER BY grp;
SELECT avg(qty * 1000003::real) FROM {t};
SELECT avg(float4 '1000003' * qty) FROM {t};
-- Types the planner cannot tell: checked at run time (or gathered, when grouped).
SELECT avg(greatest((qty * 1000003)::real, 0)), avg(nullif((qty * 1000003)::real, 0)) FROM {t};
SELECT avg(abs((qty * 1000003)::real)), count(*) FROM {t} WHERE grp > 2;
SELECT grp, avg(nullif((qty * 1000003)::real, 0)) FROM {t} GROUP BY grp ORDER BY grp;
SELECT avg(greatest(qty, 0)), avg(nullif(amount, 0)), avg(coalesce(price, 0)) FROM {t};
-- FOR UPDATE OF names a FROM item (an alias), not a table to read.
SELECT id FROM {t} WHERE qty > 140 ORDER BY id LIMIT 2 FOR UPDATE OF {t} SKIP LOCKED;
SELECT x.id FROM {t} x WHERE x.qty > 140 ORDER BY x.id FOR SHARE OF x;
SELECT id FROM {t} WHERE k = {k1} FOR UPDATE OF {t};
-- A SELECT in parentheses, with clauses inside or after them (the parser folds the
-- outer ORDER BY and LIMIT into the SELECT): the shards got unbalanced text (42601).
(SELECT count(*) FROM {t});
(SELECT id FROM {t}) ORDER BY id DESC LIMIT 1;
((SELECT id FROM {t}) ORDER BY id DESC LIMIT 2);
(SELECT id FROM {t} ORDER BY id) LIMIT 1;
(SELECT id, qty FROM {t} WHERE k = {k1});
(SELECT grp, count(*) FROM {t} GROUP BY grp) ORDER BY grp;
