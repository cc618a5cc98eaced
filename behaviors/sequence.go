package behaviors

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/koipond/koipond/metrics"
)

// RequestType is how a step reaches the target.
type RequestType string

// The request types.
const (
	// API is a Slack-style web API call: POST {api_base}/{method} with form
	// arguments and the koi's bearer token; a JSON reply with "ok": false is
	// an error.
	API RequestType = "api"
	// HTTP is any HTTP request: method, URL, headers, body.
	HTTP RequestType = "http"
	// WS sends a frame on the koi's websocket and may await a reply frame.
	WS RequestType = "ws"
	// Connect opens the koi's websocket now (in boot, when a protocol
	// needs the socket before boot ends) and waits until it is open and
	// on_connect has succeeded.
	Connect RequestType = "connect"
)

// DefaultAwaitTimeout is how long a ws request waits for its awaited frame
// when the step does not say.
const DefaultAwaitTimeout = 10 * time.Second

// Sequence is an ordered list of steps: a behavior's body, the boot
// sequence, or a formation's sequence.
type Sequence struct {
	Doc   string
	Steps []Step
	// Prog holds the sequence's compiled templates.
	Prog *Program
}

// Step is one request with the actions around it.
type Step struct {
	Doc string
	// Pre runs before the request (`pre_actions`).
	Pre []Text
	// Request is nil for a step of actions only.
	Request *Request
	// Post runs after the request: the request's own post_actions first,
	// then the step's. In them `.` is the decoded response.
	Post []Text
	// DelayAfter is the pause after the step (`delay_after_ms`), before
	// time scaling. With DelayQuantiles it is their median.
	DelayAfter time.Duration
	// DelayQuantiles, when `delay_after_ms` is an array, are the pause's
	// quantiles at evenly spaced probabilities 0, 1/(n-1), …, 1: each
	// run draws its pause from them (see Delay).
	DelayQuantiles []time.Duration
	// Choose, when not empty, runs at most one of its branches after the
	// step's request and actions and before its pause: branch i with
	// probability Weight_i, none with 1 − ΣWeight (see Pick).
	Choose []Branch
	// Where names the step for errors, e.g. `behavior "x" › step 1`.
	Where string
}

// Branch is one weighted alternative of a `choose` step.
type Branch struct {
	// Weight is the probability the branch runs, in [0, 1]; a step's
	// weights add up to at most 1.
	Weight float64
	// Sequence holds the branch's steps (its Prog is the step's).
	Sequence *Sequence
}

// The bounds of the branching construct.
const (
	// MaxChooseDepth bounds how deeply `choose` steps nest.
	MaxChooseDepth = 8
	// MaxDelayQuantiles bounds a `delay_after_ms` array.
	MaxDelayQuantiles = 101
)

// Delay returns the step's pause for u drawn uniformly from [0, 1):
// DelayAfter, or with DelayQuantiles the inverse of the piecewise-linear
// distribution function through them (u = 0.5 gives the median; two
// quantiles give a uniform pause between them).
func (s *Step) Delay(u float64) time.Duration {
	q := s.DelayQuantiles
	if len(q) == 0 {
		return s.DelayAfter
	}
	if len(q) == 1 {
		return q[0]
	}
	if !(u > 0) { // NaN too
		return q[0]
	}
	x := min(u, 1) * float64(len(q)-1)
	i := int(x)
	if i >= len(q)-1 {
		return q[len(q)-1]
	}
	return q[i] + time.Duration((x-float64(i))*float64(q[i+1]-q[i]))
}

// Pick returns the branch of a `choose` step that u, drawn uniformly from
// [0, 1), selects: branch i when u falls in its share of the cumulative
// weights, nil (no branch runs) when u is past their sum.
func (s *Step) Pick(u float64) *Sequence {
	acc := 0.0
	for i := range s.Choose {
		acc += s.Choose[i].Weight
		if u < acc {
			return s.Choose[i].Sequence
		}
	}
	return nil
}

// EachStep calls f for every step of the sequence in order, descending
// into the branches of `choose` steps (a step before its branches' steps).
func (q *Sequence) EachStep(f func(*Step)) {
	if q == nil {
		return
	}
	for i := range q.Steps {
		st := &q.Steps[i]
		f(st)
		for _, b := range st.Choose {
			b.Sequence.EachStep(f)
		}
	}
}

// Arg is one named, possibly templated value (an API argument or a header).
type Arg struct {
	Name  string
	Value Text
}

// Request is what a step sends.
type Request struct {
	Type RequestType
	// Method is the API method (api) or the HTTP verb (http).
	Method string
	// Args are the API arguments, sorted by name.
	Args []Arg
	// URL is the http request's URL.
	URL Text
	// Headers are extra http headers, sorted by name.
	Headers []Arg
	// Body is the http body (when HasBody).
	Body    Text
	HasBody bool
	// JSON is a JSON body (http) or a JSON frame (ws) whose string leaves
	// are templates; nil when absent.
	JSON *JSONTemplate
	// Text is a raw text frame (ws, when HasText).
	Text    Text
	HasText bool
	// Binary is a binary frame (ws, when HasBinary): the rendered text
	// decoded as Encoding.
	Binary    Text
	HasBinary bool
	Encoding  Encoding
	// Await, for ws, waits for a matching incoming frame.
	Await *Await
	// Error, for ws, fails the request when a frame matching it arrives
	// after the send and before the await is satisfied (or, without
	// await, within Error.Within).
	Error *ErrorFrame
	// Timeout bounds the request (0: the koi's default).
	Timeout time.Duration
	// Key is the metric key the request is recorded under, fixed when the
	// file is loaded: "<type>:<key>" when the request names its `key`;
	// otherwise "api:<method>", "http:<METHOD> <url as written>",
	// "ws:<awaited type>" (a constant await type), "ws:match" (any other
	// await), "ws:send", or "connect:open" for a connect request (the dial itself
	// is "ws:connect", counted by the connection loop). A key too long
	// for the metrics (a long URL) is made to fit by metrics.CleanKey.
	Key string
}

// Encoding is how a ws request's `binary` text becomes the frame's bytes.
type Encoding string

// The binary encodings.
const (
	// Base64 is standard base64, padded or not (the default).
	Base64 Encoding = "base64"
	// Hex is hexadecimal digits; spaces and newlines between bytes are
	// ignored ("20 02 00 00").
	Hex Encoding = "hex"
	// Raw takes the rendered text's bytes as they are: for koi functions
	// that build binary packets.
	Raw Encoding = "raw"
)

// MaxKeyName is the longest `key` a request may name.
const MaxKeyName = 64

// Decode turns the rendered text of a binary payload into the frame.
func (e Encoding) Decode(s string) ([]byte, error) {
	switch e {
	case Raw:
		return []byte(s), nil
	case Hex:
		s = strings.Map(func(r rune) rune {
			if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
				return -1
			}
			return r
		}, s)
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("binary payload is not hex: %v", err)
		}
		return b, nil
	}
	s = strings.TrimSpace(s)
	enc := base64.StdEncoding
	if !strings.HasSuffix(s, "=") && len(s)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	b, err := enc.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("binary payload is not base64: %v", err)
	}
	return b, nil
}

// JSONTemplate is a JSON value whose string leaves may be templates.
type JSONTemplate struct {
	kind jkind
	lit  any // null, bool, number leaves
	text Text
	kids []*JSONTemplate // array elements, or object values parallel to keys
	keys []string
}

// Render builds the JSON value with every template leaf rendered. The
// leaves together stay within one execution's budget (each is also an
// execution with its own). ctx ends the renderings (see Program.Render).
func (j *JSONTemplate) Render(ctx context.Context, p *Program, env *Env, data any) (any, error) {
	return j.render(ctx, p, env, data, p.NewBudget())
}

func (j *JSONTemplate) render(ctx context.Context, p *Program, env *Env, data any, b *Budget) (any, error) {
	if err := b.Charge("a JSON body", 16); err != nil {
		return nil, err
	}
	switch j.kind {
	case jString:
		s, err := p.Render(ctx, env, j.text, data)
		if err != nil {
			return nil, err
		}
		return s, b.Charge("a JSON body", len(s))
	case jArray:
		out := make([]any, len(j.kids))
		for i, e := range j.kids {
			v, err := e.render(ctx, p, env, data, b)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case jObject:
		out := make(map[string]any, len(j.keys))
		for i, k := range j.keys {
			v, err := j.kids[i].render(ctx, p, env, data, b)
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
		return out, nil
	}
	return j.lit, nil
}

// decoder turns position-aware JSON into compiled sequences, reporting
// every problem to its sink.
type decoder struct {
	sink *diagSink
	prog *Program
	// depth is how many `choose` steps enclose the step being decoded.
	depth int
}

// fields reports every key of n not in allowed, with a suggestion.
func (d *decoder) fields(n *jnode, path string, allowed ...string) {
	for _, k := range n.keys {
		ok := false
		for _, a := range allowed {
			if k.name == a {
				ok = true
				break
			}
		}
		if !ok {
			d.sink.add(k.off, path, "unknown field %s%s", quote(k.name), didYouMean(k.name, allowed))
		}
	}
}

func didYouMean(k string, allowed []string) string {
	best, bestD := "", max(2, len(k)/3)+1
	for _, a := range allowed {
		if len(k) > 2*len(a)+2 { // too far apart to suggest; and keeps the cost bounded
			continue
		}
		if dd := editDistance(k, a); dd < bestD {
			best, bestD = a, dd
		}
	}
	if best == "" {
		return fmt.Sprintf(" (allowed: %s)", strings.Join(allowed, ", "))
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (d *decoder) want(n *jnode, path string, k jkind) bool {
	if n.kind != k {
		d.sink.add(n.off, path, "must be %s, not %s", k, n.kind)
		return false
	}
	return true
}

func (d *decoder) str(n *jnode, path string) (string, bool) {
	if n == nil {
		return "", false
	}
	if !d.want(n, path, jString) {
		return "", false
	}
	return n.str, true
}

// number returns a finite number.
func (d *decoder) number(n *jnode, path string) (float64, bool) {
	if !d.want(n, path, jNumber) {
		return 0, false
	}
	f, err := n.num().Float64()
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		d.sink.add(n.off, path, "%s is not a usable number", n.num())
		return 0, false
	}
	return f, true
}

// millis reads a non-negative duration in milliseconds.
func (d *decoder) millis(n *jnode, path string) (time.Duration, bool) {
	f, ok := d.number(n, path)
	if !ok {
		return 0, false
	}
	const maxMS = float64(7 * 24 * time.Hour / time.Millisecond)
	if f < 0 || f > maxMS {
		d.sink.add(n.off, path, "%s ms is outside [0, %.0f] (one week)", n.num(), maxMS)
		return 0, false
	}
	return time.Duration(f * float64(time.Millisecond)), true
}

// text compiles a template string.
func (d *decoder) text(n *jnode, path string) (Text, bool) {
	var src string
	switch n.kind {
	case jString:
		src = n.str
	case jNumber:
		src = n.num().String()
	case jBool:
		src = fmt.Sprint(n.b)
	default:
		d.sink.add(n.off, path, "must be a string (a template), not %s", n.kind)
		return Text{}, false
	}
	where := d.sink.file
	if l, c := d.sink.lineCol(n.off); l > 0 {
		where = fmt.Sprintf("%s:%d:%d", where, l, c)
	}
	where += ": " + path
	t, err := d.prog.compile(src, where)
	if err != nil {
		d.sink.add(n.off, path, "template %s", clipTo(err.Error(), MaxQuote+100))
		return Text{}, false
	}
	return t, true
}

func (d *decoder) actions(n *jnode, path string) []Text {
	if !d.want(n, path, jArray) {
		return nil
	}
	out := make([]Text, 0, len(n.kids))
	for i, e := range n.kids {
		p := fmt.Sprintf("%s[%d]", path, i)
		if e.kind != jString {
			d.sink.add(e.off, p, "an action must be a string (a template), not %s", e.kind)
			continue
		}
		if t, ok := d.text(e, p); ok {
			out = append(out, t)
		}
	}
	return out
}

func (d *decoder) args(n *jnode, path string) []Arg {
	if !d.want(n, path, jObject) {
		return nil
	}
	out := make([]Arg, 0, len(n.keys))
	for i, k := range n.keys {
		if t, ok := d.text(n.kids[i], path+"."+clip(k.name)); ok {
			out = append(out, Arg{Name: k.name, Value: t})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (d *decoder) jsonTemplate(n *jnode, path string) *JSONTemplate {
	j := &JSONTemplate{kind: n.kind}
	switch n.kind {
	case jString:
		t, ok := d.text(n, path)
		if !ok {
			return nil
		}
		j.text = t
	case jArray:
		for i, e := range n.kids {
			c := d.jsonTemplate(e, fmt.Sprintf("%s[%d]", path, i))
			if c == nil {
				return nil
			}
			j.kids = append(j.kids, c)
		}
	case jObject:
		for i, k := range n.keys {
			c := d.jsonTemplate(n.kids[i], path+"."+clip(k.name))
			if c == nil {
				return nil
			}
			j.keys = append(j.keys, k.name)
			j.kids = append(j.kids, c)
		}
	default:
		j.lit = n.toAny()
	}
	return j
}

// sequence decodes {doc, steps} (plus any extra allowed keys, which the
// caller handles).
func (d *decoder) sequence(n *jnode, path string, extra ...string) *Sequence {
	if !d.want(n, path, jObject) {
		return nil
	}
	d.fields(n, path, append([]string{"doc", "steps"}, extra...)...)
	seq := &Sequence{Prog: d.prog}
	if v := n.get("doc"); v != nil {
		seq.Doc, _ = d.str(v, path+" › doc")
	}
	steps := n.get("steps")
	if steps == nil {
		return seq
	}
	if !d.want(steps, path+" › steps", jArray) {
		return seq
	}
	if len(steps.kids) == 0 {
		d.sink.add(steps.off, path+" › steps", "a sequence needs at least one step")
	}
	for i, sn := range steps.kids {
		seq.Steps = append(seq.Steps, d.step(sn, fmt.Sprintf("%s › step %d", path, i+1)))
	}
	return seq
}

func (d *decoder) step(n *jnode, path string) Step {
	st := Step{Where: path}
	if !d.want(n, path, jObject) {
		return st
	}
	d.fields(n, path, "doc", "pre_actions", "request", "post_actions", "delay_after_ms", "choose")
	if v := n.get("doc"); v != nil {
		st.Doc, _ = d.str(v, path+" › doc")
	}
	if v := n.get("pre_actions"); v != nil {
		st.Pre = d.actions(v, path+" › pre_actions")
	}
	var reqPost []Text
	if v := n.get("request"); v != nil {
		st.Request, reqPost = d.request(v, path+" › request")
	}
	st.Post = reqPost
	if v := n.get("post_actions"); v != nil {
		st.Post = append(st.Post, d.actions(v, path+" › post_actions")...)
	}
	if v := n.get("delay_after_ms"); v != nil {
		if v.kind == jArray {
			st.DelayQuantiles = d.delayQuantiles(v, path+" › delay_after_ms")
			st.DelayAfter = st.Delay(0.5)
		} else {
			st.DelayAfter, _ = d.millis(v, path+" › delay_after_ms")
		}
	}
	if v := n.get("choose"); v != nil {
		st.Choose = d.choose(v, path+" › choose")
	}
	if n.get("request") == nil && n.get("pre_actions") == nil && n.get("post_actions") == nil && n.get("delay_after_ms") == nil &&
		n.get("choose") == nil && (len(n.keys) == 0 || (len(n.keys) == 1 && n.keys[0].name == "doc")) {
		d.sink.add(n.off, path, "a step needs a request, actions, a delay or choose")
	}
	return st
}

// delayQuantiles reads `delay_after_ms` given as an array: 2 to
// MaxDelayQuantiles pauses in milliseconds, in non-decreasing order.
func (d *decoder) delayQuantiles(n *jnode, path string) []time.Duration {
	if len(n.kids) < 2 || len(n.kids) > MaxDelayQuantiles {
		d.sink.add(n.off, path, "an array of pauses needs 2 to %d values (the quantiles at evenly spaced probabilities 0 … 1), not %d",
			MaxDelayQuantiles, len(n.kids))
		return nil
	}
	out := make([]time.Duration, 0, len(n.kids))
	for i, e := range n.kids {
		p := fmt.Sprintf("%s[%d]", path, i)
		v, ok := d.millis(e, p)
		if !ok {
			return nil
		}
		if i > 0 && v < out[i-1] {
			d.sink.add(e.off, p, "%s ms is below the value before it: the quantiles must not decrease", e.num())
			return nil
		}
		out = append(out, v)
	}
	return out
}

// choose reads a `choose` step's branches: [{"weight", "doc", "steps"}, …].
func (d *decoder) choose(n *jnode, path string) []Branch {
	if !d.want(n, path, jArray) {
		return nil
	}
	if len(n.kids) == 0 {
		d.sink.add(n.off, path, "needs at least one branch {\"weight\": p, \"steps\": […]}")
		return nil
	}
	if d.depth >= MaxChooseDepth {
		d.sink.add(n.off, path, "choose steps nest more than %d deep", MaxChooseDepth)
		return nil
	}
	d.depth++
	defer func() { d.depth-- }()
	out := make([]Branch, 0, len(n.kids))
	sum := 0.0
	for i, bn := range n.kids {
		p := fmt.Sprintf("%s[%d]", path, i)
		if !d.want(bn, p, jObject) {
			continue
		}
		seq := d.sequence(bn, p, "weight")
		if bn.get("steps") == nil {
			d.sink.add(bn.off, p, "a branch needs \"steps\"")
		}
		wn := bn.get("weight")
		if wn == nil {
			d.sink.add(bn.off, p, "a branch needs \"weight\": the probability it runs, in [0, 1]")
			continue
		}
		w, ok := d.number(wn, p+" › weight")
		if !ok {
			continue
		}
		if w < 0 || w > 1 {
			d.sink.add(wn.off, p+" › weight", "%s is outside [0, 1]: a weight is the probability the branch runs", wn.num())
			continue
		}
		sum += w
		if seq != nil {
			out = append(out, Branch{Weight: w, Sequence: seq})
		}
	}
	if sum > 1+1e-9 {
		d.sink.add(n.off, path, "the weights add up to %g, more than 1: at most one branch runs, with probability its weight", sum)
	}
	return out
}

var httpMethods = map[string]bool{
	http.MethodGet: true, http.MethodPost: true, http.MethodPut: true, http.MethodPatch: true,
	http.MethodDelete: true, http.MethodHead: true, http.MethodOptions: true,
}

func (d *decoder) request(n *jnode, path string) (*Request, []Text) {
	if !d.want(n, path, jObject) {
		return nil, nil
	}
	d.fields(n, path, "type", "key", "method", "args", "url", "headers", "body", "json", "text", "binary", "encoding",
		"await", "error", "timeout_ms", "post_actions")
	r := &Request{}
	tn := n.get("type")
	if tn == nil {
		d.sink.add(n.off, path, "missing \"type\" (one of api, http, ws, connect)")
		return nil, nil
	}
	typ, ok := d.str(tn, path+" › type")
	if !ok {
		return nil, nil
	}
	r.Type = RequestType(typ)
	has := func(k string) bool { return n.get(k) != nil }
	notFor := func(keys ...string) {
		for _, k := range keys {
			if v := n.get(k); v != nil {
				d.sink.add(v.off, path+" › "+k, "%q is not used by %s requests", k, r.Type)
			}
		}
	}
	switch r.Type {
	case API:
		m, ok := d.str(n.get("method"), path+" › method")
		if !ok || m == "" {
			if n.get("method") == nil {
				d.sink.add(n.off, path, "an api request needs \"method\" (e.g. \"conversations.history\")")
			}
		}
		r.Method = m
		if v := n.get("args"); v != nil {
			r.Args = d.args(v, path+" › args")
		}
		notFor("url", "headers", "body", "json", "text", "binary", "encoding", "await", "error")
	case HTTP:
		r.Method = http.MethodGet
		if v := n.get("method"); v != nil {
			if m, ok := d.str(v, path+" › method"); ok {
				r.Method = strings.ToUpper(m)
				if !httpMethods[r.Method] {
					d.sink.add(v.off, path+" › method", "%s is not an HTTP method", quote(m))
				}
			}
		}
		if v := n.get("url"); v != nil {
			r.URL, _ = d.text(v, path+" › url")
		} else {
			d.sink.add(n.off, path, "an http request needs \"url\"")
		}
		if v := n.get("headers"); v != nil {
			r.Headers = d.args(v, path+" › headers")
		}
		if has("body") && has("json") {
			d.sink.add(n.get("json").off, path, "give \"body\" or \"json\", not both")
		}
		if v := n.get("body"); v != nil {
			r.Body, r.HasBody = d.text(v, path+" › body")
		}
		if v := n.get("json"); v != nil {
			r.JSON = d.jsonTemplate(v, path+" › json")
		}
		notFor("args", "text", "binary", "encoding", "await", "error")
	case WS:
		d.wsRequest(n, path, r)
		notFor("method", "args", "url", "headers", "body")
	case Connect:
		notFor("method", "args", "url", "headers", "body", "json", "text", "binary", "encoding", "await", "error")
	default:
		d.sink.add(tn.off, path+" › type", "unknown request type %s (one of api, http, ws, connect)", quote(typ))
		return nil, nil
	}
	if v := n.get("timeout_ms"); v != nil {
		r.Timeout, _ = d.millis(v, path+" › timeout_ms")
	}
	r.Key = metricKey(r)
	if v := n.get("key"); v != nil {
		if k, ok := d.str(v, path+" › key"); ok {
			if msg := keyNameProblem(k); msg != "" {
				d.sink.add(v.off, path+" › key", "%s", msg)
			} else if r.Type == WS && (k == "connect" || k == "disconnect" || strings.HasPrefix(k, "close:")) {
				d.sink.add(v.off, path+" › key", "%s is reserved: ws:%s counts the koi's connections, not requests", quote(k), k)
			} else {
				r.Key = string(r.Type) + ":" + k
			}
		}
	}
	var post []Text
	if v := n.get("post_actions"); v != nil {
		post = d.actions(v, path+" › post_actions")
	}
	return r, post
}

// wsRequest decodes what a ws request sends and waits for.
func (d *decoder) wsRequest(n *jnode, path string, r *Request) {
	var payloads []string
	for _, k := range []string{"text", "json", "binary"} {
		if n.get(k) != nil {
			payloads = append(payloads, k)
		}
	}
	if len(payloads) > 1 {
		d.sink.add(n.get(payloads[1]).off, path, "give one of \"text\", \"json\" or \"binary\", not %s and %s", payloads[0], payloads[1])
	}
	if v := n.get("text"); v != nil {
		r.Text, r.HasText = d.text(v, path+" › text")
	}
	if v := n.get("json"); v != nil {
		r.JSON = d.jsonTemplate(v, path+" › json")
	}
	r.Encoding = Base64
	if v := n.get("encoding"); v != nil {
		p := path + " › encoding"
		if e, ok := d.str(v, p); ok {
			switch Encoding(e) {
			case Base64, Hex, Raw:
				r.Encoding = Encoding(e)
			default:
				d.sink.add(v.off, p, "unknown encoding %s%s", quote(e), didYouMean(e, []string{"base64", "hex", "raw"}))
			}
		}
		if n.get("binary") == nil {
			d.sink.add(v.off, p, "\"encoding\" is for a \"binary\" payload")
		}
	}
	if v := n.get("binary"); v != nil {
		p := path + " › binary"
		if d.want(v, p, jString) {
			if t, ok := d.text(v, p); ok {
				r.Binary, r.HasBinary = t, true
				if t.IsConst() {
					if _, err := r.Encoding.Decode(t.Const); err != nil {
						d.sink.add(v.off, p, "%s", clip(err.Error()))
					}
				}
			}
		}
	}
	if v := n.get("await"); v != nil {
		r.Await = d.await(v, path+" › await")
	}
	if v := n.get("error"); v != nil {
		r.Error = d.errorFrame(v, path+" › error", n.get("await") != nil)
	}
	if len(payloads) == 0 && n.get("await") == nil {
		d.sink.add(n.off, path, "a ws request needs \"text\", \"json\", \"binary\" or \"await\"")
	}
}

// keyNameProblem says what makes s unusable as a request's `key`, or "".
func keyNameProblem(s string) string {
	if s == "" || len(s) > MaxKeyName {
		return fmt.Sprintf("must be 1 to %d bytes, not %d", MaxKeyName, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("_.:/-", c) >= 0) {
			return fmt.Sprintf("%s has %s at byte %d: a key is letters, digits and _ . : / -", quote(s), quoteChar(c), i)
		}
	}
	return ""
}

// hourly reads 24 non-negative multipliers; a mean far from 1 is a warning
// (the daily average frequency then differs from "frequency").
func (d *decoder) hourly(n *jnode, path string) []float64 {
	if !d.want(n, path, jArray) {
		return nil
	}
	if len(n.kids) != 24 {
		d.sink.add(n.off, path, "needs 24 multipliers (one per hour of the day), not %d", len(n.kids))
		return nil
	}
	out := make([]float64, 24)
	sum := 0.0
	for i, e := range n.kids {
		f, ok := d.number(e, fmt.Sprintf("%s[%d]", path, i))
		if !ok {
			return nil
		}
		if f < 0 || f > 1000 {
			d.sink.add(e.off, fmt.Sprintf("%s[%d]", path, i), "%s is outside [0, 1000]", e.num())
			return nil
		}
		out[i] = f
		sum += f
	}
	if mean := sum / 24; mean < 0.95 || mean > 1.05 {
		d.sink.warn(n.off, path, "multipliers average %.3f, not 1: the daily mean frequency becomes %.3f × frequency", mean, mean)
	}
	return out
}

// metricKey names what a request is recorded under, cut to a metric key's
// bounds (metrics.CleanKey) when a method or URL is too long for one.
func metricKey(r *Request) string { return metrics.CleanKey(rawMetricKey(r)) }

func rawMetricKey(r *Request) string {
	switch r.Type {
	case API:
		return "api:" + r.Method
	case HTTP:
		return "http:" + r.Method + " " + r.URL.Src
	case Connect:
		return "connect:open"
	}
	switch {
	case r.Await == nil:
		return "ws:send"
	case r.Await.HasType && r.Await.Type.IsConst():
		return "ws:" + r.Await.Type.Const
	}
	return "ws:match"
}
