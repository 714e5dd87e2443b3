package postgres

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"

	"github.com/instructflow/instructflow/errkind"
)

// contentHashPrefix names the format of a snapshot's hash (see
// migrations/004_roles.sql, which computes the same in SQL).
const contentHashPrefix = "instructflow label snapshot v2"

// contentHash computes a snapshot's hash from its rows, which must come in
// ascending id order and be exactly the snapshot's ids.
type contentHash struct {
	ids  []int64
	n    int
	h    hash.Hash
	row  hash.Hash
	sum8 [8]byte
}

func newContentHash(ids []int64) *contentHash {
	c := &contentHash{ids: ids, h: sha256.New(), row: sha256.New()}
	c.h.Write([]byte(contentHashPrefix))
	return c
}

// add hashes one comparison: u64(id) || s(labeler) || s(split) || s(prompt)
// || u64(K) || (s(response) || u64(rank)) for each response in shown order.
func (c *contentHash) add(r ExportRow) error {
	if c.n >= len(c.ids) || r.ID != c.ids[c.n] {
		return fmt.Errorf("comparison %d is not the snapshot's next one: %w", r.ID, errkind.Corrupt)
	}
	if len(r.Responses) != len(r.Ranks) {
		return fmt.Errorf("comparison %d has %d responses and %d ranks: %w", r.ID, len(r.Responses), len(r.Ranks), errkind.Corrupt)
	}
	c.n++
	c.row.Reset()
	c.u64(uint64(r.ID))
	c.str(r.Labeler)
	c.str(r.Split)
	c.str(r.Prompt)
	c.u64(uint64(len(r.Responses)))
	for i, text := range r.Responses {
		c.str(text)
		c.u64(uint64(r.Ranks[i]))
	}
	c.h.Write(c.row.Sum(nil))
	return nil
}

func (c *contentHash) u64(v uint64) {
	binary.BigEndian.PutUint64(c.sum8[:], v)
	c.row.Write(c.sum8[:])
}

func (c *contentHash) str(s string) {
	c.u64(uint64(len(s)))
	c.row.Write([]byte(s))
}

// sum returns the hash once every id was added.
func (c *contentHash) sum() ([32]byte, error) {
	var out [32]byte
	if c.n != len(c.ids) {
		return out, fmt.Errorf("%d of the snapshot's %d comparisons are in the database: %w", c.n, len(c.ids), errkind.Corrupt)
	}
	c.h.Sum(out[:0])
	return out, nil
}

// check compares the hash with the stored one.
func (c *contentHash) check(stored [32]byte) error {
	got, err := c.sum()
	if err != nil {
		return err
	}
	if got != stored {
		return fmt.Errorf("its content (texts, ranks, labelers or splits) no longer matches the hash it was frozen with (stored %x, now %x); the labels behind it were changed outside InstructFlow, so do not train on it: restore the database from a backup or make a new snapshot: %w",
			stored[:6], got[:6], errkind.Corrupt)
	}
	return nil
}
