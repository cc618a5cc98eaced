package behaviors

import (
	"fmt"
	htmltemplate "html/template"
	"math"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"text/template"
	"unicode/utf8"
)

// A sizeRule bounds, from a function's arguments and before it runs, the
// bytes the function will allocate for its result. The bound is charged to
// the execution's budget before the call; a call whose bound does not fit
// fails without running.
type sizeRule func(args []reflect.Value) int64

// Budgeted sprig functions, each with the rule that bounds its result.
// Every sprig function is either here, in smallSprig or in RemovedSprig: a
// function a new sprig version adds is not callable until it is reviewed
// (sprigFuncs drops it).
var budgetedSprig = map[string]sizeRule{
	// strings from strings, at most a small factor of their input (case
	// mapping can turn one invalid byte into a 3-byte U+FFFD)
	"upper": factor(3), "lower": factor(3), "title": factor(3), "untitle": factor(3), "swapcase": factor(3),
	"camelcase": factor(3), "kebabcase": factor(4), "snakecase": factor(4), "shuffle": factor(3),
	"trim": factor(1), "trimAll": factor(1), "trimall": factor(1), "trimPrefix": factor(1), "trimSuffix": factor(1),
	"nospace": factor(1), "initials": factor(1), "trunc": factor(1), "substr": factor(1), "abbrev": factor(1),
	"abbrevboth": factor(1), "base": factor(1), "dir": factor(1), "ext": factor(1), "clean": factor(1),
	"osBase": factor(1), "osClean": factor(1), "osDir": factor(1), "osExt": factor(1), "b64dec": factor(1),
	"b32dec": factor(1), "regexFind": factor(1), "mustRegexFind": factor(1), "toString": factor(1),
	"decryptAES": factor(1), "urlJoin": factor(2), "b64enc": factor(2), "b32enc": factor(2),
	"regexQuoteMeta": factor(2), "date": factor(3), "dateInZone": factor(3), "date_in_zone": factor(3),
	"htmlDate": factor(3), "htmlDateInZone": factor(3), "encryptAES": factor(3), "urlParse": factor(8),
	"quote": factor(4), "squote": factor(4), "toStrings": factor(3), "sortAlpha": factor(3),
	"cat":      factor(1),
	"fromJson": factor(40), "mustFromJson": factor(40),
	"toJson": jsonRule(false), "toRawJson": jsonRule(false), "mustToJson": jsonRule(false), "mustToRawJson": jsonRule(false),
	"toPrettyJson": jsonRule(true), "mustToPrettyJson": jsonRule(true),
	"join": func(a []reflect.Value) int64 {
		if len(a) != 2 {
			return 0
		}
		sep := int64(len(strArg(a[0])))
		return satAdd(printArg(a[1]), satMul(sep, lenArg(a[1])))
	},
	"repeat": func(a []reflect.Value) int64 {
		if len(a) != 2 {
			return 0
		}
		n, _ := intArg(a[0])
		return satMul(max(n, 0), int64(len(strArg(a[1]))))
	},
	"indent":  indentRule(0),
	"nindent": indentRule(1),
	"replace": func(a []reflect.Value) int64 {
		if len(a) != 3 {
			return 0
		}
		old, repl, s := strArg(a[0]), strArg(a[1]), strArg(a[2])
		if old == "" {
			return satAdd(int64(len(s)), satMul(int64(utf8.RuneCountInString(s)+1), int64(len(repl))))
		}
		grow := int64(max(0, len(repl)-len(old)))
		return satAdd(int64(len(s)), satMul(int64(strings.Count(s, old)), grow))
	},
	"regexReplaceAll":            regexReplaceRule(true),
	"mustRegexReplaceAll":        regexReplaceRule(true),
	"regexReplaceAllLiteral":     regexReplaceRule(false),
	"mustRegexReplaceAllLiteral": regexReplaceRule(false),
	"wrap":                       factor(2),
	"wrapWith": func(a []reflect.Value) int64 {
		if len(a) != 3 {
			return 0
		}
		w, s := int64(len(strArg(a[1]))), int64(len(strArg(a[2])))
		return satAdd(s, satMul(s+1, w))
	},
	"randAlpha": countRule(1), "randAlphaNum": countRule(1), "randAscii": countRule(1), "randNumeric": countRule(1),
	"randBytes": countRule(2),
	"until":     countRule(8),
	"untilStep": func(a []reflect.Value) int64 {
		if len(a) != 3 {
			return 0
		}
		start, _ := intArg(a[0])
		stop, _ := intArg(a[1])
		step, _ := intArg(a[2])
		return satMul(rangeCount(start, stop, step), 8)
	},
	"seq": func(a []reflect.Value) int64 {
		var ints []int64
		for _, v := range a {
			n, _ := intArg(v)
			ints = append(ints, n)
		}
		switch len(ints) {
		case 1:
			return satMul(rangeCount(1, ints[0], 1), 21)
		case 2:
			return satMul(rangeCount(ints[0], ints[1], 1), 21)
		case 3:
			return satMul(rangeCount(ints[0], ints[2], ints[1]), 21)
		}
		return 0
	},
	// lists and dictionaries: a slot is 16 bytes, a map entry about 64
	"list": argsRule(16), "tuple": argsRule(16), "pluck": argsRule(16), "dict": argsRule(64),
	"append": listRule(16, 1), "push": listRule(16, 1), "prepend": listRule(16, 1),
	"mustAppend": listRule(16, 1), "mustPush": listRule(16, 1), "mustPrepend": listRule(16, 1),
	"concat": listRule(16, 0), "compact": listRule(16, 0), "mustCompact": listRule(16, 0),
	"initial": listRule(16, 0), "mustInitial": listRule(16, 0), "rest": listRule(16, 0), "mustRest": listRule(16, 0),
	"reverse": listRule(16, 0), "mustReverse": listRule(16, 0), "without": listRule(16, 0), "mustWithout": listRule(16, 0),
	"chunk": listRule(40, 0), "mustChunk": listRule(40, 0), "keys": listRule(16, 0), "values": listRule(16, 0),
	"omit": listRule(64, 0), "pick": listRule(64, 0),
	"merge": listRule(64, 0), "mergeOverwrite": listRule(64, 0), "mustMerge": listRule(64, 0), "mustMergeOverwrite": listRule(64, 0),
	"dictSet":  argsRule(64),
	"deepCopy": copyRule, "mustDeepCopy": copyRule,
	"uniq": uniqRule, "mustUniq": uniqRule,
	"splitList": splitRule(16), "regexSplit": splitRule(16), "mustRegexSplit": splitRule(16),
	"regexFindAll": splitRule(16), "mustRegexFindAll": splitRule(16),
	"split": splitRule(64), "splitn": splitRule(64),
}

// smallSprig are the sprig functions whose results are small whatever
// their arguments (numbers, booleans, hashes, dates, a value they were
// given): they need no budget.
var smallSprig = []string{"add", "add1", "add1f", "addf", "adler32sum", "ago", "all", "any", "atoi", "biggest",
	"ceil", "coalesce", "contains", "dateModify", "date_modify", "deepEqual", "default", "dictGet", "dig", "div",
	"divf", "duration", "durationRound", "empty", "fail", "first", "float64", "floor", "has", "hasKey", "hasPrefix",
	"hasSuffix", "hello", "int", "int64", "isAbs", "kindIs", "kindOf", "last", "max", "maxf", "min", "minf", "mod",
	"mul", "mulf", "mustDateModify", "mustFirst", "mustHas", "mustLast", "mustRegexMatch", "mustSlice", "mustToDate",
	"must_date_modify", "now", "osIsAbs", "plural", "randInt", "regexMatch", "round", "semver", "semverCompare",
	"sha1sum", "sha256sum", "sha512sum", "slice", "sub", "subf", "ternary", "toDate", "toDecimal", "typeIs",
	"typeIsLike", "typeOf", "unixEpoch", "unset", "uuidv4"}

// maxUniq bounds the list uniq compares pairwise (its cost is quadratic).
const maxUniq = 4096

// cyclicSprig mutate a dictionary in place: they are refused when the
// result would contain itself (printing such a value recurses forever).
var cyclicSprig = map[string]bool{"dictSet": true, "merge": true, "mergeOverwrite": true, "mustMerge": true, "mustMergeOverwrite": true}

func factor(k int64) sizeRule {
	return func(a []reflect.Value) int64 {
		var n int64 = 64
		for _, v := range a {
			n = satAdd(n, satMul(k, printArg(v)))
		}
		return n
	}
}

func jsonRule(pretty bool) sizeRule {
	return func(a []reflect.Value) int64 {
		if len(a) != 1 {
			return 0
		}
		s := shapeOf(ifaceOf(a[0]))
		if pretty {
			return s.prettyBound()
		}
		return s.jsonBound()
	}
}

func indentRule(extra int64) sizeRule {
	return func(a []reflect.Value) int64 {
		if len(a) != 2 {
			return 0
		}
		n, _ := intArg(a[0])
		s := strArg(a[1])
		lines := int64(strings.Count(s, "\n") + 1)
		return satAdd(int64(len(s))+extra, satMul(max(n, 0), lines))
	}
}

// regexReplaceRule: every match (at most one per byte, plus one) is
// replaced by the replacement, whose $n references each expand to at most
// the whole input.
func regexReplaceRule(expand bool) sizeRule {
	return func(a []reflect.Value) int64 {
		if len(a) != 3 {
			return 0
		}
		s, repl := int64(len(strArg(a[1]))), strArg(a[2])
		per := int64(len(repl))
		if expand {
			per = satAdd(per, satMul(int64(strings.Count(repl, "$")), s))
		}
		return satAdd(s, satMul(s+1, per))
	}
}

func countRule(k int64) sizeRule {
	return func(a []reflect.Value) int64 {
		if len(a) != 1 {
			return 0
		}
		n, _ := intArg(a[0])
		if n < 0 {
			n = -n
		}
		return satMul(n, k)
	}
}

func rangeCount(start, stop, step int64) int64 {
	if step == 0 {
		return 1
	}
	d := float64(stop) - float64(start)
	c := math.Abs(d/float64(step)) + 1
	if c > math.MaxInt64/2 {
		return math.MaxInt64
	}
	return int64(c)
}

// argsRule charges per argument (list, dict).
func argsRule(k int64) sizeRule {
	return func(a []reflect.Value) int64 { return satAdd(64, satMul(int64(len(a)), k)) }
}

// listRule charges per element of the list and map arguments, plus extra
// slots.
func listRule(k, extra int64) sizeRule {
	return func(a []reflect.Value) int64 {
		n := extra
		for _, v := range a {
			n = satAdd(n, lenArg(v))
		}
		return satAdd(64, satMul(n, k))
	}
}

// copyRule: a deep copy rebuilds every value as it prints (shared parts
// once per reference), so it costs about what printing does.
func copyRule(a []reflect.Value) int64 {
	if len(a) != 1 {
		return 0
	}
	return satMul(shapeOf(ifaceOf(a[0])).printBound(), 2)
}

func uniqRule(a []reflect.Value) int64 {
	if len(a) != 1 {
		return 0
	}
	if n := lenArg(a[0]); n > maxUniq {
		return math.MaxInt64
	}
	return satAdd(64, satMul(lenArg(a[0]), 16))
}

// splitRule: at most one piece per byte of the string, plus one.
func splitRule(k int64) sizeRule {
	return func(a []reflect.Value) int64 {
		var longest int64
		for _, v := range a {
			longest = max(longest, int64(len(strArg(v))))
		}
		return satAdd(64, satMul(longest+1, k))
	}
}

func ifaceOf(v reflect.Value) any {
	for v.Kind() == reflect.Interface && !v.IsNil() {
		v = v.Elem()
	}
	if !v.IsValid() || !v.CanInterface() {
		return nil
	}
	return v.Interface()
}

func strArg(v reflect.Value) string {
	for v.Kind() == reflect.Interface && !v.IsNil() {
		v = v.Elem()
	}
	if v.Kind() == reflect.String {
		return v.String()
	}
	return ""
}

func intArg(v reflect.Value) (int64, bool) { return asInt(v) }

// lenArg is the number of elements of a list or map argument (0 for
// anything else).
func lenArg(v reflect.Value) int64 {
	for v.Kind() == reflect.Interface && !v.IsNil() {
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map:
		return int64(v.Len())
	}
	return 0
}

// printArg bounds what printing one argument produces.
func printArg(v reflect.Value) int64 {
	if s := strArg(v); s != "" {
		return int64(len(s))
	}
	return shapeOf(ifaceOf(v)).printBound()
}

// budgetFunc wraps f so that every call first charges rule's bound to the
// execution's budget. The wrapper returns (any, error), which templates
// treat exactly as f's own result.
func budgetFunc(b *binding, name string, f any, rule sizeRule) any {
	fv := reflect.ValueOf(f)
	ft := fv.Type()
	anyT, errT := reflect.TypeFor[any](), reflect.TypeFor[error]()
	fail := func(err error) []reflect.Value {
		return []reflect.Value{reflect.Zero(anyT), reflect.ValueOf(&err).Elem()}
	}
	return reflect.MakeFunc(reflect.FuncOf(inTypes(ft), []reflect.Type{anyT, errT}, ft.IsVariadic()),
		func(args []reflect.Value) []reflect.Value {
			flat := args
			if ft.IsVariadic() && len(args) > 0 {
				last := args[len(args)-1]
				flat = append(append([]reflect.Value(nil), args[:len(args)-1]...), sliceValues(last)...)
			}
			if name == "seq" || name == "until" || name == "untilStep" {
				var ints []int64
				for _, a := range flat {
					if v, ok := asInt(a); ok {
						ints = append(ints, v)
					}
				}
				if err := checkSize(name, ints); err != nil {
					return fail(err)
				}
			}
			if cyclicSprig[name] && len(flat) > 0 {
				if err := refuseCycle(name, flat); err != nil {
					return fail(err)
				}
			}
			if err := b.charge(name, rule(flat)); err != nil {
				return fail(err)
			}
			var out []reflect.Value
			if ft.IsVariadic() {
				out = fv.CallSlice(args)
			} else {
				out = fv.Call(args)
			}
			res := reflect.New(anyT).Elem()
			res.Set(out[0])
			errv := reflect.Zero(errT)
			if len(out) > 1 && !out[1].IsNil() {
				errv = out[1]
			}
			return []reflect.Value{res, errv}
		}).Interface()
}

// refuseCycle refuses dictSet/merge calls whose target dictionary is
// reachable from the values put into it: the result would contain itself,
// and printing, copying or encoding it would recurse without end.
func refuseCycle(name string, args []reflect.Value) error {
	target := args[0]
	for target.Kind() == reflect.Interface && !target.IsNil() {
		target = target.Elem()
	}
	if target.Kind() != reflect.Map || target.IsNil() {
		return nil
	}
	p := target.UnsafePointer()
	seen := map[uintptr]bool{}
	var reach func(v reflect.Value, depth int) bool
	reach = func(v reflect.Value, depth int) bool {
		for v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return false
			}
			v = v.Elem()
		}
		if depth > 10_000 {
			return true
		}
		switch v.Kind() {
		case reflect.Map:
			if v.IsNil() {
				return false
			}
			if v.UnsafePointer() == p {
				return true
			}
			if seen[uintptr(v.UnsafePointer())] {
				return false
			}
			seen[uintptr(v.UnsafePointer())] = true
			it := v.MapRange()
			for it.Next() {
				if reach(it.Value(), depth+1) {
					return true
				}
			}
		case reflect.Slice, reflect.Array:
			if v.Kind() == reflect.Slice && v.Len() > 0 {
				k := uintptr(v.Pointer()) ^ uintptr(v.Len())<<1
				if seen[k] {
					return false
				}
				seen[k] = true
			}
			for i := range v.Len() {
				if reach(v.Index(i), depth+1) {
					return true
				}
			}
		}
		return false
	}
	for _, a := range args[1:] {
		if reach(a, 0) {
			return fmt.Errorf("%s: the dictionary would contain itself", name)
		}
	}
	return nil
}

// budgetedBuiltins replaces text/template's print, printf, println, html,
// js and urlquery with versions that charge the budget before formatting.
func budgetedBuiltins(b *binding) template.FuncMap {
	sprint := func(name string, sep bool, args []any) (string, error) {
		var n int64 = 64
		for _, a := range args {
			n = satAdd(n, satAdd(printArg(reflect.ValueOf(a)), 1))
		}
		if err := b.charge(name, n); err != nil {
			return "", err
		}
		if sep {
			return fmt.Sprintln(args...), nil
		}
		return fmt.Sprint(args...), nil
	}
	escaped := func(name string, k int64, esc func(string) string) func(...any) (string, error) {
		return func(args ...any) (string, error) {
			s, err := sprint(name, false, args)
			if err != nil {
				return "", err
			}
			if err := b.charge(name, satMul(int64(len(s)), k)); err != nil {
				return "", err
			}
			return esc(s), nil
		}
	}
	return template.FuncMap{
		"print":   func(args ...any) (string, error) { return sprint("print", false, args) },
		"println": func(args ...any) (string, error) { return sprint("println", true, args) },
		"printf": func(format string, args ...any) (string, error) {
			if err := b.charge("printf", printfBound(format, args)); err != nil {
				return "", err
			}
			return fmt.Sprintf(format, args...), nil
		},
		"html":     escaped("html", 6, htmltemplate.HTMLEscapeString),
		"js":       escaped("js", 6, htmltemplate.JSEscapeString),
		"urlquery": escaped("urlquery", 3, url.QueryEscape),
		printFunc: func(v any) (string, error) {
			if s, ok := v.(string); ok {
				return s, nil
			}
			pv, err := printable(v)
			if err != nil {
				return "", err
			}
			if s, ok := pv.(string); ok {
				return s, nil
			}
			if err := b.charge("printing a value", printArg(reflect.ValueOf(pv))); err != nil {
				return "", err
			}
			return fmt.Sprint(pv), nil
		},
	}
}

var errorType = reflect.TypeFor[error]()

// printable is what text/template prints for a value (its printableValue):
// pointers followed, "<no value>" for nothing, a pointer's String or Error
// method used, functions and channels refused.
func printable(v any) (any, error) {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		if rv.IsNil() {
			break
		}
		rv = rv.Elem()
	}
	if !rv.IsValid() {
		return "<no value>", nil
	}
	if !rv.Type().Implements(errorType) && !rv.Type().Implements(stringerType) {
		if rv.CanAddr() && (reflect.PointerTo(rv.Type()).Implements(errorType) || reflect.PointerTo(rv.Type()).Implements(stringerType)) {
			rv = rv.Addr()
		} else if k := rv.Kind(); k == reflect.Chan || k == reflect.Func {
			return nil, fmt.Errorf("can't print value of type %s", rv.Type())
		}
	}
	if !rv.CanInterface() {
		return nil, fmt.Errorf("can't print value of type %s", rv.Type())
	}
	return rv.Interface(), nil
}

// printFunc is the hidden function appended to every printing action, so
// that what text/template prints is a string already charged to the budget
// (text/template would otherwise format any value, however large, in
// memory before writing it).
const printFunc = "_koipondPrint"

// fmtVerb matches one printf directive: flags, width, precision, verb.
var fmtVerb = regexp.MustCompile(`%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d+)?)?(.)`)

// printfBound bounds fmt.Sprintf(format, args...) without running it.
// Widths and precisions pad every value of a list, so they count once per
// value printed; %q and %x grow a value by at most 4 and 3 times.
func printfBound(format string, args []any) int64 {
	n := satAdd(int64(len(format)), 64)
	explicit := strings.Contains(format, "[")
	var maxPrint, maxNodes int64
	shapes := make([]shape, len(args))
	for i, a := range args {
		if s, ok := a.(string); ok {
			shapes[i] = shape{str: int64(len(s)), nodes: 1, depth: 1}
		} else {
			shapes[i] = shapeOf(a)
		}
		maxPrint = max(maxPrint, shapes[i].printBound())
		maxNodes = max(maxNodes, shapes[i].nodes)
		n = satAdd(n, satAdd(shapes[i].printBound(), 64)) // %!(EXTRA …) at worst
	}
	next := 0
	num := func(s string) int64 {
		if s == "*" {
			next++
			return 1e6
		}
		var v int64
		for _, c := range s {
			v = min(v*10+int64(c-'0'), 1e6)
		}
		return v
	}
	for _, m := range fmtVerb.FindAllStringSubmatch(format, -1) {
		if m[4] == "%" {
			continue
		}
		wp := satAdd(num(m[2]), num(m[3]))
		k := int64(1)
		switch m[4] {
		case "s", "v", "d", "t":
		case "q":
			k = 4
		default:
			k = 3
		}
		p, nodes := maxPrint, maxNodes
		if !explicit {
			if next < len(shapes) {
				p, nodes = shapes[next].printBound(), shapes[next].nodes
			} else {
				p, nodes = 0, 1
			}
			next++
		}
		n = satAdd(n, satAdd(satAdd(satMul(k, p), satMul(satAdd(wp, 2), max(nodes, 1))), 64))
	}
	return n
}
