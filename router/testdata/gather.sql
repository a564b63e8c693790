-- Joins on non-key columns, subqueries, set operations, window functions: the tables
-- are gathered into temporary tables on the coordinator.
SELECT * FROM customers a JOIN reviews r ON a.name = r.customer_name

SELECT * FROM customers WHERE region IN (SELECT rating FROM reviews)

SELECT name FROM customers UNION SELECT customer_name FROM reviews

SELECT *, row_number() OVER () FROM customers

-- A distributed table joined with a coordinator table.
SELECT c.name, g.label FROM customers c JOIN regions g ON g.id = c.region

-- Reading a distributed table to write a coordinator table.
INSERT INTO regions SELECT DISTINCT region, 'r' FROM customers
