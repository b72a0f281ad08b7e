package postgres

// ClaimSQL and DeletePublishedSQL expose the statements to the plan test.
func ClaimSQL(s *Store) string           { return s.sql.claim }
func DeletePublishedSQL(s *Store) string { return s.sql.deletePublished }
