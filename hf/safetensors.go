package hf

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
)

// A safetensors file is an 8-byte little-endian header length, a JSON header
// giving each tensor's dtype, shape and byte range in the body, and the
// body. Only the header is read here, with reads bounded by the header
// length, itself bounded by maxHeader and the file's size.

// maxHeader bounds the JSON header so a damaged length cannot ask for
// gigabytes.
const maxHeader = 100 << 20

// dtypeSize is the element size of every dtype safetensors defines.
var dtypeSize = map[string]int{
	"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
	"I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}

// tensorInfo locates one tensor of a safetensors file.
type tensorInfo struct {
	File   string // base name of the file that holds it
	DType  string
	Shape  []int
	Offset int64 // of the first byte of its data, from the start of the file
	Size   int64 // bytes
}

// count is the number of elements.
func (t tensorInfo) count() int64 { return t.Size / int64(dtypeSize[t.DType]) }

type headerEntry struct {
	DType   string    `json:"dtype"`
	Shape   []int     `json:"shape"`
	Offsets [2]uint64 `json:"data_offsets"`
}

// readHeader reads the header of the safetensors file r of size bytes and
// returns its tensors by name (metadata is skipped). file names them.
func readHeader(r io.ReaderAt, size int64, file string) (map[string]tensorInfo, error) {
	if size < 8 {
		return nil, fmt.Errorf("%d bytes, shorter than the 8-byte header length", size)
	}
	var nb [8]byte
	if _, err := r.ReadAt(nb[:], 0); err != nil {
		return nil, fmt.Errorf("read header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(nb[:])
	if n > maxHeader {
		return nil, fmt.Errorf("header length %d is more than %d bytes", n, maxHeader)
	}
	if n > uint64(size-8) {
		return nil, fmt.Errorf("header length %d is beyond the end of the %d-byte file", n, size)
	}
	hb := make([]byte, n)
	if _, err := r.ReadAt(hb, 8); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(hb, &raw); err != nil {
		return nil, fmt.Errorf("header is not JSON: %w", err)
	}
	body := uint64(size) - 8 - n
	type span struct {
		name   string
		lo, hi uint64
	}
	var spans []span
	out := make(map[string]tensorInfo, len(raw))
	for name, msg := range raw {
		if name == "__metadata__" {
			continue
		}
		var e headerEntry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, fmt.Errorf("tensor %s: %w", name, err)
		}
		es, ok := dtypeSize[e.DType]
		if !ok {
			return nil, fmt.Errorf("tensor %s: unknown dtype %q", name, e.DType)
		}
		count := uint64(1)
		for _, d := range e.Shape {
			if d < 0 || (d > 0 && count > math.MaxInt64/8/uint64(d)) {
				return nil, fmt.Errorf("tensor %s: bad shape %v", name, e.Shape)
			}
			count *= uint64(d)
		}
		lo, hi := e.Offsets[0], e.Offsets[1]
		if hi < lo || hi > body {
			return nil, fmt.Errorf("tensor %s: byte range [%d,%d) is outside the %d-byte body", name, lo, hi, body)
		}
		if hi-lo != count*uint64(es) {
			return nil, fmt.Errorf("tensor %s: byte range [%d,%d) does not hold %s%v", name, lo, hi, e.DType, e.Shape)
		}
		spans = append(spans, span{name, lo, hi})
		out[name] = tensorInfo{File: file, DType: e.DType, Shape: slices.Clip(e.Shape), Offset: int64(8 + n + lo), Size: int64(hi - lo)}
	}
	slices.SortFunc(spans, func(a, b span) int {
		return cmp.Or(cmp.Compare(a.lo, b.lo), cmp.Compare(a.hi, b.hi))
	})
	for i := 1; i < len(spans); i++ {
		if a, b := spans[i-1], spans[i]; b.lo < a.hi {
			return nil, fmt.Errorf("tensors %s and %s overlap", a.name, b.name)
		}
	}
	return out, nil
}
