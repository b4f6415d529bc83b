package main

// Tenancy attempts on the routes of SendGrid's category, advanced stats and
// activity download endpoints (issue 20): account globex tries to read
// acme's categories (acme-cat is among the leaks).
func init() {
	e := tenancyExercises
	e["GET /v3/categories"] = tries(
		tenancyAttempt{"GET", "/v3/categories?limit=500", ""},
		tenancyAttempt{"GET", "/v3/categories?category=acme&account_id=acme", ""})
	e["GET /v3/categories/stats/sums"] = tries(
		tenancyAttempt{"GET", "/v3/categories/stats/sums?start_date=2025-11-01&end_date=2025-11-30&limit=500", ""},
		tenancyAttempt{"GET", "/v3/categories/stats/sums?start_date=2025-11-01&end_date=2025-11-30&on-behalf-of=acme", ""})
}
