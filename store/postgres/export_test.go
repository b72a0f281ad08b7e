package postgres

import "strconv"

// ClaimSQL and DeletePublishedSQL expose the statements to the plan test.
func ClaimSQL(s *Store) string     { return s.sql.claim }
func ClaimLockSQL(s *Store) string { return s.sql.claimLock }
func LockKey(s *Store) int64       { return s.lockKey }

// ClaimWindow is claimWindow as a number.
var ClaimWindow = func() int { n, _ := strconv.Atoi(claimWindow); return n }()

func DeletePublishedSQL(s *Store) string { return s.sql.deletePublished }
