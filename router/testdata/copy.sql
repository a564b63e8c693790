COPY customers FROM STDIN

COPY orders (customer_id, amount) FROM STDIN WITH (FORMAT csv, HEADER true)

COPY reviews TO STDOUT

COPY (SELECT id, name FROM customers WHERE id = 3) TO STDOUT WITH (FORMAT csv, HEADER)

COPY (SELECT * FROM customers c JOIN reviews r ON c.name = r.customer_name) TO STDOUT

-- Refused: COPY to or from a server file on a distributed table.
COPY customers FROM '/tmp/x'
