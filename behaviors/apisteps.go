package behaviors

// HasAPISteps reports whether any sequence of the set sends an `api`
// request: a run whose set has none may leave api_base out. Formations are
// not part of a set; check theirs with (*Sequence).HasAPISteps.
func (s *Set) HasAPISteps() bool {
	for _, seq := range s.sequences() {
		if seq.HasAPISteps() {
			return true
		}
	}
	return false
}

// sequences lists every sequence the set holds (nil entries allowed):
// boot, the behaviors, and the connection hooks when the set has them.
func (s *Set) sequences() []*Sequence {
	out := make([]*Sequence, 0, len(s.Behaviors)+1)
	out = append(out, s.Boot, s.OnConnect, s.OnDisconnect)
	for _, b := range s.Behaviors {
		out = append(out, b.Sequence)
	}
	for _, h := range s.OnEvent {
		if h != nil {
			out = append(out, h.Sequence)
		}
	}
	return out
}

// HasAPISteps reports whether any step of the sequence, `choose`
// branches included, sends an `api` request.
func (q *Sequence) HasAPISteps() bool {
	found := false
	q.EachStep(func(st *Step) {
		if r := st.Request; r != nil && r.Type == API {
			found = true
		}
	})
	return found
}
