-- Aggregates without GROUP BY.
SELECT count(*) FROM {t};
SELECT count(grp), count(cat), count(amount) FROM {t};
SELECT sum(qty), sum(price), sum(amount) FROM {t};
SELECT avg(qty), avg(price), avg(amount) FROM {t};
SELECT min(qty), max(qty), min(cat), max(cat) FROM {t};
SELECT min(created), max(created), min(ts), max(ts) FROM {t};
SELECT min(amount), max(amount), min(note), max(note) FROM {t};
SELECT bool_and(flag), bool_or(flag) FROM {t};
SELECT count(*), sum(qty) FROM {t} WHERE false;
SELECT count(*) AS n, sum(qty) AS total FROM {t} WHERE grp = 2;
