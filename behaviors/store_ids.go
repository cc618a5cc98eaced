package behaviors

import (
	"fmt"
	"strconv"
	"sync"
)

// idCounters are a koi's id sources: uniqueID's counter, the seqID
// sequences and the MQTT-style packet id. They have their own lock, so
// taking an id never waits for the store's collections.
type idCounters struct {
	mu     sync.Mutex
	unique uint64
	packet uint16
	seq    map[string]int64
}

// UniqueID returns an id no other koi of the run and no other call of this
// koi returns: "<koi index>-<counter>".
func (s *Store) UniqueID() string {
	s.ids.mu.Lock()
	s.ids.unique++
	n := s.ids.unique
	s.ids.mu.Unlock()
	return strconv.Itoa(s.id.Index) + "-" + strconv.FormatUint(n, 10)
}

// SeqID returns the next number of the koi's sequence name, starting at 1.
// A koi keeps at most maxSeqNames sequences, each named by 1 to maxSeqName
// bytes.
func (s *Store) SeqID(name string) (int64, error) {
	if name == "" || len(name) > maxSeqName {
		return 0, fmt.Errorf("seqID: a sequence name is 1 to %d bytes, not %d", maxSeqName, len(name))
	}
	s.ids.mu.Lock()
	defer s.ids.mu.Unlock()
	n, ok := s.ids.seq[name]
	if !ok && len(s.ids.seq) >= maxSeqNames {
		return 0, fmt.Errorf("seqID %s: the koi already counts %d sequences", quote(name), maxSeqNames)
	}
	if s.ids.seq == nil {
		s.ids.seq = make(map[string]int64, 4)
	}
	n++
	s.ids.seq[name] = n
	return n, nil
}

// NextPacketID returns the koi's next packet id: 1 to 65535, then 1 again
// (MQTT's packet ids are never 0).
func (s *Store) NextPacketID() int {
	s.ids.mu.Lock()
	defer s.ids.mu.Unlock()
	s.ids.packet++
	if s.ids.packet == 0 {
		s.ids.packet = 1
	}
	return int(s.ids.packet)
}
