package mysql_test

import (
	"database/sql"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for the driver check
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/store/mysql"
	"github.com/outboxkit/outbox/store/storetest"
)

// newStore returns a store over a fresh, migrated table that is dropped at
// the end of the test.
func newStore(t testing.TB) *mysql.Store { return testenv.MySQLStore(t, mysql.Config{}) }

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, testenv.MySQLHarness)
}

func TestNewChecksDriver(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("pgx", "postgres://127.0.0.1:1/none")
	require.NoError(t, err)
	defer db.Close()
	_, err = mysql.New(db, mysql.Config{})
	require.ErrorContains(t, err, "want go-sql-driver/mysql")
	_, err = mysql.New(nil, mysql.Config{})
	require.Error(t, err)
}
