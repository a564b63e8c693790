SELECT master_add_node('w4', 5432)

SELECT master_create_worker_shards('customers', 4, 2)

SELECT master_create_distributed_table('t', 'a')

TRUNCATE customers, regions

DROP TABLE reviews

DROP TABLE regions

CREATE TABLE x (a int)

LISTEN ch
