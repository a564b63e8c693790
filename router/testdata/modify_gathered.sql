-- UPDATE/DELETE whose WHERE needs other tables: the keys of the rows to change are
-- gathered first.
UPDATE customers SET region = 0 WHERE id IN (SELECT customer_id FROM orders WHERE amount > 100)

DELETE FROM reviews r USING customers c WHERE r.customer_name = c.name AND c.region = 3

UPDATE orders o SET amount = r.id FROM regions r WHERE r.id = o.customer_id

DELETE FROM app.events WHERE n > (SELECT avg(n) FROM app.events)
