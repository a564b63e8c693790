// Package ddl generates the DDL that creates a distributed table's shard copies on the
// worker servers.
//
// A distributed table is an ordinary table on the coordinator (the "prototype"). Shard
// <shardid> of table schema.name is the table schema.name_<shardid> on each worker that
// holds a placement of it. Load reads the prototype's definition from the coordinator's
// catalogs once, into a Table that is plain data; CreateCommands and DropCommand render the
// statements for any shard without touching a catalog again.
//
// What a shard carries, following pg_shard with a few deliberate improvements:
//
//   - The schema (created where missing, for schemas other than public) and the table,
//     schema-qualified, with its columns in attnum order (dropped columns skipped), their
//     types (format_type), non-default collations and NOT NULL. UNLOGGED tables stay
//     unlogged; storage parameters (reloptions, including toast.*) and a non-heap table
//     access method are kept.
//   - Column defaults only when they are plain constants (the stored expression tree is a
//     Const node). Every other default (nextval, now(), gen_random_uuid(), any expression)
//     is left off the shard: the proxy evaluates it on the coordinator and sends explicit
//     values. Column.DefaultOnShard tells which is which.
//   - Identity columns become plain columns (Column.Identity reports them, so the proxy
//     supplies their values); stored generated columns keep GENERATED ALWAYS AS (...) STORED.
//   - CHECK constraints under their own names (pg_shard did not suffix them); NOT VALID ones
//     stay NOT VALID.
//   - PRIMARY KEY, UNIQUE and EXCLUDE constraints, added by ALTER TABLE with the constraint
//     name suffixed by _<shardid>, keeping DEFERRABLE / INITIALLY DEFERRED, NULLS NOT
//     DISTINCT, INCLUDE, index storage parameters and EXCLUDE predicates.
//   - Every other valid index, from pg_get_indexdef with the index renamed to
//     <index>_<shardid> and pointed at the shard (partial, expression and INCLUDE indexes
//     included), the clustered index (ALTER TABLE ... CLUSTER ON), the replica identity and
//     the per-column SET STORAGE / SET STATISTICS / SET COMPRESSION options.
//   - The owner (ALTER TABLE ... OWNER TO, a no-op in the owner's own session, where
//     pgshard runs the commands), the table's privileges when its ACL is not the default
//     (privileges the worker's default privileges gave the new shard revoked first;
//     REVOKE ALL from PUBLIC and the owner, then a GRANT per grantee and grant option,
//     the grantor being the owner) and its columns' privileges, and the comments
//     on the table, its columns, constraints and indexes.
//   - The user-defined types the columns need (enums, domains, composite types, arrays
//     of them, the types they are made of; extension types through CREATE EXTENSION),
//     created before the table where a type of that name is missing, in DO blocks that
//     survive losing a race to create the same type (objects.go); an enum that exists
//     with other labels is refused (42804). The user-defined functions that the shard's
//     checks, generated columns, indexes and types call are not created: a DO block
//     refuses the shard (0A000) where one is missing.
//   - Row-level security (ENABLE, FORCE), the policies, and the triggers with their enabled
//     state and their functions (created from pg_get_functiondef where missing or
//     different), last (objects.go: Security; RepairCommands runs the triggers and FORCE
//     after a repair's copy).
//
// Not replicated: foreign keys (a shard cannot reference another table's shards),
// rules, grantors, tablespaces (of the
// table and of its indexes: workers need not have them), extended statistics, index
// per-column statistics targets and inheritance or partitioning relationships. Range
// types, base types of no extension and tables' row types as column types are refused by
// Load (ErrUnsupported).
//
// Only ordinary, permanent tables outside the system schemas that are not partitions can be
// loaded; anything else (views, materialized views, partitioned tables, partitions, foreign
// tables, sequences, temporary tables, system catalogs) is refused with an error wrapping
// ErrNotTable.
//
// Object names are rendered with PostgreSQL's quote_ident rules: the coordinator quotes the
// prototype's names while loading, and a suffixed name _<shardid> is never a keyword, so the
// Go side quotes it by character class alone. Every name of a shard object (table,
// constraint, index) must fit in NAMEDATALEN-1 = 63 bytes after suffixing; otherwise
// rendering fails with a *NameTooLongError.
package ddl
