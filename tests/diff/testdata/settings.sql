-- Session settings that change how values are read and printed: the proxy must give the
-- answer PostgreSQL gives in the client's session.
-- @set: TimeZone = 'Asia/Kolkata'
SELECT min(ts), max(ts) FROM {t};
-- @set: TimeZone = 'Asia/Kolkata'
SELECT id, ts FROM {t} WHERE grp = 1;
-- @set: TimeZone = 'Asia/Kolkata'
SELECT grp, min(ts), max(ts) FROM {t} GROUP BY grp;
-- @set: TimeZone = 'Asia/Kolkata'
SELECT * FROM {t} WHERE k = {k1};
-- @set: TimeZone = 'America/New_York'
SELECT date_trunc('day', ts) AS d, count(*) FROM {t} GROUP BY 1 ORDER BY 1 LIMIT 20;
-- @set: TimeZone = 'America/New_York'
SELECT count(*) FROM {t} WHERE ts < '2023-06-01 00:00';
-- @set: TimeZone = 'America/New_York'
SELECT id, ts FROM {t} ORDER BY ts, id LIMIT 10;
-- @set: DateStyle = 'SQL, DMY'
SELECT min(created), max(created), min(ts) FROM {t};
-- @set: DateStyle = 'German'
SELECT id, created FROM {t} ORDER BY created, id LIMIT 20;
-- @set: DateStyle = 'SQL, DMY'
SELECT count(*) FROM {t} WHERE created < '01/02/2024';
-- @set: DateStyle = 'SQL, DMY'
SELECT created, count(*) FROM {t} GROUP BY created ORDER BY count(*) DESC, created LIMIT 5;
-- @set: IntervalStyle = 'sql_standard'
SELECT max(ts) - min(ts), max(created) - min(created) FROM {t};
-- @set: extra_float_digits = 0
SELECT max(qty::float8 / 7), min(qty::float8 / 3) FROM {t};
-- @set: extra_float_digits = 0
SELECT id, qty::float8 / 7 FROM {t} WHERE grp = 5;
-- @set: bytea_output = 'escape'
SELECT id, convert_to(note, 'UTF8') FROM {t} WHERE grp = 2;
-- @set: TimeZone = 'Asia/Kolkata'
-- @set: DateStyle = 'ISO, MDY'
SELECT count(*), min(ts), max(ts) FROM {t} WHERE ts >= '2024-01-01 00:00:00';
-- @set: TimeZone = 'Asia/Kolkata'
-- @set: DateStyle = 'SQL, DMY'
SELECT min(ts), max(ts) FROM {t};
-- @set: TimeZone = 'Asia/Kolkata'
-- @set: DateStyle = 'SQL, DMY'
SELECT grp, max(ts) FROM {t} GROUP BY grp ORDER BY grp;
-- @set: TimeZone = 'Asia/Kolkata'
-- @set: DateStyle = 'Postgres'
SELECT id, ts FROM {t} ORDER BY ts DESC, id LIMIT 10;
-- @set: extra_float_digits = 1
SELECT grp, min(qty::float8 / 7) FROM {t} GROUP BY grp;
