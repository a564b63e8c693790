package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/internal/localpg"
)

// demo starts a throwaway cluster (a coordinator and 4 workers from the installed
// PostgreSQL server binaries), the proxy, and a sample distributed table, then waits for
// Ctrl-C and removes everything.
func demo(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:6432", "address for the proxy")
	workers := fs.Int("workers", 4, "number of worker servers")
	rows := fs.Int("rows", 10000, "sample rows to load")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log, _ := newLogger("warn")

	fmt.Printf("Starting a coordinator and %d workers (PostgreSQL, in a temporary directory)...\n", *workers)
	// localpg's servers run with max_prepared_transactions = 100: two-phase commit
	// (README "Atomic commit") prepares transactions on the workers.
	c, err := localpg.Start(ctx, localpg.Options{Workers: *workers})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("\nStopping the servers and removing their data...")
		c.Close()
	}()
	o := &options{
		listen:         *listen,
		coordinator:    c.Coordinator.URL("postgres"),
		poolSize:       100,
		repairInterval: 10 * time.Second,
		maxMessage:     1 << 30,
		loginTimeout:   60 * time.Second,
	}
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- runServer(ctx, o, log, func(addr string) { ready <- addr }) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-errc:
		return err
	}
	if err := loadSample(ctx, addr, c, *rows); err != nil {
		stop()
		<-errc
		return err
	}
	host, port, _ := net.SplitHostPort(addr)
	fmt.Printf(`
pgshard is running on %s with a distributed table customer_reviews
(16 shards, 2 placements each, on %d workers, %d rows). Connect with:

    psql -h %s -p %s -U postgres postgres

and try:

    select count(*) from customer_reviews;
    select * from customer_reviews where customer_id = 'A27T7HVDXA3K2A';
    SHOW NODES; SHOW SHARDS; SHOW PLACEMENTS;

Workers: %s
Press Ctrl-C to stop and remove everything.
`, addr, *workers, *rows, host, port, workerList(c))
	return <-errc
}

func workerList(c *localpg.Cluster) string {
	var s []string
	for _, w := range c.Workers {
		s = append(s, w.Addr())
	}
	return strings.Join(s, ", ")
}

// loadSample registers the workers and creates and fills the sample table, through the
// proxy, as a user would.
func loadSample(ctx context.Context, addr string, c *localpg.Cluster, rows int) error {
	host, port, _ := net.SplitHostPort(addr)
	cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://postgres@%s:%s/postgres?sslmode=disable", host, port))
	if err != nil {
		return err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to the proxy: %w", err)
	}
	defer conn.Close(context.Background())
	for _, w := range c.Workers {
		if _, err := conn.Exec(ctx, fmt.Sprintf("select master_add_node('%s', %d)", w.Host, w.Port)); err != nil {
			return err
		}
	}
	for _, q := range []string{
		`CREATE TABLE customer_reviews (
			customer_id TEXT NOT NULL,
			review_date DATE,
			review_rating INTEGER,
			review_votes INTEGER,
			review_helpful_votes INTEGER,
			product_id CHAR(10),
			product_title TEXT,
			product_sales_rank BIGINT,
			product_group TEXT,
			product_category TEXT,
			product_subcategory TEXT,
			similar_product_ids CHAR(10)[])`,
		`select master_create_distributed_table('customer_reviews', 'customer_id')`,
		`select master_create_worker_shards('customer_reviews', 16, 2)`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return err
		}
	}
	rng := rand.New(rand.NewSource(1))
	groups := []string{"Book", "Music", "Video", "DVD", "Toy"}
	for done := 0; done < rows; {
		var b strings.Builder
		b.WriteString("INSERT INTO customer_reviews VALUES ")
		for i := 0; i < 500 && done < rows; i++ {
			if i > 0 {
				b.WriteString(", ")
			}
			cust := "A" + strings.ToUpper(strconv.FormatInt(rng.Int63n(1<<50), 36))
			if done == 0 {
				cust = "A27T7HVDXA3K2A"
			}
			fmt.Fprintf(&b, "('%s', date '1995-01-01' + %d, %d, %d, %d, '%010d', 'Title %d', %d, '%s', 'Category %d', 'Sub %d', '{%010d,%010d}')",
				cust, rng.Intn(7000), 1+rng.Intn(5), rng.Intn(50), rng.Intn(20), rng.Intn(1e9), rng.Intn(1000),
				rng.Intn(1e6), groups[rng.Intn(len(groups))], rng.Intn(20), rng.Intn(50), rng.Intn(1e9), rng.Intn(1e9))
			done++
		}
		if _, err := conn.Exec(ctx, b.String()); err != nil {
			return fmt.Errorf("load sample rows: %w", err)
		}
	}
	return nil
}
