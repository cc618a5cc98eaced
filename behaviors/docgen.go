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
	fmt.Fprintf(&b, `
## Limits

A template that runs away fails that step (counted as an error) instead of hurting the koi:

- output: at most %d bytes per template;
- time: at most %v per template;
- loops: at most %d `+"`range`"+` iterations per template;
- size arguments of %s: at most %d;
- `+"`define`, `block` and `template`"+` are refused (no recursion).
`, MaxOutput, MaxDuration, MaxIterations, "`"+strings.Join(boundedSprig, "`, `")+"`", MaxListLen)
	return b.String()
}
