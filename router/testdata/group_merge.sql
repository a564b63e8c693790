-- GROUP BY: per-shard partial groups, gathered and grouped again on the coordinator.
SELECT region, count(*) FROM customers GROUP BY region

SELECT status, sum(amount) s FROM orders WHERE amount > $1 GROUP BY 1 HAVING max(placed) > now() ORDER BY s DESC LIMIT 3

-- GROUP BY the partition key: groups do not span shards.
SELECT customer_id, count(*) FROM orders GROUP BY customer_id

-- An aggregate without a partial form gathers the rows.
SELECT string_agg(name, ',') FROM customers

SELECT count(DISTINCT region) FROM customers

-- SELECT DISTINCT of plain columns groups by them.
SELECT DISTINCT region FROM customers

SELECT DISTINCT ON (region) region, name FROM customers

SELECT region, count(DISTINCT name) FROM customers GROUP BY ROLLUP (region)

SELECT c.region, max(c.name) FROM customers c WHERE c.id > 3 GROUP BY c.region HAVING count(*) > $1

SELECT region, sum(id) FILTER (WHERE name <> '') FROM customers GROUP BY region

-- A column grouped by twice, and aggregated DISTINCT: grouped by once on the shards.
SELECT region, count(DISTINCT region) FROM customers GROUP BY region, 1
