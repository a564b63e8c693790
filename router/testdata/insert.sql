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

-- A char(4) key: the column's modifier applies before hashing. A string that fits is
-- hashed natively (char(4) pads it, and the hash ignores trailing spaces).
INSERT INTO accounts VALUES ('ab', 1)

-- Too long for char(4): the coordinator assigns it (trailing spaces are cut, anything
-- else is an error), then hashes.
INSERT INTO accounts VALUES ('abcdef', 1)

-- A number into char(4): the coordinator evaluates it, assigned to the column, with its hash.
INSERT INTO accounts VALUES (12, 1)

-- uuid key.
INSERT INTO sessions VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 1)

-- Refused: NULL key.
INSERT INTO customers VALUES (NULL, 'n', 1)

-- DEFAULT VALUES leaves the key NULL.
INSERT INTO reviews DEFAULT VALUES

-- An identity key: evaluated on the coordinator, hashed there.
INSERT INTO items (name) VALUES ('a'), ('b')

-- Refused: a value for a GENERATED ALWAYS identity column.
INSERT INTO items VALUES (5, 'x')

INSERT INTO items OVERRIDING SYSTEM VALUE VALUES (5, 'x')

INSERT INTO items OVERRIDING USER VALUE VALUES (5, 'x')

-- Refused: the key left to a column without a default.
INSERT INTO orders (amount) VALUES (1)

INSERT INTO orders (customer_id, id, amount) VALUES (3, DEFAULT, 2), (4, 10, DEFAULT) RETURNING *

-- Refused: ON CONFLICT changing the partition key.
INSERT INTO customers VALUES (1, 'a', 1) ON CONFLICT (id) DO UPDATE SET id = 2

INSERT INTO customers (id, name) VALUES (1, 'a') ON CONFLICT DO NOTHING RETURNING id, now()

INSERT INTO customers AS c (id, name) VALUES ($1, $2) ON CONFLICT ON CONSTRAINT customers_pkey DO UPDATE SET name = c.name || excluded.name WHERE c.region > 0
