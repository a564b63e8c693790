-- Changing the partition key.
UPDATE customers SET id = 2 WHERE id = 1

-- ALTER of a distributed table in a form pgshard does not propagate.
ALTER TABLE customers SET TABLESPACE pg_default

-- FOR UPDATE with LIMIT on several shards (without SKIP LOCKED).
SELECT id FROM customers ORDER BY id LIMIT 1 FOR UPDATE

-- NULL key in INSERT.
INSERT INTO app.events VALUES (NULL, 1)

-- pgshard's reserved word.
SELECT 'pgshard-internal-statement'

-- A syntax error, parsed only by the coordinator.
SELEC * FROM customers
