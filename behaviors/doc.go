// Package behaviors is koipond's behavior language: the behavior-set file
// format (frequencies × sequences, a boot sequence, websocket event
// handlers), its validation with precise positions, the template functions
// koi call from steps, each koi's local store, and the frequency schedule
// that turns per-minute probabilities into planned calls.
//
// Templates are Go text/template with sprig (less what reads the
// environment, the file system or the network, see RemovedSprig) and the
// koi functions (see KoiFuncs and FUNCTIONS.md). A set's templates are
// parsed once into a Program and executed by any number of koi; execution
// is bounded in time, output and loop iterations (MaxDuration, MaxOutput,
// MaxIterations).
//
// What each request type sends and waits for (binary frames, awaits
// correlated by templated type, pattern, fields and `when`, error frames,
// metric keys) is described in REQUESTS.md.
package behaviors
