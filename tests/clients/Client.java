// pgjdbc against a live polygate (tests/tests/client_compat.rs compiles and runs it).
//
// Connection settings come from the PG* environment variables; every check asserts what it
// gets, and the program prints "ok" at the end.

import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Timestamp;
import java.sql.Types;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

public class Client {
    static void check(boolean condition, String what) {
        if (!condition) {
            throw new AssertionError(what);
        }
    }

    static void equal(Object actual, Object expected, String what) {
        check(Objects.equals(actual, expected), what + ": expected " + expected + ", got " + actual);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + System.getenv("PGHOST") + ":" + System.getenv("PGPORT")
                + "/" + System.getenv("PGDATABASE");
        try (Connection connection =
                DriverManager.getConnection(url, System.getenv("PGUSER"), System.getenv("PGPASSWORD"))) {
            DatabaseMetaData metadata = connection.getMetaData();
            check(metadata.getDatabaseProductName().equals("PostgreSQL"), "product name");

            List<String> tables = new ArrayList<>();
            try (ResultSet rs = metadata.getTables(null, "pg", "%", new String[] {"TABLE"})) {
                while (rs.next()) {
                    equal(rs.getString("TABLE_SCHEM"), "pg", "schema of " + rs.getString("TABLE_NAME"));
                    tables.add(rs.getString("TABLE_NAME"));
                }
            }
            check(tables.contains("customers") && tables.contains("types"), "getTables: " + tables);

            List<String> columns = new ArrayList<>();
            try (ResultSet rs = metadata.getColumns(null, "pg", "customers", "%")) {
                while (rs.next()) {
                    columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getInt("DATA_TYPE") + ":"
                            + rs.getString("TYPE_NAME"));
                }
            }
            equal(columns, List.of(
                    "id:" + Types.INTEGER + ":int4",
                    "name:" + Types.VARCHAR + ":text",
                    "country:" + Types.VARCHAR + ":text",
                    "joined:" + Types.TIMESTAMP + ":timestamp",
                    "credit:" + Types.NUMERIC + ":numeric"), "getColumns");

            // polygate carries no source's keys or indexes over: pgjdbc's queries for them
            // (information_schema._pg_expandarray over pg_index) run and find none.
            try (ResultSet rs = metadata.getPrimaryKeys(null, "pg", "customers")) {
                check(!rs.next(), "getPrimaryKeys: no keys");
            }
            try (ResultSet rs = metadata.getIndexInfo(null, "pg", "customers", false, true)) {
                check(!rs.next(), "getIndexInfo: no indexes");
            }

            String sql = "SELECT name, credit, joined FROM pg.customers "
                    + "WHERE id = ? AND name = ? AND joined < ? AND credit > ?";
            try (PreparedStatement statement = connection.prepareStatement(sql)) {
                statement.setInt(1, 1);
                statement.setString(2, "Ada");
                statement.setTimestamp(3, Timestamp.valueOf("2030-01-01 00:00:00"));
                statement.setBigDecimal(4, new BigDecimal("1.5"));
                // More than pgjdbc's prepareThreshold executions: the server-prepared path too.
                for (int round = 0; round < 7; round++) {
                    try (ResultSet rs = statement.executeQuery()) {
                        check(rs.next(), "a row, round " + round);
                        equal(rs.getString("name"), "Ada", "name");
                        equal(rs.getBigDecimal("credit"), new BigDecimal("100.50"), "credit");
                        equal(rs.getTimestamp("joined"), Timestamp.valueOf("2020-05-17 08:30:00"), "joined");
                        check(!rs.next(), "one row");
                    }
                }
            }

            try {
                connection.createStatement().executeUpdate("UPDATE pg.customers SET name = 'x'");
                throw new AssertionError("an UPDATE was accepted");
            } catch (SQLException e) {
                equal(e.getSQLState(), "25006", "read-only refusal");
            }
        }
        System.out.println("ok");
    }
}
