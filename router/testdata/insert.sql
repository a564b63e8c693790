-- One row; the serial default is evaluated on the coordinator.
INSERT INTO orders (customer_id, amount) VALUES (7, 10.5)

-- Several rows to different shards; RETURNING.
INSERT INTO customers VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3) RETURNING id

-- A parameter key and a computed key.
INSERT INTO reviews (customer_name, rating) VALUES ($1, 5), (upper('x'), 4)

-- A volatile value, evaluated once so every placement gets the same.
INSERT INTO app.events VALUES ('k1', (random() * 10)::bigint, now())

-- ON CONFLICT on a table with a unique index.
INSERT INTO customers (id, name) VALUES (4, 'd') ON CONFLICT (id) DO UPDATE SET name = excluded.name

-- A char(4) key: the column's modifier applies before hashing (coordinator).
INSERT INTO accounts VALUES ('ab', 1)

-- uuid key.
INSERT INTO sessions VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 1)

-- Refused: NULL key.
INSERT INTO customers VALUES (NULL, 'n', 1)

-- DEFAULT VALUES leaves the key NULL.
INSERT INTO reviews DEFAULT VALUES
