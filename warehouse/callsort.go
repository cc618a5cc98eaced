package warehouse

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// callKey is one call in a callSorter's chunk: the chunk's user index, the
// time and the method. Chunk order is input order (the sort is stable).
type callKey struct {
	ms     int64
	user   uint32
	method uint16
}

// callKeyBytes is a callKey's size in a chunk, for the memory budget.
const callKeyBytes = 16

// skewTolerance is how far back in time a user's call may be, against the
// user's previous call in the input, before it is counted as out of order
// (Sessions notes it: clock skew between parts, or an unordered export).
const skewTolerance = 5 * time.Second

// callSorter collects every call (user, time in ms, method) and streams
// them back per user in time order, ties in input order, with an external
// sort like counter's: chunks within a memory budget are sorted and
// spilled to run files, then merged. Unlike counter it keeps every call
// (two calls in one millisecond are two calls). Not safe for concurrent
// use.
type callSorter struct {
	budget   int64
	tmpDir   string
	maxFanIn int

	keys      []callKey
	userIdx   map[string]uint32
	users     []string
	userBytes int64
	// lastMS and lastPart are each chunk user's previous call in the
	// input, to see time going backwards.
	lastMS   []int64
	lastPart []int32

	runs []string

	// Out of order: calls more than skewTolerance before the same user's
	// previous call in the input (within a chunk), by whether that call
	// came from another part; the largest step back.
	backInPart, backAcross int64
	maxBack                int64
	backUser               string
}

func newCallSorter(budget int64, tmpDir string, maxFanIn int) *callSorter {
	return &callSorter{budget: budget, tmpDir: tmpDir, maxFanIn: maxFanIn, userIdx: map[string]uint32{}}
}

// add records one call of part number part. user may alias a reused buffer.
func (c *callSorter) add(user string, ms int64, method uint16, part int32) error {
	u, ok := c.userIdx[user]
	if !ok {
		if len(c.users) >= 1<<userBits-1 {
			if err := c.spill(); err != nil {
				return err
			}
			return c.add(user, ms, method, part)
		}
		user = strings.Clone(user)
		u = uint32(len(c.users))
		c.userIdx[user] = u
		c.users = append(c.users, user)
		c.lastMS = append(c.lastMS, ms)
		c.lastPart = append(c.lastPart, part)
		c.userBytes += int64(len(user)) + perUserMem + 12
	} else {
		if back := c.lastMS[u] - ms; back > skewTolerance.Milliseconds() {
			if c.lastPart[u] == part {
				c.backInPart++
			} else {
				c.backAcross++
			}
			if back > c.maxBack {
				c.maxBack, c.backUser = back, c.users[u]
			}
		}
		c.lastMS[u], c.lastPart[u] = ms, part
	}
	if len(c.keys) == cap(c.keys) {
		if c.mem() >= c.budget && len(c.keys) >= minChunk {
			if err := c.spill(); err != nil {
				return err
			}
			return c.add(user, ms, method, part)
		}
		limit := int((c.budget - c.userBytes) / callKeyBytes)
		n := min(max(2*cap(c.keys), minChunk), max(limit, len(c.keys)+minChunk))
		c.keys = slices.Grow(c.keys, n-len(c.keys))
	}
	c.keys = append(c.keys, callKey{ms: ms, user: u, method: method})
	return nil
}

func (c *callSorter) mem() int64 { return int64(cap(c.keys))*callKeyBytes + c.userBytes }

// sortChunk sorts the chunk by user name, then time, ties in input order,
// and returns the users by rank with the keys' user fields set to ranks.
func (c *callSorter) sortChunk() []string {
	rank, ranked := rankUsers(c.users)
	for i := range c.keys {
		c.keys[i].user = rank[c.keys[i].user]
	}
	slices.SortStableFunc(c.keys, func(a, b callKey) int {
		if a.user != b.user {
			if a.user < b.user {
				return -1
			}
			return 1
		}
		switch {
		case a.ms < b.ms:
			return -1
		case a.ms > b.ms:
			return 1
		}
		return 0
	})
	return ranked
}

func (c *callSorter) resetChunk() {
	c.keys = c.keys[:0]
	clear(c.userIdx)
	c.users = c.users[:0]
	c.lastMS = c.lastMS[:0]
	c.lastPart = c.lastPart[:0]
	c.userBytes = 0
}

// spill writes the chunk as a sorted run (runWriter's format, the time in
// ms where counter writes minutes) and empties it.
func (c *callSorter) spill() error {
	users := c.sortChunk()
	f, err := os.CreateTemp(c.tmpDir, "koipond-warehouse-calls-*")
	if err != nil {
		return fmt.Errorf("spilling sorted calls: %w", err)
	}
	c.runs = append(c.runs, f.Name())
	w := newRunWriter(f)
	for _, k := range c.keys {
		w.write(users[k.user], k.ms, k.method)
	}
	if err := w.close(); err != nil {
		return fmt.Errorf("spilling sorted calls to %s: %w", f.Name(), err)
	}
	c.resetChunk()
	return nil
}

func (c *callSorter) cleanup() {
	for _, r := range c.runs {
		os.Remove(r)
	}
	c.runs = nil
}

// each streams every call in (user, time, input) order to emit; user is
// valid only during the call. The run files are removed.
func (c *callSorter) each(ctx context.Context, emit func(user []byte, newUser bool, ms int64, m uint16) error) error {
	defer c.cleanup()
	if len(c.runs) == 0 {
		users := c.sortChunk()
		prev := ^uint32(0)
		var name []byte
		for i, k := range c.keys {
			if i&0xffff == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if k.user != prev {
				name = append(name[:0], users[k.user]...)
			}
			if err := emit(name, k.user != prev, k.ms, k.method); err != nil {
				return err
			}
			prev = k.user
		}
		c.resetChunk()
		return nil
	}
	if len(c.keys) > 0 {
		if err := c.spill(); err != nil {
			return err
		}
	}
	c.keys, c.users, c.lastMS, c.lastPart = nil, nil, nil, nil
	err := reduceRuns(ctx, &c.runs, c.maxFanIn, c.tmpDir, "koipond-warehouse-calls-*", "sorted calls",
		func(ctx context.Context, group []string, w *runWriter) error {
			return mergeSorted(ctx, group, false, "sorted calls", func(user []byte, newUser bool, ms int64, m uint16) error {
				w.writeBytes(user, newUser, ms, m)
				return nil
			})
		})
	if err != nil {
		return err
	}
	return mergeSorted(ctx, c.runs, false, "sorted calls", emit)
}
