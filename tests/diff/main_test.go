package diff

import (
	"testing"

	"github.com/pgshard/pgshard/tests/testproxy"
)

// env is the cluster and proxy shared by the tests of this package.
var env testproxy.Env

func TestMain(m *testing.M) { testproxy.Main(m, "diff", &env, testproxy.Options{}) }

// proxyURL is the proxy's database (postgres).
func proxyURL() string { return env.P.URL() }

// oracleURL is the plain database on the coordinator server holding the same data.
func oracleURL() string { return env.C.Coordinator.URL("oracle") }

// reversedURL is the oracle database with search_path set to the schema holding the same
// rows inserted in reverse order: a query whose result differs there is not deterministic.
func reversedURL() string { return env.C.Coordinator.URL("oracle") + "&search_path=rev" }
