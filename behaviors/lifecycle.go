package behaviors

import "fmt"

// EventHandler is what runs when a frame of one type arrives (a key of
// "on_event"): actions run at once on the koi's reader, with `.` = the
// frame's value; a sequence runs on its own goroutine and may send (the
// frame's value is the sequence variable "event").
type EventHandler struct {
	Actions  []Text
	Sequence *Sequence
}

// MaxEventSequences is how many on_event sequences one koi runs at once;
// a frame arriving while they are all busy is dropped (counted busy).
const MaxEventSequences = 4

// where a sequence sits, for the request types it may use.
type seqPlace int

const (
	placeBoot         seqPlace = iota // boot: any request
	placeOnDisconnect                 // the connection has ended: no ws, no connect
	placeOther                        // behaviors, sequences, on_connect, on_event, formations: no connect
)

// checkPlace reports requests a sequence may not hold where it sits: a
// connect request outside boot, a ws request in on_disconnect. It reads
// the file's tree again (the sequence is already decoded), so each error
// points at the request's type.
func (d *decoder) checkPlace(n *jnode, path string, place seqPlace) {
	if n == nil || n.kind != jObject {
		return
	}
	steps := n.get("steps")
	if steps == nil || steps.kind != jArray {
		return
	}
	for i, sn := range steps.kids {
		if sn.kind != jObject {
			continue
		}
		if cn := sn.get("choose"); cn != nil && cn.kind == jArray {
			for j, bn := range cn.kids {
				d.checkPlace(bn, fmt.Sprintf("%s › step %d › choose[%d]", path, i+1, j), place)
			}
		}
		rn := sn.get("request")
		if rn == nil || rn.kind != jObject {
			continue
		}
		tn := rn.get("type")
		if tn == nil || tn.kind != jString {
			continue
		}
		p := fmt.Sprintf("%s › step %d › request › type", path, i+1)
		switch {
		case tn.str == string(Connect) && place != placeBoot:
			d.sink.add(tn.off, p, "a connect request runs only in boot (on_connect runs on every connect by itself)")
		case tn.str == string(WS) && place == placeOnDisconnect:
			d.sink.add(tn.off, p, "a ws request cannot run in on_disconnect: the connection has ended (actions, api and http requests only)")
		}
	}
}

// eventHandler decodes one on_event entry: an array of actions, or a
// sequence object.
func (d *decoder) eventHandler(n *jnode, path string) (acts []Text, seq *Sequence) {
	switch n.kind {
	case jArray:
		return d.actions(n, path), nil
	case jObject:
		seq = d.sequence(n, path)
		d.checkPlace(n, path, placeOther)
		return nil, seq
	}
	d.sink.add(n.off, path, "must be an array of actions or a sequence object {\"steps\": […]}, not %s", n.kind)
	return nil, nil
}
