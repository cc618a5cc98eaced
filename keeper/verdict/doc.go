// Package verdict is the keeper's pure judgement: it parses thresholds
// and guardrail rules, evaluates a threshold against a report key or a
// live window's series, compares a run's report with a baseline's, and
// writes reports and comparisons as CSV.
//
// It has no lifecycle and starts no goroutines: every function works on
// the values it is given (keeper/state records and metrics snapshots)
// and is safe for concurrent use. Bad input comes back as a *FieldError
// naming the request field at fault; the HTTP edge maps it to its
// "invalid" code.
package verdict
