-- GROUPING SETS, ROLLUP, CUBE.
SELECT grp, cat, count(*) FROM {t} GROUP BY GROUPING SETS ((grp), (cat), ());
SELECT grp, flag, sum(qty) FROM {t} GROUP BY ROLLUP (grp, flag);
SELECT flag, cat, count(*) FROM {t} GROUP BY CUBE (flag, cat);
SELECT grp, flag, count(*), GROUPING(grp, flag) FROM {t} GROUP BY ROLLUP (grp, flag) ORDER BY 4, 1, 2;
SELECT cat, count(*) FROM {t} GROUP BY ROLLUP (cat) ORDER BY GROUPING(cat), cat NULLS FIRST;
SELECT grp, sum(amount) FROM {t} WHERE grp < 3 GROUP BY GROUPING SETS ((grp), ());
SELECT extract(year FROM created), flag, count(*) FROM {t} GROUP BY CUBE (extract(year FROM created), flag);
SELECT grp, cat, count(*) FROM {t} GROUP BY grp, ROLLUP (cat) HAVING count(*) > 30;
SELECT count(*), sum(qty) FROM {t} GROUP BY GROUPING SETS (());
SELECT grp, cat, flag, count(*) FROM {t} GROUP BY GROUPING SETS ((grp, cat), (cat, flag));
SELECT flag, count(*), avg(amount) FROM {t} WHERE k IN ({k1}, {k2}, {k3}) GROUP BY ROLLUP (flag);
