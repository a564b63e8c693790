-- UPDATE/DELETE whose WHERE needs other tables: the keys of the rows to change are
-- gathered first.
UPDATE customers SET region = 0 WHERE id IN (SELECT customer_id FROM orders WHERE amount > 100)

DELETE FROM reviews r USING customers c WHERE r.customer_name = c.name AND c.region = 3

UPDATE orders o SET amount = r.id FROM regions r WHERE r.id = o.customer_id

DELETE FROM app.events WHERE n > (SELECT avg(n) FROM app.events)

WITH x AS (SELECT 1 AS r) UPDATE customers SET region = DEFAULT FROM x WHERE customers.region = x.r RETURNING id

UPDATE orders SET amount = o2.amount, status = 'x' FROM orders o2 WHERE o2.id = orders.id + 1 AND o2.customer_id = orders.customer_id

DELETE FROM items WHERE id IN (SELECT id FROM customers) RETURNING *

-- Refused: only SET column = expression.
UPDATE customers SET (name, region) = (SELECT name, region FROM customers c2 WHERE c2.id = customers.id + 1)
