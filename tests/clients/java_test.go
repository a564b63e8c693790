package clients

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestJDBC runs testdata/Workload.java with the PostgreSQL JDBC driver (pgjdbc).
func TestJDBC(t *testing.T) {
	java, err := exec.LookPath("java")
	if err != nil {
		t.Skip("java not found: install a JDK 17+ (Debian: apt-get install default-jdk-headless)")
	}
	javac, err := exec.LookPath("javac")
	if err != nil {
		t.Skip("javac not found: install a JDK 17+ (Debian: apt-get install default-jdk-headless)")
	}
	jar := jdbcJar(t)
	classes := t.TempDir()
	if out, err := exec.Command(javac, "-encoding", "UTF-8", "-cp", jar, "-d", classes, filepath.Join("testdata", "Workload.java")).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	w := prepare(t, "jdbc")
	w.run(t, "testdata", nil, java, "-cp", classes+string(os.PathListSeparator)+jar, "Workload")
	w.verify(t)
}

// jdbcJar returns the PostgreSQL JDBC driver: $PGSHARD_JDBC_JAR, or Debian's
// libpostgresql-jdbc-java, which is installed with apt-get (as root) when missing.
func jdbcJar(t *testing.T) string {
	t.Helper()
	if jar := os.Getenv("PGSHARD_JDBC_JAR"); jar != "" {
		return jar
	}
	const jar = "/usr/share/java/postgresql.jar"
	if _, err := os.Stat(jar); err == nil {
		return jar
	}
	if !canApt() {
		t.Skip("PostgreSQL JDBC driver not found: install it (Debian, as root: apt-get install libpostgresql-jdbc-java) or set PGSHARD_JDBC_JAR to its jar")
	}
	if err := aptInstall(t, "libpostgresql-jdbc-java"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(jar); err != nil {
		t.Fatalf("apt-get install libpostgresql-jdbc-java did not provide %s", jar)
	}
	return jar
}
