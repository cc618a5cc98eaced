// Package warehouse turns API usage exported from a data warehouse into the
// frequency half of a behavior set: for each method, the probability that
// one user calls it in a given minute.
//
// # Sources, formats, shapes
//
// An export is a local file, a local folder of parts (read recursively, in
// name order), or every object under s3://bucket/prefix (listed page by page
// and streamed, one object at a time). Files and objects whose base name
// starts with "_" or "." (_SUCCESS, .crc files), ends in "manifest" or
// ".md", or starts with "README" are skipped, as are folder markers. Each part may be gzip- or
// zstd-compressed: compression is recognised by its magic bytes, never by
// the name. The format is CSV (a header row first; .tsv files are
// tab-separated), JSON lines (one object per line) or Parquet, chosen by the
// extension (under any .gz/.zst) and else by the first bytes; Options.Format
// overrides both. Parquet needs random access, so a compressed or remote
// Parquet part is first copied to a temporary file.
//
// Two shapes are read. A raw call log has one row per call: user, method and
// timestamp (RFC 3339, "2006-01-02 15:04:05" read as UTC, or epoch seconds,
// milliseconds, microseconds or nanoseconds told apart by magnitude), and
// optionally team and client. A pre-aggregated export has one row per
// method (or per method and slice, for example per day): method,
// user_minutes (user-minutes with at least one call of the method) and
// active_user_minutes (user-minutes with any call, in the same slice); its
// frequency is Σ user_minutes / Σ active_user_minutes over the method's rows.
// Column names are mapped with Options.Columns.
//
// # The frequency, exactly
//
// A user-minute is one user in one calendar minute (UTC, floor of the
// timestamp). It is active when the user made any call in it. The frequency
// of method m is
//
//	|{(user, minute) : the user called m in that minute}| / |{active (user, minute)}|
//
// Both counts are of distinct pairs, so the rows have to be de-duplicated,
// and nothing is assumed about their order: warehouse exports are split by
// whatever the warehouse felt like, and parts interleave users and times.
//
// # Bounded memory: an external sort of (user, minute, method) keys
//
// Counting distinct pairs exactly without holding every pair is done with a
// classic external sort. Rows become keys (user, minute, method) collected
// into a chunk. Inside a chunk the user is a small index into the chunk's
// own user table and the whole key packs into one uint64 (21 bits of user,
// 27 bits of Unix minute, 16 bits of method, whose names are interned once
// for the whole export; timestamps outside 1970..2200 are bad rows). When the
// chunk reaches its budget (Options.MemoryBytes, default 128 MiB: 8 bytes
// per key plus the chunk's distinct user names and about 64 bytes of
// overhead for each), its users are ranked by name, the keys are sorted and
// de-duplicated, and the chunk is written as a sorted run to a temporary
// file (user names prefix-compressed, varints: a few bytes per key). An
// export that fits one chunk never touches the disk.
//
// At the end the runs are merged with a heap, at most 64 at a time (more
// runs are first merged into bigger runs, level by level); each merge input
// holds a 64 KiB buffer. The merged stream is in (user, minute, method)
// order without duplicates, so one pass counts: every new (user, minute) is
// one active user-minute, every key one user-minute of its method. Memory is
// therefore bounded by MemoryBytes + 64 × 64 KiB + per-method tables
// (calls, user-minutes and 2 × 24 hourly counters per method; at most 65,535
// distinct methods), whatever the export's size or order. Disk use is at
// most a few bytes per distinct (user, minute, method). The process's peak
// RSS is about twice MemoryBytes (the chunk grows by doubling, and the Go
// heap keeps headroom): 258 MiB for a 10-million-row export at the default.
// Sorted input (by user then time, or by time) is not required; it merely
// de-duplicates more inside each chunk, so runs are smaller. The result is exact: no hashing,
// no sampling, no approximate sketches.
//
// # Hour-of-day profiles
//
// With Options.Hourly, each method also gets 24 multipliers of its frequency,
// one per hour of the day in Options.Timezone: hourly[h] is the method's
// user-minutes in local hour h per day that hour occurs in the export's time
// range, divided by the mean over the 24 hours. Their mean is 1, so the daily
// average stays at the frequency, and always-on koi (whose number does not
// follow the day) reproduce the daily load curve: the volume in hour h is
// frequency × hourly[h] per koi-minute. It needs at least a day of data.
//
// # Sessions: call order from a raw export
//
// With Options.Sessions every call (user, time in milliseconds, method) is
// also kept for a second external sort, which shares MemoryBytes with the
// counting (half each) and spills to the same TempDir. Unlike the counting
// it keeps every call (two calls of one method in the same instant are two
// calls) and orders each user's calls by time, ties in the order of the
// export. One pass over that stream cuts each user's calls into sessions at
// silences of at least Options.SessionGap (default 30 minutes, at least 1)
// and counts:
//   - entries: sessions beginning with each method; an entry's frequency is
//     sessions beginning with it per active user-minute (the frequency's
//     denominator above), so a koi that starts it with that probability
//     each minute starts sessions at the export's rate;
//   - transitions From→To between consecutive calls of a session, with
//     Probability = count / From's calls that had a next call, its binomial
//     standard error, and the delay from call to call in a DDSketch (2%
//     relative accuracy, at most 320 bins): p50, p90 and the quantiles at
//     0, 0.1, …, 1. At most MaxTransitionPairs (4096) distinct pairs are
//     tracked; later pairs are counted per From only (Untracked) and noted;
//   - ends: per method, the share of its calls that end a session.
//
// Out-of-order calls (more than 5 s earlier than the same user's previous
// call in the export, seen within one sort chunk) are counted and noted
// with whether they came across parts (clocks that disagree) or within one.
//
// The behaviors written are then sessions: "session:<entry>" with the
// entry's frequency, whose steps call the entry method (its steps from
// Options.Sequences, else a bare api request, and the method is named in
// Unsequenced; SequencedOnly leaves such methods out) and then a `choose`
// step over the learned transitions, each branch weighted by count / From's
// calls (the rest ends the session), pausing for the transition's delay
// drawn from its quantiles, then calling To, and so on. The chain is
// first-order and unbounded, so the trees are cut: at most MaxFollowUps (6)
// follow-ups deep, no path that fewer than MinPathProbability (0.2%) of the
// entry's sessions take, at most MaxSessionNodes (2000) branches in all, the
// most travelled first. Each transition's Reproduced is how often the
// generated sessions are expected to make it over as many sessions as the
// export holds; Coverage sums min(Count, Reproduced) over the observed
// transitions, and CallShare compares the calls made with the export's.
// DropTransitions leaves transitions out (their share ends the session).
// With Hourly each entry also gets 24 multipliers of when
// its sessions begin, counted like the methods' (per session).
// The pause runs after the koi's call returns, so a generated step's
// interval is the target's reply time plus the learned delay.
//
// A pre-aggregated export has no call order: Sessions refuses it.
//
// # Hostile parts
//
// Every byte of an export is read as if hostile, with bounded memory:
//   - a CSV or JSON line, and a CSV row whose quoted fields span lines, is
//     at most Options.MaxLineBytes (1 MiB): the CSV reader is handed whole
//     lines one at a time, so it never buffers more; a longer one stops the
//     run with the part, row, line, the column where the limit was passed,
//     and the limit;
//   - a value of a column that is read is at most MaxFieldBytes (64 KiB): a
//     longer one is a bad row naming its column (other columns are bounded
//     by the line alone), and all distinct method names together at most
//     16 MiB;
//   - a gzip or zstd part may inflate to MaxRatio (100) × its compressed
//     bytes read so far plus 1 MiB, and to MaxInflatedBytes in all; zstd
//     windows are at most 128 MiB;
//   - a Parquet footer and the page headers of the columns read are walked
//     before parquet-go decodes them (it allocates what they declare): every
//     list and string must fit its bytes, the metadata must decode to under
//     256 MiB, each page must fit its column chunk and inflate within
//     MaxRatio; a value over MaxFieldBytes is a bad row; the page index and
//     bloom filters are not read;
//   - with Options.Root (the keeper's --warehouse-dir) every part and
//     folder is opened through os.Root: a symlink leading out, "..", an
//     absolute path are refused, and folder listings skip symlinks.
//
// A limit passed wraps ErrLimit. Messages quote at most 60 bytes of a value
// and about 200 of a header, and only of the part being read.
//
// # Output
//
// Result.Encode writes standard JSON: {"generated": {...}, "behaviors":
// {method: {"frequency": f}}}, methods most frequent first. "generated"
// (Provenance) says where the numbers come from as fields: the source
// (Options.SourceName when set, so a keeper never writes its own paths),
// tool, time, rows, window, filters, the denominator, the dropped methods
// with their reasons and share of the calls, coverage against a sequences
// file, and each written method's counts. The behavior-set loader ignores
// it; files with the // comments of earlier versions still load.
//
// # Errors
//
// Every problem in the input names the object, the row (and the CSV line)
// and the column (see RowError). By default the first bad row stops the run;
// with Options.SkipBadRows bad rows are counted by reason and skipped.
// Problems that make every row unusable (a required column missing from a
// CSV header or a Parquet schema, a missing bucket, refused credentials, an
// export with no rows) always stop the run. Nothing is written on failure:
// Result.WriteFile writes a temporary file and renames it.
//
// Generate is the whole pipeline as one call, with a progress callback; the
// CLI (koipond warehouse generate) and, later, the keeper's
// POST /api/v1/behavior-sets/generate are thin wrappers around it.
package warehouse
