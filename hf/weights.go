package hf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/model"
)

func (f *Folder) specs() []model.TensorSpec {
	ts := make([]model.TensorSpec, len(f.tensors))
	for i, s := range f.tensors {
		ts[i] = s.spec
	}
	return ts
}

// WeightsSize is the byte size of the engine's F32 model.safetensors for
// this folder, what WriteWeights writes.
func (f *Folder) WeightsSize() int64 { return model.F32Size(f.specs()) }

// WriteWeights writes the folder's weights as the engine's F32
// model.safetensors: the names, order and byte layout model.WriteWeights
// uses, so model.Load reads it and equal tensors give equal bytes. F16 and
// BF16 convert exactly. Tensors are read and converted a chunk at a time, so
// memory does not grow with the model; a NaN or infinity, or an
// lm_head.weight that differs from the token embedding, is an error.
func (f *Folder) WriteWeights(w io.Writer) error {
	files := map[string]*os.File{}
	defer func() {
		for _, fh := range files {
			fh.Close()
		}
	}()
	// read fills out (4n bytes) with the F32 values of elements [e0, e0+n)
	// of t, widening in place, and returns the index of the first that is a
	// NaN or an infinity (-1: none).
	read := func(t tensorInfo, e0, n int64, out []byte) (int64, error) {
		fh, ok := files[t.File]
		if !ok {
			var err error
			if fh, err = os.Open(filepath.Join(f.Dir, t.File)); err != nil {
				return 0, err
			}
			files[t.File] = fh
		}
		es := int64(dtypeSize[t.DType])
		raw := out[4*n-es*n : 4*n] // F16 and BF16 widen in place, front to back
		if _, err := fh.ReadAt(raw, t.Offset+e0*es); err != nil {
			return 0, fmt.Errorf("read %s: %w", t.File, err)
		}
		bad := toF32(out[:4*n], raw, t.DType)
		if bad >= 0 {
			bad += e0
		}
		return bad, nil
	}
	if _, err := w.Write(model.F32Header(f.specs())); err != nil {
		return fmt.Errorf("hf: write weights: %w", err)
	}
	const chunk = 1 << 18 // elements
	buf, head := make([]byte, 4*chunk), []byte(nil)
	if f.lmHead != nil {
		head = make([]byte, 4*chunk)
	}
	for i, s := range f.tensors {
		if s.value != nil {
			if _, err := w.Write(binary.LittleEndian.AppendUint32(nil, math.Float32bits(*s.value))); err != nil {
				return fmt.Errorf("hf: write weights: %w", err)
			}
			continue
		}
		for e0 := int64(0); e0 < s.t.count(); e0 += chunk {
			n := min(chunk, s.t.count()-e0)
			bad, err := read(s.t, e0, n, buf)
			if err != nil {
				return fmt.Errorf("hf: write weights: %s: %w", s.name, err)
			}
			if bad >= 0 {
				return errkind.BadInputf("hf: %s: tensor %s has a NaN or infinity at index %d; the weights are damaged or training diverged: use a finite checkpoint", s.t.File, s.name, bad)
			}
			if i == 0 && f.lmHead != nil { // wte comes first: the tied head must equal it
				if _, err := read(*f.lmHead, e0, n, head); err != nil {
					return fmt.Errorf("hf: write weights: lm_head.weight: %w", err)
				}
				if j := firstDiff(buf[:4*n], head[:4*n]); j >= 0 {
					return errkind.BadInputf("hf: %s: lm_head.weight differs from the token embedding (wte.weight) at index %d; this engine ties the LM head to the embedding: use a model with tied embeddings (tie_word_embeddings true)", f.lmHead.File, e0+j)
				}
			}
			if _, err := w.Write(buf[:4*n]); err != nil {
				return fmt.Errorf("hf: write weights: %w", err)
			}
		}
	}
	return nil
}

// firstDiff is the index of the first 4-byte value in which a and b differ,
// or -1.
func firstDiff(a, b []byte) int64 {
	if bytes.Equal(a, b) {
		return -1
	}
	for j := 0; ; j++ {
		if !bytes.Equal(a[4*j:4*j+4], b[4*j:4*j+4]) {
			return int64(j)
		}
	}
}

// toF32 converts raw, little-endian values of dtype, into dst as F32. raw may
// be the tail of dst (in-place widening). It returns the index of the first
// value that is a NaN or an infinity, or -1.
func toF32(dst, raw []byte, dtype string) int64 {
	bad := int64(-1)
	put := func(i int, bits uint32) {
		if bits&0x7f800000 == 0x7f800000 && bad < 0 {
			bad = int64(i)
		}
		binary.LittleEndian.PutUint32(dst[4*i:], bits)
	}
	switch dtype {
	case "F32":
		for i := range len(raw) / 4 {
			put(i, binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case "BF16":
		for i := range len(raw) / 2 {
			put(i, uint32(binary.LittleEndian.Uint16(raw[2*i:]))<<16)
		}
	case "F16":
		for i := range len(raw) / 2 {
			put(i, f16Bits(binary.LittleEndian.Uint16(raw[2*i:])))
		}
	default:
		panic("hf: toF32: dtype " + dtype) // match admits only these
	}
	return bad
}

// f16Bits returns the float32 bits of the IEEE half-precision value h,
// exactly.
func f16Bits(h uint16) uint32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // infinity or NaN
		return sign | 0x7f800000 | mant<<13
	case exp == 0 && mant == 0:
		return sign
	case exp == 0: // subnormal: mant * 2^-24, exact in float32
		return sign | math.Float32bits(float32(mant)*(1.0/(1<<24)))
	default:
		return sign | (exp+127-15)<<23 | mant<<13
	}
}
