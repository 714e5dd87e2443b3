package kernel

import (
	"fmt"
	"math"
	"syscall"
	"testing"
	"unsafe"
)

func TestGelu(t *testing.T) {
	var inp []float32
	for x := -12.0; x <= 12; x += 0.01 {
		inp = append(inp, float32(x))
	}
	inp = append(inp, -100, 100, 0)
	out, d := make([]float32, len(inp)), make([]float32, len(inp))
	for i := range d {
		d[i] = 1
	}
	Gelu(out, inp)
	GeluBackward(d, inp)
	for i, x32 := range inp {
		x := float64(x32)
		th := math.Tanh(geluK * (x + 0.044715*x*x*x))
		want := 0.5 * x * (1 + th)
		dwant := 0.5*(1+th) + 0.5*x*(1-th*th)*geluK*(1+3*0.044715*x*x)
		if math.Abs(float64(out[i])-want) > 1e-6*(1+math.Abs(want)) {
			t.Fatalf("%s: gelu(%v) = %v, want %v", Name, x, out[i], want)
		}
		if math.Abs(float64(d[i])-dwant) > 1e-6*(1+math.Abs(dwant)) {
			t.Fatalf("%s: gelu'(%v) = %v, want %v", Name, x, d[i], dwant)
		}
	}
}

func TestExpf(t *testing.T) {
	for x := float32(-87); x < 88; x += 0.173 {
		got, want := float64(Expf(x)), math.Exp(float64(x))
		if math.Abs(got-want) > 3e-7*want {
			t.Fatalf("Expf(%v) = %v, want %v", x, got, want)
		}
	}
	if Expf(-200) > 1.2e-38 || Expf(200) < 1e38 || math.IsInf(float64(Expf(200)), 0) {
		t.Fatalf("Expf does not saturate: %v, %v", Expf(-200), Expf(200))
	}
}

// TestAttend puts the keys and values at the end of their memory, followed
// by a page that faults when read, so that a kernel reading past either
// fails the test.
func TestAttend(t *testing.T) {
	for _, tc := range []struct{ n, hs, ldk int }{
		{1, 32, 64}, {7, 32, 64}, {50, 64, 50}, {13, 20, 40}, {100, 80, 100}, {130, 48, 131},
		{64, 32, 64}, {17, 16, 17}, {3, 4, 3}, {71, 32, 128},
	} {
		q, kt, v := make([]float32, tc.hs), guarded(t, (tc.hs-1)*tc.ldk+tc.n), guarded(t, tc.n*tc.hs)
		for i := range q {
			q[i] = float32(i%7) - 3
		}
		for i := range kt {
			kt[i] = float32(i%11)*0.1 - 0.5
		}
		if tc.n < tc.ldk { // positions past n are not keys: attention must ignore them
			kt[tc.n] = float32(math.NaN())
		}
		for i := range v {
			v[i] = float32(i%5) - 2
		}
		scale := float32(0.3)
		out, scores := make([]float32, tc.hs), make([]float32, tc.n)
		Attend(out, q, kt, v, tc.n, tc.hs, tc.ldk, scale, scores)
		// reference in float64
		s := make([]float64, tc.n)
		var mx, sum float64
		for j := range s {
			for d := range tc.hs {
				s[j] += float64(q[d]) * float64(kt[d*tc.ldk+j])
			}
			s[j] *= float64(scale)
			if j == 0 || s[j] > mx {
				mx = s[j]
			}
		}
		for j := range s {
			s[j] = math.Exp(s[j] - mx)
			sum += s[j]
		}
		for d := range tc.hs {
			var want float64
			for j := range s {
				want += s[j] / sum * float64(v[j*tc.hs+d])
			}
			if math.Abs(float64(out[d])-want) > 1e-5*(1+math.Abs(want)) {
				t.Fatalf("%s n=%d hs=%d: out[%d] = %v, want %v", Name, tc.n, tc.hs, d, out[d], want)
			}
		}
	}
}

// guarded returns n floats that end where an unreadable page begins.
func guarded(t *testing.T, n int) []float32 {
	page := syscall.Getpagesize()
	size := (n*4+page-1)/page*page + page
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Munmap(mem) })
	if err := syscall.Mprotect(mem[size-page:], syscall.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&mem[size-page-n*4])), n)
}

func TestExps(t *testing.T) {
	for _, n := range []int{1, 15, 16, 100, 2048} {
		src, dst := make([]float32, n), make([]float32, n)
		for i := range src {
			src[i] = float32(i%37)*0.3 - 5
		}
		const shift, scale = 2, 0.7
		sum, wsum := Exps(dst, src, shift, scale)
		var ws, ww float64
		for i, v := range src {
			x := (float64(v) - shift) * scale
			e := math.Exp(x)
			if math.Abs(float64(dst[i])-e) > 1e-6*e {
				t.Fatalf("%s n=%d: dst[%d] = %v, want %v", Name, n, i, dst[i], e)
			}
			ws += e
			ww += e * x
		}
		if math.Abs(float64(sum)-ws) > 1e-5*ws || math.Abs(float64(wsum)-ww) > 1e-5*(1+math.Abs(ww)) {
			t.Fatalf("%s n=%d: sums %v, %v; want %v, %v", Name, n, sum, wsum, ws, ww)
		}
	}
}

// TestEveryLevel reruns the kernel tests on every vector variant this CPU
// supports (the fastest is the one used otherwise).
func TestEveryLevel(t *testing.T) {
	ls := levels()
	defer setLevel(ls[len(ls)-1])
	for _, l := range ls {
		setLevel(l)
		t.Run(fmt.Sprint("level", l), func(t *testing.T) {
			TestGemm(t)
			TestGelu(t)
			TestAttend(t)
			TestExps(t)
			TestLayerNorm(t)
		})
	}
}

func TestLayerNorm(t *testing.T) {
	const n, c, eps = 3, 37, 1e-5
	inp, w, b, dout := make([]float32, n*c), make([]float32, c), make([]float32, c), make([]float32, n*c)
	for i := range inp {
		inp[i], dout[i] = float32(i%13)*0.3-1, float32(i%7)-3
	}
	for i := range w {
		w[i], b[i] = 1+float32(i%5)*0.1, float32(i%3)*0.2
	}
	out, mean, rstd := make([]float32, n*c), make([]float32, n), make([]float32, n)
	LayerNorm(out, mean, rstd, inp, w, b, n, c, eps)
	dinp, dw, db := make([]float32, n*c), make([]float32, c), make([]float32, c)
	LayerNormBackward(dinp, dw, db, dout, inp, w, mean, rstd, n, c)
	wantDW, wantDB := make([]float64, c), make([]float64, c)
	for r := range n {
		x, d := inp[r*c:(r+1)*c], dout[r*c:(r+1)*c]
		var m, v float64
		for _, xi := range x {
			m += float64(xi)
		}
		m /= c
		for _, xi := range x {
			v += (float64(xi) - m) * (float64(xi) - m)
		}
		s := 1 / math.Sqrt(v/c+eps)
		var g1, g2 float64 // mean of w*d and of w*d*norm
		for i := range x {
			norm := (float64(x[i]) - m) * s
			if want := norm*float64(w[i]) + float64(b[i]); math.Abs(float64(out[r*c+i])-want) > 1e-5 {
				t.Fatalf("%s: out[%d,%d] = %v, want %v", Name, r, i, out[r*c+i], want)
			}
			g1 += float64(w[i]) * float64(d[i]) / c
			g2 += float64(w[i]) * float64(d[i]) * norm / c
			wantDW[i] += norm * float64(d[i])
			wantDB[i] += float64(d[i])
		}
		for i := range x {
			norm := (float64(x[i]) - m) * s
			want := (float64(w[i])*float64(d[i]) - g1 - norm*g2) * s
			if math.Abs(float64(dinp[r*c+i])-want) > 1e-4*(1+math.Abs(want)) {
				t.Fatalf("%s: dinp[%d,%d] = %v, want %v", Name, r, i, dinp[r*c+i], want)
			}
		}
	}
	for i := range c {
		if math.Abs(float64(dw[i])-wantDW[i]) > 1e-4*(1+math.Abs(wantDW[i])) || math.Abs(float64(db[i])-wantDB[i]) > 1e-4 {
			t.Fatalf("%s: dw[%d], db[%d] = %v, %v; want %v, %v", Name, i, i, dw[i], db[i], wantDW[i], wantDB[i])
		}
	}
}

func TestSoftmaxCausalAndAddRows(t *testing.T) {
	const T = 5
	a := make([]float32, T*T)
	for i := range a {
		a[i] = float32(i%7) - 3
	}
	SoftmaxCausal(a, T)
	for r := range T {
		var sum float64
		for c := range T {
			v := a[r*T+c]
			if c > r && v != 0 {
				t.Fatalf("row %d col %d above the diagonal is %v", r, c, v)
			}
			sum += float64(v)
		}
		if math.Abs(sum-1) > 1e-6 {
			t.Fatalf("row %d sums to %v", r, sum)
		}
	}
	out := []float32{1, 1, 1, 2, 2, 2}
	AddRows(out, []float32{1, 2, 3}, 2, 3, true)
	AddRows(out[3:], []float32{7, 8, 9}, 1, 3, false)
	if fmt.Sprint(out) != "[2 3 4 7 8 9]" {
		t.Fatalf("AddRows: %v", out)
	}
}
