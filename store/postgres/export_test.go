package postgres

// The statements, the claim's lock key and its window, exposed to the plan
// tests.
func ClaimSQL(s *Store) string           { return s.sql.claim }
func MarkSQL(s *Store) string            { return s.sql.mark }
func ClaimLockSQL(s *Store) string       { return s.sql.claimLock }
func DeletePublishedSQL(s *Store) string { return s.sql.deletePublished }
func LockKey(s *Store) int64             { return s.lockKey }

const ClaimWindow = claimWindow
