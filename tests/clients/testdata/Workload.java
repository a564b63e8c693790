// The client workload through the pgshard proxy, with the PostgreSQL JDBC driver.
//
// Environment: TABLE, TX_IDS ("a,b": two ids on different shards), PGHOST, PGPORT, PGUSER,
// PGDATABASE. Prints OK and exits 0 when every step checks out; otherwise prints what was
// wrong and exits 1. See tests/clients/doc.go.

import java.io.ByteArrayOutputStream;
import java.io.StringReader;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

public class Workload {
    static final String TABLE = System.getenv("TABLE");
    static long txA, txB;

    static class Failure extends Exception {
        Failure(String msg) {
            super(msg);
        }
    }

    interface Step {
        void run(Connection conn) throws Exception;
    }

    static void check(boolean cond, String msg) throws Failure {
        if (!cond) {
            throw new Failure(msg);
        }
    }

    // Some names carry quotes, a comma and non-ASCII characters.
    static String name(long i) {
        return i % 10 == 0 ? "O'Brien-\u00e9-\"\u00df\", \u2713-" + i : "name-" + i;
    }

    static BigDecimal amount(long i) {
        return BigDecimal.valueOf(i).multiply(new BigDecimal("1.25"));
    }

    static LocalDate created(long i) {
        return LocalDate.of(2024, 1, 1).plusDays(i % 30);
    }

    static void insert(Connection conn) throws Exception {
        try (PreparedStatement ps = conn.prepareStatement(
                "INSERT INTO " + TABLE + " (id, name, amount, created) VALUES (?, ?, ?, ?)")) {
            for (long i = 1; i <= 200; i++) {
                ps.setLong(1, i);
                ps.setString(2, name(i));
                ps.setBigDecimal(3, amount(i));
                ps.setObject(4, created(i));
                int n = ps.executeUpdate();
                check(n == 1, "insert " + i + ": update count " + n + ", want 1");
            }
        }
    }

    static void readBack(Connection conn) throws Exception {
        try (PreparedStatement ps = conn.prepareStatement("SELECT name, amount, created FROM " + TABLE + " WHERE id = ?")) {
            for (long i = 1; i <= 200; i += 10) {
                ps.setLong(1, i);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), "read id " + i + ": no row");
                    String n = rs.getString(1);
                    BigDecimal a = rs.getBigDecimal(2);
                    LocalDate c = rs.getObject(3, LocalDate.class);
                    check(name(i).equals(n), "read id " + i + ": name " + n + ", want " + name(i));
                    check(a != null && a.compareTo(amount(i)) == 0 && a.scale() == 2, "read id " + i + ": amount " + a + ", want " + amount(i));
                    check(created(i).equals(c), "read id " + i + ": created " + c + ", want " + created(i));
                    check(!rs.next(), "read id " + i + ": more than one row");
                }
            }
        }
    }

    static void updateDelete(Connection conn) throws Exception {
        try (PreparedStatement ps = conn.prepareStatement("UPDATE " + TABLE + " SET amount = amount + 1 WHERE id = ?")) {
            for (long i = 1; i <= 50; i++) {
                ps.setLong(1, i);
                int n = ps.executeUpdate();
                check(n == 1, "update " + i + ": update count " + n + ", want 1");
            }
        }
        try (PreparedStatement ps = conn.prepareStatement("DELETE FROM " + TABLE + " WHERE id = ?")) {
            for (long i = 191; i <= 200; i++) {
                ps.setLong(1, i);
                int n = ps.executeUpdate();
                check(n == 1, "delete " + i + ": update count " + n + ", want 1");
            }
        }
        try (PreparedStatement ps = conn.prepareStatement("SELECT amount FROM " + TABLE + " WHERE id = ?")) {
            ps.setLong(1, 7);
            try (ResultSet rs = ps.executeQuery()) {
                check(rs.next(), "id 7: no row");
                BigDecimal want = amount(7).add(BigDecimal.ONE);
                check(rs.getBigDecimal(1).compareTo(want) == 0, "amount of id 7 after update: " + rs.getBigDecimal(1) + ", want " + want);
            }
        }
    }

    static void aggregate(Connection conn) throws Exception {
        BigDecimal want = BigDecimal.valueOf(50);
        for (long i = 1; i <= 190; i++) {
            want = want.add(amount(i));
        }
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*), sum(amount) FROM " + TABLE)) {
            check(rs.next(), "count, sum: no row");
            long count = rs.getLong(1);
            BigDecimal sum = rs.getBigDecimal(2);
            check(count == 190 && sum != null && sum.compareTo(want) == 0, "count, sum: got " + count + ", " + sum + "; want 190, " + want);
        }
    }

    static String csvField(String s) {
        if (s.contains("\"") || s.contains(",") || s.contains("\n")) {
            return "\"" + s.replace("\"", "\"\"") + "\"";
        }
        return s;
    }

    static void copy(Connection conn) throws Exception {
        StringBuilder csv = new StringBuilder();
        for (long i = 1001; i <= 1300; i++) {
            csv.append(i).append(',').append(csvField(name(i))).append(',').append(amount(i).toPlainString()).append(',').append(created(i)).append('\n');
        }
        CopyManager cm = conn.unwrap(PGConnection.class).getCopyAPI();
        long n = cm.copyIn("COPY " + TABLE + " (id, name, amount, created) FROM STDIN WITH (FORMAT csv)", new StringReader(csv.toString()));
        check(n == 300, "COPY FROM: " + n + " rows, want 300");

        try (PreparedStatement ps = conn.prepareStatement("SELECT name, amount, created FROM " + TABLE + " WHERE id = ?")) {
            ps.setLong(1, 1250);
            try (ResultSet rs = ps.executeQuery()) {
                check(rs.next(), "row 1250 after COPY: missing");
                check(name(1250).equals(rs.getString(1)) && amount(1250).compareTo(rs.getBigDecimal(2)) == 0
                        && created(1250).equals(rs.getObject(3, LocalDate.class)),
                        "row 1250 after COPY: got " + rs.getString(1) + ", " + rs.getBigDecimal(2) + ", " + rs.getString(3));
            }
        }

        ByteArrayOutputStream out = new ByteArrayOutputStream();
        long m = cm.copyOut("COPY " + TABLE + " TO STDOUT", out);
        String[] lines = out.toString(StandardCharsets.UTF_8).split("\n");
        check(lines.length == 490 && m == 490, "COPY TO: " + lines.length + " lines (" + m + " rows reported), want 490");
        List<Long> ids = new ArrayList<>();
        String row1010 = null;
        for (String line : lines) {
            ids.add(Long.parseLong(line.substring(0, line.indexOf('\t'))));
            if (line.startsWith("1010\t")) {
                row1010 = line;
            }
        }
        Collections.sort(ids);
        List<Long> want = new ArrayList<>();
        for (long i = 1; i <= 190; i++) {
            want.add(i);
        }
        for (long i = 1001; i <= 1300; i++) {
            want.add(i);
        }
        check(ids.equals(want), "COPY TO: ids differ from 1..190, 1001..1300");
        String wantRow = "1010\t" + name(1010) + "\t" + amount(1010).toPlainString() + "\t" + created(1010);
        check(wantRow.equals(row1010), "COPY TO: row " + row1010 + ", want " + wantRow);
    }

    static void cancel(Connection conn) throws Exception {
        ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor();
        long start = System.nanoTime();
        try (Statement st = conn.createStatement()) {
            timer.schedule(() -> {
                try {
                    st.cancel();
                } catch (SQLException e) {
                    System.out.println("Statement.cancel: " + e);
                }
            }, 500, TimeUnit.MILLISECONDS);
            try {
                st.executeQuery("SELECT pg_sleep(30) FROM " + TABLE + " WHERE id = 1").close();
                throw new Failure("pg_sleep(30) finished without being canceled");
            } catch (SQLException e) {
                check("57014".equals(e.getSQLState()), "canceled query: got " + e.getSQLState() + " " + e.getMessage() + ", want SQLSTATE 57014");
            }
        } finally {
            timer.shutdown();
            timer.awaitTermination(5, TimeUnit.SECONDS);
        }
        long ms = (System.nanoTime() - start) / 1_000_000;
        check(ms < 10_000, "cancel took " + ms + " ms");
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT 1")) {
            check(rs.next() && rs.getInt(1) == 1, "SELECT 1 after cancel");
        }
    }

    static void errorThenSuccess(Connection conn) throws Exception {
        try (PreparedStatement ps = conn.prepareStatement("INSERT INTO " + TABLE + " (id, name, amount, created) VALUES (?, ?, ?, ?)")) {
            ps.setLong(1, 5);
            ps.setString(2, "dup");
            ps.setBigDecimal(3, BigDecimal.ONE);
            ps.setObject(4, LocalDate.of(2024, 1, 1));
            ps.executeUpdate();
            throw new Failure("duplicate insert succeeded");
        } catch (SQLException e) {
            check("23505".equals(e.getSQLState()), "duplicate: got " + e.getSQLState() + " " + e.getMessage() + ", want SQLSTATE 23505");
        }
        try (PreparedStatement ps = conn.prepareStatement("SELECT count(*) FROM " + TABLE + " WHERE id = ?")) {
            ps.setLong(1, 5);
            try (ResultSet rs = ps.executeQuery()) {
                check(rs.next() && rs.getLong(1) == 1, "count of id 5 after the duplicate is not 1");
            }
        }
    }

    // A batch in autocommit is one implicit transaction: a duplicate key in its last
    // statement undoes the others; a batch without errors applies whole.
    static void batch(Connection conn) throws Exception {
        String sql = "INSERT INTO " + TABLE + " (id, name, amount, created) VALUES (?, ?, ?, ?)";
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            for (long id : new long[] {9001, 9002, 9003, 5}) {
                ps.setLong(1, id);
                ps.setString(2, "batch");
                ps.setBigDecimal(3, BigDecimal.ONE);
                ps.setObject(4, LocalDate.of(2024, 1, 1));
                ps.addBatch();
            }
            ps.executeBatch();
            throw new Failure("batch with a duplicate key succeeded");
        } catch (java.sql.BatchUpdateException e) {
            check("23505".equals(e.getSQLState()) || e.getNextException() != null && "23505".equals(e.getNextException().getSQLState()),
                "batch: got " + e.getSQLState() + " " + e.getMessage() + ", want SQLSTATE 23505");
        }
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*) FROM " + TABLE + " WHERE name = 'batch'")) {
            rs.next();
            check(rs.getLong(1) == 0, "after the failed batch " + rs.getLong(1) + " of its rows remain");
        }
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            for (long id : new long[] {9001, 9002, 9003}) {
                ps.setLong(1, id);
                ps.setString(2, "batch");
                ps.setBigDecimal(3, BigDecimal.ONE);
                ps.setObject(4, LocalDate.of(2024, 1, 1));
                ps.addBatch();
            }
            int[] counts = ps.executeBatch();
            check(counts.length == 3, "batch: " + counts.length + " counts");
        }
        try (Statement st = conn.createStatement()) {
            check(st.executeUpdate("DELETE FROM " + TABLE + " WHERE name = 'batch'") == 3, "the batch's 3 rows are not all there");
        }
    }

    static String readName(Connection conn, long id) throws Exception {
        try (PreparedStatement ps = conn.prepareStatement("SELECT name FROM " + TABLE + " WHERE id = ?")) {
            ps.setLong(1, id);
            try (ResultSet rs = ps.executeQuery()) {
                check(rs.next(), "id " + id + ": no row");
                return rs.getString(1);
            }
        }
    }

    static void setNames(Connection conn, String name) throws Exception {
        try (PreparedStatement ps = conn.prepareStatement("UPDATE " + TABLE + " SET name = ? WHERE id = ?")) {
            for (long id : new long[] {txA, txB}) {
                ps.setString(1, name);
                ps.setLong(2, id);
                int n = ps.executeUpdate();
                check(n == 1, "tx update " + id + ": update count " + n);
            }
        }
    }

    static void transactions(Connection conn) throws Exception {
        conn.setAutoCommit(false);
        try {
            setNames(conn, "tx-committed");
            String got = readName(conn, txA);
            check("tx-committed".equals(got), "inside the transaction: name " + got + ", want the update");
            conn.commit();

            setNames(conn, "tx-rolled-back");
            got = readName(conn, txB);
            check("tx-rolled-back".equals(got), "inside the second transaction: name " + got);
            conn.rollback();
        } finally {
            if (!conn.getAutoCommit()) {
                conn.rollback();
                conn.setAutoCommit(true);
            }
        }
        for (long id : new long[] {txA, txB}) {
            String got = readName(conn, id);
            check("tx-committed".equals(got), "after commit and rollback: name of " + id + " is " + got + ", want 'tx-committed'");
        }
    }

    // A cursor (fetch size) over every shard inside a transaction: the driver fetches the
    // rows in parts of 7 with Execute row limits, and runs another query midway.
    static void cursor(Connection conn) throws Exception {
        long want;
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*) FROM " + TABLE)) {
            rs.next();
            want = rs.getLong(1);
        }
        check(want > 20, "cursor: only " + want + " rows to read");
        conn.setAutoCommit(false);
        try (PreparedStatement ps = conn.prepareStatement("SELECT id FROM " + TABLE + " ORDER BY id")) {
            ps.setFetchSize(7);
            long n = 0, last = Long.MIN_VALUE;
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    long id = rs.getLong(1);
                    check(id > last, "cursor: id " + id + " after " + last);
                    last = id;
                    if (++n == 10) {
                        readName(conn, txA);
                    }
                }
            }
            check(n == want, "cursor: " + n + " rows, want " + want);
            // Closed early: the rest of the result is dropped.
            try (ResultSet rs = ps.executeQuery()) {
                check(rs.next() && rs.next(), "cursor closed early: no rows");
            }
            conn.commit();
        } finally {
            conn.rollback();
            conn.setAutoCommit(true);
        }
    }

    public static void main(String[] args) throws Exception {
        if (TABLE == null || !TABLE.matches("[a-z_][a-z0-9_]*")) {
            System.out.println("bad TABLE " + TABLE);
            System.exit(1);
        }
        String[] tx = Objects.requireNonNull(System.getenv("TX_IDS"), "TX_IDS").split(",");
        txA = Long.parseLong(tx[0]);
        txB = Long.parseLong(tx[1]);
        String url = "jdbc:postgresql://" + System.getenv("PGHOST") + ":" + System.getenv("PGPORT") + "/" + System.getenv("PGDATABASE")
                + "?sslmode=disable&connectTimeout=10";
        String[] names = {"insert", "readBack", "updateDelete", "aggregate", "copy", "cancel", "errorThenSuccess", "batch", "transactions", "cursor"};
        Step[] steps = {Workload::insert, Workload::readBack, Workload::updateDelete, Workload::aggregate, Workload::copy,
            Workload::cancel, Workload::errorThenSuccess, Workload::batch, Workload::transactions, Workload::cursor};
        try (Connection conn = DriverManager.getConnection(url, System.getenv("PGUSER"), "")) {
            for (int i = 0; i < steps.length; i++) {
                try {
                    steps[i].run(conn);
                } catch (Failure e) {
                    System.out.println("FAIL " + names[i] + ": " + e.getMessage());
                    System.exit(1);
                } catch (Exception e) {
                    System.out.println("FAIL " + names[i] + ": " + e);
                    e.printStackTrace(System.out);
                    System.exit(1);
                }
            }
        }
        System.out.println("OK");
    }
}
