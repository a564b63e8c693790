-- INSERT ... SELECT into a distributed table: the coordinator runs the source query
-- (over gathered copies), and the rows go to their shards.
INSERT INTO orders (customer_id, amount) SELECT id, 0 FROM customers

INSERT INTO reviews SELECT name, region, 'imported' FROM customers WHERE region = 1

-- From a coordinator table.
INSERT INTO customers (id, name) SELECT id, label FROM regions

INSERT INTO app.events (k, n) SELECT 'x' || g, g FROM generate_series(1, 10) g

WITH s AS (SELECT id FROM customers) INSERT INTO orders (customer_id) SELECT id FROM s RETURNING id

INSERT INTO items (name) SELECT name FROM customers

-- Refused: a value for a GENERATED ALWAYS identity column.
INSERT INTO items SELECT id, name FROM customers

INSERT INTO items OVERRIDING USER VALUE SELECT id, name FROM customers

INSERT INTO customers SELECT * FROM customers ON CONFLICT (id) DO UPDATE SET name = excluded.name || now()::text

-- Refused: ON CONFLICT changing the partition key.
INSERT INTO customers (id, name) SELECT 1, 'a' ON CONFLICT (id) DO UPDATE SET id = 5

INSERT INTO reviews SELECT * FROM reviews ORDER BY rating LIMIT 3
