-- Cursors over distributed tables read gathered temporary tables.
DECLARE c CURSOR FOR SELECT * FROM customers WHERE id = 1

DECLARE h CURSOR WITH HOLD FOR SELECT * FROM customers ORDER BY id

FETCH 10 FROM c

CLOSE c
