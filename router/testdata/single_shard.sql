-- A constant bigint key: one shard, chosen with PostgreSQL's hashint8.
SELECT name FROM customers WHERE id = 42

-- The key on the right, a negative constant, an alias.
SELECT c.name FROM customers c WHERE -7 = c.id AND c.region > 3

-- A text key.
SELECT * FROM reviews WHERE customer_name = 'alice'

-- varchar key in another schema of the search path; 8 shards, 3 placements.
SELECT n FROM app.events WHERE k = 'login'

-- uuid key.
SELECT user_id FROM sessions WHERE sid = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'

-- A bind parameter: the shard is chosen at execution.
SELECT name FROM customers WHERE id = $1

-- IN list and OR of keys: the shards of each value.
SELECT * FROM customers WHERE id IN (1, 2, 3)

SELECT * FROM reviews WHERE customer_name = 'a' OR customer_name = 'b'

-- A contradiction: no shard.
SELECT * FROM customers WHERE id = NULL

-- IS NULL keys hash to 0.
SELECT * FROM orders WHERE customer_id IS NULL

-- A single-shard UPDATE and DELETE.
UPDATE customers SET name = 'x' WHERE id = 5

DELETE FROM reviews WHERE customer_name = 'bob' AND rating < 2

-- Volatile functions are evaluated once on the coordinator.
UPDATE orders SET placed = now() WHERE customer_id = 9

-- Co-located join on the partition keys, one customer.
SELECT c.name, o.amount FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.id = 10

-- AND of two different keys: only a shard holding both (here none).
SELECT * FROM customers WHERE id = 1 AND id = 2

-- AND of a key list and a key: the intersection.
SELECT * FROM customers WHERE id IN (1, 2, 3) AND id = 2

-- An OR branch without a key condition keeps every shard.
SELECT * FROM customers WHERE (id = 1 AND region = 1) OR (region = 2 AND name = 'x')
