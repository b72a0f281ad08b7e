package mysql

// ClaimSQL exposes the claim's SELECT so that tests can hold it open in a
// transaction of their own.
func ClaimSQL(s *Store) string { return s.sql.claim }
