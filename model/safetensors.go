package model

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// A safetensors file is an 8-byte little-endian header length, a JSON header
// naming each tensor's dtype, shape and byte range, and the raw data.

// stTensor is one tensor of a safetensors file.
type stTensor struct {
	Name  string
	DType string // F32, I32, ...
	Shape []int
	Data  []byte // little-endian
}

type stEntry struct {
	DType   string `json:"dtype"`
	Shape   []int  `json:"shape"`
	Offsets [2]int `json:"data_offsets"`
}

var dtypeSize = map[string]int{"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}

// maxHeader bounds the JSON header so a corrupt length cannot ask for
// gigabytes.
const maxHeader = 100 << 20

// parseHeader decodes a safetensors JSON header: each tensor's entry by
// name, checked to be self-consistent (known dtype, a shape whose size fits,
// a byte range of exactly that size), and the metadata.
func parseHeader(hdr []byte) (map[string]stEntry, map[string]string, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &raw); err != nil {
		return nil, nil, fmt.Errorf("safetensors: header: %w", err)
	}
	var meta map[string]string
	entries := make(map[string]stEntry, len(raw))
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &meta); err != nil {
				return nil, nil, fmt.Errorf("safetensors: metadata: %w", err)
			}
			continue
		}
		var e stEntry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: %w", name, err)
		}
		size, ok := dtypeSize[e.DType]
		if !ok {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: unknown dtype %q", name, e.DType)
		}
		count := 1
		for _, d := range e.Shape {
			if d < 0 || (d > 0 && count > math.MaxInt32/d) {
				return nil, nil, fmt.Errorf("safetensors: tensor %s: bad shape %v", name, e.Shape)
			}
			count *= d
		}
		if lo, hi := e.Offsets[0], e.Offsets[1]; lo < 0 || hi < lo || hi-lo != count*size {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: byte range [%d,%d) does not hold %s%v", name, lo, hi, e.DType, e.Shape)
		}
		entries[name] = e
	}
	return entries, meta, nil
}

// headerLen reads the 8-byte header length that starts a safetensors file
// and bounds it.
func headerLen(b []byte) (int, error) {
	n := binary.LittleEndian.Uint64(b)
	if n > maxHeader {
		return 0, fmt.Errorf("safetensors: header length %d is more than a header holds (%d)", n, maxHeader)
	}
	return int(n), nil
}

// parseSafetensors returns the tensors of a safetensors file by name, and
// its metadata. The tensors' data alias data.
func parseSafetensors(data []byte) (map[string]stTensor, map[string]string, error) {
	if len(data) < 8 {
		return nil, nil, errors.New("safetensors: file shorter than its 8-byte header length")
	}
	n, err := headerLen(data)
	if err != nil {
		return nil, nil, err
	}
	if n > len(data)-8 {
		return nil, nil, fmt.Errorf("safetensors: header length %d does not fit a %d-byte file", n, len(data))
	}
	entries, meta, err := parseHeader(data[8 : 8+n])
	if err != nil {
		return nil, nil, err
	}
	body := data[8+n:]
	tensors := make(map[string]stTensor, len(entries))
	for name, e := range entries {
		lo, hi := e.Offsets[0], e.Offsets[1]
		if hi > len(body) {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: byte range [%d,%d) is outside the %d-byte body", name, lo, hi, len(body))
		}
		tensors[name] = stTensor{Name: name, DType: e.DType, Shape: e.Shape, Data: body[lo:hi:hi]}
	}
	return tensors, meta, nil
}

// stHeader is the start of a safetensors file holding tensors of these
// dtypes, shapes and sizes, in this order, with metadata: the 8-byte header
// length and the JSON header, padded to 8 bytes. The output is a function of
// its input only, so equal tensors give equal bytes.
func stHeader(tensors []stTensor, size func(stTensor) int, meta map[string]string) []byte {
	var h bytes.Buffer
	h.WriteByte('{')
	if len(meta) > 0 {
		mb, _ := json.Marshal(meta) // keys sorted; strings always marshal
		h.WriteString(`"__metadata__":`)
		h.Write(mb)
	}
	off := 0
	for i, t := range tensors {
		if i > 0 || len(meta) > 0 {
			h.WriteByte(',')
		}
		name, _ := json.Marshal(t.Name)
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		n := size(t)
		e, _ := json.Marshal(stEntry{DType: t.DType, Shape: shape, Offsets: [2]int{off, off + n}})
		h.Write(name)
		h.WriteByte(':')
		h.Write(e)
		off += n
	}
	h.WriteByte('}')
	for (8+h.Len())%8 != 0 {
		h.WriteByte(' ')
	}
	out := binary.LittleEndian.AppendUint64(make([]byte, 0, 8+h.Len()), uint64(h.Len()))
	return append(out, h.Bytes()...)
}

// writeSafetensors writes tensors, in order, with metadata. The output is a
// function of its input only, so equal tensors give equal bytes.
func writeSafetensors(w io.Writer, tensors []stTensor, meta map[string]string) error {
	if _, err := w.Write(stHeader(tensors, func(t stTensor) int { return len(t.Data) }, meta)); err != nil {
		return err
	}
	for _, t := range tensors {
		if _, err := w.Write(t.Data); err != nil {
			return err
		}
	}
	return nil
}

// f32Bytes returns s as little-endian bytes.
func f32Bytes(s []float32) []byte {
	b := make([]byte, 4*len(s))
	for i, v := range s {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// readF32 copies a F32 tensor's data into dst, which must have its size.
func readF32(dst []float32, t stTensor) {
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
}

// lookup finds name in a file, also under Hugging Face's other spellings:
// GPT2Model files have no "transformer." prefix.
func lookup(tensors map[string]stTensor, name string) (stTensor, bool) {
	if t, ok := tensors[name]; ok {
		return t, true
	}
	t, ok := tensors[strings.TrimPrefix(name, "transformer.")]
	return t, ok
}

// checkF32 reports whether t can fill a tensor of shape want.
func checkF32(t stTensor, want []int) error {
	if t.DType != "F32" {
		return fmt.Errorf("tensor %s has dtype %s, want F32", t.Name, t.DType)
	}
	if !slices.Equal(t.Shape, want) {
		return fmt.Errorf("tensor %s has shape %v, want %v", t.Name, t.Shape, want)
	}
	return nil
}
