-- ORDER BY with LIMIT: every shard sorts and limits, the proxy merges the streams.
SELECT id, name FROM customers ORDER BY id LIMIT 5

SELECT customer_name, rating r FROM reviews WHERE rating > 2 ORDER BY r DESC NULLS LAST, 1 LIMIT 10 OFFSET $1

-- ORDER BY without LIMIT.
SELECT * FROM app.events ORDER BY at

-- The job-queue pattern.
SELECT id FROM orders WHERE status = 'new' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED

SELECT id FROM customers ORDER BY id FETCH FIRST 3 ROWS ONLY

SELECT id FROM customers ORDER BY id DESC LIMIT 2 FOR SHARE SKIP LOCKED

SELECT name, row_number() OVER w FROM customers WINDOW w AS (ORDER BY id) ORDER BY id LIMIT 4
