package behaviors

import (
	"fmt"
	"regexp"
	"regexp/syntax"
)

// MaxPatternSize bounds the size of a frame pattern (a classifier rule's
// or an await's `match`) once its counted repetitions are spelled out:
// about the number of instructions RE2 compiles it to. A short source can
// be huge: `a{1000}` seven times over is 7000 instructions; 4 KB of them
// takes most of a second and over 100 MB to compile, and matching costs
// time in proportion to the size for every byte of every frame.
const MaxPatternSize = 1000

// compilePattern compiles a frame pattern, refusing one whose size is over
// MaxPatternSize before paying for its compilation.
func compilePattern(s string) (*regexp.Regexp, error) {
	re, err := syntax.Parse(s, syntax.Perl)
	if err != nil {
		return nil, err
	}
	if patternSize(re) > MaxPatternSize {
		return nil, fmt.Errorf("pattern too large: with its counted repeats spelled out it is over %d instructions (write fewer or smaller counted repeats such as {1000})", MaxPatternSize)
	}
	return regexp.Compile(s)
}

// patternSize estimates the compiled size of re, saturating above
// MaxPatternSize so nested repeats cannot overflow.
func patternSize(re *syntax.Regexp) int {
	const over = MaxPatternSize + 1
	sum := func(subs []*syntax.Regexp) int {
		n := 0
		for _, s := range subs {
			n = min(over, n+patternSize(s))
		}
		return n
	}
	switch re.Op {
	case syntax.OpLiteral:
		return min(over, max(1, len(re.Rune)))
	case syntax.OpCapture, syntax.OpStar, syntax.OpPlus, syntax.OpQuest:
		return min(over, 2+sum(re.Sub))
	case syntax.OpConcat:
		return sum(re.Sub)
	case syntax.OpAlternate:
		return min(over, len(re.Sub)+sum(re.Sub))
	case syntax.OpRepeat:
		times := re.Max
		if times < 0 {
			times = re.Min + 1
		}
		one := 1 + sum(re.Sub)
		if times > 0 && one > over/times {
			return over
		}
		return min(over, times*one)
	}
	return 1
}
