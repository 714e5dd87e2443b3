package kernel

import "fmt"

// Attend computes one query's attention over n cached positions:
// out (hs) = softmax(scale * q (hs) @ kt (hs,n)) @ v (n,hs). The keys are
// stored transposed, kt's rows ldk apart, so that both loops run over
// contiguous memory; v's rows are contiguous. scores (n) is scratch. The
// kernel may read keys past position n of a row (whole vectors), but never
// past the end of kt; those positions do not enter the result.
func Attend(out, q, kt, v []float32, n, hs, ldk int, scale float32, scores []float32) {
	if n < 1 || hs < 1 || len(out) < hs || len(q) < hs || len(scores) < n || ldk < n ||
		len(kt) < (hs-1)*ldk+n || len(v) < n*hs {
		panic(fmt.Sprintf("kernel: attend: slices too short for n=%d hs=%d ldk=%d", n, hs, ldk))
	}
	attend(out, q, kt, v, n, hs, ldk, scale, scores)
}
