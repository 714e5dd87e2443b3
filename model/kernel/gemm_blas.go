//go:build cgo && amd64 && !purego

package kernel

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
void openblas_set_num_threads(int num_threads);
*/
import "C"

import (
	"fmt"
	"slices"
	"strings"
	"unsafe"
)

// Name says which kernel this build uses.
const Name = "openblas"

// BLASCore names the kernels OpenBLAS picked for this CPU when the process
// started (such as "skylakex" or "haswell"; OPENBLAS_CORETYPE forces one).
func BLASCore() string { return C.GoString(C.openblas_get_corename()) }

// blasCores are the OpenBLAS cores with AVX2 and FMA, by the
// names openblas_get_corename gives, in lower case.
var blasCores = []string{"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"}

// BLASAdvice returns, when OpenBLAS picked kernels older than the C
// kernels' level (it names some virtual CPUs Prescott, its SSE3 kernels,
// although they have AVX-512), what to set to fix it; otherwise "".
func BLASAdvice() string {
	core := BLASCore()
	if level() == 0 || slices.Contains(blasCores, strings.ToLower(core)) {
		return ""
	}
	want := "Haswell"
	if level() == 2 {
		want = "SkylakeX"
	}
	return fmt.Sprintf("OpenBLAS runs its %s kernels on a CPU with %s; training runs several times faster with OPENBLAS_CORETYPE=%s in the environment", core, Level(), want)
}

func init() {
	// The engine parallelises over fixed chunks; OpenBLAS must not add threads
	// of its own.
	C.openblas_set_num_threads(1)
}

func gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if !transB && k > 0 && InPlace(transA, m) {
		thin(transA, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	ta, tb := uint32(C.CblasNoTrans), uint32(C.CblasNoTrans)
	if transA {
		ta = C.CblasTrans
	}
	if transB {
		tb = C.CblasTrans
	}
	var pa, pb *float32
	if k > 0 {
		pa, pb = &a[0], &b[0]
	}
	C.cblas_sgemm(C.CblasRowMajor, ta, tb, C.blasint(m), C.blasint(n), C.blasint(k),
		C.float(alpha), (*C.float)(unsafe.Pointer(pa)), C.blasint(max(lda, 1)),
		(*C.float)(unsafe.Pointer(pb)), C.blasint(max(ldb, 1)),
		C.float(beta), (*C.float)(unsafe.Pointer(&c[0])), C.blasint(ldc))
}
