-- What distributed tables' shards depend on changes with them or not at all. A type the
-- columns use (an enum gaining a label, a domain gaining a constraint) or a function the
-- shards call (in CHECK constraints, index expressions, generated columns, triggers,
-- domain constraints) exists on the workers too; pgshard changes it there when the change
-- comes through it (ALTER TYPE ... ADD/RENAME VALUE, CREATE OR REPLACE FUNCTION: the
-- proxy authorizes the tables, as for their own DDL). Any other change of such an object
-- would reach the coordinator alone: refuse it (ddl_command_end), whoever makes it and
-- however it arrives. Installed with the other event triggers (needs superuser).

-- dependent_tables returns the distributed tables whose shards depend on an object: a
-- type (directly, or through arrays, domains and composite types made of it) or a
-- function.
CREATE OR REPLACE FUNCTION pgs_distribution_metadata.dependent_tables(cls oid, obj oid) RETURNS SETOF oid
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	WITH RECURSIVE ty(oid) AS (
		SELECT obj WHERE cls = 'pg_catalog.pg_type'::pg_catalog.regclass
		UNION
		SELECT t.oid FROM pg_catalog.pg_type t, ty
		WHERE t.typbasetype = ty.oid OR t.typelem = ty.oid
		   OR (t.typtype = 'c' AND EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = t.typrelid AND a.atttypid = ty.oid))),
	dep AS (SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
		WHERE cls = 'pg_catalog.pg_proc'::pg_catalog.regclass
		  AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.refobjid = obj),
	rels AS (
		SELECT a.attrelid AS rel FROM pg_catalog.pg_attribute a JOIN ty ON a.atttypid = ty.oid WHERE a.attnum > 0 AND NOT a.attisdropped
		UNION SELECT co.conrelid FROM dep JOIN pg_catalog.pg_constraint co ON dep.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND co.oid = dep.objid
		UNION SELECT a.attrelid FROM dep JOIN pg_catalog.pg_constraint co ON dep.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND co.oid = dep.objid
			JOIN pg_catalog.pg_attribute a ON co.contypid <> 0 AND a.atttypid = co.contypid
		UNION SELECT i.indrelid FROM dep JOIN pg_catalog.pg_index i ON dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND i.indexrelid = dep.objid
		UNION SELECT tg.tgrelid FROM dep JOIN pg_catalog.pg_trigger tg ON dep.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND tg.oid = dep.objid
		UNION SELECT ad.adrelid FROM dep JOIN pg_catalog.pg_attrdef ad ON dep.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND ad.oid = dep.objid
			JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum WHERE a.attgenerated <> '')
	SELECT rels.rel FROM rels JOIN pgs_distribution_metadata.partition p ON p.relation_id = rels.rel
$$;

-- refuse_unpropagated_dependency (ddl_command_end): a change of a type or function that
-- distributed tables' shards depend on, not authorized for every one of them.
CREATE OR REPLACE FUNCTION pgs_distribution_metadata.refuse_unpropagated_dependency() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	rel oid;
	tag text;
	obj text;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pgs_distribution_metadata.partition) THEN
		RETURN;
	END IF;
	-- An object nothing depends on (a function just created) needs no more look.
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger_ddl_commands() c
	               WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
	                             WHERE d.refclassid = c.classid AND d.refobjid = c.objid AND d.deptype = 'n')) THEN
		RETURN;
	END IF;
	SELECT r, c.command_tag, pg_catalog.pg_describe_object(c.classid, c.objid, 0) INTO rel, tag, obj
	FROM pg_catalog.pg_event_trigger_ddl_commands() c,
	     LATERAL pgs_distribution_metadata.dependent_tables(c.classid, c.objid) r
	WHERE c.classid IN ('pg_catalog.pg_type'::pg_catalog.regclass, 'pg_catalog.pg_proc'::pg_catalog.regclass)
	  AND c.command_tag IN ('ALTER TYPE', 'ALTER DOMAIN', 'CREATE FUNCTION', 'ALTER FUNCTION')
	  -- pgshard's own functions (the prototypes' triggers call one) are its business.
	  AND c.schema_name NOT IN ('pgs_distribution_metadata', 'pgs_distribute', 'pgs_commit')
	  AND NOT pgs_distribution_metadata.ddl_authorized(r)
	LIMIT 1;
	IF rel IS NOT NULL THEN
		RAISE EXCEPTION '% of %, which distributed table % depends on, must run through pgshard', tag, obj, rel::pg_catalog.regclass
			USING ERRCODE = 'feature_not_supported',
			      DETAIL = 'The change would reach the coordinator alone: the shards on the workers would keep the old definition. pgshard propagates ALTER TYPE ... ADD VALUE and RENAME VALUE of enums and CREATE OR REPLACE FUNCTION sent to it as statements of their own; it refuses other changes of such objects.',
			      HINT = 'Send the command to pgshard as a statement of its own.';
	END IF;
END
$$;

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgshard_refuse_unpropagated_dependency') THEN
		CREATE EVENT TRIGGER pgshard_refuse_unpropagated_dependency ON ddl_command_end
			WHEN TAG IN ('ALTER TYPE', 'ALTER DOMAIN', 'CREATE FUNCTION', 'ALTER FUNCTION')
			EXECUTE FUNCTION pgs_distribution_metadata.refuse_unpropagated_dependency();
	END IF;
END
$$;
