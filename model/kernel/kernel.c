//go:build cgo && amd64 && !purego

// The kernels behind kernel_c.go (see kernel.h for what each computes). Each
// one that benefits from wider vectors is written once, as a macro, and
// instantiated per target: AVX-512 (_avx512), AVX2+FMA (_avx2) and plain
// x86-64 (_base). The kernel_* entry points dispatch on the level that
// kernel_init found, so one binary runs the fastest variant the CPU supports.
// Each variant adds in a fixed order, so a level gives the same bits on every
// run; different levels may differ in the last bits.

// Comparisons cannot trap: lets GCC turn the clamps into min/max and vectorise.
#pragma GCC optimize("no-trapping-math")
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernel.h"

#define TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma,prefer-vector-width=512")))
#define TARGET_AVX2 __attribute__((target("avx2,fma")))

// level is the vector unit the kernels use: 2 AVX-512, 1 AVX2+FMA, 0 none.
// kernel_init sets it once, before any kernel runs.
static int level;

void kernel_init(void) {
	__builtin_cpu_init();
	level = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") ? 2
		: __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
}

int kernel_level(void) { return level; }

void kernel_set_level(int l) { level = l; }

// kexp is exp with Cephes' range reduction and polynomial, branch-free so
// that the loops below vectorise.
static inline __attribute__((always_inline)) float kexp(float x) {
	x = x < -87.33654f ? -87.33654f : x;
	x = x > 88.0f ? 88.0f : x;
	float t = x * 1.44269504088896341f + 12582912.0f; // round(x*log2(e)) in t's low bits
	float n = t - 12582912.0f;
	float r = x - n * 0.693359375f - n * -2.12194440e-4f;
	float y = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r
		+ 4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f;
	y = y * r * r + r + 1.0f;
	int32_t bits;
	memcpy(&bits, &t, 4);
	bits = (bits - 0x4B400000 + 127) << 23;
	float scale;
	memcpy(&scale, &bits, 4);
	return y * scale;
}

// vf16 is 16 floats that GCC keeps in vector registers (zmm, or pairs of
// ymm / quadruples of xmm on smaller units); loads and stores go through
// memcpy, which compiles to unaligned vector moves.
typedef float vf16 __attribute__((vector_size(64), aligned(4)));

// ---------------------------------------------------------------------------
// GELU

#define GELU_K 0.7978845608028654f

// GELU_LOOPS defines the forward and backward loops under a target
// attribute; the fastest one the CPU supports is picked at run time.
#define GELU_LOOPS(suffix, target)                                                              \
	target static void gelu_forward##suffix(float *out, const float *inp, long n) {            \
		for (long i = 0; i < n; i++) {                                                     \
			float x = inp[i];                                                          \
			float u = 2.0f * GELU_K * (x + 0.044715f * x * x * x);                     \
			out[i] = x / (1.0f + kexp(-u));                                            \
		}                                                                                  \
	}                                                                                          \
	target static void gelu_backward##suffix(float *d, const float *inp, long n) {             \
		for (long i = 0; i < n; i++) {                                                     \
			float x = inp[i];                                                          \
			float u = 2.0f * GELU_K * (x + 0.044715f * x * x * x);                     \
			float s = 1.0f / (1.0f + kexp(-u));                                        \
			d[i] *= s + 2.0f * x * s * (1.0f - s) * GELU_K * (1.0f + 3.0f * 0.044715f * x * x); \
		}                                                                                  \
	}

GELU_LOOPS(_avx512, TARGET_AVX512)
GELU_LOOPS(_avx2, TARGET_AVX2)
GELU_LOOPS(_base, )

void kernel_gelu_forward(float *out, const float *inp, long n) {
	switch (level) {
	case 2: gelu_forward_avx512(out, inp, n); break;
	case 1: gelu_forward_avx2(out, inp, n); break;
	default: gelu_forward_base(out, inp, n);
	}
}

void kernel_gelu_backward(float *d, const float *inp, long n) {
	switch (level) {
	case 2: gelu_backward_avx512(d, inp, n); break;
	case 1: gelu_backward_avx2(d, inp, n); break;
	default: gelu_backward_base(d, inp, n);
	}
}

// ---------------------------------------------------------------------------
// Attention over a key/value cache

// ATTEND defines one query's attention under a target attribute. The sums
// stay in registers: scores in blocks of up to 4 vectors of 16 positions,
// each a sum over d in order; the output in blocks of up to 4 vectors of 16
// lanes, each a sum over positions in order. A key vector that would run
// past the end of kt (klen floats) is copied, only its positions below n,
// into a zeroed vector first. Lanes past the last full vector of the
// output use MULADD(a, b, c), a*b+c computed as the vector lanes compute it:
// fused where the target has FMA.
#define ATTEND(suffix, target, MULADD)                                                              \
	target static inline __attribute__((always_inline)) void scores##suffix(float *sc,          \
		const float *q, const float *kt, long klen, long ldk, long hs, float scale, long j0,    \
		long n, const int nv) {                                                                 \
		vf16 acc[4];                                                                            \
		for (int b = 0; b < nv; b++) acc[b] = (vf16){0};                                        \
		long tail = n - j0 - 16 * (nv - 1);                                                         \
		tail = tail < 16 ? tail : 16;                                                           \
		long room = klen - j0 - 16 * nv;                                                        \
		long dfull = room < 0 ? 0 : room / ldk + 1 < hs ? room / ldk + 1 : hs;                  \
		for (long d = 0; d < dfull; d++) {                                                      \
			float x = q[d] * scale;                                                         \
			const float *kr = kt + d * ldk + j0;                                            \
			for (int b = 0; b < nv; b++) {                                                  \
				vf16 k;                                                                 \
				memcpy(&k, kr + 16 * b, 64);                                            \
				acc[b] += x * k;                                                        \
			}                                                                               \
		}                                                                                       \
		for (long d = dfull; d < hs; d++) {                                                     \
			float x = q[d] * scale;                                                         \
			const float *kr = kt + d * ldk + j0;                                            \
			for (int b = 0; b < nv; b++) {                                                  \
				vf16 k = (vf16){0};                                                     \
				memcpy(&k, kr + 16 * b, (size_t)(b < nv - 1 ? 16 : tail) * 4);         \
				acc[b] += x * k;                                                        \
			}                                                                               \
		}                                                                                       \
		for (int b = 0; b < nv; b++) {                                                          \
			long w = n - j0 - 16 * b;                                                       \
			if (w >= 16)                                                                    \
				memcpy(sc + j0 + 16 * b, &acc[b], 64);                                  \
			else                                                                            \
				for (long l = 0; l < w; l++) sc[j0 + 16 * b + l] = acc[b][l];           \
		}                                                                                       \
	}                                                                                               \
	target static inline __attribute__((always_inline)) void weigh##suffix(float *out,          \
		const float *sc, float inv, const float *v, long n, long hs, long d0, const int nv) {   \
		vf16 acc[4];                                                                            \
		for (int b = 0; b < nv; b++) acc[b] = (vf16){0};                                        \
		for (long j = 0; j < n; j++) {                                                          \
			float w = sc[j] * inv;                                                          \
			const float *vr = v + j * hs + d0;                                              \
			for (int b = 0; b < nv; b++) {                                                  \
				vf16 x;                                                                 \
				memcpy(&x, vr + 16 * b, 64);                                            \
				acc[b] += w * x;                                                        \
			}                                                                               \
		}                                                                                       \
		for (int b = 0; b < nv; b++) memcpy(out + d0 + 16 * b, &acc[b], 64);                   \
	}                                                                                               \
	target static void attend##suffix(float *out, const float *q, const float *kt, long klen,    \
		const float *v, long n, long hs, long ldk, float scale, float *sc) {                   \
		for (long j0 = 0; j0 < n; j0 += 64) {                                                   \
			switch ((n - j0 + 15) / 16) {                                                   \
			case 1: scores##suffix(sc, q, kt, klen, ldk, hs, scale, j0, n, 1); break;       \
			case 2: scores##suffix(sc, q, kt, klen, ldk, hs, scale, j0, n, 2); break;       \
			case 3: scores##suffix(sc, q, kt, klen, ldk, hs, scale, j0, n, 3); break;       \
			default: scores##suffix(sc, q, kt, klen, ldk, hs, scale, j0, n, 4);             \
			}                                                                               \
		}                                                                                       \
		float m = sc[0];                                                                        \
		for (long j = 1; j < n; j++) m = sc[j] > m ? sc[j] : m;                                 \
		float sum = 0.0f;                                                                       \
		for (long j = 0; j < n; j++) {                                                          \
			float e = kexp(sc[j] - m);                                                      \
			sc[j] = e;                                                                      \
			sum += e;                                                                       \
		}                                                                                       \
		float inv = 1.0f / sum;                                                                 \
		long d0 = 0;                                                                            \
		for (; d0 + 16 <= hs; d0 += 64) {                                                       \
			switch ((hs - d0) / 16) {                                                       \
			case 1: weigh##suffix(out, sc, inv, v, n, hs, d0, 1); break;                    \
			case 2: weigh##suffix(out, sc, inv, v, n, hs, d0, 2); break;                    \
			case 3: weigh##suffix(out, sc, inv, v, n, hs, d0, 3); break;                    \
			default: weigh##suffix(out, sc, inv, v, n, hs, d0, 4);                          \
			}                                                                               \
		}                                                                                       \
		for (long d = hs - hs % 16; d < hs; d++) {                                              \
			float o = 0.0f;                                                                 \
			for (long j = 0; j < n; j++) o = MULADD(sc[j] * inv, v[j * hs + d], o);          \
			out[d] = o;                                                                     \
		}                                                                                       \
	}

#define FUSED(a, b, c) __builtin_fmaf(a, b, c)
#define UNFUSED(a, b, c) ((a) * (b) + (c))
ATTEND(_avx512, TARGET_AVX512, FUSED)
ATTEND(_avx2, TARGET_AVX2, FUSED)
ATTEND(_base, , UNFUSED)

void kernel_attend(float *out, const float *q, const float *kt, long klen, const float *v, long n, long hs, long ldk,
	float scale, float *sc) {
	switch (level) {
	case 2: attend_avx512(out, q, kt, klen, v, n, hs, ldk, scale, sc); break;
	case 1: attend_avx2(out, q, kt, klen, v, n, hs, ldk, scale, sc); break;
	default: attend_base(out, q, kt, klen, v, n, hs, ldk, scale, sc);
	}
}

// ---------------------------------------------------------------------------
// Thin GEMM

// THIN defines c (m,n) = alpha * a (m,k) @ b (k,n) + beta*c for small m
// under a target attribute. It reads b in place, without the packing copy
// that dominates BLAS on thin products: register tiles of 4 rows by
// 16*COLS_V columns (vector-extension accumulators the compiler keeps in
// registers), a plain loop for the edges. Each c element is a sum over k in
// order, whichever path computes it.
#define THIN(suffix, target, COLS_V)                                                               \
	target static void thin##suffix(long m, long n, long k, float alpha, const float *a, long lda, \
		const float *b, long ldb, float beta, float *c, long ldc) {                           \
		long tn = 16 * (COLS_V), n_full = n - n % tn, m_full = m - m % 4;                     \
		for (long i0 = 0; i0 < m_full; i0 += 4) {                                             \
			for (long j0 = 0; j0 < n_full; j0 += tn) {                                    \
				vf16 acc[4][COLS_V];                                                  \
				for (int r = 0; r < 4; r++)                                           \
					for (int v = 0; v < (COLS_V); v++) acc[r][v] = (vf16){0};     \
				for (long p = 0; p < k; p++) {                                        \
					const float *br = b + p * ldb + j0;                           \
					vf16 bv[COLS_V];                                              \
					for (int v = 0; v < (COLS_V); v++) memcpy(&bv[v], br + 16 * v, 64); \
					for (int r = 0; r < 4; r++) {                                 \
						float x = a[(i0 + r) * lda + p];                      \
						for (int v = 0; v < (COLS_V); v++) acc[r][v] += x * bv[v]; \
					}                                                             \
				}                                                                     \
				for (int r = 0; r < 4; r++) {                                         \
					float *cr = c + (i0 + r) * ldc + j0;                          \
					for (int v = 0; v < (COLS_V); v++)                            \
						for (int l = 0; l < 16; l++) {                        \
							float old = beta == 0.0f ? 0.0f : beta * cr[16 * v + l]; \
							cr[16 * v + l] = alpha * acc[r][v][l] + old;  \
						}                                                     \
				}                                                                     \
			}                                                                             \
		}                                                                                     \
		for (long i = 0; i < m; i++) {                                                        \
			for (long j0 = i < m_full ? n_full : 0; j0 < n; j0 += 64) {                   \
				long w = n - j0 < 64 ? n - j0 : 64;                                   \
				float acc[64] = {0};                                                  \
				for (long p = 0; p < k; p++) {                                        \
					float x = a[i * lda + p];                                     \
					const float *br = b + p * ldb + j0;                           \
					for (long j = 0; j < w; j++) acc[j] += x * br[j];             \
				}                                                                     \
				float *cr = c + i * ldc + j0;                                         \
				for (long j = 0; j < w; j++)                                          \
					cr[j] = alpha * acc[j] + (beta == 0.0f ? 0.0f : beta * cr[j]); \
			}                                                                             \
		}                                                                                     \
	}

THIN(_avx512, TARGET_AVX512, 4)
THIN(_avx2, TARGET_AVX2, 1)

int kernel_thin(long m, long n, long k, float alpha, const float *a, long lda, const float *b, long ldb, float beta,
	float *c, long ldc) {
	switch (level) {
	case 2: thin_avx512(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); return 1;
	case 1: thin_avx2(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); return 1;
	}
	return 0;
}

// ---------------------------------------------------------------------------
// Softmax: exp and sums, causal rows, bias rows

// EXPS defines dst = exp((src - shift) * scale) under a target attribute,
// returning the sum of dst and, through wsum, of dst * (src - shift) *
// scale. Sums keep 16 lanes added in a fixed order.
#define EXPS(suffix, target)                                                                       \
	target static float exps##suffix(float *dst, const float *src, long n, float shift, float scale, \
		float *wsum) {                                                                        \
		float acc[16] = {0}, wacc[16] = {0};                                                  \
		long i = 0;                                                                           \
		for (; i + 16 <= n; i += 16)                                                          \
			for (int l = 0; l < 16; l++) {                                                \
				float x = (src[i + l] - shift) * scale;                               \
				float e = kexp(x);                                                    \
				dst[i + l] = e;                                                       \
				acc[l] += e;                                                          \
				wacc[l] += e * x;                                                     \
			}                                                                             \
		for (; i < n; i++) {                                                                  \
			float x = (src[i] - shift) * scale;                                           \
			float e = kexp(x);                                                            \
			dst[i] = e;                                                                   \
			acc[i & 15] += e;                                                             \
			wacc[i & 15] += e * x;                                                        \
		}                                                                                     \
		float s = 0.0f, w = 0.0f;                                                             \
		for (int l = 0; l < 16; l++) {                                                        \
			s += acc[l];                                                                  \
			w += wacc[l];                                                                 \
		}                                                                                     \
		*wsum = w;                                                                            \
		return s;                                                                             \
	}

EXPS(_avx512, TARGET_AVX512)
EXPS(_avx2, TARGET_AVX2)
EXPS(_base, )

kernel_sums kernel_exps(float *dst, const float *src, long n, float shift, float scale) {
	kernel_sums r;
	switch (level) {
	case 2: r.sum = exps_avx512(dst, src, n, shift, scale, &r.wsum); break;
	case 1: r.sum = exps_avx2(dst, src, n, shift, scale, &r.wsum); break;
	default: r.sum = exps_base(dst, src, n, shift, scale, &r.wsum);
	}
	return r;
}

void kernel_softmax_causal(float *a, long T) {
	for (long t = 0; t < T; t++) {
		float *row = a + t * T;
		long n = t + 1;
		float m = row[0];
		for (long i = 1; i < n; i++)
			m = row[i] > m ? row[i] : m;
		float inv = 1.0f / kernel_exps(row, row, n, m, 1.0f).sum;
		for (long i = 0; i < n; i++)
			row[i] *= inv;
		memset(row + n, 0, (size_t)(T - n) * sizeof(float));
	}
}

void kernel_add_rows(float *out, const float *bias, long n, long c, int accumulate) {
	for (long r = 0; r < n; r++) {
		float *o = out + r * c;
		if (accumulate)
			for (long i = 0; i < c; i++)
				o[i] += bias[i];
		else
			memcpy(o, bias, (size_t)c * sizeof(float));
	}
}

// ---------------------------------------------------------------------------
// LayerNorm

// LN defines LayerNorm's forward and backward under a target attribute.
// Row sums keep 16 lanes added in a fixed order.
#define LN(suffix, target)                                                                        \
	target static float sum16##suffix(const float *x, const float *y, long c, float shift) {  \
		float acc[16] = {0};                                                              \
		long i = 0;                                                                       \
		for (; i + 16 <= c; i += 16)                                                      \
			for (int l = 0; l < 16; l++)                                              \
				acc[l] += y ? x[i + l] * y[i + l] : (x[i + l] - shift) * (x[i + l] - shift); \
		for (; i < c; i++) acc[i & 15] += y ? x[i] * y[i] : (x[i] - shift) * (x[i] - shift); \
		float s = 0.0f;                                                                   \
		for (int l = 0; l < 16; l++) s += acc[l];                                         \
		return s;                                                                         \
	}                                                                                         \
	target static void ln_forward##suffix(float *out, float *mean, float *rstd, const float *inp, \
		const float *w, const float *b, long n, long c, float eps) {                      \
		for (long r = 0; r < n; r++) {                                                    \
			const float *x = inp + r * c;                                             \
			float *o = out + r * c;                                                   \
			float acc[16] = {0};                                                      \
			long i = 0;                                                               \
			for (; i + 16 <= c; i += 16)                                              \
				for (int l = 0; l < 16; l++) acc[l] += x[i + l];                  \
			for (; i < c; i++) acc[i & 15] += x[i];                                   \
			float m = 0.0f;                                                           \
			for (int l = 0; l < 16; l++) m += acc[l];                                 \
			m /= (float)c;                                                            \
			float s = 1.0f / sqrtf(sum16##suffix(x, 0, c, m) / (float)c + eps);       \
			for (long j = 0; j < c; j++) o[j] = (x[j] - m) * s * w[j] + b[j];         \
			mean[r] = m;                                                              \
			rstd[r] = s;                                                              \
		}                                                                                 \
	}                                                                                         \
	target static void ln_backward##suffix(float *dinp, float *dw, float *db, const float *dout, \
		const float *inp, const float *w, const float *mean, const float *rstd, long n, long c) { \
		for (long r = 0; r < n; r++) {                                                    \
			const float *x = inp + r * c, *d = dout + r * c;                          \
			float *di = dinp + r * c;                                                 \
			float m = mean[r], s = rstd[r];                                           \
			float a1[16] = {0}, a2[16] = {0};                                         \
			long i = 0;                                                               \
			for (; i + 16 <= c; i += 16)                                              \
				for (int l = 0; l < 16; l++) {                                    \
					float dn = w[i + l] * d[i + l];                           \
					a1[l] += dn;                                              \
					a2[l] += dn * (x[i + l] - m) * s;                         \
				}                                                                 \
			for (; i < c; i++) {                                                      \
				float dn = w[i] * d[i];                                           \
				a1[i & 15] += dn;                                                 \
				a2[i & 15] += dn * (x[i] - m) * s;                                \
			}                                                                         \
			float dm = 0.0f, dnm = 0.0f;                                              \
			for (int l = 0; l < 16; l++) {                                            \
				dm += a1[l];                                                      \
				dnm += a2[l];                                                     \
			}                                                                         \
			dm /= (float)c;                                                           \
			dnm /= (float)c;                                                          \
			for (long j = 0; j < c; j++) {                                            \
				float norm = (x[j] - m) * s;                                      \
				di[j] += (w[j] * d[j] - dm - norm * dnm) * s;                     \
				dw[j] += norm * d[j];                                             \
				db[j] += d[j];                                                    \
			}                                                                         \
		}                                                                                 \
	}

LN(_avx512, TARGET_AVX512)
LN(_avx2, TARGET_AVX2)
LN(_base, )

void kernel_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
	long n, long c, float eps) {
	switch (level) {
	case 2: ln_forward_avx512(out, mean, rstd, inp, w, b, n, c, eps); break;
	case 1: ln_forward_avx2(out, mean, rstd, inp, w, b, n, c, eps); break;
	default: ln_forward_base(out, mean, rstd, inp, w, b, n, c, eps);
	}
}

void kernel_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
	const float *mean, const float *rstd, long n, long c) {
	switch (level) {
	case 2: ln_backward_avx512(dinp, dw, db, dout, inp, w, mean, rstd, n, c); break;
	case 1: ln_backward_avx2(dinp, dw, db, dout, inp, w, mean, rstd, n, c); break;
	default: ln_backward_base(dinp, dw, db, dout, inp, w, mean, rstd, n, c);
	}
}
