package behaviors

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/koipond/koipond/metrics"
)

// File is one input file: a name for messages and its bytes.
type File struct {
	Name string
	Data []byte
}

// ReadFiles reads files from disk, for Parse.
func ReadFiles(paths ...string) ([]File, error) {
	var out []File
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if st.Size() > MaxFileSize {
			return nil, fmt.Errorf("%s: %d bytes, larger than the %d byte limit", p, st.Size(), MaxFileSize)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, File{Name: p, Data: b})
	}
	return out, nil
}

// Set is a loaded, validated, compiled behavior set: what every koi of a run
// does in the background.
type Set struct {
	// Behaviors, sorted by name.
	Behaviors []*Behavior
	// Boot runs once per koi before anything else (nil when absent).
	Boot *Sequence
	// OnConnect runs after every websocket connect and reconnect, before
	// anything else may send on the socket (nil when absent).
	OnConnect *Sequence
	// OnDisconnect runs after a connection ends, except on stop (nil when
	// absent); it holds no ws or connect request.
	OnDisconnect *Sequence
	// OnEvent maps a frame type ("*" for every named frame) to its
	// handler.
	OnEvent map[string]*EventHandler
	// Frames names each incoming frame's type (DefaultClassifier when the
	// set has no "frames").
	Frames *Classifier
	// Prog holds every template of the set.
	Prog *Program
	// Hash identifies the set's content (sha256 over its files).
	Hash string
	// Warnings found while loading (errors prevent loading).
	Warnings Diagnostics
	// Timezone is where the hours of Hourly profiles are counted (the
	// top-level "timezone", an IANA name; default UTC).
	Timezone *time.Location
}

// Behavior is one thing koi do at a per-minute frequency.
type Behavior struct {
	Name string
	// Frequency is the probability that one koi calls the behavior in a
	// given minute, in [0, 1]. Only behaviors with HasFrequency are
	// scheduled.
	Frequency    float64
	HasFrequency bool
	// Hourly, when set, holds 24 multipliers of the frequency, one per
	// hour of the day in the set's Timezone (mean 1 keeps the daily
	// average at Frequency): the daily curve of always-on koi.
	Hourly []float64
	Doc    string
	// Sequence is nil for a frequency given without steps (an error) until
	// merged with a file that has them.
	Sequence *Sequence
	// Key is the metric key of the behavior as a whole: "behavior:<name>",
	// made to fit by metrics.CleanKey when the name is too long for one.
	Key string
	// Exclusive names a group (empty: none): a koi runs at most one
	// behavior of a group at a time; a firing while one runs waits for
	// it (see koi). Sessions of one user use it: a user runs one session
	// at a time.
	Exclusive string
}

// MaxExclusiveName is the longest "exclusive" group name, in bytes.
const MaxExclusiveName = 64

// validExclusiveName reports whether s is a group name: 1 to
// MaxExclusiveName bytes of letters, digits, '_', '-', '.' and ':'.
func validExclusiveName(s string) bool {
	if s == "" || len(s) > MaxExclusiveName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("_-.:", c) >= 0) {
			return false
		}
	}
	return true
}

// Behavior returns the named behavior, or nil.
func (s *Set) Behavior(name string) *Behavior {
	i := sort.Search(len(s.Behaviors), func(i int) bool { return s.Behaviors[i].Name >= name })
	if i < len(s.Behaviors) && s.Behaviors[i].Name == name {
		return s.Behaviors[i]
	}
	return nil
}

// Load reads and parses behavior files from disk.
func Load(paths ...string) (*Set, Diagnostics) {
	files, err := ReadFiles(paths...)
	if err != nil {
		return nil, Diagnostics{{File: fileOf(err), Msg: err.Error()}}
	}
	return Parse(files...)
}

func fileOf(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Path
	}
	return ""
}

// Parse loads a behavior set from one or more files, merged by behavior
// name: one file may give frequencies, another the sequences. It returns
// every problem found; the set is nil when any is an error, so nothing is
// ever half-loaded.
func Parse(files ...File) (*Set, Diagnostics) {
	prog := NewProgram()
	set := &Set{Prog: prog, OnEvent: map[string]*EventHandler{}}
	var all Diagnostics
	byName := map[string]*Behavior{}
	freqFrom := map[string]string{}
	freqGiven := map[string]bool{} // a frequency key was present, valid or not
	stepsFrom := map[string]string{}
	bootFrom := ""
	once := map[string]string{} // on_connect, on_disconnect, frames → where given
	eventSeqFrom := map[string]string{}
	h := sha256.New()
	if len(files) == 0 {
		return nil, Diagnostics{{Msg: "no behavior files given"}}
	}
	for _, f := range files {
		fmt.Fprintf(h, "%d:%s%d:", len(f.Name), f.Name, len(f.Data))
		h.Write(f.Data)
		sink := &diagSink{file: f.Name, data: f.Data}
		d := &decoder{sink: sink, prog: prog}
		root, err := parseFile(f.Data)
		if err != nil {
			sink.parseError(err)
			all = append(all, sink.result()...)
			continue
		}
		if !d.want(root, "top level", jObject) {
			all = append(all, sink.result()...)
			continue
		}
		d.fields(root, "top level", "name", "doc", "behaviors", "sequences", "boot", "on_event", "timezone",
			"on_connect", "on_disconnect", "frames", "generated")
		// "generated" is the provenance that koipond warehouse generate
		// writes (source, rows, window, tool): read by people and jq,
		// ignored here beyond its type.
		if gen := root.get("generated"); gen != nil {
			d.want(gen, "generated", jObject)
		}
		if tz := root.get("timezone"); tz != nil {
			if name, ok := d.str(tz, "timezone"); ok {
				loc, err := time.LoadLocation(name)
				switch {
				case err != nil:
					d.sink.add(tz.off, "timezone", "unknown time zone %s (an IANA name such as \"Europe/Paris\")", quote(name))
				case set.Timezone != nil && set.Timezone.String() != loc.String():
					d.sink.add(tz.off, "timezone", "%s differs from %q given in another file", quote(name), set.Timezone)
				default:
					set.Timezone = loc
				}
			}
		}
		entry := func(name string, n *jnode, path string, allowFreq bool) {
			b := byName[name]
			if b == nil {
				b = &Behavior{Name: name, Key: metrics.CleanKey("behavior:" + name)}
				byName[name] = b
			}
			if !d.want(n, path, jObject) {
				return
			}
			extra := []string{}
			if allowFreq {
				extra = append(extra, "frequency", "hourly", "exclusive")
			}
			if en := n.get("exclusive"); en != nil && allowFreq {
				if g, ok := d.str(en, path+" › exclusive"); ok {
					switch {
					case !validExclusiveName(g):
						d.sink.add(en.off, path+" › exclusive", "%s is not a group name (1 to %d letters, digits, '_', '-', '.' or ':')", quote(g), MaxExclusiveName)
					case b.Exclusive != "" && b.Exclusive != g:
						d.sink.add(en.off, path+" › exclusive", "%s differs from %s given in another file", quote(g), quote(b.Exclusive))
					default:
						b.Exclusive = g
					}
				}
			}
			if hn := n.get("hourly"); hn != nil && allowFreq {
				b.Hourly = d.hourly(hn, path+" › hourly")
			}
			if fn := n.get("frequency"); fn != nil && allowFreq {
				freqGiven[name] = true
				if prev, ok := freqFrom[name]; ok {
					d.sink.add(fn.off, path, "frequency already given in %s", prev)
				} else if f, ok := d.number(fn, path+" › frequency"); ok {
					if f < 0 || f > 1 {
						d.sink.add(fn.off, path+" › frequency", "%s is outside [0, 1]: a frequency is the probability of a call in a given minute", fn.num())
					} else {
						b.Frequency, b.HasFrequency = f, true
						freqFrom[name] = sinkPos(sink, fn.off)
					}
				}
			}
			if n.get("steps") == nil {
				d.fields(n, path, append([]string{"doc", "steps"}, extra...)...)
				if v := n.get("doc"); v != nil {
					if doc, ok := d.str(v, path+" › doc"); ok && b.Doc == "" {
						b.Doc = doc
					}
				}
				return
			}
			if prev, ok := stepsFrom[name]; ok {
				d.sink.add(n.get("steps").off, path, "steps already given in %s", prev)
				return
			}
			seq := d.sequence(n, path, extra...)
			if seq != nil {
				b.Sequence = seq
				if seq.Doc != "" {
					b.Doc = seq.Doc
				}
				stepsFrom[name] = sinkPos(sink, n.get("steps").off)
			}
		}
		if bs := root.get("behaviors"); bs != nil && d.want(bs, "behaviors", jObject) {
			for i, k := range bs.keys {
				entry(k.name, bs.kids[i], "behavior "+quote(k.name), true)
			}
		}
		if ss := root.get("sequences"); ss != nil && d.want(ss, "sequences", jObject) {
			for i, k := range ss.keys {
				entry(k.name, ss.kids[i], "sequence "+quote(k.name), false)
			}
		}
		if bn := root.get("boot"); bn != nil {
			if bootFrom != "" {
				d.sink.add(bn.off, "boot", "boot already given in %s", bootFrom)
			} else {
				set.Boot = d.sequence(bn, "boot")
				bootFrom = sinkPos(sink, bn.off)
			}
		}
		for _, key := range []string{"on_connect", "on_disconnect", "frames"} {
			n := root.get(key)
			if n == nil {
				continue
			}
			if prev, ok := once[key]; ok {
				d.sink.add(n.off, key, "%s already given in %s", key, prev)
				continue
			}
			once[key] = sinkPos(sink, n.off)
			switch key {
			case "on_connect":
				set.OnConnect = d.sequence(n, key)
				d.checkPlace(n, key, placeOther)
			case "on_disconnect":
				set.OnDisconnect = d.sequence(n, key)
				d.checkPlace(n, key, placeOnDisconnect)
			case "frames":
				set.Frames = d.frames(n)
			}
		}
		if bs := root.get("behaviors"); bs != nil && bs.kind == jObject {
			for i, k := range bs.keys {
				d.checkPlace(bs.kids[i], "behavior "+quote(k.name), placeOther)
			}
		}
		if ss := root.get("sequences"); ss != nil && ss.kind == jObject {
			for i, k := range ss.keys {
				d.checkPlace(ss.kids[i], "sequence "+quote(k.name), placeOther)
			}
		}
		if on := root.get("on_event"); on != nil && d.want(on, "on_event", jObject) {
			for i, k := range on.keys {
				path := "on_event " + quote(k.name)
				if k.name != "*" && !ValidTypeName(k.name) {
					d.sink.add(k.off, path, "%s is not a frame type (1 to %d printable ASCII bytes, or \"*\")", quote(k.name), MaxTypeName)
					continue
				}
				acts, seq := d.eventHandler(on.kids[i], path)
				h := set.OnEvent[k.name]
				if h == nil {
					h = &EventHandler{}
					set.OnEvent[k.name] = h
				}
				h.Actions = append(h.Actions, acts...)
				if seq != nil {
					if prev, ok := eventSeqFrom[k.name]; ok {
						d.sink.add(on.kids[i].off, path, "a sequence for %s already given in %s", quote(k.name), prev)
					} else {
						h.Sequence = seq
						eventSeqFrom[k.name] = sinkPos(sink, on.kids[i].off)
					}
				}
			}
		}
		all = append(all, sink.result()...)
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		b := byName[name]
		switch {
		case b.HasFrequency && b.Sequence == nil:
			d := posDiag(freqFrom[name])
			d.Path, d.Msg = "behavior "+quote(name), "has a frequency but no steps in any file: give its sequence"
			all = append(all, d)
		case !b.HasFrequency && b.Sequence != nil && !freqGiven[name]:
			d := posDiag(stepsFrom[name])
			d.Path, d.Warning = "behavior "+quote(name), true
			d.Msg = "has steps but no frequency: it will never run in the background (formations can still use it)"
			all = append(all, d)
		}
		set.Behaviors = append(set.Behaviors, b)
	}
	if set.Timezone == nil {
		set.Timezone = time.UTC
	}
	if set.Frames == nil {
		set.Frames = DefaultClassifier()
	}
	all = append(all, set.checkAwaitedTypes()...)
	if all.HasErrors() {
		return nil, all
	}
	set.Hash = hex.EncodeToString(h.Sum(nil))
	set.Warnings = all
	return set, all
}

func sinkPos(s *diagSink, off int) string {
	l, c := s.lineCol(off)
	return fmt.Sprintf("%s:%d:%d", s.file, l, c)
}

// posDiag turns "file:line:col" back into a diagnostic's position.
func posDiag(pos string) Diagnostic {
	parts := strings.Split(pos, ":")
	if len(parts) < 3 {
		return Diagnostic{File: pos}
	}
	l, _ := strconv.Atoi(parts[len(parts)-2])
	c, _ := strconv.Atoi(parts[len(parts)-1])
	return Diagnostic{File: strings.Join(parts[:len(parts)-2], ":"), Line: l, Col: c}
}

// Field is a top-level value of a file decoded with ParseWithSequence.
type Field struct {
	Value     any // string, json.Number, bool, nil, []any, map[string]any
	Line, Col int
}

// ParseWithSequence decodes a file that holds one sequence under seqKey
// beside other top-level fields (a formation). Unknown top-level fields
// (not in allowed) are errors. It returns the other fields with their
// positions, the compiled sequence, and every problem found.
func ParseWithSequence(f File, seqKey string, allowed ...string) (map[string]Field, *Sequence, Diagnostics) {
	sink := &diagSink{file: f.Name, data: f.Data}
	d := &decoder{sink: sink, prog: NewProgram()}
	root, err := parseFile(f.Data)
	if err != nil {
		sink.parseError(err)
		return nil, nil, sink.result()
	}
	if !d.want(root, "top level", jObject) {
		return nil, nil, sink.result()
	}
	d.fields(root, "top level", append([]string{seqKey}, allowed...)...)
	fields := map[string]Field{}
	for i, k := range root.keys {
		if k.name == seqKey {
			continue
		}
		l, c := sink.lineCol(root.kids[i].off)
		fields[k.name] = Field{Value: root.kids[i].toAny(), Line: l, Col: c}
	}
	var seq *Sequence
	if sn := root.get(seqKey); sn != nil {
		seq = d.sequence(sn, seqKey)
		d.checkPlace(sn, seqKey, placeOther)
		if seq != nil && len(seq.Steps) == 0 && !sink.result().HasErrors() {
			sink.add(sn.off, seqKey, "a sequence needs at least one step")
		}
	} else {
		sink.add(root.off, "top level", "missing %q", seqKey)
	}
	return fields, seq, sink.result()
}
