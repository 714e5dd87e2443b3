package model

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
)

// RNG is the engine's seeded random number generator (PCG). Its whole state
// round-trips through MarshalText, so a resumed run draws the same numbers as
// one that never stopped.
type RNG struct {
	src *rand.PCG
	r   *rand.Rand
}

// NewRNG returns a generator seeded with seed.
func NewRNG(seed uint64) *RNG {
	src := rand.NewPCG(seed, 0x9e3779b97f4a7c15)
	return &RNG{src: src, r: rand.New(src)}
}

// Float32 returns a uniform number in [0, 1).
func (g *RNG) Float32() float32 { return g.r.Float32() }

// Norm returns a standard normal number.
func (g *RNG) Norm() float32 { return float32(g.r.NormFloat64()) }

// IntN returns a uniform integer in [0, n).
func (g *RNG) IntN(n int) int { return g.r.IntN(n) }

// MarshalText encodes the generator's state.
func (g *RNG) MarshalText() ([]byte, error) {
	b, err := g.src.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("model: marshal rng: %w", err)
	}
	return []byte(base64.StdEncoding.EncodeToString(b)), nil
}

// UnmarshalText restores a state written by MarshalText.
func (g *RNG) UnmarshalText(text []byte) error {
	b, err := base64.StdEncoding.DecodeString(string(text))
	if err != nil {
		return fmt.Errorf("model: unmarshal rng: %w", err)
	}
	src := new(rand.PCG)
	if err := src.UnmarshalBinary(b); err != nil {
		return fmt.Errorf("model: unmarshal rng: %w", err)
	}
	g.src, g.r = src, rand.New(src)
	return nil
}
