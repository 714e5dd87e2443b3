// Package preference holds InstructFlow's preference data: rankings of K
// responses to a prompt by one labeler, their validation and content hash.
package preference

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Ranking is one labeler's judgement of K >= 2 responses to a prompt.
// Responses are in the order they were shown; Ranks[i] is the rank of
// Responses[i], 1 = best, equal ranks are ties.
type Ranking struct {
	Prompt    string
	Responses []string
	Ranks     []int
	Labeler   string
}

// Validate reports the first thing wrong with r, in words a labeler's tool
// author can act on.
func (r Ranking) Validate() error {
	switch {
	case r.Prompt == "":
		return errors.New("preference: empty prompt")
	case strings.TrimSpace(r.Labeler) == "":
		return fmt.Errorf("preference: labeler %q is blank: name the labeler", r.Labeler)
	case len(r.Responses) < 2:
		return fmt.Errorf("preference: %d responses; a ranking needs at least 2", len(r.Responses))
	case len(r.Ranks) != len(r.Responses):
		return fmt.Errorf("preference: %d ranks for %d responses; give one rank per response", len(r.Ranks), len(r.Responses))
	}
	if strings.IndexByte(r.Prompt, 0) >= 0 || strings.IndexByte(r.Labeler, 0) >= 0 || slices.ContainsFunc(r.Responses, func(s string) bool { return strings.IndexByte(s, 0) >= 0 }) {
		return errors.New(`preference: a prompt, response or labeler holds a NUL character (\u0000), which Postgres cannot store`)
	}
	seen := make(map[string]int, len(r.Responses))
	for i, resp := range r.Responses {
		if resp == "" {
			return fmt.Errorf("preference: response %d is empty", i)
		}
		if j, dup := seen[resp]; dup {
			return fmt.Errorf("preference: responses %d and %d are identical", j, i)
		}
		seen[resp] = i
		if r.Ranks[i] < 1 || r.Ranks[i] > len(r.Responses) {
			return fmt.Errorf("preference: rank %d of response %d is outside 1..%d", r.Ranks[i], i, len(r.Responses))
		}
	}
	return nil
}

// NormHash is the SHA-256 of s with its white space normalised (fields
// joined by one space): texts equal up to white space share it. The audit
// uses it to find near-duplicates and degenerate pairs.
func NormHash(s string) [32]byte {
	return sha256.Sum256([]byte(strings.Join(strings.Fields(s), " ")))
}

// ContentHash is the SHA-256 of the ranking's content: prompt, responses in
// shown order, ranks and labeler, each length-prefixed so that no two
// different rankings share an encoding. Re-importing the same ranking yields
// the same hash.
func (r Ranking) ContentHash() [32]byte {
	h := sha256.New()
	var n [8]byte
	field := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(r.Prompt)
	binary.BigEndian.PutUint64(n[:], uint64(len(r.Responses)))
	h.Write(n[:])
	for i, resp := range r.Responses {
		field(resp)
		binary.BigEndian.PutUint64(n[:], uint64(r.Ranks[i]))
		h.Write(n[:])
	}
	field(r.Labeler)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}
