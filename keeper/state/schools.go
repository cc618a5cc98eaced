package state

import "fmt"

// SchoolCount returns how many schools are stored.
func (r *Reader) SchoolCount() int {
	it, err := r.tx.Get(TableSchools, indexID)
	if err != nil {
		panic("state: " + err.Error()) // schema mismatch: a programming error
	}
	n := 0
	for obj := it.Next(); obj != nil; obj = it.Next() {
		n++
	}
	return n
}

// DeleteSchool forgets a school, in memory and in the bucket. Deleting a
// school that is not stored changes nothing. Its assignments are the
// caller's to remove first: a school holding koi is not forgotten.
func (t *Txn) DeleteSchool(id string) error {
	cur := t.School(nil, id)
	if cur == nil {
		return nil
	}
	if err := t.tx.Delete(TableSchools, cur); err != nil {
		return fmt.Errorf("state: delete from %s: %w", TableSchools, err)
	}
	prev := *cur
	prev.Status = nil // as persisted (PutSchool)
	return recordChange(t, schoolKey(id), nil, &prev)
}
