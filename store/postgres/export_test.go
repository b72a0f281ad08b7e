package postgres

// ClaimSQL and DeletePublishedSQL expose the statements to the plan test.
func ClaimSQL(s *Store) string           { return s.sql.claim }
func ClaimLockSQL(s *Store) string       { return s.sql.claimLock }
func LockKey(s *Store) int64             { return s.lockKey }
func DeletePublishedSQL(s *Store) string { return s.sql.deletePublished }
