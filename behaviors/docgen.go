package behaviors

import (
	"fmt"
	"sort"
	"strings"
)

// GenerateFunctionsDoc renders FUNCTIONS.md, the reference of everything a
// template can call. A test keeps the file in step with the code.
func GenerateFunctionsDoc() string {
	var b strings.Builder
	b.WriteString(`# Template functions

<!-- Generated from behaviors/funcs.go by GenerateFunctionsDoc; refresh with
     UPDATE=1 go test -run TestFunctionsDocumented ./behaviors/ -->

Every string in ` + "`pre_actions`, `post_actions`, request `args`, `url`, `headers`, `body`, `text` and the string\nleaves of `json`" + ` is a Go [text/template](https://pkg.go.dev/text/template).
In ` + "`post_actions`, `.`" + ` is the decoded response (JSON objects are maps, numbers keep their text);
in ` + "`on_event`" + ` handlers it is the decoded event. Templates are parsed once per behavior set and run
per koi.

## Koi functions

| function | what it does |
|---|---|
`)
	for _, f := range KoiFuncs {
		fmt.Fprintf(&b, "| `%s` | %s |\n", f.Signature, f.Doc)
	}
	b.WriteString(protocolDoc())
	b.WriteString(`
## Sprig

All of [sprig v3](https://masterminds.github.io/sprig/)'s text functions are available, except:

| removed | why |
|---|---|
`)
	var removed []string
	for n := range RemovedSprig {
		removed = append(removed, n)
	}
	sort.Strings(removed)
	for _, n := range removed {
		fmt.Fprintf(&b, "| `%s` | %s |\n", n, RemovedSprig[n])
	}
	b.WriteString("\nSprig's dictionary `set` and `get` are shadowed by the koi functions of those names; they remain as:\n\n")
	var shadowed []string
	for n := range ShadowedSprig {
		shadowed = append(shadowed, n)
	}
	sort.Strings(shadowed)
	for _, n := range shadowed {
		fmt.Fprintf(&b, "- sprig `%s` → `%s`\n", n, ShadowedSprig[n])
	}
	var budgeted []string
	for n := range budgetedSprig {
		budgeted = append(budgeted, n)
	}
	sort.Strings(budgeted)
	small := append([]string(nil), smallSprig...)
	sort.Strings(small)
	fmt.Fprintf(&b, `
## Byte budget

Every template execution (one action, argument, URL, header, body or JSON leaf) has a byte budget of
%s (%d bytes). It counts the output and every string, list and dictionary the functions build,
cumulatively: bytes built and then dropped still count, so a loop cannot recycle the budget. Each function
works out, from its arguments and before it allocates anything, how much it will produce, and charges that
first; a call that does not fit fails the step with a counted error such as

    template budget: repeat would produce 100.0 MB, over the 1.0 MB left of the 1 MiB budget

and allocates nothing. How the functions count:

- `+"`print`, `println`, `printf`, `html`, `js`, `urlquery`"+` (text/template's own, replaced) and every printing
  action: what the value prints as, measured without printing it; shared parts count once per reference and a
  value that contains itself never fits. `+"`printf`"+` counts widths and precisions once per value they pad, and
  `+"`%%q`/`%%x`"+` as growing their value up to 4 and 3 times.
- `+"`repeat`"+` count × length; `+"`replace`"+` exactly (occurrences × growth); `+"`indent`/`nindent`"+` width × lines;
  `+"`wrapWith`, `regexReplaceAll`"+` every possible match replaced; `+"`join`, `cat`"+` what their parts print as.
- case and trimming functions, encodings, hashes of strings: a small factor of their input (case mapping can
  turn an invalid byte into a 3-byte U+FFFD); `+"`toJson`"+` up to 6 bytes per string byte, `+"`toPrettyJson`"+` plus
  indentation; `+"`fromJson`"+` 40 bytes per input byte.
- lists and dictionaries: 16 bytes per list slot, 64 per dictionary entry, for the lists they build
  (`+"`list`, `append`, `concat`, `until`, `splitList`"+`…); `+"`deepCopy`"+` what its argument prints as.
- the output itself (also capped at %d bytes per template).

The templates of one request (its arguments, URL, headers and body, or the string leaves of its `+"`json`"+`)
are each an execution with its own budget, and their outputs together must also fit in one budget, since the
request holds them all at once.

`+"`dictSet`"+` and `+"`merge`"+` refuse to make a dictionary contain itself (printing it would recurse forever), and
`+"`uniq`"+` refuses lists longer than %d (it compares every pair). Variables set with `+"`set`"+` keep their values
for the rest of the sequence, but no single value can be larger than one budget.

`+"`koipond behaviors validate`"+` and uploads also refuse templates whose constant expressions are over the budget
(for example `+"`repeat 10000 (repeat 10000 \"x\")`"+`, or a string doubled with `+"`print $s $s`"+` twelve times),
naming the template's position.

Sprig functions with a budget rule: %s.

Sprig functions whose results are small whatever their arguments (numbers, booleans, hashes, dates, one of
their arguments): %s.

A function that a newer sprig adds is not callable until it has a rule here.
`, bytesText(DefaultBudget), int64(DefaultBudget), MaxOutput, maxUniq, "`"+strings.Join(budgeted, "`, `")+"`", "`"+strings.Join(small, "`, `")+"`")
	fmt.Fprintf(&b, `
## Limits

A template that runs away fails that step (counted as an error) instead of hurting the koi:

- output: at most %d bytes per template;
- time: at most %v per template;
- loops: at most %d `+"`range`"+` iterations per template;
- size arguments of %s: at most %d;
- `+"`define`, `block` and `template`"+` are refused (no recursion).
`, MaxOutput, MaxDuration, MaxIterations, "`until`, `untilStep`, `seq`", MaxListLen)
	return b.String()
}
