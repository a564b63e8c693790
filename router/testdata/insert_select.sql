-- INSERT ... SELECT into a distributed table: the coordinator runs the source query
-- (over gathered copies), and the rows go to their shards.
INSERT INTO orders (customer_id, amount) SELECT id, 0 FROM customers

INSERT INTO reviews SELECT name, region, 'imported' FROM customers WHERE region = 1

-- From a coordinator table.
INSERT INTO customers (id, name) SELECT id, label FROM regions

INSERT INTO app.events (k, n) SELECT 'x' || g, g FROM generate_series(1, 10) g
