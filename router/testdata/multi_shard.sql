-- No filter on the key: every shard, rows concatenated.
SELECT * FROM customers

-- A filter the router cannot use for pruning.
SELECT * FROM reviews WHERE customer_name LIKE 'a%'

SELECT * FROM customers WHERE id = 1 OR region = 2

-- LIMIT without ORDER BY: every shard sends at most the limit.
SELECT * FROM orders LIMIT 10 OFFSET 5

-- Aggregates without GROUP BY: partial aggregates per shard, final on the coordinator.
SELECT count(*), avg(amount), max(placed) FROM orders WHERE status = 'paid'

SELECT sum(rating) FROM reviews HAVING count(*) > 1

-- Update and delete on every shard.
UPDATE customers SET region = region + 1

DELETE FROM app.events WHERE at < '2020-01-01'

-- Co-located join without a key filter: shard by shard, then aggregate.
SELECT count(*) FROM customers c JOIN orders o ON o.customer_id = c.id
