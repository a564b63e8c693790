SELECT master_add_node('w4', 5432)

SELECT master_create_worker_shards('customers', 4, 2)

SELECT master_create_distributed_table('t', 'a')

TRUNCATE customers, regions

DROP TABLE reviews

DROP TABLE regions

CREATE TABLE x (a int)

LISTEN ch

SHOW NODES

/* a comment */ show shards public.customers;

REPAIR SHARD 10001

SHOW PLACEMENTS 10002

SHOW VERSION

SHOW work_mem

SHOW NODES; SELECT 1
