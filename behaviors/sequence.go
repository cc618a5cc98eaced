package behaviors

import (
	"fmt"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"
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
	// time scaling.
	DelayAfter time.Duration
	// Where names the step for errors, e.g. `behavior "x" › step 1`.
	Where string
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
	// Await, for ws, waits for a matching incoming frame.
	Await *Await
	// Timeout bounds the request (0: the koi's default).
	Timeout time.Duration
	// Key is the metric key the request is recorded under, fixed when the
	// file is loaded: "api:<method>", "http:<METHOD> <url as written>",
	// "ws:<awaited event>", "ws:match" (awaits a pattern) or "ws:send".
	Key string
}

// Await describes the frame a ws request waits for: the next frame whose
// JSON "type" equals Event and/or whose raw text matches Match.
type Await struct {
	Event   string
	Match   *regexp.Regexp
	Timeout time.Duration
}

// Matches reports whether a frame satisfies the await.
func (a *Await) Matches(eventType string, raw []byte) bool {
	if a.Event != "" && a.Event != eventType {
		return false
	}
	if a.Match != nil && !a.Match.Match(raw) {
		return false
	}
	return true
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
// execution with its own).
func (j *JSONTemplate) Render(p *Program, env *Env, data any) (any, error) {
	return j.render(p, env, data, p.NewBudget())
}

func (j *JSONTemplate) render(p *Program, env *Env, data any, b *Budget) (any, error) {
	if err := b.Charge("a JSON body", 16); err != nil {
		return nil, err
	}
	switch j.kind {
	case jString:
		s, err := p.Render(env, j.text, data)
		if err != nil {
			return nil, err
		}
		return s, b.Charge("a JSON body", len(s))
	case jArray:
		out := make([]any, len(j.kids))
		for i, e := range j.kids {
			v, err := e.render(p, env, data, b)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case jObject:
		out := make(map[string]any, len(j.keys))
		for i, k := range j.keys {
			v, err := j.kids[i].render(p, env, data, b)
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
	d.fields(n, path, "doc", "pre_actions", "request", "post_actions", "delay_after_ms")
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
		st.DelayAfter, _ = d.millis(v, path+" › delay_after_ms")
	}
	if n.get("request") == nil && n.get("pre_actions") == nil && n.get("post_actions") == nil && n.get("delay_after_ms") == nil &&
		(len(n.keys) == 0 || (len(n.keys) == 1 && n.keys[0].name == "doc")) {
		d.sink.add(n.off, path, "a step needs a request, actions or a delay")
	}
	return st
}

var httpMethods = map[string]bool{
	http.MethodGet: true, http.MethodPost: true, http.MethodPut: true, http.MethodPatch: true,
	http.MethodDelete: true, http.MethodHead: true, http.MethodOptions: true,
}

func (d *decoder) request(n *jnode, path string) (*Request, []Text) {
	if !d.want(n, path, jObject) {
		return nil, nil
	}
	d.fields(n, path, "type", "method", "args", "url", "headers", "body", "json", "text", "await", "timeout_ms", "post_actions")
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
		notFor("url", "headers", "body", "json", "text", "await")
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
		notFor("args", "text", "await")
	case WS:
		if has("text") && has("json") {
			d.sink.add(n.get("json").off, path, "give \"text\" or \"json\", not both")
		}
		if v := n.get("text"); v != nil {
			r.Text, r.HasText = d.text(v, path+" › text")
		}
		if v := n.get("json"); v != nil {
			r.JSON = d.jsonTemplate(v, path+" › json")
		}
		if v := n.get("await"); v != nil {
			r.Await = d.await(v, path+" › await")
		}
		if !has("text") && !has("json") && !has("await") {
			d.sink.add(n.off, path, "a ws request needs \"text\", \"json\" or \"await\"")
		}
		notFor("method", "args", "url", "headers", "body")
	case Connect:
		notFor("method", "args", "url", "headers", "body", "json", "text", "await")
	default:
		d.sink.add(tn.off, path+" › type", "unknown request type %s (one of api, http, ws, connect)", quote(typ))
		return nil, nil
	}
	if v := n.get("timeout_ms"); v != nil {
		r.Timeout, _ = d.millis(v, path+" › timeout_ms")
	}
	r.Key = metricKey(r)
	var post []Text
	if v := n.get("post_actions"); v != nil {
		post = d.actions(v, path+" › post_actions")
	}
	return r, post
}

func (d *decoder) await(n *jnode, path string) *Await {
	if !d.want(n, path, jObject) {
		return nil
	}
	d.fields(n, path, "event", "match", "timeout_ms")
	a := &Await{Timeout: DefaultAwaitTimeout}
	if v := n.get("event"); v != nil {
		a.Event, _ = d.str(v, path+" › event")
	}
	if v := n.get("match"); v != nil {
		if s, ok := d.str(v, path+" › match"); ok {
			re, err := regexp.Compile(s)
			if err != nil {
				d.sink.add(v.off, path+" › match", "bad regular expression: %v", err)
			}
			a.Match = re
		}
	}
	if a.Event == "" && a.Match == nil && n.get("match") == nil {
		d.sink.add(n.off, path, "await needs \"event\" and/or \"match\"")
	}
	if v := n.get("timeout_ms"); v != nil {
		if t, ok := d.millis(v, path+" › timeout_ms"); ok && t > 0 {
			a.Timeout = t
		}
	}
	return a
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

// metricKey names what a request is recorded under.
func metricKey(r *Request) string {
	switch r.Type {
	case API:
		return "api:" + r.Method
	case HTTP:
		return "http:" + r.Method + " " + r.URL.Src
	}
	switch {
	case r.Await == nil:
		return "ws:send"
	case r.Await.Event != "":
		return "ws:" + r.Await.Event
	}
	return "ws:match"
}
