// kernel.h declares the C kernels that kernel_c.go calls (kernel.c defines
// them). Matrices are row-major float32; n, c, hs and the like are element
// counts; the Go side checks every length before it calls in.
#ifndef INSTRUCTFLOW_KERNEL_H
#define INSTRUCTFLOW_KERNEL_H

// kernel_init picks the fastest vector level the CPU supports; it runs once,
// before any kernel.
void kernel_init(void);

// kernel_level is the level the kernels use: 2 AVX-512, 1 AVX2+FMA, 0 none.
int kernel_level(void);

// kernel_cpu_level is the best level this CPU supports.
int kernel_cpu_level(void);

// kernel_set_level makes the kernels use level l (at most the CPU's), for
// tests to cover every variant. Not safe while kernels run.
void kernel_set_level(int l);

// kernel_gelu_forward sets out[i] = x*sigmoid(2*sqrt(2/pi)*(x+0.044715*x^3))
// for x = inp[i], the tanh GELU.
void kernel_gelu_forward(float *out, const float *inp, long n);

// kernel_gelu_backward multiplies d[i] by GELU's derivative at inp[i].
void kernel_gelu_backward(float *d, const float *inp, long n);

// kernel_attend sets out (hs) = softmax(scale * q (hs) @ kt (hs,n)) @ v (n,hs)
// for keys stored transposed with rows ldk apart; kt holds klen floats, so
// reads stop at its end. sc (n) is scratch.
void kernel_attend(float *out, const float *q, const float *kt, long klen, const float *v, long n, long hs, long ldk,
	float scale, float *sc);

// kernel_thin computes c (m,n) = alpha * op(a) (m,k) @ b (k,n) + beta*c,
// reading its operands in place; op(a) is a, or with trans_a a's transpose
// (a stored (k,m)). It returns 0, having done nothing, when the CPU has no
// vector unit it is built for: the caller must then use BLAS.
int kernel_thin(long m, long n, long k, float alpha, const float *a, long lda, int trans_a, const float *b, long ldb,
	float beta, float *c, long ldc);

// kernel_sums is what kernel_exps returns.
typedef struct {
	float sum, wsum;
} kernel_sums;

// kernel_exps sets dst[i] = exp(x_i) for x_i = (src[i]-shift)*scale (dst may
// be src) and returns sum(dst) and sum(dst[i]*x_i).
kernel_sums kernel_exps(float *dst, const float *src, long n, float shift, float scale);

// kernel_softmax_causal turns each row t of a (T,T) into the softmax of its
// first t+1 entries and zeroes the rest: one call per attention head.
void kernel_softmax_causal(float *a, long T);

// kernel_add_rows sets (or, accumulating, adds) bias (c) to each of the n
// rows of c floats in out.
void kernel_add_rows(float *out, const float *bias, long n, long c, int accumulate);

// kernel_layernorm_forward normalises the n rows of inp (n,c):
// out = (x-mean)*rstd*w + b with rstd = 1/sqrt(var+eps), and writes mean (n)
// and rstd (n).
void kernel_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
	long n, long c, float eps);

// kernel_layernorm_backward adds to dinp (n,c) the gradient through LayerNorm
// of dout (n,c), and to dw (c) and db (c) the weight and bias gradients.
void kernel_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
	const float *mean, const float *rstd, long n, long c);

#endif // INSTRUCTFLOW_KERNEL_H
