package kernel

import (
	"math"
	"math/rand/v2"
	"testing"
)

// naive is the reference: c = alpha*op(a)*op(b) + beta*c in float64.
func naive(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) []float32 {
	out := make([]float32, len(c))
	copy(out, c)
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				ai, bi := i*lda+p, p*ldb+j
				if transA {
					ai = p*lda + i
				}
				if transB {
					bi = j*ldb + p
				}
				av, bv := a[ai], b[bi]
				s += float64(av) * float64(bv)
			}
			prev := float64(0)
			if beta != 0 {
				prev = float64(beta) * float64(c[i*ldc+j])
			}
			out[i*ldc+j] = float32(float64(alpha)*s + prev)
		}
	}
	return out
}

func TestGemm(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	fill := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(rng.NormFloat64())
		}
		return s
	}
	tests := []gemmCase{
		{"nn", false, false, 7, 5, 9, 1, 0, 0},
		{"nt", false, true, 8, 13, 6, 1, 0, 0},
		{"tn", true, false, 5, 7, 11, 0.5, 1, 0},
		{"tt", true, true, 6, 4, 3, 2, 0.25, 0},
		{"strided nn", false, false, 16, 17, 33, -1, 1, 3},
		{"strided nt beta", false, true, 9, 31, 12, 1, 1, 5},
		{"k zero scales c", false, false, 3, 4, 0, 1, 0.5, 0},
		{"thin tiles and edges", false, false, 9, 150, 33, 1, 0, 3},
		{"thin tiles beta", false, false, 16, 128, 40, 0.5, 0.5, 0},
		{"above thin", false, false, 70, 130, 20, 1, 1, 1},
		{"in place tn strided", true, false, 70, 150, 45, 0.5, 1, 3},
		{"in place k blocks", false, false, 13, 70, 1100, 1, 0, 2},
		{"in place tn k blocks beta", true, false, 9, 100, 1030, 1, 0.5, 0},
	}
	start := Level()
	defer SetLevel(start)
	for _, level := range Levels() {
		if err := SetLevel(level); err != nil {
			t.Fatal(err)
		}
		for _, tc := range tests {
			t.Run(level+"/"+tc.name, func(t *testing.T) { testGemm(t, fill, tc) })
		}
	}
}

type gemmCase struct {
	name           string
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	pad            int // extra columns in every stride
}

func testGemm(t *testing.T, fill func(int) []float32, tc gemmCase) {
	ar, ac := tc.m, tc.k
	if tc.transA {
		ar, ac = tc.k, tc.m
	}
	br, bc := tc.k, tc.n
	if tc.transB {
		br, bc = tc.n, tc.k
	}
	lda, ldb, ldc := ac+tc.pad, bc+tc.pad, tc.n+tc.pad
	a, b, c := fill(ar*lda), fill(br*ldb), fill(tc.m*ldc)
	if tc.beta == 0 {
		c[0] = float32(math.NaN()) // beta 0 must ignore old contents
	}
	want := naive(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	Gemm(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	for i := range tc.m {
		for j := range tc.n {
			got, w := c[i*ldc+j], want[i*ldc+j]
			if math.Abs(float64(got-w)) > 1e-4*(1+math.Abs(float64(w))) {
				t.Fatalf("%s: c[%d,%d] = %v, want %v", Name, i, j, got, w)
			}
		}
	}
}

func TestGemmShortSlicePanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("no panic for a short slice")
		}
	}()
	Gemm(false, false, 2, 2, 2, 1, make([]float32, 3), 2, make([]float32, 4), 2, 0, make([]float32, 4), 2)
}
