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
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernel.h"

#define TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma,prefer-vector-width=512")))
#define TARGET_AVX2 __attribute__((target("avx2,fma")))

// level is the vector unit the kernels use: 2 AVX-512, 1 AVX2+FMA, 0 none;
// cpu_level is the best this CPU has. kernel_init sets both once, before
// any kernel runs.
static int level, cpu_level;

void kernel_init(void) {
	__builtin_cpu_init();
	cpu_level = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") ? 2
		: __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
	level = cpu_level;
}

int kernel_level(void) { return level; }

int kernel_cpu_level(void) { return cpu_level; }

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

// Each level's vector: its type (V), lanes (VL), and the operations the
// kernels below use, as intrinsics so that GCC keeps the accumulators in
// registers (GCC's generic vector types spill to the stack under AVX2). FMA
// is a*b+c as the level computes it: fused where the target has FMA, so
// that the scalar edge loops, which GCC contracts the same way, give the
// same bits as the vector lanes. MAX(lo, x) and MIN(hi, x) keep a NaN x.
// EXP2I(t, bias) is 2^n for the integer n in t's low mantissa bits (t =
// n + 1.5*2^23) when bias = 127 - 0x4B400000.
typedef __m512 V_avx512;
#define VL_avx512 16
#define LOAD_avx512(p) _mm512_loadu_ps(p)
#define STORE_avx512(p, v) _mm512_storeu_ps(p, v)
#define SET1_avx512(x) _mm512_set1_ps(x)
#define ZERO_avx512() _mm512_setzero_ps()
#define FMA_avx512(a, b, c) _mm512_fmadd_ps(a, b, c)
#define MUL_avx512(a, b) _mm512_mul_ps(a, b)
#define ADD_avx512(a, b) _mm512_add_ps(a, b)
#define SUB_avx512(a, b) _mm512_sub_ps(a, b)
#define DIV_avx512(a, b) _mm512_div_ps(a, b)
#define MAX_avx512(a, b) _mm512_max_ps(a, b)
#define MIN_avx512(a, b) _mm512_min_ps(a, b)
#define EXP2I_avx512(t, bias) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(bias)), 23))

typedef __m256 V_avx2;
#define VL_avx2 8
#define LOAD_avx2(p) _mm256_loadu_ps(p)
#define STORE_avx2(p, v) _mm256_storeu_ps(p, v)
#define SET1_avx2(x) _mm256_set1_ps(x)
#define ZERO_avx2() _mm256_setzero_ps()
#define FMA_avx2(a, b, c) _mm256_fmadd_ps(a, b, c)
#define MUL_avx2(a, b) _mm256_mul_ps(a, b)
#define ADD_avx2(a, b) _mm256_add_ps(a, b)
#define SUB_avx2(a, b) _mm256_sub_ps(a, b)
#define DIV_avx2(a, b) _mm256_div_ps(a, b)
#define MAX_avx2(a, b) _mm256_max_ps(a, b)
#define MIN_avx2(a, b) _mm256_min_ps(a, b)
#define EXP2I_avx2(t, bias) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(bias)), 23))

typedef __m128 V_base;
#define VL_base 4
#define LOAD_base(p) _mm_loadu_ps(p)
#define STORE_base(p, v) _mm_storeu_ps(p, v)
#define SET1_base(x) _mm_set1_ps(x)
#define ZERO_base() _mm_setzero_ps()
#define FMA_base(a, b, c) _mm_add_ps(_mm_mul_ps(a, b), c)
#define MUL_base(a, b) _mm_mul_ps(a, b)
#define ADD_base(a, b) _mm_add_ps(a, b)
#define SUB_base(a, b) _mm_sub_ps(a, b)
#define DIV_base(a, b) _mm_div_ps(a, b)
#define MAX_base(a, b) _mm_max_ps(a, b)
#define MIN_base(a, b) _mm_min_ps(a, b)
#define EXP2I_base(t, bias) _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(_mm_castps_si128(t), _mm_set1_epi32(bias)), 23))

// ---------------------------------------------------------------------------
// GELU

#define GELU_K 0.7978845608028654f

// VEXP defines vexp, kexp on the level's vectors, with the same constants
// (the rounding may differ in the last bit from kexp's scalar form).
#define VEXP(suffix, target)                                                                     \
	target static inline __attribute__((always_inline)) V##suffix vexp##suffix(V##suffix x) { \
		x = MIN##suffix(SET1##suffix(88.0f), MAX##suffix(SET1##suffix(-87.33654f), x));    \
		V##suffix t = FMA##suffix(x, SET1##suffix(1.44269504088896341f), SET1##suffix(12582912.0f)); \
		V##suffix n = SUB##suffix(t, SET1##suffix(12582912.0f));                          \
		V##suffix r = FMA##suffix(n, SET1##suffix(-0.693359375f), x);                      \
		r = FMA##suffix(n, SET1##suffix(2.12194440e-4f), r);                               \
		V##suffix y = FMA##suffix(SET1##suffix(1.9875691500e-4f), r, SET1##suffix(1.3981999507e-3f)); \
		y = FMA##suffix(y, r, SET1##suffix(8.3334519073e-3f));                             \
		y = FMA##suffix(y, r, SET1##suffix(4.1665795894e-2f));                             \
		y = FMA##suffix(y, r, SET1##suffix(1.6666665459e-1f));                             \
		y = FMA##suffix(y, r, SET1##suffix(5.0000001201e-1f));                             \
		y = ADD##suffix(FMA##suffix(MUL##suffix(y, r), r, r), SET1##suffix(1.0f));         \
		return MUL##suffix(y, EXP2I##suffix(t, 127 - 0x4B400000));                          \
	}

// GELU_LOOPS defines the forward and backward loops under a target
// attribute; the fastest one the CPU supports is picked at run time. Each
// element goes through the vector code, the last partial vector padded
// with zeros, so an element's result does not depend on where it lies:
// sigmoid(u) = 1 / (1 + vexp(-u)) with u = 2*GELU_K*(x + 0.044715*x^3).
#define GELU_LOOPS(suffix, target)                                                              \
	VEXP(suffix, target)                                                                       \
	target static inline __attribute__((always_inline)) V##suffix sigmoid_u##suffix(V##suffix x) { \
		V##suffix x3 = MUL##suffix(MUL##suffix(x, x), x);                                  \
		V##suffix u = MUL##suffix(SET1##suffix(-2.0f * GELU_K), FMA##suffix(SET1##suffix(0.044715f), x3, x)); \
		return DIV##suffix(SET1##suffix(1.0f), ADD##suffix(SET1##suffix(1.0f), vexp##suffix(u))); \
	}                                                                                          \
	target static inline __attribute__((always_inline)) V##suffix gelu_v##suffix(V##suffix x) { \
		return MUL##suffix(x, sigmoid_u##suffix(x));                                       \
	}                                                                                          \
	target static inline __attribute__((always_inline)) V##suffix gelu_grad_v##suffix(V##suffix d, V##suffix x) { \
		V##suffix s = sigmoid_u##suffix(x);                                                \
		V##suffix du = MUL##suffix(SET1##suffix(2.0f * GELU_K),                            \
			FMA##suffix(SET1##suffix(3.0f * 0.044715f), MUL##suffix(x, x), SET1##suffix(1.0f))); \
		V##suffix ds = MUL##suffix(MUL##suffix(s, SUB##suffix(SET1##suffix(1.0f), s)), MUL##suffix(x, du)); \
		return MUL##suffix(d, ADD##suffix(s, ds));                                         \
	}                                                                                          \
	target static void gelu_forward##suffix(float *out, const float *inp, long n) {            \
		const long VL = VL##suffix;                                                        \
		long i = 0;                                                                        \
		for (; i + VL <= n; i += VL) STORE##suffix(out + i, gelu_v##suffix(LOAD##suffix(inp + i))); \
		if (i < n) {                                                                       \
			float x[VL##suffix] = {0};                                                 \
			memcpy(x, inp + i, (size_t)(n - i) * 4);                                   \
			STORE##suffix(x, gelu_v##suffix(LOAD##suffix(x)));                        \
			memcpy(out + i, x, (size_t)(n - i) * 4);                                   \
		}                                                                                  \
	}                                                                                          \
	target static void gelu_backward##suffix(float *d, const float *inp, long n) {             \
		const long VL = VL##suffix;                                                        \
		long i = 0;                                                                        \
		for (; i + VL <= n; i += VL)                                                       \
			STORE##suffix(d + i, gelu_grad_v##suffix(LOAD##suffix(d + i), LOAD##suffix(inp + i))); \
		if (i < n) {                                                                       \
			float x[VL##suffix] = {0}, g[VL##suffix] = {0};                            \
			memcpy(x, inp + i, (size_t)(n - i) * 4);                                   \
			memcpy(g, d + i, (size_t)(n - i) * 4);                                     \
			STORE##suffix(g, gelu_grad_v##suffix(LOAD##suffix(g), LOAD##suffix(x)));  \
			memcpy(d + i, g, (size_t)(n - i) * 4);                                     \
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

// ATTEND defines one query's attention under a target attribute, on the
// level's vectors (see V_avx2). The sums stay in registers: scores in
// blocks of up to 4 vectors of positions, each a sum over d in order; the
// output in blocks of up to 4 vectors of lanes, each a sum over positions in
// order. A key vector that would run past the end of kt (klen floats) is
// copied, only its positions below n, into a zeroed vector first. Lanes past
// the last full vector of the output use MULADD(a, b, c), a*b+c computed as
// the vector lanes compute it. The block sizes do not change any sum's
// order, so the vector width does not change the bits.
#define ATTEND(suffix, target, MULADD)                                                              \
	target static inline __attribute__((always_inline)) void scores##suffix(float *sc,          \
		const float *q, const float *kt, long klen, long ldk, long hs, float scale, long j0,    \
		long n, const int nv) {                                                                 \
		const long VL = VL##suffix;                                                             \
		V##suffix acc[4];                                                                       \
		for (int b = 0; b < nv; b++) acc[b] = ZERO##suffix();                                   \
		long tail = n - j0 - VL * (nv - 1);                                                     \
		tail = tail < VL ? tail : VL;                                                           \
		long room = klen - j0 - VL * nv;                                                        \
		long dfull = room < 0 ? 0 : room / ldk + 1 < hs ? room / ldk + 1 : hs;                  \
		for (long d = 0; d < dfull; d++) {                                                      \
			V##suffix x = SET1##suffix(q[d] * scale);                                       \
			const float *kr = kt + d * ldk + j0;                                            \
			for (int b = 0; b < nv; b++) acc[b] = FMA##suffix(x, LOAD##suffix(kr + VL * b), acc[b]); \
		}                                                                                       \
		for (long d = dfull; d < hs; d++) {                                                     \
			V##suffix x = SET1##suffix(q[d] * scale);                                       \
			const float *kr = kt + d * ldk + j0;                                            \
			for (int b = 0; b < nv; b++) {                                                  \
				float k[VL##suffix] = {0};                                              \
				memcpy(k, kr + VL * b, (size_t)(b < nv - 1 ? VL : tail) * 4);           \
				acc[b] = FMA##suffix(x, LOAD##suffix(k), acc[b]);                       \
			}                                                                               \
		}                                                                                       \
		for (int b = 0; b < nv; b++) {                                                          \
			long w = n - j0 - VL * b;                                                       \
			if (w >= VL) {                                                                  \
				STORE##suffix(sc + j0 + VL * b, acc[b]);                                \
			} else {                                                                        \
				float lanes[VL##suffix];                                                \
				STORE##suffix(lanes, acc[b]);                                           \
				memcpy(sc + j0 + VL * b, lanes, (size_t)w * 4);                         \
			}                                                                               \
		}                                                                                       \
	}                                                                                               \
	target static inline __attribute__((always_inline)) void weigh##suffix(float *out,          \
		const float *sc, float inv, const float *v, long n, long hs, long d0, const int nv) {   \
		const long VL = VL##suffix;                                                             \
		V##suffix acc[4];                                                                       \
		for (int b = 0; b < nv; b++) acc[b] = ZERO##suffix();                                   \
		for (long j = 0; j < n; j++) {                                                          \
			V##suffix w = SET1##suffix(sc[j] * inv);                                        \
			const float *vr = v + j * hs + d0;                                              \
			for (int b = 0; b < nv; b++) acc[b] = FMA##suffix(w, LOAD##suffix(vr + VL * b), acc[b]); \
		}                                                                                       \
		for (int b = 0; b < nv; b++) STORE##suffix(out + d0 + VL * b, acc[b]);                 \
	}                                                                                               \
	target static void attend##suffix(float *out, const float *q, const float *kt, long klen,    \
		const float *v, long n, long hs, long ldk, float scale, float *sc) {                   \
		const long VL = VL##suffix;                                                             \
		for (long j0 = 0; j0 < n; j0 += 4 * VL) {                                               \
			switch ((n - j0 + VL - 1) / VL) {                                               \
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
		for (; d0 + VL <= hs; d0 += 4 * VL) {                                                   \
			switch ((hs - d0) / VL) {                                                       \
			case 1: weigh##suffix(out, sc, inv, v, n, hs, d0, 1); break;                    \
			case 2: weigh##suffix(out, sc, inv, v, n, hs, d0, 2); break;                    \
			case 3: weigh##suffix(out, sc, inv, v, n, hs, d0, 3); break;                    \
			default: weigh##suffix(out, sc, inv, v, n, hs, d0, 4);                          \
			}                                                                               \
		}                                                                                       \
		for (long d = hs - hs % VL; d < hs; d++) {                                              \
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

// THIN defines c (m,n) = alpha * a (m,k) @ b (k,n) + beta*c, a given as
// strides (ar between rows, ap between columns, so either a or its
// transpose), under a target attribute. It reads a and b in place, without
// the packing copies that dominate BLAS on thin products: register tiles of up to ROWS rows
// by COLS_V of the level's vectors (see V_avx2), accumulators that stay in
// registers (ROWS at most 6), tiles one vector wide for the columns past
// the last full tile, and a plain loop for the rest. Column panels are the
// outer loop: each panel of b comes from memory once and from cache for the
// other rows, since a decode step streams more weights than the caches
// hold. Outside them, k is cut into blocks of THIN_KBLOCK whose partial
// sums are added to c in order, so that a panel's block stays in the
// second-level cache while the rows of a training product sweep it.
// Each c element is a sum over k in order (in blocks), whichever path
// computes it, so tile shapes do not change the bits.
#define THIN(suffix, target, ROWS, COLS_V)                                                         \
	target static inline __attribute__((always_inline)) void tile##suffix(long i0, long j0,     \
		long k, float alpha, const float *a, long ar, long ap, const float *b, long ldb, float beta, \
		float *c, long ldc, long pf, const int nr, const int cv) {                              \
		const long VL = VL##suffix;                                                             \
		V##suffix acc[ROWS][COLS_V];                                                            \
		for (int r = 0; r < nr; r++)                                                            \
			for (int v = 0; v < cv; v++) acc[r][v] = ZERO##suffix();                        \
		for (long p = 0; p < k; p++) {                                                          \
			const float *br = b + p * ldb + j0;                                             \
			for (long o = 0; o < pf; o += 16) __builtin_prefetch(br + THIN_PREFETCH * ldb + o); \
			V##suffix bv[COLS_V];                                                           \
			for (int v = 0; v < cv; v++) bv[v] = LOAD##suffix(br + VL * v);                 \
			for (int r = 0; r < nr; r++) {                                                  \
				V##suffix x = SET1##suffix(a[(i0 + r) * ar + p * ap]);                  \
				for (int v = 0; v < cv; v++) acc[r][v] = FMA##suffix(x, bv[v], acc[r][v]); \
			}                                                                               \
		}                                                                                       \
		V##suffix va = SET1##suffix(alpha), vb = SET1##suffix(beta);                            \
		for (int r = 0; r < nr; r++) {                                                          \
			float *cr = c + (i0 + r) * ldc + j0;                                            \
			for (int v = 0; v < cv; v++) {                                                  \
				V##suffix old = beta == 0.0f ? ZERO##suffix() : MUL##suffix(vb, LOAD##suffix(cr + VL * v)); \
				STORE##suffix(cr + VL * v, FMA##suffix(va, acc[r][v], old));            \
			}                                                                               \
		}                                                                                       \
	}                                                                                               \
	/* tiles##suffix runs the tile of rows i0..i0+ROWS (fewer at the end) */                       \
	target static inline __attribute__((always_inline)) void tiles##suffix(long m, long i0,     \
		long j0, long k, float alpha, const float *a, long ar, long ap, const float *b, long ldb, \
		float beta, float *c, long ldc, long pf, const int cv) {                                \
		switch (m - i0 < (ROWS) ? m - i0 : (ROWS)) {                                            \
		case 1: tile##suffix(i0, j0, k, alpha, a, ar, ap, b, ldb, beta, c, ldc, pf, 1, cv); break; \
		case 2: tile##suffix(i0, j0, k, alpha, a, ar, ap, b, ldb, beta, c, ldc, pf, 2, cv); break; \
		case 3: tile##suffix(i0, j0, k, alpha, a, ar, ap, b, ldb, beta, c, ldc, pf, 3, cv); break; \
		case 4: if ((ROWS) > 4) { tile##suffix(i0, j0, k, alpha, a, ar, ap, b, ldb, beta, c, ldc, pf, 4, cv); break; } /* fall through */ \
		case 5: if ((ROWS) > 5) { tile##suffix(i0, j0, k, alpha, a, ar, ap, b, ldb, beta, c, ldc, pf, 5, cv); break; } /* fall through */ \
		default: tile##suffix(i0, j0, k, alpha, a, ar, ap, b, ldb, beta, c, ldc, pf, (ROWS), cv); \
		}                                                                                       \
	}                                                                                               \
	target static void block##suffix(long m, long n, long k, float alpha, const float *a, long ar, \
		long ap, const float *b, long ldb, float beta, float *c, long ldc) {                  \
		long tn = VL##suffix * (COLS_V), n_full = n - n % tn, n_vec = n - n % VL##suffix;     \
		for (long p0 = 0; p0 < n_full; p0 += THIN_PANEL) {                                    \
			long p1 = p0 + THIN_PANEL < n_full ? p0 + THIN_PANEL : n_full;                \
			for (long i0 = 0; i0 < m; i0 += (ROWS))                                       \
				for (long j0 = p0; j0 < p1; j0 += tn)                                 \
					tiles##suffix(m, i0, j0, k, alpha, a, ar, ap, b, ldb, beta, c, ldc, \
						i0 == 0 && j0 == p0 ? p1 - p0 : 0, (COLS_V));         \
		}                                                                                     \
		for (long j0 = n_full; j0 < n_vec; j0 += VL##suffix)                                  \
			for (long i0 = 0; i0 < m; i0 += (ROWS))                                       \
				tiles##suffix(m, i0, j0, k, alpha, a, ar, ap, b, ldb, beta, c, ldc, 0, 1); \
		for (long i = 0; i < m; i++) {                                                        \
			for (long j0 = n_vec; j0 < n; j0 += 64) {                                     \
				long w = n - j0 < 64 ? n - j0 : 64;                                   \
				float acc[64] = {0};                                                  \
				for (long p = 0; p < k; p++) {                                        \
					float x = a[i * ar + p * ap];                                 \
					const float *br = b + p * ldb + j0;                           \
					for (long j = 0; j < w; j++) acc[j] += x * br[j];             \
				}                                                                     \
				float *cr = c + i * ldc + j0;                                         \
				for (long j = 0; j < w; j++)                                          \
					cr[j] = alpha * acc[j] + (beta == 0.0f ? 0.0f : beta * cr[j]); \
			}                                                                             \
		}                                                                                     \
	}                                                                                               \
	target static void thin##suffix(long m, long n, long k, float alpha, const float *a, long ar, \
		long ap, const float *b, long ldb, float beta, float *c, long ldc) {                  \
		for (long q = 0; q < k; q += THIN_KBLOCK)                                             \
			block##suffix(m, n, k - q < THIN_KBLOCK ? k - q : THIN_KBLOCK, alpha, a + q * ap, ar, ap, \
				b + q * ldb, ldb, q == 0 ? beta : 1.0f, c, ldc);                      \
	}

// THIN_PANEL is the width in floats (a multiple of every tile's) of the
// column panels that tiles sweep row by row. The panel's first tile
// prefetches the panel's rows THIN_PREFETCH rows ahead: the hardware fetches
// the lines of a narrow tile, one per row of b, too late on its own.
#ifndef THIN_PANEL
#define THIN_PANEL 64
#define THIN_PREFETCH 8
#endif
// THIN_KBLOCK is the k block: 512 rows of a 64-column panel are 128 KiB.
#ifndef THIN_KBLOCK
#define THIN_KBLOCK 512
#endif
#ifndef THIN_AVX2_ROWS
#define THIN_AVX2_ROWS 6
#define THIN_AVX2_COLS 2
#define THIN_AVX512_ROWS 6
#define THIN_AVX512_COLS 4
#endif
THIN(_avx512, TARGET_AVX512, THIN_AVX512_ROWS, THIN_AVX512_COLS)
THIN(_avx2, TARGET_AVX2, THIN_AVX2_ROWS, THIN_AVX2_COLS)

int kernel_thin(long m, long n, long k, float alpha, const float *a, long lda, int trans_a, const float *b, long ldb,
	float beta, float *c, long ldc) {
	long ar = trans_a ? 1 : lda, ap = trans_a ? lda : 1;
	switch (level) {
	case 2: thin_avx512(m, n, k, alpha, a, ar, ap, b, ldb, beta, c, ldc); return 1;
	case 1: thin_avx2(m, n, k, alpha, a, ar, ap, b, ldb, beta, c, ldc); return 1;
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
